/**
 * Protocol constants, derived from `WIRE`: the table generated from the Python protocol core
 * (src/wire.json; src/wire.js holds its run-time part; test/unit/constants.test.js keeps them equal).
 */
import { WIRE } from './wire.js'

export { WIRE }

/** The protocol version this client speaks (sent in `hello.v`). */
export const VERSION = WIRE.version

/** Close codes by name, e.g. `CLOSE.TOKEN_EXPIRED === 4505`. */
export const CLOSE = Object.fromEntries(
  Object.entries(WIRE.close_codes).map(([name, { code }]) => [name, code]),
)

/** The server's `error` / `nosub` codes by name, e.g. `ERRORS.FORBIDDEN === 'forbidden'`. */
export const ERRORS = WIRE.error_codes

/**
 * Whether to reconnect (with backoff) after the socket closed with `code`: as the table
 * says for the codes it names; otherwise yes, except in 4500-4999 (do not retry). So
 * abnormal closes (1005, 1006, 1011, 1012, 1013 ...) and 4000-4499 reconnect.
 * @param {number} code
 */
export function reconnects(code) {
  const known = Object.values(WIRE.close_codes).find((c) => c.code === code)
  return known ? known.reconnect : !(code >= 4500 && code <= 4999)
}

/** `client.status` values; see README "Status". */
export const STATUS = {
  CONNECTING: 'connecting',
  ONLINE: 'online',
  RESYNCING: 'resyncing',
  OFFLINE: 'offline',
}

/**
 * `code`s of errors the client itself detects. Errors relayed from the server carry the
 * server's code instead (one of `ERRORS`); the two sets are disjoint.
 */
export const CLIENT_ERRORS = {
  CLOSED: 'closed', // the server closed with a code that must not be retried: `closeCode`
  HANDSHAKE_TIMEOUT: 'handshake-timeout', // no `welcome` in time: reconnecting
  HEARTBEAT_TIMEOUT: 'heartbeat-timeout', // nothing received for too long: reconnecting
  TOKEN_FAILED: 'token-failed', // the `token` function threw or rejected: retrying
  BAD_MESSAGE: 'bad-message', // the server sent something malformed: resyncing
  GAP: 'gap', // a patch for a version this client does not hold: resyncing
  PATCH_FAILED: 'patch-failed', // a patch did not apply to its base version: resyncing
  ID_REUSED: 'id-reused', // a put at a held version with other content: re-reading
  FRAME_TOO_BIG: 'frame-too-big', // a `sub` larger than `max_frame_bytes`: not sent
  UNSUBSCRIBED: 'unsubscribed', // `ready` rejected: unsubscribed or closed before ready
}
