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
 *   - they only add: a partition of readings and of rollup_1m, a nullable double column, the
 *     rollups' columns and views over them. Nothing is dropped or renamed, and the number of
 *     columns is bounded.
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

/* The comment tc_ddl_rollup_views leaves on rollup_1m_live: a schema whose views have another is
 * given this release's at migrate (views made by an older one; remade only then, since CREATE OR
 * REPLACE VIEW locks out their readers). A new text with every change of the views. */
#define TC_DDL_ROLLUP_VIEWS "'rollup views 3: closed buckets bounded by W and H'"

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
    /* rollup_1m's partition of a day (migrate.c, step 8), from days_1m_from on: the day that
     * holds it starts there, an earlier one is rollup_1m_before's. Made with the day's readings,
     * and by the closing for any day of readings without one (a partition made by hand, a store
     * restored from before step 8); the advisory lock only when it makes one. */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_rollup_partition(day date) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " DECLARE f timestamptz; hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';"
    "  name text := 'rollup_1m_p' || to_char(day, 'YYYYMMDD');"
    " BEGIN"
    "  IF day IS NULL OR to_regclass(format('%s.%I', '@S', name)) IS NOT NULL"
    "   OR (SELECT relkind FROM pg_class WHERE oid = to_regclass('@S.rollup_1m'))"
    "   IS DISTINCT FROM 'p' THEN"
    "   RETURN;"
    "  END IF;"
    "  SELECT days_1m_from INTO f FROM @S.rollup_state;"
    "  IF f >= hi THEN RETURN; END IF;"
    "  PERFORM pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "  EXECUTE format('CREATE TABLE IF NOT EXISTS %s.%I PARTITION OF %s.rollup_1m"
    " FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 70)', '@S', name, '@S',"
    "   greatest(f, day::timestamp AT TIME ZONE 'UTC'), hi);"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_rollup_partition(date) FROM PUBLIC;"
    /* The days of readings' partitions, from their names (readings_pYYYYMMDD). */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_readings_days() RETURNS SETOF date"
    " LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$"
    " SELECT to_date(substr(c.relname, 11), 'YYYYMMDD') FROM pg_inherits i"
    "  JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '@S.readings'::regclass"
    "  AND c.relname ~ '^readings_p[0-9]{8}$'"
    " $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_readings_days() FROM PUBLIC;"
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
    "  PERFORM @S.tc_ddl_rollup_partition(day);"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_add_partition(date) FROM PUBLIC;"
    /* The views are locked before their tables, as a query over a view locks them, with a
     * lock_timeout: a long query on a view makes this give up (55P03) and the pipeline try again
     * at its next flush (migrate.c, tc_store_ensure_rollup_columns). The views are then made
     * again from the columns the tables have (tc_ddl_rollup_views). */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_add_rollup_columns(metrics text[]) RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    " SET lock_timeout = '" TC_STORE_ROLLUP_DDL_LOCK_TIMEOUT "' AS $fn$"
    " DECLARE m text; t text; adds text;"
    " BEGIN"
    "  IF metrics IS NULL OR cardinality(metrics) NOT BETWEEN 1 AND " TC_STORE_DDL_METRICS_MAX
    "  THEN RAISE EXCEPTION USING ERRCODE = 'invalid_object_definition', MESSAGE ="
    "   'refused: between 1 and " TC_STORE_DDL_METRICS_MAX " metric names at a time';"
    "  END IF;"
    /* "<m>_sum" must fit PostgreSQL's 63 bytes. */
    "  FOREACH m IN ARRAY metrics LOOP PERFORM @S.tc_ddl_check_metric(m, 59); END LOOP;"
    "  PERFORM pg_advisory_xact_lock(" TC_STORE_LOCK_PARTITIONS ");"
    "  LOCK TABLE @S.readings_1m, @S.readings_1h, @S.rollup_1m_live, @S.rollup_1h_live"
    "   IN ACCESS EXCLUSIVE MODE;"
    "  FOREACH t IN ARRAY ARRAY['rollup_1m', 'rollup_1h'] LOOP"
    "   SELECT string_agg(format('ADD COLUMN IF NOT EXISTS %I bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS %I double precision NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS %I double precision, ADD COLUMN IF NOT EXISTS %I double"
    " precision', x || '_n', x || '_sum', x || '_min', x || '_max'), ', ') INTO adds"
    "    FROM unnest(metrics) x;"
    "   EXECUTE format('ALTER TABLE %s.%I ', '@S', t) || adds;"
    "  END LOOP;"
    "  PERFORM @S.tc_ddl_rollup_views();"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_add_rollup_columns(text[]) FROM PUBLIC;"
    /*
     * Closed buckets. rollup_state holds W (materialized_1m, a minute) and H (materialized_1h, an
     * hour, H <= W). rollup_1m holds buckets before W only and rollup_1h buckets before H only:
     * the buckets from there on are computed by the views from what is stored below them
     * (rollup_1m from H, readings from W). tc_rollup_materialize moves W and H on, aggregating
     * the buckets they pass over once, set-based; the rollups' sink adds to the tables only the
     * groups below them (late readings). See store/sink_rollup.c for why this is exactly once.
     *
     * The fragments of the statements that name every metric of a rollup table (fixed and added
     * by schema evolution: an m with all of m_n, m_sum, m_min and m_max), in the order the table
     * got them, come from one function so that the views and the materialization agree.
     */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_cols(tbl text, kind text) RETURNS text"
    " LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$"
    " SELECT coalesce(string_agg(CASE kind"
    "  WHEN 'cols' THEN format(', %I, %I, %I, %I', c.m || '_n', c.m || '_sum', c.m || '_min',"
    "   c.m || '_max')"
    "  WHEN 'combine' THEN format(', sum(%I)::bigint, sum(%I), min(%I), max(%I)', c.m || '_n',"
    "   c.m || '_sum', c.m || '_min', c.m || '_max')"
    "  WHEN 'avg' THEN format(', %1$I / nullif(%2$I, 0) AS %3$I, %4$I, %5$I, %2$I',"
    "   c.m || '_sum', c.m || '_n', c.m || '_avg', c.m || '_min', c.m || '_max')"
    "  WHEN 'raw_bucket' THEN CASE WHEN c.raw THEN format(', count(r.%1$I), coalesce(sum(r.%1$I),"
    "   0), min(r.%1$I), max(r.%1$I)', c.m) ELSE ', 0::bigint, 0::double precision,"
    "   NULL::double precision, NULL::double precision' END"
    "  WHEN 'raw_row' THEN CASE WHEN c.raw THEN format(', (r.%1$I IS NOT NULL)::int::bigint,"
    "   coalesce(r.%1$I, 0), r.%1$I, r.%1$I', c.m) ELSE ', 0::bigint, 0::double precision,"
    "   NULL::double precision, NULL::double precision' END"
    "  WHEN 'upsert' THEN format(', %1$I = t.%1$I + EXCLUDED.%1$I, %2$I = t.%2$I + EXCLUDED.%2$I,"
    "   %3$I = least(t.%3$I, EXCLUDED.%3$I), %4$I = greatest(t.%4$I, EXCLUDED.%4$I)',"
    "   c.m || '_n', c.m || '_sum', c.m || '_min', c.m || '_max')"
    "  END, '' ORDER BY c.attnum), '')"
    " FROM (SELECT left(a.attname, -2) AS m, a.attnum, EXISTS (SELECT 1 FROM pg_attribute x"
    "  WHERE x.attrelid = '@S.readings'::regclass AND x.attnum > 0 AND NOT x.attisdropped"
    "  AND x.attname = left(a.attname, -2)) AS raw"
    "  FROM pg_attribute a WHERE a.attrelid = format('%s.%I', '@S', tbl)::regclass"
    "  AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\\_n'"
    "  AND (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid AND b.attnum > 0"
    "  AND NOT b.attisdropped AND b.attname IN (left(a.attname, -2) || '_sum',"
    "  left(a.attname, -2) || '_min', left(a.attname, -2) || '_max')) = 3) c"
    " $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_cols(text, text) FROM PUBLIC;"
    /* W and H for the views. Through a function, not a subquery: a stable expression is known
     * when the executor starts, so the days' partitions of readings and rollup_1m before it are
     * pruned then, whereas a subquery's value comes only during the run and every partition's
     * scan is set up first (a generic plan's: a device's month of hours took 2.0 against 0.55 ms
     * of execution with 34 days of each, EXPLAIN ANALYZE). Not inlined (SECURITY DEFINER, SET):
     * inlined, it would be a subquery again. Executable by every role that may read the views
     * (the views' callers need it); it shows two instants. */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_w() RETURNS timestamptz LANGUAGE sql STABLE"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " SELECT materialized_1m FROM @S.rollup_state $fn$;"
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_h() RETURNS timestamptz LANGUAGE sql STABLE"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " SELECT materialized_1h FROM @S.rollup_state $fn$;"
    /* The views: each rollup table's rows, then the buckets past it from what is below them.
     * The tables' rows are read below W and H only, which is all they hold (no answer changes):
     * so bounded, rollup_1m's partitions from W on (the days made ahead) are pruned when the
     * executor starts.
     * A view can only gain columns at its end (CREATE OR REPLACE VIEW): the fragments list the
     * metrics in the order the tables got them. Buckets are UTC minutes and hours, as the
     * pipeline makes them (rollup.c). */
    "CREATE OR REPLACE FUNCTION @S.tc_ddl_rollup_views() RETURNS void"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " DECLARE cm text := @S.tc_rollup_cols('rollup_1m', 'cols');"
    "  ch text := @S.tc_rollup_cols('rollup_1h', 'cols');"
    " BEGIN"
    "  EXECUTE format('CREATE OR REPLACE VIEW %1$s.rollup_1m_live AS"
    " SELECT device_id, bucket, n%2$s FROM %1$s.rollup_1m WHERE bucket < %1$s.tc_rollup_w()"
    " UNION ALL"
    " SELECT r.device_id, date_trunc(''minute'', r.time AT TIME ZONE ''UTC'') AT TIME ZONE"
    " ''UTC'', count(*)%3$s FROM %1$s.readings r"
    " WHERE r.time >= %1$s.tc_rollup_w() GROUP BY 1, 2',"
    "   '@S', cm, @S.tc_rollup_cols('rollup_1m', 'raw_bucket'));"
    "  EXECUTE format('CREATE OR REPLACE VIEW %1$s.rollup_1h_live AS"
    " SELECT device_id, bucket, n%2$s FROM %1$s.rollup_1h WHERE bucket < %1$s.tc_rollup_h()"
    " UNION ALL"
    " SELECT device_id, date_trunc(''hour'', bucket AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC'',"
    " sum(n)::bigint%3$s FROM (SELECT device_id, bucket, n%2$s FROM %1$s.rollup_1m"
    " WHERE bucket >= %1$s.tc_rollup_h() UNION ALL"
    " SELECT r.device_id, r.time, 1::bigint%4$s FROM %1$s.readings r"
    " WHERE r.time >= %1$s.tc_rollup_w()) x GROUP BY 1, 2',"
    "   '@S', ch, @S.tc_rollup_cols('rollup_1h', 'combine'),"
    "   @S.tc_rollup_cols('rollup_1h', 'raw_row'));"
    "  EXECUTE format('CREATE OR REPLACE VIEW %1$s.readings_1m AS SELECT device_id, bucket, n%2$s"
    " FROM %1$s.rollup_1m_live', '@S', @S.tc_rollup_cols('rollup_1m', 'avg'));"
    "  EXECUTE format('CREATE OR REPLACE VIEW %1$s.readings_1h AS SELECT device_id, bucket, n%2$s"
    " FROM %1$s.rollup_1h_live', '@S', @S.tc_rollup_cols('rollup_1h', 'avg'));"
    "  EXECUTE format('COMMENT ON VIEW %s.rollup_1m_live IS %L', '@S', " TC_DDL_ROLLUP_VIEWS ");"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_ddl_rollup_views() FROM PUBLIC;"
    /* W and H, locked FOR SHARE until the caller's transaction ends: the rollups' sink reads
     * them first in the transaction that writes its groups, so that no materialization moves
     * them until it has committed. Microseconds since 1970, the infinities as int64's ends. */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_thresholds() RETURNS text"
    " LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$"
    " SELECT string_agg(CASE WHEN t = '-infinity' THEN '-9223372036854775808'"
    "  WHEN t = 'infinity' THEN '9223372036854775807'"
    "  ELSE (extract(epoch FROM t) * 1000000)::bigint::text END, ' ' ORDER BY i)"
    " FROM (SELECT materialized_1m, materialized_1h FROM @S.rollup_state FOR SHARE) s,"
    "  LATERAL (VALUES (1, s.materialized_1m), (2, s.materialized_1h)) v(i, t)"
    " $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_thresholds() FROM PUBLIC;"
    /*
     * Close the minutes before `upto` (and the hours before its hour): W moves to upto's minute,
     * and the readings of [old W, new W) that the rollups' sink has passed over (below its marks,
     * group grp, topic top: it left their buckets to this) are aggregated into rollup_1m; H moves
     * to new W's hour, and the hours it passes over are aggregated from rollup_1m. Plain INSERTs:
     * no bucket at or past W (H) is in its table, so a conflict would be a bug, and says so.
     * FOR UPDATE waits for the sinks' transactions that read W and H, and keeps the next ones
     * waiting until this commits. Returns the one-minute buckets written.
     */
    /* lock_timeout: a flush of another member that is stuck (its marks' rows locked) holds W and
     * H FOR SHARE; the closing gives up, its writer goes on, and the next closing tries again --
     * rather than stall this member's rollups, then its whole pipeline, behind the other one.
     * work_mem: the minutes of a backlog closed at once are millions of groups; aggregated in
     * memory rather than in batches spilled to disk (PostgreSQL's default is 4 MB). The rows go
     * in in key order: inserting 484,529 one-minute buckets took 3.8 s so, 4.5 s in the hash
     * aggregate's order (psql, a 500,000-reading backfill, 10,000 devices every 60 s).
     * enable_sort: the planner cannot know that a closing has few groups (at most the devices
     * times the minutes); it guesses hundreds of thousands and sorts the readings to group them,
     * a sort spilled to disk: the one minute of 10,000 devices at 20,000 readings/s (1.2 M
     * readings) took 2.3 s so and 0.75 s hashed (EXPLAIN ANALYZE, tests of the closing's
     * statement on that minute). Aggregated in a CTE of its own, the groups are hashed, and only
     * they are sorted. jit: the disabled sort's cost would compile every closing, 0.2 s even for a
     * few readings, for no gain at this size. date_bin from a UTC midnight is the UTC minute
     * (hour), as date_trunc at 'UTC' is, without two time-zone conversions a reading. */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_materialize(grp text, top text, upto timestamptz)"
    " RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    " SET work_mem = '64MB' SET enable_sort = off SET jit = off"
    " SET lock_timeout = '" TC_STORE_CLOSE_LOCK_TIMEOUT "' AS $fn$"
    " DECLARE w0 timestamptz; h0 timestamptz; w1 timestamptz; h1 timestamptz; k bigint := 0;"
    " BEGIN"
    "  SELECT materialized_1m, materialized_1h INTO w0, h0 FROM @S.rollup_state FOR UPDATE;"
    "  w1 := date_trunc('minute', upto AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';"
    "  IF w1 IS NULL OR w0 IS NULL OR w1 <= w0 THEN RETURN 0; END IF;"
    "  h1 := greatest(h0, date_trunc('hour', w1 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');"
    /* W and H first: rollup_1m's trigger (api_sql.c, rollup_tag_open) keeps the minutes from H
     * on, and the hours this closes are not among them (a backfill's first closing would add up
     * its every hour there, to be deleted at the next statement). Nobody else sees them before
     * this commits, and the statements below read w0, w1, h0 and h1. */
    "  UPDATE @S.rollup_state SET materialized_1m = w1, materialized_1h = h1,"
    "   materialized_at = now();"
    "  IF h1 > h0 AND to_regclass('@S.device_tag_history') IS NOT NULL THEN"
    /* The hours closed now count toward the tags the devices have now (docs/store.md, "Hourly
     * rollup per site and tag"): a device whose tags changed since its last row of
     * device_tag_history gets a row from h0 on (the first one, from -infinity). Before the rows
     * of rollup_1m and rollup_1h: their triggers (api_sql.c) read it, and the minutes of the
     * hours left open count toward the tags recorded now as well. */
    "    INSERT INTO @S.device_tag_history AS t (device_id, since, tags)"
    "     SELECT l.device_id, CASE WHEN c.since IS NULL THEN '-infinity' ELSE h0 END, l.tags"
    "     FROM @S.latest_state l LEFT JOIN LATERAL (SELECT h.since, h.tags"
    "      FROM @S.device_tag_history h WHERE h.device_id = l.device_id"
    "      ORDER BY h.since DESC LIMIT 1) c ON true"
    "     WHERE c.since IS NULL OR c.tags IS DISTINCT FROM l.tags"
    "    ON CONFLICT (device_id, since) DO UPDATE SET tags = EXCLUDED.tags;"
    "  END IF;"
    "  PERFORM @S.tc_ddl_rollup_partition(d) FROM @S.tc_ddl_readings_days() d"
    "   WHERE (d + 1)::timestamp AT TIME ZONE 'UTC' > w0 AND d::timestamp AT TIME ZONE 'UTC' < w1;"
    "  EXECUTE format('WITH g AS MATERIALIZED (SELECT r.device_id,"
    " date_bin(''1 minute'', r.time, ''2000-01-01 00:00:00+00''::timestamptz) AS bucket,"
    " count(*)%3$s FROM %1$s.readings r JOIN %1$s.ingest_offsets o ON o.group_id = $1"
    " AND o.topic = $2 AND o.partition = r.kafka_partition AND r.kafka_offset < o.next_offset"
    " WHERE r.time >= $3 AND r.time < $4 GROUP BY 1, 2)"
    " INSERT INTO %1$s.rollup_1m (device_id, bucket, n%2$s) SELECT * FROM g ORDER BY 1, 2', '@S',"
    "   @S.tc_rollup_cols('rollup_1m', 'cols'), @S.tc_rollup_cols('rollup_1m', 'raw_bucket'))"
    "   USING grp, top, w0, w1;"
    "  GET DIAGNOSTICS k = ROW_COUNT;"
    "  IF h1 > h0 THEN"
    "   EXECUTE format('WITH g AS MATERIALIZED (SELECT device_id,"
    " date_bin(''1 hour'', bucket, ''2000-01-01 00:00:00+00''::timestamptz) AS bucket,"
    " sum(n)::bigint%3$s FROM %1$s.rollup_1m WHERE bucket >= $1 AND bucket < $2 GROUP BY 1, 2)"
    " INSERT INTO %1$s.rollup_1h (device_id, bucket, n%2$s) SELECT * FROM g ORDER BY 1, 2',"
    "    '@S', @S.tc_rollup_cols('rollup_1h', 'cols'), @S.tc_rollup_cols('rollup_1h', 'combine'))"
    "    USING h0, h1;"
    "  END IF;"
    "  RETURN k;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_materialize(text, text, timestamptz) FROM PUBLIC;"
    /*
     * The buckets a flush's aggregates left out when a closing passed over them before the flush
     * (store/sink_rollup.c: the sink does not aggregate readings whose bucket was open when it
     * took them). Called in the flush's transaction, after W and H were read FOR SHARE: adds the
     * readings of the flush's offset ranges (partition parts[i], offsets [froms[i], tos[i])) of
     * the minutes [m0, m1) to rollup_1m and of the hours [h0, h1) to rollup_1h, upserted as the
     * flush's own groups are; clamped to W and H, past which a bucket is never written. Readings
     * has no index on the offsets: the time range, narrowed by the caller to the buckets skipped,
     * is what is read. Returns the one-minute buckets written.
     */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_late(parts int[], froms bigint[], tos bigint[],"
    " m0 timestamptz, m1 timestamptz, h0 timestamptz, h1 timestamptz)"
    " RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
    " SET jit = off AS $fn$"
    " DECLARE w timestamptz; h timestamptz; k bigint := 0; t text; u text; lo timestamptz;"
    "  hi timestamptz;"
    " BEGIN"
    "  SELECT materialized_1m, materialized_1h INTO w, h FROM @S.rollup_state FOR SHARE;"
    "  FOREACH t IN ARRAY ARRAY['rollup_1m', 'rollup_1h'] LOOP"
    "   IF t = 'rollup_1m' THEN u := '1 minute'; lo := m0; hi := least(m1, w);"
    "   ELSE u := '1 hour'; lo := h0; hi := least(h1, h); END IF;"
    "   CONTINUE WHEN lo IS NULL OR hi IS NULL OR lo >= hi;"
    "   EXECUTE format('INSERT INTO %1$s.%2$I AS t (device_id, bucket, n%3$s)"
    " SELECT r.device_id, date_bin(%6$L, r.time, ''2000-01-01 00:00:00+00''::timestamptz),"
    " count(*)%4$s FROM %1$s.readings r JOIN unnest($1, $2, $3) o(p, f, e)"
    " ON r.kafka_partition = o.p AND r.kafka_offset >= o.f AND r.kafka_offset < o.e"
    " WHERE r.time >= $4 AND r.time < $5 GROUP BY 1, 2 ORDER BY 1, 2"
    " ON CONFLICT (device_id, bucket) DO UPDATE SET n = t.n + EXCLUDED.n%5$s', '@S', t,"
    "    @S.tc_rollup_cols(t, 'cols'), @S.tc_rollup_cols(t, 'raw_bucket'),"
    "    @S.tc_rollup_cols(t, 'upsert'), u::interval)"
    "    USING parts, froms, tos, lo, hi;"
    "   IF t = 'rollup_1m' THEN GET DIAGNOSTICS k = ROW_COUNT; END IF;"
    "  END LOOP;"
    "  RETURN k;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_late(int[], bigint[], bigint[], timestamptz, timestamptz,"
    " timestamptz, timestamptz) FROM PUBLIC;"
    /* Schemas migrated before the views took the open buckets from the readings, new ones
     * (migrate.c, step 8), and views made before the ones of this release (their comment). */
    "SELECT @S.tc_ddl_rollup_views() WHERE to_regclass('@S.rollup_1m_live') IS NULL"
    " OR obj_description(to_regclass('@S.rollup_1m_live'), 'pg_class') IS DISTINCT FROM "
    TC_DDL_ROLLUP_VIEWS ";"
    /* Every day of readings has its partition of rollup_1m (step 8 makes none). */
    "SELECT @S.tc_ddl_rollup_partition(d) FROM @S.tc_ddl_readings_days() d;";
/* clang-format on */

tc_err tc_store_ddl_migrate(tc_store *s, char *errstr, size_t errstr_size)
{
    size_t cap = sizeof(tc_ddl_sql) + sizeof(tc_ddl_plain_sql) + 128 * TC_IDENT_MAX;
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
