// ready.order: documents sorted as the server's ORDER BY sorts them.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { comparator, compareValues } from '../../src/order.js'
import { setup, serve, docs, put, patch, tx } from './fake-server.js'

const sorted = (order, rows) => [...rows].sort(comparator(order))

test('numbers and decimal strings compare as numbers, exactly', () => {
  assert.equal(compareValues(9, 10), -1)
  assert.equal(compareValues('9.50', '10.00'), -1, 'not as text')
  assert.equal(compareValues('-2', '-10'), 1)
  assert.equal(compareValues('-0.00', '0'), 0)
  assert.equal(compareValues('1.50', '1.5'), 0)
  assert.equal(compareValues('0.05', '0.5'), -1)
  assert.equal(compareValues('12345678901234567890.01', '12345678901234567890.02'), -1, 'beyond double precision')
  assert.equal(compareValues('-12345678901234567890.01', '-12345678901234567890.02'), 1)
})

test('other values compare as strings, by code point', () => {
  assert.equal(compareValues('2026-01-02T00:00:00+00:00', '2026-01-10T00:00:00+00:00'), -1)
  assert.equal(compareValues('b', 'a'), 1)
  assert.equal(compareValues('ab', 'abc'), -1)
  assert.equal(compareValues('\u{1F600}', '\uFFFD'), 1, 'an astral character is after U+FFFD')
  assert.equal(compareValues('x1', 'x10'), -1, 'not decimal strings: text order')
})

test('fields in turn, descending where asked, NULLs placed as `nulls` says', () => {
  const rows = [{ id: 1, q: 2 }, { id: 2, q: null }, { id: 3, q: 5 }, { id: 4 }, { id: 5, q: 2 }]
  const ids = (order) => sorted(order, rows).map((r) => r.id)
  assert.deepEqual(ids([{ f: 'q', desc: false, nulls: 'last' }, { f: 'id', desc: false, nulls: 'last' }]), [1, 5, 3, 2, 4])
  assert.deepEqual(ids([{ f: 'q', desc: true, nulls: 'last' }, { f: 'id', desc: true, nulls: 'last' }]), [3, 5, 1, 4, 2])
  assert.deepEqual(ids([{ f: 'q', desc: true, nulls: 'first' }, { f: 'id', desc: false, nulls: 'last' }]), [2, 4, 3, 1, 5])
  assert.deepEqual(ids([{ f: 'q', desc: false, nulls: 'first' }]), [2, 4, 1, 5, 3], 'ties keep their place')
  assert.deepEqual(ids([{ f: 'constructor', desc: false, nulls: 'last' }]), [1, 2, 3, 4, 5], 'only own fields')
})

test('a subscription with ready.order keeps its documents sorted as changes arrive', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const top = client.subscribe('top_items', { n: 3 })
  const order = [{ f: 'qty', desc: true, nulls: 'last' }, { f: 'id', desc: false, nulls: 'last' }]
  ws.deliver({ type: 'snap', sub: ws.lastSub().id, docs: docs('items', ['1', 1, { id: 1, qty: 9 }], ['2', 1, { id: 2, qty: 5 }]), more: false })
  ws.deliver({ type: 'ready', sub: ws.lastSub().id, key: 'k', epoch: 'e1', pos: 1, resumed: false, order })
  assert.deepEqual(top.docs.map((d) => d.id), [1, 2])
  ws.deliver(tx(2, ['k', put('items', '3', 1, { id: 3, qty: 7 })]))
  assert.deepEqual(top.docs.map((d) => d.id), [1, 3, 2], 'a newcomer goes to its place, not last')
  ws.deliver(tx(3, ['k', patch('items', '1', 1, 2, [{ op: 'replace', path: '/qty', value: 1 }])]))
  assert.deepEqual(top.docs.map((d) => d.id), [3, 2, 1])
  assert.equal(errors.length, 0)
})

test('without ready.order: snapshot order, later arrivals last', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('items')
  serve(ws, { key: 'k', docs: docs('items', ['2', 1, { id: 2 }], ['1', 1, { id: 1 }]) })
  ws.deliver(tx(11, ['k', put('items', '0', 1, { id: 0 })]))
  assert.deepEqual(sub.docs.map((d) => d.id), [2, 1, 0])
})

test('a malformed ready.order is a malformed ready', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('items')
  ws.deliver({ type: 'ready', sub: ws.lastSub().id, key: 'k', epoch: 'e1', pos: 1, resumed: false, order: [{ desc: true }] })
  assert.equal(errors[0].code, 'bad-message')
  assert.equal(sub.state, 'pending')
})
