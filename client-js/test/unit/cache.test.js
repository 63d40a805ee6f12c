// The pure cache functions: plan never changes its input, commit and replace do what the
// protocol's version rules say.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { plan, commit, replace, ref, view } from '../../src/cache.js'

const store = (...entries) => new Map(entries.map((e) => [ref(e.c, e.id), e]))
const e = (id, v, d) => ({ c: 'o', id, v, d })

test('plan does not touch the store, even when it succeeds', () => {
  const s = store(e('1', 1, { a: 1 }))
  const snapshot = structuredClone([...s])
  const { updates } = plan(s, [{ c: 'o', id: '1', op: 'patch', pv: 1, v: 2, p: [{ op: 'add', path: '/b', value: 2 }] }])
  assert.deepEqual([...s], snapshot)
  assert.deepEqual(updates.get(ref('o', '1')), e('1', 2, { a: 1, b: 2 }))
})

test('plan chains changes to the same document within one transaction', () => {
  const s = store(e('1', 1, { n: 1 }))
  const { updates } = plan(s, [
    { c: 'o', id: '1', op: 'patch', pv: 1, v: 2, p: [{ op: 'replace', path: '/n', value: 2 }] },
    { c: 'o', id: '1', op: 'patch', pv: 2, v: 3, p: [{ op: 'replace', path: '/n', value: 3 }] },
    { c: 'o', id: '2', op: 'put', v: 1, d: {} },
    { c: 'o', id: '2', op: 'del', v: 2 },
  ])
  assert.deepEqual(updates.get(ref('o', '1')).d, { n: 3 })
  assert.equal(updates.get(ref('o', '2')), null)
  const diff = commit(s, updates)
  assert.deepEqual(view(diff), { added: [], changed: [{ n: 3 }], removed: [] }, 'a put then del of an unheld id is nothing')
})

test('plan reports the first rule a change breaks', () => {
  const s = store(e('1', 3, { n: 1 }))
  const code = (changes) => plan(s, changes).problem?.code
  assert.equal(code([{ c: 'o', id: '1', op: 'patch', pv: 2, v: 4, p: [] }]), 'gap')
  assert.equal(code([{ c: 'o', id: '9', op: 'patch', pv: 1, v: 2, p: [] }]), 'gap', 'patch of a document not held')
  assert.equal(code([{ c: 'o', id: '1', op: 'patch', pv: 3, v: 4, p: [{ op: 'remove', path: '/x' }] }]), 'patch-failed')
  assert.equal(code([{ c: 'o', id: '1', op: 'patch', pv: 3, v: 4, p: [{ op: 'replace', path: '', value: 5 }] }]), 'patch-failed')
  assert.equal(code([{ c: 'o', id: '1', op: 'put', v: 3, d: { n: 2 } }]), 'id-reused')
  assert.equal(code([{ c: 'o', id: '1', op: 'put', v: 3, d: { n: 1 } }]), undefined, 'an exact duplicate')
  assert.equal(code([{ c: 'o', id: '1', op: 'put', v: 2, d: { n: 0 } }]), undefined, 'an older put is stale, not a reuse')
  assert.equal(code([{ c: 'o', id: '1', op: 'patch', pv: 1, v: 3, p: [] }]), undefined, 'not newer: ignored')
  for (const bad of [null, { c: 'o', id: 1, op: 'del' }, { c: 'o', id: '1', op: 'put', v: 4 }, { c: 'o', id: '1', op: 'patch', v: 4, pv: 3 }, { c: 'o', id: '1', op: 'move' }, { c: 'o', id: '1', op: 'del', v: 1.5 }]) {
    assert.equal(code([bad]), 'bad-message', JSON.stringify(bad))
  }
})

test('unversioned documents: every put and del applies; a del without v always applies', () => {
  const s = store(e('1', null, { n: 1 }), e('2', 5, {}))
  const { updates } = plan(s, [
    { c: 'o', id: '1', op: 'put', d: { n: 2 } },
    { c: 'o', id: '2', op: 'del' },
  ])
  assert.deepEqual(view(commit(s, updates)), { added: [], changed: [{ n: 2 }], removed: ['2'] })
})

test('replace: snapshot order, a diff, and unchanged entries kept by identity', () => {
  const kept = e('2', 1, { same: true })
  const s = store(e('1', 1, {}), kept, e('3', 1, { n: 1 }))
  const fresh = store(e('3', 2, { n: 2 }), e('2', 1, { same: true }), e('4', 1, {}))
  const { store: next, diff } = replace(s, fresh)
  assert.deepEqual([...next.keys()], [ref('o', '3'), ref('o', '2'), ref('o', '4')])
  assert.equal(next.get(ref('o', '2')), kept)
  assert.deepEqual(view(diff), { added: [{}], changed: [{ n: 2 }], removed: ['1'] })
  assert.equal(s.size, 3, 'the old store is not changed')
})
