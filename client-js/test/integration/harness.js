// Real services for the integration tests: a `livesync serve` gateway process, a Python
// ORM writer process, and (for restart tests) a redis-server of our own on a free port.
//
// PostgreSQL and Redis must be reachable. When they are not, `services()` returns a skip
// reason, except under LIVESYNC_REQUIRE_SERVICES=1 (CI), where it throws: a missing
// service fails the run instead of skipping it.
import { spawn } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const PYTHON = process.env.LIVESYNC_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
const POSTGRES = process.env.LIVESYNC_JS_POSTGRES_URL
  ?? 'postgresql+psycopg://postgres@127.0.0.1:5432/livesync_js';
const REDIS = process.env.LIVESYNC_JS_REDIS_URL ?? 'redis://127.0.0.1:6379/13';
export const TIMEOUT = 10_000 * Number(process.env.LIVESYNC_TEST_TIMEOUT_FACTOR ?? 1);

function reachable(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => { socket.destroy(); resolve(false); });
  });
}

/** A skip reason when PostgreSQL or Redis is down; throws instead when CI requires them. */
export async function services() {
  const missing = [];
  if (!(await reachable(Number(new URL(POSTGRES.replace('+psycopg', '')).port || 5432)))) {
    missing.push(`PostgreSQL (${POSTGRES})`);
  }
  if (!(await reachable(Number(new URL(REDIS).port || 6379)))) missing.push(`Redis (${REDIS})`);
  if (missing.length === 0) return undefined;
  const reason = `${missing.join(' and ')} not reachable`;
  if (process.env.LIVESYNC_REQUIRE_SERVICES === '1') {
    throw new Error(`${reason} and LIVESYNC_REQUIRE_SERVICES=1`);
  }
  return `${reason}; start them to run the integration tests`;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** LIVESYNC_* settings for one test file: its own topic, so runs never see each other. */
export function environment(overrides = {}) {
  return {
    ...process.env,
    PYTHONPATH: ROOT,
    LIVESYNC_DATABASE_URL: POSTGRES,
    LIVESYNC_BROKER_URL: REDIS,
    LIVESYNC_TOPIC: `js-${randomBytes(6).toString('hex')}`,
    LIVESYNC_RELAY_INTERVAL: '0.1',
    LIVESYNC_OUTBOX_GRACE: '5', // the default: a grace below the janitor's cadence republishes rows already published
    ...overrides,
  };
}

function collectOutput(child, label) {
  const lines = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk) => { lines.push(chunk); if (lines.length > 200) lines.shift(); });
  }
  return () => `${label} output:\n${lines.join('')}`;
}

/** The Python writer: `await writer.send({op: 'insert', items: [...]})`. */
export async function startWriter(env) {
  const child = spawn(PYTHON, ['-m', 'tests.js.writer'], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(JSON.parse(line)));
  child.on('exit', (code) => {
    for (const resolve of waiting.splice(0)) resolve({ ok: false, error: `writer exited ${code}: ${stderr.join('')}` });
  });
  const writer = {
    send(command) {
      return new Promise((resolve, reject) => {
        waiting.push((answer) => (answer.ok ? resolve(answer) : reject(new Error(answer.error))));
        child.stdin.write(`${JSON.stringify(command)}\n`);
      });
    },
    async stop() {
      child.stdin.end();
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()));
    },
  };
  await writer.send({ op: 'setup' });
  return writer;
}

/** GET without keep-alive (an idle kept-alive socket would delay the server's shutdown). */
export function httpGet(url) {
  return new Promise((resolve) => {
    const request = http.get(url, { agent: false, timeout: 2000, headers: { connection: 'close' } }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    request.on('error', () => resolve({ status: 0, body: '' }));
    request.on('timeout', () => { request.destroy(); resolve({ status: 0, body: '' }); });
  });
}

async function waitUntil(check, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not happen within ${timeout} ms`);
}

/** One `livesync serve tests.js.app:app` process on `port`; `stop()` and `start()` again. */
export async function startGateway(env, port) {
  const port_ = port ?? (await freePort());
  let child;
  let output = () => '';
  const gateway = {
    port: port_,
    url: `ws://127.0.0.1:${port_}/live`,
    http: `http://127.0.0.1:${port_}`,
    async start() {
      child = spawn(PYTHON, ['-m', 'livesync.cli', 'serve', 'tests.js.app:app', '--port', String(port_)],
        { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      output = collectOutput(child, 'gateway');
      try {
        await waitUntil(async () => {
          if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}`);
          return (await httpGet(`${gateway.http}/healthz`)).status === 200;
        }, 'gateway start', 3 * TIMEOUT); // a loaded 2-core machine can take a while
      } catch (error) {
        error.message += `\n${output()}`;
        throw error;
      }
    },
    /** Stop the whole process group (Sanic's main process and its worker). A SIGTERM that
     *  lands while Sanic is still starting can leave it hanging: SIGKILL after 5 s. */
    async stop(signal = 'SIGTERM') {
      if (!child || child.exitCode !== null || child.signalCode !== null) return; // gone already
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const group = (sig) => { try { process.kill(-child.pid, sig); } catch { /* gone */ } };
      group(signal);
      const timer = setTimeout(() => group('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      group('SIGKILL'); // a worker must never outlive its main process (it holds the port)
      // A killed worker can hold the listening socket for a moment after its main process
      // is reported gone; a start() in that window would fail to bind the port.
      await waitUntil(async () => !(await reachable(port_)), 'the gateway port to close');
    },
    output: () => output(),
  };
  await gateway.start();
  return gateway;
}

/** A redis-server of our own (no persistence), so a test can restart it: a new epoch. */
export async function startRedis() {
  const port = await freePort();
  let child;
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { stdio: 'ignore' });
      await waitUntil(() => reachable(port), 'redis-server start');
    },
    async stop() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    },
  };
  await redis.start();
  return redis;
}

/** Resolve when `check()` is truthy, polling; for "this write shows up in the cache". */
export const eventually = (check, what = 'condition') => waitUntil(async () => Boolean(await check()), what);
