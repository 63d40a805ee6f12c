// The alerts panel: open alerts first, each with an Acknowledge button. Acknowledging is a
// client write (optimistic: the client shows it at once and rolls it back if the server
// refuses); a refusal's message appears under the alert and in the panel's banner.
import { el, formatClock } from './format.js';

const SEVERITY = { critical: 'Critical', warning: 'Warning', info: 'Info' };

export class AlertsPanel {
  /** `acknowledge(id)` is called when a button is pressed. */
  constructor({ list, empty, banner, acknowledge, operators }) {
    this.list = list;
    this.empty = empty;
    this.banner = banner;
    this.operators = operators;
    this.items = new Map(); // id -> {node, doc, key}
    this.bannerTimer = null;
    list.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-ack]');
      if (button && !button.disabled) acknowledge(button.dataset.ack);
    });
  }

  showError(message) {
    clearTimeout(this.bannerTimer);
    this.banner.textContent = message;
    this.banner.hidden = false;
    this.bannerTimer = setTimeout(() => { this.banner.hidden = true; }, 10_000);
  }

  /** `pending`: ids being acknowledged; `errors`: id -> the last refusal's message. */
  render(docs, { pending, errors }) {
    const next = new Map();
    const ordered = docs.map((doc) => {
      const id = String(doc.id);
      if (doc.acknowledged) errors.delete(id); // acknowledged after all (by someone): moot
      const state = `${pending.has(id)}|${errors.get(id) ?? ''}`;
      let item = this.items.get(id);
      if (!item || item.doc !== doc || item.state !== state) {
        const node = item?.node ?? el('li');
        this.fill(node, doc, pending.has(id), errors.get(id));
        if (!item && this.primed) node.animate([{ opacity: 0, transform: 'translateY(-4px)' }, { opacity: 1, transform: 'none' }], { duration: 300 });
        item = { node, doc, state };
      }
      next.set(id, item);
      return item.node;
    });
    this.items = next;
    const current = [...this.list.children];
    if (current.length !== ordered.length || current.some((node, i) => node !== ordered[i])) {
      this.list.replaceChildren(...ordered);
    }
    this.empty.hidden = docs.length > 0;
    this.primed = true;
  }

  fill(node, alert, pending, error) {
    node.className = `alert severity-${alert.severity}${alert.acknowledged ? ' acknowledged' : ''}`;
    node.dataset.id = alert.id;
    node.dataset.severity = alert.severity;
    node.dataset.acknowledged = String(alert.acknowledged);
    const meta = [formatClock(alert.created_at)];
    if (alert.order_id && !alert.message.includes(`#${alert.order_id}`)) meta.push(`order #${alert.order_id}`);
    let action = null;
    if (alert.acknowledged) {
      const who = alert.acknowledged_by === 'auto-resolve'
        ? 'auto-resolved'
        : `acknowledged by ${this.operators[alert.acknowledged_by] ?? alert.acknowledged_by ?? 'someone'}`;
      meta.push(`${who}${alert.acknowledged_at ? ` at ${formatClock(alert.acknowledged_at)}` : ''}`);
    } else {
      action = el('button', { type: 'button', className: 'ack', disabled: pending, textContent: pending ? 'Acknowledging…' : 'Acknowledge' });
      action.dataset.ack = String(alert.id);
    }
    node.replaceChildren(
      el('span', { className: 'severity' }, SEVERITY[alert.severity] ?? alert.severity),
      el('div', { className: 'body' },
        el('p', { className: 'message' }, alert.message),
        el('p', { className: 'meta' }, meta.join(' · ')),
        error ? el('p', { className: 'alert-error', role: 'alert' }, error) : null,
        action ? el('div', { className: 'actions' }, action) : null),
    );
  }
}
