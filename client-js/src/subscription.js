/**
 * One subscription as the page sees it: its documents, its events, its lifecycle.
 *
 * The client drives it (the fields and methods starting with `_` are the client's); the
 * page reads `docs`, `get`, `state` and `ready`, listens to `change`, `ready`, `reset` and
 * `error`, and calls `unsubscribe`.
 *
 * `state`: `pending` until the first `ready`; `live` while the data is current;
 * `resyncing` while it is fetched again after a reconnect, a `reset` or a repair (the old
 * data stays readable until the new data replaces it in one `change`); `stopped` after
 * `unsubscribe()`, a `nosub`, or `client.close()`.
 */
import { Emitter } from './emitter.js'
import { changed, ref } from './cache.js'
import { keep } from './layer.js'
import { comparator } from './order.js'

export class Subscription extends Emitter {
  /** @type {'pending' | 'live' | 'resyncing' | 'stopped'} */
  state = 'pending'
  /** The server's data key, from `ready`; subscriptions asking for the same data share it. */
  key = null
  /** Resume point: the epoch of the last `ready` and the last position applied. */
  epoch = null
  pos = null

  _store = new Map() // ref(c, id) -> {c, id, v, d}, the server's copies, in the subscription's order
  _shown = new Map() // ref(c, id) -> the document shown: the server's copy with this client's writes
  _wire = null // the id of the `sub` message in force on this connection
  _retiring = null // the id it replaced, until the server confirms `unsubbed`
  _snapshot = null // snapshot chunks received for `_wire`
  _taint = null // a problem met while resyncing: the resumed data cannot be trusted
  _resets = null // keys reset while this waited for `ready`
  _repairs = 0 // repairs since the last transaction applied cleanly
  #collections = new Set()
  /** @type {((a: any, b: any) => number) | null} */
  #order = null
  /** @type {readonly object[] | null} */
  #docs = null
  #settled = false
  #settle

  /**
   * @param {string} name the publication
   * @param {object} params
   * @param {(sub: Subscription) => void} onUnsubscribe
   */
  constructor(name, params, onUnsubscribe) {
    super()
    this.name = name
    this.params = Object.freeze(structuredClone(params)) // resent on every resync: keep it as given
    this.unsubscribe = () => onUnsubscribe(this)
    /**
     * Resolves with this subscription at its first `ready`; rejects with a LiveSyncError
     * (whose `code` is the server's, e.g. `forbidden`) if it is refused, or with code
     * `unsubscribed` if it ends first. Unobserved rejections are not reported as unhandled.
     */
    this.ready = new Promise((resolve, reject) => {
      this.#settle = (err) => (err ? reject(err) : resolve(this))
    })
    this.ready.catch(() => {})
  }

  /**
   * The documents in the publication's order: sorted by `ready.order` when the server sent
   * one, else snapshot order with later arrivals last; this client's pending writes applied
   * (layer.js). The same frozen array until the next change.
   */
  get docs() {
    if (!this.#docs) {
      const docs = []
      for (const key of this._store.keys()) {
        const d = this._shown.get(key)
        if (d) docs.push(d)
      }
      if (this.#order) docs.sort(this.#order)
      this.#docs = Object.freeze(docs)
    }
    return this.#docs
  }

  /** The document with this id (in `collection`, needed only if it holds several), or `undefined`. */
  get(id, collection) {
    for (const c of collection === undefined ? this.#collections : [collection]) {
      const d = this._shown.get(ref(c, id))
      if (d) return d
    }
    return undefined
  }

  /** @internal the order from `ready` (null: none) */
  _setOrder(order) {
    this.#order = order ? comparator(order) : null
    this.#docs = null
  }

  /**
   * @internal Show again the documents `keys` (refs) name, after their server copy in
   * `_store` or this client's writes on them changed: `view(c, id, entry)` is what to show
   * for a server entry. Returns the `{added, changed, removed}` it made, or null.
   */
  _refresh(keys, view) {
    /** @type {{added: object[], changed: object[], removed: string[]}} */
    const diff = { added: [], changed: [], removed: [] }
    for (const key of new Set(keys)) {
      const e = this._store.get(key)
      const was = this._shown.get(key)
      const now = keep(was, e && view(e.c, e.id, e))
      if (e) this.#collections.add(e.c)
      if (now === was) continue
      if (now) {
        this._shown.set(key, now)
        ;(was ? diff.changed : diff.added).push(now)
      } else {
        this._shown.delete(key)
        diff.removed.push(key.slice(key.indexOf('\u0000') + 1))
      }
    }
    if (!changed(diff)) return null
    this.#docs = null
    return diff
  }

  /** @internal resolve or reject `ready`, once */
  _settle(err) {
    if (this.#settled) return
    this.#settled = true
    this.#settle(err)
  }
}
