/**
 * The optimistic layer: what this client's own writes, not yet fenced, make of a document.
 *
 * A document shown to the page is the server's copy with the client's pending writes on it,
 * re-applied in the order they were made every time either side changes (`overlay`). The
 * server's copy itself is never touched, so dropping a write (a rejection) and recomputing
 * shows exactly the server's state again, and a server change under a pending write is
 * re-based: the write is applied on top of the newer copy.
 *
 * A write is `{type: 'insert' | 'update' | 'remove', local?, patch?, set?, ackV?}`:
 * - `insert` shows `local` while the server holds no copy (once it does, the server's wins:
 *   it is either this insert, arrived, or another document, and the insert will fail);
 * - `update` applies its RFC 6902 `patch` or top-level `set` to whatever is below it; one
 *   that no longer applies to a newer copy is left out (the server will refuse it too);
 * - `remove` hides the document.
 * Once a write is acknowledged (`ackV`: its version on the server), a server copy at that
 * version or later already contains it, and it is not applied again (a patch appending to a
 * list must not append twice).
 */
import { applyPatch, equal } from './patch.js'

/**
 * The document shown for the server entry `entry` (`{v, d}`, or undefined: none held) under
 * `writes` (in the order made); undefined when there is none to show. Never changes its input.
 * @param {{v: number | null, d: object} | undefined} entry
 * @param {ReadonlyArray<any>} [writes]
 */
export function overlay(entry, writes = []) {
  let doc = entry?.d
  for (const w of writes) {
    if (w.ackV != null && entry?.v != null && entry.v >= w.ackV) continue
    if (w.type === 'remove') doc = undefined
    else if (w.type === 'insert') doc ??= w.local
    else if (doc) {
      try {
        const next = w.patch ? applyPatch(doc, w.patch) : { ...doc, ...w.set }
        if (next && typeof next === 'object' && !Array.isArray(next)) doc = next
      } catch {
        // does not apply to this copy: left out
      }
    }
  }
  return doc
}

/**
 * What to show now that `next` would be shown where `prev` was: `prev` itself when both hold
 * the same JSON, so a document keeps its identity (and nobody hears of it) until its content
 * changes. Either may be undefined (not shown).
 */
export const keep = (prev, next) => (prev && next && prev !== next && equal(prev, next) ? prev : next)
