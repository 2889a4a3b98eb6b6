/*
 * api_sql.c -- the curated SQL interface, its roles and the audit log; see api_sql.h.
 *
 * Why views and SQL functions, and not the tables with row-level security policies: a policy on
 * readings would also bind the pipeline (or need FORCE and exemptions), the masking of a column
 * cannot be a policy, and the storage tables are free to change. So the roles are granted nothing
 * of the store's schema; the api views are owned by the migrating role and read the tables with
 * its rights, and each view filters the rows (the device's site against the caller's sites) and
 * masks the personal columns itself. They are security_barrier views: a caller's function in a
 * WHERE clause cannot see a row before the view's own filter dropped it (only leakproof
 * operators, such as text and timestamptz comparisons, are pushed down -- which keeps the indexes
 * usable). The functions are LANGUAGE sql, STABLE and not SECURITY DEFINER over those views, so
 * PostgreSQL inlines them into the caller's query (a LIMIT or a keyset WHERE reaches the scan).
 * fleet() is the exception: PL/pgSQL, since its answer is an aggregate (nothing to push into a
 * scan) and planning both resolutions' branches at every call cost half of it; it runs one, with
 * a plan kept per connection, and without JIT: on a store of 50 M readings its generic plan's
 * estimate passes jit_above_cost, and compiling it cost 0.5-1 s of a call that runs in 30 ms.
 *
 * Who may see what is decided from the role PostgreSQL runs the query as (current_user, after a
 * server's SET ROLE) and from the caller's sites: all for thermocline_admin; the JWT claim "sites"
 * in request.jwt.claims when the login role is a member of thermocline_authenticator (only a
 * server's login role may be, since anyone can set that setting); otherwise the rows of
 * api.site_access for the login role. A site "*" means all sites.
 *
 * Everything is CREATE OR REPLACE, or IF NOT EXISTS, and runs at every `migrate` (the
 * configuration -- tenant tag, personal columns -- is baked into the definitions): a change of
 * the contract that is not an addition is a new TC_API_VERSION, whose migration drops the old
 * objects first.
 *
 * Templates: @S, @A and @U are the store's, the api's and the audit's schemas (quoted; @UL the
 * last as a literal), @R the schema registry's schema (a literal), @T the
 * tenant tag (a literal), @Q the personal columns (a text[] literal), @V what a viewer sees of
 * them (1 rounded, 0 hidden), @P{alias.column} the column as the caller may see it: itself, or
 * masked when the column (its name without _avg, _min or _max) is personal; @M{expr} masked.
 */
#include "store/api_sql.h"

#include "core/json.h"
#include "core/mask.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary but fixed: after the store's 7311001-7311002 and the quality monitor's 7311003. */
#define TC_API_LOCK "7311004"
/* The whole migration's SQL is about 30 KiB; a bound far above it. */
#define TC_API_SQL_MAX (1024 * 1024)
/* The personal columns can only be among the fixed metrics. */
#define TC_API_METRIC_COUNT 6
static const char *const tc_api_metrics[TC_API_METRIC_COUNT] = {
    "temperature", "humidity", "pressure", "battery", "latitude", "longitude"};

#define TC_API_METRICS(X) X(temperature) X(humidity) X(pressure) X(battery) X(latitude) X(longitude)
/* Per metric: a raw reading's column; a rollup's avg, min, max and count; a weighted mean. */
#define TC_API_RAW(m)  ", @P{r." #m "} AS " #m
#define TC_API_RAWX(m) ", r." #m
#define TC_API_AGG(m)                                                                              \
    ", @P{x." #m "_avg} AS " #m "_avg, @P{x." #m "_min} AS " #m "_min, @P{x." #m "_max} AS " #m    \
    "_max, x." #m "_n"
#define TC_API_AGGX(m) ", x." #m "_avg"
#define TC_API_MEAN(m) ", sum(x." #m "_avg * x." #m "_n) / nullif(sum(x." #m "_n), 0)"
#define TC_API_OUT(m)  ", " #m " double precision"
#define TC_API_OUTA(m) ", " #m "_avg double precision"

/* The caller's sites allow the device of column dev (latest_state holds its tags). */
#define TC_API_SITE_OK(dev)                                                                        \
    " EXISTS (SELECT 1 FROM @S.latest_state s_ WHERE s_.device_id = " dev                          \
    " AND ((SELECT @A._sites()) IS NULL OR s_.tags->>@T = ANY ((SELECT @A._sites())::text[])))"

/* fleet()'s devices (its variable devs): those the caller sees, with the value $5 of the tag $1
 * (any when NULL); found once a call, before either resolution's query. A site's devices through
 * latest_state_site, the index of the tenant tag: the generic plan of "tags->>$1 = $5" cannot use
 * an index of one key, and its scan of every device's tags was a third of fleet()'s time (10-15 of
 * 35 ms for a site of 500 devices among 20,000, EXPLAIN ANALYZE). */
#define TC_API_FLEET_DEVICES                                                                       \
    " IF $5 IS NOT NULL AND $1 = @T THEN devs := ARRAY(SELECT l.device_id FROM @A.latest l WHERE"  \
    " l.site = $5); ELSE devs := ARRAY(SELECT l.device_id FROM @A.latest l WHERE $5 IS NULL OR"    \
    " l.tags->>$1 = $5); END IF;"

/* clang-format off */
/* ---- roles (cluster-wide) ---- */
static const char tc_api_roles_sql[] =
    "DO $roles$ DECLARE r text; BEGIN FOREACH r IN ARRAY ARRAY['thermocline_viewer',"
    " 'thermocline_analyst', 'thermocline_operator', 'thermocline_admin',"
    " 'thermocline_ingest', 'thermocline_authenticator'] LOOP  IF NOT EXISTS (SELECT 1 FROM"
    " pg_roles WHERE rolname = r) THEN   BEGIN EXECUTE format('CREATE ROLE %I NOLOGIN', r);  "
    " EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;  END IF; END LOOP;"
    /* A server's login role must not get the rights of every role it may switch to. Only when
     * needed: the row of a role updated by two migrates at once fails one of them. */
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'thermocline_authenticator' AND "
    " rolinherit) THEN ALTER ROLE thermocline_authenticator NOINHERIT; END IF;"
    /* Each role a member of the one before; the authenticator a member of the four. Granted
     * only when missing: once an administrator has set the roles up, a migrating role without
     * CREATEROLE runs this block unchanged. */
    " FOREACH r IN ARRAY ARRAY['thermocline_viewer:thermocline_analyst',"
    " 'thermocline_analyst:thermocline_operator', 'thermocline_operator:thermocline_admin',"
    " 'thermocline_viewer:thermocline_authenticator',"
    " 'thermocline_analyst:thermocline_authenticator',"
    " 'thermocline_operator:thermocline_authenticator',"
    " 'thermocline_admin:thermocline_authenticator'] LOOP"
    "  IF NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
    "   JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = split_part(r, ':', 1)"
    "   AND u.rolname = split_part(r, ':', 2)) THEN"
    "   EXECUTE format('GRANT %I TO %I', split_part(r, ':', 1), split_part(r, ':', 2));"
    "  END IF;"
    " END LOOP;"
    " END $roles$;";

/* ---- the pipeline's role: every grant of thermocline_ingest is in this block ---- */
static const char tc_api_ingest_sql[] =
    "GRANT USAGE ON SCHEMA @S TO thermocline_ingest;"
    "GRANT SELECT, INSERT, UPDATE ON @S.ingest_offsets, @S.latest_state, @S.lake_files,"
    " @S.quality_1m, @S.quality_fleet_1m, @S.quality_dead_letters_1m, @S.anomalies,"
    " @S.quality_offsets, @S.quality_detector_state, @S.features_online,"
    " @S.features_online_offsets TO thermocline_ingest;"
    /* The quality sink deletes a lane's detector records when it writes its whole checkpoint. */
    "GRANT DELETE ON @S.quality_detector_state TO thermocline_ingest;"
    "GRANT INSERT ON @S.readings, @S.dead_letters TO thermocline_ingest;"
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA @S TO thermocline_ingest;"
    "GRANT EXECUTE ON FUNCTION @U.record(text, text, jsonb, bigint, text, double precision) TO"
    " thermocline_ingest;"
    /* What the pipeline reads at start: the schema's version and mode. */
    "GRANT SELECT ON @S.schema_migrations, @S.store_mode TO thermocline_ingest;"
    /* Its only DDL: the owner's functions (store/ddl.c). */
    "GRANT EXECUTE ON FUNCTION @S.tc_ddl_add_metric_columns(text[]) TO thermocline_ingest;";
/* Plain mode's rollup tables (TimescaleDB's continuous aggregates are the extension's). */
static const char tc_api_ingest_plain_sql[] =
    "GRANT SELECT, INSERT, UPDATE ON @S.rollup_1m, @S.rollup_1h TO thermocline_ingest;"
    "GRANT EXECUTE ON FUNCTION @S.tc_ddl_add_partition(date),"
    " @S.tc_ddl_add_rollup_columns(text[]), @S.tc_rollup_thresholds(),"
    " @S.tc_rollup_materialize(text, text, timestamptz), @S.tc_rollup_late(int[], bigint[],"
    " bigint[], timestamptz, timestamptz, timestamptz, timestamptz) TO thermocline_ingest;";

/* ---- audit ---- */
static const char tc_api_audit_sql[] =
    "CREATE SCHEMA IF NOT EXISTS @U;"
    "CREATE TABLE IF NOT EXISTS @U.events ( id bigserial PRIMARY KEY, at timestamptz NOT NULL,"
    " actor text NOT NULL, role text NOT NULL, claims jsonb, action text NOT NULL, target"
    " text, params jsonb, row_count bigint, status text NOT NULL, duration_ms double"
    " precision, prev_hash bytea, hash bytea NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_at_idx ON @U.events (at);"
    "COMMENT ON TABLE @U.events IS 'Audit log: every API request and every change made by a"
    " command, append-only; hash = sha256(prev_hash || canonical(row)) chains each row to the"
    " one before (thermocline audit verify).';"
    /* The text a row's hash covers: a JSON array of its fields (jsonb's text is canonical). */
    "CREATE OR REPLACE FUNCTION @U.canonical(e @U.events) RETURNS text LANGUAGE sql IMMUTABLE"
    " AS $$ SELECT jsonb_build_array(e.id, to_char(e.at AT TIME ZONE 'UTC',"
    " 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), e.actor, e.role, e.claims, e.action, e.target,"
    " e.params, e.row_count, e.status, e.duration_ms)::text $$;"
    "CREATE OR REPLACE FUNCTION @U.record(action text, target text DEFAULT NULL, params jsonb"
    " DEFAULT NULL, row_count bigint DEFAULT NULL, status text DEFAULT 'ok', duration_ms"
    " double precision DEFAULT NULL) RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER"
    " SET search_path = pg_catalog, pg_temp AS $$ DECLARE e @U.events; c text; BEGIN  IF $1 IS"
    " NULL OR $1 = '' THEN   RAISE EXCEPTION 'audit record: an action is required' USING"
    " ERRCODE = '22004';  END IF;"
    /* One writer at a time: each row must see the one before it committed. */
    "  PERFORM pg_advisory_xact_lock(" TC_API_LOCK ", hashtext('@U'));  SELECT ev.hash INTO"
    " e.prev_hash FROM @U.events ev ORDER BY ev.id DESC LIMIT 1;  e.id :="
    " nextval(pg_get_serial_sequence('@U.events', 'id'));  e.at := clock_timestamp();  e.actor"
    " := session_user;"
    /* In a SECURITY DEFINER function current_user is the owner; the caller's SET ROLE is here. */
    "  e.role := CASE current_setting('role') WHEN 'none' THEN session_user::text   ELSE"
    " current_setting('role') END;  c := nullif(current_setting('request.jwt.claims', true),"
    " '');  BEGIN e.claims := c::jsonb; EXCEPTION WHEN others THEN e.claims := to_jsonb(c);"
    " END;  e.action := $1; e.target := $2; e.params := $3; e.row_count := $4;  e.status :="
    " coalesce($5, 'ok'); e.duration_ms := $6;  e.hash := sha256(coalesce(e.prev_hash,"
    " '\\x'::bytea) || convert_to(@U.canonical(e), 'UTF8'));  INSERT INTO @U.events SELECT"
    " e.*;  RETURN e.id; END $$;"
    /* The REST API's batches (api/rest_audit.h): many requests' records in one call, the lock
     * taken once and the chain continued row by row. The server established each request's role
     * and claims, so they come from it, and only its role may call this. */
    "CREATE OR REPLACE FUNCTION @U.record_requests(events jsonb) RETURNS bigint LANGUAGE plpgsql"
    " VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ DECLARE e @U.events;"
    " x jsonb; n bigint := 0; BEGIN  IF jsonb_typeof($1) IS DISTINCT FROM 'array' THEN   RAISE"
    " EXCEPTION 'audit record_requests: an array of events is required' USING ERRCODE ="
    " '22023';  END IF;  PERFORM pg_advisory_xact_lock(" TC_API_LOCK ", hashtext('@U'));  SELECT"
    " ev.hash INTO e.prev_hash FROM @U.events ev ORDER BY ev.id DESC LIMIT 1;  FOR x IN SELECT"
    " value FROM jsonb_array_elements($1) LOOP   IF coalesce(x->>'action', '') = '' OR"
    " coalesce(x->>'role', '') = '' THEN    RAISE EXCEPTION 'audit record_requests: event %"
    " has no action or role', n + 1 USING ERRCODE = '22004';   END IF;   e.id :="
    " nextval(pg_get_serial_sequence('@U.events', 'id'));   e.at := coalesce((x->>'at')::"
    "timestamptz, clock_timestamp());   e.actor := session_user; e.role := x->>'role';   e.claims"
    " := x->'claims'; e.action := x->>'action'; e.target := x->>'target';   e.params :="
    " x->'params'; e.row_count := (x->>'rows')::bigint;   e.status := coalesce(x->>'status',"
    " 'ok'); e.duration_ms := (x->>'ms')::double precision;   e.hash := sha256(coalesce("
    "e.prev_hash, '\\x'::bytea) || convert_to(@U.canonical(e), 'UTF8'));   INSERT INTO"
    " @U.events SELECT e.*;   e.prev_hash := e.hash; n := n + 1;  END LOOP;  RETURN n; END $$;"
    "CREATE OR REPLACE FUNCTION @U.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE ="
    " '42501'; END $$;"
    "CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON @U.events FOR"
    " EACH ROW EXECUTE FUNCTION @U.refuse_change();"
    "CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON @U.events FOR EACH"
    " STATEMENT EXECUTE FUNCTION @U.refuse_change();"
    /* Every row whose chain is broken, oldest first: the first is where tampering began. */
    "CREATE OR REPLACE FUNCTION @U.verify() RETURNS TABLE (id bigint, problem text) LANGUAGE"
    " sql STABLE AS $$ SELECT x.id, CASE WHEN x.prev_hash IS DISTINCT FROM x.before  THEN 'its"
    " prev_hash is not the hash of the event before it (an event was removed, inserted or"
    " rehashed)'  ELSE 'its hash does not match its content (the event was changed)' END FROM"
    " (SELECT e.id, e.hash, e.prev_hash, lag(e.hash) OVER (ORDER BY e.id) AS before, "
    " sha256(coalesce(e.prev_hash, '\\x'::bytea) || convert_to(@U.canonical(e), 'UTF8')) AS"
    " want  FROM @U.events e) x WHERE x.prev_hash IS DISTINCT FROM x.before OR x.hash IS"
    " DISTINCT FROM x.want ORDER BY x.id $$;"
    /* Changes to the schema registry, whichever path made them (its REST API, psql). */
    "CREATE OR REPLACE FUNCTION @U.registry_change() RETURNS trigger LANGUAGE plpgsql SECURITY"
    " DEFINER SET search_path = pg_catalog, pg_temp AS $$ BEGIN  PERFORM @U.record('registry.'"
    " || TG_TABLE_NAME || '.' || lower(TG_OP),   coalesce(to_jsonb(NEW),"
    " to_jsonb(OLD))->>'subject',   jsonb_build_object('new', to_jsonb(NEW), 'old',"
    " to_jsonb(OLD)), 1, 'ok', NULL);  RETURN NULL; END $$;"
    "DO $reg$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY['subject_versions', 'configs',"
    " 'modes'] LOOP  IF to_regclass(format('%I.%I', @R, t)) IS NOT NULL THEN   EXECUTE"
    " format('CREATE OR REPLACE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH"
    " ROW EXECUTE FUNCTION %s.registry_change()', 'audit_' || left(md5(@UL), 20), @R, t, @UL);"
    "  END IF; END LOOP; END $reg$;"
    "REVOKE ALL ON SCHEMA @U FROM PUBLIC;"
    "REVOKE ALL ON ALL TABLES IN SCHEMA @U FROM PUBLIC;"
    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA @U FROM PUBLIC;"
    "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @U FROM PUBLIC;"
    "GRANT USAGE ON SCHEMA @U TO thermocline_viewer, thermocline_ingest,"
    " thermocline_authenticator;"
    "GRANT EXECUTE ON FUNCTION @U.record(text, text, jsonb, bigint, text, double precision) TO"
    " thermocline_viewer, thermocline_authenticator;"
    "GRANT EXECUTE ON FUNCTION @U.record_requests(jsonb) TO thermocline_authenticator;"
    "GRANT SELECT ON @U.events TO thermocline_admin;"
    "GRANT EXECUTE ON FUNCTION @U.verify(), @U.canonical(@U.events) TO thermocline_admin;";

/* ---- api: helpers (hidden from GraphQL by the @omit smart comment) ---- */
static const char tc_api_helpers_sql[] =
    "CREATE SCHEMA IF NOT EXISTS @A;"
    "COMMENT ON SCHEMA @A IS 'Thermocline''s curated interface, version " TC_API_VERSION
    " (docs/api.md).';"
    "CREATE TABLE IF NOT EXISTS @A.site_access (grantee name NOT NULL, site text NOT NULL,"
    " PRIMARY KEY (grantee, site));"
    "COMMENT ON TABLE @A.site_access IS E'@omit\\nSites a login role sees through the api when"
    " it connects directly (not through a server): site ''*'' means all.';"
    "CREATE OR REPLACE FUNCTION @A.version() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '"
    TC_API_VERSION "'::text $$;"
    "COMMENT ON FUNCTION @A.version() IS 'Version of the api schema''s contract.';"
    "CREATE OR REPLACE FUNCTION @A._claims() RETURNS jsonb LANGUAGE plpgsql STABLE AS $$ BEGIN"
    " RETURN nullif(current_setting('request.jwt.claims', true), '')::jsonb; EXCEPTION WHEN"
    " others THEN RETURN NULL; END $$;"
    /* session_user is the login role even inside SECURITY DEFINER. */
    "CREATE OR REPLACE FUNCTION @A._granted_sites() RETURNS text[] LANGUAGE sql STABLE"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT CASE WHEN"
    " bool_or(a.site = '*') THEN NULL ELSE coalesce(array_agg(a.site), '{}') END FROM"
    " @A.site_access a WHERE a.grantee = session_user $$;"
    /* NULL: every site. */
    "CREATE OR REPLACE FUNCTION @A._sites() RETURNS text[] LANGUAGE plpgsql STABLE AS $$"
    " DECLARE s jsonb; out text[]; BEGIN  IF pg_has_role(current_user, 'thermocline_admin',"
    " 'USAGE') THEN RETURN NULL; END IF;  IF NOT pg_has_role(session_user,"
    " 'thermocline_authenticator', 'MEMBER') THEN   RETURN @A._granted_sites();  END IF;  s :="
    " @A._claims() -> 'sites';  IF jsonb_typeof(s) = 'string' THEN s := jsonb_build_array(s);"
    " END IF;  IF jsonb_typeof(s) IS DISTINCT FROM 'array' THEN RETURN '{}'; END IF;  SELECT"
    " coalesce(array_agg(v), '{}') INTO out FROM jsonb_array_elements_text(s) v;  RETURN CASE"
    " WHEN '*' = ANY (out) THEN NULL ELSE out END; END $$;"
    /* 2: exact, 1: coarsened, 0: hidden. */
    "CREATE OR REPLACE FUNCTION @A._level() RETURNS integer LANGUAGE sql STABLE AS $$ SELECT"
    " CASE WHEN pg_has_role(current_user, 'thermocline_analyst', 'USAGE') THEN 2 WHEN"
    " pg_has_role(current_user, 'thermocline_viewer', 'USAGE') THEN @V ELSE 0 END $$;"
    "CREATE OR REPLACE FUNCTION @A._resolution(\"from\" timestamptz, \"to\" timestamptz,"
    " resolution text, raw_ok boolean) RETURNS text LANGUAGE plpgsql STABLE AS $$ BEGIN  IF $1"
    " IS NULL OR $2 IS NULL THEN   RAISE EXCEPTION 'from and to are both required' USING"
    " ERRCODE = '22004';  END IF;  IF $2 < $1 THEN   RAISE EXCEPTION 'to (%) is before from"
    " (%)', $2, $1 USING ERRCODE = '22023';  END IF;  IF $3 IS NULL OR $3 = 'auto' THEN  "
    " RETURN CASE WHEN $4 AND $2 - $1 <= INTERVAL '1 day' THEN 'raw'    WHEN $2 - $1 <="
    " INTERVAL '7 days' THEN '1m' ELSE '1h' END;  END IF;  IF ($4 AND $3 = 'raw') OR $3 IN"
    " ('1m', '1h') THEN RETURN $3; END IF;  RAISE EXCEPTION 'resolution must be one of %, not"
    " \"%\"',   CASE WHEN $4 THEN 'auto, raw, 1m, 1h' ELSE 'auto, 1m, 1h' END, left($3, 40)  "
    " USING ERRCODE = '22023'; END $$;"
    "COMMENT ON FUNCTION @A._claims() IS '@omit';"
    "COMMENT ON FUNCTION @A._granted_sites() IS '@omit';"
    "COMMENT ON FUNCTION @A._sites() IS '@omit';"
    "COMMENT ON FUNCTION @A._level() IS '@omit';"
    "COMMENT ON FUNCTION @A._resolution(timestamptz, timestamptz, text, boolean) IS '@omit';";

/* ---- api: the contract ---- */
static const char tc_api_views_sql[] =
    /* The devices of a site (fleet(), and the views below for a caller of some sites): an index
     * of the tenant tag, which is configuration, so remade when the tag changes (its comment
     * names the tag it was made for). latest_state's upserts stay HOT: they rewrite tags with the
     * same bytes. */
    "DO $site$ BEGIN IF obj_description(to_regclass('@S.latest_state_site'), 'pg_class') IS"
    " DISTINCT FROM 'tenant tag ' || @T THEN  DROP INDEX IF EXISTS @S.latest_state_site;"
    "  CREATE INDEX latest_state_site ON @S.latest_state ((tags->>@T));"
    "  EXECUTE format('COMMENT ON INDEX %s.latest_state_site IS %L', '@S', 'tenant tag ' || @T);"
    " END IF; END $site$;"
    "CREATE OR REPLACE VIEW @A.devices WITH (security_barrier) AS SELECT l.device_id,"
    " l.tags->>@T AS site, l.tags, (SELECT r.time FROM @S.readings r WHERE r.device_id ="
    " l.device_id ORDER BY r.time LIMIT 1) AS first_seen, l.time AS last_seen, (SELECT"
    " r.schema_version FROM @S.readings r WHERE r.device_id = l.device_id ORDER BY r.time DESC"
    " LIMIT 1) AS schema_version FROM @S.latest_state l WHERE (SELECT @A._sites()) IS NULL OR"
    " l.tags->>@T = ANY ((SELECT @A._sites())::text[]);"
    "COMMENT ON VIEW @A.devices IS E'@primaryKey device_id\\nDevices the caller may see: tags,"
    " site, first and last reading held, schema version of the last reading.';"
    "CREATE OR REPLACE VIEW @A.latest WITH (security_barrier) AS SELECT r.device_id,"
    " r.tags->>@T AS site, r.time" TC_API_METRICS(
    TC_API_RAW) ", r.tags FROM"
    " @S.latest_state r WHERE (SELECT @A._sites()) IS NULL OR r.tags->>@T = ANY ((SELECT"
    " @A._sites())::text[]);"
    "COMMENT ON VIEW @A.latest IS E'@primaryKey device_id\\nThe latest reading of each"
    " device.';"
    "CREATE OR REPLACE VIEW @A.readings_raw WITH (security_barrier) AS SELECT r.device_id,"
    " r.time" TC_API_METRICS(TC_API_RAW) ", r.schema_version FROM @S.readings r WHERE"
    TC_API_SITE_OK(
    "r.device_id") ";"
    "COMMENT ON VIEW @A.readings_raw IS 'Every reading held in the store.';"
    "CREATE OR REPLACE VIEW @A.readings_1m WITH (security_barrier) AS SELECT x.device_id,"
    " x.bucket, x.n" TC_API_METRICS(TC_API_AGG) " FROM @S.readings_1m x WHERE"
    TC_API_SITE_OK(
    "x.device_id") ";"
    "COMMENT ON VIEW @A.readings_1m IS E'@primaryKey device_id,bucket\\nReadings per device"
    " and minute: count, and per metric mean, min, max and count.';"
    "CREATE OR REPLACE VIEW @A.readings_1h WITH (security_barrier) AS SELECT x.device_id,"
    " x.bucket, x.n" TC_API_METRICS(TC_API_AGG) " FROM @S.readings_1h x WHERE"
    TC_API_SITE_OK("x.device_id") ";"
    "COMMENT ON VIEW @A.readings_1h IS E'@primaryKey device_id,bucket\\nReadings per device"
    " and hour: count, and per metric mean, min, max and count.';"
    "CREATE OR REPLACE VIEW @A.quality WITH (security_barrier) AS SELECT q.device_id,"
    " q.bucket, q.readings, q.temperature_n, q.humidity_n, q.pressure_n, q.battery_n,"
    " q.latitude_n, q.longitude_n, q.late, q.out_of_order, q.gaps, q.gap_max_s,"
    " q.dead_letters, q.duplicates, q.delay_p50_ms, q.delay_p99_ms FROM @S.quality_1m q WHERE"
    TC_API_SITE_OK("q.device_id") ";"
    "COMMENT ON VIEW @A.quality IS E'@primaryKey device_id,bucket\\nData quality per device"
    " and minute (completeness of a metric: <metric>_n / readings).';"
    /* The whole fleet's figures span every site: only for a caller who sees every site. */
    "CREATE OR REPLACE VIEW @A.quality_fleet WITH (security_barrier) AS SELECT q.bucket,"
    " q.devices, q.readings, q.late, q.out_of_order, q.gaps, q.gap_max_s, q.dead_letters,"
    " q.duplicates, q.delay_p50_ms, q.delay_p99_ms FROM @S.quality_fleet_1m q WHERE (SELECT"
    " @A._sites()) IS NULL;"
    "COMMENT ON VIEW @A.quality_fleet IS E'@primaryKey bucket\\nData quality of the whole"
    " fleet per minute (for callers who see every site).';"
    "CREATE OR REPLACE VIEW @A.anomalies WITH (security_barrier) AS SELECT a.id, a.device_id,"
    " a.metric, a.kind, a.rule, a.severity, a.start_time, a.end_time, a.score, CASE WHEN"
    " a.metric = ANY (@Q) THEN @M{a.observed} ELSE a.observed END AS observed, CASE WHEN"
    " a.metric = ANY (@Q) THEN @M{a.expected} ELSE a.expected END AS expected, a.status FROM"
    " @S.anomalies a WHERE" TC_API_SITE_OK("a.device_id") ";"
    "COMMENT ON VIEW @A.anomalies IS E'@primaryKey id\\nFindings of the quality detectors and"
    " rules (observed and expected masked as the metric is).';"
    "CREATE OR REPLACE VIEW @A.dead_letters WITH (security_barrier) AS SELECT d.id,"
    " d.received_at, d.reason, d.detail, d.stage, encode(d.payload, 'escape') AS payload,"
    " encode(d.kafka_key, 'escape') AS kafka_key, d.source_topic, d.source_partition,"
    " d.source_offset, d.redriven_at, d.redrive_count FROM @S.dead_letters d;"
    "COMMENT ON VIEW @A.dead_letters IS E'@primaryKey id\\nRefused readings with their payload"
    " (thermocline_operator and above).';"
    "CREATE OR REPLACE FUNCTION @A.dead_letter_counts(\"from\" timestamptz, \"to\""
    " timestamptz) RETURNS TABLE (reason text, n bigint) LANGUAGE sql STABLE SECURITY DEFINER"
    " SET search_path = pg_catalog, pg_temp AS $$ SELECT d.reason, count(*) FROM"
    " @S.dead_letters d WHERE d.received_at >= $1 AND d.received_at < $2 GROUP BY d.reason"
    " ORDER BY d.reason $$;"
    "COMMENT ON FUNCTION @A.dead_letter_counts(timestamptz, timestamptz) IS 'Dead letters"
    " received in [from, to) per reason (counts only: for every role).';"
    "CREATE OR REPLACE FUNCTION @A.readings(device text, \"from\" timestamptz, \"to\""
    " timestamptz, resolution text DEFAULT 'auto') RETURNS TABLE (device_id text, \"time\""
    " timestamptz, step text, n bigint" TC_API_METRICS(TC_API_OUT) ") LANGUAGE sql STABLE AS"
    " $$ SELECT r.device_id, r.time, 'raw'::text, 1::bigint" TC_API_METRICS(TC_API_RAWX)
    " FROM @A.readings_raw r WHERE (SELECT @A._resolution($2, $3, $4, true)) = 'raw' AND"
    " r.device_id = $1 AND r.time >= $2 AND r.time < $3 UNION ALL SELECT x.device_id,"
    " x.bucket, '1m'::text, x.n" TC_API_METRICS(TC_API_AGGX) " FROM @A.readings_1m x WHERE"
    " (SELECT @A._resolution($2, $3, $4, true)) = '1m' AND x.device_id = $1 AND x.bucket >= $2"
    " AND x.bucket < $3 UNION ALL SELECT x.device_id, x.bucket, '1h'::text, x.n"
    TC_API_METRICS(TC_API_AGGX) " FROM @A.readings_1h x WHERE (SELECT @A._resolution($2, $3,"
    " $4, true)) = '1h' AND x.device_id = $1 AND x.bucket >= $2 AND x.bucket < $3 ORDER BY 2"
    " $$;"
    "COMMENT ON FUNCTION @A.readings(text, timestamptz, timestamptz, text) IS 'A device''s"
    " readings in [from, to): raw, or the mean per minute or hour (step); resolution auto"
    " picks raw up to a day, 1m up to 7 days, 1h beyond.';"
    ;

/* fleet()'s group of a row of x, by the tag its device has now: value when it is given (the
 * devices were chosen by it), else the device's, by its key. A join with latest instead was a
 * nested loop of every device by every bucket in the generic plan (430 ms for a site's open hour
 * of 500 devices). */
#define TC_API_FLEET_VALUE                                                                         \
    " CASE WHEN $5 IS NOT NULL THEN $5 ELSE (SELECT d.tags->>$1 FROM @A.latest d WHERE"            \
    " d.device_id = x.device_id) END"
/* fleet(), 1-minute buckets (both modes): the devices first (those the caller sees, with the
 * tag's value when one is asked for), then their buckets through the rollups' (device_id, bucket)
 * key: joined the other way, every device's buckets were read and most thrown away (seconds for a
 * site of a large fleet). */
#define TC_API_FLEET_1M                                                                            \
    " SELECT" TC_API_FLEET_VALUE ", x.bucket, '1m'::text, count(DISTINCT x.device_id),"            \
    " sum(x.n)::bigint" TC_API_METRICS(TC_API_MEAN) " FROM @A.readings_1m x WHERE (SELECT"         \
    " @A._resolution($2, $3, $4, false)) = '1m' AND x.device_id = ANY (devs)"  \
    " AND x.bucket >= $2 AND x.bucket < $3 GROUP BY 1, 2"
/* fleet(), 1-hour buckets from the devices' hours from `since` on, grouped by the tags the devices
 * have now. */
#define TC_API_FLEET_1H(since)                                                                     \
    " SELECT" TC_API_FLEET_VALUE ", x.bucket, '1h'::text, count(DISTINCT x.device_id),"            \
    " sum(x.n)::bigint" TC_API_METRICS(TC_API_MEAN) " FROM @A.readings_1h x WHERE (SELECT"         \
    " @A._resolution($2, $3, $4, false)) = '1h' AND x.device_id = ANY (devs)"  \
    " AND x.bucket >= $2 AND x.bucket >= " since " AND x.bucket < $3 GROUP BY 1, 2"
/* fleet()'s head, to the 1-hour query: before_1h is what that query needs first. */
#define TC_API_FLEET_HEAD(before_1h)                                                               \
    "DROP FUNCTION IF EXISTS @A.fleet(text, timestamptz, timestamptz, text);"                      \
    "CREATE OR REPLACE FUNCTION @A.fleet(tag text, \"from\" timestamptz, \"to\" timestamptz,"       \
    " resolution text DEFAULT 'auto', value text DEFAULT NULL) RETURNS TABLE (tag_value text,"     \
    " bucket timestamptz, step text, devices bigint, n bigint" TC_API_METRICS(TC_API_OUTA)         \
    ") LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan SET jit = off AS $$"       \
    " #variable_conflict use_column\n DECLARE devs text[]; BEGIN IF @A._resolution($2, $3, $4,"   \
    " false) = '1m' THEN" TC_API_FLEET_DEVICES " RETURN QUERY" TC_API_FLEET_1M " ORDER BY 2, 1;"    \
    " ELSE" before_1h " RETURN QUERY"
/* The end of fleet()'s 1-hour query and of the function. */
#define TC_API_FLEET_END " ORDER BY 2, 1; END IF; END $$;"
#define TC_API_FLEET_COMMENT(hours)                                                                \
    "COMMENT ON FUNCTION @A.fleet(text, timestamptz, timestamptz, text, text) IS 'The devices"     \
    " the caller sees, grouped by the value of one of their tags (only value when it is given),"   \
    " per minute or hour of [from, to): devices, readings and the mean of each metric; auto"       \
    " picks 1m up to 7 days, 1h beyond. " hours "';"

/* TimescaleDB mode: the continuous aggregates, grouped by the devices' tags now. */
static const char tc_api_fleet_timescale_sql[] =
    TC_API_FLEET_HEAD(TC_API_FLEET_DEVICES) TC_API_FLEET_1H("$2") TC_API_FLEET_END
    TC_API_FLEET_COMMENT("A device counts toward the tags it has now.");

/*
 * Plain mode: the closed hours (before H, rollup_state) from rollup_tag_1h, a row per site, tag,
 * value and hour (docs/store.md, "Hourly rollup per site and tag"), and the open hours' closed
 * minutes (before W) from rollup_tag_open, kept alike (below): the readings past W, the last
 * minute or two, are not in fleet()'s hours (a site's were 460-620 ms of every call; store
 * migration step 9). An hour counts toward the tags its device had when the hour closed
 * (device_tag_history); an open hour's minutes toward the tags recorded when the one before
 * closed (a device first seen in it: the tags it has).
 *
 * The table is kept by triggers on rollup_1h, so that whatever writes a closed hour -- the
 * closing, a late reading's flush, a replay, a loader -- moves it in the same transaction, by
 * the same rows: each statement's rows (new ones added, old ones taken away) counted toward their
 * device's tags of device_tag_history at the hour, and per tag of those tags plus once with tag
 * NULL (the site's whole hour). A device first seen in such a statement gets the tags it has in
 * latest_state (the closing's rule). A row whose devices went to 0 (a replay that removed an
 * hour) stays, and fleet() leaves it out. Statement triggers with transition tables: the closing's
 * hour of every device is one aggregate, not a row each.
 */
/* Per fixed metric: rollup_tag_1h's columns; a statement's signed sums per set of tags, then per tag;
 * the upsert's sum. */
#define TC_API_TAGC(m) ", " #m "_n, " #m "_sum"
#define TC_API_TAGD(m)                                                                             \
    ", sum(d.s * d." #m "_n)::bigint AS " #m "_n, sum(d.s * d." #m "_sum) AS " #m "_sum"
#define TC_API_TAGO(m) ", sum(q." #m "_n), sum(q." #m "_sum)"
#define TC_API_TAGU(m)                                                                             \
    ", " #m "_n = t." #m "_n + EXCLUDED." #m "_n, " #m "_sum = t." #m "_sum + EXCLUDED." #m "_sum"
/* The view's: a sum the caller may see (a personal metric's from its masked mean); the mean. */
#define TC_API_TAGV(m)                                                                             \
    ", CASE WHEN (SELECT @A._level()) = 2 THEN f." #m "_sum ELSE @P{f." #m "_avg} * f." #m "_n"    \
    " END AS " #m "_sum, f." #m "_n"
#define TC_API_TAGA(m) ", t." #m "_sum / nullif(t." #m "_n, 0) AS " #m "_avg"
#define TC_API_TMEAN(m) ", sum(f." #m "_sum) / nullif(sum(f." #m "_n), 0)"
#define TC_API_TNULL(m)                                                                            \
    ", sum(CASE WHEN f.tag IS NULL THEN f." #m "_sum ELSE -f." #m "_sum END) / nullif(sum(CASE"      \
    " WHEN f.tag IS NULL THEN f." #m "_n ELSE -f." #m "_n END), 0)"
/* Add the rows of src (columns s, the sign, and rollup_1h's) to rollup_tag_1h, in the key's order:
 * the rows of a site are shared by the members of a group (their devices are not), so two
 * members' late readings take their row locks in one order and wait rather than deadlock. The
 * rows are added up per set of tags and hour first (a fleet has few sets), then per tag of the
 * set: expanded first, 10,000 devices' rows were 30,000 to sort (2 tags and the site's whole). */
#define TC_API_TAG_ADD(src) TC_API_TAG_ADD_TO("rollup_tag_1h", "sum(d.s)", src)
/* The same into table, its devices counted by the expression devices of src's rows. */
#define TC_API_TAG_ADD_TO(table, devices, src)                                                     \
    "INSERT INTO @S." table " AS t (site, tag, value, bucket, devices, n"                          \
    TC_API_METRICS(TC_API_TAGC) ") SELECT q.tags->>@T, e.key, e.value, q.bucket,"                  \
    " sum(q.devices), sum(q.n)" TC_API_METRICS(TC_API_TAGO) " FROM (SELECT g.tags, d.bucket, "     \
    devices " AS devices, sum(d.s * d.n)::bigint AS n" TC_API_METRICS(TC_API_TAGD) " FROM (" src    \
    ") d CROSS JOIN LATERAL (SELECT h.tags FROM @S.device_tag_history h WHERE h.device_id ="       \
    " d.device_id AND h.since <= d.bucket ORDER BY h.since DESC LIMIT 1) g GROUP BY 1, 2) q CROSS" \
    " JOIN LATERAL (SELECT k.key, k.value FROM jsonb_each_text(CASE WHEN jsonb_typeof(q.tags) ="    \
    " 'object' THEN q.tags ELSE '{}' END) k UNION ALL SELECT NULL, NULL) e GROUP BY 1, 2, 3, 4"     \
    " ORDER BY 2, 3, 4, 1 ON CONFLICT (tag, value, bucket, site)"                                  \
    " DO UPDATE SET devices = t.devices + EXCLUDED.devices, n = t.n + EXCLUDED.n"                  \
    TC_API_METRICS(TC_API_TAGU) ";"
/* Devices first seen in src: the tags latest_state has for them, from -infinity -- or, where it
 * has none yet (the rollups' flush writes it after the rollup tables), their newest reading's. */
#define TC_API_TAG_FIRST(src)                                                                      \
    "INSERT INTO @S.device_tag_history (device_id, since, tags) SELECT x.device_id,"               \
    " '-infinity'::timestamptz, coalesce(l.tags, (SELECT r.tags FROM @S.readings r WHERE"          \
    " r.device_id = x.device_id ORDER BY r.time DESC LIMIT 1)) FROM (SELECT DISTINCT device_id"    \
    " FROM " src ") x LEFT JOIN @S.latest_state l ON l.device_id = x.device_id WHERE NOT EXISTS"   \
    " (SELECT 1 FROM @S.device_tag_history h WHERE h.device_id = x.device_id) ON CONFLICT DO"      \
    " NOTHING;"

/*
 * The open hours' closed minutes (rollup_tag_open, store migration step 9): rollup_1m's rows from
 * H on, added up per device and hour first, then per site, tag and value as above. A device counts
 * once an hour: toward devices when the statement's rows are all its rows of the hour in
 * rollup_1m (the first minute of its hour closed, or a late reading's), and away when none is
 * left (a replay); an update of minutes leaves it counted. Each statement also deletes the rows
 * of the hours closed since (below H); the closing moves H before it inserts its minutes (ddl.c,
 * tc_rollup_materialize), so the hours it closes are not added here, and fleet() reads from H on.
 */
/* Per fixed metric: src's sums per device and hour. */
#define TC_API_TAGG(m) ", sum(x." #m "_n) AS " #m "_n, sum(x." #m "_sum) AS " #m "_sum"
/* rows (new_rows, old_rows, a table) per device and hour from H (open_from) on. */
#define TC_API_OPEN_HOURS(rows)                                                                    \
    "SELECT x.device_id, date_bin('1 hour', x.bucket, '2000-01-01 00:00:00+00'::timestamptz) AS"   \
    " bucket, count(*) AS k, sum(x.n) AS n" TC_API_METRICS(TC_API_TAGG) " FROM " rows " x WHERE"    \
    " x.bucket >= open_from GROUP BY 1, 2"
/* Whether rollup_1m holds minutes of the device and hour of o: how many (cmp: "= o.k", all of
 * them this statement's; "= 0", none). */
#define TC_API_OPEN_HELD(cmp)                                                                      \
    "((SELECT count(*) FROM @S.rollup_1m m WHERE m.device_id = o.device_id AND m.bucket >="        \
    " o.bucket AND m.bucket < o.bucket + interval '1 hour') " cmp ")::int"
/* OFFSET 0: src stays a subquery, so that its devices' count (TC_API_OPEN_HELD) is computed once
 * per device and hour; pulled up into the join, it was computed once per tag of the device (3
 * times for 2 tags: 30,000 counts for a minute of 10,000 devices). */
#define TC_API_OPEN_ADD(src) TC_API_TAG_ADD_TO("rollup_tag_open", "sum(d.dv)", src " OFFSET 0")

static const char tc_api_fleet_plain_sql[] =
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_tag_apply() RETURNS trigger LANGUAGE plpgsql"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN"
    "  IF TG_OP = 'INSERT' THEN"
    "   " TC_API_TAG_FIRST("new_rows")
    "   " TC_API_TAG_ADD("SELECT 1 AS s, x.* FROM new_rows x")
    "  ELSIF TG_OP = 'UPDATE' THEN"
    "   " TC_API_TAG_ADD("SELECT 1 AS s, x.* FROM new_rows x UNION ALL SELECT -1, y.* FROM"
                         " old_rows y")
    "  ELSIF TG_OP = 'DELETE' THEN"
    "   " TC_API_TAG_ADD("SELECT -1 AS s, y.* FROM old_rows y")
    "  ELSE TRUNCATE @S.rollup_tag_1h;"
    "  END IF;"
    "  RETURN NULL;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_tag_apply() FROM PUBLIC;"
    "CREATE OR REPLACE TRIGGER rollup_tag_1h_insert AFTER INSERT ON @S.rollup_1h REFERENCING NEW"
    " TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_1h_update AFTER UPDATE ON @S.rollup_1h REFERENCING OLD"
    " TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION"
    " @S.tc_rollup_tag_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_1h_delete AFTER DELETE ON @S.rollup_1h REFERENCING OLD"
    " TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_1h_truncate AFTER TRUNCATE ON @S.rollup_1h FOR EACH"
    " STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_apply();"
    /* Filled from rollup_1h when the site tag is not the one it was filled with (the first
     * migrate of version 7: hours closed before count toward the tags the devices have now). The
     * triggers above hold rollup_1h's writers off until this commits. */
    "DO $tag$ BEGIN IF (SELECT site_tag FROM @S.rollup_tag_state) IS DISTINCT FROM @T THEN"
    "  TRUNCATE @S.rollup_tag_1h;"
    "  " TC_API_TAG_FIRST("@S.rollup_1h")
    "  " TC_API_TAG_ADD("SELECT 1 AS s, x.* FROM @S.rollup_1h x")
    "  UPDATE @S.rollup_tag_state SET site_tag = @T;"
    " END IF; END $tag$;"
    /* jit = off: a statement's estimate (a count per device and hour) passes jit_above_cost, and
     * compiling it took 1 of 1.8 s for a minute of 10,000 devices (psql, EXPLAIN ANALYZE); the
     * closing runs with it off already, the rollups' late path and a replay do not. */
    "CREATE OR REPLACE FUNCTION @S.tc_rollup_tag_open_apply() RETURNS trigger LANGUAGE plpgsql"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $fn$"
    " DECLARE open_from timestamptz := (SELECT materialized_1h FROM @S.rollup_state); BEGIN"
    "  IF TG_OP = 'TRUNCATE' THEN TRUNCATE @S.rollup_tag_open; RETURN NULL; END IF;"
    "  DELETE FROM @S.rollup_tag_open WHERE bucket < open_from;"
    "  IF TG_OP = 'INSERT' THEN"
    "   " TC_API_TAG_FIRST("new_rows WHERE bucket >= open_from")
    "   " TC_API_OPEN_ADD("SELECT 1 AS s, " TC_API_OPEN_HELD("= o.k") " AS dv, o.* FROM ("
                          TC_API_OPEN_HOURS("new_rows") ") o")
    "  ELSIF TG_OP = 'UPDATE' THEN"
    "   " TC_API_OPEN_ADD("SELECT 1 AS s, 0 AS dv, o.* FROM (" TC_API_OPEN_HOURS("new_rows") ") o"
                          " UNION ALL SELECT -1, 0, o.* FROM (" TC_API_OPEN_HOURS("old_rows") ") o")
    "  ELSE"
    "   " TC_API_OPEN_ADD("SELECT -1 AS s, -" TC_API_OPEN_HELD("= 0") " AS dv, o.* FROM ("
                          TC_API_OPEN_HOURS("old_rows") ") o")
    "  END IF;"
    "  RETURN NULL;"
    " END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_rollup_tag_open_apply() FROM PUBLIC;"
    "CREATE OR REPLACE TRIGGER rollup_tag_open_insert AFTER INSERT ON @S.rollup_1m REFERENCING NEW"
    " TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_open_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_open_update AFTER UPDATE ON @S.rollup_1m REFERENCING OLD"
    " TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION"
    " @S.tc_rollup_tag_open_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_open_delete AFTER DELETE ON @S.rollup_1m REFERENCING OLD"
    " TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_open_apply();"
    "CREATE OR REPLACE TRIGGER rollup_tag_open_truncate AFTER TRUNCATE ON @S.rollup_1m FOR EACH"
    " STATEMENT EXECUTE FUNCTION @S.tc_rollup_tag_open_apply();"
    /* Filled from rollup_1m as rollup_tag_1h from rollup_1h (the first migrate of version 9). */
    "DO $open$ DECLARE open_from timestamptz := (SELECT materialized_1h FROM @S.rollup_state);"
    " BEGIN IF (SELECT open_site_tag FROM @S.rollup_tag_state) IS DISTINCT FROM @T THEN"
    "  TRUNCATE @S.rollup_tag_open;"
    "  " TC_API_TAG_FIRST("@S.rollup_1m WHERE bucket >= open_from")
    "  " TC_API_OPEN_ADD("SELECT 1 AS s, 1 AS dv, o.* FROM (" TC_API_OPEN_HOURS("@S.rollup_1m")
                         ") o")
    "  UPDATE @S.rollup_tag_state SET open_site_tag = @T;"
    " END IF; END $open$;"
    "CREATE OR REPLACE FUNCTION @A._closed_1h() RETURNS timestamptz LANGUAGE sql STABLE SECURITY"
    " DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT materialized_1h FROM"
    " @S.rollup_state $$;"
    "COMMENT ON FUNCTION @A._closed_1h() IS '@omit';"
    "CREATE OR REPLACE VIEW @A._fleet_1h WITH (security_barrier) AS SELECT f.site, f.tag,"
    " f.value, f.bucket, f.devices, f.n" TC_API_METRICS(TC_API_TAGV) " FROM (SELECT t.site,"
    " t.tag, t.value, t.bucket, t.devices, t.n" TC_API_METRICS(TC_API_TAGC)
    TC_API_METRICS(TC_API_TAGA) " FROM @S.rollup_tag_1h t WHERE t.bucket < (SELECT"
    " @A._closed_1h()) UNION ALL SELECT t.site, t.tag, t.value, t.bucket, t.devices, t.n"
    TC_API_METRICS(TC_API_TAGC) TC_API_METRICS(TC_API_TAGA) " FROM @S.rollup_tag_open t WHERE"
    " t.bucket >= (SELECT @A._closed_1h())) f WHERE (SELECT @A._sites()) IS NULL OR f.site = ANY"
    " ((SELECT @A._sites())::text[]);"
    "COMMENT ON VIEW @A._fleet_1h IS E'@omit\\nHours per site, tag and value (fleet()): the closed"
    " ones, and the closed minutes of the open ones.';"
    "GRANT SELECT ON @A._fleet_1h TO thermocline_viewer;"
    TC_API_FLEET_HEAD("")
    /* The tag's values... */
    " SELECT f.value, f.bucket, '1h'::text, sum(f.devices)::bigint, sum(f.n)::bigint"
    TC_API_METRICS(TC_API_TMEAN) " FROM @A._fleet_1h f WHERE (SELECT @A._resolution($2, $3, $4,"
    " false)) = '1h' AND f.tag = $1 AND f.value IS NOT NULL AND ($5 IS NULL OR f.value = $5) AND"
    " f.bucket >= $2 AND f.bucket < $3 GROUP BY 1, 2 HAVING sum(f.devices) > 0"
    /* ... and the devices without one: the hour less its values. */
    " UNION ALL SELECT NULL::text, f.bucket, '1h'::text, sum(CASE WHEN f.tag IS NULL THEN"
    " f.devices ELSE -f.devices END)::bigint, sum(CASE WHEN f.tag IS NULL THEN f.n ELSE -f.n"
    " END)::bigint" TC_API_METRICS(TC_API_TNULL) " FROM @A._fleet_1h f WHERE (SELECT"
    " @A._resolution($2, $3, $4, false)) = '1h' AND $5 IS NULL AND (f.tag IS NULL OR (f.tag = $1"
    " AND f.value IS NOT NULL)) AND f.bucket >= $2 AND f.bucket < $3 GROUP BY 2 HAVING"
    " sum(CASE WHEN f.tag IS NULL THEN f.devices ELSE -f.devices END) > 0" TC_API_FLEET_END
    TC_API_FLEET_COMMENT("An hour counts toward the tags its device had when the hour closed;"
                         " an open hour holds its closed minutes (before W, the minute"
                         " closings), counted toward the tags recorded for the device when the"
                         " hour before closed.");

/*
 * Answer versions: an answer that depends on one table (the latest reading of every device, on
 * latest_state) can be kept by the REST server and given again while the table is unchanged
 * (api/coalesce.h, "Kept answers"). Every statement that writes the table -- whoever runs it: the
 * pipeline, a replay, retention, psql -- adds 1 to its backend's row here in its own transaction,
 * so the sum over the rows moves with every committed change and never goes back: two snapshots
 * that read the same sum see the same rows of the table. A row per writing backend, not one row
 * for all: concurrent writers (the pipelines of a group) never wait on each other's row lock. The
 * migrate bumps writer 0, since the views over the table may have changed.
 */
static const char tc_api_versions_sql[] =
    "CREATE TABLE IF NOT EXISTS @S.answer_versions (source text NOT NULL, writer integer NOT"
    " NULL, v bigint NOT NULL, PRIMARY KEY (source, writer));"
    "COMMENT ON TABLE @S.answer_versions IS 'Per table and writing backend, the statements that"
    " changed the table: their sum is the version of the api answers that read it alone.';"
    "REVOKE ALL ON @S.answer_versions FROM PUBLIC;"
    "CREATE OR REPLACE FUNCTION @S.tc_answer_version_bump() RETURNS trigger LANGUAGE plpgsql"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$ BEGIN"
    "  INSERT INTO @S.answer_versions AS a (source, writer, v) VALUES (TG_TABLE_NAME,"
    "  pg_backend_pid(), 1) ON CONFLICT (source, writer) DO UPDATE SET v = a.v + 1;"
    "  RETURN NULL; END $fn$;"
    "REVOKE ALL ON FUNCTION @S.tc_answer_version_bump() FROM PUBLIC;"
    "CREATE OR REPLACE TRIGGER latest_state_answer_version AFTER INSERT OR UPDATE OR DELETE OR"
    " TRUNCATE ON @S.latest_state FOR EACH STATEMENT EXECUTE FUNCTION"
    " @S.tc_answer_version_bump();"
    "INSERT INTO @S.answer_versions AS a (source, writer, v) VALUES ('latest_state', 0, 1) ON"
    " CONFLICT (source, writer) DO UPDATE SET v = a.v + 1;"
    "CREATE OR REPLACE FUNCTION @A._answer_version(source text) RETURNS bigint LANGUAGE sql STABLE"
    " SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT coalesce(sum(a.v),"
    " 0)::bigint FROM @S.answer_versions a WHERE a.source = $1 $$;"
    "COMMENT ON FUNCTION @A._answer_version(text) IS E'@omit\nThe version of the answers that"
    " read the table source alone (the REST server keeps them while it is unchanged).';"
    "REVOKE ALL ON FUNCTION @A._answer_version(text) FROM PUBLIC;"
    "GRANT EXECUTE ON FUNCTION @A._answer_version(text) TO thermocline_viewer;"
    ;

static const char tc_api_views2_sql[] =
    /* The online features (the features sink): a model's inputs, for analysts and above. A
     * feature of a personal metric is masked as the metric is, but for the aggregates that are
     * counts or shares. */
    "CREATE OR REPLACE VIEW @A.features_online WITH (security_barrier) AS SELECT f.device_id,"
    " f.feature, f.metric, f.aggregate, f.window_start, f.window_end, CASE WHEN f.metric = ANY"
    " (@Q) AND f.aggregate NOT IN ('count', 'share_missing', 'out_of_range', 'anomalies') THEN @M{f.value}"
    " ELSE f.value END AS value, f.rows AS readings, f.updated_at FROM @S.features_online f"
    " WHERE" TC_API_SITE_OK("f.device_id") ";"
    "COMMENT ON VIEW @A.features_online IS E'@primaryKey device_id,feature,window_start\\nOnline"
    " features: per device, feature of features.definitions and window [window_start,"
    " window_end), the value over the readings so far (readings: how many).';"
    /* Grants: nothing to PUBLIC; every role has the viewer's rights and more. */
    "REVOKE ALL ON SCHEMA @A FROM PUBLIC;"
    "REVOKE ALL ON ALL TABLES IN SCHEMA @A FROM PUBLIC;"
    "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @A FROM PUBLIC;"
    "GRANT USAGE ON SCHEMA @A TO thermocline_viewer, thermocline_authenticator;"
    "GRANT SELECT ON @A.devices, @A.latest, @A.readings_raw, @A.readings_1m, @A.readings_1h,"
    " @A.quality, @A.quality_fleet, @A.anomalies TO thermocline_viewer;"
    "GRANT SELECT ON @A.dead_letters TO thermocline_operator;"
    "GRANT SELECT ON @A.features_online TO thermocline_analyst;"
    "GRANT SELECT, INSERT, UPDATE, DELETE ON @A.site_access TO thermocline_admin;"
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA @A TO thermocline_viewer;";
/* clang-format on */

/* ---- template expansion ---- */

/* The SQL is built in a tc_jbuf used as a plain text buffer (tc_jbuf_append: no JSON logic). */
static void tc_api_put(tc_jbuf *b, const char *s, size_t len)
{
    tc_jbuf_append(b, s, len);
}

static void tc_api_puts(tc_jbuf *b, const char *s)
{
    tc_api_put(b, s, strlen(s));
}

/* A schema name we accept: [A-Za-z_][A-Za-z0-9_]*, at most TC_API_NAME_MAX bytes, so quoting
 * it is wrapping it in double quotes. */
static int tc_api_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > TC_API_NAME_MAX || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* Is name (len bytes) one of the personal columns (a comma-separated list, spaces allowed)? */
tc_err tc_api_sql_check(const tc_api_sql_options *o, char *errstr, size_t errstr_size)
{
    const struct {
        const char *key, *value;
    } names[] = {{"postgres.schema", o->store_schema},
                 {"api.schema", o->api_schema},
                 {"audit.schema", o->audit_schema},
                 {"the registry's schema", o->registry_schema}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!tc_api_name_ok(names[i].value))
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "%s=\"%s\": the api needs a schema name of letters, digits and"
                              " underscores (1..%d bytes, not starting with a digit)",
                              names[i].key, names[i].value ? names[i].value : "", TC_API_NAME_MAX);
    }
    if (!strcmp(o->api_schema, o->store_schema) || !strcmp(o->api_schema, o->audit_schema) ||
        !strcmp(o->audit_schema, o->store_schema))
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "postgres.schema (\"%s\"), api.schema (\"%s\") and audit.schema (\"%s\")"
                          " must be three different schemas",
                          o->store_schema, o->api_schema, o->audit_schema);
    if (!o->tenant_tag || !*o->tenant_tag || strlen(o->tenant_tag) > TC_API_NAME_MAX)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "api.tenant_tag must name a tag (1..%d bytes)", TC_API_NAME_MAX);
    if (o->personal_digits < 0 || o->personal_digits > 6)
        return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                          "api.personal_digits=%d: must be 0..6", o->personal_digits);
    for (const char *p = o->personal_columns; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int known = 0;
        while (n && *p == ' ') {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        for (size_t m = 0; m < TC_API_METRIC_COUNT; m++)
            known |= strlen(tc_api_metrics[m]) == n && !strncmp(tc_api_metrics[m], p, n);
        if (!known && n > 0)
            return tc_err_set(TC_ERR_CONFIG, errstr, errstr_size,
                              "api.personal_columns: \"%.*s\" is not a reading column (one of"
                              " temperature, humidity, pressure, battery, latitude, longitude)",
                              (int)(n > TC_API_NAME_MAX ? TC_API_NAME_MAX : n), p);
        p = end ? end + 1 : NULL;
    }
    return TC_OK;
}

/* Expand tmpl into b. */
static void tc_api_expand(tc_jbuf *b, const char *tmpl, const tc_api_sql_options *o)
{
    char digits[16];

    snprintf(digits, sizeof(digits), "%d", o->personal_digits);
    for (const char *p = tmpl; *p;) {
        const char *at = strchr(p, '@');
        if (!at) {
            tc_api_puts(b, p);
            break;
        }
        tc_api_put(b, p, (size_t)(at - p));
        p = at + 1;
        switch (*p) {
        case 'S':
        case 'A':
        case 'U':
            if (p[0] == 'U' && p[1] == 'L') { /* the quoted audit schema as a literal */
                tc_api_puts(b, "'\"");
                tc_api_puts(b, o->audit_schema);
                tc_api_puts(b, "\"'");
                p += 2;
                break;
            }
            tc_api_puts(b, "\"");
            tc_api_puts(b, *p == 'S'   ? o->store_schema
                           : *p == 'A' ? o->api_schema
                                       : o->audit_schema);
            tc_api_puts(b, "\"");
            p++;
            break;
        case 'T':
            tc_api_puts(b, "'");
            for (const char *t = o->tenant_tag; *t; t++)
                tc_api_put(b, *t == '\'' ? "''" : t, *t == '\'' ? 2 : 1);
            tc_api_puts(b, "'");
            p++;
            break;
        case 'R':
            tc_api_puts(b, "'");
            tc_api_puts(b, o->registry_schema);
            tc_api_puts(b, "'");
            p++;
            break;
        case 'V':
            tc_api_puts(b, o->viewer_hidden ? "0" : "1");
            p++;
            break;
        case 'Q':
            tc_api_puts(b, "ARRAY[''");
            for (size_t m = 0; m < TC_API_METRIC_COUNT; m++) {
                if (tc_mask_is_personal(o->personal_columns, tc_api_metrics[m],
                                        strlen(tc_api_metrics[m]), 0)) {
                    tc_api_puts(b, ", '");
                    tc_api_puts(b, tc_api_metrics[m]);
                    tc_api_puts(b, "'");
                }
            }
            tc_api_puts(b, "]::text[]");
            p++;
            break;
        case 'P':
        case 'M': {
            /* @P{alias.column}: masked when the column (without _avg, _min, _max) is personal;
             * @M{expr}: always masked (a CASE around it decides). */
            const char *open = p + 1, *close = strchr(p, '}'), *dot, *name;
            size_t len;
            int mask;
            if (*open != '{' || !close) {
                tc_api_puts(b, "@");
                break;
            }
            dot = memchr(open + 1, '.', (size_t)(close - open - 1));
            name = dot ? dot + 1 : open + 1;
            len = (size_t)(close - name);
            mask = *p == 'M' || tc_mask_is_personal(o->personal_columns, name, len, 1);
            if (mask) {
                tc_api_puts(b, "CASE (SELECT \"");
                tc_api_puts(b, o->api_schema);
                tc_api_puts(b, "\"._level()) WHEN 2 THEN ");
            }
            tc_api_put(b, open + 1, (size_t)(close - open - 1));
            if (mask) {
                tc_api_puts(b, " WHEN 1 THEN round(");
                tc_api_put(b, open + 1, (size_t)(close - open - 1));
                tc_api_puts(b, "::numeric, ");
                tc_api_puts(b, digits);
                tc_api_puts(b, ")::double precision END");
            }
            p = close + 1;
            break;
        }
        default:
            tc_api_puts(b, "@");
            break;
        }
    }
}

char *tc_api_sql_build(const tc_api_sql_options *o, char *errstr, size_t errstr_size)
{
    tc_jbuf b;
    char *sql;
    size_t len;

    if (tc_api_sql_check(o, errstr, errstr_size) != TC_OK)
        return NULL;
    tc_jbuf_init(&b, TC_API_SQL_MAX);
    tc_api_expand(&b, tc_api_roles_sql, o);
    tc_api_expand(&b, tc_api_audit_sql, o);
    tc_api_expand(&b, tc_api_helpers_sql, o);
    tc_api_expand(&b, tc_api_views_sql, o);
    tc_api_expand(&b, o->timescaledb ? tc_api_fleet_timescale_sql : tc_api_fleet_plain_sql, o);
    tc_api_expand(&b, tc_api_versions_sql, o);
    tc_api_expand(&b, tc_api_views2_sql, o);
    tc_api_expand(&b, tc_api_ingest_sql, o);
    if (!o->timescaledb)
        tc_api_expand(&b, tc_api_ingest_plain_sql, o);
    sql = tc_jbuf_take(&b, &len);
    tc_jbuf_free(&b);
    if (!sql)
        tc_err_set(TC_ERR_NOMEM, errstr, errstr_size, "api migration: out of memory");
    return sql;
}

tc_err tc_api_migrate(tc_store *s, const tc_api_sql_options *o, char *errstr, size_t errstr_size)
{
    char *sql = tc_api_sql_build(o, errstr, errstr_size);
    tc_err err;

    if (!sql)
        return strstr(errstr, "out of memory") ? TC_ERR_NOMEM : TC_ERR_CONFIG;
    err = tc_store_connect(s, errstr, errstr_size);
    /* "already a member", "already exists" notices would fill the log at every migrate. */
    if (err == TC_OK)
        err = tc_store_exec(s,
                            "BEGIN; SET LOCAL client_min_messages = warning;"
                            " SELECT pg_advisory_xact_lock(" TC_API_LOCK ")",
                            "lock the api migration", errstr, errstr_size);
    if (err == TC_OK)
        err = tc_store_exec(s, sql, "create the api, its roles and the audit log", errstr,
                            errstr_size);
    if (err == TC_OK)
        err = tc_store_exec(s, "COMMIT", "commit the api migration", errstr, errstr_size);
    else
        tc_store_rollback(s, "the api migration");
    free(sql);
    return err;
}
