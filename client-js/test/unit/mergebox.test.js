// client.collection(name): one document per id over all subscriptions (the mergebox).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setup, serve, docs, put, patch, del, tx } from './fake-server.js'
import { Collection } from '../../src/collection.js'

function twoSubscriptions(t) {
  const ctx = setup(t)
  const ws = ctx.handshake()
  const a = ctx.client.subscribe('by_status', { status: 'new' })
  serve(ws, { key: 'ka', docs: docs('orders', ['1', 1, { id: 1, status: 'new' }], ['2', 1, { id: 2, status: 'new' }]) })
  const b = ctx.client.subscribe('by_customer', { customer: 7 })
  serve(ws, { key: 'kb', docs: docs('orders', ['2', 1, { id: 2, status: 'new' }], ['3', 1, { id: 3, status: 'paid' }]) })
  const orders = ctx.client.collection('orders')
  const seen = []
  orders.on('change', (c) => seen.push(c))
  return { ...ctx, ws, a, b, orders, seen }
}

test('a document held by several subscriptions appears once', (t) => {
  const { orders } = twoSubscriptions(t)
  assert.deepEqual(orders.docs.map((d) => d.id), [1, 2, 3])
  assert.equal(orders.size, 3)
  assert.equal(orders.get('2').status, 'new')
})

test('a del removes a document from one key only; it goes when no key holds it', (t) => {
  const { ws, a, b, orders, seen } = twoSubscriptions(t)
  ws.deliver(tx(11, ['ka', del('orders', '2', 2)]))
  assert.equal(a.get('2'), undefined)
  assert.equal(b.get('2').id, 2)
  assert.equal(orders.get('2').id, 2, 'still held by kb')
  assert.equal(seen.length, 0, 'the merged view did not change')
  ws.deliver(tx(12, ['kb', del('orders', '2', 2)]))
  assert.equal(orders.get('2'), undefined)
  assert.deepEqual(seen, [{ added: [], changed: [], removed: ['2'] }])
})

test('one change event per transaction, even when several keys carry the document', (t) => {
  const { ws, orders, seen } = twoSubscriptions(t)
  const op = [{ op: 'replace', path: '/status', value: 'paid' }]
  ws.deliver(tx(11, ['ka', patch('orders', '2', 1, 2, op), put('orders', '4', 1, { id: 4 })], ['kb', patch('orders', '2', 1, 2, op)]))
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0], { added: [{ id: 4 }], changed: [{ id: 2, status: 'paid' }], removed: [] })
  assert.deepEqual(orders.docs.map((d) => d.id), [1, 2, 3, 4])
})

test('while keys disagree, the highest version is shown', (t) => {
  const { ws, orders } = twoSubscriptions(t)
  // The document leaves ka (which keeps nothing) and changes in kb; later kb drops it too.
  ws.deliver(tx(11, ['kb', put('orders', '2', 3, { id: 2, status: 'v3' })]))
  assert.equal(orders.get('2').status, 'v3')
  ws.deliver(tx(12, ['ka', put('orders', '2', 2, { id: 2, status: 'v2' })]))
  assert.equal(orders.get('2').status, 'v3', 'a lower version from another key does not win')
  ws.deliver(tx(13, ['kb', del('orders', '2', 4)]))
  assert.equal(orders.get('2').status, 'v2', 'the remaining holder')
})

test('unsubscribing one subscription keeps what another still holds', (t) => {
  const { a, orders, seen } = twoSubscriptions(t)
  a.unsubscribe()
  assert.deepEqual(orders.docs.map((d) => d.id), [2, 3])
  assert.deepEqual(seen, [{ added: [], changed: [], removed: ['1'] }])
})

test('a collection asked for before any data is kept up to date', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const users = client.collection('users')
  assert.equal(client.collection('users'), users)
  assert.deepEqual(users.docs, [])
  client.subscribe('users')
  serve(ws, { docs: docs('users', ['u1', 1, { name: 'Ada' }]) })
  assert.equal(users.get('u1').name, 'Ada')
  assert.ok(Object.isFrozen(users.docs))
  assert.equal(users.docs, users.docs, 'the same array until a change')
})

test('Collection: swapping the shown entry for an equal one is not a change', () => {
  const view = new Collection('c')
  const a = {}
  const b = {}
  view.hold(a, '1', { c: 'c', id: '1', v: 2, d: { x: 1 } })
  view.hold(b, '1', { c: 'c', id: '1', v: 2, d: { x: 1 } })
  assert.deepEqual(view.flush().added, [{ x: 1 }])
  view.hold(a, '1', null)
  assert.equal(view.flush(), null)
  assert.deepEqual(view.get('1'), { x: 1 })
  view.hold(b, '1', null)
  assert.deepEqual(view.flush(), { added: [], changed: [], removed: ['1'] })
  assert.equal(view.flush(), null)
})
