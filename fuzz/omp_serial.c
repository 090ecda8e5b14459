/*
 * omp_serial.c -- the OpenMP runtime calls of csrc/, answered for one thread.
 *
 * The fuzz targets compile the C core without -fopenmp (the `omp` pragmas are ignored, so
 * every parallel loop runs serially: deterministic and one core per fuzzer), and link these
 * instead of libomp.
 */
#include <omp.h>

int omp_get_thread_num(void) { return 0; }
int omp_get_num_threads(void) { return 1; }
int omp_get_max_threads(void) { return 1; }
int omp_get_num_procs(void) { return 1; }
