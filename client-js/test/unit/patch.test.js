// RFC 6902 conformance: every enabled case of json-patch-test-suite, plus the module's own
// contracts (the input is never mutated, failures name the operation).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { applyPatch, PatchError, equal, get } from '../../src/patch.js'

const require = createRequire(import.meta.url)
const load = (name) => JSON.parse(readFileSync(require.resolve(`json-patch-test-suite/${name}`), 'utf8'))

for (const file of ['tests.json', 'spec_tests.json']) {
  const cases = load(file)
  test(`${file}: every enabled case`, async (t) => {
    let ran = 0
    for (const [i, c] of cases.entries()) {
      if (c.disabled) continue
      ran++
      await t.test(`${i}: ${c.comment ?? JSON.stringify(c.patch).slice(0, 60)}`, () => {
        const before = structuredClone(c.doc)
        const patch = structuredClone(c.patch)
        if ('error' in c) {
          assert.throws(() => applyPatch(c.doc, c.patch), PatchError, c.error)
        } else {
          const result = applyPatch(c.doc, c.patch)
          if ('expected' in c) assert.deepStrictEqual(result, c.expected)
        }
        assert.deepStrictEqual(c.doc, before, 'the input document was mutated')
        assert.deepStrictEqual(c.patch, patch, 'the patch was mutated')
      })
    }
    assert.ok(ran >= 10, `only ${ran} cases ran`)
  })
}

test('a failing patch leaves the input untouched and names the operation', () => {
  const doc = { a: { b: [1, 2] }, c: 1 }
  const ops = [
    { op: 'add', path: '/a/b/-', value: 3 },
    { op: 'replace', path: '/c', value: 2 },
    { op: 'remove', path: '/missing' },
  ]
  assert.throws(() => applyPatch(doc, ops), (err) => err instanceof PatchError && err.index === 2)
  assert.deepStrictEqual(doc, { a: { b: [1, 2] }, c: 1 })
})

test('unchanged subtrees are shared, changed paths are copied', () => {
  const doc = { keep: { x: 1 }, edit: { y: [1] } }
  const out = applyPatch(doc, [{ op: 'add', path: '/edit/y/-', value: 2 }])
  assert.equal(out.keep, doc.keep)
  assert.notEqual(out.edit, doc.edit)
  assert.deepStrictEqual(doc.edit.y, [1])
  assert.deepStrictEqual(out.edit.y, [1, 2])
})

test('several operations on one array copy it once and stay correct', () => {
  const doc = { list: [0, 1, 2] }
  const out = applyPatch(doc, [
    { op: 'remove', path: '/list/0' },
    { op: 'add', path: '/list/0', value: 'a' },
    { op: 'move', from: '/list/2', path: '/list/0' },
  ])
  assert.deepStrictEqual(out, { list: [2, 'a', 1] })
  assert.deepStrictEqual(doc, { list: [0, 1, 2] })
})

test('copy then edit the copy does not change the original (no aliasing)', () => {
  const doc = { a: { n: 1 } }
  const out = applyPatch(doc, [
    { op: 'replace', path: '/a/n', value: 2 }, // /a is now a copy made by this call
    { op: 'copy', from: '/a', path: '/b' },
    { op: 'replace', path: '/b/n', value: 3 },
  ])
  assert.deepStrictEqual(out, { a: { n: 2 }, b: { n: 3 } })
})

test('"__proto__" is an ordinary member, never the prototype', () => {
  const doc = JSON.parse('{"a":1}')
  const out = applyPatch(doc, [{ op: 'add', path: '/__proto__', value: { polluted: true } }])
  assert.equal(Object.getPrototypeOf(out), Object.prototype)
  assert.deepStrictEqual(Object.keys(out), ['a', '__proto__'])
  assert.equal({}.polluted, undefined)
  assert.throws(() => get({}, '/constructor'), PatchError)
  assert.throws(() => applyPatch({}, [{ op: 'remove', path: '/toString' }]), PatchError)
})

test('moving a value into its own child is refused', () => {
  assert.throws(() => applyPatch({ a: { b: {} } }, [{ op: 'move', from: '/a', path: '/a/b/c' }]), PatchError)
})

test('bad pointers and bad patches are PatchErrors', () => {
  assert.throws(() => applyPatch({}, [{ op: 'add', path: 'a', value: 1 }]), PatchError)
  assert.throws(() => applyPatch({ 'a~b': 1 }, [{ op: 'remove', path: '/a~2b' }]), PatchError)
  assert.throws(() => applyPatch({}, { op: 'add' }), PatchError)
  assert.throws(() => applyPatch({}, [null]), PatchError)
  assert.throws(() => applyPatch([1], [{ op: 'add', path: '/01', value: 0 }]), PatchError)
})

test('equal is JSON equality', () => {
  assert.ok(equal({ a: [1, { b: null }] }, { a: [1, { b: null }] }))
  assert.ok(equal({ a: 1, b: 2 }, { b: 2, a: 1 }))
  assert.ok(!equal({ a: 1 }, { a: 1, b: undefined }))
  assert.ok(!equal([], {}))
  assert.ok(!equal(1, '1'))
  assert.ok(!equal(null, {}))
})
