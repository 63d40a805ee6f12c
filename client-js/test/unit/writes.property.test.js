// Property: random interleavings of optimistic writes, acceptances, rejections, concurrent
// server changes, frame orders and disconnects always end with every cache equal to the
// server's state, and every change event stream equal to what the cache shows at each step.
//
// The fake server models the database (documents with versions), the idempotency store
// (accepted acks by request id) and two publications: `all` (key k1) and `done` (key k2,
// documents with done = true). A seeded generator (mulberry32) drives it; a failure names
// its seed, so it can be replayed with SEED=n.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fakeWebSocket, WELCOME } from './fake-server.js'
import { SCHEMAS } from './schemas.js'
import { connect } from '../../src/index.js'
import { applyPatch } from '../../src/patch.js'
import { validate } from '../../src/schema.js'

const RUNS = Number(process.env.RUNS ?? 300)
const STEPS = 80
const POOL = Array.from({ length: 5 }, (_, i) => `00000000-0000-4000-8000-00000000000${i}`)

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const plain = (x) => JSON.parse(JSON.stringify(x))
const byId = (docs) => Object.fromEntries(plain(docs).map((d) => [d.id, d]))

/** A mirror of what a view shows, built only from its change events. */
function mirror(view, initial = []) {
  const shown = byId(initial)
  view.on('change', ({ added, changed, removed }) => {
    for (const d of added) {
      assert.ok(!(d.id in shown), `added ${d.id} twice`)
      shown[d.id] = plain(d)
    }
    for (const d of changed) {
      assert.ok(d.id in shown, `changed ${d.id}, never added`)
      assert.notDeepEqual(shown[d.id], plain(d), `a change event for ${d.id} that changes nothing`)
      shown[d.id] = plain(d)
    }
    for (const id of removed) {
      assert.ok(id in shown, `removed ${id}, never added`)
      delete shown[id]
    }
  })
  return shown
}

function run(seed, t) {
  const random = mulberry32(seed)
  const pick = (list) => list[Math.floor(random() * list.length)]
  const chance = (p) => random() < p
  const { FakeWebSocket, sockets } = fakeWebSocket()
  const client = connect('ws://test/live', { WebSocket: FakeWebSocket, backoff: () => 10, heartbeat: false, schemas: SCHEMAS })

  // ------------------------------------------------------------ the server
  const db = new Map() // id -> {v, d}
  const stored = new Map() // request id -> accepted ack
  let pos = 0
  let ws = null
  let read = 0 // messages of `ws` the server has read
  let outbox = [] // frames on their way to the client, in order
  let fences = [] // fences the server will send later
  const keyOf = { all: 'k1', done: 'k2' }
  const inDone = (e) => e?.d.done === true

  const connectNow = () => {
    t.mock.timers.tick(10)
    ws = sockets.at(-1)
    ws.open()
    ws.deliver({ ...WELCOME, limits: {} })
    read = 1 // hello
    outbox = []
    fences = []
  }
  const publish = (id, before, after) => {
    pos++
    const change = (member) => {
      if (!after) return { c: 'todos', id, op: 'del', v: before.v + 1 }
      if (!before || !member(before) || chance(0.3)) return { c: 'todos', id, op: 'put', v: after.v, d: after.d }
      const p = Object.keys(after.d).filter((k) => JSON.stringify(after.d[k]) !== JSON.stringify(before.d[k])).map((k) => ({ op: 'replace', path: `/${k}`, value: after.d[k] }))
      return { c: 'todos', id, op: 'patch', pv: before.v, v: after.v, p }
    }
    const parts = [{ key: 'k1', ch: [change(() => true)] }]
    if (inDone(before) || inDone(after)) parts.push({ key: 'k2', ch: [inDone(after) ? change(inDone) : { c: 'todos', id, op: 'del', v: after?.v ?? before.v + 1 }] })
    return { type: 'tx', pos, parts }
  }
  const commit = (id, after) => {
    const before = db.get(id)
    if (after) db.set(id, after)
    else db.delete(id)
    return publish(id, before, after)
  }
  const valid = (d) => validate(SCHEMAS.todos.schema, { ...d, created: undefined }).length === 0

  // Evaluate one write as the real server would: [ack fields, tx or null].
  function evaluate(m) {
    const held = db.get(m.doc ?? m.d?.id)
    if (m.type === 'call') return [{ ok: true, result: m.params }, null]
    if (m.type === 'insert') {
      if (held) return [{ ok: false, code: 'conflict', v: held.v }]
      if (!valid(m.d)) return [{ ok: false, code: 'invalid' }]
      return [{ ok: true, doc: m.d.id, v: 1 }, commit(m.d.id, { v: 1, d: { ...m.d, created: 'born' } })]
    }
    if (!held) return [{ ok: false, code: 'not-found' }]
    if (m.v !== held.v) return [{ ok: false, code: 'conflict', v: held.v }]
    if (m.type === 'remove') return [{ ok: true, doc: m.doc, v: held.v + 1 }, commit(m.doc, null)]
    let d
    try {
      d = m.patch ? applyPatch(held.d, m.patch) : { ...held.d, ...m.set }
    } catch {
      return [{ ok: false, code: 'invalid' }]
    }
    if (!valid(d)) return [{ ok: false, code: 'invalid' }]
    if (JSON.stringify(d) === JSON.stringify(held.d)) return [{ ok: true, doc: m.doc, v: held.v }, null] // changed nothing
    return [{ ok: true, doc: m.doc, v: held.v + 1 }, commit(m.doc, { v: held.v + 1, d })]
  }

  // The server reads the next message the client sent on the current connection.
  function serveOne() {
    if (!ws || read >= ws.sent.length) return false
    const m = ws.sent[read++]
    if (m.type === 'sub') {
      const rows = [...db].filter(([, e]) => m.pub === 'all' || inDone(e))
      outbox.push({ type: 'snap', sub: m.id, docs: rows.map(([id, e]) => ({ c: 'todos', id, v: e.v, d: e.d })), more: false })
      outbox.push({ type: 'ready', sub: m.id, key: keyOf[m.pub], epoch: 'e1', pos, resumed: false })
    } else if (m.type === 'unsub') {
      outbox.push({ type: 'unsubbed', sub: m.id })
    } else if (stored.has(m.id)) {
      outbox.push(stored.get(m.id), { type: 'fence', id: m.id }) // a resend: the stored answer
    } else if (chance(0.15)) {
      outbox.push({ type: 'ack', id: m.id, ok: false, code: pick(['forbidden', 'internal', 'rate-limited']), message: 'no' })
    } else {
      const [fields, frame] = evaluate(m)
      const ack = { type: 'ack', id: m.id, message: fields.ok ? undefined : 'no', ...fields }
      if (fields.ok) stored.set(m.id, ack)
      if (frame && chance(0.5)) outbox.push(frame, ack)
      else outbox.push(ack, ...(frame ? [frame] : []))
      if (fields.ok) fences.push({ type: 'fence', id: m.id })
    }
    return true
  }

  function otherClient() {
    const id = pick(POOL)
    const held = db.get(id)
    if (!held) return commit(id, { v: 1, d: { id, owner: 2, title: pick(['a', 'b', 'c']), done: chance(0.5), tags: [], created: 'born' } })
    if (chance(0.3)) return commit(id, null)
    return commit(id, { v: held.v + 1, d: { ...held.d, ...(chance(0.5) ? { title: pick(['x', 'y', 'z']) } : { done: !held.d.done }) } })
  }

  // ------------------------------------------------------------ the client
  const all = client.subscribe('all')
  const done = client.subscribe('done')
  const view = client.collection('todos')
  const shown = { all: mirror(all), done: mirror(done), view: mirror(view) }
  const outcomes = []
  const track = (promise) => {
    const o = { settled: false }
    outcomes.push(o)
    promise.then(() => (o.settled = true), (err) => ((o.settled = true), (o.error = err)))
  }
  function clientWrite() {
    const id = pick(POOL)
    const title = pick(['one', 'two', '', 'three'])
    const r = random()
    if (r < 0.3) track(client.insert('todos', { ...(chance(0.7) ? { id } : {}), owner: 1, title }))
    else if (r < 0.5) track(client.update('todos', id, chance(0.5) ? { title } : { done: chance(0.5) }))
    else if (r < 0.7) track(client.update('todos', id, pick([[{ op: 'add', path: '/tags/-', value: 't' }], [{ op: 'replace', path: '/title', value: title }], [{ op: 'test', path: '/done', value: true }, { op: 'replace', path: '/title', value: 'was done' }]])))
    else if (r < 0.85) track(client.remove('todos', id))
    else track(client.call('echo', { n: r }))
  }

  const check = (when) => {
    assert.deepEqual(shown.view, byId(view.docs), `seed ${seed}, ${when}: the collection's events`)
    assert.deepEqual(shown.all, byId(all.docs), `seed ${seed}, ${when}: the subscription's events`)
    assert.deepEqual(shown.done, byId(done.docs), `seed ${seed}, ${when}: the filtered subscription's events`)
  }

  // ------------------------------------------------------------ interleave
  for (let n = 0; n < 3; n++) otherClient() // the database before anyone looked
  connectNow()
  for (let step = 0; step < STEPS; step++) {
    const r = random()
    if (r < 0.3) clientWrite()
    else if (r < 0.5) serveOne()
    else if (r < 0.75 && outbox.length) ws.deliver(outbox.shift())
    else if (r < 0.82 && fences.length) outbox.push(fences.shift())
    else if (r < 0.95) {
      const frame = otherClient()
      if (ws) outbox.push(frame)
    } else if (ws && r < 0.98) {
      ws.drop(1006) // frames in flight both ways are lost
      ws = null
      outbox = []
      fences = []
    } else if (!ws) connectNow()
    if (ws === null && chance(0.3)) connectNow()
    check(`step ${step}`)
  }

  // ------------------------------------------------------------ settle
  if (!ws) connectNow()
  for (let rounds = 0; rounds < 1000 && (read < ws.sent.length || outbox.length || fences.length); rounds++) {
    while (serveOne());
    outbox.push(...fences.splice(0))
    while (outbox.length) ws.deliver(outbox.shift())
    t.mock.timers.tick(1000)
  }
  check('the end')
  const server = Object.fromEntries([...db].map(([id, e]) => [id, e.d]))
  assert.deepEqual(byId(view.docs), server, `seed ${seed}: the collection view is the server's state`)
  assert.deepEqual(byId(all.docs), server, `seed ${seed}: the subscription is the server's state`)
  assert.deepEqual(byId(done.docs), Object.fromEntries(Object.entries(server).filter(([, d]) => d.done)), `seed ${seed}: filtered`)
  client.close()
  return outcomes
}

test(`property: caches end equal to the server's state (${RUNS} seeded runs)`, async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 })
  const seeds = process.env.SEED ? [Number(process.env.SEED)] : Array.from({ length: RUNS }, (_, i) => i + 1)
  let writes = 0
  let rejected = 0
  for (const seed of seeds) {
    const outcomes = run(seed, t)
    await new Promise((resolve) => setImmediate(resolve))
    const open = outcomes.filter((o) => !o.settled || o.error?.code === 'closed')
    assert.deepEqual(open, [], `seed ${seed}: every write answered before close`)
    writes += outcomes.length
    rejected += outcomes.filter((o) => o.error).length
  }
  assert.ok(writes > RUNS * 10 && rejected > writes / 10, `a meaningful mix: ${writes} writes, ${rejected} rejected`)
})
