/*
 * expr.h -- the small, safe expression language of cross-metric quality rules.
 *
 *   expr  := or ;  or := and ("or" and)* ;  and := not ("and" not)* ;  not := "not" not | cmp
 *   cmp   := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
 *   sum   := prod (("+" | "-") prod)* ;  prod := unary (("*" | "/") unary)*
 *   unary := "-" unary | atom ;  atom := NUMBER | METRIC | FUNC "(" sum ("," sum)* ")" | "(" expr
 * ")" Functions: abs(x), min(a, b), max(a, b). Nothing else: no assignment, no loops, no calls
 * beyond these, no strings; a compiled expression is a bounded array of stack operations
 * (TC_QX_OPS_MAX), evaluated with a stack of TC_QX_STACK_MAX, so evaluation time and memory are
 * bounded whatever the input. A rule's expression must be a condition (a comparison, or
 * and/or/not of conditions): "dew_point <= temperature" states what must hold.
 *
 * Unknown values. A metric the reading lacks is NaN, and so is x / 0. NaN propagates through
 * arithmetic and comparisons; "and" is false if either side is false, "or" true if either side is
 * true, otherwise NaN stays. tc_qx_eval returns 1 (holds), 0 (violated) or -1 (unknown: the rule
 * says nothing about this reading).
 *
 * Metric names resolve through a caller's callback at compile time into small indexes, so
 * evaluation reads values[index] and never looks a name up.
 */
#ifndef TC_QUALITY_EXPR_H
#define TC_QUALITY_EXPR_H

#include <stddef.h>

#include "core/error.h"

#define TC_QX_SOURCE_MAX 512 /* bytes of expression text */
#define TC_QX_OPS_MAX    64  /* operations after compilation */
#define TC_QX_STACK_MAX  32  /* evaluation stack (the compiler checks the depth) */
#define TC_QX_DEPTH_MAX  32  /* nesting of the recursive-descent parser */
#define TC_QX_NAME_MAX   63  /* bytes of a metric name */

typedef struct tc_qx_op {
    unsigned char code; /* what, internal */
    unsigned short arg; /* metric index */
    double num;
} tc_qx_op;

typedef struct tc_qx {
    tc_qx_op ops[TC_QX_OPS_MAX];
    int nops;
} tc_qx;

/* Map a metric name (len bytes) to an index, adding it if new; -1 when there is no room. */
typedef int (*tc_qx_resolve_fn)(void *opaque, const char *name, size_t len);

/* Compile src (len bytes). On error returns TC_ERR_INVALID, *err_offset is the byte offset in src
 * the message is about, and errstr says what (without a position: the caller adds its own). */
tc_err tc_qx_compile(tc_qx *x, const char *src, size_t len, tc_qx_resolve_fn resolve, void *opaque,
                     size_t *err_offset, char *errstr, size_t errstr_size);

/* 1 holds, 0 violated, -1 unknown. values[i] is the metric of index i, NaN when absent. */
int tc_qx_eval(const tc_qx *x, const double *values);
/* The numeric result (NaN when unknown): for tests and messages. */
double tc_qx_value(const tc_qx *x, const double *values);

#endif
