/*
 * window_agg.c -- one feature's accumulator over a window; the numerics are in window_agg.h.
 */
#include "features/window_agg.h"

#include <math.h>
#include <string.h>

void tc_wagg_init(tc_wagg *a, int64_t start_us, double lo, double hi)
{
    memset(a, 0, sizeof(*a));
    a->start_us = start_us;
    a->min = INFINITY;
    a->max = -INFINITY;
    a->last_us = INT64_MIN;
    a->last = NAN;
    a->lo = lo;
    a->hi = hi;
}

int64_t tc_wagg_window_start(int64_t time_us, int64_t window_s)
{
    int64_t w = window_s * 1000000;
    int64_t q = time_us / w;

    if (time_us % w != 0 && time_us < 0)
        q--;
    return q * w;
}

void tc_wagg_init_def(tc_wagg *a, const tc_feat_def *d, int64_t time_us)
{
    tc_wagg_init(a, tc_wagg_window_start(time_us, d->window_s), d->lo, d->hi);
}

void tc_wagg_update(tc_wagg *a, int64_t time_us, double x, int present)
{
    double t, dx, dt;

    a->rows++;
    if (!present || !isfinite(x))
        return;
    t = (double)(time_us - a->start_us) / 1e6;
    a->n++;
    dx = x - a->mean;
    dt = t - a->t_mean;
    a->mean += dx / (double)a->n;
    a->t_mean += dt / (double)a->n;
    a->m2 += dx * (x - a->mean);
    a->t_m2 += dt * (t - a->t_mean);
    /* The old time deviation times the new value deviation: the exact online co-moment. */
    a->c_tx += dt * (x - a->mean);
    if (x < a->min)
        a->min = x;
    if (x > a->max)
        a->max = x;
    if (time_us >= a->last_us) {
        a->last_us = time_us;
        a->last = x;
    }
    if (x < a->lo || x > a->hi)
        a->out_of_range++;
}

void tc_wagg_merge(tc_wagg *a, const tc_wagg *b)
{
    double na = (double)a->n, nb = (double)b->n, n = na + nb;

    a->rows += b->rows;
    a->out_of_range += b->out_of_range;
    if (b->n == 0)
        return;
    if (a->n == 0) {
        int64_t rows = a->rows, out_of_range = a->out_of_range;

        *a = *b;
        a->rows = rows;
        a->out_of_range = out_of_range;
        return;
    }
    {
        double dx = b->mean - a->mean, dt = b->t_mean - a->t_mean, f = na * nb / n;

        a->m2 += b->m2 + dx * dx * f;
        a->t_m2 += b->t_m2 + dt * dt * f;
        a->c_tx += b->c_tx + dx * dt * f;
        a->mean += dx * nb / n;
        a->t_mean += dt * nb / n;
    }
    a->n += b->n;
    if (b->min < a->min)
        a->min = b->min;
    if (b->max > a->max)
        a->max = b->max;
    if (b->last_us >= a->last_us) {
        a->last_us = b->last_us;
        a->last = b->last;
    }
}

int tc_wagg_finish(const tc_wagg *a, tc_feat_agg agg, double *out)
{
    double v = NAN;

    switch (agg) {
    case TC_FA_COUNT:
        v = (double)a->n;
        break;
    case TC_FA_MEAN:
        v = a->n ? a->mean : NAN;
        break;
    case TC_FA_STD:
        v = a->n >= 2 ? sqrt(fmax(a->m2, 0) / (double)(a->n - 1)) : NAN;
        break;
    case TC_FA_MIN:
        v = a->n ? a->min : NAN;
        break;
    case TC_FA_MAX:
        v = a->n ? a->max : NAN;
        break;
    case TC_FA_LAST:
        v = a->n ? a->last : NAN;
        break;
    case TC_FA_SLOPE:
        v = a->n >= 2 && a->t_m2 > 0 ? a->c_tx / a->t_m2 : NAN;
        break;
    case TC_FA_SHARE_MISSING:
        v = a->rows ? (double)(a->rows - a->n) / (double)a->rows : NAN;
        break;
    case TC_FA_OUT_OF_RANGE:
        v = (double)a->out_of_range;
        break;
    default:
        /* The quality monitor's figures: not the readings' (quality_src.h). */
        break;
    }
    *out = v;
    return !isnan(v);
}
