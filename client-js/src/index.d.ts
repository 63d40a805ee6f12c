// Types of livesync-client. The contracts are described in README.md and the modules' comments.

/** A document as the server sends it: a JSON object. Treat it as read-only (it is shared). */
export type Doc = Record<string, unknown>

/** `client.status`: see README "Status". */
export type Status = 'connecting' | 'online' | 'resyncing' | 'offline'

/** `subscription.state`. */
export type SubscriptionState = 'pending' | 'live' | 'resyncing' | 'stopped'

/** The minimal WebSocket this client needs: the browser's, Node 22's, or `ws`'s. */
export interface WebSocketLike {
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: ((event: any) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string }) => void) | null
  onerror: ((event: any) => void) | null
}

export interface ConnectOptions {
  /** A token for `hello`, or a function (sync or async) called for every connection attempt. */
  token?: string | null | (() => string | null | undefined | Promise<string | null | undefined>)
  /** The WebSocket class (instances must behave as `WebSocketLike`); default `globalThis.WebSocket`. In Node 20, pass `ws`'s. */
  WebSocket?: new (url: string) => unknown
  /** Delay in ms before reconnect attempt `attempt` (1, 2, ...). Default: `backoff()`. */
  backoff?: (attempt: number) => number
  /** Ms to wait for `welcome` before dropping the attempt. Default 10000. */
  timeout?: number
  /** Reconnect after `heartbeat * welcome.ping_ms` ms without any frame; `false`: never. Default 2. */
  heartbeat?: number | false
  /**
   * The writable collections, as `GET <path>/schemas` serves them, to check writes before
   * sending them. Default: fetched from the gateway when the client starts and on every
   * connection. `false`: never fetched, writes are not checked locally.
   */
  schemas?: Record<string, CollectionSchema> | false
  /** The `fetch` used for the schemas. Default `globalThis.fetch`. */
  fetch?: (url: string) => Promise<{ ok: boolean; json(): Promise<any> }>
}

/** One writable collection, as `GET <path>/schemas` describes it (docs/protocol.md §6.5). */
export interface CollectionSchema {
  /** JSON Schema of the whole document (the subset pydantic emits is checked; see README). */
  schema: Record<string, any>
  key: string[]
  immutable?: string[]
  ids?: 'uuid' | 'client' | 'server'
  conflicts?: 'reject' | 'last-writer-wins'
  ops?: Array<'insert' | 'update' | 'remove'>
}

export interface WriteOptions {
  /**
   * Resolve at the write's `fence` (every change it caused is in the cache, as the server's
   * copy) instead of at its `ack`. Default false.
   */
  fence?: boolean
}

/** What an accepted insert, update or remove resolves with. */
export interface WriteResult {
  /** The document's id (for server-assigned ids, the id the server chose). */
  id: string
  /** The document's version after the write (for a remove: the deletion's). */
  v: number
}

/** One RFC 6902 operation. */
export interface PatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test'
  path: string
  value?: unknown
  from?: string
}

/** A field a write got wrong: `path` is a JSON Pointer into the document (or a call's params). */
export interface FieldError {
  path: string
  message: string
}

/** A message the application pushed (`live.send`): to this connection, its user, or a joined channel. */
export interface Message {
  event: string
  data: unknown
  /** The channel it was sent to, if it was. */
  channel?: string
}

export interface Changes<D extends Doc = Doc> {
  added: D[]
  changed: D[]
  /** Ids of the documents removed. */
  removed: string[]
}

/** What `close` codes the server gave, and whether the client will reconnect. */
export interface Disconnect {
  code: number
  reason: string
  retry: boolean
}

export interface Welcome {
  type: 'welcome'
  v: number
  session: string
  epoch: string
  ping_ms: number
  limits?: {
    max_frame_bytes?: number
    max_subscriptions?: number
    max_queue_bytes?: number
    rate_per_second?: number
    rate_burst?: number
    write_rate_per_second?: number
    write_rate_burst?: number
    snapshot_chunk?: number
  }
}

/** Every error the client reports. `code` is a `ClientErrorCode` or a `ServerErrorCode`. */
export declare class LiveSyncError extends Error {
  name: 'LiveSyncError'
  code: ClientErrorCode | ServerErrorCode | (string & {})
  /** For `code: 'closed'`: the WebSocket close code (e.g. 4503, 4505). */
  closeCode?: number
  reason?: string
  /** The subscription concerned, if any. */
  subscription?: Subscription
  /** The offending change or message, for bad data. */
  detail?: unknown
  /** For server `error` messages: the `id` of the refused message. */
  ref?: string
  /** For a rejected write with code `invalid`: what is wrong, field by field. */
  fields?: FieldError[]
  /** For a write rejected as `conflict`: the document's current version. */
  v?: number
  cause?: unknown
}

type Unsubscribe = () => void

export declare class Subscription<D extends Doc = Doc> {
  /** The publication's name and parameters, as given to `subscribe`. */
  readonly name: string
  readonly params: Record<string, unknown>
  readonly state: SubscriptionState
  /** The server's data key (from `ready`), shared by subscriptions asking for the same data. */
  readonly key: string | null
  /** Resume point: epoch of the last `ready`, and the last position applied. */
  readonly epoch: string | null
  readonly pos: number | null
  /** Resolves at the first `ready`; rejects with a LiveSyncError if refused or ended first. */
  readonly ready: Promise<Subscription<D>>
  /** Documents in the subscription's order; the same frozen array until the next change. */
  readonly docs: readonly D[]
  /** The document with this id (pass `collection` only if the subscription spans several). */
  get(id: string, collection?: string): D | undefined
  /** One event per applied transaction (or snapshot replacement), after every cache is updated. */
  on(event: 'change', fn: (changes: Changes<D>) => void): Unsubscribe
  /** Each `ready`: the first one, and again after every resync. */
  on(event: 'ready', fn: (info: { resumed: boolean }) => void): Unsubscribe
  /** The server reset this subscription's data; a fresh snapshot will replace it. */
  on(event: 'reset', fn: (info: { reason?: string }) => void): Unsubscribe
  /** The server ended or refused the subscription (`nosub`); it is now `stopped`. */
  on(event: 'error', fn: (error: LiveSyncError) => void): Unsubscribe
  off(event: string, fn: (...args: any[]) => void): void
  /** Stop: sends `unsub`; the documents leave the collection views. No more events. */
  unsubscribe(): void
}

export declare class Collection<D extends Doc = Doc> {
  readonly name: string
  /**
   * One document per id over all subscriptions, with this client's pending writes applied
   * (its inserts included), in order of first appearance on the server; frozen.
   */
  readonly docs: readonly D[]
  readonly size: number
  get(id: string): D | undefined
  on(event: 'change', fn: (changes: Changes<D>) => void): Unsubscribe
  off(event: string, fn: (...args: any[]) => void): void
}

export declare class Client {
  constructor(url: string, options?: ConnectOptions)
  readonly status: Status
  /** The current connection's `welcome`, or null while not connected. */
  readonly session: Welcome | null
  /** This client's random id, sent as `hello.client`: the scope in which a write sent again is recognised. */
  readonly clientId: string
  subscribe<D extends Doc = Doc>(name: string, params?: Record<string, unknown>): Subscription<D>
  collection<D extends Doc = Doc>(name: string): Collection<D>
  /**
   * Insert `doc`, shown at once in `collection(name)`. Its key: a new UUID unless given
   * (`ids: "uuid"`), as given (`"client"`), or a temporary `tmp-…` id until the server
   * assigns one (`"server"`). Resolves at the ack (or fence); rejects with a LiveSyncError
   * (`invalid` with `fields`, `forbidden`, `conflict`, `not-found`, `rate-limited`,
   * `internal`, `closed`, …) once the write has been taken back.
   */
  insert(collection: string, doc: Doc, options?: WriteOptions): Promise<WriteResult>
  /** Change document `id`: an RFC 6902 patch (an array), or top-level fields to set (an object). */
  update(collection: string, id: string | number, change: ReadonlyArray<PatchOperation> | Doc, options?: WriteOptions): Promise<WriteResult>
  /** Delete document `id`; hidden at once. */
  remove(collection: string, id: string | number, options?: WriteOptions): Promise<WriteResult>
  /** Call a method registered with `@live.method`; resolves with its return value. */
  call<R = unknown>(method: string, params?: Record<string, unknown>, options?: WriteOptions): Promise<R>
  /** Join a channel (`message` events sent to it); joined again after every reconnect. */
  join(channel: string): Promise<void>
  /** Leave a channel. */
  leave(channel: string): Promise<void>
  /** Connect again now (after a terminal close, e.g. 4505 once a fresh token is at hand). */
  reconnect(): void
  /** Stop for good. Subscriptions stop; their last data stays readable. */
  close(): void
  on(event: 'status', fn: (status: Status) => void): Unsubscribe
  on(event: 'error', fn: (error: LiveSyncError) => void): Unsubscribe
  on(event: 'disconnect', fn: (info: Disconnect) => void): Unsubscribe
  /** A message the application pushed to this connection, its user, or a channel it joined. */
  on(event: 'message', fn: (message: Message) => void): Unsubscribe
  off(event: string, fn: (...args: any[]) => void): void
}

export declare function connect(url: string, options?: ConnectOptions): Client

/** Exponential backoff with jitter: attempt n waits uniformly in [d/2, d], d = min(max, base * 2^(n-1)). */
export declare function backoff(options?: { base?: number; max?: number; random?: () => number }): (attempt: number) => number

export declare class PatchError extends Error {
  name: 'PatchError'
  /** The index of the failing operation. */
  index?: number
}

/** RFC 6902: returns the patched value, or throws a PatchError; never mutates `doc` or `ops`. */
export declare function applyPatch<T = unknown>(doc: unknown, ops: ReadonlyArray<object>): T

export type ClientErrorCode =
  | 'closed'
  | 'handshake-timeout'
  | 'heartbeat-timeout'
  | 'token-failed'
  | 'bad-message'
  | 'gap'
  | 'patch-failed'
  | 'id-reused'
  | 'frame-too-big'
  | 'unsubscribed'

export type ServerErrorCode =
  | 'malformed'
  | 'unknown-type'
  | 'invalid-message'
  | 'unexpected-message'
  | 'unknown-publication'
  | 'bad-params'
  | 'forbidden'
  | 'duplicate-subscription'
  | 'too-many-subscriptions'
  | 'rate-limited'
  | 'internal'
  | 'invalid'
  | 'conflict'
  | 'not-found'

export declare const VERSION: number
export declare const STATUS: { CONNECTING: 'connecting'; ONLINE: 'online'; RESYNCING: 'resyncing'; OFFLINE: 'offline' }
export declare const CLOSE: {
  NORMAL: 1000
  GOING_AWAY: 1001
  MESSAGE_TOO_BIG: 1009
  SERVER_RESTART: 4000
  SLOW_CONSUMER: 4001
  PING_TIMEOUT: 4002
  BROKER_LOST: 4003
  PROTOCOL_VIOLATION: 4500
  UNSUPPORTED_VERSION: 4501
  UNAUTHORIZED: 4503
  FORBIDDEN_ORIGIN: 4504
  TOKEN_EXPIRED: 4505
}
export declare const ERRORS: {
  MALFORMED: 'malformed'
  UNKNOWN_TYPE: 'unknown-type'
  INVALID_MESSAGE: 'invalid-message'
  UNEXPECTED_MESSAGE: 'unexpected-message'
  UNKNOWN_PUBLICATION: 'unknown-publication'
  BAD_PARAMS: 'bad-params'
  FORBIDDEN: 'forbidden'
  DUPLICATE_SUBSCRIPTION: 'duplicate-subscription'
  TOO_MANY_SUBSCRIPTIONS: 'too-many-subscriptions'
  RATE_LIMITED: 'rate-limited'
  INTERNAL: 'internal'
}
export declare const CLIENT_ERRORS: {
  CLOSED: 'closed'
  HANDSHAKE_TIMEOUT: 'handshake-timeout'
  HEARTBEAT_TIMEOUT: 'heartbeat-timeout'
  TOKEN_FAILED: 'token-failed'
  BAD_MESSAGE: 'bad-message'
  GAP: 'gap'
  PATCH_FAILED: 'patch-failed'
  ID_REUSED: 'id-reused'
  FRAME_TOO_BIG: 'frame-too-big'
  UNSUBSCRIBED: 'unsubscribed'
}
/** Whether the client reconnects after a close with this code. */
export declare function reconnects(code: number): boolean
