/**
 * RFC 6902 JSON Patch and RFC 6901 JSON Pointer, without mutating anything.
 *
 * `applyPatch(doc, ops)` returns the patched value or throws a `PatchError`; either way
 * `doc` and `ops` are left exactly as they were, so a patch that fails half-way cannot
 * leave a cached document half-changed. Containers on a changed path are copied once per
 * call; untouched subtrees (and inserted `value`s) are shared between the old and the new
 * value, so both must be treated as read-only.
 */

/** A patch that is malformed or does not apply; `index` is the failing operation's. */
export class PatchError extends Error {
  /** @param {string} message @param {number} [index] */
  constructor(message, index) {
    super(index === undefined ? message : `operation ${index}: ${message}`)
    this.name = 'PatchError'
    this.index = index
  }
}

const isContainer = (x) => x !== null && typeof x === 'object'
const hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k)

/** JSON equality: same type and value; object key order does not matter. */
export function equal(a, b) {
  if (a === b) return true
  if (!isContainer(a) || !isContainer(b) || Array.isArray(a) !== Array.isArray(b)) return false
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  return keys.every((k) => hasOwn(b, k) && equal(a[k], b[k]))
}

/** RFC 6901 pointer to its unescaped reference tokens ("" is the whole document). */
export function parsePointer(pointer) {
  if (typeof pointer !== 'string') throw new PatchError('path is not a string')
  if (pointer === '') return []
  if (pointer[0] !== '/') throw new PatchError(`pointer ${JSON.stringify(pointer)} must start with /`)
  return pointer.slice(1).split('/').map((token) => {
    if (/~[^01]|~$/.test(token)) throw new PatchError(`bad escape in ${JSON.stringify(pointer)}`)
    return token.replace(/~1/g, '/').replace(/~0/g, '~')
  })
}

// An array index: decimal, no sign, no leading zero, no exponent.
function index(token, max) {
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`bad array index ${JSON.stringify(token)}`)
  const i = Number(token)
  if (i > max) throw new PatchError(`index ${i} out of bounds`)
  return i
}

function child(node, token) {
  if (Array.isArray(node)) return node[index(token, node.length - 1)]
  if (isContainer(node) && hasOwn(node, token)) return node[token]
  throw new PatchError(`no member ${JSON.stringify(token)}`)
}

/** The value at `pointer` in `doc`; throws a PatchError when there is none. */
export function get(doc, pointer) {
  return parsePointer(pointer).reduce(child, doc)
}

function setOwn(obj, key, value) {
  // defineProperty, not assignment: a "__proto__" member must stay a plain member.
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true })
}

/**
 * Apply `ops` to `doc`. Returns the new value (a new root when anything changed).
 * @param {unknown} doc
 * @param {ReadonlyArray<object>} ops
 */
export function applyPatch(doc, ops) {
  if (!Array.isArray(ops)) throw new PatchError('a patch must be an array')
  const fresh = new WeakSet() // containers copied by this call: safe to change in place
  const own = (node) => {
    if (fresh.has(node)) return node
    const copy = Array.isArray(node) ? node.slice() : { ...node }
    fresh.add(copy)
    return copy
  }
  // Copy the containers down to the parent of the last token, then let `change` edit it.
  const edit = (root, tokens, change) => {
    if (!isContainer(root)) throw new PatchError('cannot change inside a scalar')
    const top = own(root)
    let node = top
    for (const token of tokens.slice(0, -1)) {
      const next = child(node, token)
      if (!isContainer(next)) throw new PatchError(`no container at ${JSON.stringify(token)}`)
      const copy = own(next)
      if (Array.isArray(node)) node[Number(token)] = copy
      else setOwn(node, token, copy)
      node = copy
    }
    change(node, tokens[tokens.length - 1])
    return top
  }
  const add = (root, tokens, value) => {
    if (!tokens.length) return value
    return edit(root, tokens, (parent, key) => {
      if (Array.isArray(parent)) {
        parent.splice(key === '-' ? parent.length : index(key, parent.length), 0, value)
      } else setOwn(parent, key, value)
    })
  }
  const remove = (root, tokens) => {
    if (!tokens.length) throw new PatchError('cannot remove the whole document')
    return edit(root, tokens, (parent, key) => {
      if (Array.isArray(parent)) parent.splice(index(key, parent.length - 1), 1)
      else if (hasOwn(parent, key)) delete parent[key]
      else throw new PatchError(`no member ${JSON.stringify(key)}`)
    })
  }
  const need = (op, field) => {
    if (!hasOwn(op, field)) throw new PatchError(`missing "${field}"`)
    return op[field]
  }

  let value = doc
  ops.forEach((op, i) => {
    try {
      if (!isContainer(op)) throw new PatchError('an operation must be an object')
      const path = parsePointer(op.path)
      switch (op.op) {
        case 'add':
          value = add(value, path, need(op, 'value'))
          break
        case 'remove':
          value = remove(value, path)
          break
        case 'replace': {
          const replacement = need(op, 'value')
          path.reduce(child, value) // the target must exist
          value = path.length ? edit(value, path, (parent, key) => {
            if (Array.isArray(parent)) parent[Number(key)] = replacement
            else setOwn(parent, key, replacement)
          }) : replacement
          break
        }
        case 'move': {
          const from = need(op, 'from')
          if (from === op.path) {
            get(value, from)
            break
          }
          if (op.path.startsWith(from + '/')) throw new PatchError('cannot move a value into itself')
          const moved = get(value, from)
          value = add(remove(value, parsePointer(from)), path, moved)
          break
        }
        case 'copy':
          value = add(value, path, structuredClone(get(value, need(op, 'from'))))
          break
        case 'test':
          if (!equal(path.reduce(child, value), need(op, 'value'))) {
            throw new PatchError(`test failed at ${JSON.stringify(op.path)}`)
          }
          break
        default:
          throw new PatchError(`unknown op ${JSON.stringify(op.op)}`)
      }
    } catch (err) {
      throw err instanceof PatchError ? new PatchError(err.message, i) : err
    }
  })
  return value
}
