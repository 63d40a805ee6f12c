/**
 * The connection: one WebSocket at a time, the handshake, heartbeats, reconnects.
 *
 * It knows nothing of subscriptions. It opens a socket, sends `hello` (with a token got
 * afresh for every attempt, and the client's id), and once `welcome` arrives emits
 * `welcome` and passes every later frame on as `frame` (a parsed message, or `undefined`
 * for one that is not a JSON object with a type). It answers server pings itself. When the socket closes with a code
 * that may be retried (see `reconnects`), it waits `backoff(attempt)` and tries again;
 * otherwise it stops (state `closed`) and emits an `error` with `code: 'closed'`.
 *
 * States: `connecting` (getting a token, opening, waiting for `welcome`), `open`,
 * `waiting` (for the next attempt), `closed` (stopped: by `close()` or a terminal code).
 * Events: `state` on every change except to `open`, which is announced by `welcome`.
 */
import { CLIENT_ERRORS, CLOSE, VERSION, reconnects } from './constants.js'
import { Emitter, LiveSyncError } from './emitter.js'
import { backoff as defaultBackoff } from './backoff.js'
import { parse, valid } from './messages.js'
import { bucket, unlimited } from './bucket.js'

const noop = () => {}

/** `url` as a ws: / wss: URL; relative and http(s) URLs are resolved against the page. */
export function socketUrl(url) {
  const resolved = new URL(url, globalThis.location?.href)
  resolved.protocol = resolved.protocol.replace(/^http/, 'ws')
  return resolved.href
}

/** The http(s) URL of the gateway's `<path>/schemas` (docs/protocol.md §6.5). */
export function schemasUrl(url) {
  const resolved = new URL(socketUrl(url))
  resolved.protocol = resolved.protocol.replace('ws', 'http')
  resolved.pathname = resolved.pathname.replace(/\/?$/, '/schemas')
  return resolved.href
}

export class Socket extends Emitter {
  state = 'connecting'
  /** The current connection's `welcome` message, `null` while not open. */
  /** @type {any} */
  welcome = null
  #url
  #WebSocket
  #token
  #backoff
  #timeout
  #heartbeat
  /** @type {any} */
  #ws = null
  #attempt = 0
  #run = 0 // bumped by every attempt and by close(): stale callbacks compare and stop
  #retryTimer
  #watchdog // handshake timeout, then heartbeat timeout
  #client
  #queue = []
  #take = unlimited
  #drainTimer

  /**
   * @param {string} url
   * @param {object} options see `connect` in index.d.ts
   */
  constructor(url, { WebSocket = globalThis.WebSocket, token, backoff = defaultBackoff(), timeout = 10000, heartbeat = 2, client } = {}) {
    super()
    if (typeof WebSocket !== 'function') {
      throw new TypeError('no WebSocket here: pass { WebSocket } (in Node, from the "ws" package)')
    }
    this.#url = socketUrl(url)
    this.#WebSocket = WebSocket
    this.#token = token
    this.#backoff = backoff
    this.#timeout = timeout
    this.#heartbeat = heartbeat
    this.#client = client
  }

  /** Start connecting now unless a connection is open or being opened. */
  connect() {
    if (this.state === 'open' || (this.state === 'connecting' && this.#run)) return
    clearTimeout(this.#retryTimer)
    const run = ++this.#run
    this.#setState('connecting')
    this.#watch(this.#timeout, CLIENT_ERRORS.HANDSHAKE_TIMEOUT) // token, socket and welcome
    let token
    try {
      token = typeof this.#token === 'function' ? this.#token() : this.#token
    } catch (err) {
      return queueMicrotask(() => run === this.#run && this.#tokenFailed(err)) // after connect() returns
    }
    if (typeof token?.then === 'function') {
      token.then(
        (value) => run === this.#run && this.#dial(value),
        (err) => run === this.#run && this.#tokenFailed(err),
      )
    } else this.#dial(token)
  }

  /**
   * Queue `message` for sending; false when there is no open connection (nothing is sent).
   * Frames leave at most at 80% of the rate in `welcome.limits`, in bursts of half the
   * allowed burst, so a burst of subscriptions is never dropped as `rate-limited`.
   * Throws a LiveSyncError `frame-too-big` if it exceeds `max_frame_bytes` (the server
   * would close the connection with 1009, and a resend would do the same forever).
   */
  send(message) {
    if (this.state !== 'open') return false
    const data = JSON.stringify(message)
    const max = this.welcome.limits?.max_frame_bytes
    if (max && data.length * 3 > max && new TextEncoder().encode(data).length > max) {
      throw new LiveSyncError(CLIENT_ERRORS.FRAME_TOO_BIG, `a ${message.type} frame above max_frame_bytes (${max})`)
    }
    this.#queue.push(data)
    this.#flush()
    return true
  }

  /** Stop for good (until `connect()`): close the socket, cancel any pending attempt. */
  close(code = CLOSE.NORMAL, reason = '') {
    const ws = this.#ws
    this.#reset()
    clearTimeout(this.#retryTimer)
    this.#setState('closed')
    try {
      ws?.close(code, reason)
    } catch {
      // already closing: nothing to do
    }
  }

  #setState(state) {
    if (state === this.state) return
    this.state = state
    if (state !== 'open') this.emit('state', state)
  }

  #tokenFailed(cause) {
    this.#reset()
    this.emit('error', new LiveSyncError(CLIENT_ERRORS.TOKEN_FAILED, `token: ${cause?.message ?? cause}`, { cause }))
    this.#retry()
  }

  #dial(token) {
    let ws
    try {
      ws = new this.#WebSocket(this.#url)
    } catch (cause) {
      const run = this.#run
      return queueMicrotask(() => {
        if (run !== this.#run) return
        this.#reset()
        this.#setState('closed')
        this.emit('error', new LiveSyncError(CLIENT_ERRORS.CLOSED, `cannot open ${this.#url}: ${cause.message}`, { cause }))
      })
    }
    this.#ws = ws
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: [VERSION], token: token ?? undefined, client: this.#client }))
    ws.onmessage = (event) => this.#receive(event.data)
    ws.onclose = (event) => {
      this.#reset()
      this.#ended(event.code || 1005, event.reason || '')
    }
    ws.onerror = noop // a close event always follows
  }

  #receive(data) {
    const message = parse(data)
    if (!this.welcome) {
      if (message?.type === 'welcome' && valid(message)) return this.#opened(message)
      const code = message?.type === 'error' ? message.code : CLIENT_ERRORS.BAD_MESSAGE
      this.emit('error', new LiveSyncError(code, `before welcome: ${String(message?.message ?? data).slice(0, 200)}`))
      return
    }
    if (this.#heartbeat) this.#watch(this.welcome.ping_ms * this.#heartbeat, CLIENT_ERRORS.HEARTBEAT_TIMEOUT)
    if (message?.type === 'ping') {
      this.send(message.id === undefined ? { type: 'pong' } : { type: 'pong', id: message.id })
    } else this.emit('frame', message)
  }

  #opened(welcome) {
    this.welcome = welcome
    this.#attempt = 0
    const { rate_per_second: rate, rate_burst: burst } = welcome.limits ?? {}
    this.#take = rate > 0 && burst > 0 ? bucket(rate * 0.8, Math.max(1, Math.floor(burst / 2))) : unlimited
    clearTimeout(this.#watchdog)
    if (this.#heartbeat) this.#watch(welcome.ping_ms * this.#heartbeat, CLIENT_ERRORS.HEARTBEAT_TIMEOUT)
    this.state = 'open'
    this.emit('welcome', welcome)
  }

  // Drop a silent connection at once: a dead peer may never complete a close handshake.
  #watch(ms, code) {
    clearTimeout(this.#watchdog)
    this.#watchdog = setTimeout(() => {
      const ws = this.#ws
      this.#reset()
      try {
        ws?.close(CLOSE.PING_TIMEOUT, code)
      } catch {
        // already closed
      }
      this.emit('error', new LiveSyncError(code, `${code} after ${ms} ms; reconnecting`))
      this.#ended(CLOSE.PING_TIMEOUT, code, true)
    }, ms)
  }

  #ended(code, reason, retry = reconnects(code)) {
    this.emit('close', { code, reason, retry })
    if (this.state === 'closed') return
    if (retry) return this.#retry()
    this.#setState('closed')
    this.emit('error', new LiveSyncError(CLIENT_ERRORS.CLOSED, `closed by the server: ${code} ${reason}`.trim(), { closeCode: code, reason }))
  }

  #retry() {
    const delay = this.#backoff(++this.#attempt)
    this.#setState('waiting')
    this.#retryTimer = setTimeout(() => this.connect(), delay)
  }

  // Forget the current attempt: no more events from its socket or its token, nothing more
  // queued for it.
  #reset() {
    this.#run++
    const ws = this.#ws
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = noop
    this.#ws = null
    this.welcome = null
    this.#queue = []
    clearTimeout(this.#watchdog)
    clearTimeout(this.#drainTimer)
  }

  // Send what the token bucket allows, then come back when one more token is due.
  #flush() {
    clearTimeout(this.#drainTimer)
    while (this.#queue.length) {
      const wait = this.#take()
      if (wait) return void (this.#drainTimer = setTimeout(() => this.#flush(), wait))
      this.#ws.send(this.#queue.shift())
    }
  }
}
