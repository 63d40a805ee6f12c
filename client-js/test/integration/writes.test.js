// Client writes against the real gateway (`livesync serve tests.js.app:app`) on PostgreSQL +
// Redis: optimistic writes acknowledged and seen by other clients; every rejection leaves the
// database unchanged, reaches no other client, and rolls the writer's cache back exactly;
// offline writes and lost acks are applied once; methods; channels.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { connect } from '../../src/index.js';
import { TIMEOUT, environment, eventually, services, startGateway, startWriter } from './harness.js';

const skip = await services();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const plain = (x) => JSON.parse(JSON.stringify(x));

/** A `ws` WebSocket class whose incoming frames the test can hold back, and cut off. */
function network() {
  const sockets = [];
  class Held extends WebSocket {
    constructor(...args) {
      super(...args);
      this.held = null;
      sockets.push(this);
    }
    get onmessage() {
      return super.onmessage;
    }
    set onmessage(fn) {
      this.deliver = fn;
      super.onmessage = (event) => (this.held ? this.held.push(event) : fn(event));
    }
  }
  return {
    WebSocket: Held,
    /** Hold back what the server sends on the current connection. */
    hold: () => { sockets.at(-1).held = []; },
    /** Deliver what was held, and stop holding. */
    release: () => {
      const ws = sockets.at(-1);
      const held = ws.held;
      ws.held = null;
      for (const event of held) ws.deliver(event);
    },
    /** Drop the connection (what was held is lost with it). */
    cut: () => sockets.at(-1).terminate(),
  };
}

/** Record a view's change events. */
function changes(view) {
  const seen = [];
  view.on('change', (c) => seen.push(plain(c)));
  return seen;
}

async function subscribed(client, name) {
  const sub = client.subscribe(name);
  await sub.ready;
  return sub;
}

describe('client writes against a real gateway', { skip }, () => {
  let env, writer, gateway, alice, bob, carol;

  before(async () => {
    env = environment();
    writer = await startWriter(env);
    gateway = await startGateway(env);
    alice = connect(gateway.url, { WebSocket, token: '1' });
    bob = connect(gateway.url, { WebSocket, token: '2' });
    // Carol checks nothing locally: every write she makes reaches the server, so its
    // rejections exercise the optimistic layer.
    carol = connect(gateway.url, { WebSocket, token: '1', schemas: false });
  });

  after(async () => {
    for (const client of [alice, bob, carol]) client?.close();
    await gateway?.stop();
    await writer?.stop();
  });

  test('accepted writes are shown at once, acknowledged, and seen by another client', async () => {
    const mine = await subscribed(alice, 't_todos');
    const theirs = await subscribed(bob, 't_todos');
    const todos = alice.collection('t_todos');

    const insert = alice.insert('t_todos', { owner_id: 1, title: 'milk' });
    const [shown] = todos.docs;
    assert.match(shown.id, UUID);
    assert.deepEqual(shown, { id: shown.id, owner_id: 1, title: 'milk', done: false }, 'at once, with the schema default');
    const { id, v } = await insert;
    assert.deepEqual([id, v], [shown.id, 1]);
    await eventually(() => theirs.get(id)?.title === 'milk', 'bob sees the insert');
    assert.equal(theirs.get(id).created, 'born');

    const done = alice.update('t_todos', id, { done: true }, { fence: true });
    assert.equal(mine.get(id).done, true, 'at once');
    assert.deepEqual(await done, { id, v: 2 });
    assert.deepEqual(mine.get(id), { id, owner_id: 1, title: 'milk', done: true, tags: [], created: 'born' }, "the server's copy, at the fence");
    await eventually(() => theirs.get(id)?.done === true, 'bob sees the update');

    await alice.update('t_todos', id, [{ op: 'add', path: '/tags/-', value: 'dairy' }], { fence: true });
    assert.deepEqual(mine.get(id).tags, ['dairy'], 'applied once');
    await eventually(() => theirs.get(id)?.tags?.length === 1, 'bob sees the patch');

    const removal = alice.remove('t_todos', id);
    assert.equal(mine.get(id), undefined, 'gone at once');
    assert.deepEqual(await removal, { id, v: 4 });
    await eventually(() => theirs.get(id) === undefined, 'bob sees the removal');
    assert.deepEqual((await writer.send({ op: 'dump' })).todos, []);
    mine.unsubscribe();
    theirs.unsubscribe();
  });

  test('server ids: a temporary id until the ack names the real one', async () => {
    const mine = await subscribed(alice, 't_items');
    const theirs = await subscribed(bob, 't_items');
    const items = alice.collection('t_items');
    const insert = alice.insert('t_items', { title: 'box' });
    const temp = items.docs.find((d) => d.title === 'box');
    assert.match(temp.id, /^tmp-/);
    const again = alice.update('t_items', temp.id, { qty: 3 }); // waits for the real id
    const { id } = await insert;
    assert.match(id, /^\d+$/);
    assert.equal(items.get(temp.id), undefined);
    assert.equal(items.get(id).id, Number(id));
    assert.deepEqual(await again, { id, v: 2 });
    await eventually(() => mine.get(id)?.qty === 3 && theirs.get(id)?.qty === 3, 'both see it');
    assert.deepEqual(items.get(id), mine.get(id));
    mine.unsubscribe();
    theirs.unsubscribe();
  });

  test('a method call returns its result; with {fence: true} its changes are in the cache', async () => {
    const items = await subscribed(alice, 't_items');
    const result = await alice.call('add_items', { titles: ['cup', 'saucer'], qty: 2 }, { fence: true });
    assert.equal(result.by, 1);
    assert.equal(result.ids.length, 2);
    assert.deepEqual(result.ids.map((n) => items.get(String(n))?.title), ['cup', 'saucer']);
    await assert.rejects(alice.call('add_items', { qty: 'lots' }), (err) => {
      assert.equal(err.code, 'invalid');
      assert.deepEqual(err.fields.map((f) => f.path).sort(), ['/qty', '/titles']);
      return true;
    });
    await assert.rejects(alice.call('no_such_method'), { code: 'not-found' });
    items.unsubscribe();
  });

  test('every rejection: the database is unchanged, no other client saw anything, the cache is rolled back', async () => {
    await writer.send({ op: 'insert', items: [{ id: 1001, title: 'full', qty: 5 }, { id: 1002, title: 'locked', qty: 0 }] });
    const todo = (await alice.insert('t_todos', { owner_id: 1, title: 'mine' }, { fence: true })).id;
    const views = {};
    for (const [who, client] of Object.entries({ alice, bob, carol })) {
      views[who] = { todos: await subscribed(client, 't_todos'), items: await subscribed(client, 't_items') };
    }
    await eventually(() => Object.values(views).every((v) => v.todos.get(todo) && v.items.get('1002')), 'everyone holds the documents');
    const bobSaw = { todos: changes(views.bob.todos), items: changes(views.bob.items) };
    const clients = { alice, carol };
    const state = (who) => plain([views[who].todos.docs, views[who].items.docs, clients[who].collection('t_todos').docs, clients[who].collection('t_items').docs]);
    const before = { db: await writer.send({ op: 'dump' }), carol: state('carol'), alice: state('alice') };
    const carolSaw = changes(carol.collection('t_todos'));

    const refused = async (promise, code, paths) => {
      const err = await promise.then(() => assert.fail(`accepted; expected ${code}`), (e) => e);
      assert.equal(err.code, code, err.message);
      if (paths) assert.deepEqual(err.fields.map((f) => f.path), paths);
    };
    // Refused by the client itself: never sent, never shown.
    await refused(alice.insert('t_todos', { owner_id: 1, title: '' }), 'invalid', ['/title']);
    await refused(alice.update('t_todos', todo, { owner_id: 2 }), 'invalid', ['/owner_id']);
    await refused(alice.update('t_items', '1001', { qty: -1 }), 'invalid', ['/qty']);
    await refused(alice.insert('t_nope', { x: 1 }), 'forbidden');
    assert.deepEqual(state('alice'), before.alice);
    // Refused by the server: shown at once, then taken back.
    const n = carolSaw.length;
    const update = carol.update('t_todos', todo, { title: '' });
    assert.equal(carol.collection('t_todos').get(todo).title, '', 'shown at once');
    await refused(update, 'invalid', ['/title']);
    await refused(carol.update('t_todos', todo, { owner_id: 2 }), 'invalid', ['/owner_id']);
    await refused(carol.update('t_todos', todo, [{ op: 'test', path: '/title', value: 'other' }, { op: 'replace', path: '/done', value: true }]), 'invalid');
    await refused(carol.insert('t_todos', { owner_id: 2, title: 'for bob' }), 'forbidden');
    await refused(carol.insert('t_nope', { x: 1 }), 'forbidden');
    await refused(carol.remove('t_items', '1001'), 'forbidden'); // not empty
    await refused(carol.update('t_items', '1002', { title: 'free' }), 'forbidden'); // locked
    await refused(carol.insert('t_todos', { id: todo, owner_id: 1, title: 'again' }), 'conflict');
    await refused(carol.update('t_todos', 'c0000000-0000-4000-8000-000000000000', { title: 'x' }), 'not-found');
    await refused(carol.remove('t_items', '999999'), 'not-found');
    await refused(carol.call('explode'), 'internal');
    assert.deepEqual(state('carol'), before.carol, "carol's cache is the server's state again");
    assert.ok(carolSaw.length > n, 'carol saw her writes come and go');
    assert.deepEqual(await writer.send({ op: 'dump' }), before.db, 'the database, and the stored acks, are unchanged');

    // A write after all that: it is the first thing bob sees, so nothing came before it.
    await carol.update('t_todos', todo, { title: 'marker' });
    await eventually(() => views.bob.todos.get(todo)?.title === 'marker', 'bob sees the marker');
    assert.deepEqual(bobSaw, { todos: [{ added: [], changed: [plain(views.bob.todos.get(todo))], removed: [] }], items: [] });
    for (const v of Object.values(views)) {
      v.todos.unsubscribe();
      v.items.unsubscribe();
    }
  });

  test('a stale update is a conflict; the cache shows the newer server copy', async () => {
    const net = network();
    const dave = connect(gateway.url, { WebSocket: net.WebSocket, token: '1' });
    try {
      const { id } = await dave.insert('t_todos', { owner_id: 1, title: 'v1' }, { fence: true });
      const todos = await subscribed(dave, 't_todos');
      assert.equal(todos.get(id).title, 'v1');
      net.hold(); // dave does not hear of the next change in time
      await writer.send({ op: 'todo', id, set: { title: 'v2 by someone else' } });
      const stale = dave.update('t_todos', id, { done: true });
      assert.deepEqual([todos.get(id).title, todos.get(id).done], ['v1', true]);
      net.release();
      await assert.rejects(stale, (err) => err.code === 'conflict' && err.v === 2);
      await eventually(() => todos.get(id)?.title === 'v2 by someone else', 'the newer copy');
      assert.equal(todos.get(id).done, false);
      assert.deepEqual(todos.get(id), dave.collection('t_todos').get(id));
    } finally {
      dave.close();
    }
  });
});

describe('offline writes and lost acks', { skip, timeout: 12 * TIMEOUT }, () => {
  test('a write made while the gateway is down is sent after it restarts, and applied once', async () => {
    const env = environment();
    const writer = await startWriter(env);
    const gateway = await startGateway(env);
    const client = connect(gateway.url, { WebSocket, token: '1', backoff: () => 200 });
    const other = connect(gateway.url, { WebSocket, token: '2', backoff: () => 200 });
    try {
      const theirs = await subscribed(other, 't_todos');
      await subscribed(client, 't_todos');
      const stored = (await writer.send({ op: 'dump' })).requests; // other runs' acks stay stored
      await gateway.stop('SIGKILL'); // a graceful stop closes with 1000, which clients do not retry
      await eventually(() => client.status === 'offline' || client.status === 'connecting', 'the client notices');
      const insert = client.insert('t_todos', { owner_id: 1, title: 'written offline' });
      insert.catch(() => {}); // if a step below fails, report that failure, not this promise's
      const shown = client.collection('t_todos').docs.map((d) => d.title);
      assert.ok(shown.includes('written offline'), `shown while offline: ${JSON.stringify(shown)}`);
      await gateway.start();
      const { id } = await insert;
      await eventually(() => theirs.get(id), 'the other client sees it');
      const { todos, requests } = await writer.send({ op: 'dump' });
      assert.deepEqual(todos.map((t) => [t.id, t.title]), [[id, 'written offline']], 'only this write, once');
      assert.equal(requests, stored + 1);
    } finally {
      client.close();
      other.close();
      await gateway.stop();
      await writer.stop();
    }
  });

  test('a write whose ack was lost with the connection is sent again, with the same id, and applied once', async () => {
    const env = environment();
    const writer = await startWriter(env);
    const gateway = await startGateway(env);
    const net = network();
    const client = connect(gateway.url, { WebSocket: net.WebSocket, token: '1', backoff: () => 200 });
    try {
      const todos = await subscribed(client, 't_todos');
      const stored = (await writer.send({ op: 'dump' })).requests;
      net.hold();
      const insert = client.insert('t_todos', { owner_id: 1, title: 'once' });
      const method = client.call('add_items', { titles: ['once'] });
      for (const pending of [insert, method]) pending.catch(() => {}); // report a failing step below, not these
      await eventually(async () => {
        const { todos: rows, items } = await writer.send({ op: 'dump' });
        return rows.length === 1 && items.length === 1;
      }, 'both committed');
      net.cut(); // the acks, held back, are lost
      const { id } = await insert;
      const { ids } = await method;
      const { todos: rows, items, requests } = await writer.send({ op: 'dump' });
      assert.deepEqual(rows.map((t) => t.id), [id]);
      assert.deepEqual(items.map((i) => Number(i.id)), ids, 'the stored result, not a second run');
      assert.equal(requests, stored + 2);
      await eventually(() => todos.get(id)?.created === 'born', "the server's copy");
    } finally {
      client.close();
      await gateway.stop();
      await writer.stop();
    }
  });
});

describe('channels', { skip }, () => {
  test('join, messages from another process, leave; joined again after a reconnect', async () => {
    const env = environment();
    const writer = await startWriter(env);
    const gateway = await startGateway(env);
    const client = connect(gateway.url, { WebSocket, token: '1', backoff: () => 200 });
    const anonymous = connect(gateway.url, { WebSocket });
    const got = [];
    client.on('message', (m) => got.push(m));
    const say = (channel, text) => writer.send({ op: 'send', channel, event: 'said', data: { text } });
    try {
      await client.join('room:1');
      await client.join('room:2');
      await assert.rejects(client.join('lobby'), { code: 'not-found' });
      await assert.rejects(anonymous.join('room:1'), { code: 'forbidden' });
      await say('room:1', 'hi');
      await eventually(() => got.length === 1, 'the message');
      assert.deepEqual(got, [{ event: 'said', data: { text: 'hi' }, channel: 'room:1' }]);

      await gateway.stop('SIGKILL');
      await gateway.start();
      await eventually(() => client.status === 'online', 'back online');
      // Joined again at the handshake; delivery is at most once, so say it until heard.
      await eventually(async () => {
        await say('room:1', 'again');
        return got.some((m) => m.data.text === 'again');
      }, 'a message after the reconnect');

      await client.leave('room:1');
      await say('room:1', 'not for you');
      await say('room:2', 'marker');
      await eventually(() => got.some((m) => m.data.text === 'marker'), 'the marker');
      assert.ok(!got.some((m) => m.data.text === 'not for you'), 'nothing from a channel left');
    } finally {
      client.close();
      anonymous.close();
      await gateway.stop();
      await writer.stop();
    }
  });
});
