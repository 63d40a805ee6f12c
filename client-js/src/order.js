/**
 * Document order from `ready.order` (docs/protocol.md §4 "Order"): a list of
 * `{f, desc, nulls}` to sort by in turn. NULLs (null or missing) go first or last as
 * `nulls` says, whatever `desc` is. Two numbers, or two decimal strings (how `Numeric`
 * columns are sent), compare as numbers, exactly; anything else compares as strings, by
 * code point (ISO 8601 datetimes in UTC sort correctly that way).
 */

const DECIMAL = /^[-+]?(\d+\.?\d*|\.\d+)$/

// A decimal string as [negative, integer digits, fraction digits], without padding zeros.
function decimal(text) {
  const [int, frac = ''] = text.replace(/^[-+]/, '').split('.')
  const i = int.replace(/^0+/, '')
  const f = frac.replace(/0+$/, '')
  return [text[0] === '-' && (i + f).length > 0, i, f]
}

const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0)

function compareDecimals(a, b) {
  const [an, ai, af] = decimal(a)
  const [bn, bi, bf] = decimal(b)
  if (an !== bn) return an ? -1 : 1
  const c = ai.length - bi.length || cmp(ai, bi) || cmp(af, bf)
  return an ? -Math.sign(c) : Math.sign(c)
}

// Code point order (JS `<` compares UTF-16 code units, which differs past U+FFFF).
function compareStrings(a, b) {
  let i = 0
  while (i < a.length && a.charCodeAt(i) === b.charCodeAt(i)) i++
  const x = a.codePointAt(i)
  const y = b.codePointAt(i)
  return x === undefined ? (y === undefined ? 0 : -1) : y === undefined ? 1 : Math.sign(x - y)
}

/** Compare two non-null field values as the server orders them. */
export function compareValues(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return Math.sign(a - b)
  if (typeof a === 'string' && typeof b === 'string') {
    return DECIMAL.test(a) && DECIMAL.test(b) ? compareDecimals(a, b) : compareStrings(a, b)
  }
  const text = (x) => (typeof x === 'string' ? x : JSON.stringify(x))
  return compareStrings(text(a), text(b))
}

/** Whether `order` is a usable `ready.order`. */
export const isOrder = (order) =>
  Array.isArray(order) && order.every((o) => o !== null && typeof o === 'object' && typeof o.f === 'string')

/**
 * A comparator of documents for `order`; documents it finds equal keep their relative
 * place (Array.prototype.sort is stable).
 * @param {ReadonlyArray<{f: string, desc?: boolean, nulls?: string}>} order
 */
export function comparator(order) {
  return (a, b) => {
    for (const { f, desc, nulls } of order) {
      const x = Object.hasOwn(a, f) ? a[f] : null
      const y = Object.hasOwn(b, f) ? b[f] : null
      if (x === null || y === null) {
        if (x === y) continue
        return (x === null ? -1 : 1) * (nulls === 'first' ? 1 : -1)
      }
      const c = compareValues(x, y)
      if (c) return desc ? -c : c
    }
    return 0
  }
}
