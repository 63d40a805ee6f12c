/**
 * The merged view of one collection over all of a client's subscriptions: the mergebox of
 * docs/protocol.md §4. It holds one document per id, whichever and however many
 * subscriptions hold it. A document appears when the first subscription gets it and goes
 * when the last one lets it go; while several hold it, the highest version is shown.
 * `docs` is in the order in which ids first appeared here.
 */
import { equal } from './patch.js'
import { Emitter } from './emitter.js'

export class Collection extends Emitter {
  /** @type {Map<string, Map<object, object>>} id -> (holder -> its entry) */
  #holders = new Map()
  /** @type {Map<string, object>} id -> the entry shown */
  #shown = new Map()
  /** @type {Map<string, object | undefined> | null} id -> entry shown before this batch */
  #before = null
  /** @type {readonly object[] | null} */
  #docs = null

  /** @param {string} name */
  constructor(name) {
    super()
    this.name = name
  }

  /** The document with this id, or `undefined`. */
  get(id) {
    return this.#shown.get(id)?.d
  }

  /** All documents; the same frozen array until the next change. */
  get docs() {
    return (this.#docs ??= Object.freeze(Array.from(this.#shown.values(), (e) => e.d)))
  }

  get size() {
    return this.#shown.size
  }

  /**
   * Record that `holder` now holds `entry` for `id` (`null`: holds it no more). Changes
   * are batched until `flush`, which the client calls once per transaction.
   * @internal
   */
  hold(holder, id, entry) {
    this.#before ??= new Map()
    const current = this.#shown.get(id)
    if (!this.#before.has(id)) this.#before.set(id, current)
    let holders = this.#holders.get(id)
    if (entry) {
      if (!holders) this.#holders.set(id, (holders = new Map()))
      holders.set(holder, entry)
    } else if (holders) {
      holders.delete(holder)
      if (!holders.size) this.#holders.delete(id)
    }
    const left = this.#holders.get(id)
    if (!left) return void this.#shown.delete(id)
    // The highest version; on a tie, the entry just written, else the one already shown.
    const score = (e) => (e.v ?? -1) * 4 + (e === entry ? 2 : e === current ? 1 : 0)
    let best
    for (const e of left.values()) if (!best || score(e) > score(best)) best = e
    this.#shown.set(id, best)
  }

  /**
   * End the batch: the `{added, changed, removed}` documents it made (or null if none).
   * An id whose shown entry was swapped for an equal one is not reported.
   * @internal
   */
  flush() {
    const before = this.#before
    this.#before = null
    if (!before) return null
    /** @type {{added: object[], changed: object[], removed: string[]}} */
    const diff = { added: [], changed: [], removed: [] }
    for (const [id, was] of before) {
      const now = this.#shown.get(id)
      if (was?.d !== now?.d) this.#docs = null
      if (!was && now) diff.added.push(now.d)
      else if (was && !now) diff.removed.push(id)
      else if (was && now.d !== was.d && (was.v !== now.v || !equal(was.d, now.d))) diff.changed.push(now.d)
    }
    return diff.added.length || diff.changed.length || diff.removed.length ? diff : null
  }
}
