/*
 * sink_testfail.c -- a sink made only for the tests: it fails on command.
 *
 * A testing aid, not a feature (docs/design.md, "Writing a sink"): enabled by naming it in
 * pipeline.sinks, it proves the pipeline's generic paths for any sink -- back-off, catch-up from
 * its own mark while the other sinks skip, readiness and metrics per sink, exactly once.
 *
 * Control. testfail.control_file holds one word, read at every append, flush and recover: "ok"
 * (or no file), "fail-transient" (TC_ERR_IO: back off and recover), "fail-permanent"
 * (TC_ERR_INVALID: the run stops) or "busy" (a flush reports a write still under way and writes
 * nothing, as a sink whose writer thread has not finished: the next flush after the word changes
 * writes).
 *
 * Durability. testfail.record_file is the sink's "storage": a flush appends, in one write followed
 * by fsync, a line "row <partition> <offset>" per row it took and then "mark <partition> <next>"
 * per partition it advanced. The last mark of a partition is its durable mark (open and recover
 * read the file again). Fencing as every sink must (sink.h): under an flock of the file, a flush
 * goes on only while each partition's last mark in the file is the one this sink last read or
 * wrote; otherwise it writes nothing and fails with TC_ERR_FENCED. A test reads the rows back and
 * checks that every offset is there exactly once.
 *
 * Rows taken but not flushed live in memory (like a sink that aggregates), so a revocation that
 * cannot write, a recovery or a crash drops them and the pipeline reads them again.
 */
#include "process/sink_testfail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Partitions the sink tracks (the pipeline tracks no more: TC_TRACKED_MAX). */
#define TC_TESTFAIL_PARTS 16384
/* One line of the record file: "mark 16383 9223372036854775807\n". */
#define TC_TESTFAIL_LINE_MAX 64
/* The control word: "fail-permanent" and a newline. */
#define TC_TESTFAIL_WORD_MAX 32

typedef struct tc_testfail {
    const char *control;
    const char *record;
    int64_t durable[TC_TESTFAIL_PARTS]; /* last mark read or written, per partition */
    int64_t taken[TC_TESTFAIL_PARTS];   /* next offset appended (-1: no rows since the flush) */
    char *buf;                          /* the rows taken, as record lines */
    size_t len, cap;
    tc_sink_stats st;
    uint64_t buffered_rows;
} tc_testfail;

/* The control file's word into word ("" without a file). */
static void tc_testfail_word(const tc_testfail *t, char word[TC_TESTFAIL_WORD_MAX])
{
    FILE *f = t->control && *t->control ? fopen(t->control, "r") : NULL;

    word[0] = '\0';
    if (!f)
        return;
    if (!fgets(word, TC_TESTFAIL_WORD_MAX, f))
        word[0] = '\0';
    fclose(f);
    word[strcspn(word, " \r\n")] = '\0';
}

/* The control file's word: 0 ok, else the error it asks for (with errstr); the word itself in
 * word when not NULL. */
static tc_err tc_testfail_control(const tc_testfail *t, const char *what, char *word, char *errstr,
                                  size_t errstr_size)
{
    char own[TC_TESTFAIL_WORD_MAX];

    if (!word)
        word = own;
    tc_testfail_word(t, word);
    if (!strcmp(word, "fail-transient"))
        return tc_err_set(TC_ERR_IO, errstr, errstr_size,
                          "testfail: %s refused: %s says fail-transient", what, t->control);
    if (!strcmp(word, "fail-permanent"))
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size,
                          "testfail: %s refused: %s says fail-permanent", what, t->control);
    return TC_OK;
}

/* Read the last mark of every partition from the record file into marks[] (-1: none). */
static tc_err tc_testfail_read_marks(const tc_testfail *t, int64_t *marks, char *errstr,
                                     size_t errstr_size)
{
    char line[TC_TESTFAIL_LINE_MAX];
    FILE *f = fopen(t->record, "r");

    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++)
        marks[i] = TC_SINK_MARK_NONE;
    if (!f)
        return errno == ENOENT ? TC_OK
                               : tc_err_set(TC_ERR_IO, errstr, errstr_size, "testfail: %s: %s",
                                            t->record, strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        int part;
        long long next;
        if (sscanf(line, "mark %d %lld", &part, &next) == 2 && part >= 0 &&
            part < TC_TESTFAIL_PARTS)
            marks[part] = next;
    }
    fclose(f);
    return TC_OK;
}

static tc_err tc_testfail_reload(tc_testfail *t, const int32_t *parts, size_t n, int64_t *next,
                                 char *errstr, size_t errstr_size)
{
    tc_err err = tc_testfail_read_marks(t, t->durable, errstr, errstr_size);

    t->len = 0; /* what was only taken is dropped */
    t->buffered_rows = 0;
    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++)
        t->taken[i] = -1;
    for (size_t i = 0; err == TC_OK && i < n; i++)
        next[i] = parts[i] >= 0 && parts[i] < TC_TESTFAIL_PARTS ? t->durable[parts[i]]
                                                                : TC_SINK_MARK_NONE;
    return err;
}

static tc_err tc_testfail_open(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                               char *errstr, size_t errstr_size)
{
    tc_testfail *t = ctx;
    int64_t *marks = malloc(TC_TESTFAIL_PARTS * sizeof(*marks));
    tc_err err = marks ? tc_testfail_read_marks(t, marks, errstr, errstr_size) : TC_ERR_NOMEM;

    for (size_t i = 0; err == TC_OK && i < n; i++) {
        if (parts[i] < 0 || parts[i] >= TC_TESTFAIL_PARTS) {
            err =
                tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "testfail: partition %d", parts[i]);
            break;
        }
        t->durable[parts[i]] = marks[parts[i]];
        t->taken[parts[i]] = -1;
        next[i] = marks[parts[i]];
    }
    free(marks);
    return err;
}

static tc_err tc_testfail_append(void *ctx, const tc_sink_rows *rows, char *errstr,
                                 size_t errstr_size)
{
    tc_testfail *t = ctx;
    tc_err err = tc_testfail_control(t, "append", NULL, errstr, errstr_size);

    if (err != TC_OK)
        return err;
    for (size_t i = 0; i < rows->batch->n; i++) {
        if (!rows->mask[i])
            continue;
        if (t->cap - t->len < TC_TESTFAIL_LINE_MAX) {
            size_t cap = t->cap ? t->cap * 2 : 65536;
            char *grown = realloc(t->buf, cap);
            if (!grown)
                return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "testfail: out of memory");
            t->buf = grown;
            t->cap = cap;
        }
        t->len += (size_t)snprintf(t->buf + t->len, t->cap - t->len, "row %d %lld\n",
                                   rows->batch->partition[i], (long long)rows->batch->offset[i]);
        t->buffered_rows++;
        t->st.rows++;
    }
    for (size_t i = 0; i < rows->nadvance; i++) {
        int32_t part = rows->advance[i].partition;
        if (part >= 0 && part < TC_TESTFAIL_PARTS)
            t->taken[part] = rows->advance[i].next_offset;
    }
    return TC_OK;
}

/* The mark lines of a flush, appended to the rows' lines (NULL when out of memory). */
static char *tc_testfail_chunk(tc_testfail *t, size_t *len)
{
    size_t nmarks = 0, cap;
    char *out;

    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++)
        nmarks += t->taken[i] >= 0;
    cap = t->len + nmarks * TC_TESTFAIL_LINE_MAX + 1;
    out = malloc(cap);
    if (!out)
        return NULL;
    if (t->len)
        memcpy(out, t->buf, t->len);
    *len = t->len;
    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++) {
        if (t->taken[i] >= 0)
            *len += (size_t)snprintf(out + *len, cap - *len, "mark %zu %lld\n", i,
                                     (long long)t->taken[i]);
    }
    return out;
}

static tc_err tc_testfail_flush(void *ctx, int64_t now_us, int force, int *busy, char *errstr,
                                size_t errstr_size)
{
    tc_testfail *t = ctx;
    int64_t *marks = NULL;
    char *chunk = NULL;
    size_t len = 0;
    int fd = -1;
    char word[TC_TESTFAIL_WORD_MAX];
    tc_err err;

    (void)now_us;
    (void)force;
    *busy = 0;
    err = tc_testfail_control(t, "flush", word, errstr, errstr_size);
    if (err != TC_OK)
        return err;
    if (!strcmp(word, "busy")) {
        *busy = 1;
        return TC_OK;
    }
    chunk = tc_testfail_chunk(t, &len);
    marks = malloc(TC_TESTFAIL_PARTS * sizeof(*marks));
    if (!chunk || !marks) {
        err = tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "testfail: out of memory");
        goto out;
    }
    if (len == 0)
        goto out;
    fd = open(t->record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "testfail: %s: %s", t->record,
                         strerror(errno));
        goto out;
    }
    /* Fencing: every partition's mark must still be where this sink last saw it. */
    if ((err = tc_testfail_read_marks(t, marks, errstr, errstr_size)) != TC_OK)
        goto out;
    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++) {
        if (t->taken[i] >= 0 && marks[i] != t->durable[i]) {
            err = tc_err_set(TC_ERR_FENCED, errstr, errstr_size,
                             "testfail: partition %zu moved on to %lld by another member (this "
                             "one last saw %lld)",
                             i, (long long)marks[i], (long long)t->durable[i]);
            goto out;
        }
    }
    if (write(fd, chunk, len) != (ssize_t)len || fsync(fd) != 0) {
        err = tc_err_set(TC_ERR_IO, errstr, errstr_size, "testfail: writing %s: %s", t->record,
                         strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++) {
        if (t->taken[i] >= 0)
            t->durable[i] = t->taken[i];
        t->taken[i] = -1;
    }
    t->st.rows_durable += t->buffered_rows;
    t->st.flushes++;
    t->buffered_rows = 0;
    t->len = 0;
out:
    if (fd >= 0)
        close(fd); /* releases the lock */
    free(chunk);
    free(marks);
    return err;
}

static int64_t tc_testfail_durable(void *ctx, int32_t partition)
{
    const tc_testfail *t = ctx;

    return partition >= 0 && partition < TC_TESTFAIL_PARTS ? t->durable[partition]
                                                           : TC_SINK_MARK_NONE;
}

static tc_err tc_testfail_recover(void *ctx, const int32_t *parts, size_t n, int64_t *next,
                                  char *errstr, size_t errstr_size)
{
    tc_testfail *t = ctx;
    tc_err err = tc_testfail_control(t, "recover", NULL, errstr, errstr_size);

    return err == TC_OK ? tc_testfail_reload(t, parts, n, next, errstr, errstr_size) : err;
}

static tc_err tc_testfail_revoke(void *ctx, const int32_t *parts, size_t n, int commit,
                                 char *errstr, size_t errstr_size)
{
    tc_testfail *t = ctx;

    (void)parts;
    (void)n;
    (void)errstr;
    (void)errstr_size;
    if (!commit) { /* the rows are in one buffer: drop them all, the others are read again too */
        t->len = 0;
        t->buffered_rows = 0;
        for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++)
            t->taken[i] = -1;
    }
    return TC_OK;
}

static void tc_testfail_stats(void *ctx, tc_sink_stats *out)
{
    const tc_testfail *t = ctx;

    *out = t->st;
    out->pending = t->buffered_rows;
}

static void tc_testfail_close(void *ctx)
{
    tc_testfail *t = ctx;

    if (t)
        free(t->buf);
    free(t);
}

static const tc_sink_ops tc_testfail_ops = {
    .name = "testfail",
    .open = tc_testfail_open,
    .append = tc_testfail_append,
    .flush = tc_testfail_flush,
    .durable = tc_testfail_durable,
    .recover = tc_testfail_recover,
    .revoke = tc_testfail_revoke,
    .stats = tc_testfail_stats,
    .close = tc_testfail_close,
};

tc_err tc_sink_testfail_new(const tc_config *cfg, tc_sink *out, char *errstr, size_t errstr_size)
{
    tc_testfail *t;

    if (!cfg->testfail_record_file || !*cfg->testfail_record_file)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "pipeline.sinks names testfail: set testfail.record_file (and "
                          "testfail.control_file) too");
    t = calloc(1, sizeof(*t));
    if (!t)
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "testfail: out of memory");
    t->control = cfg->testfail_control_file;
    t->record = cfg->testfail_record_file;
    for (size_t i = 0; i < TC_TESTFAIL_PARTS; i++) {
        t->durable[i] = TC_SINK_MARK_NONE;
        t->taken[i] = -1;
    }
    out->ops = &tc_testfail_ops;
    out->ctx = t;
    snprintf(out->name, sizeof(out->name), "%s", tc_testfail_ops.name);
    return TC_OK;
}
