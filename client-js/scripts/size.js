// Bundle src/index.js as a browser would load it (minified by esbuild) and report its
// size, raw and gzipped: the figure README.md quotes. `--max KB` fails above a limit.
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'

const { outputFiles } = await build({
  entryPoints: [new URL('../src/index.js', import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  write: false,
})
const code = outputFiles[0].contents
const gzipped = gzipSync(code, { level: 9 }).length
const kb = (n) => `${(n / 1024).toFixed(2)} KB`
console.log(`livesync-client: ${kb(code.length)} minified, ${kb(gzipped)} minified + gzipped`)
const max = process.argv.indexOf('--max')
if (max > 0 && gzipped > Number(process.argv[max + 1]) * 1024) {
  console.error(`above the ${process.argv[max + 1]} KB budget`)
  process.exit(1)
}
