/**
 * Shape checks for server messages, so that nothing malformed reaches the cache.
 *
 * `valid(message)` checks a message's own fields; document entries are checked where they
 * are used (`isDoc` for snapshot chunks, `isChange` inside `cache.plan`), so a bad entry can
 * be traced to the subscription it would have corrupted.
 */
import { VERSION } from './constants.js'
import { isOrder } from './order.js'

const str = (x) => typeof x === 'string'
const bool = (x) => typeof x === 'boolean'
const pos = (x) => Number.isInteger(x) && x >= 0
const obj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x)
// A document version; the protocol omits it (null) only where versions are unknown.
const version = (x) => x == null || Number.isInteger(x)

/** A snapshot entry `{c, id, v, d}`. */
export const isDoc = (x) => obj(x) && str(x.c) && str(x.id) && version(x.v) && obj(x.d)

/** One `ch` entry of a `tx` part: a put, patch or del with the fields its `op` needs. */
export function isChange(x) {
  if (!obj(x) || !str(x.c) || !str(x.id) || !version(x.v)) return false
  if (x.op === 'put') return obj(x.d)
  if (x.op === 'patch') return version(x.pv) && Array.isArray(x.p)
  return x.op === 'del'
}

const SHAPES = {
  welcome: (m) => m.v === VERSION && str(m.epoch) && m.ping_ms > 0 && (m.limits == null || obj(m.limits)),
  snap: (m) => str(m.sub) && Array.isArray(m.docs) && bool(m.more),
  ready: (m) => str(m.sub) && str(m.key) && str(m.epoch) && pos(m.pos) && bool(m.resumed) && (m.order == null || isOrder(m.order)),
  nosub: (m) => str(m.sub) && str(m.code),
  unsubbed: (m) => str(m.sub),
  tx: (m) => pos(m.pos) && Array.isArray(m.parts) && m.parts.every((p) => obj(p) && str(p.key) && Array.isArray(p.ch)),
  reset: (m) => str(m.key),
  ping: () => true,
  pong: () => true,
  error: (m) => str(m.code),
  ack: (m) => str(m.id) && bool(m.ok) && (m.ok || str(m.code)),
  fence: (m) => str(m.id),
  msg: (m) => str(m.ev),
}

/** Parse one text frame: the message, or `undefined` if it is not a JSON object with a `type`. */
export function parse(data) {
  if (!str(data)) return undefined
  try {
    const message = JSON.parse(data)
    return obj(message) && str(message.type) ? message : undefined
  } catch {
    return undefined
  }
}

/** Whether a parsed message is of a known type and has the fields that type requires. */
export const valid = (m) => Object.hasOwn(SHAPES, m.type) && SHAPES[m.type](m)
