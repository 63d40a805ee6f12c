// The JSON Schema subset pydantic emits (src/schema.js), on schemas pydantic v2 generates.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { validate } from '../../src/schema.js'

const paths = (schema, value) => validate(schema, value).map((f) => f.path)

// class Address(BaseModel): street: str; zip: str = Field(pattern=r'^\d{5}$')
// class Person(BaseModel): name: str = Field(min_length=1, max_length=5); age: int | None = Field(None, ge=0, lt=150)
//   kind: Literal['a', 'b']; tags: set[str] = set(); home: Address | None = None; scores: dict[str, float] = {}
//   point: tuple[int, int] = (0, 0); when: datetime | None = None; price: Decimal = Decimal(0); step: int = Field(0, multiple_of=5)
const PERSON = {
  $defs: {
    Address: {
      properties: { street: { title: 'Street', type: 'string' }, zip: { pattern: '^\\d{5}$', title: 'Zip', type: 'string' } },
      required: ['street', 'zip'],
      title: 'Address',
      type: 'object',
    },
  },
  properties: {
    name: { maxLength: 5, minLength: 1, title: 'Name', type: 'string' },
    age: { anyOf: [{ exclusiveMaximum: 150, minimum: 0, type: 'integer' }, { type: 'null' }], default: null, title: 'Age' },
    kind: { enum: ['a', 'b'], title: 'Kind', type: 'string' },
    tags: { default: [], items: { type: 'string' }, title: 'Tags', type: 'array', uniqueItems: true },
    home: { anyOf: [{ $ref: '#/$defs/Address' }, { type: 'null' }], default: null },
    scores: { additionalProperties: { type: 'number' }, default: {}, title: 'Scores', type: 'object' },
    point: { default: [0, 0], maxItems: 2, minItems: 2, prefixItems: [{ type: 'integer' }, { type: 'integer' }], title: 'Point', type: 'array' },
    when: { anyOf: [{ format: 'date-time', type: 'string' }, { type: 'null' }], default: null, title: 'When' },
    price: { anyOf: [{ type: 'number' }, { pattern: '^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$', type: 'string' }], default: '0', title: 'Price' },
    step: { default: 0, multipleOf: 5, title: 'Step', type: 'integer' },
    fixed: { const: 'v1', default: 'v1', title: 'Fixed', type: 'string' },
  },
  required: ['name', 'kind'],
  title: 'Person',
  type: 'object',
}

test('a valid document has no problems', () => {
  const doc = { name: 'Ann', age: 30, kind: 'a', tags: ['x', 'y'], home: { street: 'Main', zip: '12345' }, scores: { m: 1.5 }, point: [1, 2], when: 'not checked', price: '1.50', step: 10, fixed: 'v1' }
  assert.deepEqual(validate(PERSON, doc), [])
  assert.deepEqual(validate(PERSON, { name: 'Bo', kind: 'b', age: null, home: null, price: 3 }), [])
})

test('each keyword reports its field by JSON Pointer', () => {
  assert.deepEqual(validate(PERSON, { kind: 'a' }), [{ path: '/name', message: 'required' }])
  assert.deepEqual(paths(PERSON, { name: '', kind: 'c' }), ['/name', '/kind'])
  assert.deepEqual(paths(PERSON, { name: 'toolong', kind: 'a' }), ['/name'])
  assert.deepEqual(validate(PERSON, { name: 'A', kind: 'a', age: 150 }), [{ path: '/age', message: 'must be < 150' }])
  assert.deepEqual(validate(PERSON, { name: 'A', kind: 'a', age: -1 }), [{ path: '/age', message: 'must be >= 0' }])
  assert.deepEqual(validate(PERSON, { name: 'A', kind: 'a', age: 1.5 }), [{ path: '/age', message: 'must be integer or null' }])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', tags: ['x', 'x', 3] }), ['/tags', '/tags/2'])
  assert.deepEqual(validate(PERSON, { name: 'A', kind: 'a', home: { street: 'S', zip: '1234' } }), [{ path: '/home/zip', message: 'must match ^\\d{5}$' }])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', home: { zip: '12345' } }), ['/home/street'])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', scores: { m: 'high' } }), ['/scores/m'])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', point: [1, 'x', 3] }), ['/point', '/point/1'])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', price: 'cheap' }), ['/price'])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', step: 7 }), ['/step'])
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', fixed: 'v2' }), ['/fixed'])
})

test('strict JSON: no lax coercion, lengths in code points, unknown fields allowed unless forbidden', () => {
  assert.deepEqual(paths(PERSON, { name: 'A', kind: 'a', age: '30' }), ['/age'], 'pydantic would coerce "30"; this does not')
  assert.deepEqual(validate(PERSON, { name: '🙂🙂🙂🙂🙂', kind: 'a' }), [], 'five code points')
  assert.deepEqual(validate(PERSON, { name: 'A', kind: 'a', extra: 1 }), [])
  const closed = { type: 'object', properties: { a: { type: 'integer' } }, additionalProperties: false }
  assert.deepEqual(validate(closed, { a: 1, b: 2 }), [{ path: '/b', message: 'not allowed' }])
  assert.deepEqual(validate({ type: 'object', properties: { 'a/b': { type: 'string' } } }, { 'a/b': 1 }), [{ path: '/a~1b', message: 'must be string' }])
  assert.deepEqual(validate({ pattern: '(?P<name>x)' }, 'y'), [], 'a Python-only pattern is left to the server')
  assert.deepEqual(validate(true, 1), [])
})
