/*
 * tc_parquet_gen -- write a random Parquet case and the values it should read back as.
 *
 *   tc_parquet_gen --seed N --out FILE.parquet --expect FILE.json [--verify] [--key-file KEYS]
 *
 * From the seed alone it draws a schema (1..12 columns of every type, REQUIRED or OPTIONAL,
 * dictionary on/off/auto), writer options (codec, page/row-group/dictionary bounds small enough to
 * force many pages, row groups and dictionary fallbacks), and values chosen to hit the edges: runs
 * of 1..40 equal values (RLE/bit-packing boundaries), NaN, +-Inf, -0.0, extremes, empty strings,
 * multi-byte UTF-8, 100 KB strings, all-null and no-null columns, zero and one row. Rows are handed
 * to the writer in random batch sizes with the odd explicit row-group flush.
 *
 * The JSON holds the schema, options, explicit flush points, key-value metadata and every value
 * (numbers exact: %.17g, NaN/Infinity as the tokens Python's json accepts, -0.0 kept; STRING as
 * UTF-8 text; BYTES as hex). tests/interop/test_parquet_interop.py compares what pyarrow, DuckDB
 * and parquet-java read against it. --verify also runs the deep verifier of parquet_read.h on the
 * file. --key-file writes the file with Parquet modular encryption (parquet_crypt.h): master keys
 * from KEYS, the footer and the even columns under "footer_key", the odd columns (0-based) under
 * "column_key"; the case then has at most 3000 rows (AAD ordinals are 16-bit: pages of one row
 * must not pass 32767 a chunk). Exit status: 0 ok, 1 writer/verify failure, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/batch.h"
#include "lake/parquet.h"
#include "lake/parquet_crypt.h"
#include "lake/parquet_read.h"

/* Bounds of a random case: enough columns and rows to cross every page/row-group boundary the
 * options make, small enough that 1000 cases run in about a minute. */
#define GEN_COLS_MAX    12
#define GEN_ROWS_MAX    60000
#define GEN_LONG_STRING 100000 /* a "long string" case: 100 KB */
#define GEN_SHORT_MAX   24     /* ordinary strings: up to this many characters */

/* ---- random ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64: tiny, seedable, and good enough for test data. */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rndn(uint64_t n)
{
    return n ? rnd() % n : 0;
}

static int chance(int percent)
{
    return (int)rndn(100) < percent;
}

/* A fixed pseudo-random value per (seed, i): the i-th member of a column's value pool. */
static uint64_t mix(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static size_t pick_size(const size_t *v, size_t n)
{
    return v[rndn(n)];
}

/* ---- JSON output ---- */

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_hex(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", (unsigned char)s[i]);
    fputc('"', f);
}

static void json_double(FILE *f, double d)
{
    char buf[64];

    if (isnan(d)) {
        fputs("NaN", f);
        return;
    }
    if (isinf(d)) {
        fputs(d > 0 ? "Infinity" : "-Infinity", f);
        return;
    }
    snprintf(buf, sizeof(buf), "%.17g", d);
    /* Keep it a float in Python (and keep the sign of -0.0): "-0" would parse as the int 0. */
    if (!strpbrk(buf, ".eE"))
        strcat(buf, ".0");
    fputs(buf, f);
}

/* ---- case ---- */

typedef struct gen_col {
    tc_parquet_column def;
    char name[48];
    void *values;
    uint8_t *present;
    int null_pct;
} gen_col;

static const char *const type_names[TC_PQ_TYPE__COUNT] = {
    [TC_PQ_BOOLEAN] = "boolean", [TC_PQ_INT32] = "int32",
    [TC_PQ_INT64] = "int64",     [TC_PQ_FLOAT] = "float",
    [TC_PQ_DOUBLE] = "double",   [TC_PQ_STRING] = "string",
    [TC_PQ_BYTES] = "bytes",     [TC_PQ_TIMESTAMP_US] = "timestamp_us",
};

/* Character pool for strings: ASCII (with the bytes around the truncation rules: '~' 0x7E, DEL
 * 0x7F), 2-, 3- and 4-byte UTF-8. */
static const char *const str_atoms[] = {
    "a",
    "b",
    "z",
    "A",
    "0",
    " ",
    "~",
    "\x7f",
    "\"",
    "\\",
    "\n",
    "\t",
    "\xc3\xa9",
    "\xc3\xbc",
    "\xe6\x97\xa5",
    "\xe6\x9c\xac",
    "\xf0\x9f\x98\x80",
    "\xef\xbf\xbf",
    "\xc2\x80",
};

/* Append one random string to the arena; returns the slice. */
static tc_slice gen_string(tc_arena *a, int bytes, int long_ok)
{
    size_t n = long_ok && chance(2) ? GEN_LONG_STRING : rndn(GEN_SHORT_MAX + 1);
    char *p;
    size_t len = 0;
    tc_slice s;

    if (chance(10))
        n = 0; /* empty strings, often */
    p = tc_arena_alloc(a, n * 4 + 1);
    if (!p) {
        fprintf(stderr, "tc_parquet_gen: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        if (bytes) {
            static const uint8_t edge[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe};
            p[len++] = (char)(chance(30) ? edge[rndn(sizeof(edge))] : (uint8_t)rnd());
        } else {
            const char *at = str_atoms[rndn(sizeof(str_atoms) / sizeof(str_atoms[0]))];
            size_t k = strlen(at);
            memcpy(p + len, at, k);
            len += k;
        }
    }
    s.ptr = p;
    s.len = (uint32_t)len;
    return s;
}

static double special_double(void)
{
    static const double v[] = {0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, -5e-324, 1.5, 3.25};
    switch (rndn(5)) {
    case 0:
        return NAN;
    case 1:
        return INFINITY;
    case 2:
        return -INFINITY;
    default:
        return v[rndn(sizeof(v) / sizeof(v[0]))];
    }
}

/* Pool of distinct values for low-cardinality columns (so dictionaries are worth it). */
#define GEN_POOL 64

static void gen_values(gen_col *g, size_t nrows, tc_arena *a, int long_ok)
{
    int style = (int)rndn(4); /* 0 random, 1 small pool, 2 runs, 3 specials-heavy */
    size_t pool = 1 + rndn(GEN_POOL);
    size_t run_left = 0;
    size_t elem = g->def.type == TC_PQ_BOOLEAN                                ? 1
                  : g->def.type == TC_PQ_INT32 || g->def.type == TC_PQ_FLOAT  ? 4
                  : g->def.type == TC_PQ_STRING || g->def.type == TC_PQ_BYTES ? sizeof(tc_slice)
                                                                              : 8;
    tc_slice pool_s[GEN_POOL];
    uint64_t pool_seed = rnd();

    g->values = calloc(nrows ? nrows : 1, elem);
    g->present = g->def.optional ? calloc(nrows ? nrows : 1, 1) : NULL;
    if (!g->values || (g->def.optional && !g->present)) {
        fprintf(stderr, "tc_parquet_gen: out of memory\n");
        exit(1);
    }
    if (g->def.type == TC_PQ_STRING || g->def.type == TC_PQ_BYTES)
        for (size_t i = 0; i < pool; i++)
            pool_s[i] = gen_string(a, g->def.type == TC_PQ_BYTES, 0);
    for (size_t r = 0; r < nrows; r++) {
        /* "runs": repeat the previous row for 1..40 rows (crosses 7/8/9, 15/16/17, ...). */
        int repeat = 0;
        if (style == 2) {
            if (run_left > 0) {
                run_left--;
                repeat = r > 0;
            } else {
                run_left = rndn(41);
            }
        }
        if (g->present) {
            if (repeat)
                g->present[r] = g->present[r - 1];
            else
                g->present[r] = !((int)rndn(100) < g->null_pct);
        }
        if (repeat) {
            memcpy((char *)g->values + r * elem, (char *)g->values + (r - 1) * elem, elem);
            continue;
        }
        uint64_t pick = style == 1 ? mix(pool_seed, rndn(pool)) : rnd();
        switch (g->def.type) {
        case TC_PQ_BOOLEAN:
            ((uint8_t *)g->values)[r] = (uint8_t)(pick & 1);
            break;
        case TC_PQ_INT32: {
            int32_t x = style == 3 && chance(30)
                            ? (chance(50) ? INT32_MIN : INT32_MAX)
                            : (chance(50) ? (int32_t)(pick % 11) - 5 : (int32_t)(uint32_t)pick);
            ((int32_t *)g->values)[r] = x;
            break;
        }
        case TC_PQ_INT64: {
            int64_t x = style == 3 && chance(30)
                            ? (chance(50) ? INT64_MIN : INT64_MAX)
                            : (chance(50) ? (int64_t)(pick % 1001) - 500 : (int64_t)pick);
            ((int64_t *)g->values)[r] = x;
            break;
        }
        case TC_PQ_TIMESTAMP_US: {
            /* Years 1..9999: the range every reader's timestamp type holds. */
            const int64_t lo = -62135596800000000LL, hi = 253402300799999999LL;
            int64_t x = lo + (int64_t)(pick % (uint64_t)(hi - lo));
            if (style == 3 && chance(30))
                x = chance(50) ? lo : hi;
            ((int64_t *)g->values)[r] = x;
            break;
        }
        case TC_PQ_FLOAT: {
            float x = style == 3 && chance(40)
                          ? (float)special_double()
                          : (float)((double)(int64_t)(pick % 2000001 - 1000000) / 64.0);
            ((float *)g->values)[r] = x;
            break;
        }
        case TC_PQ_DOUBLE: {
            double x = style == 3 && chance(40)
                           ? special_double()
                           : (double)(int64_t)(pick % 20000001 - 10000000) / 1024.0 +
                                 (chance(50) ? 1e-7 * (double)(pick % 97) : 0);
            ((double *)g->values)[r] = x;
            break;
        }
        case TC_PQ_STRING:
        case TC_PQ_BYTES: {
            tc_slice s = style == 1 ? pool_s[pick % pool]
                                    : gen_string(a, g->def.type == TC_PQ_BYTES, long_ok);
            ((tc_slice *)g->values)[r] = s;
            break;
        }
        default:
            break;
        }
    }
    /* REQUIRED string columns must not hold NULL slices; OPTIONAL ones say NULL via present[]
     * most of the time and via a NULL slice (present == NULL) when there is no map. */
    if ((g->def.type == TC_PQ_STRING || g->def.type == TC_PQ_BYTES) && g->present && chance(30)) {
        for (size_t r = 0; r < nrows; r++)
            if (!g->present[r])
                ((tc_slice *)g->values)[r].ptr = NULL;
        free(g->present);
        g->present = NULL; /* the writer derives presence from the slices */
        g->null_pct = -1;  /* marker: presence by slice */
    }
}

static int is_null(const gen_col *g, size_t r)
{
    if (g->present)
        return !g->present[r];
    if (g->def.type == TC_PQ_STRING || g->def.type == TC_PQ_BYTES)
        return ((const tc_slice *)g->values)[r].ptr == NULL;
    return 0;
}

static void json_value(FILE *f, const gen_col *g, size_t r)
{
    if (is_null(g, r)) {
        fputs("null", f);
        return;
    }
    switch (g->def.type) {
    case TC_PQ_BOOLEAN:
        fputs(((const uint8_t *)g->values)[r] ? "true" : "false", f);
        break;
    case TC_PQ_INT32:
        fprintf(f, "%" PRId32, ((const int32_t *)g->values)[r]);
        break;
    case TC_PQ_INT64:
    case TC_PQ_TIMESTAMP_US:
        fprintf(f, "%" PRId64, ((const int64_t *)g->values)[r]);
        break;
    case TC_PQ_FLOAT:
        json_double(f, (double)((const float *)g->values)[r]);
        break;
    case TC_PQ_DOUBLE:
        json_double(f, ((const double *)g->values)[r]);
        break;
    case TC_PQ_STRING: {
        const tc_slice *s = (const tc_slice *)g->values + r;
        json_str(f, s->ptr, s->len);
        break;
    }
    case TC_PQ_BYTES: {
        const tc_slice *s = (const tc_slice *)g->values + r;
        json_hex(f, s->ptr, s->len);
        break;
    }
    default:
        break;
    }
}

static const char *codec_name(tc_parquet_codec c)
{
    return c == TC_PQ_SNAPPY ? "snappy" : c == TC_PQ_ZSTD ? "zstd" : "uncompressed";
}

static const char *dict_name(tc_parquet_dict d)
{
    return d == TC_PQ_DICT_ON ? "on" : d == TC_PQ_DICT_OFF ? "off" : "auto";
}

static void usage(void)
{
    fprintf(stderr, "usage: tc_parquet_gen --seed N --out FILE.parquet --expect FILE.json "
                    "[--verify] [--key-file KEYS]\n");
    exit(2);
}

/* Key-value strings: ASCII and UTF-8. */
static const char *const kv_words[] = {
    "thermocline", "schema.version",           "1",     "",
    "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "a=b;c", "{\"json\": [1, 2]}"};

int main(int argc, char **argv)
{
    const char *out = NULL, *expect = NULL, *key_file = NULL;
    tc_pq_crypt *crypt = NULL;
    uint64_t seed = 0;
    int have_seed = 0, verify = 0;
    char errstr[TC_ERRSTR_MAX];
    tc_parquet_options opt;
    gen_col cols[GEN_COLS_MAX];
    tc_parquet_column defs[GEN_COLS_MAX];
    tc_parquet_values vals[GEN_COLS_MAX];
    size_t ncols, nrows, flush_at[16], nflush = 0;
    const char *kv[8][2];
    size_t nkv;
    tc_arena arena;
    tc_parquet_writer *w;
    FILE *jf;
    int fd, long_ok;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 10);
            have_seed = 1;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) {
            expect = argv[++i];
        } else if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc) {
            key_file = argv[++i];
        } else if (strcmp(argv[i], "--verify") == 0) {
            verify = 1;
        } else {
            usage();
        }
    }
    if (!have_seed || !out || !expect)
        usage();
    rng_state = seed * 0x2545F4914F6CDD1DULL + 1;
    tc_arena_init(&arena, 1 << 20, 0);

    /* Rows: zero and one row are cases of their own. */
    switch (rndn(20)) {
    case 0:
        nrows = 0;
        break;
    case 1:
    case 2:
        nrows = 1;
        break;
    case 3:
    case 4:
        nrows = 2 + rndn(20);
        break;
    case 5:
        nrows = 5000 + rndn(GEN_ROWS_MAX - 5000);
        break;
    default:
        nrows = 20 + rndn(3000);
    }
    if (key_file && nrows > 3000)
        nrows = 3000;
    long_ok = chance(10) && nrows < 2000;

    tc_parquet_options_default(&opt);
    {
        static const tc_parquet_codec codecs[] = {TC_PQ_UNCOMPRESSED, TC_PQ_SNAPPY, TC_PQ_ZSTD};
        static const size_t page_bytes[] = {1, 64, 1000, 8192, 65536, (size_t)1 << 20};
        static const size_t page_rows[] = {1, 7, 8, 9, 100, 1000, 20000};
        static const size_t dict_bytes[] = {16, 200, 4096, (size_t)1 << 20};
        static const size_t dict_entries[] = {1, 5, 100, 65536};
        static const size_t stats_bytes[] = {0, 1, 3, 8, 64};
        opt.codec = codecs[rndn(3)];
        opt.zstd_level = 1 + (int)rndn(5);
        opt.page_bytes = pick_size(page_bytes, 6);
        opt.page_rows = pick_size(page_rows, 7);
        opt.dict_max_bytes = pick_size(dict_bytes, 4);
        opt.dict_max_entries = pick_size(dict_entries, 4);
        opt.stats_max_bytes = pick_size(stats_bytes, 5);
        opt.dictionary_numbers = chance(50);
        switch (rndn(4)) {
        case 0:
            opt.row_group_rows = 1 + rndn(5);
            break;
        case 1:
            opt.row_group_rows = nrows / 3 + 1;
            break;
        default:
            opt.row_group_rows = (size_t)1 << 20;
        }
        /* Keep the number of row groups (and so the footer) reasonable. */
        if (nrows / opt.row_group_rows > 300)
            opt.row_group_rows = nrows / 300 + 1;
        /* Tiny pages with many rows make huge footers and slow readers: bound pages per chunk. */
        if (opt.page_rows < 100 && nrows > 5000)
            opt.page_rows = 100;
        if (opt.page_bytes < 1000 && nrows > 5000)
            opt.page_bytes = 1000;
        opt.row_group_bytes = chance(20) ? 4096 : (size_t)128 << 20;
    }

    ncols = 1 + rndn(chance(20) ? GEN_COLS_MAX : 6);
    for (size_t c = 0; c < ncols; c++) {
        gen_col *g = &cols[c];
        memset(g, 0, sizeof(*g));
        g->def.type = (tc_parquet_type)rndn(TC_PQ_TYPE__COUNT);
        g->def.optional = chance(60);
        g->def.dictionary = (tc_parquet_dict)rndn(3);
        if (chance(15))
            snprintf(g->name, sizeof(g->name), "temp\xc3\xa9rature_%zu", c);
        else
            snprintf(g->name, sizeof(g->name), "c%zu_%s", c, type_names[g->def.type]);
        g->def.name = g->name;
        {
            static const int null_pcts[] = {0, 5, 50, 95, 100};
            g->null_pct = g->def.optional ? null_pcts[rndn(5)] : 0;
        }
        gen_values(g, nrows, &arena, long_ok);
        defs[c] = g->def;
        vals[c].values = g->values;
        vals[c].present = g->present;
    }

    if (key_file) {
        char list[GEN_COLS_MAX * 64] = "";
        tc_pq_keyring *keys = tc_pq_keyring_new(key_file, NULL, errstr, sizeof(errstr));
        for (size_t c = 1; c < ncols; c += 2)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", c > 1 ? "," : "",
                     cols[c].name);
        crypt =
            keys ? tc_pq_crypt_new(keys, "footer_key", "column_key", list, errstr, sizeof(errstr))
                 : NULL;
        if (!crypt) {
            fprintf(stderr, "tc_parquet_gen: %s\n", errstr);
            return 1;
        }
        opt.crypt = crypt;
        tc_pq_crypt_install(crypt); /* for --verify's reader */
    }

    nkv = rndn(4);
    for (size_t i = 0; i < nkv; i++) {
        kv[i][0] = kv_words[rndn(8)];
        kv[i][1] = chance(20) ? NULL : kv_words[rndn(8)];
    }
    /* Distinct keys: readers may fold duplicates into a map. */
    for (size_t i = 0; i < nkv; i++)
        for (size_t j = 0; j < i; j++)
            if (kv[i][0] && kv[j][0] && strcmp(kv[i][0], kv[j][0]) == 0)
                kv[i][0] = NULL;

    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "tc_parquet_gen: %s: %s\n", out, strerror(errno));
        return 1;
    }
    w = tc_parquet_writer_new(fd, defs, ncols, &opt, errstr, sizeof(errstr));
    if (!w) {
        fprintf(stderr, "tc_parquet_gen: %s\n", errstr);
        return 1;
    }
    for (size_t i = 0; i < nkv; i++)
        if (kv[i][0] && tc_parquet_add_kv(w, kv[i][0], kv[i][1], errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "tc_parquet_gen: %s\n", errstr);
            return 1;
        }
    /* Hand the rows over in random batches, sometimes ending a row group by hand. */
    for (size_t done = 0; done < nrows;) {
        size_t k = 1 + rndn(chance(50) ? 10 : nrows - done);
        tc_parquet_values part[GEN_COLS_MAX];
        if (k > nrows - done)
            k = nrows - done;
        for (size_t c = 0; c < ncols; c++) {
            size_t elem = cols[c].def.type == TC_PQ_BOOLEAN                                    ? 1
                          : cols[c].def.type == TC_PQ_INT32 || cols[c].def.type == TC_PQ_FLOAT ? 4
                          : cols[c].def.type == TC_PQ_STRING || cols[c].def.type == TC_PQ_BYTES
                              ? sizeof(tc_slice)
                              : 8;
            part[c].values = (const char *)vals[c].values + done * elem;
            part[c].present = vals[c].present ? vals[c].present + done : NULL;
        }
        if (tc_parquet_write(w, part, k, errstr, sizeof(errstr)) != TC_OK) {
            fprintf(stderr, "tc_parquet_gen: write: %s\n", errstr);
            return 1;
        }
        done += k;
        if (done < nrows && nflush < 16 && chance(5)) {
            if (tc_parquet_flush_row_group(w, errstr, sizeof(errstr)) != TC_OK) {
                fprintf(stderr, "tc_parquet_gen: flush: %s\n", errstr);
                return 1;
            }
            flush_at[nflush++] = done;
        }
    }
    if (tc_parquet_close(w, errstr, sizeof(errstr)) != TC_OK) {
        fprintf(stderr, "tc_parquet_gen: close: %s\n", errstr);
        return 1;
    }
    tc_parquet_writer_destroy(w);
    if (close(fd) != 0) {
        fprintf(stderr, "tc_parquet_gen: close: %s\n", strerror(errno));
        return 1;
    }

    if (verify) {
        tc_parquet_info *info = NULL;
        if (tc_parquet_verify_path(out, TC_PQ_VERIFY_DEEP, &info, errstr, sizeof(errstr)) !=
            TC_OK) {
            fprintf(stderr, "tc_parquet_gen: verify %s: %s\n", out, errstr);
            return 1;
        }
        if (info->num_rows != (int64_t)nrows) {
            fprintf(stderr, "tc_parquet_gen: verify: %" PRId64 " rows, wrote %zu\n", info->num_rows,
                    nrows);
            return 1;
        }
        tc_parquet_info_free(info);
    }

    jf = fopen(expect, "w");
    if (!jf) {
        fprintf(stderr, "tc_parquet_gen: %s: %s\n", expect, strerror(errno));
        return 1;
    }
    fprintf(jf, "{\"seed\": %" PRIu64 ", \"nrows\": %zu, \"created_by\": ", seed, nrows);
    json_str(jf, tc_parquet_created_by(), strlen(tc_parquet_created_by()));
    fprintf(jf,
            ",\n \"options\": {\"codec\": \"%s\", \"page_bytes\": %zu, \"page_rows\": %zu, "
            "\"row_group_rows\": %zu, \"row_group_bytes\": %zu, \"dict_max_bytes\": %zu, "
            "\"dict_max_entries\": %zu, \"stats_max_bytes\": %zu, \"dictionary_numbers\": %d},\n",
            codec_name(opt.codec), opt.page_bytes, opt.page_rows, opt.row_group_rows,
            opt.row_group_bytes, opt.dict_max_bytes, opt.dict_max_entries, opt.stats_max_bytes,
            opt.dictionary_numbers);
    fputs(" \"flush_at\": [", jf);
    for (size_t i = 0; i < nflush; i++)
        fprintf(jf, "%s%zu", i ? ", " : "", flush_at[i]);
    fputs("],\n \"kv\": [", jf);
    for (size_t i = 0, first = 1; i < nkv; i++) {
        if (!kv[i][0])
            continue;
        fputs(first ? "[" : ", [", jf);
        first = 0;
        json_str(jf, kv[i][0], strlen(kv[i][0]));
        fputs(", ", jf);
        if (kv[i][1])
            json_str(jf, kv[i][1], strlen(kv[i][1]));
        else
            fputs("null", jf);
        fputs("]", jf);
    }
    fputs("],\n \"columns\": [", jf);
    for (size_t c = 0; c < ncols; c++) {
        const gen_col *g = &cols[c];
        fprintf(jf, "%s\n  {\"name\": ", c ? "," : "");
        json_str(jf, g->name, strlen(g->name));
        fprintf(jf, ", \"type\": \"%s\", \"optional\": %s, \"dictionary\": \"%s\", \"values\": [",
                type_names[g->def.type], g->def.optional ? "true" : "false",
                dict_name(g->def.dictionary));
        for (size_t r = 0; r < nrows; r++) {
            if (r)
                fputs(", ", jf);
            json_value(jf, g, r);
        }
        fputs("]}", jf);
    }
    fputs("\n ]}\n", jf);
    if (fclose(jf) != 0) {
        fprintf(stderr, "tc_parquet_gen: %s: write failed\n", expect);
        return 1;
    }
    for (size_t c = 0; c < ncols; c++) {
        free(cols[c].values);
        free(cols[c].present);
    }
    tc_arena_free(&arena);
    tc_pq_crypt_install(NULL);
    tc_pq_crypt_destroy(crypt);
    return 0;
}
