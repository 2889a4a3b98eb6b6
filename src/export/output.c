/*
 * output.c -- exported files; see output.h.
 *
 * One byte path for every format: tc_export_raw hashes and writes what goes to the file; the
 * text formats pass their buffer through the compressor first, Parquet hands its own bytes (its
 * pages are compressed by the writer's codec) straight to tc_export_raw through the writer's sink
 * callback.
 */
#include "export/output.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "core/json.h"
#include "core/timeutil.h"
#include "lake/parquet.h"

/* Compressed bytes produced per compressor call before they are written. */
#define TC_EXPORT_ZBUF ((size_t)1 << 17)
/* One formatted field's worst case: a number, a time (strings are appended unbounded). */
#define TC_EXPORT_FIELD_MAX 64

struct tc_export_file {
    int fd;
    tc_export_format format;
    tc_export_compress compress;
    size_t nmetrics;
    char names[TC_EXPORT_METRICS_MAX][TC_PQ_NAME_MAX + 1];
    EVP_MD_CTX *sha;
    uint64_t bytes;
    int header_done;
    /* text formats */
    char *text;
    size_t text_len;
    ZSTD_CCtx *zstd;
    z_stream gz;
    int gz_ready;
    uint8_t *zbuf;
    /* Parquet */
    tc_parquet_writer *pq;
};

const char *tc_export_format_name(tc_export_format f)
{
    return f == TC_EXPORT_PARQUET ? "parquet" : f == TC_EXPORT_CSV ? "csv" : "ndjson";
}

const char *tc_export_extension(tc_export_format f, tc_export_compress c)
{
    static const char *const ext[3][3] = {{".parquet", ".parquet", ".parquet"},
                                          {".csv", ".csv.zst", ".csv.gz"},
                                          {".ndjson", ".ndjson.zst", ".ndjson.gz"}};
    return ext[f][c];
}

static tc_err tc_export_raw(tc_export_file *w, const void *p, size_t n, char *errstr,
                            size_t errstr_size)
{
    const char *c = p;

    EVP_DigestUpdate(w->sha, p, n);
    while (n) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: write: %s",
                       k < 0 ? strerror(errno) : "no progress");
            return TC_ERR_IO;
        }
        c += k;
        n -= (size_t)k;
        w->bytes += (uint64_t)k;
    }
    return TC_OK;
}

static tc_err tc_export_pq_sink(void *ctx, const void *p, size_t n, char *errstr,
                                size_t errstr_size)
{
    return tc_export_raw(ctx, p, n, errstr, errstr_size);
}

/* Compress (or not) and write the text buffer; end the stream when last. */
static tc_err tc_export_drain(tc_export_file *w, int last, char *errstr, size_t errstr_size)
{
    tc_err err = TC_OK;

    if (w->compress == TC_EXPORT_NONE) {
        err = tc_export_raw(w, w->text, w->text_len, errstr, errstr_size);
    } else if (w->compress == TC_EXPORT_ZSTD) {
        ZSTD_inBuffer in = {w->text, w->text_len, 0};
        size_t left;
        do {
            ZSTD_outBuffer out = {w->zbuf, TC_EXPORT_ZBUF, 0};
            left = ZSTD_compressStream2(w->zstd, &out, &in, last ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(left)) {
                tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: zstd: %s",
                           ZSTD_getErrorName(left));
                return TC_ERR_IO;
            }
            if ((err = tc_export_raw(w, w->zbuf, out.pos, errstr, errstr_size)) != TC_OK)
                return err;
        } while (last ? left != 0 : in.pos < in.size);
    } else {
        int rc;
        w->gz.next_in = (Bytef *)w->text;
        w->gz.avail_in = (uInt)w->text_len;
        do {
            w->gz.next_out = w->zbuf;
            w->gz.avail_out = (uInt)TC_EXPORT_ZBUF;
            rc = deflate(&w->gz, last ? Z_FINISH : Z_NO_FLUSH);
            if (rc == Z_STREAM_ERROR) {
                tc_err_set(TC_ERR_IO, errstr, errstr_size, "export: gzip: deflate failed");
                return TC_ERR_IO;
            }
            if ((err = tc_export_raw(w, w->zbuf, TC_EXPORT_ZBUF - w->gz.avail_out, errstr,
                                     errstr_size)) != TC_OK)
                return err;
        } while (last ? rc != Z_STREAM_END : w->gz.avail_in > 0 || w->gz.avail_out == 0);
    }
    w->text_len = 0;
    return err;
}

/* Room for n more bytes of text (draining the buffer when it is full). */
static tc_err tc_export_room(tc_export_file *w, size_t n, char *errstr, size_t errstr_size)
{
    if (w->text_len + n <= TC_EXPORT_TEXT_BUF)
        return TC_OK;
    if (n > TC_EXPORT_TEXT_BUF) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "export: a value of %zu bytes is longer than the text buffer", n);
        return TC_ERR_INVALID;
    }
    return tc_export_drain(w, 0, errstr, errstr_size);
}

static void tc_export_put(tc_export_file *w, const char *s, size_t n)
{
    memcpy(w->text + w->text_len, s, n);
    w->text_len += n;
}

tc_export_file *tc_export_file_new(int fd, tc_export_format f, tc_export_compress c,
                                   const char *const *names, size_t nmetrics, char *errstr,
                                   size_t errstr_size)
{
    tc_export_file *w;

    if (nmetrics > TC_EXPORT_METRICS_MAX) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "export: more than %d metric columns",
                   TC_EXPORT_METRICS_MAX);
        return NULL;
    }
    if (f == TC_EXPORT_PARQUET && c == TC_EXPORT_GZIP) {
        tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                   "export: Parquet pages are compressed with snappy (default) or zstd; gzip is "
                   "for csv and ndjson");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL)) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "export: out of memory");
        tc_export_file_destroy(w);
        return NULL;
    }
    w->fd = fd;
    w->format = f;
    w->compress = c;
    w->nmetrics = nmetrics;
    for (size_t k = 0; k < nmetrics; k++)
        snprintf(w->names[k], sizeof(w->names[k]), "%s", names[k]);
    if (f == TC_EXPORT_PARQUET) {
        tc_parquet_column cols[TC_EXPORT_METRICS_MAX + 5];
        tc_parquet_options po;
        size_t nc = 0;
        tc_parquet_options_default(&po);
        po.codec = c == TC_EXPORT_ZSTD ? TC_PQ_ZSTD : TC_PQ_SNAPPY;
        po.row_group_rows = TC_EXPORT_PQ_GROUP_ROWS;
        po.crypt = NULL; /* an export leaves the lake: plain, masked by its profile instead */
        cols[nc++] = (tc_parquet_column){"time", TC_PQ_TIMESTAMP_US, 0, TC_PQ_DICT_OFF};
        cols[nc++] = (tc_parquet_column){"device_id", TC_PQ_STRING, 0, TC_PQ_DICT_ON};
        for (size_t k = 0; k < nmetrics; k++)
            cols[nc++] = (tc_parquet_column){w->names[k], TC_PQ_DOUBLE, 1, TC_PQ_DICT_OFF};
        cols[nc++] = (tc_parquet_column){"tags", TC_PQ_STRING, 1, TC_PQ_DICT_ON};
        cols[nc++] = (tc_parquet_column){"kafka_partition", TC_PQ_INT32, 0, TC_PQ_DICT_OFF};
        cols[nc++] = (tc_parquet_column){"kafka_offset", TC_PQ_INT64, 0, TC_PQ_DICT_OFF};
        w->pq =
            tc_parquet_writer_new_sink(tc_export_pq_sink, w, cols, nc, &po, errstr, errstr_size);
        if (!w->pq) {
            tc_export_file_destroy(w);
            return NULL;
        }
        return w;
    }
    w->text = malloc(TC_EXPORT_TEXT_BUF);
    w->zbuf = c != TC_EXPORT_NONE ? malloc(TC_EXPORT_ZBUF) : NULL;
    if (!w->text || (c != TC_EXPORT_NONE && !w->zbuf)) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "export: out of memory");
        tc_export_file_destroy(w);
        return NULL;
    }
    if (c == TC_EXPORT_ZSTD && !(w->zstd = ZSTD_createCCtx())) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "export: out of memory (zstd)");
        tc_export_file_destroy(w);
        return NULL;
    }
    if (c == TC_EXPORT_GZIP) {
        /* windowBits 15 + 16: a gzip header and trailer, what gzip(1) and Python's gzip read. */
        if (deflateInit2(&w->gz, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "export: out of memory (gzip)");
            tc_export_file_destroy(w);
            return NULL;
        }
        w->gz_ready = 1;
    }
    return w;
}

/* CSV field: quoted when it holds a comma, a quote, CR or LF; quotes doubled. */
static tc_err tc_export_csv_str(tc_export_file *w, const char *s, size_t n, char *errstr,
                                size_t errstr_size)
{
    size_t q = 0, need;
    int quote = 0;
    tc_err err;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            q++;
        if (s[i] == '"' || s[i] == ',' || s[i] == '\r' || s[i] == '\n')
            quote = 1;
    }
    need = n + q + 2;
    if ((err = tc_export_room(w, need, errstr, errstr_size)) != TC_OK)
        return err;
    if (!quote) {
        tc_export_put(w, s, n);
        return TC_OK;
    }
    tc_export_put(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            tc_export_put(w, "\"", 1);
        tc_export_put(w, s + i, 1);
    }
    tc_export_put(w, "\"", 1);
    return TC_OK;
}

/* JSON string: escaped by the JSON writer into a scratch buffer, then appended. */
static tc_err tc_export_json_str(tc_export_file *w, tc_jbuf *scratch, const char *s, size_t n,
                                 char *errstr, size_t errstr_size)
{
    tc_err err;

    tc_jbuf_reset(scratch);
    tc_jbuf_append(scratch, "\"", 1);
    tc_jbuf_escaped(scratch, s, n);
    tc_jbuf_append(scratch, "\"", 1);
    if (tc_jbuf_failed(scratch)) {
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "export: a string does not fit the buffer");
        return TC_ERR_NOMEM;
    }
    if ((err = tc_export_room(w, scratch->len, errstr, errstr_size)) != TC_OK)
        return err;
    tc_export_put(w, scratch->data, scratch->len);
    return TC_OK;
}

static tc_err tc_export_header(tc_export_file *w, char *errstr, size_t errstr_size)
{
    tc_err err = tc_export_room(w, 64 + w->nmetrics * (TC_PQ_NAME_MAX + 3), errstr, errstr_size);

    if (err != TC_OK)
        return err;
    tc_export_put(w, "time,device_id", 14);
    for (size_t k = 0; k < w->nmetrics; k++) {
        tc_export_put(w, ",", 1);
        tc_export_put(w, w->names[k], strlen(w->names[k]));
    }
    tc_export_put(w, ",tags,kafka_partition,kafka_offset\r\n", 36);
    return TC_OK;
}

static tc_err tc_export_text_rows(tc_export_file *w, const tc_export_rows *r, char *errstr,
                                  size_t errstr_size)
{
    int csv = w->format == TC_EXPORT_CSV;
    char field[TC_EXPORT_FIELD_MAX];
    tc_jbuf scratch;
    tc_err err = TC_OK;

    if (csv && !w->header_done && (err = tc_export_header(w, errstr, errstr_size)) != TC_OK)
        return err;
    w->header_done = 1;
    tc_jbuf_init(&scratch, TC_EXPORT_TEXT_BUF / 2);
    for (size_t i = 0; i < r->n && err == TC_OK; i++) {
        size_t n;
        /* time, device: the fixed part */
        if ((err = tc_export_room(w, 2 * TC_EXPORT_FIELD_MAX, errstr, errstr_size)) != TC_OK)
            break;
        n = tc_time_format_rfc3339(r->time_us[i], field, sizeof(field));
        if (csv) {
            tc_export_put(w, field, n);
            tc_export_put(w, ",", 1);
            err = tc_export_csv_str(w, r->device[i].ptr, r->device[i].len, errstr, errstr_size);
        } else {
            tc_export_put(w, "{\"time\":\"", 9);
            tc_export_put(w, field, n);
            tc_export_put(w, "\",\"device_id\":", 14);
            err = tc_export_json_str(w, &scratch, r->device[i].ptr, r->device[i].len, errstr,
                                     errstr_size);
        }
        for (size_t k = 0; k < w->nmetrics && err == TC_OK; k++) {
            int present = !r->present[k] || r->present[k][i];
            size_t nl = strlen(w->names[k]);
            if ((err = tc_export_room(w, TC_EXPORT_FIELD_MAX + nl + 4, errstr, errstr_size)) !=
                TC_OK)
                break;
            if (csv) {
                tc_export_put(w, ",", 1);
            } else {
                tc_export_put(w, ",\"", 2);
                tc_export_put(w, w->names[k], nl);
                tc_export_put(w, "\":", 2);
            }
            if (present && r->metric[k] && !isnan(r->metric[k][i]) && !isinf(r->metric[k][i])) {
                n = (size_t)tc_fmt_double(field, sizeof(field), r->metric[k][i]);
                tc_export_put(w, field, n);
            } else if (!csv) {
                tc_export_put(w, "null", 4);
            }
        }
        if (err != TC_OK)
            break;
        if ((err = tc_export_room(w, 16, errstr, errstr_size)) != TC_OK)
            break;
        tc_export_put(w, csv ? "," : ",\"tags\":", csv ? 1 : 8);
        if (r->tags[i].ptr)
            err = csv ? tc_export_csv_str(w, r->tags[i].ptr, r->tags[i].len, errstr, errstr_size)
                      : tc_export_json_str(w, &scratch, r->tags[i].ptr, r->tags[i].len, errstr,
                                           errstr_size);
        else if (!csv)
            tc_export_put(w, "null", 4);
        if (err == TC_OK &&
            (err = tc_export_room(w, 2 * TC_EXPORT_FIELD_MAX, errstr, errstr_size)) == TC_OK)
            w->text_len += (size_t)snprintf(
                w->text + w->text_len, 2 * TC_EXPORT_FIELD_MAX,
                csv ? ",%d,%lld\r\n" : ",\"kafka_partition\":%d,\"kafka_offset\":%lld}\n",
                (int)r->partition[i], (long long)r->offset[i]);
    }
    tc_jbuf_free(&scratch);
    return err;
}

tc_err tc_export_file_write(tc_export_file *w, const tc_export_rows *r, char *errstr,
                            size_t errstr_size)
{
    if (w->format != TC_EXPORT_PARQUET)
        return tc_export_text_rows(w, r, errstr, errstr_size);
    tc_parquet_values cols[TC_EXPORT_METRICS_MAX + 5];
    size_t nc = 0;
    cols[nc++] = (tc_parquet_values){r->time_us, NULL};
    cols[nc++] = (tc_parquet_values){r->device, NULL};
    for (size_t k = 0; k < w->nmetrics; k++)
        cols[nc++] = (tc_parquet_values){r->metric[k], r->present[k]};
    cols[nc++] = (tc_parquet_values){r->tags, NULL};
    cols[nc++] = (tc_parquet_values){r->partition, NULL};
    cols[nc++] = (tc_parquet_values){r->offset, NULL};
    return tc_parquet_write(w->pq, cols, r->n, errstr, errstr_size);
}

tc_err tc_export_file_finish(tc_export_file *w, char hex[65], uint64_t *bytes, char *errstr,
                             size_t errstr_size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    tc_err err;

    if (w->format == TC_EXPORT_PARQUET) {
        err = tc_parquet_close(w->pq, errstr, errstr_size);
    } else {
        if (w->format == TC_EXPORT_CSV && !w->header_done &&
            (err = tc_export_header(w, errstr, errstr_size)) != TC_OK)
            return err;
        w->header_done = 1;
        err = tc_export_drain(w, 1, errstr, errstr_size);
    }
    if (err != TC_OK)
        return err;
    EVP_DigestFinal_ex(w->sha, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    *bytes = w->bytes;
    return TC_OK;
}

void tc_export_file_destroy(tc_export_file *w)
{
    if (!w)
        return;
    tc_parquet_writer_destroy(w->pq);
    if (w->gz_ready)
        deflateEnd(&w->gz);
    ZSTD_freeCCtx(w->zstd);
    EVP_MD_CTX_free(w->sha);
    free(w->text);
    free(w->zbuf);
    free(w);
}
