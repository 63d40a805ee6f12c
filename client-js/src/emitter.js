/**
 * A minimal synchronous event emitter.
 *
 * Listeners run in the order they were added, synchronously, inside `emit`. A listener that
 * throws neither stops the others nor the client: its error goes to `reportError` where
 * there is one (browsers: the console and `window.onerror`, as for DOM event listeners),
 * else it is rethrown in a microtask (Node: an uncaught exception). It never disappears.
 */
const report = (err) =>
  globalThis.reportError
    ? globalThis.reportError(err)
    : queueMicrotask(() => {
        throw err
      })

export class Emitter {
  /** @type {Map<string, Set<Function>>} */
  #listeners = new Map()

  /** Call `fn` on each `event`; returns a function that removes it again. */
  on(event, fn) {
    let set = this.#listeners.get(event)
    if (!set) this.#listeners.set(event, (set = new Set()))
    set.add(fn)
    return () => this.off(event, fn)
  }

  off(event, fn) {
    this.#listeners.get(event)?.delete(fn)
  }

  /** @protected */
  emit(event, value) {
    const set = this.#listeners.get(event)
    if (!set) return
    for (const fn of [...set]) {
      try {
        fn(value)
      } catch (err) {
        report(err)
      }
    }
  }
}

/**
 * An error the client reports through `on('error')` or a rejected `ready`. `code` is one of
 * `CLIENT_ERRORS` or, when the server said it, one of the server's `ERRORS`.
 */
export class LiveSyncError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {object} [extra] closeCode, subscription, detail, ...
   */
  constructor(code, message, extra) {
    super(message)
    this.name = 'LiveSyncError'
    this.code = code
    Object.assign(this, extra)
  }
}
