// A REST-shaped Cloudflare D1 over Miniflare's real D1 binding (workerd's SQLite), for
// hive_store_d1's tests and benchmark. It serves the two routes of the D1 REST API that the
// plugin uses, with Cloudflare's v4 envelope:
//
//   POST /client/v4/accounts/:account/d1/database/:database/query   {sql, params} | {batch: [...]}
//   POST /client/v4/accounts/:account/d1/database/:database/raw     (same body; rows as arrays)
//
// A batch (or a multi-statement `sql`) runs as one D1 batch: one transaction, all or nothing.
// SQL errors are HTTP 400 with code 7500, as real D1 answers since 2024-04.
//
// Test hook (not part of D1): POST /__fake/reset drops every user table, view and trigger.
// Faults (429/5xx, dropped connections, late answers) are injected by serve.mjs, which sits in
// front of this worker and can cut a TCP connection, something a worker cannot do.
// Written after the recipe in the project notes on D1 (Appendix A of d1.md).

const ROUTE = /^\/client\/v4\/accounts\/([^/]+)\/d1\/database\/([^/]+)\/(query|raw)$/;

function envelope(result, status = 200, errors = []) {
  return Response.json({ result, success: errors.length === 0, errors, messages: [] }, { status });
}
const fail = (status, code, message) => envelope(null, status, [{ code, message }]);

// Split on top-level ';' (quotes, comments and CREATE TRIGGER ... BEGIN ... END respected).
export function splitSql(sql) {
  const out = []; let cur = "", i = 0, depth = 0, words = []; const n = sql.length;
  while (i < n) {
    const c = sql[i], d = sql[i + 1];
    if (c === "-" && d === "-") { const j = sql.indexOf("\n", i); const e = j < 0 ? n : j; cur += sql.slice(i, e); i = e; continue; }
    if (c === "/" && d === "*") { const j = sql.indexOf("*/", i + 2); const e = j < 0 ? n : j + 2; cur += sql.slice(i, e); i = e; continue; }
    if (c === "'" || c === '"' || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c; let j = i + 1;
      while (j < n) { if (sql[j] === close) { if (close !== "]" && sql[j + 1] === close) { j += 2; continue; } break; } j++; }
      cur += sql.slice(i, j + 1); i = j + 1; continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i; while (j < n && /[A-Za-z0-9_$]/.test(sql[j])) j++;
      const w = sql.slice(i, j).toUpperCase(); words.push(w);
      const isTrigger = words.includes("TRIGGER") && words[0] === "CREATE";
      if (isTrigger && (w === "BEGIN" || w === "CASE")) depth++;
      if (isTrigger && w === "END" && depth > 0) depth--;
      cur += sql.slice(i, j); i = j; continue;
    }
    if (c === ";" && depth === 0) { if (cur.trim()) out.push(cur.trim()); cur = ""; words = []; i++; continue; }
    cur += c; i++;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

// raw mode derives columns from object keys, so duplicate column names collapse.
function shape(r, raw) {
  const meta = { ...r.meta };
  if (!raw) return { results: r.results, success: r.success, meta };
  const rows = r.results ?? []; const columns = rows.length ? Object.keys(rows[0]) : [];
  return { results: { columns, rows: rows.map((o) => columns.map((k) => o[k])) }, success: r.success, meta };
}

async function run(request, env, m) {
  if (request.method !== "POST") return fail(405, 10000, "Method not allowed");
  if (env.API_TOKEN && request.headers.get("Authorization") !== `Bearer ${env.API_TOKEN}`) return fail(401, 10000, "Authentication error");
  if (env.DATABASE_ID && m[2] !== env.DATABASE_ID) return fail(404, 7404, `The database ${m[2]} could not be found`);
  let body; try { body = await request.json(); } catch { return fail(400, 7400, "The request is malformed: invalid JSON"); }
  const raw = m[3] === "raw"; const items = Array.isArray(body.batch) ? body.batch : [body]; const stmts = [];
  for (const it of items) {
    if (typeof it.sql !== "string") return fail(400, 7400, "The request is malformed: sql must be a string");
    const parts = splitSql(it.sql); const params = it.params ?? [];
    if (parts.length > 1 && params.length) return fail(400, 7500, "params not supported with multiple statements (fake)");
    for (const p of parts) stmts.push(params.length ? env.DB.prepare(p).bind(...params) : env.DB.prepare(p));
  }
  if (!stmts.length) return fail(400, 7500, "No SQL statements detected.");
  try {
    const res = stmts.length === 1 ? [await stmts[0].all()] : await env.DB.batch(stmts);
    return envelope(res.map((r) => shape(r, raw)));
  } catch (e) {
    return fail(400, 7500, String(e?.cause?.message ?? e?.message ?? e));
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/__fake/reset" && request.method === "POST") {
      const { results } = await env.DB.prepare(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND type IN ('table','view','trigger')").all();
      const order = { trigger: 0, view: 1, table: 2 }; results.sort((a, b) => order[a.type] - order[b.type]);
      const q = (n) => '"' + n.replace(/"/g, '""') + '"';
      if (results.length) {
        await env.DB.batch([env.DB.prepare("PRAGMA defer_foreign_keys = on"),
          ...results.map((r) => env.DB.prepare(`DROP ${r.type.toUpperCase()} IF EXISTS ${q(r.name)}`))]);
      }
      return Response.json({ ok: true, dropped: results.length });
    }
    const m = url.pathname.match(ROUTE);
    if (!m) return fail(404, 7003, "Could not route to " + url.pathname);
    return run(request, env, m);
  },
};
