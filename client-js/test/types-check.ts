// Compiled by `tsc` (npm test), never run: the declarations must accept real usage and
// reject misuse. It imports the package by name, so `exports` and `types` are checked too.
import { connect, backoff, applyPatch, CLOSE, ERRORS, STATUS, LiveSyncError } from 'livesync-client'
import type { Client, Subscription, Collection, Changes, Status, Doc, WriteResult, Message, FieldError } from 'livesync-client'

interface Order extends Doc {
  id: number
  status: string
  total: string
}

declare const WebSocketFromWs: new (address: string, protocols?: string[]) => { send(d: string): void }

const client: Client = connect('ws://localhost:8000/live', {
  WebSocket: WebSocketFromWs,
  token: async () => 'jwt',
  backoff: backoff({ base: 500, max: 10_000 }),
  heartbeat: false,
})
connect('/live', { token: 'static', backoff: (attempt) => attempt * 1000, timeout: 5000 })
connect('/live', { token: () => null })

const status: Status = client.status
client.on('status', (s: Status) => s === 'resyncing')
client.on('error', (err) => {
  if (err.code === 'closed' && err.closeCode === CLOSE.TOKEN_EXPIRED) client.reconnect()
  if (err.code === ERRORS.FORBIDDEN) err.subscription?.name.toUpperCase()
  const e: LiveSyncError = err
})
client.on('disconnect', ({ code, retry }) => code > 0 && retry)

const orders: Subscription<Order> = client.subscribe<Order>('orders_by_status', { status: 'new' })
orders.ready.then((sub) => sub.docs.map((o) => o.total.toUpperCase()))
orders.on('change', ({ added, changed, removed }: Changes<Order>) => {
  added.forEach((o) => o.id.toFixed())
  changed.length
  removed.forEach((id) => id.toUpperCase())
})
orders.on('reset', ({ reason }) => reason)
orders.on('ready', ({ resumed }) => resumed)
const one: Order | undefined = orders.get('7')
const state: 'pending' | 'live' | 'resyncing' | 'stopped' = orders.state
orders.unsubscribe()

const view: Collection<Order> = client.collection<Order>('orders')
const n: number = view.size + view.docs.length
const off = view.on('change', (c) => c.removed)
off()

// Writes
interface Todo extends Doc {
  id: string
  title: string
  done: boolean
}
connect('/live', { schemas: false })
connect('/live', { schemas: { todos: { schema: { type: 'object' }, key: ['id'], ids: 'uuid', ops: ['insert'] } }, fetch: async (url) => ({ ok: url.length > 0, json: async () => ({}) }) })
const inserted: Promise<WriteResult> = client.insert('todos', { title: 'milk' })
inserted.then(({ id, v }) => id.toUpperCase() + v.toFixed())
client.update('todos', 'some-id', { done: true }, { fence: true })
client.update('todos', 7, [{ op: 'replace', path: '/title', value: 'x' }])
client.remove('todos', 'some-id').catch((err: LiveSyncError) => err.fields?.map((f: FieldError) => f.path) ?? err.v)
client.call<{ archived: number }>('archive', { before: '2026-11-01' }).then((r) => r.archived.toFixed())
client.join('room:1').then(() => client.leave('room:1'))
client.on('message', ({ event, data, channel }: Message) => [event.toUpperCase(), data, channel?.length])
const me: string = client.clientId
const todoView: Collection<Todo> = client.collection<Todo>('todos')
todoView.docs.map((t) => t.done)

const patched = applyPatch<{ a: number }>({ a: 1 }, [{ op: 'replace', path: '/a', value: 2 }])
patched.a.toFixed()
const s: string = STATUS.RESYNCING
client.close()

// Misuse that must not compile:
// @ts-expect-error unknown option value type
connect('/live', { token: 42 })
// @ts-expect-error docs are read-only
orders.docs.push({ id: 1, status: '', total: '' })
// @ts-expect-error status is read-only
client.status = 'online'
// @ts-expect-error no such event
client.on('launch', () => {})
// @ts-expect-error a patch is a list of operations with an op
client.update('todos', '1', [{ path: '/x' }])
// @ts-expect-error the id is read-only
client.clientId = 'mine'
// @ts-expect-error a subscription's change carries ids in `removed`
orders.on('change', (c) => c.removed.map((d) => d.total))

export { status, one, state, n, s, me }
