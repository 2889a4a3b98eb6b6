/*
 * expr.c -- compile and evaluate quality-rule expressions; see expr.h.
 *
 * A recursive-descent parser (depth-bounded) emits postfix operations straight into the fixed
 * array, tracking the stack depth each operation leaves and whether the value on top is a
 * condition, so a compiled expression is known to fit the evaluation stack and to be a condition.
 */
#include "quality/expr.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    QX_NUM,
    QX_METRIC,
    QX_NEG,
    QX_ADD,
    QX_SUB,
    QX_MUL,
    QX_DIV,
    QX_LT,
    QX_LE,
    QX_GT,
    QX_GE,
    QX_EQ,
    QX_NE,
    QX_AND,
    QX_OR,
    QX_NOT,
    QX_ABS,
    QX_MIN,
    QX_MAX
};

typedef struct qx_parser {
    tc_qx *x;
    const char *s;
    size_t len, pos;
    int depth, stack, max_stack;
    tc_qx_resolve_fn resolve;
    void *opaque;
    size_t err_offset;
    char *errstr;
    size_t errstr_size;
    int failed;
} qx_parser;

static const struct {
    const char *text;
    int code;
} qx_cmp_ops[] = {{"<=", QX_LE}, {">=", QX_GE}, {"==", QX_EQ},
                  {"!=", QX_NE}, {"<", QX_LT},  {">", QX_GT}};

static int qx_fail(qx_parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int qx_fail(qx_parser *p, size_t at, const char *fmt, ...)
{
    va_list ap;

    if (!p->failed) {
        p->failed = 1;
        p->err_offset = at;
        va_start(ap, fmt);
        vsnprintf(p->errstr, p->errstr_size, fmt, ap);
        va_end(ap);
    }
    return 0;
}

static void qx_skip(qx_parser *p)
{
    while (p->pos < p->len && isspace((unsigned char)p->s[p->pos]))
        p->pos++;
}

/* Consume the literal token tok (a word must not run on into a name). */
static int qx_accept(qx_parser *p, const char *tok)
{
    size_t n = strlen(tok);

    qx_skip(p);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, tok, n))
        return 0;
    if (isalpha((unsigned char)tok[0]) && p->pos + n < p->len &&
        (isalnum((unsigned char)p->s[p->pos + n]) || p->s[p->pos + n] == '_'))
        return 0;
    p->pos += n;
    return 1;
}

/* Emit an operation that pops `pops` values and pushes one. */
static int qx_emit(qx_parser *p, int code, int pops, double num, int arg)
{
    if (p->failed)
        return 0;
    if (p->x->nops >= TC_QX_OPS_MAX)
        return qx_fail(p, p->pos, "%s", "expression too long (more than 64 operations)");
    p->x->ops[p->x->nops++] = (tc_qx_op){(unsigned char)code, (unsigned short)arg, num};
    p->stack += 1 - pops;
    if (p->stack > p->max_stack)
        p->max_stack = p->stack;
    if (p->max_stack > TC_QX_STACK_MAX)
        return qx_fail(p, p->pos, "%s", "expression nests too deeply");
    return 1;
}

/* Each level returns 1 for a condition, 2 for a number, 0 on error. */
static int qx_or(qx_parser *p);
static int qx_sum(qx_parser *p);

static int qx_enter(qx_parser *p)
{
    if (++p->depth > TC_QX_DEPTH_MAX)
        return qx_fail(p, p->pos, "%s", "expression nests too deeply");
    return 1;
}

static int qx_need(qx_parser *p, int type, int want, size_t at, const char *what)
{
    if (!type)
        return 0;
    if (type != want)
        return qx_fail(p, at,
                       want == 1 ? "%s needs a condition (a comparison), not a number"
                                 : "%s needs a number, not a condition",
                       what);
    return 1;
}

static int qx_atom(qx_parser *p)
{
    static const char *const funcs[] = {"abs", "min", "max"};
    static const int fcodes[] = {QX_ABS, QX_MIN, QX_MAX}, fargs[] = {1, 2, 2};
    size_t start, n;
    int type;

    qx_skip(p);
    start = p->pos;
    if (p->pos >= p->len)
        return qx_fail(p, start, "%s", "expression ends where a value was expected");
    if (qx_accept(p, "(")) {
        type = qx_or(p);
        if (type && !qx_accept(p, ")"))
            return qx_fail(p, p->pos, "%s", "expected \")\"");
        return type;
    }
    if (isdigit((unsigned char)p->s[p->pos]) || p->s[p->pos] == '.') {
        char buf[64], *end;
        double v;
        n = 0;
        while (p->pos + n < p->len && n < sizeof(buf) - 1 &&
               (isalnum((unsigned char)p->s[p->pos + n]) || p->s[p->pos + n] == '.' ||
                ((p->s[p->pos + n] == '+' || p->s[p->pos + n] == '-') && n > 0 &&
                 (p->s[p->pos + n - 1] == 'e' || p->s[p->pos + n - 1] == 'E'))))
            n++;
        memcpy(buf, p->s + p->pos, n);
        buf[n] = '\0';
        v = strtod(buf, &end);
        if (*end || !isfinite(v))
            return qx_fail(p, start, "\"%s\" is not a number", buf);
        p->pos += n;
        return qx_emit(p, QX_NUM, 0, v, 0) ? 2 : 0;
    }
    if (!isalpha((unsigned char)p->s[p->pos]) && p->s[p->pos] != '_') {
        char c[2] = {p->s[p->pos], '\0'};
        return qx_fail(p, start, "unexpected \"%s\"", isprint((unsigned char)c[0]) ? c : "?");
    }
    n = 0;
    while (p->pos + n < p->len &&
           (isalnum((unsigned char)p->s[p->pos + n]) || p->s[p->pos + n] == '_'))
        n++;
    p->pos += n;
    for (size_t f = 0; f < sizeof(funcs) / sizeof(funcs[0]); f++) {
        if (strlen(funcs[f]) != n || memcmp(p->s + start, funcs[f], n))
            continue;
        if (!qx_accept(p, "("))
            return qx_fail(p, p->pos, "%s needs \"(\"", funcs[f]);
        for (int a = 0; a < fargs[f]; a++) {
            size_t at = p->pos;
            if (a && !qx_accept(p, ","))
                return qx_fail(p, p->pos, "%s takes two arguments", funcs[f]);
            if (!qx_need(p, qx_sum(p), 2, at, funcs[f]))
                return 0;
        }
        if (!qx_accept(p, ")"))
            return qx_fail(p, p->pos, "expected \")\" after the arguments of %s", funcs[f]);
        return qx_emit(p, fcodes[f], fargs[f], 0, 0) ? 2 : 0;
    }
    if ((n == 3 && !memcmp(p->s + start, "and", 3)) || (n == 2 && !memcmp(p->s + start, "or", 2)) ||
        (n == 3 && !memcmp(p->s + start, "not", 3)))
        return qx_fail(p, start, "%s", "a value was expected before this operator");
    qx_skip(p);
    if (p->pos < p->len && p->s[p->pos] == '(')
        return qx_fail(p, start, "%s",
                       "unknown function (abs, min and max are the ones there are)");
    if (n > TC_QX_NAME_MAX)
        return qx_fail(p, start, "%s", "metric name longer than 63 bytes");
    {
        int idx = p->resolve(p->opaque, p->s + start, n);
        if (idx < 0)
            return qx_fail(p, start, "%s", "too many metric names");
        return qx_emit(p, QX_METRIC, 0, 0, idx) ? 2 : 0;
    }
}

/* A prefix operator: tok then this level again (an operand of type want), or the next level. */
static int qx_prefix(qx_parser *p, const char *tok, int want, int code, int (*self)(qx_parser *),
                     int (*next)(qx_parser *))
{
    size_t at;
    int type;

    if (!qx_enter(p))
        return 0;
    qx_skip(p);
    at = p->pos;
    if (qx_accept(p, tok)) {
        type = qx_need(p, self(p), want, at, tok);
        type = type && qx_emit(p, code, 1, 0, 0) ? want : 0;
    } else {
        type = next(p);
    }
    p->depth--;
    return type;
}

static int qx_unary(qx_parser *p)
{
    return qx_prefix(p, "-", 2, QX_NEG, qx_unary, qx_atom);
}

/* Left-associative binary level: operands from next, operators from ops. */
static int qx_binary(qx_parser *p, int (*next)(qx_parser *), const char *const *ops,
                     const int *codes, int nops, int operand)
{
    size_t at;
    int type;

    qx_skip(p);
    at = p->pos;
    type = next(p);
    for (;;) {
        int k;
        for (k = 0; k < nops && !qx_accept(p, ops[k]); k++)
            ;
        if (k == nops || !type)
            return type;
        if (!qx_need(p, type, operand, at, ops[k]))
            return 0;
        qx_skip(p);
        at = p->pos;
        if (!qx_need(p, next(p), operand, at, ops[k]) || !qx_emit(p, codes[k], 2, 0, 0))
            return 0;
    }
}

static int qx_prod(qx_parser *p)
{
    static const char *const ops[] = {"*", "/"};
    static const int codes[] = {QX_MUL, QX_DIV};

    return qx_binary(p, qx_unary, ops, codes, 2, 2);
}

static int qx_sum(qx_parser *p)
{
    static const char *const ops[] = {"+", "-"};
    static const int codes[] = {QX_ADD, QX_SUB};

    return qx_binary(p, qx_prod, ops, codes, 2, 2);
}

static int qx_cmp(qx_parser *p)
{
    size_t at;
    int type;

    qx_skip(p);
    at = p->pos;
    type = qx_sum(p);
    for (size_t k = 0; type && k < sizeof(qx_cmp_ops) / sizeof(qx_cmp_ops[0]); k++) {
        if (!qx_accept(p, qx_cmp_ops[k].text))
            continue;
        if (!qx_need(p, type, 2, at, qx_cmp_ops[k].text))
            return 0;
        qx_skip(p);
        at = p->pos;
        if (!qx_need(p, qx_sum(p), 2, at, qx_cmp_ops[k].text) ||
            !qx_emit(p, qx_cmp_ops[k].code, 2, 0, 0))
            return 0;
        return 1;
    }
    return type;
}

static int qx_not(qx_parser *p)
{
    return qx_prefix(p, "not", 1, QX_NOT, qx_not, qx_cmp);
}

static int qx_and(qx_parser *p)
{
    static const char *const ops[] = {"and"};
    static const int codes[] = {QX_AND};

    return qx_binary(p, qx_not, ops, codes, 1, 1);
}

static int qx_or(qx_parser *p)
{
    static const char *const ops[] = {"or"};
    static const int codes[] = {QX_OR};
    int type;

    if (!qx_enter(p))
        return 0;
    type = qx_binary(p, qx_and, ops, codes, 1, 1);
    p->depth--;
    return type;
}

tc_err tc_qx_compile(tc_qx *x, const char *src, size_t len, tc_qx_resolve_fn resolve, void *opaque,
                     size_t *err_offset, char *errstr, size_t errstr_size)
{
    qx_parser p = {.x = x,
                   .s = src,
                   .len = len,
                   .resolve = resolve,
                   .opaque = opaque,
                   .errstr = errstr,
                   .errstr_size = errstr_size};
    int type;

    memset(x, 0, sizeof(*x));
    *err_offset = 0;
    if (len > TC_QX_SOURCE_MAX)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "expression longer than %d bytes",
                          TC_QX_SOURCE_MAX);
    if (memchr(src, '\0', len))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "expression holds a NUL byte");
    type = qx_or(&p);
    qx_skip(&p);
    if (type && p.pos < p.len)
        qx_fail(&p, p.pos, "%s", "unexpected text after the expression");
    if (type == 2 && !p.failed)
        qx_fail(&p, 0, "%s",
                "the expression is a number; a rule needs a condition such as \"a <= b\"");
    if (p.failed || !type) {
        *err_offset = p.err_offset;
        memset(x, 0, sizeof(*x));
        return TC_ERR_INVALID;
    }
    return TC_OK;
}

static double qx_bool(int v)
{
    return v ? 1.0 : 0.0;
}

double tc_qx_value(const tc_qx *x, const double *values)
{
    double st[TC_QX_STACK_MAX];
    int sp = 0;

    for (int i = 0; i < x->nops; i++) {
        const tc_qx_op *op = &x->ops[i];
        double a = sp >= 2 ? st[sp - 2] : 0, b = sp >= 1 ? st[sp - 1] : 0, r;

        switch (op->code) {
        case QX_NUM:
            st[sp++] = op->num;
            continue;
        case QX_METRIC:
            st[sp++] = values[op->arg];
            continue;
        case QX_NEG:
            st[sp - 1] = -b;
            continue;
        case QX_NOT:
            st[sp - 1] = isnan(b) ? NAN : qx_bool(b == 0);
            continue;
        case QX_ABS:
            st[sp - 1] = fabs(b);
            continue;
        case QX_ADD:
            r = a + b;
            break;
        case QX_SUB:
            r = a - b;
            break;
        case QX_MUL:
            r = a * b;
            break;
        case QX_DIV:
            r = b == 0 ? NAN : a / b;
            break;
        case QX_MIN:
            r = isnan(a) || isnan(b) ? NAN : fmin(a, b);
            break;
        case QX_MAX:
            r = isnan(a) || isnan(b) ? NAN : fmax(a, b);
            break;
        case QX_AND:
            r = (!isnan(a) && a == 0) || (!isnan(b) && b == 0) ? 0.0
                : isnan(a) || isnan(b)                         ? NAN
                                                               : 1.0;
            break;
        case QX_OR:
            r = (!isnan(a) && a != 0) || (!isnan(b) && b != 0) ? 1.0
                : isnan(a) || isnan(b)                         ? NAN
                                                               : 0.0;
            break;
        default: /* comparisons */
            if (isnan(a) || isnan(b))
                r = NAN;
            else
                r = qx_bool(op->code == QX_LT   ? a < b
                            : op->code == QX_LE ? a <= b
                            : op->code == QX_GT ? a > b
                            : op->code == QX_GE ? a >= b
                            : op->code == QX_EQ ? a == b
                                                : a != b);
            break;
        }
        st[sp - 2] = isinf(r) ? NAN : r;
        sp--;
    }
    return sp == 1 ? st[0] : NAN;
}

int tc_qx_eval(const tc_qx *x, const double *values)
{
    double v = tc_qx_value(x, values);

    return isnan(v) ? -1 : v != 0;
}
