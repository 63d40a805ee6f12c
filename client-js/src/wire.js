// Generated from wire.json (livesync/protocol.py) by `npm run wire`: do not edit.
// A JS module rather than a JSON import, so browsers and Node load it without import attributes.
export const WIRE = {
  version: 1,
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
