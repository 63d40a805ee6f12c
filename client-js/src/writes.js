/**
 * Client writes (docs/protocol.md §6): `insert`, `update`, `remove` and `call`, plus the
 * channel requests `join` and `leave`, each a request with an id answered by one `ack`.
 *
 * - **Checks first.** A write is checked against the collection's entry of
 *   `GET <path>/schemas` (fetched when the client starts and again on every connection):
 *   the collection must accept the operation (else `forbidden`), and the document the write
 *   would produce must pass the schema, keep its immutable fields and change only schema
 *   fields (else `invalid`, with `fields`). A write refused here is never sent and changes
 *   nothing. Writes made while the schemas are loaded for the first time wait for them.
 * - **Optimistic.** An accepted-looking write joins the layer at once (`layer`: document
 *   ref -> writes on it not yet fenced, see layer.js), and the client shows its effect. It
 *   leaves the layer at its `fence` (the server's copy is in the cache) or its rejection.
 * - **In order, once.** Requests are sent in the order made, paced below the server's write
 *   rate (80% of `write_rate_per_second`, at most half of `write_rate_burst` unanswered). An
 *   `update` or `remove` carries the version it was made from: the held one, or, when it
 *   follows an earlier unacknowledged write of this client to the same document, the version
 *   that write's `ack` reports (it waits for that ack). A request without its fence is sent
 *   again, with the same id, after every reconnect: the server answers an applied one from
 *   its stored ack, so it is applied once, and sends its fence once the resubscriptions
 *   carry its changes.
 * - **Ids.** Inserts into `ids: "uuid"` collections get `crypto.randomUUID()` unless the
 *   document has one; `"client"` keeps the document's key; `"server"` shows the document
 *   under a temporary id (`tmp-<uuid>`, also in its single key field) until the `ack`
 *   names the real one, then under that. Writes to the temporary id wait for that ack.
 */
import { CLIENT_ERRORS, ERRORS } from './constants.js'
import { LiveSyncError } from './emitter.js'
import { ref } from './cache.js'
import { applyPatch, equal } from './patch.js'
import { validate } from './schema.js'
import { bucket, unlimited } from './bucket.js'

/** A random (version 4) UUID; `crypto.randomUUID` where there is one (secure contexts). */
export const uuid = () =>
  crypto.randomUUID?.() ?? '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) => (+c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (+c / 4)))).toString(16))

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

// A field's JSON Pointer; the document id of key values (docs/protocol.md §3).
const pointer = (k) => `/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`
const docId = (values) =>
  values[1] === undefined ? String(values[0]) : values.map((v) => encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)).join('/')
const pick = (doc, props) => Object.fromEntries(Object.entries(doc).filter(([k]) => Object.hasOwn(props, k)))
const refuse = (code, message, extra) => new LiveSyncError(code, message, extra)

/**
 * @typedef {object} Host what the client lends the writes
 * @property {(message: object) => boolean} send sends on the open connection (false: none); may throw
 * @property {(c: string, id: string) => {v: number | null, d: object} | undefined} server the server's copy
 * @property {(c: string, id: string) => object | undefined} shown the document shown (layer included)
 * @property {(docs: [string, string][]) => void} changed the layer changed for these documents
 * @property {(event: string, value: any) => void} emit a client event (`error`)
 */

export class Writes {
  /** @type {Map<string, any[]>} ref(c, id) -> this client's writes on it, not yet fenced, in order */
  layer = new Map()
  /** @type {any[]} requests without their last answer (fence, or ack for join/leave), in order */
  #queue = []
  #channels = new Set()
  #renamed = new Map() // ref(c, temporary id) -> the id the server assigned
  /** @type {Record<string, any> | undefined} */
  #schemas
  /** @type {Promise<void> | null} */
  #loading = null
  #host
  #url
  #fetch
  #given
  #take = unlimited
  /** @type {LiveSyncError | undefined} */
  #closed
  #cap = Infinity
  #timer
  #n = 0

  /**
   * @param {Host} host
   * @param {string} url the http(s) URL of `<path>/schemas`
   * @param {string} client the client's id (`hello.client`): the scope of idempotency
   * @param {{fetch?: (url: string) => Promise<any>, schemas?: Record<string, any> | false}} [options]
   */
  constructor(host, url, client, { fetch = globalThis.fetch, schemas } = {}) {
    this.client = client
    this.#host = host
    this.#url = url
    this.#fetch = fetch
    this.#given = schemas
    if (schemas) this.#schemas = schemas
    this.#load()
  }

  insert(c, doc, options) {
    return this.#when(() => {
      const info = this.#allowed(c, 'insert')
      const key = info?.key ?? ['id']
      const props = info?.schema?.properties
      const ids = info?.ids ?? 'uuid'
      const d = { ...doc }
      const problems = []
      for (const [k, p] of Object.entries(props ?? {})) if (!(k in d || key.includes(k)) && Object.hasOwn(Object(p), 'default')) d[k] = structuredClone(p.default)
      if (ids === 'uuid' && !(d[key[0]] ??= uuid()).match?.(UUID) && info) problems.push([key[0], 'must be a canonical UUID'])
      if (ids !== 'uuid') for (const k of key) if ((d[k] == null) === (ids === 'client')) problems.push([k, ids === 'client' ? 'required' : 'set by the server'])
      if (props) for (const k in d) if (!Object.hasOwn(props, k)) problems.push([k, 'not writable'])
      this.#check(c, info, d, problems)
      const w = { type: 'insert', c, d, local: d, doc: docId(key.map((k) => d[k])) }
      if (ids === 'server') {
        w.doc = w.temp = `tmp-${uuid()}`
        if (!key[1]) w.local = { ...d, [(w.key = key[0])]: w.temp }
      }
      return this.#write(w, options)
    })
  }

  update(c, id, change, options) {
    return this.#when(() => {
      const info = this.#allowed(c, 'update')
      const w = { type: 'update', c, doc: this.#real(c, id), [Array.isArray(change) ? 'patch' : 'set']: change }
      const now = this.#host.shown(c, w.doc)
      if (now) {
        let next
        try {
          next = w.patch ? applyPatch(now, w.patch) : { ...now, ...w.set }
        } catch (err) {
          throw this.#invalid(c, [], [{ path: w.patch[err.index]?.path ?? '', message: err.message }])
        }
        const props = info?.schema?.properties
        if (props) {
          const problems = []
          for (const k of new Set([...Object.keys(now), ...Object.keys(next)])) {
            if (!(k in now && k in next && equal(now[k], next[k]))) {
              const why = !(k in next) ? 'cannot be removed' : info.immutable?.includes(k) ? 'immutable' : !Object.hasOwn(props, k) && 'not writable'
              if (why) problems.push([k, why])
            }
          }
          // A temporary id is no key of the schema's: the server assigns it.
          if (this.layer.get(ref(c, w.doc))?.some((x) => x.temp === w.doc)) for (const k of info.key) delete next[k]
          this.#check(c, info, next, problems)
        }
      }
      return this.#write(w, options)
    })
  }

  remove(c, id, options) {
    return this.#when(() => {
      this.#allowed(c, 'remove')
      return this.#write({ type: 'remove', c, doc: this.#real(c, id) }, options)
    })
  }

  call(m, params = {}, options) {
    return this.#when(() => this.#request({ type: 'call', m, params }, options))
  }

  join(ch) {
    return this.#when(() => this.#request({ type: 'join', ch }))
  }

  leave(ch) {
    this.#channels.delete(ch)
    return this.#when(() => this.#request({ type: 'leave', ch }))
  }

  // ---------------------------------------------------------------- the connection

  /** A connection is open: pace by its limits, refresh the schemas, re-join, (re)send. */
  welcome(limits) {
    const { write_rate_per_second: rate, write_rate_burst: burst } = limits ?? {}
    const half = Math.max(1, Math.floor(burst / 2))
    this.#take = rate > 0 && burst > 0 ? bucket(rate * 0.8, half) : unlimited
    this.#cap = burst > 0 ? half : Infinity
    this.#load()
    for (const ch of this.#channels) {
      if (!this.#queue.some((w) => w.type === 'join' && w.ch === ch)) this.#request({ type: 'join', ch }).catch((err) => this.#host.emit('error', err))
    }
    this.#pump()
  }

  /** The connection is gone: every request without its answer goes again on the next one. */
  offline() {
    clearTimeout(this.#timer)
    for (const w of this.#queue) w.sent = false
  }

  /** The client was closed: what has no answer is rejected (`closed`), the layer dropped. */
  close() {
    this.#closed = refuse(CLIENT_ERRORS.CLOSED, 'the client was closed')
    for (const w of this.#queue) this.#fail(w, this.#closed)
    clearTimeout(this.#timer)
  }

  ack(m) {
    const w = this.#queue.find((x) => x.id === m.id)
    if (!w || w.acked) return // unknown, or the stored ack of a resent write: already known
    if (!m.ok) return this.#fail(w, refuse(m.code, m.message || m.code, { fields: m.fields, v: m.v }))
    w.acked = true
    w.ackV = m.v
    w.value = w.m ? m.result : w.c && { id: m.doc ?? w.doc, v: m.v }
    if (w.temp && m.doc != null) this.#rename(w, String(m.doc))
    else if (w.c) this.#host.changed([[w.c, w.doc]]) // its ackV may hide it on a newer server copy
    if (w.ch !== undefined) {
      if (w.type === 'join') this.#channels.add(w.ch)
      this.#done(w)
    }
    if (!w.fence || w.ch !== undefined) w.resolve(w.value)
    this.#pump()
  }

  fence(m) {
    const w = this.#queue.find((x) => x.id === m.id)
    if (!w?.acked) return
    this.#done(w)
    w.resolve(w.value)
  }

  /** A server `error` naming a request: it was refused as a message (nothing ran). */
  error(m) {
    const w = this.#queue.find((x) => x.id === m.ref)
    if (w && !w.acked) this.#fail(w, refuse(m.code, m.message || m.code, { ref: m.ref }))
  }

  // ---------------------------------------------------------------- internals

  #load() {
    const fetch = this.#fetch
    if (this.#given !== undefined || !fetch || this.#loading) return
    const loading = (this.#loading = new Promise((resolve) => resolve(fetch(this.#url)))
      .then((r) => (r.ok ? r.json() : undefined))
      .then(
        (schemas) => {
          if (schemas) this.#schemas = schemas
        },
        () => {}, // unreachable (say, offline): unchecked until the next connection
      )
      .finally(() => {
        if (this.#loading === loading) this.#loading = null
      }))
  }

  // Run `make` (which returns the request's promise) now, or after the first schemas.
  #when(make) {
    const run = () => {
      if (this.#closed) throw this.#closed
      return make()
    }
    if (this.#schemas === undefined && this.#loading) return this.#loading.then(run)
    try {
      return run()
    } catch (err) {
      return Promise.reject(err)
    }
  }

  #allowed(c, op) {
    const info = this.#schemas?.[c]
    if (this.#schemas && !(info && (info.ops ?? [op]).includes(op))) throw refuse(ERRORS.FORBIDDEN, `${c} accepts no client ${op}`)
    return info
  }

  // Refuse as `invalid` if there are problems ([field, message]) or the schema finds some.
  #check(c, info, doc, problems) {
    const found = info?.schema ? validate(info.schema, pick(doc, info.schema.properties ?? doc)) : []
    if (problems.length || found.length) throw this.#invalid(c, problems, found)
  }

  #invalid(c, problems, found = []) {
    const fields = [...problems.map(([k, message]) => ({ path: pointer(k), message })), ...found]
    return refuse(ERRORS.INVALID, `invalid ${c} document: ${fields.map((f) => `${f.path}: ${f.message}`).join('; ')}`, { fields })
  }

  #real(c, id) {
    return this.#renamed.get(ref(c, String(id))) ?? String(id)
  }

  // An insert, update or remove: base version, into the layer, shown, queued.
  #write(w, options) {
    const key = ref(w.c, w.doc)
    const layered = this.layer.get(key) ?? []
    if (w.type !== 'insert') {
      const prev = layered.at(-1)
      if (prev && !prev.acked) w.after = prev
      else w.v = [prev?.ackV, this.#host.server(w.c, w.doc)?.v].reduce((a, b) => (b > a || a == null ? b : a))
    }
    this.layer.set(key, [...layered, w])
    this.#host.changed([[w.c, w.doc]])
    return this.#request(w, options)
  }

  #request(w, options) {
    w.id = `w${++this.#n}`
    w.fence = options?.fence
    const promise = new Promise((resolve, reject) => Object.assign(w, { resolve, reject }))
    this.#queue.push(w)
    this.#pump()
    return promise
  }

  // Send what may go, in order: a request waiting for an earlier ack holds up the later ones.
  #pump() {
    clearTimeout(this.#timer)
    let flying = 0
    for (const w of [...this.#queue]) {
      if (w.sent) {
        flying += w.acked ? 0 : 1
        continue
      }
      if ((w.after && !w.after.acked) || flying >= this.#cap) return
      const wait = this.#take()
      if (wait) return void (this.#timer = setTimeout(() => this.#pump(), wait))
      const v = (w.after ? w.after.ackV : w.v) ?? undefined
      const { type, id, c, d, patch, set, m, params, ch } = w
      try {
        if (!this.#host.send({ type, id, c, d, doc: type === 'insert' ? undefined : w.doc, v, patch, set, m, params, ch })) return
        w.sent = true
        flying++
      } catch (err) {
        this.#fail(w, err) // above max_frame_bytes: it can never be sent
      }
    }
  }

  // The server named the id of a server-id insert: move its writes there.
  #rename(w, id) {
    const from = ref(w.c, w.temp)
    const moved = this.layer.get(from) ?? []
    this.layer.delete(from)
    const to = ref(w.c, id)
    this.layer.set(to, [...(this.layer.get(to) ?? []), ...moved])
    for (const x of moved) x.doc = id
    this.#renamed.set(from, id)
    if (w.key) w.local = { ...w.local, [w.key]: /^\d+$/.test(id) ? +id : id }
    this.#host.changed([[w.c, w.temp], [w.c, id]])
  }

  #fail(w, err) {
    for (const x of this.#queue) {
      if (x.after === w) {
        x.after = w.after
        x.v = w.v
      }
    }
    if (w.type === 'join') this.#channels.delete(w.ch)
    this.#done(w)
    w.reject(err)
    this.#pump()
  }

  // The request has its last answer: out of the queue and out of the layer.
  #done(w) {
    this.#queue = this.#queue.filter((x) => x !== w)
    if (!w.c) return
    const key = ref(w.c, w.doc)
    const left = (this.layer.get(key) ?? []).filter((x) => x !== w)
    if (left.length) this.layer.set(key, left)
    else this.layer.delete(key)
    this.#host.changed([[w.c, w.doc]])
  }
}
