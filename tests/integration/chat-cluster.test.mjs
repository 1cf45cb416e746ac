// chat-cluster.test.mjs: chat across two parleyd nodes sharing a real redis-server
// (presence and routing) and one SQLite file (the store; the PostgreSQL backend is the
// production answer for several nodes): a direct message from a user on one node is
// delivered live to a device on the other, acknowledged there, and its delivered and
// read receipts come back across; a message for a device that is offline waits in the
// shared queue and is drained by whichever node the device connects to; copies of a
// sent message and read sync reach the user's devices on the other node; a group with
// members on both nodes gets its events and its fan-out everywhere; a resend through
// the other node is answered with the first message; a device added or revoked through
// one node changes what a send through the other must address at once.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tempDir } from './lib/daemon.mjs';
import { Redis, until, readyz } from './lib/sigclient.mjs';
import { startChat, stopClean, register, addDevice, Client, b64, unb64, directFrame } from './lib/chat.mjs';

describe('chat on two nodes', () => {
  let redis, n1, n2, shared;
  const nodeSets = (name) => [`process.node_id=${name}`, 'presence.backend=redis',
    `presence.redis_url=redis://127.0.0.1:${redis.port}`, `presence.key_prefix=c${process.pid}:`,
    'presence.ttl=2s', 'presence.heartbeat_interval=500ms', 'presence.connect_timeout=1s',
    `store.path=${join(shared, 'parley.db')}`];

  // A device's presence entry reaches Redis just after its auth.result (the gateway
  // posts the registration to the presence thread), so a cross-node send in that
  // instant would find it offline and queue instead of pushing live: wait for the
  // entries of the devices a test expects live delivery to.
  const registered = (dev) => spawnSync('redis-cli', ['-p', String(redis.port), 'EXISTS',
    `c${process.pid}:dev:${dev}`], { encoding: 'utf8' }).stdout.trim() === '1';
  const waitRegistered = (...devs) => until(async () => devs.every(registered), 10000,
    `devices ${devs.join(',')} registered in presence`);

  before(async () => {
    shared = tempDir('parley-chat-shared-');
    redis = await Redis.start();
    n1 = await startChat(nodeSets('n1'));
    n2 = await startChat(nodeSets('n2'));
    await until(async () => await readyz(n1) === 200 && await readyz(n2) === 200, 10000,
      'both nodes ready');
  });
  after(async () => {
    await stopClean(n1);
    await stopClean(n2);
    await redis?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  test('a direct message crosses nodes live; acks and receipts come back', async () => {
    const alice = await register(n1), bob = await register(n2);
    const ca = await Client.connect(n1, alice, { sync: true });
    const cb = await Client.connect(n2, bob, { sync: true });
    await cb.nextType('chat.queue_empty');
    await waitRegistered(alice.device_id, bob.device_id);
    const sent = await ca.ok(directFrame(bob.username, [bob.device_id], 'across'));
    const m = await cb.nextType('chat.message');
    assert.deepEqual([m.message_id, m.from, unb64(m.body)],
      [sent.message_id, alice.username, `across@${bob.device_id}`]);
    await cb.ok({ type: 'chat.ack', upto: m.message_id });
    const r = await ca.nextType('chat.receipt');
    assert.deepEqual([r.receipts[0].message_id, r.receipts[0].status, r.receipts[0].user],
      [sent.message_id, 'delivered', bob.username]);
    await cb.ok({ type: 'chat.read', message_ids: [m.message_id] });
    assert.equal((await ca.nextType('chat.receipt')).receipts[0].status, 'read');
    // The status is the same from either node (one database).
    const st = await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] });
    assert.equal(st.statuses[0].status, 'read');
    ca.close(); cb.close();
  });

  test('a resend through the other node returns the first message (client ids of both nodes)', async () => {
    // Each node keeps the client ids above its idempotency index in memory
    // (chat_index.c): a send the other node committed must be found too.
    const alice = await register(n1), bob = await register(n1);
    const f1 = directFrame(bob.username, [bob.device_id], 'one', 'cross-1');
    const f2 = directFrame(bob.username, [bob.device_id], 'two', 'cross-2');
    let ca = await Client.connect(n1, alice);
    const s1 = await ca.ok(f1);                 // n1 has seen client ids from now on
    ca.close();
    ca = await Client.connect(n2, alice);
    const s2 = await ca.ok(f2);                 // committed by n2
    assert.equal((await ca.ok(f1)).message_id, s1.message_id);
    ca.close();
    ca = await Client.connect(n1, alice);
    for (const [f, s] of [[f2, s2], [f1, s1]]) {
      const again = await ca.ok(f);
      assert.deepEqual([again.message_id, again.sent_at, again.duplicate],
        [s.message_id, s.sent_at, true]);
    }
    ca.close();
    const cb = await Client.connect(n2, bob, { sync: true });
    const got = [];
    for (;;) {
      const x = await cb.next();
      if (x.type === 'chat.queue_empty') break;
      if (x.type === 'chat.message') got.push(unb64(x.body));
    }
    assert.deepEqual(got, [`one@${bob.device_id}`, `two@${bob.device_id}`]);
    cb.close();
  });

  test('copies for the sender\'s device on the other node, and read sync across nodes', async () => {
    const alice = await register(n1), bob = await register(n1);
    const alice2 = await addDevice(n1, alice.username, 'desktop');
    const bob2 = await addDevice(n1, bob.username, 'desktop');
    const ca = await Client.connect(n1, alice, { sync: true });
    const ca2 = await Client.connect(n2, alice2, { sync: true });
    const cb = await Client.connect(n1, bob, { sync: true });
    const cb2 = await Client.connect(n2, bob2, { sync: true });
    for (const c of [ca2, cb, cb2]) await c.nextType('chat.queue_empty');
    await waitRegistered(alice.device_id, alice2.device_id, bob.device_id, bob2.device_id);
    const f = directFrame(bob.username, [bob.device_id, bob2.device_id], 'both');
    f.own = [{ device_id: alice2.device_id, ctype: 1, body: b64('copy') }];
    const sent = await ca.ok(f);
    const copy = await ca2.nextType('chat.message');
    assert.deepEqual([copy.message_id, copy.to, unb64(copy.body)], [sent.message_id, bob.username, 'copy']);
    const m = await cb.nextType('chat.message');
    await cb2.nextType('chat.message');
    await cb.ok({ type: 'chat.read', message_ids: [m.message_id] });
    assert.deepEqual((await cb2.nextType('chat.reads')).message_ids, [m.message_id]);
    assert.equal((await ca2.nextType('chat.receipt')).receipts[0].status, 'read');
    for (const c of [ca, ca2, cb, cb2]) c.close();
  });

  test('a queued message is drained by the node the device connects to', async () => {
    const alice = await register(n1), bob = await register(n1);
    const bob2 = await addDevice(n1, bob.username, 'tablet');
    const ca = await Client.connect(n1, alice);
    const sent = [];
    for (let i = 0; i < 5; i++)
      sent.push((await ca.ok(directFrame(bob.username, [bob.device_id, bob2.device_id], `q${i}`))).message_id);
    // bob's devices come up on different nodes; each drains its own queue in order.
    const c1 = await Client.connect(n2, bob);
    const c2 = await Client.connect(n1, bob2);
    await waitRegistered(alice.device_id, bob.device_id, bob2.device_id);
    for (const [c, dev] of [[c1, bob.device_id], [c2, bob2.device_id]]) {
      assert.equal((await c.sync()).queued, 5);
      const got = [];
      for (let i = 0; i < 5; i++) got.push(await c.nextType('chat.message'));
      assert.deepEqual(got.map((x) => x.message_id), sent);
      assert.deepEqual(got.map((x) => unb64(x.body)), sent.map((_, i) => `q${i}@${dev}`));
      await c.nextType('chat.queue_empty');
      await c.ok({ type: 'chat.ack', upto: sent[4] });
    }
    // delivered once per message, whichever node reported it
    const receipts = [];
    while (receipts.length < 5) receipts.push(...(await ca.nextType('chat.receipt')).receipts);
    assert.deepEqual(receipts.map((x) => x.message_id).sort((a, b) => a - b), sent);
    ca.close(); c1.close(); c2.close();
  });

  test('a device added or revoked through the other node changes the next send at once', async () => {
    // Each node holds device lists in memory (chat_devs.c): the other node's commits
    // must drop them, or a send would go to a revoked device or miss a new one.
    const alice = await register(n1), bob = await register(n1);
    const ca = await Client.connect(n1, alice);
    await ca.ok(directFrame(bob.username, [bob.device_id], 'before'));     // n1 holds bob's list
    await ca.ok(directFrame(bob.username, [bob.device_id], 'again'));
    const bob2 = await addDevice(n2, bob.username, 'tablet');               // committed by n2
    const e = await ca.err(directFrame(bob.username, [bob.device_id], 'x'), 'device_mismatch');
    assert.deepEqual([e.missing, e.extra], [[bob2.device_id], []]);
    await ca.ok(directFrame(bob.username, [bob.device_id, bob2.device_id], 'both'));
    const cb = await Client.connect(n2, bob);
    assert.equal((await cb.ok({ type: 'devices.revoke', device_id: bob2.device_id })).device_id,
      bob2.device_id);
    const e2 = await ca.err(directFrame(bob.username, [bob.device_id, bob2.device_id], 'y'),
      'device_mismatch');
    assert.deepEqual([e2.missing, e2.extra], [[], [bob2.device_id]]);
    await ca.ok(directFrame(bob.username, [bob.device_id], 'after'));
    ca.close(); cb.close();
  });

  test('a group with members on both nodes: events and fan-out reach everyone', async () => {
    const a = await register(n1), b = await register(n2), c = await register(n2);
    const ca = await Client.connect(n1, a, { sync: true });
    const cb = await Client.connect(n2, b, { sync: true });
    const cc = await Client.connect(n2, c, { sync: true });
    for (const cl of [ca, cb, cc]) await cl.nextType('chat.queue_empty');
    await waitRegistered(a.device_id, b.device_id, c.device_id);
    const g = (await ca.ok({ type: 'chat.group.create', name: 'x-node', members: [b.username, c.username] })).group;
    for (const cl of [cb, cc]) assert.equal((await cl.nextType('chat.event')).group_id, g.group_id);
    const s = await ca.ok({ type: 'chat.send', client_id: 'xg1', group_id: g.group_id, body: b64('sk') });
    for (const cl of [cb, cc]) {
      const m = await cl.nextType('chat.message');
      assert.deepEqual([m.message_id, m.group_id, unb64(m.body)], [s.message_id, g.group_id, 'sk']);
      await cl.ok({ type: 'chat.ack', upto: m.message_id });
    }
    const all = [];
    while (!all.some((x) => x.all)) all.push(...(await ca.nextType('chat.receipt')).receipts);
    assert.deepEqual(all.map((x) => x.user).sort(), [b.username, c.username].sort());
    // typing crosses too
    await cb.ok({ type: 'chat.typing', group_id: g.group_id, typing: true });
    assert.equal((await ca.nextType('chat.typing')).from, b.username);
    ca.close(); cb.close(); cc.close();
  });
});
