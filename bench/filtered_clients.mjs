// Websocket clients for bench/filtered.py: C connections, each with S filtered subscriptions.
//
//   node filtered_clients.mjs --url ws://127.0.0.1:8000/live --connections 100 --subs 100 \
//        --pub bench_by_owner
//
// Connection i subscribes to owners i*S .. i*S+S-1 (params {owner_id}), so the run holds
// C*S subscriptions, each with a different filter. A connection counts as connected when
// all its S subscriptions are `ready`.
//
// The control protocol is the one bench/fanout.py's Swarm speaks (stdin lines, JSON lines
// on stdout): `phase NAME`, `report`, `quit`; {"event": "connected", ...} once every
// connection is up. Latency: the writer puts its wall-clock time in the document's
// data.t; `now - t` on receipt (same machine, same clock).
import { createInterface } from "node:readline";
import WebSocket from "ws";

import { nowSeconds, out, timestampOf } from "./clients_common.mjs";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
const url = args.url;
const connections = Number(args.connections ?? 10);
const subs = Number(args.subs ?? 1);
const pub = args.pub ?? "bench_by_owner";
const concurrency = Number(args.concurrency ?? 20);


// ------------------------------------------------------------------ measurement
let phase = null;
const phases = {};

function record(ts, bytes) {
  if (phase === null) return;
  phase.count += 1;
  phase.bytes += bytes;
  if (ts !== undefined) phase.samples.push((nowSeconds() - ts) * 1000);
}

function summary(p) {
  const s = Float64Array.from(p.samples).sort();
  const q = (f) => (s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))] : null);
  return {
    count: p.count,
    bytes: p.bytes,
    samples: s.length,
    seconds: nowSeconds() - p.started,
    p50_ms: q(0.5),
    p90_ms: q(0.9),
    p99_ms: q(0.99),
    max_ms: s.length ? s[s.length - 1] : null,
  };
}

// ------------------------------------------------------------------ connections
const sockets = [];
let connected = 0;
let failures = 0;
let refused = 0;
let closedUnexpectedly = 0;
let quitting = false;

function open(index) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    sockets.push(ws);
    let ready = 0;
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      if (ok) connected += 1;
      else failures += 1;
      resolve(ok);
    };
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "hello", v: [1] }));
      for (let j = 0; j < subs; j++) {
        const params = { owner_id: index * subs + j };
        ws.send(JSON.stringify({ type: "sub", id: `s${j}`, pub, params }));
      }
    });
    ws.on("message", (data) => {
      const text = data.toString();
      const msg = JSON.parse(text);
      if (msg.type === "tx") record(timestampOf(msg), data.length);
      else if (msg.type === "ready") {
        ready += 1;
        if (ready === subs) finish(true);
      } else if (msg.type === "nosub" || msg.type === "error") {
        refused += 1;
        process.stderr.write(`connection ${index}: ${text}\n`);
        finish(false);
      }
    });
    ws.on("error", (err) => {
      process.stderr.write(`connection ${index}: ${err.message}\n`);
      finish(false);
    });
    ws.on("close", () => {
      if (!quitting) closedUnexpectedly += 1;
      finish(false);
    });
  });
}

async function connectAll() {
  let next = 0;
  const started = nowSeconds();
  const worker = async () => {
    while (next < connections) await open(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, connections) }, worker));
  out({ event: "connected", connected, failures, refused, seconds: nowSeconds() - started });
}

// livesync closes a connection that sends nothing for ping_timeout (60 s by default).
setInterval(() => {
  for (const ws of sockets) if (ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
}, 20_000).unref();

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, name] = line.trim().split(/\s+/);
  if (command === "phase") {
    phase = { count: 0, bytes: 0, samples: [], started: nowSeconds() };
    phases[name] = phase;
    out({ event: "phase", name });
  } else if (command === "report") {
    const report = {};
    for (const [key, p] of Object.entries(phases)) report[key] = summary(p);
    out({ event: "report", phases: report, connected, failures, refused, closedUnexpectedly });
  } else if (command === "quit") {
    quitting = true;
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});

connectAll();
