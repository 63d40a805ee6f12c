/**
 * A token bucket: `rate` tokens a second, at most `burst` saved. `take()` spends a token and
 * returns 0, or, when there is none, returns the milliseconds until the next one is due.
 * @param {number} rate
 * @param {number} burst
 * @returns {() => number}
 */
export function bucket(rate, burst) {
  let tokens = burst
  let stamp = Date.now()
  return () => {
    const now = Date.now()
    if (now > stamp) tokens = Math.min(burst, tokens + ((now - stamp) * rate) / 1000)
    stamp = now
    if (tokens < 1) return Math.ceil(((1 - tokens) * 1000) / rate)
    tokens--
    return 0
  }
}

/** No limit. */
export const unlimited = () => 0
