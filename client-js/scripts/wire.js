// Regenerate src/wire.js from src/wire.json (the table `python -m livesync.protocol` prints):
// the part the client uses at run time (version, close codes, error codes); the message
// table stays in wire.json, where test/unit/constants.test.js reads it. Run `npm run wire`
// after regenerating wire.json; that test fails until the two agree. `--check` only reports
// whether src/wire.js is up to date.
import { readFileSync, writeFileSync } from 'node:fs'

const json = new URL('../src/wire.json', import.meta.url)
const js = new URL('../src/wire.js', import.meta.url)

/** The run-time part of the table. */
export const runtime = ({ version, close_codes, error_codes }) => ({ version, close_codes, error_codes })

export function render(table) {
  const body = JSON.stringify(runtime(table), null, 2)
    .replace(/\[\s+([^[\]{}]*?)\s+\]/g, (_, items) => `[${items.split(/,\s+/).join(', ')}]`) // short lists on one line
    .replace(/"([A-Za-z_][A-Za-z0-9_]*)":/g, '$1:')
    .replace(/"/g, "'")
  return [
    '// Generated from wire.json (livesync/protocol.py) by `npm run wire`: do not edit.',
    '// A JS module rather than a JSON import, so browsers and Node load it without import attributes.',
    `export const WIRE = ${body}`,
    '',
  ].join('\n')
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const wanted = render(JSON.parse(readFileSync(json, 'utf8')))
  if (process.argv.includes('--check')) {
    const same = readFileSync(js, 'utf8') === wanted
    console.log(same ? 'src/wire.js is up to date' : 'src/wire.js is stale: run `npm run wire`')
    process.exit(same ? 0 : 1)
  }
  writeFileSync(js, wanted)
  console.log('wrote src/wire.js')
}
