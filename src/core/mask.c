/*
 * mask.c -- the masking rules of personal data; see mask.h.
 *
 * Rounding must give the value PostgreSQL gives, or an export and the API would disagree on a
 * coarsened latitude. float8 -> numeric keeps DBL_DIG (15) significant digits of the value
 * (float8_numeric), and numeric's round() takes halves away from zero on that decimal text. So
 * the value is printed with 15 significant digits, rounded on its decimal digits, and read back:
 * round(x * 10^d) / 10^d in binary would turn 1.005 into 1.00 where PostgreSQL says 1.01.
 */
#include "core/mask.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "-d.dddddddddddddde+ddd" and a carry's extra digit. */
#define TC_MASK_TEXT_MAX 40

int tc_mask_is_personal(const char *list, const char *name, size_t len, int strip_suffix)
{
    if (strip_suffix && len > 4 &&
        (!strncmp(name + len - 4, "_avg", 4) || !strncmp(name + len - 4, "_min", 4) ||
         !strncmp(name + len - 4, "_max", 4)))
        len -= 4;
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *q = p;
        while (n && *q == ' ') {
            q++;
            n--;
        }
        while (n && q[n - 1] == ' ')
            n--;
        if (n == len && !strncmp(q, name, len))
            return 1;
        p = end ? end + 1 : NULL;
    }
    return 0;
}

double tc_mask_round(double v, int digits)
{
    char text[TC_MASK_TEXT_MAX], out[TC_MASK_TEXT_MAX + 8], mant[20];
    int exp10, keep, nd = 0, neg = v < 0;

    if (!isfinite(v) || v == 0)
        return v;
    if (digits < 0)
        digits = 0;
    if (digits > TC_MASK_DIGITS_MAX)
        digits = TC_MASK_DIGITS_MAX;
    /* 15 significant digits: d.dddddddddddddde<exp>. */
    snprintf(text, sizeof(text), "%.14e", fabs(v));
    for (const char *c = text; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            mant[nd++] = *c;
    exp10 = atoi(strchr(text, 'e') + 1);
    /* mant[i] is the digit of 10^(exp10 - i); keep those down to 10^-digits. */
    keep = exp10 + digits + 1;
    if (keep < 0)
        return neg ? -0.0 : 0.0;
    if (keep < nd) {
        int carry = mant[keep] >= '5';
        nd = keep;
        for (int i = nd - 1; i >= 0 && carry; i--) {
            if (mant[i] == '9') {
                mant[i] = '0';
            } else {
                mant[i]++;
                carry = 0;
            }
        }
        if (carry) { /* 9.99 -> 10.0: one more leading digit */
            memmove(mant + 1, mant, (size_t)nd);
            mant[0] = '1';
            nd++;
            exp10++;
        }
    }
    if (nd == 0)
        return neg ? -0.0 : 0.0;
    mant[nd] = '\0';
    snprintf(out, sizeof(out), "%s0.%se%d", neg ? "-" : "", mant, exp10 + 1);
    return strtod(out, NULL);
}

double tc_mask_value(tc_mask_level level, int digits, double v, int *present)
{
    if (level == TC_MASK_FULL)
        return v;
    if (level == TC_MASK_HIDDEN) {
        *present = 0;
        return 0;
    }
    return tc_mask_round(v, digits);
}
