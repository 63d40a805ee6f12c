// The chart library is an npm dependency (package.json) served as static files by the
// dashboard, with no build step: its dist files are copied into livesync/demo/static/vendor/
// so that `livesync demo` needs no npm. `npm run vendor` refreshes the copy after an upgrade;
// test/vendor.test.js fails while the copy and node_modules differ.
import { copyFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const VENDOR = path.resolve(HERE, '../../livesync/demo/static/vendor');
const UPLOT = path.join(HERE, 'node_modules', 'uplot');

/** [installed file, vendored copy] pairs. */
export const FILES = [
  [path.join(UPLOT, 'dist', 'uPlot.iife.min.js'), path.join(VENDOR, 'uPlot.iife.min.js')],
  [path.join(UPLOT, 'dist', 'uPlot.min.css'), path.join(VENDOR, 'uPlot.min.css')],
  [path.join(UPLOT, 'LICENSE'), path.join(VENDOR, 'uPlot.LICENSE')],
];

export const installedVersion = () => JSON.parse(readFileSync(path.join(UPLOT, 'package.json'), 'utf8')).version;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [from, to] of FILES) copyFileSync(from, to);
  console.log(`vendored uPlot ${installedVersion()} into ${path.relative(process.cwd(), VENDOR)}`);
}
