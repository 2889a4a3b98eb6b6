/*
 * validate.c -- validation rules; see validate.h.
 */
#include "process/validate.h"

#include <math.h>
#include <stdio.h>

#include "core/json.h"

tc_reject tc_validate_row(const tc_batch *b, size_t row, const tc_limits *lim, int64_t now_us,
                          char *detail, size_t detail_size)
{
    int64_t t = b->time_us[row];

    if (t > now_us + lim->max_future_s * 1000000LL) {
        snprintf(detail, detail_size, "timestamp is %.0f s in the future (limit %lld s)",
                 (double)(t - now_us) / 1e6, (long long)lim->max_future_s);
        return TC_REJECT_TIMESTAMP_FUTURE;
    }
    if (t < now_us - lim->max_age_s * 1000000LL) {
        snprintf(detail, detail_size, "timestamp is %.0f s old (limit %lld s)",
                 (double)(now_us - t) / 1e6, (long long)lim->max_age_s);
        return TC_REJECT_TIMESTAMP_TOO_OLD;
    }
    for (int m = 0; m < TC_METRIC__COUNT; m++) {
        double v = b->metric[m][row];
        if (!b->present[m][row])
            continue;
        if (!isfinite(v) || v < lim->min[m] || v > lim->max[m]) {
            char text[TC_FMT_DOUBLE_MAX];
            tc_fmt_double(text, sizeof(text), v);
            snprintf(detail, detail_size, "%s %s is outside [%g, %g]", tc_metric_names[m], text,
                     lim->min[m], lim->max[m]);
            return TC_REJECT_OUT_OF_RANGE;
        }
    }
    return TC_REJECT_NONE;
}
