/*
 * mask.h -- the masking of personal data, one definition for every door out of Thermocline.
 *
 * The `api` schema's views (store/api_sql.c) mask the personal columns inside PostgreSQL; the
 * exports (export/) mask the lake's values in C. Both take their rules from here, so that the
 * same reading leaves by either door with the same value:
 *   - which columns are personal: api.personal_columns, a comma-separated list of metric names
 *     (spaces around a name ignored); a rollup's <metric>_avg/_min/_max is personal when the
 *     metric is;
 *   - what a level sees of them: TC_MASK_FULL the value, TC_MASK_COARSE the value rounded to
 *     api.personal_digits decimals exactly as PostgreSQL's round(v::numeric, d) does (the
 *     float8's 15 significant digits, halves away from zero), TC_MASK_HIDDEN nothing (NULL).
 * The levels are the api's _level(): thermocline_analyst and above see everything, a
 * thermocline_viewer sees api.personal_viewer (coarsen or hide), anyone else nothing.
 */
#ifndef TC_CORE_MASK_H
#define TC_CORE_MASK_H

#include <stddef.h>

typedef enum tc_mask_level {
    TC_MASK_HIDDEN = 0, /* personal values are NULL */
    TC_MASK_COARSE = 1, /* rounded to the configured digits */
    TC_MASK_FULL = 2,   /* unmasked */
} tc_mask_level;

/* Most decimals a personal column is rounded to (api.personal_digits' bound). */
#define TC_MASK_DIGITS_MAX 6

/* 1 when the column name (len bytes; without _avg, _min or _max when strip_suffix) is in the
 * comma-separated list of personal columns, else 0. */
int tc_mask_is_personal(const char *list, const char *name, size_t len, int strip_suffix);

/* The value v as `level` sees it, when the column is personal: *present is cleared for
 * TC_MASK_HIDDEN, v rounded to digits (0..TC_MASK_DIGITS_MAX) for TC_MASK_COARSE. */
double tc_mask_value(tc_mask_level level, int digits, double v, int *present);

/* PostgreSQL's round(v::numeric, digits)::double precision. NaN and infinities are returned as
 * they are. */
double tc_mask_round(double v, int digits);

#endif
