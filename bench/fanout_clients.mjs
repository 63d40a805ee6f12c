// Websocket client swarm for bench/fanout.py: K connections in one Node process.
//
//   node fanout_clients.mjs --url ws://127.0.0.1:8000/live --clients 1000 --mode livesync \
//        --pub bench_fanout_items
//
// --mode livesync: each connection sends hello, then sub, and counts as connected when it
//   receives `ready`.  --mode raw: a plain connection whose every message is the JSON
//   frame itself (the raw relay, Django Channels, minimal Sanic).  --mode socketio: speaks
//   the Engine.IO v4 websocket transport by hand ("40" to join the namespace, answers "2"
//   with "3") and counts as connected at the namespace's "40{...}" acknowledgement.
// --concurrency N: connections being opened at once (default 50, below Sanic's and the
//   websockets library's accept backlog of 100, so a ramp of thousands never overflows it).
//
// Control is line-based on stdin; answers are JSON lines on stdout:
//   phase NAME   start counting deliveries and latencies under NAME (ends the previous phase)
//   report       print {"phases": {NAME: {count, samples, p50_ms, p99_ms, hist, ...}}}
//                `hist` is a sparse latency histogram {bucket: count} with 1% wide buckets
//                (bucket b holds latencies up to 0.01 ms * 1.01^b), so that bench/fanout.py
//                can merge the percentiles of a swarm split over several processes.
//   count        print {"event": "count", "name": NAME, "count": N}: the current phase's
//                deliveries so far (cheap: for waiting until a phase's messages arrived)
//   quit         close every connection and exit
// Once all connections are up it prints {"event": "connected", ...}.
//
// Latency: every delivered message carries the writer's wall-clock time `t` (seconds, taken
// right after COMMIT / before PUBLISH); the receipt time is performance.timeOrigin +
// performance.now() on the same machine, so `now - t` is commit-to-receipt.
import { createInterface } from "node:readline";
import WebSocket from "ws";

import { nowSeconds, out, timestampOf } from "./clients_common.mjs";

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url;
const clients = Number(args.clients ?? 100);
const mode = args.mode ?? "livesync";
const pub = args.pub ?? "bench_fanout_items";
const concurrency = Number(args.concurrency ?? 50);
const maxSamples = Number(args["max-samples"] ?? 2_000_000);


// ------------------------------------------------------------------ measurement state
let phase = null;
const phases = {};
const BUCKETS = 2400; // 0.01 ms * 1.01^2400 is about 2e8 ms: every latency fits
const bucketOf = (ms) => Math.min(BUCKETS - 1, Math.max(0, Math.ceil(Math.log(ms / 0.01) / Math.log(1.01))));
function startPhase(name) {
  const now = nowSeconds();
  if (phase !== null) phase.ended = now; // a phase lasts until the next one starts
  phase = {
    name,
    count: 0,
    bytes: 0,
    samples: new Float64Array(1024),
    n: 0,
    hist: new Uint32Array(BUCKETS),
    started: now,
    ended: null,
  };
  phases[name] = phase;
}
function record(ts, bytes) {
  if (phase === null) return;
  phase.count += 1;
  phase.bytes += bytes;
  if (ts === undefined) return;
  const ms = (nowSeconds() - ts) * 1000;
  phase.hist[bucketOf(ms)] += 1;
  if (phase.n >= maxSamples) return;
  if (phase.n === phase.samples.length) {
    const bigger = new Float64Array(phase.samples.length * 2);
    bigger.set(phase.samples);
    phase.samples = bigger;
  }
  phase.samples[phase.n++] = ms;
}
function summary(p) {
  const s = p.samples.subarray(0, p.n).sort();
  const q = (f) => (s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))] : null);
  const hist = {};
  p.hist.forEach((c, b) => {
    if (c) hist[b] = c;
  });
  return {
    count: p.count,
    bytes: p.bytes,
    samples: p.n,
    seconds: (p.ended ?? nowSeconds()) - p.started,
    p50_ms: q(0.5),
    p90_ms: q(0.9),
    p99_ms: q(0.99),
    max_ms: s.length ? s[s.length - 1] : null,
    hist,
  };
}

// ------------------------------------------------------------------ connections
const sockets = [];
let connected = 0;
let failures = 0;
let closedUnexpectedly = 0;
const closeCodes = {};
let quitting = false;

function open(index) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    sockets.push(ws);
    let done = false;
    const up = () => {
      if (!done) {
        done = true;
        connected += 1;
        resolve(true);
      }
    };
    ws.on("open", () => {
      if (mode === "livesync") {
        ws.send(JSON.stringify({ type: "hello", v: [1] }));
        ws.send(JSON.stringify({ type: "sub", id: "a", pub }));
      } else if (mode === "socketio") {
        // connected once the server acknowledges the namespace (a "40{...}" packet)
      } else {
        up();
      }
    });
    ws.on("message", (data) => {
      const text = data.toString();
      if (mode === "socketio") {
        // Engine.IO packet type first, then (type 4, "message") the Socket.IO packet type.
        if (text.startsWith("42")) {
          const [, payload] = JSON.parse(text.slice(2)); // 42["event",payload]
          const msg = typeof payload === "string" ? JSON.parse(payload) : payload;
          return record(msg.t, data.length);
        }
        if (text === "2") return ws.send("3"); // engine.io ping -> pong
        if (text.startsWith("0")) return ws.send("40"); // open 0{sid,...}: join namespace "/"
        if (text.startsWith("40")) return up(); // namespace joined: 40{"sid":...}
        if (text.startsWith("44") || text.startsWith("41") || text === "1") {
          // connect_error, namespace disconnect, engine.io close
          process.stderr.write(`client ${index}: ${text}\n`);
          if (!done) {
            failures += 1;
            done = true;
            resolve(false);
          }
          return ws.close();
        }
        return; // "6" noop and anything else
      }
      if (mode === "raw") return record(JSON.parse(text).t, data.length);
      const msg = JSON.parse(text);
      if (msg.type === "tx") record(timestampOf(msg), data.length);
      else if (msg.type === "ready") up();
      else if (msg.type === "nosub" || msg.type === "error") {
        process.stderr.write(`client ${index}: ${text}\n`);
      }
    });
    ws.on("error", (err) => {
      if (!done) {
        failures += 1;
        done = true;
        process.stderr.write(`client ${index}: ${err.message}\n`);
        resolve(false);
      }
    });
    ws.on("close", (code) => {
      closeCodes[code] = (closeCodes[code] ?? 0) + 1;
      if (!quitting) closedUnexpectedly += 1;
      if (!done) {
        failures += 1;
        done = true;
        resolve(false);
      }
    });
  });
}

async function connectAll() {
  let next = 0;
  const started = nowSeconds();
  const worker = async () => {
    while (next < clients) await open(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, clients) }, worker));
  out({ event: "connected", connected, failures, seconds: nowSeconds() - started });
}

// livesync closes a connection that sends nothing for ping_timeout (60 s by default), so
// each socket pings every 20 s; spread over the interval (one slice a second), as real
// clients' timers are, not 5,000 at once: a synchronized burst would measure the burst.
const PING_SLICES = 20;
let pingSlice = 0;
setInterval(() => {
  if (mode !== "livesync") return;
  pingSlice = (pingSlice + 1) % PING_SLICES;
  sockets.forEach((ws, index) => {
    if (index % PING_SLICES === pingSlice && ws.readyState === WebSocket.OPEN) ws.send('{"type":"ping"}');
  });
}, 20_000 / PING_SLICES).unref();

createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, name] = line.trim().split(/\s+/);
  if (command === "phase") {
    startPhase(name);
    out({ event: "phase", name });
  } else if (command === "count") {
    out({ event: "count", name: phase?.name ?? null, count: phase?.count ?? 0 });
  } else if (command === "report") {
    const report = {};
    for (const [key, p] of Object.entries(phases)) report[key] = summary(p);
    out({ event: "report", phases: report, connected, failures, closedUnexpectedly, closeCodes });
  } else if (command === "quit") {
    quitting = true;
    for (const ws of sockets) ws.terminate();
    process.exit(0);
  }
});

connectAll();
