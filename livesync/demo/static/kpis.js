// The four KPI tiles: today's totals (one `kpis` document), the last minute (from `ticks`)
// and the open alerts (from the `alerts` window).
import { formatCount, formatMoneyShort } from './format.js';

const $ = (id) => document.getElementById(id);

function set(id, text, value) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
  if (value !== undefined) node.dataset.value = String(value);
}

/** Sum `field` over the ticks of the last `seconds` seconds. */
export function lastSeconds(ticks, field, seconds, now = Date.now() / 1000) {
  let total = 0;
  for (const tick of ticks) if (tick.second > now - seconds) total += Number(tick[field]);
  return total;
}

export function renderKpis({ day, ticks, alerts, alertsFull }) {
  set('kpi-orders', formatCount(day?.orders ?? 0), day?.orders ?? 0);
  set('kpi-orders-hint', `${formatCount(lastSeconds(ticks, 'orders', 60))} in the last minute`);
  set('kpi-revenue', formatMoneyShort(day?.revenue ?? 0), day?.revenue ?? '0');
  const minute = lastSeconds(ticks, 'revenue', 60);
  set('kpi-revenue-hint', `${minute >= 0 ? '+' : '−'}${formatMoneyShort(Math.abs(minute))} in the last minute`);
  set('kpi-refunds', formatCount(day?.refunds ?? 0), day?.refunds ?? 0);
  set('kpi-refunds-hint', `${formatMoneyShort(day?.refunded ?? 0)} refunded`);

  const open = alerts.filter((a) => !a.acknowledged);
  const critical = open.filter((a) => a.severity === 'critical').length;
  set('kpi-alerts', `${open.length}${alertsFull && open.length === alerts.length ? '+' : ''}`, open.length);
  set('kpi-alerts-hint', critical ? `${critical} critical` : open.length ? 'none critical' : 'all clear');
  $('tile-alerts').dataset.level = critical ? 'critical' : open.length ? 'warning' : 'ok';
}
