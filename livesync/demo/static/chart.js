// The live chart (uPlot, loaded as a classic script from /static/vendor/): orders and net
// revenue per second over the last `span` seconds, sliding with the clock.

import { formatClock } from './format.js';

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

export function createChart(container, span = 120) {
  const { uPlot } = globalThis;
  const height = () => container.clientHeight || 260; // style.css sizes the container
  const grid = { stroke: css('--grid') || '#eef0f5', width: 1 };
  const axis = { stroke: css('--muted') || '#6b7280', grid, ticks: { show: false }, font: '12px var(--font)' };
  const chart = new uPlot({
    width: container.clientWidth || 600,
    height: height(),
    padding: [8, 4, 0, 4],
    legend: { show: false },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    scales: {
      x: { time: true },
      orders: { range: (u, min, max) => [0, Math.max(4, Math.ceil(max * 1.2))] },
      revenue: { range: (u, min, max) => [Math.min(0, min * 1.2), Math.max(100, max * 1.2)] },
    },
    axes: [
      { ...axis, space: 80, size: 30, values: (u, splits) => splits.map((t) => formatClock(t * 1000)) },
      { ...axis, scale: 'orders', size: 40, values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v : '')) },
      {
        ...axis, scale: 'revenue', side: 1, size: 64, grid: { show: false },
        values: (u, vals) => vals.map((v) => `${v < 0 ? '−' : ''}$${Math.abs(v) >= 1000 ? `${(Math.abs(v) / 1000).toFixed(1)}k` : Math.abs(v).toFixed(0)}`),
      },
    ],
    series: [
      {},
      {
        label: 'Orders', scale: 'orders', stroke: css('--accent'), fill: css('--accent-soft'), width: 0,
        paths: uPlot.paths.bars({ size: [0.7, 16] }),
      },
      { label: 'Net revenue', scale: 'revenue', stroke: css('--green'), width: 2 },
    ],
  }, [[], [], []], container);

  new ResizeObserver(() => chart.setSize({ width: container.clientWidth, height: height() })).observe(container);

  return {
    /** Redraw from the `ticks` documents; seconds with no document are zeros. */
    update(ticks, now = Math.floor(Date.now() / 1000)) {
      const bySecond = new Map(ticks.map((t) => [t.second, t]));
      const xs = [], orders = [], revenue = [];
      for (let s = now - span + 1; s <= now; s += 1) {
        const tick = bySecond.get(s);
        xs.push(s);
        orders.push(tick ? tick.orders : 0);
        revenue.push(tick ? Number(tick.revenue) : 0);
      }
      chart.setData([xs, orders, revenue]);
    },
  };
}
