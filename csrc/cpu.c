/*
 * cpu.c -- which kernels run: the CPU's features, the kernel table of every tier this build
 * holds (kernels/kernels.h), and the choice between them.
 *
 * A model picks its tier when it is loaded (its packed weights are laid out for that tier's
 * kernels) and its contexts use it; the test entry points (qwen3c_matmul, ...) pick one per
 * call. The pick is QWEN3C_CPU=avx512|avx2|avx2-novnni|sse|neon-i8mm|neon|neon-nodot|scalar
 * when set (refused, with QWEN3C_ERR_CPU, if unknown, not in this build or not supported by
 * this CPU), else the best tier the CPU runs. "avx2" is two rows of the table: the avx2 kernels
 * compiled with AVX-VNNI when the CPU has it, else without; "avx2-novnni" is always the latter.
 * The CPU is read each time (x86: cpuid + xgetbv, a few hundred cycles; arm64: getauxval /
 * sysctl); nothing is cached, so there is no global state at all.
 *
 * arm64: NEON is architectural; dotprod (sdot/udot, Armv8.2+: Apple M1+, Graviton2+,
 * Cortex-A76+) and i8mm (smmla, Armv8.6: Apple M2+, Graviton3+) come from the kernel
 * (Linux/Android getauxval HWCAP / HWCAP2), sysctl (macOS hw.optional.arm.FEAT_*) or
 * IsProcessorFeaturePresent (Windows).
 *
 * Adding a tier: its detection in cpu_features() (x86: cpuid bits; arm64: HWCAP / sysctl /
 * IsProcessorFeaturePresent), a row in TIERS (best first) and its flags in CMakeLists.txt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define CPU_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#else
#define CPU_X86 0
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define CPU_ARM64 1
#if defined(__linux__) || defined(__ANDROID__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#elif defined(_WIN32)
#include <windows.h>
#endif
#else
#define CPU_ARM64 0
#endif

/* ---------------------------------------------------------------------------------------
 * Features: one bit each, named as in /proc/cpuinfo
 * ------------------------------------------------------------------------------------- */
enum {
    F_SSE42 = 1u << 0, F_POPCNT = 1u << 1, F_AVX = 1u << 2, F_AVX2 = 1u << 3, F_FMA = 1u << 4,
    F_F16C = 1u << 5, F_AVX512F = 1u << 6, F_AVX512BW = 1u << 7, F_AVX512DQ = 1u << 8,
    F_AVX512VL = 1u << 9, F_AVX512VNNI = 1u << 10, F_AVX512BF16 = 1u << 11, F_AVXVNNI = 1u << 12,
    F_NEON = 1u << 13, F_DOTPROD = 1u << 14, F_I8MM = 1u << 15,
};
static const char *const FEATURE_NAMES[] = {
    "sse4_2", "popcnt", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
    "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni", "neon", "dotprod", "i8mm",
};

#if CPU_X86
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)v[i];
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

/* XCR0: which register state the OS saves on a context switch (AVX: bits 1-2, AVX-512: 5-7) */
static uint64_t xcr0(void) {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#endif
}
#endif

static unsigned cpu_features(void) {
    unsigned f = 0;
#if CPU_X86
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    const unsigned ecx1 = r[2];
    if (ecx1 & (1u << 20)) f |= F_SSE42;
    if (ecx1 & (1u << 23)) f |= F_POPCNT;
    const int osxsave = (ecx1 >> 27) & 1;
    const uint64_t xcr = osxsave ? xcr0() : 0;
    const int os_avx = (xcr & 0x6) == 0x6;       /* SSE + AVX state */
    int os_avx512 = os_avx && (xcr & 0xe0) == 0xe0; /* + opmask, ZMM 0-15 upper halves, ZMM 16-31 */
#if defined(__APPLE__)
    /* macOS enables the AVX-512 state on first use: XCR0 does not show it before */
    int on = 0;
    size_t len = sizeof on;
    if (os_avx && sysctlbyname("hw.optional.avx512f", &on, &len, NULL, 0) == 0 && on) os_avx512 = 1;
#endif
    if (os_avx) {
        if (ecx1 & (1u << 28)) f |= F_AVX;
        if (ecx1 & (1u << 12)) f |= F_FMA;
        if (ecx1 & (1u << 29)) f |= F_F16C;
    }
    if (max_leaf >= 7 && os_avx) {
        cpuid(7, 0, r);
        const unsigned ebx7 = r[1], ecx7 = r[2], max_sub = r[0];
        if (ebx7 & (1u << 5)) f |= F_AVX2;
        if (os_avx512) {
            if (ebx7 & (1u << 16)) f |= F_AVX512F;
            if (ebx7 & (1u << 17)) f |= F_AVX512DQ;
            if (ebx7 & (1u << 30)) f |= F_AVX512BW;
            if (ebx7 & (1u << 31)) f |= F_AVX512VL;
            if (ecx7 & (1u << 11)) f |= F_AVX512VNNI;
        }
        if (max_sub >= 1) {
            cpuid(7, 1, r);
            if (r[0] & (1u << 4)) f |= F_AVXVNNI;
            if (os_avx512 && (r[0] & (1u << 5))) f |= F_AVX512BF16;
        }
    }
#elif CPU_ARM64
    f |= F_NEON; /* Advanced SIMD is part of every arm64 CPU */
#if defined(__linux__) || defined(__ANDROID__)
    /* the bits of linux/arch/arm64/include/uapi/asm/hwcap.h (spelled out: old headers lack them) */
    const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    if (hwcap & (1ul << 20)) f |= F_DOTPROD;  /* HWCAP_ASIMDDP */
    if (hwcap2 & (1ul << 13)) f |= F_I8MM;    /* HWCAP2_I8MM */
#elif defined(__APPLE__)
    /* macOS 12+; older systems lack the names, and every arm64 Mac (M1 on) has dotprod */
    int on = 0;
    size_t len = sizeof on;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &on, &len, NULL, 0) != 0 || on) f |= F_DOTPROD;
    on = 0, len = sizeof on;
    if (sysctlbyname("hw.optional.arm.FEAT_I8MM", &on, &len, NULL, 0) == 0 && on) f |= F_I8MM;
#elif defined(_WIN32)
    /* the SDK's numbers (older SDKs lack the names; older Windows answers FALSE to unknown ones) */
    if (IsProcessorFeaturePresent(43)) f |= F_DOTPROD;  /* PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE */
    if (IsProcessorFeaturePresent(66) ||                /* PF_ARM_V82_I8MM_INSTRUCTIONS_AVAILABLE */
        IsProcessorFeaturePresent(57)) f |= F_I8MM;     /* PF_ARM_SVE_I8MM_INSTRUCTIONS_AVAILABLE */
#endif
#endif
    return f;
}

/* ---------------------------------------------------------------------------------------
 * The tiers of this build, best first (CMakeLists.txt compiles their kernel files)
 * ------------------------------------------------------------------------------------- */
typedef struct {
    Kernels  k;
    unsigned needs;      /* features the tier's kernels use */
} Tier;

#define TIER_ROW_NAMED(name, t) {name, &matmul_kernels_##t, &q24_kernels_##t, &q24k_kernels_##t, \
                                 &q16_kernels_##t, &int8_kernels_##t, &attention_kernels_##t, &nn_kernels_##t, \
                                 &deltanet_kernels_##t}
#define TIER_ROW(t) TIER_ROW_NAMED(#t, t)
static const Tier TIERS[] = {
#if defined(QWEN3C_TIER_AVX512)
    {TIER_ROW(avx512), F_AVX512F | F_AVX512BW | F_AVX512DQ | F_AVX512VL | F_AVX512VNNI | F_AVX2 | F_FMA | F_F16C},
#endif
#if defined(QWEN3C_TIER_AVX2VNNI)
    /* "avx2" on a CPU with AVX-VNNI: the avx2 kernel files compiled with it (vpdpbusd on ymm) */
    {TIER_ROW_NAMED("avx2", avx2vnni), F_AVX | F_AVX2 | F_FMA | F_F16C | F_AVXVNNI},
#endif
#if defined(QWEN3C_TIER_AVX2)
    {TIER_ROW(avx2), F_AVX | F_AVX2 | F_FMA | F_F16C},
    /* the same kernels by a name that never picks the AVX-VNNI ones (to test them on a CPU
     * that has it) */
    {TIER_ROW_NAMED("avx2-novnni", avx2), F_AVX | F_AVX2 | F_FMA | F_F16C},
#endif
#if defined(QWEN3C_TIER_SSE)
    {TIER_ROW(sse), F_SSE42 | F_POPCNT},
#endif
#if defined(QWEN3C_TIER_NEON_I8MM)
    {TIER_ROW_NAMED("neon-i8mm", neon_i8mm), F_NEON | F_DOTPROD | F_I8MM},
#endif
#if defined(QWEN3C_TIER_NEON)
    {TIER_ROW(neon), F_NEON | F_DOTPROD},
#endif
#if defined(QWEN3C_TIER_NEON_NODOT)
    {TIER_ROW_NAMED("neon-nodot", neon_nodot), F_NEON},
#endif
    {TIER_ROW(scalar), 0},
};
#undef TIER_ROW_NAMED
#undef TIER_ROW
#define N_TIERS (sizeof(TIERS) / sizeof(TIERS[0]))
static const char *const KNOWN_TIERS[] = {"avx512", "avx2", "avx2-novnni", "sse", "neon-i8mm", "neon", "neon-nodot",
                                           "scalar"};
#define KNOWN_TIERS_TEXT "avx512, avx2, avx2-novnni, sse, neon-i8mm, neon, neon-nodot, scalar"

static int runs(const Tier *t, unsigned f) { return (t->needs & f) == t->needs; }

static void features_text(unsigned f, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(FEATURE_NAMES) / sizeof(FEATURE_NAMES[0]); i++)
        if ((f >> i) & 1u) n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? " " : "", FEATURE_NAMES[i]);
}

/* The names of the tiers, best first, each once ("avx2" has two rows). */
static void tiers_text(unsigned f, int runnable_only, char *buf, size_t size) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_TIERS; i++) {
        if (runnable_only && !runs(&TIERS[i], f)) continue;
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= (!runnable_only || runs(&TIERS[j], f)) && !strcmp(TIERS[j].k.tier, TIERS[i].k.tier);
        if (!seen) n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? " " : "", TIERS[i].k.tier);
    }
}

/* The tier for features f and the QWEN3C_CPU value `want` (NULL or "": the best). */
static int choose(unsigned f, const char *want, const Tier **out, char *err, size_t err_size) {
    if (!want || !*want) {
        for (size_t i = 0; i < N_TIERS; i++)
            if (runs(&TIERS[i], f)) {
                *out = &TIERS[i];
                return QWEN3C_OK;
            }
    }
    char ok[64];
    tiers_text(f, 1, ok, sizeof ok);
    const Tier *named = NULL; /* the last row of that name: the one needing the least */
    for (size_t i = 0; want && i < N_TIERS; i++) {
        if (strcmp(want, TIERS[i].k.tier) != 0) continue;
        if (runs(&TIERS[i], f)) {
            *out = &TIERS[i];
            return QWEN3C_OK;
        }
        named = &TIERS[i];
    }
    if (named) {
        char need[256];
        features_text(named->needs & ~f, need, sizeof need);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_CPU,
                           "QWEN3C_CPU=%s: this CPU lacks %s (it runs: %s)", want, need, ok);
    }
    int known = 0;
    for (size_t i = 0; want && i < sizeof(KNOWN_TIERS) / sizeof(KNOWN_TIERS[0]); i++) known |= !strcmp(want, KNOWN_TIERS[i]);
    if (known) {
        char built[64];
        tiers_text(f, 0, built, sizeof built);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_CPU,
                           "QWEN3C_CPU=%s: this build has no %s kernels (it has: %s; this CPU runs: %s)",
                           want, want, built, ok);
    }
    return qwen3c_fail(err, err_size, QWEN3C_ERR_CPU,
                       "QWEN3C_CPU=%s is not a CPU tier (one of %s; this CPU runs: %s)",
                       want ? want : "", KNOWN_TIERS_TEXT, ok);
}

int kernels_select(const Kernels **out, char *err, size_t err_size) {
    const Tier *t;
    int rc = choose(cpu_features(), getenv("QWEN3C_CPU"), &t, err, err_size);
    if (rc == QWEN3C_OK) *out = &t->k;
    return rc;
}

const Kernels *kernels_tier(size_t i, int *runnable) {
    if (i >= N_TIERS) return NULL;
    if (runnable) *runnable = runs(&TIERS[i], cpu_features());
    return &TIERS[i].k;
}

/* ---------------------------------------------------------------------------------------
 * Public: what this machine and build run
 * ------------------------------------------------------------------------------------- */
static void copy_text(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

int qwen3c_cpu_info_get(qwen3c_cpu_info *out, char *err, size_t err_size) {
    if (!out) return qwen3c_fail(err, err_size, QWEN3C_ERR_INVALID_ARG, "out must not be NULL");
    memset(out, 0, sizeof *out);
    const unsigned f = cpu_features();
    features_text(f, out->features, sizeof out->features);
    tiers_text(f, 0, out->tiers, sizeof out->tiers);
    const Tier *best = NULL, *t = NULL;
    choose(f, NULL, &best, NULL, 0); /* scalar at worst: always succeeds */
    copy_text(out->best, sizeof out->best, best->k.tier);
    const char *want = getenv("QWEN3C_CPU");
    copy_text(out->requested, sizeof out->requested, want);
    int rc = choose(f, want, &t, err, err_size);
    if (rc == QWEN3C_OK) copy_text(out->tier, sizeof out->tier, t->k.tier);
#ifdef _OPENMP
    out->openmp = 1;
#endif
    out->n_procs = cpu_count();
#if defined(__clang__)
    snprintf(out->compiler, sizeof out->compiler, "clang %d.%d.%d", __clang_major__, __clang_minor__,
             __clang_patchlevel__);
#elif defined(__GNUC__)
    snprintf(out->compiler, sizeof out->compiler, "gcc %d.%d.%d", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
    snprintf(out->compiler, sizeof out->compiler, "msvc %d", _MSC_VER);
#endif
    return rc;
}

const char *qwen3c_model_cpu_tier(const qwen3c_model *model) { return model->kernels->tier; }
