// The operations dashboard: four subscriptions, drawn at most once per frame.
//
//   kpis           today's totals (one document)            -> the tiles
//   ticks          one document per second, last 120 s      -> the chart, tile hints, lag
//   recent_orders  the newest 20 orders of a status (window) -> the table; the filter resubscribes
//   alerts         open alerts first (window of 40)          -> the panel; Acknowledge writes
//
// The client is imported from the gateway (/live/client/), no build step. `window.dashboard`
// exposes the client, the subscriptions and the lag meter to the browser tests.
import { connect } from '/live/client/index.js';

import { AlertsPanel } from './alerts.js';
import { createChart } from './chart.js';
import { watchConnection } from './connection.js';
import { formatCount } from './format.js';
import { lastSeconds, renderKpis } from './kpis.js';
import { LagMeter } from './lag.js';
import { OrdersTable } from './orders.js';

const $ = (id) => document.getElementById(id);
const ALERTS_LIMIT = 40;
const ORDERS_LIMIT = 20;

const params = new URLSearchParams(location.search);
const me = params.get('as') || 'grace';

// The token is the operator's name: the demo's stand-in for a real sign-in (see app.py).
const client = connect('/live', { token: () => me });
watchConnection(client, $('connection'));

const lag = new LagMeter();
const pending = new Set(); // alert ids being acknowledged
const errors = new Map(); // alert id -> the last refusal's message
const roster = fetch('/operators').then((r) => r.json()).catch(() => ({ operators: {}, on_call: null }));

const kpis = client.subscribe('kpis');
const ticks = client.subscribe('ticks', { seconds: 120 });
const alerts = client.subscribe('alerts', { limit: ALERTS_LIMIT });
let orders = null;

const chart = createChart($('chart'));
const table = new OrdersTable($('orders'), $('orders-empty'));
const panel = new AlertsPanel({
  list: $('alerts'),
  empty: $('alerts-empty'),
  banner: $('alerts-error'),
  acknowledge,
  operators: {},
});

// ------------------------------------------------------------------ drawing
/** Today's row: the `kpis` publication holds yesterday's too (ISO dates sort as text). */
const latestDay = (days) => days.reduce((best, d) => (!best || d.day > best.day ? d : best), undefined);

let frame = 0;
let renders = 0;
let chartDrawn = -Infinity;
let chartTimer = 0;
let lagShown = -Infinity;
function draw() {
  frame = 0;
  renders += 1;
  const tickDocs = ticks.docs;
  renderKpis({ day: latestDay(kpis.docs), ticks: tickDocs, alerts: alerts.docs, alertsFull: alerts.docs.length >= ALERTS_LIMIT });
  // The chart has one point per second: redrawing it 4 times a second looks just as live
  // and leaves the CPU to everything else.
  const now = performance.now();
  if (now - chartDrawn >= 250) {
    chartDrawn = now;
    chart.update(tickDocs);
  } else {
    chartTimer ||= setTimeout(() => { chartTimer = 0; schedule(); }, 250 - (now - chartDrawn));
  }
  if (orders) table.render(orders.docs);
  panel.render(alerts.docs, { pending, errors });
  const writes = lastSeconds(tickDocs, 'writes', 5, Date.now() / 1000 - 1) / 5;
  $('throughput').textContent = `${formatCount(Math.round(writes))} writes/s`;
  lag.drawn();
  if (now - lagShown >= 1000) { // the footer: the last 2,000 transactions, once a second
    lagShown = now;
    const { p50, p99 } = lag.stats(2000);
    if (!Number.isNaN(p50)) $('lag').textContent = `screen lag p50 ${Math.round(p50)} ms · p99 ${Math.round(p99)} ms`;
  }
}
// At most one frame every FRAME_MS: as live to the eye as 60 frames a second, for a
// fraction of the CPU when hundreds of transactions a second arrive.
const FRAME_MS = 50;
let lastFrame = -Infinity;
function schedule() {
  if (frame) return;
  const wait = lastFrame + FRAME_MS - performance.now();
  const next = () => { frame = requestAnimationFrame((t) => { lastFrame = t; draw(); }); };
  if (wait > 0) {
    frame = setTimeout(next, wait);
  } else {
    next();
  }
}

for (const sub of [kpis, ticks, alerts]) sub.on('change', schedule);
ticks.on('change', ({ added, changed }) => {
  // A transaction touches one tick (its second): one event, one sample. Events with more
  // are snapshots and resyncs, which replay old writes: not lag.
  const docs = [...added, ...changed];
  if (docs.length === 1 && ticks.state === 'live' && client.status === 'online') lag.arrived(docs[0].written_at);
});
setInterval(schedule, 1000); // the chart slides and the "last minute" hints age with the clock

// ------------------------------------------------------------------ orders filter
function subscribeOrders(status) {
  orders?.unsubscribe();
  table.clear();
  orders = client.subscribe('recent_orders', status ? { status, limit: ORDERS_LIMIT } : { limit: ORDERS_LIMIT });
  orders.on('change', schedule);
  orders.ready.then(schedule, (err) => panel.showError(`Orders: ${err.message}`));
  $('orders-sub').textContent = status ? `The ${ORDERS_LIMIT} newest ${status}` : `The ${ORDERS_LIMIT} newest`;
  document.body.dataset.filter = status;
}
$('status-filter').value = params.get('status') ?? '';
$('status-filter').addEventListener('change', (event) => subscribeOrders(event.target.value));
subscribeOrders($('status-filter').value);

// ------------------------------------------------------------------ acknowledging
async function acknowledge(id) {
  if (typeof client.update !== 'function') {
    panel.showError('This livesync client cannot write (client.update is missing).');
    return;
  }
  pending.add(id);
  errors.delete(id);
  schedule();
  try {
    // Optimistic: the client shows the alert acknowledged at once, and takes it back if
    // the server refuses (app.py: may_acknowledge).
    await client.update('alerts', id, { acknowledged: true, acknowledged_by: me });
  } catch (err) {
    // Shown under the alert, which the client has already put back as it was.
    errors.set(id, `Not acknowledged: ${err.message}`);
    document.body.dataset.lastError = err.code ?? 'error';
  } finally {
    pending.delete(id);
    schedule();
  }
}

// ------------------------------------------------------------------ who am I
roster.then(({ operators, on_call: onCall }) => {
  panel.operators = operators;
  const select = $('operator');
  const names = { ...operators, ...(operators[me] ? {} : { [me]: me }) };
  select.replaceChildren(...Object.entries(names).map(([name, full]) => {
    const option = new Option(`${full}${name === onCall ? ' · on call' : ''}`, name);
    option.selected = name === me;
    return option;
  }));
  $('me-avatar').textContent = (names[me] ?? me).split(' ').map((w) => w[0]).join('').slice(0, 2).toUpperCase();
  select.addEventListener('change', () => {
    const next = new URLSearchParams(location.search);
    next.set('as', select.value);
    location.search = next.toString();
  });
  panel.items.clear(); // redraw names
  schedule();
});

Promise.all([kpis.ready, ticks.ready, alerts.ready]).then(() => {
  document.body.dataset.ready = 'true';
  schedule();
});

window.dashboard = {
  client, me, lag, kpis, ticks, alerts,
  get orders() { return orders; },
  get renders() { return renders; },
};
