/**
 * The client: subscriptions over a Socket, kept by the client rules of docs/protocol.md §4.
 *
 * Guarantees to the page:
 * - **Atomic transactions.** A `tx` is applied to every subscription it concerns, and to
 *   the collection views, before any listener runs; each listener then gets one `change`.
 *   A subscription whose part of a `tx` cannot be applied (a gap, a failing patch, a
 *   malformed change) keeps its previous data untouched and is resynced; the others apply
 *   theirs.
 * - **Repairs.** A resync sends `unsub`, then `sub` with `since` = the last position
 *   applied, so the server replays what was missed as whole documents. A second repair in
 *   a row, a reused id, or resumed data that cannot be trusted asks for a fresh snapshot.
 *   Every repair is reported as an `error` event.
 * - **Reconnect and resume.** Subscriptions made while offline are sent once the handshake
 *   completes; after a reconnect each one resumes from its position (if the epoch is
 *   unchanged) or gets a fresh snapshot, which replaces its data in one `change`.
 * - **Writes** (writes.js) are shown at once, on top of the server's copies (layer.js),
 *   in subscriptions that hold the document and in the collection views, which also show
 *   this client's inserts. Every change event reports what is shown: a write, its
 *   rejection, and the server's copy replacing it each make one event, and only if the
 *   shown content changes.
 *
 * Status: `connecting` while a connection is being opened; `online` when the handshake is
 * done and no subscription that had data is being fetched again; `resyncing` when it is
 * done but at least one is (after a reconnect, a `reset`, or a repair); `offline` while
 * waiting to retry, and after `close()` or a close code that must not be retried.
 */
import { CLIENT_ERRORS, ERRORS, STATUS } from './constants.js'
import { Emitter, LiveSyncError } from './emitter.js'
import { Socket, schemasUrl } from './socket.js'
import { Subscription } from './subscription.js'
import { Collection } from './collection.js'
import { commit, emptyDiff, entry, plan, ref, replace } from './cache.js'
import { overlay } from './layer.js'
import { Writes, uuid } from './writes.js'
import { isDoc, valid } from './messages.js'

const DATA_TYPES = ['snap', 'ready', 'nosub', 'tx', 'reset']

export class Client extends Emitter {
  #socket
  #writes
  #subs = new Set() // active subscriptions, in the order they were made
  #wire = new Map() // `sub` message id on this connection -> subscription
  #unsubbing = new Map() // id of an `unsub` sent, until `unsubbed` -> the repaired subscription, or null
  #collections = new Map()
  #next = 0
  #status = STATUS.CONNECTING
  #closed = false
  #queue = [] // events to deliver, see #notify
  #draining = false

  /** @param {string} url @param {object} [options] see index.d.ts */
  constructor(url, options) {
    super()
    const client = uuid()
    const socket = (this.#socket = new Socket(url, { ...options, client }))
    this.#writes = new Writes(
      {
        send: (message) => socket.send(message),
        server: (c, id) => this.#collections.get(c)?._entry(id),
        shown: (c, id) => this.#collections.get(c)?.get(id),
        changed: (docs) => this.#publish([], true, docs),
        emit: (event, value) => this.#notify([this, event, value]),
      },
      schemasUrl(url),
      client,
      options,
    )
    socket.on('state', () => this.#disconnected())
    socket.on('welcome', () => this.#welcome())
    socket.on('frame', (message) => this.#frame(message))
    socket.on('close', (info) => this.#notify([this, 'disconnect', info]))
    socket.on('error', (err) => this.#notify([this, 'error', err]))
    socket.connect()
  }

  /** `connecting`, `online`, `resyncing` or `offline` (see the module comment). */
  get status() {
    return this.#status
  }

  /** The server's `welcome` of the current connection (`session`, `epoch`, `limits`), or null. */
  get session() {
    return this.#socket.welcome
  }

  /** Subscribe to publication `name`; sent now, or as soon as the connection is open. */
  subscribe(name, params = {}) {
    if (this.#closed) throw new Error('livesync client is closed')
    const sub = new Subscription(name, params, (s) => this.#unsubscribe(s))
    this.#subs.add(sub)
    this.#send(sub, false)
    return sub
  }

  /** The merged view of collection `name` over all subscriptions (created on first use). */
  collection(name) {
    let view = this.#collections.get(name)
    if (!view) this.#collections.set(name, (view = new Collection(name)))
    return view
  }

  /** This client's random id (sent as `hello.client`): the scope in which the server recognises a write sent again. */
  get clientId() {
    return this.#writes.client
  }

  /**
   * Insert `doc` into `collection`: shown at once, sent in order. Resolves with `{id, v}`
   * at the `ack` (with `{fence: true}`: at the fence, once the server's copy is in the
   * cache); rejects with a LiveSyncError (`invalid` with `fields`, `forbidden`, `conflict`,
   * ...) after the write was taken back. See writes.js.
   */
  insert(collection, doc, options) {
    return this.#writes.insert(collection, doc, options)
  }

  /** Change document `id`: `change` is an RFC 6902 patch (an array) or top-level fields to set. */
  update(collection, id, change, options) {
    return this.#writes.update(collection, id, change, options)
  }

  /** Delete document `id`. */
  remove(collection, id, options) {
    return this.#writes.remove(collection, id, options)
  }

  /** Call method `method`; resolves with its return value. */
  call(method, params, options) {
    return this.#writes.call(method, params, options)
  }

  /** Join channel `channel` (for `message` events); joined again after every reconnect. */
  join(channel) {
    return this.#writes.join(channel)
  }

  /** Leave channel `channel`. */
  leave(channel) {
    return this.#writes.leave(channel)
  }

  /** Connect again now: after a terminal close code (e.g. 4505 with a fresh token), or to skip a backoff wait. */
  reconnect() {
    if (!this.#closed) this.#socket.connect()
  }

  /** Stop for good: close the socket; subscriptions stop, their last data stays readable. */
  close() {
    this.#closed = true
    this.#socket.close()
    this.#writes.close() // taken back from the subscriptions' data too
    for (const sub of this.#subs) {
      sub.state = 'stopped'
      sub._settle(new LiveSyncError(CLIENT_ERRORS.UNSUBSCRIBED, 'the client was closed'))
    }
    this.#subs.clear()
  }

  // ---------------------------------------------------------------- connection

  #disconnected() {
    this.#wire.clear()
    this.#unsubbing.clear()
    for (const sub of this.#subs) {
      sub._wire = sub._retiring = sub._snapshot = null
      if (sub.state === 'live') sub.state = 'resyncing'
    }
    this.#writes.offline()
    this.#updateStatus()
  }

  // Subscriptions first: the fence of a write sent again waits for them (protocol §6.4).
  #welcome() {
    for (const sub of this.#subs) this.#send(sub, false)
    this.#writes.welcome(this.#socket.welcome.limits)
    this.#updateStatus()
  }

  #updateStatus() {
    const state = this.#socket.state
    let status = state === 'connecting' ? STATUS.CONNECTING : STATUS.OFFLINE
    if (state === 'open') {
      status = [...this.#subs].some((s) => s.state === 'resyncing') ? STATUS.RESYNCING : STATUS.ONLINE
    }
    if (status === this.#status) return
    this.#status = status
    this.#notify([this, 'status', status])
  }

  // Send `sub` for this subscription on the open connection (if any) under a new id.
  // `fresh`: ask for a snapshot; otherwise resume from its position when the epoch allows.
  #send(sub, fresh) {
    const welcome = this.#socket.welcome
    if (!welcome) return
    if (fresh || sub.epoch !== welcome.epoch) sub.key = sub.epoch = sub.pos = null
    const id = String(++this.#next)
    const message = { type: 'sub', id, pub: sub.name, params: sub.params }
    if (sub.pos !== null) message.since = { epoch: sub.epoch, pos: sub.pos }
    try {
      this.#socket.send(message)
    } catch (err) {
      err.subscription = sub
      this.#notify([this, 'error', err])
      return this.#drop(sub, err, true)
    }
    sub._wire = id
    sub._snapshot = new Map()
    sub._taint = sub._resets = null
    this.#wire.set(id, sub)
  }

  // Fetch this subscription again under a new id. `unsub`: end the old one first (not
  // needed after `reset`, where the server ended it). Unless `fresh`, frames for the key
  // still arriving for the old id are ignored until `unsubbed`: the resume replays them.
  #resync(sub, fresh, unsub) {
    if (sub.state === 'live') sub.state = 'resyncing'
    const old = sub._wire
    if (old) {
      this.#wire.delete(old)
      sub._wire = null
      if (unsub && this.#unsub(old, fresh ? null : sub) && !fresh) sub._retiring = old
    }
    this.#send(sub, fresh)
    this.#updateStatus()
  }

  // A subscription's data broke a rule: report, then resync it (escalating to a snapshot).
  #repair(sub, { code, message, change }, fresh = false) {
    this.#notify([this, 'error', new LiveSyncError(code, message, { subscription: sub, detail: change })])
    sub._repairs++
    this.#resync(sub, fresh || code === CLIENT_ERRORS.ID_REUSED || sub._repairs > 1 || sub.pos === null, true)
  }

  // End a subscription for good; `notify`: it emits a last `change` and `error` itself.
  #drop(sub, err, notify) {
    if (sub.state === 'stopped') return
    if (sub._wire) this.#wire.delete(sub._wire)
    this.#subs.delete(sub)
    sub.state = 'stopped'
    sub._wire = null
    const diff = emptyDiff()
    diff.removed = [...sub._store.values()]
    sub._store = new Map()
    this.#publish([[sub, diff]], notify)
    sub._settle(err)
    if (notify) this.#notify([sub, 'error', err])
    this.#updateStatus()
  }

  // Send `unsub`, and remember it until `unsubbed` (it is sent again if rate-limited).
  #unsub(id, sub) {
    const sent = this.#socket.send({ type: 'unsub', id })
    if (sent) this.#unsubbing.set(id, sub)
    return sent
  }

  #unsubscribe(sub) {
    if (sub.state === 'stopped') return
    if (sub._wire) this.#unsub(sub._wire, null)
    this.#drop(sub, new LiveSyncError(CLIENT_ERRORS.UNSUBSCRIBED, 'unsubscribed before ready'), false)
  }

  // ---------------------------------------------------------------- messages

  #frame(m) {
    if (!m || !valid(m)) return this.#malformed(m)
    const sub = this.#wire.get(m.sub)
    switch (m.type) {
      case 'snap':
        if (!sub) return
        if (!m.docs.every(isDoc)) return this.#repair(sub, { code: CLIENT_ERRORS.BAD_MESSAGE, message: 'malformed snapshot document', change: m })
        for (const d of m.docs) sub._snapshot.set(ref(d.c, d.id), entry(d, d.d))
        return
      case 'ready':
        return sub && this.#ready(sub, m)
      case 'nosub': {
        if (!sub) return
        const err = new LiveSyncError(m.code, m.message || m.code, { subscription: sub })
        this.#notify([this, 'error', err])
        return this.#drop(sub, err, true)
      }
      case 'unsubbed': {
        const retired = this.#unsubbing.get(m.sub)
        this.#unsubbing.delete(m.sub)
        if (retired?._retiring === m.sub) retired._retiring = null
        return
      }
      case 'tx':
        return this.#tx(m)
      case 'reset':
        return this.#reset(m)
      case 'error':
        return this.#serverError(m)
      case 'ack':
        return this.#writes.ack(m)
      case 'fence':
        return this.#writes.fence(m)
      case 'msg':
        return this.#notify([this, 'message', { event: m.ev, data: m.data, channel: m.ch }])
    }
  }

  // Report a malformed frame, and resync whatever it may have been meant to change: the
  // subscription it names, the keys of a tx, or (unreadable frame) every subscription.
  #malformed(m) {
    this.#notify([this, 'error', new LiveSyncError(CLIENT_ERRORS.BAD_MESSAGE, `malformed ${m ? `'${m.type}' message` : 'frame'} from the server`, { detail: m })])
    if (m && !DATA_TYPES.includes(m.type)) return
    let subs = [...this.#subs]
    if (typeof m?.sub === 'string') subs = subs.filter((s) => s._wire === m.sub)
    else if (m?.type === 'tx' && Array.isArray(m.parts)) {
      const keys = m.parts.map((p) => p?.key).filter((k) => typeof k === 'string')
      if (keys.length) subs = subs.filter((s) => keys.includes(s.key))
    }
    for (const sub of subs) {
      sub._repairs++
      this.#resync(sub, sub._repairs > 1 || sub.pos === null, true)
    }
  }

  #ready(sub, m) {
    if (sub._resets?.has(m.key)) return this.#resync(sub, true, true) // reset while starting: ended
    const { _snapshot: snapshot, _taint: taint } = sub
    // Frames after this `ready` were sent after the old id's `unsub` was handled (or
    // dropped): they are current, whether or not `unsubbed` has come.
    sub._snapshot = sub._taint = sub._resets = sub._retiring = null
    sub.key = m.key
    sub.epoch = m.epoch
    sub.pos = m.pos
    sub._setOrder(m.order)
    if (m.resumed && taint) return this.#repair(sub, taint, true)
    const first = sub.state === 'pending'
    sub.state = 'live'
    let diff = emptyDiff()
    if (!m.resumed) ({ store: sub._store, diff } = replace(sub._store, snapshot))
    this.#publish([[sub, diff]], true)
    if (first) sub._settle()
    this.#notify([sub, 'ready', { resumed: m.resumed }])
    this.#updateStatus()
  }

  #tx(m) {
    const byKey = new Map()
    for (const part of m.parts) byKey.set(part.key, (byKey.get(part.key) ?? []).concat(part.ch))
    const applied = []
    const problems = []
    for (const sub of this.#subs) {
      const changes = sub.key !== null && !sub._retiring && byKey.get(sub.key)
      if (!changes) continue
      const result = plan(sub._store, changes)
      if (result.problem) {
        // While resyncing, the resume will tell whether this mattered (see #ready).
        if (sub.state === 'live') problems.push([sub, result.problem])
        else sub._taint ??= result.problem
        continue
      }
      applied.push([sub, commit(sub._store, result.updates)])
      if (sub.state === 'live') {
        sub.pos = Math.max(sub.pos, m.pos)
        sub._repairs = 0
      }
    }
    this.#publish(applied, true)
    for (const [sub, problem] of problems) this.#repair(sub, problem)
  }

  #reset(m) {
    for (const sub of this.#subs) {
      if (sub.key === m.key) {
        this.#notify([sub, 'reset', { reason: m.reason }])
        this.#resync(sub, true, false)
      } else if (sub._wire && sub.key === null) {
        // Still starting: if its key turns out to be this one, the server dropped it.
        ;(sub._resets ??= new Set()).add(m.key)
      }
    }
  }

  #serverError(m) {
    const sub = typeof m.ref === 'string' ? this.#wire.get(m.ref) : undefined
    const err = new LiveSyncError(m.code, m.message || m.code, { ref: m.ref, subscription: sub })
    this.#notify([this, 'error', err])
    this.#writes.error(m)
    // An error naming an id refused our `sub` or `unsub` with it: retry if only rate-limited.
    if (m.code === ERRORS.RATE_LIMITED && this.#unsubbing.has(m.ref)) this.#unsub(m.ref, this.#unsubbing.get(m.ref))
    else if (!sub) return
    else if (m.code === ERRORS.RATE_LIMITED) this.#resync(sub, false, false)
    else this.#drop(sub, err, true)
  }

  // Emit in order of occurrence: events caused by a listener (it unsubscribed, say) wait
  // until the events already due have been delivered, so every listener sees diffs in the
  // order they happened. Each call queues all its events before any is delivered.
  #notify(...events) {
    this.#queue.push(...events)
    if (this.#draining) return
    this.#draining = true
    for (let next; (next = this.#queue.shift()); ) next[0].emit(next[1], next[2])
    this.#draining = false
  }

  // Show what changed, then notify: `diffs` are committed changes of subscriptions' server
  // copies, `docs` the [collection, id]s whose pending writes changed. Subscriptions and
  // collection views show each document again (the server's copy under this client's
  // writes); then each emits one `change`, subscriptions first. Every store and view is up
  // to date before any listener runs.
  #publish(diffs, notify, docs = []) {
    const layer = this.#writes.layer
    const show = (c, id, e) => overlay(e, layer.get(ref(c, id)))
    const views = new Set()
    const refs = docs.map(([c, id]) => {
      const v = this.collection(c)
      views.add(v)
      v.touch(id)
      return ref(c, id)
    })
    const events = []
    const work = new Map(diffs)
    if (refs.length) for (const sub of this.#subs) if (!work.has(sub)) work.set(sub, emptyDiff())
    for (const [sub, diff] of work) {
      const hold = (e, held) => {
        const v = this.collection(e.c)
        views.add(v)
        v.hold(sub, e.id, held)
        return ref(e.c, e.id)
      }
      const keys = [...diff.added.map((e) => hold(e, e)), ...diff.changed.map((e) => hold(e, e)), ...diff.removed.map((e) => hold(e, null)), ...refs]
      const shown = sub._refresh(keys, show)
      if (notify && shown) events.push([sub, 'change', shown])
    }
    for (const v of views) {
      const diff = v.flush(show)
      if (diff) events.push([v, 'change', diff])
    }
    this.#notify(...events)
  }
}
