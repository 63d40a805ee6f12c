// index.d.ts states literal values (codes, statuses) that tsc cannot compare with the
// runtime; this test does, and checks the declared exports are the real ones.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import * as api from '../../src/index.js'

const dts = readFileSync(new URL('../../src/index.d.ts', import.meta.url), 'utf8')
const block = (start) => dts.slice(dts.indexOf(start), dts.indexOf('\n\n', dts.indexOf(start)))
const line = (start) => dts.slice(dts.indexOf(start), dts.indexOf('\n', dts.indexOf(start)))
const strings = (text) => [...text.matchAll(/'([^']+)'/g)].map((m) => m[1])

test('declared error code unions are the runtime codes', () => {
  assert.deepEqual(strings(block('export type ClientErrorCode')), Object.values(api.CLIENT_ERRORS))
  assert.deepEqual(strings(block('export type ServerErrorCode')), Object.values(api.ERRORS))
})

test('declared constants are the runtime constants', () => {
  const close = Object.fromEntries([...block('export declare const CLOSE').matchAll(/(\w+): (\d+)/g)].map((m) => [m[1], Number(m[2])]))
  assert.deepEqual(close, api.CLOSE)
  assert.deepEqual(strings(line('export type Status')), Object.values(api.STATUS))
  assert.deepEqual(strings(line('export declare const STATUS')), Object.values(api.STATUS))
})

test('every runtime export is declared, and every declared value exists', () => {
  const declared = [...dts.matchAll(/^export declare (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort()
  assert.deepEqual(declared, Object.keys(api).sort())
})
