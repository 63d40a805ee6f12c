// The client's protocol constants are the table generated from the Python protocol core.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { WIRE, CLOSE, ERRORS, CLIENT_ERRORS, VERSION, reconnects } from '../../src/constants.js'
import { render, runtime } from '../../scripts/wire.js'

const wire = JSON.parse(readFileSync(new URL('../../src/wire.json', import.meta.url), 'utf8'))

test('src/wire.js is wire.json, as `npm run wire` writes it (run that after regenerating wire.json)', () => {
  assert.deepStrictEqual(WIRE, runtime(wire))
  assert.equal(readFileSync(new URL('../../src/wire.js', import.meta.url), 'utf8'), render(wire), 'hand-edited: run `npm run wire`')
  assert.equal(VERSION, wire.version)
})

test('CLOSE and ERRORS are derived from the table', () => {
  for (const [name, { code }] of Object.entries(wire.close_codes)) assert.equal(CLOSE[name], code)
  assert.deepStrictEqual(ERRORS, wire.error_codes)
})

test('reconnects() follows the table, then the ranges of docs/protocol.md §7', () => {
  for (const { code, reconnect } of Object.values(wire.close_codes)) assert.equal(reconnects(code), reconnect, String(code))
  for (const code of [1005, 1006, 1011, 1012, 1013, 4004, 4499]) assert.equal(reconnects(code), true, String(code))
  for (const code of [4500, 4502, 4999]) assert.equal(reconnects(code), false, String(code))
})

test('client error codes never collide with the server codes', () => {
  const server = new Set(Object.values(wire.error_codes))
  for (const code of Object.values(CLIENT_ERRORS)) assert.ok(!server.has(code), code)
})

test('the client handles every server message type of the table', () => {
  const source = readFileSync(new URL('../../src/messages.js', import.meta.url), 'utf8')
  const fromServer = Object.entries(wire.messages).filter(([, m]) => m.direction !== 'client').map(([t]) => t)
  for (const type of fromServer) assert.match(source, new RegExp(`\\b${type}: \\(`), `no shape check for '${type}'`)
})
