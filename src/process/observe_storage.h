/*
 * observe_storage.h -- storage figures for /metrics, sampled on a timer by a thread of their own.
 *
 * What they cost (a few catalogue queries on a connection of their own, a walk of the lake's
 * folders) is paid once every http.storage_sample_s, never per scrape: a scrape copies the last
 * sample's text. Figures: PostgreSQL table sizes of postgres.schema (partitions and TimescaleDB
 * chunks summed into their table) and the database's size; TimescaleDB's background jobs of the
 * schema (failures, last success, next start); the lake's Parquet bytes and files and its
 * filesystem's free and total bytes. A failed sample keeps the previous figures, counts an error
 * and logs once per outage.
 */
#ifndef TC_PROCESS_OBSERVE_STORAGE_H
#define TC_PROCESS_OBSERVE_STORAGE_H

#include "core/config.h"
#include "core/error.h"
#include "core/json.h"

/* Bytes of one sample's text (a few hundred tables and jobs fit). */
#define TC_STORAGE_TEXT_MAX (256 * 1024)

typedef struct tc_storage_sampler tc_storage_sampler;

/* Start sampling (the first sample is taken at once, in the thread). cfg is borrowed. NULL with
 * errstr when the thread cannot start. */
tc_storage_sampler *tc_storage_sampler_new(const tc_config *cfg, char *errstr, size_t errstr_size);

/* Append the last sample's metric families (Prometheus text) to b. */
void tc_storage_sampler_write(tc_storage_sampler *s, tc_jbuf *b);

void tc_storage_sampler_destroy(tc_storage_sampler *s);

/* Text helpers of the metrics pages (here and in observe.c). A line longer than 1 KiB is cut. */
void tc_observe_printf(tc_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A label value, escaped as the text format wants (backslash, double quote, newline). */
void tc_observe_label(tc_jbuf *b, const char *v);

#endif
