// Generated from wire.json (livesync/protocol.py) by `npm run wire`: do not edit.
// A JS module rather than a JSON import, so browsers and Node load it without import attributes.
export const WIRE = {
  version: 1,
  messages: {
    hello: {
      direction: 'client',
      fields: ['v', 'token', 'client']
    },
    welcome: {
      direction: 'server',
      fields: ['v', 'session', 'epoch', 'ping_ms', 'limits']
    },
    sub: {
      direction: 'client',
      fields: ['id', 'pub', 'params', 'since']
    },
    snap: {
      direction: 'server',
      fields: ['sub', 'docs', 'more']
    },
    ready: {
      direction: 'server',
      fields: ['sub', 'key', 'epoch', 'pos', 'resumed', 'order']
    },
    nosub: {
      direction: 'server',
      fields: ['sub', 'code', 'message']
    },
    unsub: {
      direction: 'client',
      fields: ['id']
    },
    unsubbed: {
      direction: 'server',
      fields: ['sub']
    },
    tx: {
      direction: 'server',
      fields: ['pos', 'parts']
    },
    reset: {
      direction: 'server',
      fields: ['key', 'reason']
    },
    ping: {
      direction: 'both',
      fields: ['id']
    },
    pong: {
      direction: 'both',
      fields: ['id']
    },
    error: {
      direction: 'server',
      fields: ['code', 'message', 'ref']
    },
    insert: {
      direction: 'client',
      fields: ['id', 'c', 'd']
    },
    update: {
      direction: 'client',
      fields: ['id', 'c', 'doc', 'v', 'patch', 'set']
    },
    remove: {
      direction: 'client',
      fields: ['id', 'c', 'doc', 'v']
    },
    call: {
      direction: 'client',
      fields: ['id', 'm', 'params']
    },
    ack: {
      direction: 'server',
      fields: ['id', 'ok', 'doc', 'v', 'result', 'code', 'message', 'fields']
    },
    fence: {
      direction: 'server',
      fields: ['id']
    }
  },
  close_codes: {
    NORMAL: {
      code: 1000,
      reconnect: false
    },
    GOING_AWAY: {
      code: 1001,
      reconnect: true
    },
    MESSAGE_TOO_BIG: {
      code: 1009,
      reconnect: true
    },
    SERVER_RESTART: {
      code: 4000,
      reconnect: true
    },
    SLOW_CONSUMER: {
      code: 4001,
      reconnect: true
    },
    PING_TIMEOUT: {
      code: 4002,
      reconnect: true
    },
    BROKER_LOST: {
      code: 4003,
      reconnect: true
    },
    PROTOCOL_VIOLATION: {
      code: 4500,
      reconnect: false
    },
    UNSUPPORTED_VERSION: {
      code: 4501,
      reconnect: false
    },
    UNAUTHORIZED: {
      code: 4503,
      reconnect: false
    },
    FORBIDDEN_ORIGIN: {
      code: 4504,
      reconnect: false
    },
    TOKEN_EXPIRED: {
      code: 4505,
      reconnect: false
    }
  },
  error_codes: {
    MALFORMED: 'malformed',
    UNKNOWN_TYPE: 'unknown-type',
    INVALID_MESSAGE: 'invalid-message',
    UNEXPECTED_MESSAGE: 'unexpected-message',
    UNKNOWN_PUBLICATION: 'unknown-publication',
    BAD_PARAMS: 'bad-params',
    FORBIDDEN: 'forbidden',
    DUPLICATE_SUBSCRIPTION: 'duplicate-subscription',
    TOO_MANY_SUBSCRIPTIONS: 'too-many-subscriptions',
    RATE_LIMITED: 'rate-limited',
    INTERNAL: 'internal',
    INVALID: 'invalid',
    CONFLICT: 'conflict',
    NOT_FOUND: 'not-found'
  }
}
