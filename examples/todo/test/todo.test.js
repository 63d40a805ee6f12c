// The to-do list in a real browser (Debian's chromium via playwright-core): two pages on
// two `livesync serve examples.todo.app:live` gateways, PostgreSQL + Redis, and a Python
// writer, as the README runs it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import {
  ARTIFACTS, CHROMIUM, TIMEOUT, chromium, environment, openTodo, services, startGateway, startWriter,
} from './harness.js';

const skip = await services();
const LIST = 'groceries';
const items = (page) => page.locator('#todos li.todo');
const item = (page, title) => items(page).filter({ has: page.locator('.title', { hasText: new RegExp(`^${title}$`) }) });
const titles = (page) => page.locator('#todos li.todo .title').allTextContents();

/** Type `title` into the add field and press Enter. */
async function add(page, title) {
  await page.fill('#new-title', title);
  await page.press('#new-title', 'Enter');
}

/** Record, in the page, every title `todo.todos` (what is shown) holds at each change. */
function record(page) {
  return page.evaluate(() => {
    window.seen = [];
    window.todo.todos.on('change', () => window.seen.push(window.todo.visible().map((t) => t.title)));
  });
}
const seen = (page) => page.evaluate(() => window.seen);

describe('the to-do list in a real browser', { skip }, () => {
  let env, writer, gatewayA, gatewayB, browser;
  let alice, bob; // {page, errors, sent}: one page on each gateway, the same list

  before(async () => {
    env = environment({ LIVESYNC_TOPIC: `todo-${Date.now()}` });
    writer = await startWriter(env);
    [gatewayA, gatewayB] = await Promise.all([startGateway(env), startGateway(env)]);
    browser = await (await chromium()).launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    mkdirSync(ARTIFACTS, { recursive: true });
    alice = await openTodo(browser, gatewayA.url, { list: LIST });
    bob = await openTodo(browser, gatewayB.url, { list: LIST });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([gatewayA?.stop(), gatewayB?.stop()]);
    await writer?.stop();
    for (const { errors } of [alice, bob].filter(Boolean)) {
      assert.deepEqual(errors.map(String), [], 'no errors in the page');
    }
  });

  test('an added to-do shows at once, and in the other page', async () => {
    await add(alice.page, 'Milk');
    await item(alice.page, 'Milk').waitFor();
    assert.equal(await alice.page.inputValue('#new-title'), '', 'the field is cleared');
    await item(bob.page, 'Milk').waitFor();
    await add(bob.page, 'Bread');
    for (const { page } of [alice, bob]) {
      await item(page, 'Bread').waitFor();
      assert.deepEqual(await titles(page), ['Milk', 'Bread'], 'in the order added');
    }
    assert.deepEqual((await writer.send({ op: 'titles', list: LIST })).titles, ['Milk', 'Bread']);
  });

  test('an ORM write from another process appears in both pages', async () => {
    await writer.send({ op: 'add', list: LIST, title: 'Coffee beans' });
    for (const { page } of [alice, bob]) await item(page, 'Coffee beans').waitFor();
    await writer.send({ op: 'add', list: 'elsewhere', title: 'Not on this list' });
    await add(alice.page, 'Eggs'); // a barrier: once Eggs arrives, so would have the other
    await item(bob.page, 'Eggs').waitFor();
    assert.equal(await item(bob.page, 'Not on this list').count(), 0);
  });

  test('rename (double-click, and the edit button), toggle and delete reach the other page', async () => {
    await item(alice.page, 'Milk').locator('.title').dblclick();
    const edit = alice.page.locator('#todos li.editing input.edit');
    await edit.fill('Oat milk');
    await edit.press('Enter');
    for (const { page } of [alice, bob]) await item(page, 'Oat milk').waitFor();

    await item(bob.page, 'Bread').hover();
    await item(bob.page, 'Bread').locator('button.rename').click();
    await bob.page.locator('#todos li.editing input.edit').fill('Sourdough bread');
    await bob.page.locator('#todos li.editing button.save').click();
    for (const { page } of [alice, bob]) await item(page, 'Sourdough bread').waitFor();

    await item(bob.page, 'Oat milk').locator('input.toggle').check();
    for (const { page } of [alice, bob]) await item(page, 'Oat milk').and(page.locator('[data-done="true"]')).waitFor();
    await alice.page.locator('#remaining', { hasText: '3 of 4 left' }).waitFor();
    await item(alice.page, 'Oat milk').locator('input.toggle').uncheck();
    for (const { page } of [alice, bob]) await item(page, 'Oat milk').and(page.locator('[data-done="false"]')).waitFor();

    await item(alice.page, 'Eggs').hover();
    await item(alice.page, 'Eggs').locator('button.delete').click();
    for (const { page } of [alice, bob]) await item(page, 'Eggs').waitFor({ state: 'detached' });
    const { titles: stored } = await writer.send({ op: 'titles', list: LIST });
    assert.deepEqual(stored, ['Oat milk', 'Sourdough bread', 'Coffee beans']);
    assert.deepEqual(await titles(bob.page), stored);
  });

  test('a title the schema refuses shows its error and is never sent', async () => {
    const { page, sent } = alice;
    const before = sent.length;
    await add(page, '   ');
    await page.locator('#add-error', { hasText: 'A title cannot be empty.' }).waitFor();
    assert.equal(await page.getAttribute('#new-title', 'aria-invalid'), 'true');

    const long = 'x'.repeat(121);
    await add(page, long);
    await page.locator('#add-error', { hasText: 'at most 120 characters' }).waitFor();
    assert.equal(await page.inputValue('#new-title'), long, 'the draft is kept');
    await page.fill('#new-title', '');
    await page.locator('#add-error').waitFor({ state: 'hidden' });

    await item(page, 'Coffee beans').locator('.title').dblclick();
    await page.locator('#todos li.editing input.edit').fill('y'.repeat(121));
    await page.locator('#todos li.editing input.edit').press('Enter');
    const editor = page.locator('#todos li.editing');
    await editor.locator('.error', { hasText: 'at most 120 characters' }).waitFor();
    assert.equal(await editor.locator('input.edit').inputValue(), 'y'.repeat(121), 'the draft stays open');
    await page.screenshot({ path: path.join(ARTIFACTS, 'refused-locally.png') });
    await editor.locator('button.cancel').click();
    await item(page, 'Coffee beans').locator('.error').waitFor({ state: 'detached' });

    assert.equal(await page.evaluate(() => document.body.dataset.lastError), 'invalid');
    assert.deepEqual(sent.slice(before), [], 'nothing was sent');
    assert.deepEqual(await titles(bob.page), ['Oat milk', 'Sourdough bread', 'Coffee beans']);
  });

  test('a title the server refuses shows its error, rolls back, and never reaches the other page', async () => {
    const { page } = alice;
    await Promise.all([record(page), record(bob.page)]);
    const before = alice.sent.length;
    await add(page, 'Spam fritters');
    await page.locator('#add-error', { hasText: 'titles may not contain "spam"' }).waitFor();
    assert.equal(await page.inputValue('#new-title'), 'Spam fritters', 'the draft is given back');
    await item(page, 'Spam fritters').waitFor({ state: 'detached' }); // rolled back (next render)
    const shown = await seen(page);
    assert.ok(shown.some((t) => t.includes('Spam fritters')), `shown optimistically first (saw ${JSON.stringify(shown)})`);
    assert.ok(!shown.at(-1).includes('Spam fritters'), 'then taken back');
    assert.equal(alice.sent.slice(before).filter((m) => m.type === 'insert').length, 1, 'it was sent');
    assert.equal(await page.evaluate(() => document.body.dataset.lastError), 'forbidden');
    await page.screenshot({ path: path.join(ARTIFACTS, 'refused-by-server.png') });

    // A refused rename: rolled back to the old title, with the error next to the editor.
    await item(page, 'Sourdough bread').locator('.title').dblclick();
    await page.locator('#todos li.editing input.edit').fill('Sourdough (no spam)');
    await page.locator('#todos li.editing input.edit').press('Enter');
    const editor = page.locator('#todos li.editing');
    await editor.locator('.error', { hasText: 'titles may not contain "spam"' }).waitFor();
    assert.equal(await editor.locator('input.edit').inputValue(), 'Sourdough (no spam)');
    await editor.locator('button.cancel').click();
    await item(page, 'Sourdough bread').waitFor();

    // A barrier: once this arrives in Bob's page, so would have anything written before it.
    await add(page, 'Jam');
    await item(bob.page, 'Jam').waitFor();
    const bobSaw = (await seen(bob.page)).flat();
    assert.ok(!bobSaw.some((t) => /spam/i.test(t)), `never in the other page (saw ${JSON.stringify(bobSaw)})`);
    const { titles: stored } = await writer.send({ op: 'titles', list: LIST });
    assert.deepEqual(stored, ['Oat milk', 'Sourdough bread', 'Coffee beans', 'Jam']);
    assert.deepEqual(await titles(page), stored);
    await page.locator('#add-error').waitFor({ state: 'hidden' });
  });

  test('the connection indicator: "reconnecting…" while a gateway is down, then "live"', async () => {
    const { page } = bob;
    await gatewayB.stop('SIGKILL');
    await page.locator('#connection .label', { hasText: 'reconnecting…' }).waitFor();
    await add(alice.page, 'Written while B was down');
    await item(alice.page, 'Written while B was down').waitFor();
    await gatewayB.start();
    await page.locator('#connection .label', { hasText: 'live' }).waitFor({ timeout: 3 * TIMEOUT });
    await item(page, 'Written while B was down').waitFor();
  });

  test('the page, for the README (test-artifacts/todo/todo.png)', async () => {
    const { page } = alice;
    await item(page, 'Coffee beans').locator('input.toggle').check();
    await item(bob.page, 'Coffee beans').and(bob.page.locator('[data-done="true"]')).waitFor();
    await add(page, 'Spam, eggs and ham');
    await page.locator('#add-error', { hasText: 'titles may not contain "spam"' }).waitFor();
    await page.mouse.move(0, 0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'todo.png') });
  });
});
