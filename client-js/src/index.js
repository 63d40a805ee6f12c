/**
 * livesync-client: replicated collections from a livesync server, in the browser (as a
 * plain ES module) and in Node 20+ (pass `WebSocket` from the `ws` package).
 *
 *   import { connect } from './livesync-client/src/index.js'
 *   const client = connect('/live', { token: () => fetchToken() })
 *   const orders = client.subscribe('orders_by_status', { status: 'new' })
 *   orders.on('change', () => render(orders.docs))
 */
import { Client } from './client.js'

export { Client } from './client.js'
export { Subscription } from './subscription.js'
export { Collection } from './collection.js'
export { LiveSyncError } from './emitter.js'
export { PatchError, applyPatch } from './patch.js'
export { backoff } from './backoff.js'
export { CLIENT_ERRORS, CLOSE, ERRORS, STATUS, VERSION, reconnects } from './constants.js'

/**
 * Connect to a livesync gateway and return the client; it starts connecting at once and
 * keeps reconnecting until `close()` or a close code that must not be retried.
 * @param {string} url `ws://`, `wss://`, `http(s)://` or (in a page) a path such as `/live`
 * @param {import('./index.js').ConnectOptions} [options]
 */
export function connect(url, options) {
  return new Client(url, options)
}
