/*
 * path.h -- building file paths into fixed buffers.
 *
 * tc_path_fmt is snprintf that reports truncation as -1. Callers bound their inputs up front (a
 * configured root of limited length, names we make ourselves), so truncation is an error path, not
 * a normal one. Going through one vsnprintf also keeps gcc's -Wformat-truncation, which cannot see
 * those bounds, from flagging every path we build.
 */
#ifndef TC_CORE_PATH_H
#define TC_CORE_PATH_H

#include <stddef.h>

/* Longest path Thermocline builds (Linux's PATH_MAX). */
#define TC_PATH_MAX 4096

int tc_path_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
