/*
 * simulator.h -- a device fleet that produces realistic readings to Kafka.
 *
 * Each simulated device has its own smooth series (a daily sine plus slow drift and small noise for
 * temperature, humidity and pressure; a battery that drains; a fixed position with GPS jitter) and
 * reports at a cadence with jitter, keyed by device_id. A chosen share of messages is invalid, of
 * several kinds (malformed JSON, missing fields, out-of-range values, bad timestamps, invalid
 * UTF-8, ...), so the dead-letter path is exercised too. The same seed and start time produce the
 * same bytes.
 *
 * Valid readings are JSON text, or, with avro_schema_id set, Confluent-framed Avro binary written
 * with tc_sim_avro_schema() (the caller registers that schema and passes its id). Invalid readings
 * stay JSON in both cases: a topic may carry both encodings, and most invalid kinds (a bad UTF-8
 * byte, a NaN literal, a truncated object) only exist as text.
 */
#ifndef TC_INGEST_SIMULATOR_H
#define TC_INGEST_SIMULATOR_H

#include <stdint.h>
#include <stdio.h>

#include "core/config.h"
#include "core/error.h"
#include "ingest/sim_anomaly.h"

typedef struct tc_sim_options {
    int devices;
    uint64_t count;
    double rate;          /* readings per second; 0 = as fast as possible */
    double invalid_ratio; /* 0..1 */
    uint64_t seed;
    int64_t start_us;       /* event time of the first round; 0 = derived from now */
    int64_t cadence_ms;     /* interval between two readings of one device */
    int32_t avro_schema_id; /* > 0: valid readings are Avro with this registry id; 0: JSON */
    const tc_sim_anomalies *anomalies; /* labelled anomalies to inject (sim_anomaly.h), or NULL */
    FILE *truth; /* where tc_simulate writes their ground truth as JSON lines, or NULL */
    /* Number of the first device's id: device k is sensor-%05llu of first_device + k (its values
     * are those of device k whatever it is called), so a second fleet can join a first one
     * without taking over its devices' ids. */
    uint64_t first_device;
} tc_sim_options;

/* One reading's values as sent (rounded as the JSON text has them), before formatting. */
typedef struct tc_sim_reading {
    uint64_t device;  /* index: the id is sensor-%05llu */
    int64_t step;     /* the device's reading number */
    int64_t t_us;     /* event time */
    double metric[6]; /* temperature, humidity, pressure, battery, latitude, longitude */
    int invalid_kind; /* -1 for a valid reading */
} tc_sim_reading;

/* Reading i of the fleet (device i % devices, step i / devices), anomalies applied. */
void tc_sim_reading_at(const tc_sim_options *opt, uint64_t i, int64_t start_us, tc_sim_reading *r);
/* Steps of the run: readings per device, rounded up. */
int64_t tc_sim_steps(const tc_sim_options *opt);
/* Uniform in [0, 1) from (seed, a, b, salt): the counter-based hash every value comes from. */
double tc_sim_unit(uint64_t seed, uint64_t a, uint64_t b, uint64_t salt);

/* The Avro writer schema of valid readings (record io.thermocline.sim.Reading, JSON text). */
const char *tc_sim_avro_schema(void);

/* Produce the readings to cfg->kafka_topic and write a JSON summary to report. */
tc_err tc_simulate(const tc_config *cfg, const tc_sim_options *opt, FILE *report,
                   volatile int *stop, char *errstr, size_t errstr_size);

/* Format reading i of the fleet into buf (cap bytes): JSON text, or Confluent-framed Avro for a
 * valid reading when opt->avro_schema_id is set (0 if that does not fit in cap). Returns its length
 * and sets *invalid_kind to -1 for a valid reading or the kind index otherwise. Exposed for tests
 * and benchmarks. */
size_t tc_sim_format(const tc_sim_options *opt, uint64_t i, int64_t start_us, char *buf, size_t cap,
                     int *invalid_kind);

/* Name of an invalid kind, e.g. "truncated_json"; NULL past the last one. */
const char *tc_sim_invalid_name(int kind);

#endif
