// A stub transport: a WebSocket class whose instances the test drives as the server would.
import assert from 'node:assert/strict'
import { connect } from '../../src/index.js'

export const WELCOME = {
  type: 'welcome',
  v: 1,
  session: 's-1',
  epoch: 'e1',
  ping_ms: 25000,
  limits: { max_frame_bytes: 65536, max_subscriptions: 100, max_queue_bytes: 1048576, rate_per_second: 50, rate_burst: 100, snapshot_chunk: 500 },
}

/** A fresh fake WebSocket class; `sockets` lists every instance in creation order. */
export function fakeWebSocket() {
  const sockets = []
  class FakeWebSocket {
    constructor(url) {
      this.url = url
      this.sent = []
      this.closedWith = null
      sockets.push(this)
    }
    send(data) {
      assert.equal(typeof data, 'string')
      this.sent.push(JSON.parse(data))
    }
    close(code, reason) {
      this.closedWith = { code, reason }
    }
    // ----- the server's side
    open() {
      this.onopen({})
    }
    deliver(message) {
      this.onmessage({ data: typeof message === 'string' ? message : JSON.stringify(message) })
    }
    drop(code = 1006, reason = '') {
      this.onclose({ code, reason })
    }
    /** Messages of `type` the client sent, oldest first. */
    sentOf(type) {
      return this.sent.filter((m) => m.type === type)
    }
    lastSub() {
      return this.sentOf('sub').at(-1)
    }
  }
  return { FakeWebSocket, sockets }
}

/**
 * A client on a fake transport with mocked timers; `server()` is the latest socket.
 * `record(client)` collects status changes and errors.
 */
export function setup(t, options = {}) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
  const { FakeWebSocket, sockets } = fakeWebSocket()
  const client = connect('ws://test/live', { WebSocket: FakeWebSocket, backoff: () => 1000, schemas: false, ...options })
  const statuses = []
  const errors = []
  const disconnects = []
  client.on('status', (s) => statuses.push(s))
  client.on('error', (e) => errors.push(e))
  client.on('disconnect', (d) => disconnects.push(d))
  const server = () => sockets.at(-1)
  /** Open the latest socket and complete the handshake. */
  const handshake = (welcome = {}) => {
    const ws = server()
    ws.open()
    assert.equal(ws.sent[0].type, 'hello')
    ws.deliver({ ...WELCOME, ...welcome })
    return ws
  }
  return { client, sockets, server, handshake, statuses, errors, disconnects }
}

/** Snapshot documents of collection `c`: `[id, v, d]` triples to `{c, id, v, d}`. */
export const docs = (c, ...rows) => rows.map(([id, v, d]) => ({ c, id, v, d }))

/** Answer the latest `sub` on `ws` with a snapshot and `ready`; returns the sub message. */
export function serve(ws, { key = 'k1', pos = 10, docs: rows = [], epoch = 'e1', resumed = false, sub } = {}) {
  const message = sub ?? ws.lastSub()
  if (!resumed) ws.deliver({ type: 'snap', sub: message.id, docs: rows, more: false })
  ws.deliver({ type: 'ready', sub: message.id, key, epoch, pos, resumed })
  return message
}

export const put = (c, id, v, d) => ({ c, id, op: 'put', v, d })
export const patch = (c, id, pv, v, p) => ({ c, id, op: 'patch', v, pv, p })
export const del = (c, id, v) => (v === undefined ? { c, id, op: 'del' } : { c, id, op: 'del', v })
export const tx = (pos, ...parts) => ({ type: 'tx', pos, parts: parts.map(([key, ...ch]) => ({ key, ch })) })

/** Let promise callbacks run (mocked timers do not touch microtasks). */
export const flush = () => new Promise((resolve) => setImmediate(resolve))
