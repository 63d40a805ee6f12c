/**
 * JSON Schema, the subset pydantic emits, to check an optimistic write before it is sent
 * (docs/protocol.md §6.5). The server checks again and its answer is the one that counts;
 * this only saves a round trip and a flicker for the writes it would refuse.
 *
 * Checked: `type` (one or a list), `enum`, `const`, `minimum`, `maximum`,
 * `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `minLength`, `maxLength` (in code
 * points), `pattern`, `items`, `prefixItems`, `minItems`, `maxItems`, `uniqueItems`,
 * `properties`, `required`, `additionalProperties`, `anyOf`, `oneOf` (as `anyOf`),
 * `allOf`, `$ref` into the same document (`#/$defs/...`). Not checked: `format` (dates,
 * UUIDs, e-mails: the server's pydantic decides), and every other keyword. Values are taken
 * as JSON, strictly: pydantic's lax mode would turn `"2"` into an integer, this does not.
 */
import { equal, get } from './patch.js'

const object = (x) => x !== null && typeof x === 'object' && !Array.isArray(x)

/** @type {Record<string, (x: any) => boolean>} */
const TYPES = {
  string: (x) => typeof x === 'string',
  integer: Number.isInteger,
  number: Number.isFinite,
  boolean: (x) => typeof x === 'boolean',
  null: (x) => x === null,
  array: Array.isArray,
  object,
}

const types = (s) => [].concat(s.type ?? [])
const fits = (s, x) => !s.type || types(s).some((t) => TYPES[t]?.(x))
const escape = (k) => k.replace(/~/g, '~0').replace(/\//g, '~1')

/**
 * The problems of `value` under `schema`: a list of `{path, message}` (`path` a JSON
 * Pointer), empty when it is valid.
 * @param {any} schema
 * @param {any} value
 * @returns {{path: string, message: string}[]}
 */
export function validate(schema, value, root = schema, path = '', out = []) {
  const fail = (message, at = path) => out.push({ path: at, message })
  const check = (s, x, at = path) => validate(s, x, root, at, out)
  const deref = (s) => (s?.$ref?.startsWith('#') ? deref(get(root, s.$ref.slice(1))) : s)
  const s = deref(schema)
  if (s === false) fail('not allowed')
  if (!object(s)) return out
  if (!fits(s, value)) return fail(`must be ${types(s).join(' or ')}`), out
  if ('const' in s && !equal(value, s.const)) fail(`must be ${JSON.stringify(s.const)}`)
  if (s.enum && !s.enum.some((e) => equal(e, value))) fail(`must be one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}`)
  for (const part of s.allOf ?? []) check(part, value)
  const any = (s.anyOf ?? s.oneOf)?.map(deref)
  if (any && !any.some((part) => !validate(part, value, root, path).length)) {
    // The alternatives of the value's type say what is wrong; with none, name the types.
    const typed = any.filter((part) => fits(part, value))
    if (typed.length) check(typed[0], value)
    else fail(`must be ${any.flatMap(types).join(' or ')}`)
  }
  if (typeof value === 'number') {
    if (value < s.minimum) fail(`must be >= ${s.minimum}`)
    if (value > s.maximum) fail(`must be <= ${s.maximum}`)
    if (value <= s.exclusiveMinimum) fail(`must be > ${s.exclusiveMinimum}`)
    if (value >= s.exclusiveMaximum) fail(`must be < ${s.exclusiveMaximum}`)
    if (s.multipleOf && Math.abs(value / s.multipleOf - Math.round(value / s.multipleOf)) > 1e-9) fail(`must be a multiple of ${s.multipleOf}`)
  }
  if (typeof value === 'string') {
    const n = [...value].length
    if (n < s.minLength) fail(`must have at least ${s.minLength} characters`)
    if (n > s.maxLength) fail(`must have at most ${s.maxLength} characters`)
    if (s.pattern) {
      let re
      try {
        re = new RegExp(s.pattern, 'u')
      } catch {
        // a Python-only construct: left to the server
      }
      if (re && !re.test(value)) fail(`must match ${s.pattern}`)
    }
  }
  if (Array.isArray(value)) {
    if (value.length < s.minItems) fail(`must have at least ${s.minItems} items`)
    if (value.length > s.maxItems) fail(`must have at most ${s.maxItems} items`)
    if (s.uniqueItems && value.some((x, i) => value.findIndex((y) => equal(x, y)) < i)) fail('must not repeat items')
    const prefix = s.prefixItems ?? []
    value.forEach((x, i) => check(i < prefix.length ? prefix[i] : s.items, x, `${path}/${i}`))
  }
  if (object(value)) {
    for (const k of s.required ?? []) if (!Object.hasOwn(value, k)) fail('required', `${path}/${escape(k)}`)
    for (const [k, x] of Object.entries(value)) {
      const at = `${path}/${escape(k)}`
      if (s.properties && Object.hasOwn(s.properties, k)) check(s.properties[k], x, at)
      else if (s.additionalProperties === false) fail('not allowed', at)
      else check(s.additionalProperties, x, at)
    }
  }
  return out
}
