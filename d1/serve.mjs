// The local D1 for hive_store_d1's tests and benchmark: Miniflare (workerd's real D1) running
// worker.mjs, behind a small HTTP proxy on 127.0.0.1 that can inject faults.
//
// Prints one JSON line {"ready": "http://127.0.0.1:PORT/", "startup_ms": N} once it answers.
// Environment: PORT (0 = a free port, the default), DATABASE_ID, API_TOKEN (optional bearer
// check), D1_PERSIST (a directory; default: in memory), STOP_ON_STDIN_EOF=1 (stop when stdin
// closes, i.e. when the parent process that holds the pipe dies).
// Stop it with SIGTERM/SIGINT to its process group: SIGKILL to node alone would orphan workerd.
//
// Fault hooks (the proxy's; not part of D1). Each queued fault applies to one later API request:
//   POST /__fake/fail  {"faults": [f, ...], "clear": false}
//     {"kind": "status", "status": 429, "retry_after": 1}  answer that status, run nothing
//         (429: code 971 + Retry-After; 5xx: code 7500 "Internal error"; "message" overrides)
//     {"kind": "drop", "when": "before" | "after"}  close the TCP connection without an answer,
//         before forwarding (nothing ran) or after D1 answered (the statements ran)
//     {"kind": "delay", "ms": 2000, "when": "before" | "after"}  answer late
//   The old form {"status": 429, "count": 2, "retry_after": 1} works too.
//   GET  /__fake/stats  {"requests", "faults", "queued"}
//   POST /__fake/reset  clears faults and counters, and drops every table (in the worker)
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import http from "node:http";

const t0 = performance.now();
const port = Number(process.env.PORT ?? 0);
const mf = new Miniflare({
  modules: true,
  script: readFileSync(new URL("./worker.mjs", import.meta.url), "utf8"),
  compatibilityDate: "2025-01-01",
  d1Databases: { DB: process.env.DATABASE_ID || "00000000-0000-0000-0000-000000000001" },
  d1Persist: process.env.D1_PERSIST || false,
  bindings: { API_TOKEN: process.env.API_TOKEN ?? "", DATABASE_ID: process.env.DATABASE_ID ?? "" },
  host: "127.0.0.1",
  port: 0,
});
const upstream = new URL(String(await mf.ready));
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

let faults = [];
let stats = { requests: 0, faults: 0 };
const API = /^\/client\/v4\/accounts\/[^/]+\/d1\/database\/[^/]+\/(query|raw)$/;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function forward(req, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: upstream.host, "content-length": String(body.length) };
    const up = http.request({ host: upstream.hostname, port: upstream.port, path: req.url,
                              method: req.method, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    up.on("error", reject);
    up.end(body);
  });
}

function json(res, status, obj, extra = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { "content-type": "application/json", "content-length": body.length, ...extra });
  res.end(body);
}

function cut(req, res) {
  // No answer at all: the client sees the connection reset / closed.
  res.socket?.destroy();
  req.socket?.destroy();
}

const server = http.createServer(async (req, res) => {
  try {
    const body = await readBody(req);
    if (req.url === "/__fake/fail" && req.method === "POST") {
      const spec = JSON.parse(body.toString() || "{}");
      if (spec.clear) faults = [];
      if (Array.isArray(spec.faults)) faults.push(...spec.faults);
      else if (spec.status !== undefined) {
        for (let k = 0; k < (spec.count ?? 1); k++) faults.push({ kind: "status", status: spec.status, retry_after: spec.retry_after ?? 1 });
      }
      return json(res, 200, { ok: true, queued: faults.length });
    }
    if (req.url === "/__fake/stats") return json(res, 200, { ...stats, queued: faults.length });
    if (req.url === "/__fake/reset" && req.method === "POST") {
      faults = []; stats = { requests: 0, faults: 0 };
    }
    const api = API.test(req.url.split("?")[0]);
    const f = api && faults.length ? faults.shift() : null;
    if (api) stats.requests++;
    if (f) stats.faults++;
    if (f && f.kind === "status") {
      const status = f.status ?? 429;
      const code = status === 429 ? 971 : 7500;
      const message = f.message ?? (status === 429 ? "Please wait and consider throttling your request speed" : "Internal error");
      const extra = status === 429 || f.retry_after !== undefined ? { "retry-after": String(f.retry_after ?? 0) } : {};
      return json(res, status, { result: null, success: false, errors: [{ code, message }], messages: [] }, extra);
    }
    const when = f ? (f.when ?? "before") : null;
    if (f && f.kind === "drop" && when === "before") return cut(req, res);
    if (f && f.kind === "delay" && when === "before") await sleep(f.ms ?? 1000);
    const out = await forward(req, body);
    if (f && f.kind === "drop" && when === "after") return cut(req, res);
    if (f && f.kind === "delay" && when === "after") await sleep(f.ms ?? 1000);
    const headers = { ...out.headers };
    delete headers["transfer-encoding"];
    headers["content-length"] = String(out.body.length);
    res.writeHead(out.status, headers);
    res.end(out.body);
  } catch (e) {
    if (!res.headersSent) json(res, 502, { result: null, success: false, errors: [{ code: 7500, message: `proxy: ${e}` }], messages: [] });
    else res.destroy();
  }
});
server.keepAliveTimeout = 30000;
await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
const addr = server.address();
console.log(JSON.stringify({ ready: `http://127.0.0.1:${addr.port}/`, startup_ms: Math.round(performance.now() - t0) }));

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  server.close();
  try { await mf.dispose(); } finally { process.exit(0); }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.on("SIGHUP", stop);
if (process.env.STOP_ON_STDIN_EOF === "1") {
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
