// The vendored chart library is exactly the npm package's (see ../vendor.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';

import { FILES, installedVersion } from '../vendor.js';

test('livesync/demo/static/vendor holds the installed uPlot', { skip: !existsSync(FILES[0][0]) && 'npm ci first' }, () => {
  for (const [installed, vendored] of FILES) {
    assert.ok(readFileSync(installed).equals(readFileSync(vendored)), `${vendored} differs from uPlot ${installedVersion()}: npm run vendor`);
  }
  assert.ok(readFileSync(FILES[0][1], 'utf8').startsWith(`/*! https://github.com/leeoniya/uPlot (v${installedVersion()}) */`));
});
