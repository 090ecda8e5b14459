/*
 * os_windows.c -- the operating-system layer on Windows (internal.h: "Operating system"): the
 * model file mapped with CreateFileMapping / MapViewOfFile, working-set hints, aligned memory.
 * os_posix.c is the same API on Linux and macOS.
 */
#if defined(_WIN32)

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

/* GetLastError() as text, without the trailing newline. */
static const char *last_error(char *buf, size_t size) {
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, GetLastError(),
                             0, buf, (DWORD)size, NULL);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '.')) n--;
    if (n == 0) snprintf(buf, size, "error %lu", (unsigned long)GetLastError());
    else buf[n] = '\0';
    return buf;
}

int os_map_file(const char *path, size_t min_size, const uint8_t **base, size_t *size, char *err,
                size_t err_size) {
    char why[256];
    /* paths are UTF-8 (Python passes them so): the wide API takes any file name */
    const int wlen = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    wchar_t *wpath = wlen > 0 ? malloc((size_t)wlen * sizeof *wpath) : NULL;
    if (!wpath || MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wpath, wlen) != wlen) {
        free(wpath);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot open '%s': not a valid UTF-8 path", path);
    }
    HANDLE f = CreateFileW(wpath, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    free(wpath);
    if (f == INVALID_HANDLE_VALUE)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot open '%s': %s", path, last_error(why, sizeof why));
    LARGE_INTEGER sz;
    if (GetFileType(f) != FILE_TYPE_DISK || !GetFileSizeEx(f, &sz)) {
        CloseHandle(f);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "'%s' is not a regular file", path);
    }
    if ((uint64_t)sz.QuadPart < (uint64_t)min_size) {
        CloseHandle(f);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_FORMAT,
                           "not a GGUF file: '%s' is %lld bytes, too short for a GGUF header", path,
                           (long long)sz.QuadPart);
    }
    if ((uint64_t)sz.QuadPart > (uint64_t)SIZE_MAX) {
        CloseHandle(f);
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "'%s' is too large to map", path);
    }
    HANDLE map = CreateFileMappingW(f, NULL, PAGE_READONLY, 0, 0, NULL);
    CloseHandle(f); /* the mapping keeps the file open */
    if (!map)
        return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot map '%s': %s", path, last_error(why, sizeof why));
    void *view = MapViewOfFile(map, FILE_MAP_READ, 0, 0, 0);
    if (!view) last_error(why, sizeof why);
    CloseHandle(map); /* the view keeps the mapping alive */
    if (!view) return qwen3c_fail(err, err_size, QWEN3C_ERR_IO, "cannot map '%s': %s", path, why);
    *base = view;
    *size = (size_t)sz.QuadPart;
    return QWEN3C_OK;
}

void os_unmap_file(const uint8_t *base, size_t size) {
    (void)size;
    if (base) UnmapViewOfFile(base);
}

/* Large pages need the SeLockMemoryPrivilege (and VirtualAlloc'ed memory): not for a library. */
void os_advise_huge(void *p, size_t n) { (void)p, (void)n; }

/* VirtualUnlock of pages that are not locked takes them out of the working set (they fault
 * back in from the file when read again): what MADV_DONTNEED does for a file mapping. */
void os_release_mapped(const void *p, size_t n) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    const uintptr_t page = si.dwPageSize;
    const uintptr_t a = ((uintptr_t)p + page - 1) / page * page, e = ((uintptr_t)p + n) / page * page;
    if (e > a) (void)VirtualUnlock((void *)a, e - a);
}

void *os_aligned_alloc(size_t alignment, size_t size) { return _aligned_malloc(size ? size : alignment, alignment); }

void os_aligned_free(void *p) { _aligned_free(p); }

#endif /* _WIN32 */
