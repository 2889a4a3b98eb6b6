/*
 * path.c -- see path.h.
 */
#include "core/path.h"

#include <stdarg.h>
#include <stdio.h>

int tc_path_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
