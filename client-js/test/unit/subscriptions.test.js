// Subscriptions end to end over the stub transport: snapshot, live changes, version rules,
// repairs, resets, resume, unsubscribe.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setup, serve, docs, put, patch, del, tx, flush } from './fake-server.js'

const order = (id, v, status = 'new', total = '1.00') => [id, v, { id: Number(id), status, total }]
const changes = (sub) => {
  const seen = []
  sub.on('change', (c) => seen.push(c))
  return seen
}

test('subscriptions made before the socket opens are sent after welcome, in order', (t) => {
  const { client, handshake, server } = setup(t)
  client.subscribe('a', { x: 1 })
  client.subscribe('b')
  const ws = server()
  ws.open()
  assert.equal(ws.sentOf('sub').length, 0, 'nothing but hello before welcome')
  handshake()
  const subs = ws.sentOf('sub')
  assert.deepEqual(subs.map((m) => [m.pub, m.params, m.since]), [['a', { x: 1 }, undefined], ['b', {}, undefined]])
  assert.notEqual(subs[0].id, subs[1].id)
})

test('snapshot chunks are buffered; ready installs them at once and resolves ready', async (t) => {
  const { client, handshake, statuses } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders', { status: 'new' })
  const seen = changes(sub)
  const { id } = ws.lastSub()
  ws.deliver({ type: 'snap', sub: id, docs: docs('orders', order('3', 1), order('1', 4)), more: true })
  ws.deliver({ type: 'snap', sub: id, docs: docs('orders', order('2', 2)), more: false })
  assert.deepEqual(sub.docs, [], 'nothing before ready')
  assert.equal(sub.state, 'pending')
  ws.deliver({ type: 'ready', sub: id, key: 'k1', epoch: 'e1', pos: 10, resumed: false })
  assert.equal(await sub.ready, sub)
  assert.equal(sub.state, 'live')
  assert.deepEqual(sub.docs.map((d) => d.id), [3, 1, 2], 'publication order')
  assert.equal(sub.get('1').id, 1)
  assert.equal(sub.get('9'), undefined)
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0].added.map((d) => d.id), [3, 1, 2])
  assert.deepEqual(statuses, ['online'], 'a first load is not a resync')
})

test('nosub rejects ready with the server code and reports an error', async (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('secret')
  ws.deliver({ type: 'nosub', sub: ws.lastSub().id, code: 'forbidden', message: 'no' })
  await assert.rejects(sub.ready, (err) => err.code === 'forbidden' && err.message === 'no' && err.subscription === sub)
  assert.equal(sub.state, 'stopped')
  assert.equal(errors[0].code, 'forbidden')
})

test('a tx applies put, patch and del, then emits one change', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1), order('2', 1)) })
  const seen = changes(sub)
  ws.deliver(
    tx(11, ['k1',
      patch('orders', '1', 1, 2, [{ op: 'replace', path: '/total', value: '9.00' }]),
      del('orders', '2', 2),
      put('orders', '3', 1, { id: 3, status: 'new', total: '3.00' }),
    ]),
  )
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0], {
    added: [{ id: 3, status: 'new', total: '3.00' }],
    changed: [{ id: 1, status: 'new', total: '9.00' }],
    removed: ['2'],
  })
  assert.deepEqual(sub.docs.map((d) => d.id), [1, 3])
  assert.equal(sub.pos, 11)
})

test('order: patched documents keep their place, new ones are appended', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1), order('2', 1), order('3', 1)) })
  ws.deliver(tx(11, ['k1', put('orders', '0', 1, { id: 0 }), patch('orders', '2', 1, 2, [{ op: 'add', path: '/x', value: 1 }])]))
  assert.deepEqual(sub.docs.map((d) => d.id), [1, 2, 3, 0])
})

test('versions: older or equal changes are ignored, and emit nothing', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 5)) })
  const seen = changes(sub)
  const before = sub.docs
  ws.deliver(tx(11, ['k1', put('orders', '1', 4, { id: 1, status: 'old' })]))
  ws.deliver(tx(12, ['k1', put('orders', '1', 5, { id: 1, status: 'new', total: '1.00' })]))
  ws.deliver(tx(13, ['k1', patch('orders', '1', 4, 5, [{ op: 'replace', path: '/status', value: 'x' }])]))
  ws.deliver(tx(14, ['k1', del('orders', '1', 5)]))
  assert.equal(seen.length, 0)
  assert.equal(sub.docs, before, 'the same array: nothing changed')
  assert.equal(sub.get('1').status, 'new')
  assert.equal(errors.length, 0)
  ws.deliver(tx(15, ['k1', put('orders', '1', 6, { id: 1, status: 'newer' })]))
  assert.equal(sub.get('1').status, 'newer')
  assert.notEqual(sub.docs, before)
  assert.ok(Object.isFrozen(sub.docs))
})

test('a gap leaves the cache untouched and resyncs the subscription from its position', (t) => {
  const { client, handshake, errors, statuses } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  const first = serve(ws, { docs: docs('orders', order('1', 1), order('2', 1)) })
  ws.deliver(tx(11, ['k1', put('orders', '3', 1, { id: 3 })]))
  const seen = changes(sub)
  // One transaction: a valid change, then a patch from version 2 while 1 is held.
  ws.deliver(tx(12, ['k1', del('orders', '1', 2), patch('orders', '2', 2, 3, [{ op: 'replace', path: '/total', value: '0' }])]))
  assert.equal(seen.length, 0, 'no half transaction')
  assert.deepEqual(sub.docs.map((d) => d.id), [1, 2, 3])
  assert.equal(errors[0].code, 'gap')
  assert.equal(errors[0].subscription, sub)
  assert.equal(sub.state, 'resyncing')
  assert.equal(client.status, 'resyncing')
  assert.deepEqual(ws.sentOf('unsub'), [{ type: 'unsub', id: first.id }])
  const again = ws.lastSub()
  assert.notEqual(again.id, first.id)
  assert.deepEqual(again.since, { epoch: 'e1', pos: 11 })
  // The server replays what was missed as whole documents, then ready.
  ws.deliver({ type: 'unsubbed', sub: first.id })
  ws.deliver(tx(12, ['k1', del('orders', '1', 2), put('orders', '2', 3, { id: 2, total: '0' })]))
  ws.deliver({ type: 'ready', sub: again.id, key: 'k1', epoch: 'e1', pos: 12, resumed: true })
  assert.deepEqual(sub.docs, [{ id: 2, total: '0' }, { id: 3 }])
  assert.equal(sub.state, 'live')
  assert.deepEqual(statuses, ['online', 'resyncing', 'online'])
})

test('after a repair, frames still in flight for the old subscription are ignored until unsubbed', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  const first = serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.deliver(tx(11, ['k1', patch('orders', '1', 2, 3, [])])) // gap
  const errorsBefore = []
  client.on('error', (e) => errorsBefore.push(e))
  ws.deliver(tx(12, ['k1', patch('orders', '1', 3, 4, [])])) // in flight: would gap again
  assert.equal(errorsBefore.length, 0)
  assert.equal(ws.sentOf('sub').length, 2, 'no second repair')
  ws.deliver({ type: 'unsubbed', sub: first.id })
  ws.deliver(tx(12, ['k1', put('orders', '1', 4, { id: 1, total: '4' })])) // the replay
  ws.deliver({ type: 'ready', sub: ws.lastSub().id, key: 'k1', epoch: 'e1', pos: 12, resumed: true })
  assert.deepEqual(sub.docs, [{ id: 1, total: '4' }])
  assert.equal(sub.state, 'live', 'the ignored frames did not taint the resume')
  assert.equal(errorsBefore.length, 0)
  assert.equal(ws.sentOf('sub').length, 2)
})

test('a patch that fails to apply leaves the cache untouched and resyncs', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  const before = sub.get('1')
  ws.deliver(tx(11, ['k1', patch('orders', '1', 1, 2, [{ op: 'replace', path: '/status', value: 'x' }, { op: 'remove', path: '/nope' }])]))
  assert.equal(errors[0].code, 'patch-failed')
  assert.equal(sub.get('1'), before)
  assert.deepEqual(before, { id: 1, status: 'new', total: '1.00' }, 'not mutated')
  assert.deepEqual(ws.lastSub().since, { epoch: 'e1', pos: 10 })
})

test('a second repair in a row asks for a fresh snapshot', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.deliver(tx(11, ['k1', patch('orders', '1', 5, 6, [])]))
  assert.ok(ws.lastSub().since)
  ws.deliver({ type: 'unsubbed', sub: ws.sentOf('unsub')[0].id })
  ws.deliver({ type: 'ready', sub: ws.lastSub().id, key: 'k1', epoch: 'e1', pos: 11, resumed: true })
  ws.deliver(tx(12, ['k1', patch('orders', '1', 7, 8, [])]))
  assert.equal(ws.lastSub().since, undefined)
})

test('a clean transaction resets the repair count', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.deliver(tx(11, ['k1', patch('orders', '1', 5, 6, [])]))
  ws.deliver({ type: 'unsubbed', sub: ws.sentOf('unsub')[0].id })
  ws.deliver({ type: 'ready', sub: ws.lastSub().id, key: 'k1', epoch: 'e1', pos: 11, resumed: true })
  ws.deliver(tx(12, ['k1', put('orders', '2', 1, { id: 2 })]))
  ws.deliver(tx(13, ['k1', patch('orders', '1', 5, 6, [])]))
  assert.deepEqual(ws.lastSub().since, { epoch: 'e1', pos: 12 })
})

test('a put at the held version with other content (id reused) re-reads from a snapshot', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 3)) })
  ws.deliver(tx(11, ['k1', put('orders', '1', 3, { id: 1, status: 'someone else' })]))
  assert.equal(errors[0].code, 'id-reused')
  assert.equal(sub.get('1').status, 'new')
  assert.equal(ws.lastSub().since, undefined)
  const seen = changes(sub)
  serve(ws, { key: 'k1', pos: 12, docs: docs('orders', [('1'), 3, { id: 1, status: 'someone else' }]) })
  assert.equal(sub.get('1').status, 'someone else')
  assert.equal(seen.length, 1)
  assert.equal(seen[0].changed.length, 1)
})

test('a tx is atomic across subscriptions: every cache is updated before any listener runs', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const a = client.subscribe('a')
  serve(ws, { key: 'ka' })
  const b = client.subscribe('b')
  serve(ws, { key: 'kb' })
  const views = []
  const look = () => views.push([a.docs.length, b.docs.length, client.collection('orders').docs.length])
  a.on('change', look)
  b.on('change', look)
  client.collection('orders').on('change', look)
  ws.deliver(tx(11, ['ka', put('orders', '1', 1, { id: 1 }), put('orders', '2', 1, { id: 2 })], ['kb', put('orders', '3', 1, { id: 3 })]))
  assert.deepEqual(views, [[2, 1, 3], [2, 1, 3], [2, 1, 3]])
})

test('a part that fails resyncs only its subscription; the others apply theirs', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const a = client.subscribe('a')
  serve(ws, { key: 'ka' })
  const b = client.subscribe('b')
  serve(ws, { key: 'kb' })
  ws.deliver(tx(11, ['ka', put('orders', '1', 1, { id: 1 })], ['kb', patch('orders', '9', 1, 2, [])]))
  assert.equal(a.docs.length, 1)
  assert.equal(a.pos, 11)
  assert.equal(b.state, 'resyncing')
  assert.equal(b.pos, 10)
  assert.equal(errors.length, 1)
})

test('subscriptions sharing a key both apply the part', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const a = client.subscribe('same')
  serve(ws, { key: 'k' })
  const b = client.subscribe('same')
  serve(ws, { key: 'k' })
  ws.deliver(tx(11, ['k', put('orders', '1', 1, { id: 1 })]))
  assert.equal(a.get('1').id, 1)
  assert.equal(b.get('1').id, 1)
  assert.equal(client.collection('orders').docs.length, 1)
})

test('malformed frames: reported, cache intact, affected subscriptions resynced', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const a = client.subscribe('a')
  serve(ws, { key: 'ka', docs: docs('orders', order('1', 1)) })
  const b = client.subscribe('b')
  serve(ws, { key: 'kb', docs: docs('orders', order('2', 1)) })
  const subsBefore = ws.sentOf('sub').length

  ws.deliver(tx(11, ['ka', { c: 'orders', id: '1', op: 'put', v: 2 }])) // put without d
  assert.equal(errors.at(-1).code, 'bad-message')
  assert.equal(a.get('1').status, 'new')
  assert.equal(a.state, 'resyncing')
  assert.equal(b.state, 'live', 'only the key the bad part names')
  assert.equal(ws.sentOf('sub').length, subsBefore + 1)

  ws.deliver({ type: 'tx', pos: 'x', parts: [{ key: 'kb', ch: [] }] })
  assert.equal(errors.at(-1).code, 'bad-message')
  assert.equal(b.state, 'resyncing')
  assert.equal(b.get('2').id, 2)

  const n = ws.sentOf('sub').length
  ws.deliver('{"type":"tx", truncated')
  assert.equal(errors.at(-1).code, 'bad-message')
  assert.equal(ws.sentOf('sub').length, n + 2, 'an unreadable frame could have been anything: all resync')

  ws.deliver({ type: 'launch' })
  assert.equal(errors.at(-1).code, 'bad-message')
  assert.equal(ws.sentOf('sub').length, n + 2, 'an unknown type carries no data')
})

test('a malformed snapshot document re-requests the subscription', (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('a')
  const first = ws.lastSub()
  ws.deliver({ type: 'snap', sub: first.id, docs: [{ c: 'orders', id: 1, d: {} }], more: false })
  assert.equal(errors[0].code, 'bad-message')
  assert.notEqual(ws.lastSub().id, first.id)
  ws.deliver({ type: 'ready', sub: first.id, key: 'k', epoch: 'e1', pos: 1, resumed: false }) // stale: ignored
  assert.equal(sub.state, 'pending')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  assert.equal(sub.state, 'live')
  assert.equal(sub.docs.length, 1)
})

test('reset: the subscription is fetched again without since; data is replaced at once', (t) => {
  const { client, handshake, statuses } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  const first = serve(ws, { docs: docs('orders', order('1', 1), order('2', 1)) })
  const resets = []
  sub.on('reset', (r) => resets.push(r))
  const seen = changes(sub)
  ws.deliver({ type: 'reset', key: 'k1', reason: 'history-lost' })
  assert.deepEqual(resets, [{ reason: 'history-lost' }])
  assert.equal(ws.sentOf('unsub').length, 0, 'the server already ended it')
  const again = ws.lastSub()
  assert.notEqual(again.id, first.id)
  assert.equal(again.since, undefined)
  assert.equal(sub.docs.length, 2, 'old data readable until the new snapshot')
  assert.equal(client.status, 'resyncing')
  const keep = sub.get('2')
  serve(ws, { key: 'k1', pos: 50, epoch: 'e2', docs: docs('orders', order('2', 1), order('3', 1)) })
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0], { added: [{ id: 3, status: 'new', total: '1.00' }], changed: [], removed: ['1'] })
  assert.equal(sub.get('2'), keep, 'unchanged documents keep their identity')
  assert.deepEqual(statuses, ['online', 'resyncing', 'online'])
})

test('a reset for the key of a subscription still starting makes it start again', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  const first = ws.lastSub()
  ws.deliver({ type: 'reset', key: 'k1', reason: 'resync' })
  serve(ws, { sub: first, key: 'k1' })
  assert.notEqual(ws.lastSub().id, first.id, 'ready for a key reset meanwhile: the server dropped it')
  assert.equal(sub.state, 'pending')
  serve(ws, { key: 'k1' })
  assert.equal(sub.state, 'live')
})

test('reconnect: subscriptions resume from their position; resumed data is kept', (t) => {
  const { client, handshake, statuses } = setup(t)
  let ws = handshake()
  const sub = client.subscribe('orders', { status: 'new' })
  serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.deliver(tx(15, ['k1', put('orders', '2', 1, { id: 2 })]))
  ws.deliver(tx(16, ['other', put('orders', '3', 1, { id: 3 })]))
  ws.drop(1001)
  assert.equal(sub.state, 'resyncing')
  assert.equal(client.status, 'offline')
  t.mock.timers.tick(1000)
  ws = handshake()
  const again = ws.lastSub()
  assert.deepEqual(again.since, { epoch: 'e1', pos: 15 })
  assert.deepEqual(again.params, { status: 'new' })
  assert.equal(client.status, 'resyncing')
  const seen = changes(sub)
  ws.deliver(tx(17, ['k1', put('orders', '4', 1, { id: 4 })]))
  serve(ws, { key: 'k1', pos: 17, resumed: true })
  assert.deepEqual(sub.docs.map((d) => d.id), [1, 2, 4])
  assert.equal(seen.length, 1)
  assert.deepEqual(statuses, ['online', 'offline', 'connecting', 'resyncing', 'online'])
})

test('reconnect: ready {resumed: false} replaces the data with the snapshot in one change', (t) => {
  const { client, handshake } = setup(t)
  let ws = handshake()
  const sub = client.subscribe('window')
  serve(ws, { docs: docs('orders', order('1', 1), order('2', 1)) })
  ws.drop(4000)
  t.mock.timers.tick(1000)
  ws = handshake()
  const seen = changes(sub)
  serve(ws, { pos: 30, docs: docs('orders', order('2', 2, 'paid'), order('5', 1)) })
  assert.equal(seen.length, 1)
  assert.deepEqual(seen[0].added.map((d) => d.id), [5])
  assert.deepEqual(seen[0].changed.map((d) => d.status), ['paid'])
  assert.deepEqual(seen[0].removed, ['1'])
  assert.deepEqual(sub.docs.map((d) => d.id), [2, 5])
})

test('reconnect to a new epoch: no since (positions mean nothing there)', (t) => {
  const { client, handshake } = setup(t)
  let ws = handshake()
  client.subscribe('orders')
  serve(ws)
  ws.drop(4003)
  t.mock.timers.tick(1000)
  ws = handshake({ epoch: 'e2' })
  assert.equal(ws.lastSub().since, undefined)
})

test('resumed data that broke a rule while resyncing is replaced by a fresh snapshot', (t) => {
  const { client, handshake, errors } = setup(t)
  let ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.drop(1006)
  t.mock.timers.tick(1000)
  ws = handshake()
  ws.deliver(tx(11, ['k1', { c: 'orders', id: '1', op: 'bogus' }]))
  assert.equal(errors.length, 0, 'judged at ready')
  serve(ws, { pos: 11, resumed: true })
  assert.equal(errors[0].code, 'bad-message')
  assert.equal(ws.lastSub().since, undefined)
  assert.equal(sub.state, 'resyncing')
})

test('unsubscribe: unsub sent, ready rejected if pending, collection drops the documents', async (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const live = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  const pending = client.subscribe('slow')
  const removed = []
  client.collection('orders').on('change', (c) => removed.push(...c.removed))
  const seen = changes(live)
  live.unsubscribe()
  pending.unsubscribe()
  assert.deepEqual(ws.sentOf('unsub').map((m) => m.id), ws.sentOf('sub').map((m) => m.id))
  assert.deepEqual(removed, ['1'])
  assert.equal(seen.length, 0, 'no events from a subscription after unsubscribe')
  assert.equal(live.state, 'stopped')
  assert.equal(client.collection('orders').get('1'), undefined)
  await assert.rejects(pending.ready, { code: 'unsubscribed' })
  ws.deliver(tx(11, ['k1', put('orders', '2', 1, { id: 2 })]))
  assert.equal(live.docs.length, 0)
  live.unsubscribe() // twice is harmless
  assert.equal(ws.sentOf('unsub').length, 2)
})

test('unsubscribe while offline sends nothing; the subscription is not resent on reconnect', (t) => {
  const { client, handshake } = setup(t)
  let ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws)
  ws.drop(1006)
  sub.unsubscribe()
  t.mock.timers.tick(1000)
  ws = handshake()
  assert.equal(ws.sentOf('sub').length, 0)
  assert.equal(client.status, 'online')
})

test('server errors naming a pending sub: rate-limited is retried, others end it', async (t) => {
  const { client, handshake, errors } = setup(t)
  const ws = handshake()
  const a = client.subscribe('a')
  const first = ws.lastSub()
  ws.deliver({ type: 'error', code: 'rate-limited', message: 'slow down', ref: first.id })
  assert.equal(errors[0].code, 'rate-limited')
  assert.equal(ws.lastSub().pub, 'a')
  assert.notEqual(ws.lastSub().id, first.id)
  assert.equal(a.state, 'pending')
  const b = client.subscribe('b')
  ws.deliver({ type: 'error', code: 'invalid-message', message: 'params: bad', ref: ws.lastSub().id })
  await assert.rejects(b.ready, { code: 'invalid-message' })
  ws.deliver({ type: 'error', code: 'internal', message: 'oops' })
  assert.equal(errors.at(-1).code, 'internal')
})

test('close(): pending subscriptions reject, data stays readable', async (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const live = client.subscribe('orders')
  serve(ws, { docs: docs('orders', order('1', 1)) })
  const pending = client.subscribe('slow')
  client.close()
  await assert.rejects(pending.ready, { code: 'unsubscribed' })
  assert.equal(live.docs.length, 1)
  assert.equal(live.state, 'stopped')
  await flush()
})

test('a listener that throws does not stop the other listeners or the client', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  serve(ws)
  const uncaught = []
  globalThis.reportError = (err) => uncaught.push(err) // as in browsers
  t.after(() => delete globalThis.reportError)
  let second = 0
  sub.on('change', () => {
    throw new Error('page bug')
  })
  sub.on('change', () => second++)
  ws.deliver(tx(11, ['k1', put('orders', '1', 1, { id: 1 })]))
  ws.deliver(tx(12, ['k1', put('orders', '2', 1, { id: 2 })]))
  assert.equal(second, 2)
  assert.equal(sub.docs.length, 2)
  assert.deepEqual(uncaught.map((e) => e.message), ['page bug', 'page bug'])
})

test('events caused by a listener are delivered after the events already due, in order', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const a = client.subscribe('a')
  serve(ws, { key: 'ka' })
  const b = client.subscribe('b')
  serve(ws, { key: 'kb', docs: docs('orders', order('9', 1)) })
  const events = []
  a.on('change', () => b.unsubscribe())
  client.collection('orders').on('change', (c) => events.push(c))
  ws.deliver(tx(11, ['ka', put('orders', '1', 1, { id: 1 })]))
  assert.deepEqual(events, [
    { added: [{ id: 1 }], changed: [], removed: [] },
    { added: [], changed: [], removed: ['9'] },
  ])
})

test('params are copied at subscribe: later changes by the page do not leak into resyncs', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const params = { status: 'new' }
  const sub = client.subscribe('orders', params)
  params.status = 'paid'
  serve(ws)
  ws.deliver({ type: 'reset', key: 'k1' })
  assert.deepEqual(ws.lastSub().params, { status: 'new' })
  assert.ok(Object.isFrozen(sub.params))
})

test('a rate-limited unsub is sent again; frames after the new ready apply even before unsubbed', (t) => {
  const { client, handshake } = setup(t)
  const ws = handshake()
  const sub = client.subscribe('orders')
  const first = serve(ws, { docs: docs('orders', order('1', 1)) })
  ws.deliver(tx(11, ['k1', patch('orders', '1', 4, 5, [])])) // gap: unsub + sub
  ws.deliver({ type: 'error', code: 'rate-limited', message: 'slow down', ref: first.id })
  assert.deepEqual(ws.sentOf('unsub').map((m) => m.id), [first.id, first.id])
  serve(ws, { pos: 11, resumed: true })
  ws.deliver(tx(12, ['k1', put('orders', '2', 1, { id: 2 })]))
  assert.deepEqual(sub.docs.map((d) => d.id), [1, 2])
  // The same for an unsubscribe by the page.
  const other = client.subscribe('other')
  serve(ws, { key: 'k2' })
  const id = ws.lastSub().id
  other.unsubscribe()
  ws.deliver({ type: 'error', code: 'rate-limited', message: 'slow down', ref: id })
  assert.deepEqual(ws.sentOf('unsub').map((m) => m.id).slice(-2), [id, id])
  ws.deliver({ type: 'unsubbed', sub: id })
  ws.deliver({ type: 'error', code: 'rate-limited', message: 'slow down', ref: id })
  assert.equal(ws.sentOf('unsub').length, 4, 'not after unsubbed')
})
