/*
 * issue_rate.c -- how many 512-bit FMA and VNNI instructions one core issues per second: each
 * loop runs 12 independent accumulators (registers zmm4..zmm15, so no spill can slow it: a
 * version written with intrinsics had gcc store its accumulators to the stack and measured
 * half the rate). Not a test; README #20 (stop 36) uses it to compare the float32 GEMM's
 * multiply-adds with the integer ones the exact 24-bit activations would need.
 *
 *   gcc -O2 bench/issue_rate.c -o /tmp/issue_rate && /tmp/issue_rate
 *
 * Needs AVX-512 F and VNNI (the instructions are in asm, so no -m flags are needed to build it).
 */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define ONE(op, r) op " %%zmm0, %%zmm1, %%zmm" #r "\n\t"
#define TWELVE(op) ONE(op, 4) ONE(op, 5) ONE(op, 6) ONE(op, 7) ONE(op, 8) ONE(op, 9) \
                   ONE(op, 10) ONE(op, 11) ONE(op, 12) ONE(op, 13) ONE(op, 14) ONE(op, 15)
#define CLOBBERS "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

#define LOOPS 100000000L

/* instructions per second of one loop of 12 independent accumulators */
#define RATE(op)                                                                   \
    static double rate_##op(void) {                                                \
        const double t0 = now();                                                   \
        for (long i = 0; i < LOOPS; i++) __asm__ volatile(TWELVE(#op) ::: CLOBBERS); \
        return 12.0 * (double)LOOPS / (now() - t0);                                \
    }
RATE(vfmadd231ps)
RATE(vpdpbusd)
RATE(vpdpwssd)

int main(void) {
    printf("G instructions/s, one core (16 float multiply-adds each for vfmadd231ps, 64 byte\n"
           "products for vpdpbusd, 32 int16 products for vpdpwssd); best of 5 runs:\n");
    double best[3] = {0, 0, 0};
    for (int run = 0; run < 5; run++) {
        const double r[3] = {rate_vfmadd231ps(), rate_vpdpbusd(), rate_vpdpwssd()};
        for (int i = 0; i < 3; i++) best[i] = r[i] > best[i] ? r[i] : best[i];
    }
    printf("vfmadd231ps %.2f  vpdpbusd %.2f  vpdpwssd %.2f\n", best[0] / 1e9, best[1] / 1e9, best[2] / 1e9);
    return 0;
}
