// The collaborative to-do list: one subscription (`todos` of this page's list), writes with
// the client's optimistic, validated writes. No build step: the client is imported from
// the gateway (/live/client/).
//
// What is shown is `client.collection('todos')`: the server's documents with this page's
// pending writes on top, so an added to-do shows at once (a subscription shows only what
// the server sent). A write the client's JSON Schema check refuses (an empty or too long
// title) is never sent; one the server refuses (app.py: a blocked word) is rolled back by
// the client. Either way the reason is shown next to the field.
//
// `window.todo` exposes the client and the views to the browser tests.
import { connect } from '/live/client/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const list = params.get('list') || 'home';

const client = connect('/live');
const subscription = client.subscribe('todos', { list });
const todos = client.collection('todos');

const editing = new Map(); // id -> {draft} while its title is being edited
const errors = new Map(); // id -> the last refused write's message
const pending = new Set(); // ids with a write in flight

// ------------------------------------------------------------------ connection
// client.status as a person reads it; data-status carries the raw value.
function watchConnection(node) {
  const label = node.querySelector('.label');
  let wasOnline = false;
  let retrying = true;
  const show = (status) => {
    if (status === 'online') wasOnline = true;
    if (status !== 'offline') retrying = true;
    let text;
    if (status === 'online') text = 'live';
    else if (status === 'resyncing') text = 'catching up…';
    else if (status === 'offline' && !retrying) text = 'offline';
    else text = wasOnline ? 'reconnecting…' : 'connecting…';
    node.dataset.status = status;
    label.textContent = text;
    node.title = `client.status: ${status}`;
  };
  client.on('status', show);
  client.on('disconnect', ({ retry }) => { retrying = retry; show(client.status); });
  show(client.status);
}
watchConnection($('connection'));

// ------------------------------------------------------------------ errors
/** A refusal as a sentence: the schema's field messages, or the server's message. */
function describe(err) {
  if (err.code === 'invalid' && err.fields?.length) {
    const title = err.fields.find((f) => f.path === '/title');
    if (title) {
      if (/>=|at least|minLength|too short|min/i.test(title.message)) return 'A title cannot be empty.';
      if (/<=|at most|maxLength|too long|max/i.test(title.message)) return 'A title can be at most 120 characters.';
      return `Title ${title.message}.`;
    }
    return err.fields.map((f) => `${f.path || 'document'}: ${f.message}`).join('; ');
  }
  if (err.code === 'forbidden') return `Not saved: ${err.message}.`;
  if (err.code === 'conflict') return 'Someone changed this meanwhile; try again.';
  return `Not saved: ${err.message}`;
}

function refused(err) {
  document.body.dataset.lastError = err.code ?? 'error';
  return describe(err);
}

// ------------------------------------------------------------------ writes
const addError = $('add-error');
function showAddError(message) {
  addError.textContent = message ?? '';
  addError.hidden = !message;
  $('new-title').setAttribute('aria-invalid', String(Boolean(message)));
}

$('add').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('new-title');
  const title = input.value.trim();
  const last = visible().at(-1);
  const doc = { list, title, done: false, position: (last?.position ?? 0) + 1 };
  showAddError(null);
  try {
    const promise = client.insert('todos', doc);
    input.value = ''; // shown at once (optimistic); put back below if refused
    await promise;
  } catch (err) {
    if (!input.value) input.value = title;
    showAddError(refused(err));
    input.focus();
  }
});
$('new-title').addEventListener('input', () => showAddError(null));

async function write(id, run) {
  pending.add(id);
  errors.delete(id);
  render();
  try {
    await run();
    return true;
  } catch (err) {
    errors.set(id, refused(err));
    return false;
  } finally {
    pending.delete(id);
    render();
  }
}

const toggle = (todo) => write(todo.id, () => client.update('todos', todo.id, { done: !todo.done }));
const remove = (todo) => write(todo.id, () => client.remove('todos', todo.id));

async function save(id) {
  const state = editing.get(id);
  const todo = todos.get(id);
  if (!state || !todo) return;
  const title = state.draft.trim();
  editing.delete(id);
  if (title === todo.title) { errors.delete(id); render(); return; }
  const ok = await write(id, () => client.update('todos', id, { title }));
  if (!ok && !editing.has(id) && todos.get(id)) {
    editing.set(id, { draft: state.draft }); // keep the draft open next to its error
    render();
  }
}

function startEditing(id) {
  const todo = todos.get(id);
  if (!todo || editing.has(id)) return;
  editing.set(id, { draft: todo.title, focus: true });
  render();
}

function cancelEditing(id) {
  editing.delete(id);
  errors.delete(id);
  render();
}

// ------------------------------------------------------------------ drawing
/** This list's to-dos, in order (position, then creation; optimistic inserts last). */
function visible() {
  return todos.docs
    .filter((t) => t.list === list)
    .sort((a, b) => a.position - b.position
      || String(a.created_at ?? '\uffff').localeCompare(String(b.created_at ?? '\uffff')));
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c != null));
  return node;
}

const listNode = $('todos');
const nodes = new Map(); // id -> {node, key}

function item(todo) {
  const id = todo.id;
  const edit = editing.get(id);
  const error = errors.get(id);
  const busy = pending.has(id);
  const node = el('li', { className: `todo${todo.done ? ' done' : ''}${edit ? ' editing' : ''}${error ? ' has-error' : ''}` });
  node.dataset.id = id;
  node.dataset.done = String(todo.done);
  if (busy) node.dataset.pending = 'true';

  const check = el('input', { type: 'checkbox', className: 'toggle', checked: todo.done });
  check.setAttribute('aria-label', `Mark "${todo.title}" ${todo.done ? 'not done' : 'done'}`);
  check.addEventListener('change', () => toggle(todo));

  let main;
  if (edit) {
    const input = el('input', { type: 'text', className: 'edit', value: edit.draft });
    input.setAttribute('aria-label', 'Title');
    input.setAttribute('aria-invalid', String(Boolean(error)));
    input.addEventListener('input', () => { edit.draft = input.value; });
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') { event.preventDefault(); save(id); }
      if (event.key === 'Escape') { event.preventDefault(); cancelEditing(id); }
    });
    if (edit.focus) {
      edit.focus = false;
      queueMicrotask(() => { input.focus(); input.select(); });
    }
    main = el('div', { className: 'main' }, input,
      el('button', { type: 'button', className: 'save', textContent: 'Save', onclick: () => save(id) }),
      el('button', { type: 'button', className: 'cancel ghost', textContent: 'Cancel', onclick: () => cancelEditing(id) }));
  } else {
    const title = el('span', { className: 'title', textContent: todo.title, title: 'Double-click to rename' });
    title.addEventListener('dblclick', () => startEditing(id));
    main = el('div', { className: 'main' }, title,
      el('button', { type: 'button', className: 'rename ghost icon', title: 'Rename', textContent: '✎', onclick: () => startEditing(id) }),
      el('button', { type: 'button', className: 'delete ghost icon', title: 'Delete', textContent: '✕', onclick: () => remove(todo) }));
    main.querySelector('.rename').setAttribute('aria-label', `Rename "${todo.title}"`);
    main.querySelector('.delete').setAttribute('aria-label', `Delete "${todo.title}"`);
  }
  node.append(check, main);
  if (error) node.append(el('p', { className: 'error', role: 'alert', textContent: error }));
  return node;
}

let frame = 0;
let drawn = false;
function render() {
  frame ||= requestAnimationFrame(draw);
}

function draw() {
  frame = 0;
  const shown = visible();
  const next = new Map();
  const ordered = shown.map((todo) => {
    const id = todo.id;
    const edit = editing.get(id);
    // Redraw an item only when something it shows changed (keeps an open editor's focus).
    const key = [todo, Boolean(edit), errors.get(id) ?? '', pending.has(id)];
    let entry = nodes.get(id);
    const fresh = !entry;
    if (!entry || entry.key.some((k, i) => k !== key[i])) entry = { node: item(todo), key };
    if (fresh && drawn) entry.node.classList.add('appear'); // new here: fade in (not on load)
    next.set(id, entry);
    return entry.node;
  });
  for (const id of editing.keys()) if (!next.has(id)) editing.delete(id); // deleted meanwhile
  nodes.clear();
  for (const [id, entry] of next) nodes.set(id, entry);
  const current = [...listNode.children];
  if (current.length !== ordered.length || current.some((node, i) => node !== ordered[i])) {
    listNode.replaceChildren(...ordered);
  }
  const left = shown.filter((t) => !t.done).length;
  $('remaining').textContent = shown.length === 0 ? 'empty' : `${left} of ${shown.length} left`;
  $('empty').hidden = shown.length > 0;
  drawn ||= document.body.dataset.ready === 'true';
}

todos.on('change', render);
$('list-title').textContent = list.replace(/-/g, ' ').replace(/^./, (c) => c.toUpperCase());
document.title = `${$('list-title').textContent} · To-do`;

subscription.ready.then(() => {
  document.body.dataset.ready = 'true';
  render();
}, (err) => showAddError(`Cannot load the list: ${err.message}`));

window.todo = { client, subscription, todos, list, visible };
