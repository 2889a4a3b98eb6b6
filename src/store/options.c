/*
 * options.c -- the store's options from the configuration, in one place for every caller.
 */
#include "store/store.h"

void tc_store_options_from_config(tc_store_options *so, const tc_config *cfg)
{
    *so = (tc_store_options){
        .dsn = cfg->pg_dsn,
        .schema = cfg->pg_schema,
        .group = cfg->kafka_group,
        .topic = cfg->kafka_topic,
        .partition_days_ahead = (int)cfg->pg_partition_days_ahead,
        .timescaledb = cfg->pg_timescaledb,
        .chunk_interval_s = cfg->pg_chunk_interval_s,
        .compress_after_s = cfg->pg_compress_after_s, /* 0: never, in both */
        .retention_s = cfg->retention_max_age_s,
        .synchronous_commit = cfg->pg_synchronous_commit != 0,
        .rollups = cfg->pg_rollups != 0,
    };
}

void tc_store_options_for_owner(tc_store_options *so, const tc_config *cfg)
{
    tc_store_options_from_config(so, cfg);
    if (*cfg->pg_owner_dsn) {
        so->dsn = cfg->pg_owner_dsn;
        so->dsn_key = "postgres.owner_dsn";
    }
}
