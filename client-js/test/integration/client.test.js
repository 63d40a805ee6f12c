// The Node client against the real Python gateway (`livesync serve`) on PostgreSQL + Redis:
// ORM writes made by a separate Python process must arrive in the client's cache.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { connect } from '../../src/index.js';
import {
  environment, eventually, services, startGateway, startRedis, startWriter,
} from './harness.js';

const skip = await services();

const ids = (docs) => docs.map((d) => d.id).sort((a, b) => a - b);

describe('a Node client follows ORM writes', { skip }, () => {
  let env, writer, gateway, client;

  before(async () => {
    env = environment();
    writer = await startWriter(env);
    gateway = await startGateway(env);
    client = connect(gateway.url, { WebSocket });
  });

  after(async () => {
    client?.close();
    await gateway?.stop();
    await writer?.stop();
  });

  test('insert, update, nested JSON, delete, bulk update; a rollback sends nothing', async () => {
    await writer.send({ op: 'insert', items: [{ id: 1, title: 'first', qty: 1 }] });
    const all = client.subscribe('t_items');
    await all.ready;
    assert.equal(client.status, 'online');
    assert.deepEqual(all.docs.map((d) => [d.id, d.title]), [[1, 'first']]);

    const seen = [];
    all.on('change', (changes) => seen.push(changes));

    await writer.send({ op: 'insert', items: [{ id: 2, title: 'second', qty: 5 }, { id: 3, title: 'third', qty: 7 }] });
    await eventually(() => all.docs.length === 3, 'two inserts');
    // One transaction, one change event with both documents: never half a transaction.
    assert.deepEqual(ids(seen.at(-1).added), [2, 3]);

    await writer.send({ op: 'update', id: 1, set: { title: 'renamed' } });
    await eventually(() => all.get('1')?.title === 'renamed', 'update');

    await writer.send({ op: 'json', id: 2, path: ['deep', 'er'], value: [1, { x: true }] });
    await eventually(() => all.get('2')?.data?.deep?.er?.[1]?.x === true, 'nested JSON update');

    await writer.send({ op: 'delete', id: 3 });
    await eventually(() => all.get('3') === undefined, 'delete');

    await writer.send({ op: 'bulk', min_qty: 0, qty: 42 });
    await eventually(() => all.docs.every((d) => d.qty === 42), 'bulk update');

    const before = seen.length;
    await writer.send({ op: 'rollback', items: [{ id: 99, title: 'never', qty: 1 }] });
    await writer.send({ op: 'update', id: 1, set: { title: 'after the rollback' } });
    await eventually(() => all.get('1')?.title === 'after the rollback', 'the write after the rollback');
    assert.equal(all.get('99'), undefined);
    assert.ok(seen.slice(before).every((c) => !c.added.some((d) => d.id === 99)));
    assert.deepEqual(ids(client.collection('t_items').docs), [1, 2]);
  });

  test('a filtered publication sends documents that enter and leave it', async () => {
    const big = client.subscribe('items_min_qty', { min_qty: 50 });
    await big.ready;
    const start = ids(big.docs);
    await writer.send({ op: 'update', id: 2, set: { qty: 60 } });
    await eventually(() => big.get('2')?.qty === 60, 'enter');
    assert.deepEqual(ids(big.docs), [...start, 2].sort((a, b) => a - b));
    await writer.send({ op: 'update', id: 2, set: { qty: 1 } });
    await eventually(() => big.get('2') === undefined, 'leave');
    // The document left this subscription only: the whole-collection one still holds it.
    assert.equal(client.collection('t_items').get('2')?.qty, 1);
    big.unsubscribe();
  });

  test('a window keeps its order and refills when a document leaves', async () => {
    await writer.send({
      op: 'insert',
      items: [{ id: 10, title: 'a', qty: 100 }, { id: 11, title: 'b', qty: 90 }, { id: 12, title: 'c', qty: 80 }, { id: 13, title: 'd', qty: 70 }],
    });
    const top = client.subscribe('top_items', { n: 3 });
    await top.ready;
    assert.deepEqual(top.docs.map((d) => d.id), [10, 11, 12]);
    await writer.send({ op: 'update', id: 13, set: { qty: 95 } });
    await eventually(() => top.docs.map((d) => d.id).join() === '10,13,11', 'a newcomer enters in order');
    await writer.send({ op: 'delete', id: 10 });
    await eventually(() => top.docs.map((d) => d.id).join() === '13,11,12', 'the next one is fetched');
    top.unsubscribe();
  });
});

describe('faults', { skip }, () => {
  test('a restarted gateway: the client reconnects, resumes, and gets what it missed', async () => {
    const env = environment();
    const writer = await startWriter(env);
    const gateway = await startGateway(env);
    const client = connect(gateway.url, { WebSocket, backoff: () => 200 });
    const statuses = [];
    client.on('status', (s) => statuses.push(s));
    try {
      await writer.send({ op: 'insert', items: [{ id: 1, title: 'one', qty: 1 }] });
      const all = client.subscribe('t_items');
      await all.ready;
      await eventually(() => all.get('1'), 'first document');
      const resumes = [];
      all.on('ready', (info) => resumes.push(info.resumed));

      await gateway.stop('SIGKILL');
      await eventually(() => client.status !== 'online', 'the client notices');
      await writer.send({ op: 'insert', items: [{ id: 2, title: 'missed', qty: 2 }] });
      await gateway.start();

      await eventually(() => all.get('2')?.title === 'missed', 'the missed write');
      await eventually(() => client.status === 'online', 'back online');
      assert.deepEqual(resumes, [true]); // resumed from its position, not a fresh snapshot
      assert.ok(statuses.includes('connecting') || statuses.includes('offline'));
    } finally {
      client.close();
      await gateway.stop();
      await writer.stop();
    }
  });

  test('Redis restarted empty (a new epoch): the client resyncs and converges', async () => {
    const redis = await startRedis();
    const env = environment({ LIVESYNC_BROKER_URL: redis.url });
    const writer = await startWriter(env);
    const gateway = await startGateway(env);
    const client = connect(gateway.url, { WebSocket, backoff: () => 200 });
    try {
      await writer.send({ op: 'insert', items: [{ id: 1, title: 'one', qty: 1 }] });
      const all = client.subscribe('t_items');
      await all.ready;
      await eventually(() => all.get('1'), 'first document');
      const resets = [];
      all.on('reset', (info) => resets.push(info));

      await redis.stop();
      await writer.send({ op: 'insert', items: [{ id: 2, title: 'while redis was down', qty: 2 }] });
      await redis.start();
      await writer.send({ op: 'update', id: 1, set: { title: 'after' } });

      await eventually(() => all.get('2') && all.get('1')?.title === 'after', 'convergence');
      assert.ok(resets.length >= 1, 'the subscription was reset');
      assert.deepEqual(ids(all.docs), [1, 2]);
    } finally {
      client.close();
      await gateway.stop();
      await writer.stop();
      await redis.stop();
    }
  });
});
