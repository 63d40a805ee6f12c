// A real browser (Debian's chromium, driven by playwright-core) loads a page served by the
// gateway, imports the client with no build step, subscribes, and sees a Python ORM write.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import { ROOT, environment, services, startGateway, startWriter } from '../integration/harness.js';

const CHROMIUM = process.env.LIVESYNC_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'browser');

let skip = await services();
if (!skip && !existsSync(CHROMIUM)) {
  if (process.env.LIVESYNC_REQUIRE_SERVICES === '1') throw new Error(`no browser at ${CHROMIUM}`);
  skip = `no browser at ${CHROMIUM}: apt-get install chromium`;
}

describe('in a real browser', { skip }, () => {
  let env, writer, gateway, browser;

  before(async () => {
    const { chromium } = await import('playwright-core');
    env = environment();
    writer = await startWriter(env);
    gateway = await startGateway(env);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
    await writer?.stop();
  });

  test('a page subscribes and shows a Python ORM write', async () => {
    await writer.send({ op: 'insert', items: [{ id: 1, title: 'before the page', qty: 1 }] });
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error));
    await page.goto(`${gateway.http}/`);
    await page.locator('#status[data-status="online"]').waitFor();
    await page.locator('li[data-id="1"]').waitFor();

    await writer.send({ op: 'insert', items: [{ id: 2, title: 'written by Python', qty: 7 }] });
    await page.locator('li[data-id="2"]', { hasText: 'written by Python (7)' }).waitFor();
    await writer.send({ op: 'update', id: 1, set: { title: 'renamed' } });
    await page.locator('li[data-id="1"]', { hasText: 'renamed' }).waitFor();

    assert.deepEqual(await page.locator('li').allTextContents(), ['renamed (1)', 'written by Python (7)']);
    assert.deepEqual(errors, []);
    await page.screenshot({ path: path.join(ARTIFACTS, 'client-page.png') });
  });

  test('a page writes: checked against /live/schemas, shown, acknowledged, seen by Python', async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error));
    await page.goto(`${gateway.http}/`);
    await page.locator('#status[data-status="online"]').waitFor();
    const refused = await page.evaluate(() => window.livesync.client.insert('t_items', { title: '' }).catch((err) => [err.code, err.fields]));
    assert.deepEqual(refused, ['invalid', [{ path: '/title', message: 'must have at least 1 characters' }]]);
    const { id } = await page.evaluate(() => window.livesync.client.insert('t_items', { title: 'written by the page', qty: 3 }, { fence: true }));
    await page.locator(`li[data-id="${id}"]`, { hasText: 'written by the page (3)' }).waitFor();
    const { items } = await writer.send({ op: 'dump' });
    assert.equal(items.find((item) => item.id === id)?.title, 'written by the page');
    assert.deepEqual(errors, []);
  });
});
