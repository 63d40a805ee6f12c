// The recent-orders table: one <tr> per document, kept by id, so a change patches a row in
// place (and flashes it) instead of rebuilding the table.
import { STATUS_LABELS, el, formatClock, formatMoney } from './format.js';

function itemsText(items = []) {
  return items.map((i) => `${i.name ?? i.sku}${i.qty > 1 ? ` ×${i.qty}` : ''}`).join(', ');
}

function fill(row, order) {
  const items = itemsText(order.items);
  row.dataset.id = order.id;
  row.dataset.status = order.status;
  row.replaceChildren(
    el('td', { className: 'id' }, `#${order.id}`),
    el('td', { className: 'customer' }, order.customer),
    el('td', { className: 'items', title: items }, items),
    el('td', { className: 'num amount' }, formatMoney(order.amount)),
    el('td', {}, el('span', { className: `badge status-${order.status}` }, STATUS_LABELS[order.status] ?? order.status)),
    el('td', { className: 'num time' }, formatClock(order.created_at)),
  );
}

export class OrdersTable {
  constructor(tbody, empty) {
    this.tbody = tbody;
    this.empty = empty;
    this.rows = new Map(); // id -> {row, doc}
    this.primed = false;
  }

  /** Forget every row (a new filter): the next render draws without flashing. */
  clear() {
    this.rows.clear();
    this.tbody.replaceChildren();
    this.primed = false;
  }

  render(docs) {
    const next = new Map();
    const ordered = [];
    // Flash what changed, unless so much changes at once that flashing would only blur.
    const changed = this.primed ? docs.filter((doc) => this.rows.get(String(doc.id))?.doc !== doc).length : 0;
    const flash = changed > 0 && changed <= 3;
    for (const doc of docs) {
      const key = String(doc.id);
      let entry = this.rows.get(key);
      if (!entry) {
        entry = { row: document.createElement('tr'), doc: null };
      }
      if (entry.doc !== doc) { // documents are immutable: a new object means a change
        fill(entry.row, doc);
        if (flash) {
          const color = entry.doc ? '#fff4cc' : '#eef2ff'; // a change, or a newcomer
          entry.row.animate([{ backgroundColor: color }, { backgroundColor: 'transparent' }], { duration: 700, easing: 'ease-out' });
        }
        entry.doc = doc;
      }
      next.set(key, entry);
      ordered.push(entry.row);
    }
    this.rows = next;
    const current = [...this.tbody.children];
    if (current.length !== ordered.length || current.some((row, i) => row !== ordered[i])) {
      this.tbody.replaceChildren(...ordered);
    }
    this.empty.hidden = docs.length > 0;
    this.primed = true;
  }
}
