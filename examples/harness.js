// Real processes for the examples' browser tests: `livesync serve examples.<name>.app:live`
// gateways and a Python writer (examples/<name>/test/writer.py) on PostgreSQL + Redis, and
// Debian's chromium driven by playwright-core. Each example's test/harness.js binds it.
//
// Missing PostgreSQL, Redis or chromium skips the tests with the reason, except under
// LIVESYNC_REQUIRE_SERVICES=1 (CI), where it fails them.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CHROMIUM = process.env.LIVESYNC_CHROMIUM ?? '/usr/bin/chromium';
export const PYTHON = process.env.LIVESYNC_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');
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

/**
 * The harness of one example (`examples/<name>/`): its database `livesync_<name>` and a Redis
 * database of its own (overridable with LIVESYNC_<NAME>_POSTGRES_URL / _REDIS_URL), its
 * gateway `livesync serve examples.<name>.app:live`, its writer `test/writer.py`, and its
 * screenshots under test-artifacts/<name>/.
 */
export function exampleHarness(name, { redisDb }) {
  const NAME = name.toUpperCase();
  const POSTGRES = process.env[`LIVESYNC_${NAME}_POSTGRES_URL`]
    ?? `postgresql+psycopg://postgres@127.0.0.1:5432/livesync_${name}`;
  const REDIS = process.env[`LIVESYNC_${NAME}_REDIS_URL`] ?? `redis://127.0.0.1:6379/${redisDb}`;
  return {
    ARTIFACTS: path.join(ROOT, 'test-artifacts', name),
    services: () => services(POSTGRES, REDIS),
    chromium: () => chromium(name),
    environment: (overrides = {}) => environment(name, POSTGRES, REDIS, overrides),
    startGateway: (env, port) => startGateway(`examples.${name}.app:live`, env, port),
    startWriter: (env) => startWriter(path.join(ROOT, 'examples', name, 'test', 'writer.py'), env),
  };
}

/** A skip reason when PostgreSQL, Redis or chromium is missing; throws instead under CI. */
async function services(POSTGRES, REDIS) {
  const missing = [];
  if (!(await reachable(Number(new URL(POSTGRES.replace('+psycopg', '')).port || 5432)))) missing.push(`PostgreSQL (${POSTGRES})`);
  if (!(await reachable(Number(new URL(REDIS).port || 6379)))) missing.push(`Redis (${REDIS})`);
  if (!existsSync(CHROMIUM)) missing.push(`chromium (${CHROMIUM}; apt-get install chromium)`);
  if (missing.length === 0) return undefined;
  const reason = `${missing.join(', ')} not available`;
  if (process.env.LIVESYNC_REQUIRE_SERVICES === '1') throw new Error(`${reason} and LIVESYNC_REQUIRE_SERVICES=1`);
  return reason;
}

/** playwright-core from this example's node_modules, or client-js's when only that is installed. */
async function chromium(name) {
  for (const base of [`examples/${name}`, 'client-js']) {
    const entry = path.join(ROOT, base, 'node_modules', 'playwright-core', 'index.mjs');
    if (existsSync(entry)) return (await import(entry)).chromium;
  }
  throw new Error(`playwright-core is not installed: cd examples/${name} && npm ci`);
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

/** LIVESYNC_* settings for one test file: a fresh topic, so runs never mix. */
function environment(name, POSTGRES, REDIS, overrides) {
  return {
    ...process.env,
    PYTHONPATH: ROOT,
    LIVESYNC_DATABASE_URL: POSTGRES,
    LIVESYNC_BROKER_URL: REDIS,
    LIVESYNC_TOPIC: `${name}-${randomBytes(6).toString('hex')}`,
    LIVESYNC_RELAY_INTERVAL: '0.1',
    LIVESYNC_OUTBOX_GRACE: '5', // the default: a grace below the janitor's cadence republishes rows already published
    ...overrides,
  };
}

export function remember(child) {
  const lines = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk) => { lines.push(chunk); if (lines.length > 200) lines.shift(); });
  }
  return () => lines.join('');
}

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

export async function waitUntil(check, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not happen within ${timeout} ms`);
}

/** A process group we can stop for good (Sanic's main process and its worker). */
export function stopGroup(child, signal = 'SIGTERM') {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const group = (sig) => { try { process.kill(-child.pid, sig); } catch { /* gone */ } };
  group(signal);
  const timer = setTimeout(() => group('SIGKILL'), 5000);
  return exited.then(() => { clearTimeout(timer); group('SIGKILL'); });
}

/** `livesync serve <target>` on `port`; `stop()` and `start()` again. */
async function startGateway(target, env, port) {
  const port_ = port ?? (await freePort());
  let child;
  let output = () => '';
  const gateway = {
    port: port_,
    url: `http://127.0.0.1:${port_}/`,
    async start() {
      child = spawn(PYTHON, ['-m', 'livesync.cli', 'serve', target, '--port', String(port_)],
        { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      output = remember(child);
      try {
        await waitUntil(async () => {
          if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}`);
          return (await httpGet(`${gateway.url}healthz`)).status === 200;
        }, 'gateway start', 3 * TIMEOUT);
      } catch (error) {
        error.message += `\n${output()}`;
        throw error;
      }
    },
    /** Stop the group, then wait for the port to close: a killed worker can hold the
     *  listening socket for a moment, and a start() in that window would fail to bind. */
    async stop(signal) {
      await stopGroup(child, signal);
      await waitUntil(async () => !(await reachable(port_)), 'the gateway port to close');
    },
    output: () => output(),
  };
  await gateway.start();
  return gateway;
}

/** A test writer (`test/writer.py`): `await writer.send({op: ...})` -> its answer. */
async function startWriter(script, env) {
  const child = spawn(PYTHON, [script],
    { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = remember(child);
  const waiting = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(JSON.parse(line)));
  child.on('exit', (code) => {
    for (const resolve of waiting.splice(0)) resolve({ ok: false, error: `writer exited ${code}: ${stderr()}` });
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
  await writer.send({ op: 'reset' });
  return writer;
}

/**
 * A page at `url`, with its errors collected (`errors`), once it says it is ready and online.
 * `prepare(page)` runs before it loads (to attach listeners).
 */
export async function openPage(browser, url, { width, height, prepare } = {}) {
  const page = await browser.newPage({ viewport: { width, height } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  page.on('console', (message) => {
    // Chromium logs each refused reconnect attempt; those are expected while a gateway is down.
    if (message.type() === 'error' && !/WebSocket connection to .* failed/.test(message.text())) errors.push(new Error(message.text()));
  });
  await prepare?.(page);
  await page.goto(url);
  await page.locator('body[data-ready="true"]').waitFor({ timeout: TIMEOUT });
  await page.locator('#connection[data-status="online"]').waitFor({ timeout: TIMEOUT });
  return { page, errors };
}
