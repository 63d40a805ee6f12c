// The to-do example's browser tests: the examples' shared harness (examples/harness.js)
// bound to this example, plus a page that records the writes it sends.
import { CHROMIUM, TIMEOUT, exampleHarness, openPage } from '../../harness.js';

export { CHROMIUM, TIMEOUT };
export const {
  ARTIFACTS, chromium, environment, services, startGateway, startWriter,
} = exampleHarness('todo', { redisDb: 13 });

/**
 * A page of the to-do list `list`, with its errors and the write frames it sent collected
 * (`sent`: every `insert`, `update` and `remove` message, parsed).
 */
export async function openTodo(browser, url, { list = 'home', width = 900, height = 760 } = {}) {
  const sent = [];
  const recordWrites = (page) => page.on('websocket', (socket) => socket.on('framesent', ({ payload }) => {
    try {
      const message = JSON.parse(String(payload));
      if (['insert', 'update', 'remove'].includes(message.type)) sent.push(message);
    } catch { /* not JSON: not a write */ }
  }));
  const { page, errors } = await openPage(browser, `${url}?list=${list}`, { width, height, prepare: recordWrites });
  return { page, errors, sent };
}
