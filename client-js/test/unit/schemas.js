// What a gateway serves at /live/schemas, for the write tests (see tests/write_support.py for real ones).
export const SCHEMAS = {
  todos: {
    schema: {
      type: 'object',
      properties: {
        id: { type: 'string', format: 'uuid' },
        owner: { type: 'integer' },
        title: { type: 'string', minLength: 1, maxLength: 20 },
        done: { type: 'boolean', default: false },
        tags: { type: 'array', items: { type: 'string' }, maxItems: 3 },
      },
      required: ['id', 'owner', 'title'],
    },
    key: ['id'],
    immutable: ['id', 'owner'],
    ids: 'uuid',
    conflicts: 'reject',
    ops: ['insert', 'update', 'remove'],
  },
  items: {
    schema: {
      type: 'object',
      properties: { id: { anyOf: [{ type: 'integer' }, { type: 'null' }], default: null }, title: { type: 'string' }, qty: { type: 'integer', minimum: 0, default: 0 } },
      required: ['title'],
    },
    key: ['id'],
    immutable: ['id'],
    ids: 'server',
    conflicts: 'last-writer-wins',
    ops: ['insert', 'update'],
  },
  tags: { schema: { type: 'object', properties: { name: { type: 'string' } } }, key: ['name'], immutable: ['name'], ids: 'client', conflicts: 'reject', ops: ['insert'] },
}
