/*
 * ddl.c -- the pipeline's run-time DDL as functions of the owner role; see tc_store_ddl_migrate.
 *
 * The pipeline changes the store's shape while it runs: a daily partition ahead of time (plain
 * mode), a column of readings for each metric new to the stream, the four columns of such a
 * metric in each rollup table and the rollup views that show them (plain mode). It should not own
 * the schema for that: a role that may ALTER readings may also drop it. So each of these changes
 * is a SECURITY DEFINER function that `migrate` creates as the owner (postgres.owner_dsn), and the
 * ingest role gets EXECUTE on them and nothing else of DDL (its grants: api_sql.c,
 * tc_api_ingest_sql). A function is the narrowest path that still does the job:
 *
 *   - search_path is pinned (pg_catalog, then pg_temp last: the caller's temporary objects cannot
 *     stand in for a catalog function or operator) and every object is schema-qualified;
 *   - the arguments are checked inside, whatever the caller checked: a metric name must follow the
 *     rule of the schema catalog and of the batch (tc_batch_dyn_column: [a-z_][a-z0-9_]*, at most
 *     63 bytes, not a column of the fixed schema), a day must be near today; anything else raises
 *     an error with the value and the rule, and changes nothing. Its SQLSTATE is of class 42
 *     (invalid_name 42602, invalid_object_definition 42P17), never 22 or 23: those would make the
 *     pipeline isolate the batch's rows into dead letters (tc_store_refused_rows), whereas a
 *     refusal here is the same for every row -- the pipeline stops, and nothing is lost;
 *   - identifiers reach EXECUTE only through format('%I') (the schema, fixed when the function is
 *     made, through %s as the quoted identifier tc_store_sql made: it can hold no quote);
 *   - they only add: a partition of readings, a nullable double column, the rollups' columns and
 *     views over them. Nothing is dropped or renamed, and the number of columns is bounded.
 *
 * EXECUTE is revoked from PUBLIC at every migrate (a new function is executable by everyone
 * until then, inside the migration's transaction only). The functions take the partitions'
 * advisory lock themselves, so concurrent pipelines and retention stay serialised as before.
 * Everything is CREATE OR REPLACE and runs at every migrate: an upgrade changes a body in place.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

/* The rule of a metric column (tc_batch_dyn_column in core/batch.c, which the schema catalog and
 * the decoders use): the fixed columns of readings are not metrics, whatever the stream says. */
/* clang-format off */
#define TC_DDL_FIXED_COLUMNS                                                                       \
    "'time', 'device_id', 'tags', 'extra', 'kafka_partition', 'kafka_offset', 'ingested_at',"     \
    " 'schema_version', 'temperature', 'humidity', 'pressure', 'battery', 'latitude', 'longitude'"

/* Both modes: the check and the metric columns of readings. */
static const char tc_ddl_sql[] =
    "BEGIN; SELECT pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_check_metric(metric text, max_bytes integer)"
    " RETURNS void LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$"
    " BEGIN"
    "  IF metric IS NULL OR metric !~ '^[a-z_][a-z0-9_]*$' OR octet_length(metric) > max_bytes"
    "  THEN RAISE EXCEPTION USING ERRCODE = 'invalid_name', MESSAGE = format("
    "   'refused metric name %s: a metric column is named [a-z_][a-z0-9_]*, at most %s bytes',"
    "   coalesce(quote_literal(left(metric, 80)), 'NULL'), max_bytes),"
    "   HINT = 'the pipeline sends only names its schema catalog accepted; see docs/security.md';"
    "  END IF;"
    "  IF metric = ANY (ARRAY[" TC_DDL_FIXED_COLUMNS "]) THEN"
    "   RAISE EXCEPTION USING ERRCODE = 'invalid_name', MESSAGE = format("
    "    'refused metric name %L: a column of the fixed schema of readings', metric);"
    "  END IF;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_check_metric(text, integer) FROM PUBLIC;"
    /* readings: a nullable double, a catalog-only change (store.md, "Schema evolution"). */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_add_metric_columns(metrics text[]) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " DECLARE m text; have integer;"
    " BEGIN"
    "  IF metrics IS NULL OR cardinality(metrics) NOT BETWEEN 1 AND " TC_STORE_DDL_METRICS_MAX
    "  THEN RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition', MESSAGE ="
    "   'refused: between 1 and " TC_STORE_DDL_METRICS_MAX " metric names at a time';"
    "  END IF;"
    "  FOREACH m IN ARRAY metrics LOOP PERFORM @S.tc_ddl_check_metric(m, 63); END LOOP;"
    "  PERFORM pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "  SELECT count(*) INTO have FROM pg_attribute WHERE attrelid = '@S.readings'::regclass"
    "   AND attnum > 0 AND NOT attisdropped;"
    "  IF have + cardinality(metrics) > " TC_STORE_DDL_COLUMNS_MAX " THEN"
    "   RAISE EXCEPTION USING ERRCODE = 'program_limit_exceeded', MESSAGE = format("
    "    'refused: readings has %s columns, and at most " TC_STORE_DDL_COLUMNS_MAX
    " are added through this function', have);"
    "  END IF;"
    "  FOREACH m IN ARRAY metrics LOOP"
    "   EXECUTE format('ALTER TABLE %s.readings ADD COLUMN IF NOT EXISTS %I double precision',"
    "    '@S', m);"
    "  END LOOP;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_add_metric_columns(text[]) FROM PUBLIC;";

/* Plain mode: daily partitions, and the rollups' columns with their views. */
static const char tc_ddl_plain_sql[] =
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_add_partition(day date) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " BEGIN"
    "  IF day IS NULL OR day < date '1970-01-01' OR day > current_date + "
    TC_STORE_DDL_DAYS_AHEAD_MAX " THEN"
    "   RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition', MESSAGE = format("
    "    'refused partition day %s: from 1970-01-01 to " TC_STORE_DDL_DAYS_AHEAD_MAX
    " days after today', coalesce(day::text, 'NULL'));"
    "  END IF;"
    "  PERFORM pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "  EXECUTE format('CREATE TABLE IF NOT EXISTS %s.%I PARTITION OF %s.readings"
    " FOR VALUES FROM (%L) TO (%L)', '@S', 'readings_p' || to_char(day, 'YYYYMMDD'), '@S',"
    "   to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00', to_char(day + 1, 'YYYY-MM-DD') ||"
    "   ' 00:00:00+00');"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_add_partition(date) FROM PUBLIC;"
    /* The views are locked before their tables, as a query over a view locks them, with a
     * lock_timeout: a long query on a view makes this give up (55P03) and the pipeline try again
     * at its next flush (migrate.c, tc_store_ensure_rollup_columns). A view can only gain columns
     * at its end, so its select list is made from the columns the table has, in their order. */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_add_rollup_columns(metrics text[]) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    " SET lock_timeout = '" TC_STORE_ROLLUP_DDL_LOCK_TIMEOUT "' AS $fn$"
    " DECLARE m text; t text[]; adds text; cols text;"
    " BEGIN"
    "  IF metrics IS NULL OR cardinality(metrics) NOT BETWEEN 1 AND " TC_STORE_DDL_METRICS_MAX
    "  THEN RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition', MESSAGE ="
    "   'refused: between 1 and " TC_STORE_DDL_METRICS_MAX " metric names at a time';"
    "  END IF;"
    /* "<m>_sum" must fit PostgreSQL's 63 bytes. */
    "  FOREACH m IN ARRAY metrics LOOP PERFORM @S.tc_ddl_check_metric(m, 59); END LOOP;"
    "  PERFORM pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "  LOCK TABLE @S.readings_1m, @S.readings_1h IN ACCESS EXCLUSIVE MODE;"
    "  FOREACH t SLICE 1 IN ARRAY ARRAY[['rollup_1m', 'readings_1m'], ['rollup_1h',"
    "   'readings_1h']] LOOP"
    "   SELECT string_agg(format('ADD COLUMN IF NOT EXISTS %I bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS %I double precision NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS %I double precision, ADD COLUMN IF NOT EXISTS %I double"
    " precision', x || '_n', x || '_sum', x || '_min', x || '_max'), ', ') INTO adds"
    "    FROM unnest(metrics) x;"
    "   EXECUTE format('ALTER TABLE %s.%I ', '@S', t[1]) || adds;"
    "   SELECT string_agg(format(', %1$I / nullif(%2$I, 0) AS %3$I, %4$I, %5$I, %2$I',"
    "    c.m || '_sum', c.m || '_n', c.m || '_avg', c.m || '_min', c.m || '_max'), ''"
    "    ORDER BY c.attnum) INTO cols FROM (SELECT left(a.attname, -2) AS m, a.attnum"
    "    FROM pg_attribute a WHERE a.attrelid = format('%s.%I', '@S', t[1])::regclass"
    "    AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\\_n') c"
    "    WHERE (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = format('%s.%I', '@S',"
    "    t[1])::regclass AND b.attnum > 0 AND NOT b.attisdropped AND b.attname IN"
    "    (c.m || '_sum', c.m || '_min', c.m || '_max')) = 3;"
    "   EXECUTE format('CREATE OR REPLACE VIEW %s.%I AS SELECT device_id, bucket, n%s"
    " FROM %s.%I', '@S', t[2], cols, '@S', t[1]);"
    "  END LOOP;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_add_rollup_columns(text[]) FROM PUBLIC;";
/* clang-format on */

tc_err tc_store_ddl_migrate(tc_store *s, char *errstr, size_t errstr_size)
{
    size_t cap = sizeof(tc_ddl_sql) + sizeof(tc_ddl_plain_sql) + 64 * TC_IDENT_MAX;
    char *tmpl = malloc(cap), *sql = malloc(cap);
    tc_err err;

    if (!tmpl || !sql) {
        free(tmpl);
        free(sql);
        return tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "out of memory building SQL");
    }
    snprintf(tmpl, cap, "%s%s COMMIT", tc_ddl_sql,
             s->mode == TC_STORE_PLAIN ? tc_ddl_plain_sql : "");
    if (tc_store_sql(s, tmpl, sql, cap) < 0)
        err = tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "statement too long");
    else
        err = tc_store_exec(s, sql, "create the run-time DDL functions", errstr, errstr_size);
    if (err != TC_OK)
        tc_store_rollback(s, "the run-time DDL functions");
    free(tmpl);
    free(sql);
    return err;
}

tc_err tc_store_ddl_call(tc_store *s, const char *tmpl, const char *param, const char *what,
                         char *errstr, size_t errstr_size)
{
    char sql[TC_SQL_MAX], msg[TC_ERRSTR_MAX];
    PGresult *res;
    tc_err err = TC_OK;

    if (tc_store_sql(s, tmpl, sql, sizeof(sql)) < 0)
        return tc_err_set(TC_ERR_INVALID, errstr, errstr_size, "could not %s: statement too long",
                          what);
    res = PQexecParams(s->conn, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        err = tc_store_classify(s, res);
        /* undefined_function, insufficient_privilege: what to do is not in PostgreSQL's words. */
        tc_err_set(err, errstr, errstr_size, "could not %s: %s%s", what,
                   tc_store_pgmsg(s, res, msg, sizeof(msg)),
                   !strcmp(s->sqlstate, "42883") || !strcmp(s->sqlstate, "42501")
                       ? " -- the pipeline changes the store's tables only through the functions"
                         " `thermocline migrate` makes as their owner (postgres.owner_dsn) and"
                         " grants to thermocline_ingest: run it (docs/security.md)"
                       : "");
    }
    PQclear(res);
    return err;
}
