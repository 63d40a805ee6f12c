// Formatting for the dashboard: money from livesync's decimal strings, counts, times.

const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const moneyShort = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', notation: 'compact', maximumFractionDigits: 1,
});
const count = new Intl.NumberFormat('en-US');
const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });

/** `"1234.50"` (a Numeric column, sent as text) -> `$1,234.50`. */
export const formatMoney = (value) => money.format(Number(value ?? 0));

/** Large amounts compactly: `$1.2M`; below 100,000 in full. */
export const formatMoneyShort = (value) => {
  const number = Number(value ?? 0);
  return Math.abs(number) >= 100_000 ? moneyShort.format(number) : money.format(number);
};

export const formatCount = (value) => count.format(Number(value ?? 0));

/** An ISO 8601 instant (or epoch milliseconds) -> local wall time `14:03:27`. */
export const formatClock = (when) => (when ? clock.format(new Date(when)) : '');

export const STATUS_LABELS = { new: 'New', paid: 'Paid', shipped: 'Shipped', refunded: 'Refunded' };

/** `el('td', {className: 'num'}, 'text', child)`: a small DOM builder. */
export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
