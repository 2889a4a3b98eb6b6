/*
 * validate.h -- the validation rules a decoded reading must pass before it is stored.
 *
 * Decoding checks form (is this JSON, are the fields of the right type); validation checks sense
 * (is the temperature physically plausible, is the timestamp recent). The limits are configuration
 * (tc_limits, validation.* keys). A metric that is absent is not validated; a metric that is
 * present must be finite and within [min, max].
 */
#ifndef TC_PROCESS_VALIDATE_H
#define TC_PROCESS_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/reject.h"

/* Check row `row` of the batch against the limits at time now_us; fills detail on rejection. */
tc_reject tc_validate_row(const tc_batch *b, size_t row, const tc_limits *lim, int64_t now_us,
                          char *detail, size_t detail_size);

#endif
