// The connection: handshake, tokens, heartbeats, reconnects, close codes, throttling.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setup, flush, fakeWebSocket, WELCOME } from './fake-server.js'
import { connect, backoff, CLOSE } from '../../src/index.js'

test('handshake: hello with version and token, then online', (t) => {
  const { client, server, statuses } = setup(t, { token: 'tok' })
  assert.equal(client.status, 'connecting')
  const ws = server()
  assert.equal(ws.url, 'ws://test/live')
  ws.open()
  assert.match(client.clientId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random UUID')
  assert.deepEqual(ws.sent, [{ type: 'hello', v: [1], token: 'tok', client: client.clientId }])
  assert.equal(client.status, 'connecting', 'not online before welcome')
  ws.deliver(WELCOME)
  assert.equal(client.status, 'online')
  assert.equal(client.session.session, 's-1')
  assert.deepEqual(statuses, ['online'])
})

test('hello without a token leaves the field out', (t) => {
  const { client, server } = setup(t)
  server().open()
  assert.deepEqual(server().sent[0], { type: 'hello', v: [1], client: client.clientId })
})

test('an async token function is called again for every connection', async (t) => {
  let calls = 0
  const { server, sockets, handshake } = setup(t, { token: async () => `t${++calls}` })
  assert.equal(sockets.length, 0, 'the socket waits for the token')
  await flush()
  handshake()
  assert.equal(server().sent[0].token, 't1')
  server().drop(1001)
  t.mock.timers.tick(1000)
  await flush()
  assert.equal(sockets.length, 2)
  server().open()
  assert.equal(server().sent[0].token, 't2')
})

test('a token function that throws is reported and retried with backoff', async (t) => {
  let fail = true
  const { sockets, errors, client } = setup(t, {
    timeout: 500, // shorter than the backoff: the failed attempt's timer must be gone
    token: () => {
      if (fail) throw new Error('auth down')
      return 'ok'
    },
  })
  assert.equal(sockets.length, 0)
  await flush()
  assert.equal(errors[0].code, 'token-failed')
  assert.equal(client.status, 'offline')
  fail = false
  t.mock.timers.tick(1000)
  assert.equal(sockets.length, 1)
  assert.equal(client.status, 'connecting')
  assert.deepEqual(errors.map((e) => e.code), ['token-failed'])
})

test('relative and http URLs become ws URLs; no WebSocket is an immediate error', () => {
  const { FakeWebSocket, sockets } = fakeWebSocket()
  connect('https://example.org/live', { WebSocket: FakeWebSocket, schemas: false }).close()
  assert.equal(sockets[0].url, 'wss://example.org/live')
  assert.throws(() => connect('ws://x/live', { WebSocket: undefined }), /WebSocket/)
})

test('server pings are answered with pongs carrying the same id', (t) => {
  const { handshake } = setup(t)
  const ws = handshake()
  ws.deliver({ type: 'ping' })
  ws.deliver({ type: 'ping', id: 7 })
  assert.deepEqual(ws.sentOf('pong'), [{ type: 'pong' }, { type: 'pong', id: 7 }])
})

for (const code of [1001, 1006, 1009, 1011, 4000, 4001, 4002, 4003, 4499]) {
  test(`close ${code} reconnects after the backoff delay`, (t) => {
    const { client, sockets, handshake, disconnects } = setup(t)
    handshake().drop(code)
    assert.deepEqual(disconnects, [{ code, reason: '', retry: true }])
    assert.equal(client.status, 'offline')
    t.mock.timers.tick(999)
    assert.equal(sockets.length, 1)
    t.mock.timers.tick(1)
    assert.equal(sockets.length, 2)
    assert.equal(client.status, 'connecting')
    handshake()
    assert.equal(client.status, 'online')
  })
}

for (const code of [1000, 4500, 4501, 4503, 4504, 4505, 4999]) {
  test(`close ${code} is terminal: offline, an error says why, no retry`, (t) => {
    const { client, sockets, handshake, errors } = setup(t)
    handshake().drop(code, 'why')
    assert.equal(client.status, 'offline')
    assert.equal(errors.length, 1)
    assert.equal(errors[0].code, 'closed')
    assert.equal(errors[0].closeCode, code)
    t.mock.timers.tick(10 * 60 * 1000)
    assert.equal(sockets.length, 1)
  })
}

test('a terminal close before the handshake is not retried either (bad token)', (t) => {
  const { client, sockets, server, errors } = setup(t, { token: 'expired' })
  server().open()
  server().drop(CLOSE.TOKEN_EXPIRED, 'token expired')
  t.mock.timers.tick(60_000)
  assert.equal(sockets.length, 1)
  assert.equal(client.status, 'offline')
  assert.equal(errors[0].closeCode, 4505)
})

test('reconnect() after a terminal close connects again with a fresh token', (t) => {
  let n = 0
  const { client, sockets, handshake, server } = setup(t, { token: () => `t${++n}` })
  handshake().drop(4505)
  client.reconnect()
  assert.equal(sockets.length, 2)
  server().open()
  assert.equal(server().sent[0].token, 't2')
})

test('the backoff function gets the attempt number, reset by a successful handshake', (t) => {
  const attempts = []
  const { sockets, server, handshake } = setup(t, { backoff: (n) => (attempts.push(n), 500) })
  server().drop(1006) // never opened
  t.mock.timers.tick(500)
  server().drop(1006)
  t.mock.timers.tick(500)
  assert.deepEqual(attempts, [1, 2])
  handshake().drop(1001)
  t.mock.timers.tick(500)
  assert.deepEqual(attempts, [1, 2, 1])
  assert.equal(sockets.length, 4)
})

test('default backoff: exponential, jittered within [d/2, d], capped', () => {
  const low = backoff({ base: 1000, max: 8000, random: () => 0 })
  const high = backoff({ base: 1000, max: 8000, random: () => 1 })
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(low), [500, 1000, 2000, 4000, 4000, 4000])
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(high), [1000, 2000, 4000, 8000, 8000, 8000])
  const real = backoff()
  const delays = Array.from({ length: 200 }, () => real(3))
  assert.ok(delays.every((d) => d >= 2000 && d <= 4000))
  assert.ok(new Set(delays).size > 20, 'jitter spreads the delays')
})

test('no welcome in time: the socket is dropped and retried', (t) => {
  const { sockets, server, errors } = setup(t, { timeout: 5000 })
  server().open()
  t.mock.timers.tick(5000)
  assert.equal(errors[0].code, 'handshake-timeout')
  assert.equal(sockets[0].closedWith.code, 4002)
  t.mock.timers.tick(1000)
  assert.equal(sockets.length, 2)
})

test('heartbeat: silence for 2 x ping_ms drops the connection and reconnects; any frame resets it', (t) => {
  const { client, sockets, handshake, errors } = setup(t)
  const ws = handshake({ ping_ms: 1000 })
  t.mock.timers.tick(1900)
  ws.deliver({ type: 'ping' })
  t.mock.timers.tick(1900)
  assert.equal(sockets.length, 1)
  assert.equal(errors.length, 0)
  t.mock.timers.tick(100)
  assert.equal(errors[0].code, 'heartbeat-timeout')
  assert.equal(client.status, 'offline')
  ws.deliver({ type: 'ping' }) // the dead socket's late frames are ignored
  assert.equal(ws.sentOf('pong').length, 1)
  t.mock.timers.tick(1000)
  assert.equal(sockets.length, 2)
})

test('heartbeat: false disables the dead-server check', (t) => {
  const { sockets, handshake } = setup(t, { heartbeat: false })
  handshake({ ping_ms: 1000 })
  t.mock.timers.tick(60_000)
  assert.equal(sockets.length, 1)
})

test('frames before welcome that are not welcome are reported', (t) => {
  const { server, errors, client } = setup(t)
  server().open()
  server().deliver({ type: 'error', code: 'malformed', message: 'frame is not valid JSON' })
  server().deliver('nonsense')
  assert.deepEqual(errors.map((e) => e.code), ['malformed', 'bad-message'])
  assert.equal(client.status, 'connecting')
})

test('close() stops everything: offline, socket closed with 1000, no reconnect', (t) => {
  const { client, sockets, handshake, statuses } = setup(t)
  const ws = handshake()
  client.close()
  assert.equal(client.status, 'offline')
  assert.deepEqual(ws.closedWith, { code: 1000, reason: '' })
  ws.drop(1000) // a late close event changes nothing
  t.mock.timers.tick(60_000)
  assert.equal(sockets.length, 1)
  assert.deepEqual(statuses, ['online', 'offline'])
  assert.throws(() => client.subscribe('x'), /closed/)
})

test('close() while waiting for an async token: no socket is ever opened', async (t) => {
  const { client, sockets } = setup(t, { token: async () => 'late' })
  client.close()
  await flush()
  assert.equal(sockets.length, 0)
})

test('outbound frames respect the rate limit from welcome (80% rate, half burst)', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake({ limits: { ...WELCOME.limits, rate_per_second: 10, rate_burst: 4 } })
  for (let i = 0; i < 6; i++) client.subscribe('p', { i })
  assert.equal(ws.sentOf('sub').length, 2, 'a burst of half the allowed burst')
  t.mock.timers.tick(124) // 8 per second: one every 125 ms
  assert.equal(ws.sentOf('sub').length, 2)
  t.mock.timers.tick(1)
  assert.equal(ws.sentOf('sub').length, 3)
  for (const expected of [4, 5, 6]) {
    t.mock.timers.tick(125)
    assert.equal(ws.sentOf('sub').length, expected)
  }
  assert.deepEqual(ws.sentOf('sub').map((m) => m.params.i), [0, 1, 2, 3, 4, 5])
})

test('a sub frame above max_frame_bytes is refused locally, not sent (the server would close 1009)', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake({ limits: { ...WELCOME.limits, max_frame_bytes: 100 } })
  const sub = client.subscribe('p', { blob: 'x'.repeat(200) })
  assert.equal(ws.sentOf('sub').length, 0)
  assert.equal(sub.state, 'stopped')
  assert.equal(errors[0].code, 'frame-too-big')
  return assert.rejects(sub.ready, { code: 'frame-too-big' })
})

test('a token that never comes counts against the handshake timeout; a late one is ignored', async (t) => {
  let release
  let calls = 0
  const { sockets, errors, client } = setup(t, {
    timeout: 5000,
    token: () => (++calls === 1 ? new Promise((resolve) => (release = resolve)) : 'second'),
  })
  t.mock.timers.tick(5000)
  assert.equal(errors[0].code, 'handshake-timeout')
  assert.equal(client.status, 'offline')
  release('late')
  await flush()
  assert.equal(sockets.length, 0, 'the late token opens nothing')
  t.mock.timers.tick(1000)
  assert.equal(sockets.length, 1)
  sockets[0].open()
  assert.equal(sockets[0].sent[0].token, 'second')
})

test('a WebSocket constructor that throws (say, a blocked URL) is terminal and reported', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] })
  class Refusing {
    constructor() {
      throw new Error('SecurityError')
    }
  }
  const client = connect('ws://x/live', { WebSocket: Refusing, schemas: false })
  const errors = []
  client.on('error', (e) => errors.push(e))
  await flush()
  assert.equal(client.status, 'offline')
  assert.equal(errors[0].code, 'closed')
  assert.match(errors[0].message, /SecurityError/)
  t.mock.timers.tick(60_000)
  assert.equal(client.status, 'offline')
})
