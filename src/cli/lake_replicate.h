/*
 * lake_replicate.h -- the `lake replicate` subcommand's body, called by cmd_lake.c once it has
 * parsed the options and loaded the configuration (see lake_replicate.c).
 */
#ifndef TC_CLI_LAKE_REPLICATE_H
#define TC_CLI_LAKE_REPLICATE_H

typedef struct tc_lake_replicate_cli_options {
    const char *to;      /* the replica's root */
    int checksum;        /* compare files present on both sides by checksum */
    long interval_s;     /* 0: replicate once; else every interval_s seconds until SIGTERM */
    const char *listen;  /* with interval_s: serve /metrics and /healthz here; NULL or "": not */
    double max_mb_per_s; /* bandwidth cap (the link to another region is shared); 0 = none */
} tc_lake_replicate_cli_options;

/* Returns the exit code. */
int tc_lake_replicate_cli(const char *lake_dir, const tc_lake_replicate_cli_options *co);

#endif
