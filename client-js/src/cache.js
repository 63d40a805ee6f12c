/**
 * A subscription's documents and the pure functions that change them, by the client rules
 * of docs/protocol.md §4.
 *
 * A store is a `Map` from `ref(c, id)` to an entry `{c, id, v, d}` (collection, id,
 * version, document). Its insertion order is the subscription's order: snapshot documents
 * in the publication's query order, documents that arrive later appended, patched ones
 * kept in place. Functions here never change what they are given except `commit`, which
 * applies what `plan` worked out; so a rejected transaction leaves a store as it was.
 */
import { CLIENT_ERRORS } from './constants.js'
import { isChange } from './messages.js'
import { applyPatch, equal } from './patch.js'

/** @typedef {{c: string, id: string, v: number | null, d: Record<string, unknown>}} Entry */
/** @typedef {{added: Entry[], changed: Entry[], removed: Entry[]}} Diff */
/** @typedef {Map<string, Entry>} Store */

/** @returns {Diff} */
export const emptyDiff = () => ({ added: [], changed: [], removed: [] })

/** The store key of document `id` in collection `c`. */
export const ref = (c, id) => `${c}\u0000${id}`

/** An entry `{c, id, v, d}` from a snapshot document or a change, and its document. */
export const entry = (x, d) => ({ c: x.c, id: x.id, v: x.v ?? null, d })

const problem = (code, message, change) => ({ problem: { code, message, change } })

/**
 * What `changes` (one key's part of a `tx`) do to `store`, without changing it.
 *
 * Returns `{updates}`, a Map from ref to the new entry (or `null`: remove), when every
 * change may be applied; changes not newer than the held version are left out. Returns
 * `{problem: {code, message, change}}` at the first change that must not be applied: a
 * malformed one, a patch whose base version is not held (a gap) or that fails, or a put at
 * the held version with other content (the id was reused after a delete this client
 * missed). The caller then keeps the store and resyncs.
 */
export function plan(store, changes) {
  /** @type {Map<string, Entry | null>} */
  const updates = new Map()
  for (const change of changes) {
    if (!isChange(change)) return problem(CLIENT_ERRORS.BAD_MESSAGE, 'malformed change', change)
    const key = ref(change.c, change.id)
    const held = updates.has(key) ? updates.get(key) : store.get(key)
    const v = change.v ?? null
    const newer = !held || v === null || held.v === null || v > held.v
    if (change.op === 'put') {
      if (newer) updates.set(key, entry(change, change.d))
      else if (v === held.v && !equal(change.d, held.d)) {
        return problem(CLIENT_ERRORS.ID_REUSED, `${change.c}/${change.id}: other content at held version ${v}`, change)
      }
    } else if (change.op === 'del') {
      if (held && newer) updates.set(key, null)
    } else if (!newer) {
      // a patch to a version already held: a duplicate
    } else if (held && held.v === (change.pv ?? null)) {
      let d
      try {
        d = applyPatch(held.d, change.p)
      } catch (err) {
        return problem(CLIENT_ERRORS.PATCH_FAILED, `${change.c}/${change.id}: ${err.message}`, change)
      }
      if (d === null || typeof d !== 'object' || Array.isArray(d)) {
        return problem(CLIENT_ERRORS.PATCH_FAILED, `${change.c}/${change.id}: not an object after the patch`, change)
      }
      updates.set(key, entry(change, d))
    } else {
      const has = held ? `version ${held.v}` : 'nothing'
      return problem(CLIENT_ERRORS.GAP, `${change.c}/${change.id}: patch from version ${change.pv}, ${has} held`, change)
    }
  }
  return { updates }
}

/**
 * Apply `plan`'s updates to `store` (in place). Returns the entries added, changed and
 * removed (removed ones as they were).
 */
export function commit(store, updates) {
  const diff = emptyDiff()
  for (const [key, next] of updates) {
    const prev = store.get(key)
    if (next) {
      store.set(key, next)
      ;(prev ? diff.changed : diff.added).push(next)
    } else if (prev) {
      store.delete(key)
      diff.removed.push(prev)
    }
  }
  return diff
}

/**
 * `store` replaced by `fresh` (a snapshot, as a store), at once. Returns the new store, in
 * the snapshot's order, and the diff from the old one; documents that did not change keep
 * their old entry object, so their identity is stable for the page.
 */
export function replace(store, fresh) {
  const next = new Map()
  const diff = emptyDiff()
  for (const [key, e] of fresh) {
    const prev = store.get(key)
    if (prev && prev.v === e.v && equal(prev.d, e.d)) next.set(key, prev)
    else {
      ;(prev ? diff.changed : diff.added).push(e)
      next.set(key, e)
    }
  }
  for (const [key, e] of store) if (!fresh.has(key)) diff.removed.push(e)
  return { store: next, diff }
}

/** Whether a diff holds anything. */
export const changed = (diff) => diff.added.length + diff.changed.length + diff.removed.length > 0

/** A diff of entries as listeners get it: documents added and changed, ids removed. */
export const view = (diff) => ({
  added: diff.added.map((e) => e.d),
  changed: diff.changed.map((e) => e.d),
  removed: diff.removed.map((e) => e.id),
})
