// Client writes over the stub transport: optimistic layer, acks, fences, rejections and exact
// rollback, ids, local schema checks, offline queue and resend, calls, channels.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setup, serve, docs, put, patch, del, tx, flush } from './fake-server.js'
import { SCHEMAS } from './schemas.js'

const A = 'a0000000-0000-4000-8000-000000000001'
const B = 'b0000000-0000-4000-8000-000000000002'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const todo = (id, v, fields = {}) => [id, v, { id, owner: 1, title: 't', done: false, created: 'born', ...fields }]
const WRITES = ['insert', 'update', 'remove', 'call', 'join', 'leave']
const writes = (ws) => ws.sent.filter((m) => WRITES.includes(m.type))
const last = (ws) => writes(ws).at(-1)
const plain = (x) => JSON.parse(JSON.stringify(x))
const byId = (list) => Object.fromEntries(list.map((d) => [d.id, d]))

/** Online, subscribed to `todos` holding `rows`; change events of the subscription and the view recorded. */
function online(t, rows = [todo(A, 1)], options = {}) {
  const ctx = setup(t, { schemas: SCHEMAS, ...options })
  const ws = ctx.handshake()
  const sub = ctx.client.subscribe('todos')
  serve(ws, { docs: docs('todos', ...rows) })
  const todos = ctx.client.collection('todos')
  const subEvents = []
  const viewEvents = []
  sub.on('change', (c) => subEvents.push(plain(c)))
  todos.on('change', (c) => viewEvents.push(plain(c)))
  return { ...ctx, ws, sub, todos, subEvents, viewEvents }
}

// ---------------------------------------------------------------- accepted writes

test('insert: shown at once in the collection view, sent with a UUID; ack resolves, fence drops the layer', async (t) => {
  const { client, ws, sub, todos, subEvents, viewEvents } = online(t)
  const promise = client.insert('todos', { owner: 1, title: 'milk' })
  const sent = last(ws)
  assert.equal(sent.type, 'insert')
  assert.equal(sent.c, 'todos')
  assert.match(sent.d.id, UUID)
  assert.deepEqual(sent.d, { id: sent.d.id, owner: 1, title: 'milk', done: false }, 'schema defaults filled in')
  const id = sent.d.id
  assert.deepEqual(todos.get(id), sent.d, 'the optimistic copy, at once')
  assert.deepEqual(viewEvents, [{ added: [sent.d], changed: [], removed: [] }])
  assert.equal(sub.get(id), undefined, 'a subscription shows only what the server sends it')
  assert.deepEqual(subEvents, [])

  const server = { ...sent.d, created: 'born' }
  ws.deliver(tx(11, ['k1', put('todos', id, 1, server)]))
  assert.deepEqual(sub.get(id), server)
  assert.deepEqual(todos.get(id), server, "the server's copy replaces the optimistic one")
  assert.deepEqual(viewEvents.at(-1), { added: [], changed: [server], removed: [] })
  ws.deliver({ type: 'ack', id: sent.id, ok: true, doc: id, v: 1 })
  assert.deepEqual(await promise, { id, v: 1 })
  const n = viewEvents.length
  ws.deliver({ type: 'fence', id: sent.id })
  assert.equal(viewEvents.length, n, 'nothing to show at the fence: the server copy is already there')
  assert.deepEqual(plain(todos.docs), plain(sub.docs))
})

test('{fence: true} resolves only after the fence', async (t) => {
  const { client, ws } = online(t)
  let done = false
  const promise = client.update('todos', A, { title: 'x' }, { fence: true }).then((r) => (done = r))
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, doc: A, v: 2 })
  await flush()
  assert.equal(done, false)
  ws.deliver({ type: 'fence', id: last(ws).id })
  assert.deepEqual(await promise, { id: A, v: 2 })
})

test('update with fields: shown at once everywhere, carries the held version; its own tx and fence change nothing', async (t) => {
  const { client, ws, sub, todos, subEvents, viewEvents } = online(t)
  const promise = client.update('todos', A, { title: 'renamed' })
  assert.deepEqual(last(ws), { type: 'update', id: last(ws).id, c: 'todos', doc: A, v: 1, set: { title: 'renamed' } })
  assert.equal(sub.get(A).title, 'renamed')
  assert.equal(todos.get(A).title, 'renamed')
  assert.equal(subEvents.length, 1)
  assert.equal(viewEvents.length, 1)
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, doc: A, v: 2 })
  ws.deliver(tx(11, ['k1', patch('todos', A, 1, 2, [{ op: 'replace', path: '/title', value: 'renamed' }])]))
  ws.deliver({ type: 'fence', id: last(ws).id })
  assert.deepEqual(await promise, { id: A, v: 2 })
  assert.equal(subEvents.length, 1, 'one event per visible change')
  assert.equal(viewEvents.length, 1)
  assert.equal(sub.get(A).title, 'renamed')
})

test('update with a patch: sent as a patch; its tx arriving before the ack is not applied twice', async (t) => {
  const { client, ws, sub, subEvents } = online(t, [todo(A, 1, { tags: ['a'] })])
  const ops = [{ op: 'add', path: '/tags/-', value: 'b' }]
  client.update('todos', A, ops)
  const sent = last(ws)
  assert.deepEqual(sent.patch, ops)
  assert.deepEqual(sub.get(A).tags, ['a', 'b'])
  ws.deliver({ type: 'ack', id: sent.id, ok: true, doc: A, v: 2 })
  ws.deliver(tx(11, ['k1', patch('todos', A, 1, 2, ops)]))
  assert.deepEqual(sub.get(A).tags, ['a', 'b'], 'the acknowledged write is in the server copy: not re-applied')
  ws.deliver({ type: 'fence', id: sent.id })
  assert.deepEqual(sub.get(A).tags, ['a', 'b'])
  assert.equal(subEvents.length, 1)
})

test('remove: hidden at once from subscriptions and the view; the del and fence change nothing more', async (t) => {
  const { client, ws, sub, todos, subEvents, viewEvents } = online(t, [todo(A, 3), todo(B, 1)])
  const promise = client.remove('todos', A)
  assert.deepEqual(last(ws), { type: 'remove', id: last(ws).id, c: 'todos', doc: A, v: 3 })
  assert.deepEqual(sub.docs.map((d) => d.id), [B])
  assert.equal(todos.get(A), undefined)
  assert.deepEqual(subEvents, [{ added: [], changed: [], removed: [A] }])
  assert.deepEqual(viewEvents, [{ added: [], changed: [], removed: [A] }])
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, doc: A, v: 4 })
  ws.deliver(tx(11, ['k1', del('todos', A, 4)]))
  ws.deliver({ type: 'fence', id: last(ws).id })
  assert.deepEqual(await promise, { id: A, v: 4 })
  assert.equal(subEvents.length, 1)
  assert.equal(viewEvents.length, 1)
})

// ---------------------------------------------------------------- rejections

for (const [code, extra] of [
  ['invalid', { fields: [{ path: '/title', message: 'too long' }] }],
  ['forbidden', {}],
  ['conflict', { v: 7 }],
  ['not-found', {}],
  ['rate-limited', {}],
  ['internal', {}],
]) {
  test(`a rejected write (${code}) is taken back exactly; listeners see the write and its undoing`, async (t) => {
    const { client, ws, sub, todos, subEvents, viewEvents } = online(t, [todo(A, 1), todo(B, 1)])
    const before = { sub: sub.docs, view: todos.docs, a: sub.get(B) }
    const update = client.update('todos', B, { title: 'mine', tags: ['x'] })
    const removal = client.remove('todos', A) // the first: it must come back in its place
    const insert = client.insert('todos', { owner: 1, title: 'new' })
    const [u, r, i] = writes(ws)
    assert.equal(sub.docs.length, 1)
    assert.equal(todos.docs.length, 2)
    for (const w of [u, r, i]) ws.deliver({ type: 'ack', id: w.id, ok: false, code, message: 'no', ...extra })
    for (const promise of [update, removal, insert]) {
      await assert.rejects(promise, (err) => err.name === 'LiveSyncError' && err.code === code && err.message === 'no')
    }
    const err = await update.catch((e) => e)
    if (extra.fields) assert.deepEqual(err.fields, extra.fields)
    if (extra.v) assert.equal(err.v, 7)
    assert.deepEqual(plain(sub.docs), plain(before.sub), 'the same documents, in the same order')
    assert.deepEqual(plain(todos.docs), plain(before.view))
    assert.equal(sub.get(B), before.a, "the server's own copy again, not a look-alike")
    // Each write shown, then taken back: a mirror built from the events equals the cache.
    const mirror = byId(plain(before.view))
    for (const c of viewEvents) {
      for (const d of [...c.added, ...c.changed]) mirror[d.id] = d
      for (const id of c.removed) delete mirror[id]
    }
    assert.deepEqual(mirror, byId(plain(todos.docs)))
    assert.equal(subEvents.length, 4)
    ws.deliver({ type: 'fence', id: u.id }) // no fence follows a rejection; a stray one is ignored
    assert.equal(writes(ws).length, 3, 'nothing sent again')
  })
}

test('a conflict keeps later writes to the same document going, from the version they were made on', async (t) => {
  const { client, ws, sub } = online(t, [todo(A, 5)])
  const first = client.update('todos', A, { title: 'one' })
  const second = client.update('todos', A, { done: true })
  assert.equal(writes(ws).length, 1, 'the second waits for the ack of the first (it needs its version)')
  ws.deliver({ type: 'ack', id: writes(ws)[0].id, ok: false, code: 'conflict', message: 'at 6', v: 6 })
  await assert.rejects(first, { code: 'conflict', v: 6 })
  assert.deepEqual(writes(ws)[1], { type: 'update', id: writes(ws)[1].id, c: 'todos', doc: A, v: 5, set: { done: true } })
  assert.deepEqual([sub.get(A).title, sub.get(A).done], ['t', true])
  ws.deliver({ type: 'ack', id: writes(ws)[1].id, ok: true, doc: A, v: 6 })
  assert.deepEqual(await second, { id: A, v: 6 })
})

test('writes to one document are chained: each carries the version the previous ack reported', async (t) => {
  const { client, ws, sub } = online(t, [todo(A, 1)])
  client.update('todos', A, { title: 'one' })
  client.update('todos', A, { title: 'two' })
  client.remove('todos', A)
  assert.equal(writes(ws).length, 1)
  assert.equal(sub.get(A), undefined)
  ws.deliver({ type: 'ack', id: writes(ws)[0].id, ok: true, doc: A, v: 2 })
  assert.equal(writes(ws)[1].v, 2)
  ws.deliver({ type: 'ack', id: writes(ws)[1].id, ok: true, doc: A, v: 3 })
  assert.equal(writes(ws)[2].v, 3)
})

test('a write made after an acknowledged one whose tx has not come yet carries the acknowledged version', (t) => {
  const { client, ws } = online(t, [todo(B, 1)])
  client.update('todos', B, { title: 'x' })
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, doc: B, v: 2 })
  client.update('todos', B, { title: 'y' })
  assert.equal(last(ws).v, 2)
})

test('a server change under a pending write: the write is re-applied on the new copy; a rejection shows the server copy', async (t) => {
  const { client, ws, sub, todos, subEvents } = online(t, [todo(A, 1)])
  const promise = client.update('todos', A, { title: 'mine' })
  ws.deliver(tx(11, ['k1', patch('todos', A, 1, 2, [{ op: 'replace', path: '/done', value: true }, { op: 'replace', path: '/title', value: 'theirs' }])]))
  assert.deepEqual([sub.get(A).title, sub.get(A).done], ['mine', true], 're-based on version 2')
  assert.deepEqual(todos.get(A), sub.get(A))
  assert.equal(subEvents.length, 2)
  ws.deliver({ type: 'ack', id: last(ws).id, ok: false, code: 'conflict', message: 'at 2', v: 2 })
  await assert.rejects(promise, { code: 'conflict' })
  assert.deepEqual(sub.get(A), { id: A, owner: 1, title: 'theirs', done: true, created: 'born' })
  assert.deepEqual(todos.get(A), sub.get(A))
  // A pending patch that no longer applies to the newer copy is left out of what is shown.
  client.update('todos', A, [{ op: 'test', path: '/title', value: 'theirs' }, { op: 'replace', path: '/title', value: 'ok' }])
  assert.equal(sub.get(A).title, 'ok')
  ws.deliver(tx(12, ['k1', patch('todos', A, 2, 3, [{ op: 'replace', path: '/title', value: 'changed' }])]))
  assert.equal(sub.get(A).title, 'changed')
})

test('a server error frame naming a write refuses it (nothing ran): rolled back, reported', async (t) => {
  const { client, ws, sub, errors } = online(t)
  const promise = client.update('todos', A, { title: 'x' })
  ws.deliver({ type: 'error', code: 'rate-limited', message: 'slow down', ref: last(ws).id })
  await assert.rejects(promise, { code: 'rate-limited' })
  assert.equal(sub.get(A).title, 't')
  assert.equal(errors.at(-1).code, 'rate-limited')
})

// ---------------------------------------------------------------- ids

test('server ids: a temporary id until the ack names the real one; writes to it wait and follow', async (t) => {
  const { client, handshake } = setup(t, { schemas: SCHEMAS })
  const ws = handshake()
  const items = client.collection('items')
  const events = []
  items.on('change', (c) => events.push(plain(c)))
  const insert = client.insert('items', { title: 'box' })
  assert.deepEqual(last(ws).d, { title: 'box', qty: 0 }, 'no key sent (its default is not filled in)')
  const [temp] = items.docs
  assert.match(temp.id, /^tmp-/)
  assert.deepEqual(temp, { id: temp.id, title: 'box', qty: 0 })
  const update = client.update('items', temp.id, { qty: 2 })
  assert.equal(items.get(temp.id).qty, 2)
  assert.equal(writes(ws).length, 1, 'the update waits: the server does not know the temporary id')
  ws.deliver({ type: 'ack', id: writes(ws)[0].id, ok: true, doc: '7', v: 1 })
  assert.deepEqual(await insert, { id: '7', v: 1 })
  assert.equal(items.get(temp.id), undefined)
  assert.deepEqual(items.get('7'), { id: 7, title: 'box', qty: 2 })
  assert.deepEqual(events.at(-1), { added: [{ id: 7, title: 'box', qty: 2 }], changed: [], removed: [temp.id] }, 'one event')
  assert.deepEqual(writes(ws)[1], { type: 'update', id: writes(ws)[1].id, c: 'items', doc: '7', v: 1, set: { qty: 2 } })
  client.update('items', temp.id, { qty: 3 }) // the temporary id still names it
  assert.equal(last(ws).doc, '7')
  ws.deliver({ type: 'ack', id: writes(ws)[1].id, ok: true, doc: '7', v: 2 })
  assert.deepEqual(await update, { id: '7', v: 2 })
})

test('client ids are kept; uuid ids given are kept when canonical', async (t) => {
  const { client, handshake } = setup(t, { schemas: SCHEMAS })
  const ws = handshake()
  client.insert('tags', { name: 'red/blue' })
  assert.deepEqual(last(ws).d, { name: 'red/blue' })
  assert.deepEqual(client.collection('tags').get('red/blue'), { name: 'red/blue' })
  client.insert('todos', { id: A, owner: 1, title: 'x' })
  assert.equal(last(ws).d.id, A)
  await assert.rejects(client.insert('tags', {}), (err) => err.code === 'invalid' && err.fields[0].path === '/name')
  await assert.rejects(client.insert('todos', { id: 'A-1', owner: 1, title: 'x' }), (err) => err.fields[0].path === '/id')
  await assert.rejects(client.insert('items', { id: 3, title: 'x' }), (err) => err.fields[0].message === 'set by the server')
})

// ---------------------------------------------------------------- local checks

test('writes the schema refuses are rejected locally: nothing sent, nothing shown, no event', async (t) => {
  const { client, ws, sub, todos, subEvents, viewEvents } = online(t)
  const refused = async (promise, code, paths) => {
    const err = await promise.catch((e) => e)
    assert.equal(err.code, code, err.message)
    if (paths) assert.deepEqual(err.fields.map((f) => f.path), paths)
  }
  await refused(client.insert('todos', { owner: 1, title: '' }), 'invalid', ['/title'])
  await refused(client.insert('todos', { owner: 'me', title: 'x'.repeat(21), tags: ['a', 1] }), 'invalid', ['/owner', '/title', '/tags/1'])
  await refused(client.insert('todos', { title: 'x', secret: 1 }), 'invalid', ['/secret', '/owner'])
  await refused(client.update('todos', A, { title: '' }), 'invalid', ['/title'])
  await refused(client.update('todos', A, { owner: 2 }), 'invalid', ['/owner'])
  await refused(client.update('todos', A, { created: 'now' }), 'invalid', ['/created'])
  await refused(client.update('todos', A, [{ op: 'remove', path: '/done' }]), 'invalid', ['/done'])
  await refused(client.update('todos', A, [{ op: 'replace', path: '/nope', value: 1 }]), 'invalid', ['/nope'])
  await refused(client.remove('items', '1'), 'forbidden')
  await refused(client.insert('secrets', {}), 'forbidden')
  const err = await client.update('todos', A, { owner: 2 }).catch((e) => e)
  assert.deepEqual(err.fields, [{ path: '/owner', message: 'immutable' }])
  assert.equal(writes(ws).length, 0)
  assert.deepEqual([subEvents, viewEvents], [[], []])
  assert.equal(todos.size, 1)
  assert.equal(sub.get(A).title, 't')
  // Fields outside the schema may be sent unchanged; a document not held is left to the server.
  client.update('todos', A, { created: 'born', title: 'ok' })
  client.update('todos', B, { title: '' })
  assert.deepEqual(writes(ws).map((m) => m.doc), [A, B])
})

test('schemas are fetched from <path>/schemas; writes made before they arrive wait for them', async (t) => {
  const urls = []
  const answers = []
  const fetch = (url) => {
    urls.push(url)
    return new Promise((resolve) => answers.push(resolve))
  }
  const { client, handshake } = setup(t, { schemas: undefined, fetch })
  assert.deepEqual(urls, ['http://test/live/schemas'], 'at once')
  const refused = client.insert('todos', { owner: 1, title: '' })
  const accepted = client.insert('todos', { owner: 1, title: 'ok' })
  const ws = handshake()
  assert.equal(urls.length, 1, 'not twice at a time')
  assert.equal(client.collection('todos').size, 0, 'not shown before the schemas are known')
  answers[0]({ ok: true, json: async () => SCHEMAS })
  await assert.rejects(refused, { code: 'invalid' })
  await flush()
  assert.equal(client.collection('todos').size, 1)
  assert.equal(writes(ws).length, 1)
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, doc: last(ws).d.id, v: 1 })
  await accepted
  ws.drop(1001)
  t.mock.timers.tick(1000)
  handshake()
  assert.equal(urls.length, 2, 'again on every connection')
  answers[1]({ ok: false }) // a failed refresh keeps what was loaded
  await flush()
  await assert.rejects(client.insert('todos', {}), { code: 'invalid' })
})

test('schemas that cannot be fetched (offline, say): writes go unchecked, the server decides', async (t) => {
  const { client } = setup(t, { schemas: undefined, fetch: async () => Promise.reject(new TypeError('offline')) })
  await flush()
  client.insert('whatever', { x: 1 })
  assert.equal(client.collection('whatever').size, 1)
  assert.match(client.collection('whatever').docs[0].id, UUID, 'a UUID by default')
})

// ---------------------------------------------------------------- offline, resend

test('writes made offline are shown, queued, and sent in order after the handshake (after the subscriptions)', async (t) => {
  const { client, server, handshake } = setup(t, { schemas: SCHEMAS })
  const sub = client.subscribe('todos')
  const promise = client.insert('todos', { owner: 1, title: 'offline' })
  client.call('ping', { n: 1 })
  assert.equal(client.collection('todos').size, 1)
  const ws = handshake()
  assert.deepEqual(ws.sent.map((m) => m.type), ['hello', 'sub', 'insert', 'call'])
  ws.deliver({ type: 'ack', id: writes(ws)[0].id, ok: true, doc: writes(ws)[0].d.id, v: 1 })
  await promise
  assert.equal(server(), ws)
  assert.equal(sub.state, 'pending')
})

test('unanswered writes are sent again after a reconnect with the same ids; acked ones again for their fence', async (t) => {
  const { client, ws, sub, handshake } = online(t, [todo(A, 1), todo(B, 1)])
  const first = client.update('todos', A, { title: 'acked' }, { fence: true })
  const second = client.update('todos', B, { title: 'lost' })
  const [w1, w2] = writes(ws)
  ws.deliver({ type: 'ack', id: w1.id, ok: true, doc: A, v: 2 })
  ws.drop(1006)
  assert.deepEqual([sub.get(A).title, sub.get(B).title], ['acked', 'lost'], 'still shown while offline')
  const third = client.remove('todos', A)
  t.mock.timers.tick(1000)
  const again = handshake()
  assert.equal(again.sentOf('hello')[0].client, client.clientId, 'the same client id')
  assert.deepEqual(writes(again), [w1, w2, { type: 'remove', id: writes(again)[2].id, c: 'todos', doc: A, v: 2 }])
  again.deliver({ type: 'ack', id: w1.id, ok: true, doc: A, v: 2 }) // the stored ack
  again.deliver({ type: 'ack', id: w2.id, ok: true, doc: B, v: 2 })
  again.deliver({ type: 'fence', id: w1.id })
  again.deliver({ type: 'fence', id: w2.id })
  assert.deepEqual(await first, { id: A, v: 2 })
  assert.deepEqual(await second, { id: B, v: 2 })
  again.deliver({ type: 'ack', id: writes(again)[2].id, ok: true, doc: A, v: 3 })
  assert.deepEqual(await third, { id: A, v: 3 })
})

test('close(): writes without an answer reject with closed and are taken back', async (t) => {
  const { client, ws, sub, todos } = online(t)
  const promise = client.update('todos', A, { title: 'x' })
  const fenced = client.update('todos', A, { title: 'y' }, { fence: true })
  client.close()
  await assert.rejects(promise, { code: 'closed' })
  await assert.rejects(fenced, { code: 'closed' })
  assert.equal(sub.get(A).title, 't')
  assert.equal(todos.get(A).title, 't')
  await assert.rejects(client.insert('todos', {}), { code: 'closed' })
  assert.equal(writes(ws).length, 1)
})

test('a write above max_frame_bytes is refused locally (frame-too-big) and taken back', async (t) => {
  const { client, ws, sub } = online(t, [todo(A, 1)], {})
  ws.deliver({ type: 'ping' })
  const big = client.call('upload', { data: 'x'.repeat(70000) })
  await assert.rejects(big, { code: 'frame-too-big' })
  const promise = client.insert('todos', { owner: 1, title: 'ok', tags: ['y'.repeat(70000)] })
  await assert.rejects(promise, { code: 'frame-too-big' })
  assert.equal(sub.docs.length, 1)
  assert.equal(client.collection('todos').size, 1)
})

test('writes are paced below the write rate: at most half the burst unanswered', async (t) => {
  const { client, handshake } = setup(t, { schemas: SCHEMAS })
  const ws = handshake({ limits: { write_rate_per_second: 10, write_rate_burst: 4 } })
  for (let n = 0; n < 5; n++) client.call('m', { n })
  assert.equal(writes(ws).length, 2, 'two unanswered at most')
  ws.deliver({ type: 'ack', id: writes(ws)[0].id, ok: true })
  assert.equal(writes(ws).length, 2, 'the bucket (8/s, 2 saved) is empty')
  t.mock.timers.tick(125)
  assert.equal(writes(ws).length, 3)
})

// ---------------------------------------------------------------- calls

test('call: resolves with the result at the ack (or the fence); rejections carry fields', async (t) => {
  const { client, ws } = online(t)
  const plainCall = client.call('add', { title: 't' })
  assert.deepEqual(last(ws), { type: 'call', id: last(ws).id, m: 'add', params: { title: 't' } })
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true, result: { id: 1 } })
  assert.deepEqual(await plainCall, { id: 1 })
  const fenced = client.call('add', {}, { fence: true })
  let settled = false
  fenced.then(() => (settled = true))
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true })
  await flush()
  assert.equal(settled, false)
  ws.deliver({ type: 'fence', id: last(ws).id })
  assert.equal(await fenced, undefined)
  const bad = client.call('add')
  assert.deepEqual(last(ws).params, {})
  ws.deliver({ type: 'ack', id: last(ws).id, ok: false, code: 'invalid', message: 'bad', fields: [{ path: '/title', message: 'required' }] })
  await assert.rejects(bad, (err) => err.code === 'invalid' && err.fields[0].path === '/title')
  const ids = writes(ws).map((m) => m.id)
  assert.equal(new Set(ids).size, ids.length, 'request ids are unique')
})

// ---------------------------------------------------------------- channels

test('join, leave and messages; joined channels are joined again after a reconnect', async (t) => {
  const { client, ws, handshake } = online(t)
  const messages = []
  client.on('message', (m) => messages.push(m))
  const joined = client.join('room:1')
  assert.deepEqual(last(ws), { type: 'join', id: last(ws).id, ch: 'room:1' })
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true })
  assert.equal(await joined, undefined)
  const refused = client.join('secret')
  ws.deliver({ type: 'ack', id: last(ws).id, ok: false, code: 'forbidden', message: 'no' })
  await assert.rejects(refused, { code: 'forbidden' })
  client.join('room:2')
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true })
  ws.deliver({ type: 'msg', ev: 'hello', data: { n: 1 }, ch: 'room:1' })
  ws.deliver({ type: 'msg', ev: 'direct', data: 2 })
  assert.deepEqual(messages, [{ event: 'hello', data: { n: 1 }, channel: 'room:1' }, { event: 'direct', data: 2, channel: undefined }])
  const left = client.leave('room:2')
  assert.deepEqual(last(ws), { type: 'leave', id: last(ws).id, ch: 'room:2' })
  ws.deliver({ type: 'ack', id: last(ws).id, ok: true })
  await left
  ws.drop(1001)
  t.mock.timers.tick(1000)
  const again = handshake()
  assert.deepEqual(writes(again).map((m) => [m.type, m.ch]), [['join', 'room:1']])
})
