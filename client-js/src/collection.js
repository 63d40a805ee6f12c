/**
 * The merged view of one collection over all of a client's subscriptions: the mergebox of
 * docs/protocol.md §4, with this client's pending writes on top (layer.js). It holds one
 * document per id, whichever and however many subscriptions hold it. A document appears
 * when the first subscription gets it (or this client inserts it) and goes when the last one
 * lets it go; while several hold it, the highest version is shown. `docs` is in the order in
 * which ids first appeared here.
 */
import { Emitter } from './emitter.js'
import { keep } from './layer.js'
import { changed } from './cache.js'

export class Collection extends Emitter {
  /** @type {Map<string, Map<object, any>>} id -> (holder -> its entry) */
  #holders = new Map()
  /** @type {Map<string, any>} id -> the server's entry shown, `{v, d}` */
  #server = new Map()
  /** @type {Map<string, object>} id -> the document shown (writes applied) */
  #shown = new Map()
  /** @type {Set<string> | null} ids changed in this batch */
  #touched = null
  /** @type {readonly object[] | null} */
  #docs = null

  /** @param {string} name */
  constructor(name) {
    super()
    this.name = name
  }

  /** The document with this id, or `undefined`. */
  get(id) {
    return this.#shown.get(id)
  }

  /**
   * All documents, in the order their ids first appeared on the server, then this client's
   * inserts the server has not sent yet; the same frozen array until the next change.
   */
  get docs() {
    if (!this.#docs) {
      const ids = new Set([...this.#server.keys(), ...this.#shown.keys()])
      this.#docs = Object.freeze([...ids].flatMap((id) => this.#shown.get(id) ?? []))
    }
    return this.#docs
  }

  get size() {
    return this.#shown.size
  }

  /** @internal the server's entry `{v, d}` for `id` (the highest version held), or undefined */
  _entry(id) {
    return this.#server.get(id)
  }

  /**
   * Record that `holder` now holds `entry` for `id` (`null`: holds it no more). Changes
   * are batched until `flush`, which the client calls once per transaction.
   * @internal
   */
  hold(holder, id, entry) {
    this.touch(id)
    const current = this.#server.get(id)
    let holders = this.#holders.get(id)
    if (entry) {
      if (!holders) this.#holders.set(id, (holders = new Map()))
      holders.set(holder, entry)
    } else if (holders) {
      holders.delete(holder)
      if (!holders.size) this.#holders.delete(id)
    }
    const left = this.#holders.get(id)
    if (!left) return void this.#server.delete(id)
    // The highest version; on a tie, the entry just written, else the one already shown.
    const score = (e) => (e.v ?? -1) * 4 + (e === entry ? 2 : e === current ? 1 : 0)
    let best
    for (const e of left.values()) if (!best || score(e) > score(best)) best = e
    this.#server.set(id, best)
  }

  /** @internal `id` is to be shown again at `flush` (this client's writes on it changed) */
  touch(id) {
    ;(this.#touched ??= new Set()).add(id)
  }

  /**
   * End the batch: show again every id touched, `view(c, id, entry)` being what to show for
   * a server entry. Returns the `{added, changed, removed}` it made, or null if none; a
   * document whose content stays the same is not reported (and keeps its identity).
   * @internal
   */
  flush(view = (c, id, e) => e?.d) {
    const touched = this.#touched
    this.#touched = null
    /** @type {{added: object[], changed: object[], removed: string[]}} */
    const diff = { added: [], changed: [], removed: [] }
    for (const id of touched ?? []) {
      const was = this.#shown.get(id)
      const now = keep(was, view(this.name, id, this.#server.get(id)))
      if (now === was) continue
      this.#docs = null
      if (now) {
        this.#shown.set(id, now)
        ;(was ? diff.changed : diff.added).push(now)
      } else {
        this.#shown.delete(id)
        diff.removed.push(id)
      }
    }
    return changed(diff) ? diff : null
  }
}
