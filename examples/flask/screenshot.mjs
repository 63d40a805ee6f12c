// Takes screenshot.png: `node examples/flask/screenshot.mjs` while the two processes of
// README.md run (the page on :5000, `livesync serve` on :8000). An order posted by another
// client appears in the open page without a reload.
import { chromium } from '../../client-js/node_modules/playwright-core/index.mjs';

const app = process.env.APP_URL ?? 'http://127.0.0.1:5000';
const browser = await chromium.launch({
  executablePath: process.env.LIVESYNC_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage({ viewport: { width: 640, height: 300 } });
  await page.goto(app);
  await page.waitForFunction(() => performance.getEntriesByType('resource').some((r) => r.name.endsWith('/live/client/index.js')));
  await new Promise((resolve) => setTimeout(resolve, 1000)); // subscribed
  const before = await page.locator('#orders li').count();
  const body = new URLSearchParams({ customer: 'Grace', item: 'espresso machine' });
  await fetch(app, { method: 'POST', body, redirect: 'manual' }); // another client's order
  await page.locator('#orders li').nth(before).waitFor({ timeout: 10000 }); // shown, no reload
  await page.fill('input[name=customer]', 'Linus');
  await page.fill('input[name=item]', 'mechanical keyboard');
  await page.screenshot({ path: new URL('screenshot.png', import.meta.url).pathname });
  console.log('live update seen; wrote screenshot.png');
} finally {
  await browser.close();
}
