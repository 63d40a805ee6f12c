/**
 * Reconnect delays: exponential growth with jitter, so a restarted server is not hit by
 * every client at the same instant (Meteor's retry.js calls these "reconnect storms").
 *
 * `backoff()` returns the default policy. Any `(attempt) => milliseconds` function can be
 * passed to `connect` instead; `attempt` is 1 for the first retry after a connection was
 * lost or failed, and goes back to 1 after a successful handshake.
 *
 * @param {{base?: number, max?: number, random?: () => number}} [options]
 *   the nth delay is uniform in [d/2, d] where d = min(max, base * 2^(n-1)).
 * @returns {(attempt: number) => number}
 */
export function backoff({ base = 1000, max = 30000, random = Math.random } = {}) {
  return (attempt) => {
    const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1))
    return Math.round(ceiling / 2 + (random() * ceiling) / 2)
  }
}
