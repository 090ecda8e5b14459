/*
 * util.c -- status codes and error messages.
 *
 * Every fallible function in qwen3c returns a QWEN3C_* status and writes a human-readable
 * message into a buffer the caller owns. These helpers format that message.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *qwen3c_status_str(int status) {
    switch (status) {
    case QWEN3C_OK:              return "ok";
    case QWEN3C_ERR_IO:          return "i/o error";
    case QWEN3C_ERR_FORMAT:      return "malformed model file";
    case QWEN3C_ERR_UNSUPPORTED: return "unsupported model";
    case QWEN3C_ERR_CONTEXT:     return "context overflow";
    case QWEN3C_ERR_INVALID_ARG: return "invalid argument";
    case QWEN3C_ERR_NOMEM:       return "out of memory";
    case QWEN3C_ERR_BUFFER:      return "buffer too small";
    case QWEN3C_ERR_CPU:         return "cpu tier not available";
    default:                     return "unknown status";
    }
}

int qwen3c_fail(char *err, size_t err_size, int status, const char *fmt, ...) {
    if (err != NULL && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return status;
}

int qwen3c_fail_prefix(char *err, size_t err_size, int status, const char *what) {
    if (err == NULL || err_size == 0) return status;
    size_t wl = strlen(what);
    const char *nul = memchr(err, '\0', err_size);
    size_t ml = nul ? (size_t)(nul - err) : err_size - 1;
    if (wl + 2 >= err_size) return status;
    size_t keep = ml;
    if (wl + 2 + keep >= err_size) keep = err_size - 1 - (wl + 2);
    memmove(err + wl + 2, err, keep);
    memcpy(err, what, wl);
    err[wl] = ':';
    err[wl + 1] = ' ';
    err[wl + 2 + keep] = '\0';
    return status;
}
