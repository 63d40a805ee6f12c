// The dashboard's browser tests: the examples' shared harness (examples/harness.js) bound to
// this example, plus its simulator and a signed-in dashboard page.
import { spawn } from 'node:child_process';

import {
  CHROMIUM, PYTHON, ROOT, TIMEOUT, exampleHarness, openPage, remember, stopGroup, waitUntil,
} from '../../harness.js';

export { CHROMIUM, TIMEOUT, waitUntil };
export const {
  ARTIFACTS, chromium, environment, services, startGateway, startWriter,
} = exampleHarness('dashboard', { redisDb: 12 });

/** `python -m examples.dashboard.simulator --rate N`; `stop()` ends it with SIGINT (Ctrl-C). */
export function startSimulator(env, { rate = 50, duration, seed = 1 } = {}) {
  const args = ['-m', 'examples.dashboard.simulator', '--rate', String(rate), '--seed', String(seed)];
  if (duration) args.push('--duration', String(duration));
  const child = spawn(PYTHON, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const output = remember(child);
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    output,
    exited,
    async stop() {
      await stopGroup(child, 'SIGINT');
      return output();
    },
  };
}

/** A page of the dashboard, signed in as `as`, with its errors collected. */
export function openDashboard(browser, url, { as = 'grace', width = 1440, height = 900 } = {}) {
  return openPage(browser, `${url}?as=${as}`, { width, height });
}
