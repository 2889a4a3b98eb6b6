/*
 * server.js -- GraphQL over Thermocline's api schema: PostGraphile 4 in library mode.
 *
 * PostGraphile builds the GraphQL schema from the api schema alone (views become connections
 * with cursor pagination, `condition` and -- with the connection-filter plugin -- `filter`
 * arguments; the set-returning functions become query fields), and runs every request in a
 * transaction as the caller's PostgreSQL role with the caller's JWT claims in
 * request.jwt.claims: the row-level security and the masking are the database's, the same as for
 * REST and for psql as that role (docs/api.md). Nothing here decides who sees what.
 *
 * What this file adds is the door: a request without a valid token is refused with 401 before
 * PostGraphile sees it (a missing, forged, expired, not-yet-valid or wrongly signed token, or one
 * signed with an algorithm we do not take); a valid one whose role is not one of the api's roles
 * gets 403. Every request is then recorded in the audit log (who, role, operation, variables,
 * rows returned, status, duration), on a connection of its own, after the response.
 *
 * Environment:
 *   THERMOCLINE_PG_DSN                      libpq-style DSN or URL of the store; the login role
 *                                           must be a member of thermocline_authenticator
 *   THERMOCLINE_GRAPHQL_LISTEN              host:port (default 127.0.0.1:8092; port 0: any,
 *                                           the chosen one is printed)
 *   THERMOCLINE_GRAPHQL_JWT_SECRET          HS256 secret, or
 *   THERMOCLINE_GRAPHQL_JWT_PUBLIC_KEY      a PEM file with the RS256/ES256 public key
 *   THERMOCLINE_GRAPHQL_JWT_AUDIENCE        required "aud" (optional)
 *   THERMOCLINE_API_SCHEMA                  default api
 *   THERMOCLINE_AUDIT_SCHEMA                default audit
 */
'use strict';

const fs = require('fs');
const http = require('http');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');
const ConnectionFilterPlugin = require('postgraphile-plugin-connection-filter');

const ROLES = new Set([
  'thermocline_viewer',
  'thermocline_analyst',
  'thermocline_operator',
  'thermocline_admin',
]);
// A request body larger than this is refused (413) before it is parsed.
const BODY_MAX = 256 * 1024;

function fail(message) {
  process.stderr.write(`thermocline graphql: ${message}\n`);
  process.exit(2);
}

const dsn = process.env.THERMOCLINE_PG_DSN || '';
const apiSchema = process.env.THERMOCLINE_API_SCHEMA || 'api';
const auditSchema = process.env.THERMOCLINE_AUDIT_SCHEMA || 'audit';
const listen = process.env.THERMOCLINE_GRAPHQL_LISTEN || '127.0.0.1:8092';
const secret = process.env.THERMOCLINE_GRAPHQL_JWT_SECRET || '';
const keyFile = process.env.THERMOCLINE_GRAPHQL_JWT_PUBLIC_KEY || '';
const audience = process.env.THERMOCLINE_GRAPHQL_JWT_AUDIENCE || undefined;

if (!dsn) fail('THERMOCLINE_PG_DSN is not set');
if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(apiSchema)) fail(`bad THERMOCLINE_API_SCHEMA "${apiSchema}"`);
if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(auditSchema)) fail(`bad THERMOCLINE_AUDIT_SCHEMA "${auditSchema}"`);
if (!secret && !keyFile) fail('set THERMOCLINE_GRAPHQL_JWT_SECRET or THERMOCLINE_GRAPHQL_JWT_PUBLIC_KEY');
if (secret && secret.length < 32) fail('THERMOCLINE_GRAPHQL_JWT_SECRET must be at least 32 bytes');
const verifyKey = keyFile ? fs.readFileSync(keyFile) : secret;
const algorithms = keyFile ? ['RS256', 'ES256'] : ['HS256'];
const m = /^(.*):(\d+)$/.exec(listen);
if (!m) fail(`THERMOCLINE_GRAPHQL_LISTEN "${listen}" is not host:port`);

// A libpq key=value DSN (what the rest of Thermocline takes) or a URL, for node-postgres.
function pgConfig(s) {
  if (/^postgres(ql)?:\/\//.test(s)) return { connectionString: s };
  const cfg = {};
  const names = { host: 'host', port: 'port', dbname: 'database', user: 'user', password: 'password' };
  for (const part of s.match(/(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/g) || []) {
    const [, k, v] = /^(\w+)\s*=\s*(.*)$/.exec(part);
    const value = v.startsWith("'") ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
    if (names[k]) cfg[names[k]] = k === 'port' ? Number(value) : value;
    if (k === 'connect_timeout') cfg.connectionTimeoutMillis = Number(value) * 1000;
  }
  return cfg;
}

const pool = new Pool({ ...pgConfig(dsn), max: 8 });
const auditPool = new Pool({ ...pgConfig(dsn), max: 2 });

function problem(res, status, title, detail) {
  const body = JSON.stringify({ errors: [{ message: `${title}: ${detail}` }] });
  const headers = { 'Content-Type': 'application/json' };
  if (status === 401) headers['WWW-Authenticate'] = 'Bearer';
  res.writeHead(status, headers);
  res.end(body);
}

// The caller's claims, or an HTTP status and why not.
function authenticate(req) {
  const h = req.headers.authorization || '';
  const mm = /^Bearer ([A-Za-z0-9_\-.=]+)$/.exec(h);
  if (!mm) return { status: 401, why: 'a Bearer token is required' };
  let claims;
  try {
    claims = jwt.verify(mm[1], verifyKey, { algorithms, audience, clockTolerance: 5 });
  } catch (e) {
    return { status: 401, why: `the token is not valid (${e.message})` };
  }
  if (typeof claims !== 'object' || claims === null)
    return { status: 401, why: 'the token holds no claims' };
  if (!ROLES.has(claims.role))
    return { status: 403, why: 'the token\'s role is not one of the api\'s roles', claims };
  return { claims, role: claims.role };
}

// Rows a response returned: the entries of its connections (nodes or edges), not looking inside
// them; null when it has none (a scalar, an error) or was too large to keep.
function rowsOf(text) {
  let data;
  try {
    data = text ? JSON.parse(text).data : null;
  } catch (e) {
    return null;
  }
  let rows = null;
  const walk = (v) => {
    if (!v || typeof v !== 'object') return;
    if (Array.isArray(v)) return v.forEach(walk);
    for (const [k, x] of Object.entries(v)) {
      if ((k === 'nodes' || k === 'edges') && Array.isArray(x)) rows = (rows || 0) + x.length;
      else walk(x);
    }
  };
  walk(data);
  return rows;
}

// The response's text, kept up to RESPONSE_KEEP bytes for rowsOf (null beyond).
const RESPONSE_KEEP = 8 * 1024 * 1024;
function keepResponse(res) {
  const chunks = [];
  let size = 0;
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  const keep = (c, enc) => {
    if (c == null || typeof c === 'function') return;
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c, typeof enc === 'string' ? enc : 'utf8');
    size += b.length;
    if (size <= RESPONSE_KEEP) chunks.push(b);
  };
  res.write = (c, enc, cb) => { keep(c, enc); return write(c, enc, cb); };
  res.end = (c, enc, cb) => { keep(c, enc); return end(c, enc, cb); };
  return () => (size <= RESPONSE_KEEP ? Buffer.concat(chunks).toString('utf8') : null);
}

// role: the api role the request ran as, or undefined (refused: recorded as the authenticator).
async function audit(role, claims, body, status, ms, rows) {
  let client;
  try {
    client = await auditPool.connect();
    await client.query('BEGIN');
    await client.query("SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
      [role || 'thermocline_authenticator', claims ? JSON.stringify(claims) : '']);
    let params = null;
    if (body && typeof body === 'object') {
      const query = String(body.query || '');
      // The operation's name: given, or the first named operation of the document.
      const named = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(query);
      const op = body.operationName || (named ? named[1] : null);
      params = { operationName: typeof op === 'string' ? op.replace(/\u0000/g, '\ufffd').slice(0, 200) : null,
                 query: query.slice(0, 4000), variables: body.variables || null };
    }
    await client.query(`SELECT "${auditSchema}".record('graphql', $1, $2::jsonb, $5, $3, $4)`,
      // jsonb refuses \u0000: a request carrying one is recorded with U+FFFD in its place.
      [params && params.operationName,
       params && JSON.stringify(params).replace(/(?<!\\)\\u0000/g, '\\ufffd'), String(status), ms,
       rows === undefined ? null : rows]);
    await client.query('COMMIT');
  } catch (e) {
    process.stderr.write(`thermocline graphql: could not record the request in the audit log: ${e.message}\n`);
    if (client) await client.query('ROLLBACK').catch(() => {});
  } finally {
    if (client) client.release();
  }
}

// GraphQL answers a refused argument with HTTP 200 and an error, like a failure: say which it is
// (extensions.code, Apollo's convention) so that clients -- and the property tests -- can tell.
// PostgreSQL's data exceptions (class 22: a bad date, a bad resolution) and PostGraphile's own
// argument checks are the caller's; privileges refused are FORBIDDEN; anything else (a lost
// connection, a JavaScript fault) is ours.
function classify(e) {
  const orig = e.originalError;
  const state = orig && typeof orig.code === 'string' && /^[0-9A-Z]{5}$/.test(orig.code) ? orig.code : null;
  if (state === '42501') return 'FORBIDDEN';
  if (state) return /^(22|23|2F|P0001)/.test(state) ? 'BAD_USER_INPUT' : 'INTERNAL_SERVER_ERROR';
  if (!orig) return 'GRAPHQL_VALIDATION_FAILED';
  if (orig instanceof TypeError || orig instanceof ReferenceError || orig instanceof RangeError ||
      orig instanceof SyntaxError || (orig.code && /^E[A-Z]/.test(orig.code)))
    return 'INTERNAL_SERVER_ERROR';
  return 'BAD_USER_INPUT';
}

function handleErrors(errors) {
  return errors.map((e) => {
    const code = classify(e);
    const out = { message: code === 'INTERNAL_SERVER_ERROR' ? 'internal error' : e.message,
                  locations: e.locations, path: e.path, extensions: { code } };
    if (code === 'INTERNAL_SERVER_ERROR')
      process.stderr.write(`thermocline graphql: ${e.stack || e.message}\n`);
    return out;
  });
}

const middleware = postgraphile(pool, [apiSchema], {
  handleErrors,
  appendPlugins: [ConnectionFilterPlugin],
  graphileBuildOptions: { connectionFilterRelations: false, connectionFilterComputedColumns: false },
  pgSettings: (req) => ({
    role: req.tcClaims.role,
    'request.jwt.claims': JSON.stringify(req.tcClaims),
  }),
  ignoreRBAC: false,
  ignoreIndexes: true, // views have no indexes of their own; their tables do
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  disableDefaultMutations: true,
  enableQueryBatching: false,
  graphiql: false,
  disableQueryLog: true,
  showErrorStack: false,
  bodySizeLimit: '256kB',
  retryOnInitFail: true,
  watchPg: false,
});

const server = http.createServer((req, res) => {
  const started = process.hrtime.bigint();
  const url = req.url.split('?')[0];
  if (url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (url !== '/graphql') {
    problem(res, 404, 'not found', 'the endpoint is /graphql');
    return;
  }
  const auth = authenticate(req);
  // Read the body ourselves (bounded) so that the audit can name the operation.
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= BODY_MAX) chunks.push(c);
  });
  req.on('end', () => {
    let body = null;
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    let response = null;
    const finish = (status) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      audit(auth.role, auth.claims, body, status, ms, response ? rowsOf(response()) : null);
    };
    if (auth.status) {
      problem(res, auth.status, auth.status === 401 ? 'unauthorized' : 'forbidden', auth.why);
      finish(auth.status);
      return;
    }
    if (size > BODY_MAX) {
      problem(res, 413, 'payload too large', `at most ${BODY_MAX} bytes`);
      finish(413);
      return;
    }
    if (req.method === 'POST' && (body === null || typeof body !== 'object' || Array.isArray(body))) {
      problem(res, 400, 'bad request', 'the body must be a JSON object with a "query"');
      finish(400);
      return;
    }
    req.tcClaims = auth.claims;
    // PostGraphile takes a body already parsed from req.body.
    req.body = body;
    req._body = true; // body-parser's mark: already read
    response = keepResponse(res);
    res.on('finish', () => finish(res.statusCode));
    middleware(req, res);
  });
});

server.listen(Number(m[2]), m[1], () => {
  const a = server.address();
  process.stdout.write(`thermocline graphql: listening on http://${a.address}:${a.port}/graphql` +
    ` (schema ${apiSchema})\n`);
});

function stop() {
  server.close();
  Promise.all([pool.end(), auditPool.end()]).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
