// The optimistic layer's pure functions: what pending writes make of a server copy.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { overlay, keep } from '../../src/layer.js'

const entry = (v, d) => ({ v, d })

test('writes apply in order on the server copy, without changing it', () => {
  const base = entry(1, { a: 1, list: [1] })
  const frozen = structuredClone(base)
  const writes = [{ type: 'update', set: { a: 2 } }, { type: 'update', patch: [{ op: 'add', path: '/list/-', value: 2 }] }]
  assert.deepEqual(overlay(base, writes), { a: 2, list: [1, 2] })
  assert.deepEqual(base, frozen)
  assert.equal(overlay(base), base.d, 'no writes: the server copy itself')
  assert.equal(overlay(base, [{ type: 'remove' }]), undefined)
  assert.equal(overlay(undefined, [{ type: 'update', set: { a: 1 } }]), undefined, 'nothing to update')
})

test("an insert shows its document until the server holds one; then the server's wins", () => {
  const insert = { type: 'insert', local: { id: 'x', title: 'mine' } }
  assert.equal(overlay(undefined, [insert]), insert.local)
  assert.deepEqual(overlay(entry(1, { id: 'x', title: 'server', created: 'now' }), [insert]), { id: 'x', title: 'server', created: 'now' })
  assert.deepEqual(overlay(entry(3, { id: 'x' }), [{ type: 'remove' }, insert, { type: 'update', set: { n: 1 } }]), { id: 'x', title: 'mine', n: 1 }, 'removed, then inserted again')
})

test('a patch that no longer applies is left out; an acknowledged write in the server copy is not applied again', () => {
  const guarded = { type: 'update', patch: [{ op: 'test', path: '/v', value: 1 }, { op: 'replace', path: '/x', value: 'mine' }] }
  assert.deepEqual(overlay(entry(1, { v: 1, x: 0 }), [guarded]), { v: 1, x: 'mine' })
  assert.deepEqual(overlay(entry(2, { v: 2, x: 0 }), [guarded]), { v: 2, x: 0 })
  const append = { type: 'update', patch: [{ op: 'add', path: '/l/-', value: 'b' }], ackV: 2 }
  assert.deepEqual(overlay(entry(1, { l: ['a'] }), [append]), { l: ['a', 'b'] }, 'not yet in the copy')
  assert.deepEqual(overlay(entry(2, { l: ['a', 'b'] }), [append]), { l: ['a', 'b'] }, 'in the copy: once')
  assert.equal(overlay(entry(2, { gone: true }), [{ type: 'remove', ackV: 3 }]), undefined, 'a deletion waits for its del')
})

test('keep: the shown object survives a recomputation with the same content', () => {
  const shown = { a: [1] }
  assert.equal(keep(shown, { a: [1] }), shown)
  const next = { a: [2] }
  assert.equal(keep(shown, next), next)
  assert.equal(keep(undefined, next), next)
  assert.equal(keep(shown, undefined), undefined)
})
