/*
 * os_posix.c -- the operating-system layer on Linux, macOS and the BSDs (internal.h: "Operating
 * system"): mmap of the model file, madvise hints, aligned memory. os_windows.c is the same
 * API on Windows.
 */
#if !defined(_WIN32)
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* glibc: posix_memalign, MADV_HUGEPAGE even under -std=c11 */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0 /* (old systems) the descriptor is closed before we return anyway */
#endif

int os_map_file(const char *path, size_t min_size, const uint8_t **base, size_t *size, char *err,
                size_t err_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size < (uint64_t)min_size) {
        close(fd);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "not a GGUF file: '%s' is %lld bytes, too short for a GGUF header",
                           path, (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "'%s' is too large to map", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot mmap '%s': %s", path, strerror(e));
    *base = map;
    *size = (size_t)st.st_size;
    return QWEN3C_OK;
}

void os_unmap_file(const uint8_t *base, size_t size) {
    if (base) munmap((void *)base, size);
}

void os_advise_huge(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    /* decode streams every weight once per token: huge pages mean fewer TLB misses */
    (void)madvise(p, n, MADV_HUGEPAGE);
#else
    (void)p, (void)n;
#endif
}

void os_release_mapped(const void *p, size_t n) {
#ifdef MADV_DONTNEED
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + page - 1) / page * page, e = ((uintptr_t)p + n) / page * page;
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
#else
    (void)p, (void)n;
#endif
}

void *os_aligned_alloc(size_t alignment, size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : alignment) != 0) return NULL;
    return p;
}

void os_aligned_free(void *p) { free(p); }

#endif /* !_WIN32 */
