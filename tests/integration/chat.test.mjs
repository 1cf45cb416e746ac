// chat.test.mjs: parley's chat through a real parleyd and real WebSocket clients (the
// `ws` package): direct messages (sent/delivered/read, offline queues drained in order
// with queue_empty, windowed paging, redelivery after a lost ack, idempotent resends,
// device-list checks, copies for the sender's other devices, limits), receipts,
// read-receipt settings and read sync across the reader's devices, lookups, groups
// (membership rules and events, fan-out, per-member status), contacts, presence and
// privacy, typing, and authorization errors everywhere.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startChat, stopClean, register, addDevice, Client, b64, unb64, directFrame, uniqueName }
  from './lib/chat.mjs';
import { parsePrometheus, sample } from './lib/daemon.mjs';

// Open WebSockets on d (the gateway's gauge).
const openConns = async (d) => sample(parsePrometheus((await d.admin('/metrics')).text),
  'parley_signaling_connections').value;

// Closes c and waits until the gateway has seen it go: its close hook (which queues the
// chat side's disconnect on the store) runs before the gauge drops, so any request sent
// after this is handled after the disconnect.
async function closeSeen(d, c) {
  const n = await openConns(d);
  c.close();
  for (let i = 0; i < 400 && await openConns(d) >= n; i++)
    await new Promise((r) => setTimeout(r, 25));
  assert.ok(await openConns(d) < n, 'the server saw the connection close');
}

// The next chat.event named name (earlier events of other names stay queued).
const evt = (c, name, ms) => c.next((f) => f.type === 'chat.event' && f.event === name, ms);

describe('chat: direct messages', () => {
  let d;
  before(async () => {
    d = await startChat(['chat.window=8', 'chat.page=4', 'chat.queue_max=30',
      'chat.max_payload=1KiB']);
  });
  after(async () => { await stopClean(d); });

  test('sent after commit, delivered live, acked, receipts to every sender device', async () => {
    const alice = await register(d), bob = await register(d);
    const alice2 = await addDevice(d, alice.username, 'tablet');
    const ca = await Client.connect(d, alice, { sync: true });
    const ca2 = await Client.connect(d, alice2, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    assert.equal(cb.syncResult.queued, 0);
    await cb.nextType('chat.queue_empty');
    const sent = await ca.ok(directFrame(bob.username, [bob.device_id], 'hi', 'c-1'));
    assert.ok(sent.message_id > 0 && sent.sent_at > 0 && sent.duplicate === false);
    const m = await cb.nextType('chat.message');
    assert.equal(m.message_id, sent.message_id);
    assert.equal(m.from, alice.username);
    assert.equal(m.from_device, alice.device_id);
    assert.equal(m.client_id, 'c-1');
    assert.equal(m.ctype, 1);
    assert.equal(unb64(m.body), `hi@${bob.device_id}`);
    const ack = await cb.ok({ type: 'chat.ack', message_ids: [m.message_id] });
    assert.equal(ack.acked, 1);
    for (const c of [ca, ca2]) {
      const r = await c.nextType('chat.receipt');
      assert.deepEqual(r.receipts.map((x) => [x.message_id, x.status, x.user]),
        [[m.message_id, 'delivered', bob.username]]);
    }
    const st = await ca.ok({ type: 'chat.status', message_ids: [m.message_id] });
    assert.equal(st.statuses[0].status, 'delivered');
    assert.ok(st.statuses[0].delivered_at >= sent.sent_at);
    const rd = await cb.ok({ type: 'chat.read', message_ids: [m.message_id] });
    assert.equal(rd.read, 1);
    const rr = await ca.nextType('chat.receipt');
    assert.equal(rr.receipts[0].status, 'read');
    const st2 = await ca.ok({ type: 'chat.status', message_ids: [m.message_id] });
    assert.equal(st2.statuses[0].status, 'read');
    // Acknowledged means deleted: a new connection gets nothing back.
    cb.close();
    const cb2 = await Client.connect(d, bob, { sync: true });
    assert.equal(cb2.syncResult.queued, 0);
    await cb2.nextType('chat.queue_empty');
    assert.ok(await cb2.none((f) => f.type === 'chat.message'));
    for (const c of [ca, ca2, cb2]) c.close();
  });

  test('offline queue drained in order in pages, then queue_empty, then live', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice);
    const ids = [];
    for (let i = 0; i < 20; i++)
      ids.push((await ca.ok(directFrame(bob.username, [bob.device_id], `n${i}`))).message_id);
    const cb = await Client.connect(d, bob);
    const sync = await cb.sync();
    assert.equal(sync.queued, 20);
    assert.equal(sync.window, 8);
    // The window is 8: the server stops until acknowledgements make room.
    const got = [];
    for (let i = 0; i < 8; i++) got.push(await cb.nextType('chat.message'));
    assert.ok(await cb.none((f) => f.type === 'chat.message', 300), 'more than a window in flight');
    while (got.length < 20) {
      await cb.ok({ type: 'chat.ack', upto: got[got.length - 1].message_id });
      while (got.length < 20) {
        try { got.push(await cb.nextType('chat.message', 500)); } catch { break; }
      }
    }
    assert.deepEqual(got.map((m) => m.message_id), ids, 'in order, each once');
    assert.deepEqual(got.map((m) => unb64(m.body)), ids.map((_, i) => `n${i}@${bob.device_id}`));
    await cb.nextType('chat.queue_empty');
    await cb.ok({ type: 'chat.ack', upto: ids[19] });
    const live = await ca.ok(directFrame(bob.username, [bob.device_id], 'live'));
    assert.equal((await cb.nextType('chat.message')).message_id, live.message_id);
    ca.close(); cb.close();
  });

  test('a lost ack causes one redelivery; an acked message never comes again', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    let cb = await Client.connect(d, bob, { sync: true });
    const a = await ca.ok(directFrame(bob.username, [bob.device_id], 'one'));
    const b = await ca.ok(directFrame(bob.username, [bob.device_id], 'two'));
    assert.equal((await cb.nextType('chat.message')).message_id, a.message_id);
    assert.equal((await cb.nextType('chat.message')).message_id, b.message_id);
    await cb.ok({ type: 'chat.ack', message_ids: [a.message_id] });
    cb.close();                                     // b's ack is "lost"
    cb = await Client.connect(d, bob, { sync: true });
    assert.equal(cb.syncResult.queued, 1);
    const again = await cb.nextType('chat.message');
    assert.equal(again.message_id, b.message_id);
    await cb.nextType('chat.queue_empty');
    assert.ok(await cb.none((f) => f.type === 'chat.message'));
    cb.send({ type: 'chat.ack', upto: b.message_id });      // no id: no answer
    assert.ok(await cb.none((f) => f.type === 'chat.ack.result'));
    cb.close();
    cb = await Client.connect(d, bob, { sync: true });
    assert.equal(cb.syncResult.queued, 0);
    assert.ok(await cb.none((f) => f.type === 'chat.message'));
    ca.close(); cb.close();
  });

  test('a resend with the same client_id returns the first result and is not delivered twice', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice);
    const cb = await Client.connect(d, bob, { sync: true });
    const f = directFrame(bob.username, [bob.device_id], 'once', 'same-id');
    const first = await ca.ok(f);
    const again = await ca.ok({ ...f, envelopes: [{ device_id: bob.device_id, body: b64('other') }] });
    assert.equal(again.message_id, first.message_id);
    assert.equal(again.sent_at, first.sent_at);
    assert.equal(again.duplicate, true);
    await cb.nextType('chat.message');
    assert.ok(await cb.none((x) => x.type === 'chat.message'));
    // Another sender may use the same client id.
    const carol = await register(d);
    const cc = await Client.connect(d, carol);
    const other = await cc.ok(directFrame(bob.username, [bob.device_id], 'carol', 'same-id'));
    assert.notEqual(other.message_id, first.message_id);
    ca.close(); cb.close(); cc.close();
  });

  test('every device of the recipient gets its own envelope; the list must match exactly', async () => {
    const alice = await register(d), bob = await register(d);
    const bob2 = await addDevice(d, bob.username, 'laptop');
    const ca = await Client.connect(d, alice, { sync: true });
    const cb1 = await Client.connect(d, bob, { sync: true });
    const cb2 = await Client.connect(d, bob2, { sync: true });
    const e = await ca.err(directFrame(bob.username, [bob.device_id, 999999], 'x'), 'device_mismatch');
    assert.deepEqual(e.missing, [bob2.device_id]);
    assert.deepEqual(e.extra, [999999]);
    const e2 = await ca.err(directFrame(bob.username, [bob.device_id], 'x'), 'device_mismatch');
    assert.deepEqual(e2.missing, [bob2.device_id]);
    assert.deepEqual(e2.extra, []);
    assert.ok(await cb1.none((f) => f.type === 'chat.message'), 'no partial delivery');
    const ok = await ca.ok(directFrame(bob.username, [bob2.device_id, bob.device_id], 'both'));
    const m1 = await cb1.nextType('chat.message'), m2 = await cb2.nextType('chat.message');
    assert.equal(m1.message_id, ok.message_id);
    assert.equal(unb64(m1.body), `both@${bob.device_id}`);
    assert.equal(unb64(m2.body), `both@${bob2.device_id}`);
    await cb2.ok({ type: 'chat.ack', upto: m2.message_id });
    assert.equal((await ca.nextType('chat.receipt')).receipts[0].status, 'delivered');
    await cb1.ok({ type: 'chat.ack', upto: m1.message_id });
    assert.ok(await ca.none((f) => f.type === 'chat.receipt'), 'delivered is reported once');
    ca.close(); cb1.close(); cb2.close();
  });

  test('copies for the sender\'s other devices ("own"): exact list, live and queued, with "to"', async () => {
    const alice = await register(d), bob = await register(d);
    const alice2 = await addDevice(d, alice.username, 'desktop');
    const alice3 = await addDevice(d, alice.username, 'tablet');
    const ca = await Client.connect(d, alice, { sync: true });
    const ca2 = await Client.connect(d, alice2, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const own = (ids, text) => ids.map((id) => ({ device_id: id, ctype: 1, body: b64(`${text}@${id}`) }));
    // The copies must be for exactly the sender's other devices.
    const bad = directFrame(bob.username, [bob.device_id], 'x');
    bad.own = own([alice2.device_id, alice.device_id], 'x');
    const e = await ca.err(bad, 'device_mismatch');
    assert.deepEqual([e.missing, e.extra], [[], []]);
    assert.deepEqual(e.own_missing, [alice3.device_id]);
    assert.deepEqual(e.own_extra, [alice.device_id]);
    for (const c of [cb, ca2])
      assert.ok(await c.none((f) => f.type === 'chat.message', 200), 'nothing stored');
    await ca.err({ type: 'chat.send', client_id: 'g-own', group_id: 1, body: b64('x'), own: [] },
      'bad_field');
    const dup = directFrame(bob.username, [bob.device_id], 'x');
    dup.own = own([alice2.device_id, alice2.device_id], 'x');
    await ca.err(dup, 'bad_field');
    const good = directFrame(bob.username, [bob.device_id], 'hello');
    good.own = own([alice3.device_id, alice2.device_id], 'hello');
    const sent = await ca.ok(good);
    const m = await cb.nextType('chat.message');
    assert.equal(m.message_id, sent.message_id);
    assert.equal(m.to, undefined, 'the recipient\'s envelope has no "to"');
    const c2 = await ca2.nextType('chat.message');
    assert.deepEqual([c2.message_id, c2.from, c2.from_device, c2.to, unb64(c2.body)],
      [sent.message_id, alice.username, alice.device_id, bob.username, `hello@${alice2.device_id}`]);
    // Acknowledging a copy is no receipt; the recipient's acknowledgement is, on every
    // device of the sender.
    await ca2.ok({ type: 'chat.ack', upto: c2.message_id });
    assert.ok(await ca.none((f) => f.type === 'chat.receipt', 200));
    await cb.ok({ type: 'chat.ack', upto: m.message_id });
    for (const c of [ca, ca2])
      assert.deepEqual((await c.nextType('chat.receipt')).receipts.map((x) => [x.message_id, x.status]),
        [[sent.message_id, 'delivered']]);
    // The offline device finds its copy queued, then the receipt it missed.
    const ca3 = await Client.connect(d, alice3, { sync: true });
    assert.equal(ca3.syncResult.queued, 2);
    const c3 = await ca3.nextType('chat.message');
    assert.deepEqual([c3.message_id, c3.to, unb64(c3.body)],
      [sent.message_id, bob.username, `hello@${alice3.device_id}`]);
    const q = await evt(ca3, 'receipts');
    assert.deepEqual(q.receipts.map((x) => [x.message_id, x.status, x.user]),
      [[sent.message_id, 'delivered', bob.username]]);
    await ca3.ok({ type: 'chat.ack', message_ids: [q.message_id] });
    const got = await ca3.ok({ type: 'chat.get', message_id: c3.message_id });
    assert.equal(unb64(got.message.body), `hello@${alice3.device_id}`, 'its own envelope');
    const st = await ca3.ok({ type: 'chat.status', message_ids: [c3.message_id] });
    assert.equal(st.statuses[0].status, 'delivered');
    await ca3.ok({ type: 'chat.ack', upto: c3.message_id });
    const gone = await ca3.ok({ type: 'chat.get', message_id: c3.message_id });
    assert.equal(gone.message.body, undefined, 'acknowledged everywhere: no ciphertext left');
    // Without "own" a send still goes (a client that keeps no copies).
    await ca.ok(directFrame(bob.username, [bob.device_id], 'no copies'));
    assert.ok(await ca2.none((f) => f.type === 'chat.message', 200));
    for (const c of [ca, ca2, ca3, cb]) c.close();
  });

  test('a read reaches the reader\'s other devices (chat.reads), receipts off or on', async () => {
    const alice = await register(d), bob = await register(d);
    const bob2 = await addDevice(d, bob.username, 'desktop');
    const ca = await Client.connect(d, alice, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const cb2 = await Client.connect(d, bob2, { sync: true });
    const ids = [];
    for (const text of ['r1', 'r2']) {
      ids.push((await ca.ok(directFrame(bob.username, [bob.device_id, bob2.device_id], text))).message_id);
      await cb.nextType('chat.message');
      await cb2.nextType('chat.message');
    }
    await cb.ok({ type: 'chat.read', message_ids: [ids[0]] });
    const rs = await cb2.nextType('chat.reads');
    assert.deepEqual([rs.message_ids, rs.device_id], [[ids[0]], bob.device_id]);
    assert.ok(rs.at > 0);
    assert.ok(await cb.none((f) => f.type === 'chat.reads'), 'not to the reading device');
    // Read again: nothing new to tell.
    await cb.ok({ type: 'chat.read', message_ids: [ids[0]] });
    assert.ok(await cb2.none((f) => f.type === 'chat.reads'));
    // With read receipts off the sender is not told, the reader's devices still are.
    await cb.ok({ type: 'chat.settings.set', read_receipts: false });
    await cb2.ok({ type: 'chat.read', message_ids: [ids[1]] });
    assert.deepEqual((await cb.nextType('chat.reads')).message_ids, [ids[1]]);
    for (const c of [ca, cb, cb2]) c.close();
  });

  test('a sender that was away gets the receipts it missed, queued, when it syncs', async () => {
    const alice = await register(d), bob = await register(d);
    let ca = await Client.connect(d, alice, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const live = await ca.ok(directFrame(bob.username, [bob.device_id], 'while here'));
    await cb.ok({ type: 'chat.ack', upto: (await cb.nextType('chat.message')).message_id });
    assert.equal((await ca.nextType('chat.receipt')).receipts[0].message_id, live.message_id);
    const away = await ca.ok(directFrame(bob.username, [bob.device_id], 'then gone'));
    await closeSeen(d, ca);
    const m = await cb.nextType('chat.message');
    await cb.ok({ type: 'chat.ack', upto: m.message_id });
    await cb.ok({ type: 'chat.read', message_ids: [m.message_id] });
    ca = await Client.connect(d, alice, { sync: true });
    assert.equal(ca.syncResult.queued, 2, 'the two receipts it missed, not the one it had');
    const r1 = await evt(ca, 'receipts'), r2 = await evt(ca, 'receipts');
    assert.ok(r1.message_id < r2.message_id, 'in order');
    assert.deepEqual([...r1.receipts, ...r2.receipts].map((x) => [x.message_id, x.status, x.user]),
      [[away.message_id, 'delivered', bob.username], [away.message_id, 'read', bob.username]]);
    await ca.nextType('chat.queue_empty');
    await ca.ok({ type: 'chat.ack', upto: r2.message_id });
    ca.close();
    ca = await Client.connect(d, alice, { sync: true });
    assert.equal(ca.syncResult.queued, 0, 'acknowledged receipts do not come again');
    ca.close(); cb.close();
  });

  test('limits and bad input are coded errors', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice);
    const big = { type: 'chat.send', client_id: 'big', to: bob.username,
      envelopes: [{ device_id: bob.device_id, body: b64('x'.repeat(1200)) }] };
    await ca.err(big, 'payload_too_large');
    await ca.err({ ...big, envelopes: [{ device_id: bob.device_id, body: 'not base64!' }] }, 'bad_field');
    await ca.err({ ...big, envelopes: [] }, 'bad_field');
    await ca.err({ ...big, envelopes: [{ device_id: bob.device_id, body: 'AAAA' },
      { device_id: bob.device_id, body: 'AAAA' }] }, 'bad_field');
    await ca.err({ ...big, client_id: 'bad id!' }, 'bad_field');
    await ca.err({ ...big, client_id: undefined }, 'bad_field');
    await ca.err({ ...big, group_id: 1 }, 'bad_field');
    await ca.err({ type: 'chat.send', client_id: 'x' }, 'bad_field');
    await ca.err(directFrame('nosuchuser', [1], 'x'), 'not_found');
    await ca.err(directFrame(alice.username, [alice.device_id], 'x'), 'bad_recipient');
    await ca.err({ type: 'chat.ack' }, 'bad_field');
    await ca.err({ type: 'chat.ack', message_ids: [0] }, 'bad_field');
    await ca.err({ type: 'chat.read', message_ids: [] }, 'bad_field');
    // The queue of an offline device fills up: a clear error, nothing dropped.
    for (let i = 0; i < 30; i++) await ca.ok(directFrame(bob.username, [bob.device_id], `q${i}`));
    const full = await ca.err(directFrame(bob.username, [bob.device_id], 'over'), 'queue_full');
    assert.deepEqual(full.devices, [bob.device_id]);
    const cb = await Client.connect(d, bob);
    assert.equal((await cb.sync()).queued, 30);
    ca.close(); cb.close();
  });

  test('read receipts switched off: the sender sees delivered, not read', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const s = await cb.ok({ type: 'chat.settings.set', read_receipts: false });
    assert.deepEqual(s.settings, { last_seen: 'everyone', read_receipts: false });
    const sent = await ca.ok(directFrame(bob.username, [bob.device_id], 'quiet'));
    const m = await cb.nextType('chat.message');
    await cb.ok({ type: 'chat.read', message_ids: [m.message_id] });
    const r = await ca.nextType('chat.receipt');
    assert.equal(r.receipts[0].status, 'delivered', 'read implies delivered, reported as such');
    assert.ok(await ca.none((f) => f.type === 'chat.receipt'));
    const st = await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] });
    assert.equal(st.statuses[0].status, 'delivered');
    // Reciprocal: bob does not get alice's read receipts either.
    const back = await cb.ok(directFrame(alice.username, [alice.device_id], 'back'));
    const m2 = await ca.nextType('chat.message');
    await ca.ok({ type: 'chat.read', message_ids: [m2.message_id] });
    const st2 = await cb.ok({ type: 'chat.status', message_ids: [back.message_id] });
    assert.equal(st2.statuses[0].status, 'delivered');
    ca.close(); cb.close();
  });

  test('lookups: by id, by conversation, by status; only your own', async () => {
    const alice = await register(d), bob = await register(d), eve = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const ce = await Client.connect(d, eve, { sync: true });
    const ids = [];
    for (let i = 0; i < 5; i++)
      ids.push((await ca.ok(directFrame(bob.username, [bob.device_id], `h${i}`))).message_id);
    const m = await cb.nextType('chat.message');
    await cb.ok({ type: 'chat.ack', upto: ids[1] });
    // get: both sides see metadata; the recipient's device sees its pending body.
    const g = await cb.ok({ type: 'chat.get', message_id: ids[3] });
    assert.equal(g.message.from, alice.username);
    assert.equal(unb64(g.message.body), `h3@${bob.device_id}`);
    const g2 = await cb.ok({ type: 'chat.get', message_id: ids[0] });
    assert.equal(g2.message.body, undefined, 'acked: the ciphertext is gone');
    const ga = await ca.ok({ type: 'chat.get', message_id: ids[0] });
    assert.equal(ga.message.status, 'delivered');
    assert.equal(ga.message.body, undefined, 'the sender never reads a device queue');
    await ce.err({ type: 'chat.get', message_id: ids[0] }, 'not_found');
    await ce.err({ type: 'chat.status', message_ids: [ids[0]] }, 'not_found');
    await cb.err({ type: 'chat.status', message_ids: [ids[0]] }, 'not_found');
    // history, newest first, paged.
    const h1 = await cb.ok({ type: 'chat.history', with: alice.username, limit: 3 });
    assert.deepEqual(h1.messages.map((x) => x.message_id), [ids[4], ids[3], ids[2]]);
    assert.equal(h1.more, true);
    const h2 = await cb.ok({ type: 'chat.history', with: alice.username, before: ids[2], limit: 3 });
    assert.deepEqual(h2.messages.map((x) => x.message_id), [ids[1], ids[0]]);
    assert.equal(h2.more, false);
    const he = await ce.ok({ type: 'chat.history', with: alice.username });
    assert.deepEqual(he.messages, [], 'no conversation between eve and alice');
    // find by status.
    const fd = await ca.ok({ type: 'chat.find', status: 'delivered' });
    assert.deepEqual(fd.messages.map((x) => x.message_id), [ids[1], ids[0]]);
    const fs = await ca.ok({ type: 'chat.find', status: 'sent' });
    assert.deepEqual(fs.messages.map((x) => x.message_id), [ids[4], ids[3], ids[2]]);
    await ca.err({ type: 'chat.find', status: 'lost' }, 'bad_field');
    assert.ok(m);
    ca.close(); cb.close(); ce.close();
  });

  test('a device only acknowledges its own queue', async () => {
    const alice = await register(d), bob = await register(d), carol = await register(d);
    const ca = await Client.connect(d, alice);
    const sent = await ca.ok(directFrame(carol.username, [carol.device_id], 'for carol'));
    const cb = await Client.connect(d, bob, { sync: true });
    const ack = await cb.ok({ type: 'chat.ack', upto: sent.message_id + 1000 });
    assert.equal(ack.acked, 0);
    const cc = await Client.connect(d, carol);
    assert.equal((await cc.sync()).queued, 1);
    assert.equal((await cc.nextType('chat.message')).message_id, sent.message_id);
    ca.close(); cb.close(); cc.close();
  });
});

describe('chat: expiry', () => {
  let d;
  before(async () => { d = await startChat(['chat.ttl=1s', 'chat.sweep_interval=200ms']); });
  after(async () => { await stopClean(d); });

  test('an envelope not delivered within ttl expires and its sender is told', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    const sent = await ca.ok(directFrame(bob.username, [bob.device_id], 'too late'));
    const r = await ca.nextType('chat.receipt', 5000);
    assert.deepEqual([r.receipts[0].message_id, r.receipts[0].status], [sent.message_id, 'expired']);
    const st = await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] });
    assert.equal(st.statuses[0].status, 'expired');
    const cb = await Client.connect(d, bob);
    assert.equal((await cb.sync()).queued, 0);
    await cb.nextType('chat.queue_empty');
    assert.ok(await cb.none((f) => f.type === 'chat.message'));
    ca.close(); cb.close();
  });

  test('a copy for the sender\'s own device expiring is not "expired"', async () => {
    const alice = await register(d), bob = await register(d);
    const alice2 = await addDevice(d, alice.username, 'desktop');
    const ca = await Client.connect(d, alice, { sync: true });
    const cb = await Client.connect(d, bob, { sync: true });
    const f = directFrame(bob.username, [bob.device_id], 'kept');
    f.own = [{ device_id: alice2.device_id, ctype: 1, body: b64('copy') }];
    const sent = await ca.ok(f);
    await cb.ok({ type: 'chat.ack', upto: (await cb.nextType('chat.message')).message_id });
    assert.equal((await ca.nextType('chat.receipt')).receipts[0].status, 'delivered');
    // alice2 stays away past the ttl: its copy goes, the message stays delivered.
    assert.ok(await ca.none((f2) => f2.type === 'chat.receipt', 2500), 'no expired receipt');
    const st = await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] });
    assert.equal(st.statuses[0].status, 'delivered');
    const ca2 = await Client.connect(d, alice2);
    assert.equal((await ca2.sync()).queued, 0);
    ca.close(); cb.close(); ca2.close();
  });
});

describe('chat: groups', () => {
  let d;
  before(async () => { d = await startChat(['chat.group_max=5']); });
  after(async () => { await stopClean(d); });

  async function crew(n) {
    const users = [];
    for (let i = 0; i < n; i++) users.push(await register(d));
    const clients = [];
    for (const u of users) clients.push(await Client.connect(d, u, { sync: true }));
    for (const c of clients) await c.nextType('chat.queue_empty');
    return { users, clients };
  }

  test('create, fan-out of one ciphertext, per-member status, read by all', async () => {
    const { users: [a, b, c], clients: [ca, cb, cc] } = await crew(3);
    const a2 = await addDevice(d, a.username, 'tablet');
    const ca2 = await Client.connect(d, a2, { sync: true });
    const g = (await ca.ok({ type: 'chat.group.create', name: 'Team', description: 'we',
      icon: 'asset:1', members: [b.username, c.username, b.username] })).group;
    assert.equal(g.name, 'Team');
    assert.equal(g.version, 1);
    assert.deepEqual(g.members.map((m) => [m.user, m.role]),
      [[a.username, 'admin'], [b.username, 'member'], [c.username, 'member']]);
    for (const cl of [ca, ca2, cb, cc]) {
      const ev = await cl.nextType('chat.event');
      assert.equal(ev.event, 'group.created');
      assert.equal(ev.group_id, g.group_id);
      assert.equal(ev.by, a.username);
      await cl.ok({ type: 'chat.ack', upto: ev.message_id });
    }
    const sent = await ca.ok({ type: 'chat.send', client_id: 'g1', group_id: g.group_id,
      ctype: 3, body: b64('sender-key ciphertext') });
    for (const cl of [ca2, cb, cc]) {
      const m = await cl.nextType('chat.message');
      assert.equal(m.message_id, sent.message_id);
      assert.equal(m.group_id, g.group_id);
      assert.equal(m.ctype, 3);
      assert.equal(unb64(m.body), 'sender-key ciphertext');
    }
    assert.ok(await ca.none((f) => f.type === 'chat.message'), 'not echoed to the sending device');
    await cb.ok({ type: 'chat.ack', upto: sent.message_id });
    let r = await ca.nextType('chat.receipt');
    assert.deepEqual([r.receipts[0].status, r.receipts[0].user, r.receipts[0].group_id, r.receipts[0].all],
      ['delivered', b.username, g.group_id, undefined]);
    await cc.ok({ type: 'chat.ack', upto: sent.message_id });
    r = await ca.nextType('chat.receipt');
    assert.equal(r.receipts[0].all, true, 'delivered to all');
    await cb.ok({ type: 'chat.read', message_ids: [sent.message_id] });
    await ca.nextType('chat.receipt');
    let st = (await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] })).statuses[0];
    assert.equal(st.status, 'delivered');
    assert.equal(st.read_all, false);
    assert.deepEqual(st.members.map((m) => [m.user, m.status]).sort(),
      [[b.username, 'read'], [c.username, 'delivered']].sort());
    // Read receipts off does not hide reads in groups.
    await cc.ok({ type: 'chat.settings.set', read_receipts: false });
    await cc.ok({ type: 'chat.read', message_ids: [sent.message_id] });
    r = await ca.nextType('chat.receipt');
    assert.deepEqual([r.receipts[0].status, r.receipts[0].all], ['read', true]);
    st = (await ca.ok({ type: 'chat.status', message_ids: [sent.message_id] })).statuses[0];
    assert.equal(st.status, 'read');
    assert.equal(st.read_all, true);
    // Group history for members only; info and list.
    const h = await cb.ok({ type: 'chat.history', group_id: g.group_id });
    assert.deepEqual(h.messages.map((m) => m.message_id).slice(0, 1), [sent.message_id]);
    assert.equal(h.messages[1].event.event, 'group.created');
    const outsider = await register(d);
    const co = await Client.connect(d, outsider);
    await co.err({ type: 'chat.history', group_id: g.group_id }, 'not_a_member');
    await co.err({ type: 'chat.group.info', group_id: g.group_id }, 'not_a_member');
    await co.err({ type: 'chat.get', message_id: sent.message_id }, 'not_found');
    await co.err({ type: 'chat.send', client_id: 'x', group_id: g.group_id, body: b64('x') }, 'not_a_member');
    await co.err({ type: 'chat.group.info', group_id: 999999 }, 'not_found');
    const list = await cb.ok({ type: 'chat.group.list' });
    assert.deepEqual(list.groups.map((x) => [x.group_id, x.role]), [[g.group_id, 'member']]);
    for (const cl of [ca, ca2, cb, cc, co]) cl.close();
  });

  test('a sender device that was away gets a group message\'s "all" receipts, not each member\'s', async () => {
    const { users: [a, b, c], clients: [ca, cb, cc] } = await crew(3);
    const a2 = await addDevice(d, a.username, 'tablet');      // never connected yet
    const g = (await ca.ok({ type: 'chat.group.create', name: 'Away',
      members: [b.username, c.username] })).group;
    for (const cl of [ca, cb, cc])
      await cl.ok({ type: 'chat.ack', upto: (await evt(cl, 'group.created')).message_id });
    const sent = await ca.ok({ type: 'chat.send', client_id: 'ga1', group_id: g.group_id,
      body: b64('x') });
    for (const cl of [cb, cc]) await cl.ok({ type: 'chat.ack', upto: (await cl.nextType('chat.message')).message_id });
    for (const cl of [cb, cc]) await cl.ok({ type: 'chat.read', message_ids: [sent.message_id] });
    for (let i = 0; i < 4; i++) await ca.nextType('chat.receipt');   // live: each member's
    const ca2 = await Client.connect(d, a2, { sync: true });
    await ca2.nextType('chat.queue_empty');
    const got = ca2.frames.filter((f) => f.type === 'chat.event' && f.event === 'receipts')
      .flatMap((f) => f.receipts);
    assert.deepEqual(got.map((x) => [x.message_id, x.status, x.all, x.group_id]),
      [[sent.message_id, 'delivered', true, g.group_id], [sent.message_id, 'read', true, g.group_id]]);
    for (const cl of [ca, ca2, cb, cc]) cl.close();
  });

  test('membership: only admins change it; events reach everyone concerned', async () => {
    const { users: [a, b, c, e], clients: [ca, cb, cc, ce] } = await crew(4);
    const g = (await ca.ok({ type: 'chat.group.create', name: 'G', members: [b.username] })).group;
    await cb.nextType('chat.event');
    await cb.err({ type: 'chat.group.add', group_id: g.group_id, members: [c.username] }, 'not_admin');
    await ce.err({ type: 'chat.group.add', group_id: g.group_id, members: [c.username] }, 'not_a_member');
    await ca.err({ type: 'chat.group.add', group_id: g.group_id, members: ['nosuchuser'] }, 'not_found');
    let r = await ca.ok({ type: 'chat.group.add', group_id: g.group_id, members: [c.username, e.username] });
    assert.equal(r.group.members.length, 4);
    for (const cl of [cb, cc, ce]) {
      const ev = await cl.nextType('chat.event');
      assert.equal(ev.event, 'group.members_added');
      assert.deepEqual(ev.members.sort(), [c.username, e.username].sort());
    }
    // group_max=5: two more do not fit.
    const f1 = await register(d), f2 = await register(d);
    await ca.err({ type: 'chat.group.add', group_id: g.group_id, members: [f1.username, f2.username] }, 'group_full');
    await ca.err({ type: 'chat.group.create', name: 'big', members: [b.username, c.username, e.username, f1.username, f2.username] }, 'group_full');
    // promote / demote / last admin
    await cb.err({ type: 'chat.group.promote', group_id: g.group_id, user: c.username }, 'not_admin');
    await ca.err({ type: 'chat.group.demote', group_id: g.group_id, user: a.username }, 'last_admin');
    r = await ca.ok({ type: 'chat.group.promote', group_id: g.group_id, user: b.username });
    assert.equal(r.group.members.find((m) => m.user === b.username).role, 'admin');
    await evt(cc, 'group.promoted');
    await cb.ok({ type: 'chat.group.demote', group_id: g.group_id, user: a.username });
    assert.equal((await evt(cc, 'group.demoted')).user, a.username);
    await ca.err({ type: 'chat.group.promote', group_id: g.group_id, user: a.username }, 'not_admin');
    await cb.err({ type: 'chat.group.promote', group_id: g.group_id, user: f1.username }, 'not_a_member');
    // remove: the removed member hears it and loses access.
    await cb.err({ type: 'chat.group.remove', group_id: g.group_id, members: [b.username] }, 'bad_field');
    await cb.err({ type: 'chat.group.remove', group_id: g.group_id, members: [f1.username] }, 'not_a_member');
    await cb.ok({ type: 'chat.group.remove', group_id: g.group_id, members: [e.username] });
    const ev = await evt(ce, 'group.members_removed');
    assert.deepEqual(ev.members, [e.username]);
    await evt(cc, 'group.members_removed');
    await ce.err({ type: 'chat.group.info', group_id: g.group_id }, 'not_a_member');
    const s = await ca.ok({ type: 'chat.send', client_id: 'after', group_id: g.group_id, body: b64('x') });
    assert.ok(await ce.none((f) => f.type === 'chat.message' && f.message_id === s.message_id));
    // The last admin (b) leaves: the longest-standing member (a) is promoted.
    await cb.ok({ type: 'chat.group.leave', group_id: g.group_id });
    const left = await evt(cc, 'group.member_left');
    assert.equal(left.user, b.username);
    assert.equal(left.promoted, a.username);
    const info = await cc.ok({ type: 'chat.group.info', group_id: g.group_id });
    assert.equal(info.group.members.find((m) => m.user === a.username).role, 'admin');
    await cb.err({ type: 'chat.group.info', group_id: g.group_id }, 'not_a_member');
    for (const cl of [ca, cb, cc, ce]) cl.close();
  });

  test('settings: who may send and who may edit the info', async () => {
    const { users: [a, b], clients: [ca, cb] } = await crew(2);
    const g = (await ca.ok({ type: 'chat.group.create', name: 'Announce', members: [b.username],
      send: 'admins', edit_info: 'admins' })).group;
    assert.deepEqual([g.send, g.edit_info], ['admins', 'admins']);
    await cb.err({ type: 'chat.send', client_id: 's', group_id: g.group_id, body: b64('x') }, 'forbidden');
    await cb.err({ type: 'chat.group.update', group_id: g.group_id, name: 'mine' }, 'forbidden');
    await cb.err({ type: 'chat.group.update', group_id: g.group_id, send: 'all' }, 'not_admin');
    await ca.err({ type: 'chat.group.update', group_id: g.group_id, send: 'everyone' }, 'bad_field');
    const u = await ca.ok({ type: 'chat.group.update', group_id: g.group_id, send: 'all', edit_info: 'all' });
    assert.deepEqual([u.group.send, u.group.edit_info], ['all', 'all']);
    const u2 = await cb.ok({ type: 'chat.group.update', group_id: g.group_id, name: 'Ours',
      description: 'shared', icon: 'icon-2' });
    assert.deepEqual([u2.group.name, u2.group.description, u2.group.icon], ['Ours', 'shared', 'icon-2']);
    const ev = await ca.next((f) => f.type === 'chat.event' && f.event === 'group.updated' && f.changes.name);
    assert.equal(ev.by, b.username);
    assert.deepEqual(ev.changes, { name: 'Ours', description: 'shared', icon: 'icon-2' });
    await cb.ok({ type: 'chat.send', client_id: 's2', group_id: g.group_id, body: b64('now ok') });
    await ca.err({ type: 'chat.group.update', group_id: g.group_id, icon: 'bad icon!' }, 'bad_field');
    await ca.err({ type: 'chat.group.create', name: 'x', members: [5] }, 'bad_field');
    ca.close(); cb.close();
  });

  test('typing reaches the group and the peer, and is not stored', async () => {
    const { users: [a, b, c], clients: [ca, cb, cc] } = await crew(3);
    const g = (await ca.ok({ type: 'chat.group.create', name: 'T', members: [b.username] })).group;
    await ca.ok({ type: 'chat.typing', group_id: g.group_id, typing: true });
    const t = await cb.nextType('chat.typing');
    assert.deepEqual([t.from, t.group_id, t.typing], [a.username, g.group_id, true]);
    await cc.err({ type: 'chat.typing', group_id: g.group_id, typing: true }, 'not_a_member');
    await cc.ok({ type: 'chat.typing', to: b.username, typing: false });
    const t2 = await cb.nextType('chat.typing');
    assert.deepEqual([t2.from, t2.typing, t2.group_id], [c.username, false, undefined]);
    await cc.err({ type: 'chat.typing', to: 'nosuchuser', typing: true }, 'not_found');
    await cc.err({ type: 'chat.typing', typing: true }, 'bad_field');
    // Never stored: a device that connects later gets no typing frame.
    cb.close();
    const cb2 = await Client.connect(d, b, { sync: true });
    await cb2.nextType('chat.queue_empty');
    assert.ok(await cb2.none((f) => f.type === 'chat.typing'));
    for (const cl of [ca, cc, cb2]) cl.close();
  });
});

describe('chat: long queues', () => {
  let d;
  before(async () => { d = await startChat(); });
  after(async () => { await stopClean(d); });

  test('one cursor acknowledgement settles a long queue: each message delivered once, each receipt sent', async () => {
    const alice = await register(d), bob = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    const ids = [];
    for (let i = 0; i < 150; i++)
      ids.push((await ca.ok(directFrame(bob.username, [bob.device_id], `q${i}`))).message_id);
    const cb = await Client.connect(d, bob);
    const r = await cb.ok({ type: 'chat.ack', upto: ids[149] });
    assert.equal(r.acked, 150, 'every queued envelope up to the cursor');
    const got = new Map();
    while (got.size < 150) {
      for (const x of (await ca.nextType('chat.receipt')).receipts) {
        assert.equal(x.status, 'delivered');
        got.set(x.message_id, (got.get(x.message_id) ?? 0) + 1);
      }
    }
    assert.deepEqual([...got.keys()].sort((a, b) => a - b), ids);
    assert.ok([...got.values()].every((n) => n === 1), 'one receipt per message');
    const st = await ca.ok({ type: 'chat.status', message_ids: [ids[0], ids[75], ids[149]] });
    assert.deepEqual(st.statuses.map((x) => x.status), ['delivered', 'delivered', 'delivered']);
    assert.equal((await cb.ok({ type: 'chat.ack', upto: ids[149] })).acked, 0, 'nothing left to acknowledge');
    assert.equal((await cb.sync()).queued, 0);
    ca.close(); cb.close();
  });
});

describe('chat: lookups when the index trails far behind', () => {
  let d;
  before(async () => { d = await startChat(); });
  after(async () => { await stopClean(d); });

  const indexRows = async () => sample(parsePrometheus((await d.admin('/metrics')).text),
    'parley_chat_index_rows_total').value;

  test('history and find read the messages above the index\'s mark from the table, newest first across it', async () => {
    const alice = await register(d), bob = await register(d);
    const carol = await register(d), dave = await register(d);
    const ca = await Client.connect(d, alice, { sync: true });
    const cc = await Client.connect(d, carol);
    const ids = [];
    const send = async (tag) =>
      ids.push((await ca.ok(directFrame(bob.username, [bob.device_id], tag))).message_id);
    for (let i = 0; i < 3; i++) await send(`o${i}`);
    // Few messages trail the index: the lookup catches it up first.
    const h0 = await ca.ok({ type: 'chat.history', with: bob.username });
    assert.deepEqual(h0.messages.map((x) => x.message_id), [...ids].reverse());
    const rows = await indexRows();
    assert.ok(rows >= 3, 'the lookup caught the index up');
    // Past CHAT_IX_SYNC_MAX (4,096) rows above the mark a lookup reads those from the
    // messages table instead of holding the store thread for a whole catch-up.
    for (let i = 0; i < 4200; i++)
      await cc.ok(directFrame(dave.username, [dave.device_id], `f${i}`));
    for (let i = 3; i < 6; i++) await send(`n${i}`);
    const h1 = await ca.ok({ type: 'chat.history', with: bob.username, limit: 4 });
    assert.deepEqual(h1.messages.map((x) => x.message_id), [ids[5], ids[4], ids[3], ids[2]]);
    assert.equal(h1.more, true);
    const h2 = await ca.ok({ type: 'chat.history', with: bob.username, limit: 3 });
    assert.deepEqual(h2.messages.map((x) => x.message_id), [ids[5], ids[4], ids[3]]);
    assert.equal(h2.more, true, 'more, found below the mark');
    const h3 = await ca.ok({ type: 'chat.history', with: bob.username, before: ids[4], limit: 5 });
    assert.deepEqual(h3.messages.map((x) => x.message_id), [ids[3], ids[2], ids[1], ids[0]]);
    assert.equal(h3.more, false);
    const hc = await cc.ok({ type: 'chat.history', with: dave.username, limit: 2 });
    assert.equal(hc.messages.length, 2);
    assert.ok(hc.messages[0].message_id > hc.messages[1].message_id && hc.more);
    const f1 = await ca.ok({ type: 'chat.find', status: 'sent', limit: 4 });
    assert.deepEqual(f1.messages.map((x) => x.message_id), [ids[5], ids[4], ids[3], ids[2]]);
    assert.equal(f1.next_before, ids[2]);
    const f2 = await ca.ok({ type: 'chat.find', status: 'sent', before: ids[2] });
    assert.deepEqual(f2.messages.map((x) => x.message_id), [ids[1], ids[0]]);
    assert.equal(f2.next_before, null);
    assert.equal(await indexRows(), rows, 'no catch-up in one go');
    ca.close(); cc.close();
  });
});

describe('chat: contacts and presence', () => {
  let d;
  before(async () => { d = await startChat(); });
  after(async () => { await stopClean(d); });

  test('contacts: add, list, remove, errors', async () => {
    const a = await register(d), b = await register(d), c = await register(d);
    const ca = await Client.connect(d, a);
    const r = await ca.ok({ type: 'chat.contacts.add', user: b.username.toUpperCase() });
    assert.equal(r.contact.user, b.username);
    await ca.ok({ type: 'chat.contacts.add', user: c.username });
    await ca.ok({ type: 'chat.contacts.add', user: c.username });
    const l = await ca.ok({ type: 'chat.contacts.list' });
    assert.deepEqual(l.contacts.map((x) => x.user), [b.username, c.username].sort());
    await ca.ok({ type: 'chat.contacts.remove', user: c.username });
    await ca.err({ type: 'chat.contacts.remove', user: c.username }, 'not_found');
    await ca.err({ type: 'chat.contacts.add', user: 'nosuchuser' }, 'not_found');
    await ca.err({ type: 'chat.contacts.add', user: a.username }, 'bad_field');
    await ca.err({ type: 'chat.settings.set', last_seen: 'friends' }, 'bad_field');
    ca.close();
  });

  test('online, offline and last seen events for subscribers, within privacy', async () => {
    const a = await register(d), b = await register(d), c = await register(d);
    const cb = await Client.connect(d, b);
    await cb.ok({ type: 'chat.contacts.add', user: a.username });
    let sub = await cb.ok({ type: 'chat.presence.subscribe' });
    assert.deepEqual(sub.presence.map((p) => [p.user, p.visible, p.online]), [[a.username, true, false]]);
    let ca = await Client.connect(d, a);
    let ev = await cb.nextType('chat.presence');
    assert.deepEqual([ev.user, ev.online], [a.username, true]);
    const t0 = Date.now();
    ca.close();
    ev = await cb.nextType('chat.presence');
    assert.deepEqual([ev.user, ev.online], [a.username, false]);
    assert.ok(Math.abs(ev.last_seen_at - t0) < 5000);
    sub = await cb.ok({ type: 'chat.presence.subscribe', users: [a.username] });
    assert.equal(sub.presence[0].last_seen_at, ev.last_seen_at);
    // a shows last seen to contacts only; b is not in a's contacts.
    ca = await Client.connect(d, a);
    await cb.nextType('chat.presence');
    await ca.ok({ type: 'chat.settings.set', last_seen: 'contacts' });
    sub = await cb.ok({ type: 'chat.presence.subscribe', users: [a.username] });
    assert.deepEqual([sub.presence[0].visible, sub.presence[0].online], [false, undefined]);
    ca.close();
    assert.ok(await cb.none((f) => f.type === 'chat.presence'), 'hidden from non-contacts');
    ca = await Client.connect(d, a);
    await ca.ok({ type: 'chat.contacts.add', user: b.username });
    sub = await cb.ok({ type: 'chat.presence.subscribe', users: [a.username] });
    assert.deepEqual([sub.presence[0].visible, sub.presence[0].online], [true, true]);
    // Reciprocal: b hides theirs, so b cannot see a's any more.
    await cb.ok({ type: 'chat.settings.set', last_seen: 'nobody' });
    sub = await cb.ok({ type: 'chat.presence.subscribe', users: [a.username] });
    assert.equal(sub.presence[0].visible, false);
    ca.close();
    assert.ok(await cb.none((f) => f.type === 'chat.presence'));
    // Unsubscribed: nothing more.
    await cb.ok({ type: 'chat.settings.set', last_seen: 'everyone' });
    await cb.ok({ type: 'chat.presence.subscribe', users: [c.username] });
    await cb.ok({ type: 'chat.presence.unsubscribe' });
    const cc = await Client.connect(d, c);
    assert.ok(await cb.none((f) => f.type === 'chat.presence'));
    await cb.err({ type: 'chat.presence.subscribe', users: ['nosuchuser'] }, 'not_found');
    await cb.err({ type: 'chat.presence.subscribe', users: [1] }, 'bad_field');
    cb.close(); cc.close();
  });
});

describe('chat: key directory', () => {
  let d;
  before(async () => {
    d = await startChat(['chat.prekey_low=3', 'chat.prekey_max=20',
      'chat.keys_fetch_target_burst=5', 'chat.keys_fetch_target_per_min=1']);
  });
  after(async () => { await stopClean(d); });

  const key = (s) => b64(`key:${s}`);
  function bundle(tag, n, from = 1) {
    return { type: 'chat.keys.upload', identity_key: key(`ik-${tag}`),
      signed_prekey: { key_id: 1, public_key: key(`spk-${tag}`), signature: key(`sig-${tag}`) },
      one_time_prekeys: Array.from({ length: n }, (_, i) => ({ key_id: from + i, public_key: key(`otpk-${tag}-${from + i}`) })) };
  }

  test('upload, fetch one bundle per device, each one-time prekey once, then fall back', async () => {
    const bob = await register(d), alice = await register(d);
    const bob2 = await addDevice(d, bob.username, 'tablet');
    const cb = await Client.connect(d, bob, { sync: true });
    const cb2 = await Client.connect(d, bob2);
    assert.equal((await cb.ok(bundle('b1', 5))).one_time_prekeys, 5);
    await cb2.ok(bundle('b2', 1, 100));
    const cnt = await cb.ok({ type: 'chat.keys.count' });
    assert.deepEqual([cnt.identity_key, cnt.signed_prekey, cnt.one_time_prekeys], [true, true, 5]);
    const ca = await Client.connect(d, alice);
    const f1 = await ca.ok({ type: 'chat.keys.fetch', user: bob.username });
    assert.deepEqual(f1.bundles.map((b) => b.device_id), [bob.device_id, bob2.device_id]);
    assert.equal(f1.bundles[0].identity_key, key('ik-b1'));
    assert.deepEqual(f1.bundles[0].signed_prekey, { key_id: 1, public_key: key('spk-b1'), signature: key('sig-b1') });
    assert.deepEqual(f1.bundles[0].one_time_prekey, { key_id: 1, public_key: key('otpk-b1-1') });
    assert.equal(f1.bundles[1].one_time_prekey.key_id, 100);
    const f2 = await ca.ok({ type: 'chat.keys.fetch', user: bob.username, device_id: bob2.device_id });
    assert.equal(f2.bundles.length, 1);
    assert.equal(f2.bundles[0].one_time_prekey, undefined, 'out of one-time prekeys: signed prekey only');
    const f3 = await ca.ok({ type: 'chat.keys.fetch', user: bob.username, device_id: bob.device_id });
    assert.equal(f3.bundles[0].one_time_prekey.key_id, 2);
    // 5 - 2 = 3 left; the next fetch leaves 2 < prekey_low: the owner is told once.
    await ca.ok({ type: 'chat.keys.fetch', user: bob.username, device_id: bob.device_id });
    const low = await cb.nextType('chat.keys.low');
    assert.deepEqual([low.device_id, low.one_time_prekeys], [bob.device_id, 2]);
    await ca.err({ type: 'chat.keys.fetch', user: bob.username, device_id: 424242 }, 'not_found');
    await ca.err({ type: 'chat.keys.fetch', user: 'nosuchuser' }, 'not_found');
    // Rate limit per (requester, target): burst 5, the sixth fetch is refused.
    const e = await ca.err({ type: 'chat.keys.fetch', user: bob.username }, 'rate_limited');
    assert.ok(e.retry_ms > 0);
    // A user without keys: every device listed under no_keys.
    const carol = await register(d);
    const fc = await cb.ok({ type: 'chat.keys.fetch', user: carol.username });
    assert.deepEqual([fc.bundles, fc.no_keys], [[], [carol.device_id]]);
    for (const c of [ca, cb, cb2]) c.close();
  });

  test('bad uploads are refused', async () => {
    const u = await register(d);
    const c = await Client.connect(d, u);
    await c.err({ type: 'chat.keys.upload', one_time_prekeys: [{ key_id: 1, public_key: key('x') }] }, 'bad_field');
    await c.err({ type: 'chat.keys.upload', identity_key: 'not base64' }, 'bad_field');
    await c.err({ type: 'chat.keys.upload' }, 'bad_field');
    await c.err({ ...bundle('u', 1), signed_prekey: { key_id: 1, public_key: key('p') } }, 'bad_field');
    await c.ok(bundle('u', 15));
    await c.err({ type: 'chat.keys.upload', one_time_prekeys: Array.from({ length: 10 },
      (_, i) => ({ key_id: 50 + i, public_key: key(i) })) }, 'too_many_prekeys');
    assert.equal((await c.ok({ type: 'chat.keys.count' })).one_time_prekeys, 15);
    c.close();
  });

  test('an identity key change is announced to contacts and conversation partners', async () => {
    const bob = await register(d), alice = await register(d), carol = await register(d), dave = await register(d);
    const cb = await Client.connect(d, bob, { sync: true });
    await cb.ok(bundle('old', 2));
    const ca = await Client.connect(d, alice, { sync: true });
    const cc = await Client.connect(d, carol, { sync: true });
    const cd = await Client.connect(d, dave, { sync: true });
    for (const c of [cb, ca, cc, cd]) await c.nextType('chat.queue_empty');
    await ca.ok({ type: 'chat.contacts.add', user: bob.username });       // alice lists bob
    await cc.ok(directFrame(bob.username, [bob.device_id], 'hello'));     // carol wrote to bob
    await cb.nextType('chat.message');
    const up = await cb.ok(bundle('new', 2, 10));
    assert.equal(up.identity_changed, true);
    for (const c of [ca, cc]) {
      const ev = await evt(c, 'identity.changed');
      assert.deepEqual([ev.user, ev.device_id], [bob.username, bob.device_id]);
    }
    assert.ok(await cd.none((f) => f.type === 'chat.event'), 'dave has nothing to do with bob');
    const f = await cd.ok({ type: 'chat.keys.fetch', user: bob.username });
    assert.equal(f.bundles[0].identity_key, key('ik-new'));
    assert.equal(f.bundles[0].one_time_prekey.key_id, 10, 'old one-time prekeys dropped');
    const same = await cb.ok(bundle('new', 1, 20));
    assert.equal(same.identity_changed, false);
    for (const c of [ca, cb, cc, cd]) c.close();
  });

  test('concurrent fetches of one bundle never hand out a one-time prekey twice', async () => {
    const bob = await register(d);
    const cb = await Client.connect(d, bob);
    await cb.ok(bundle('c', 20));
    const fetchers = [];
    for (let i = 0; i < 30; i++) fetchers.push(await register(d));
    const clients = await Promise.all(fetchers.map((u) => Client.connect(d, u)));
    const results = await Promise.all(clients.map((c) => c.ok({ type: 'chat.keys.fetch', user: bob.username })));
    const given = results.map((r) => r.bundles[0].one_time_prekey?.key_id).filter((k) => k !== undefined);
    assert.equal(given.length, 20, 'all 20 handed out, then the signed prekey only');
    assert.equal(new Set(given).size, 20, 'no one-time prekey twice');
    for (const c of [cb, ...clients]) c.close();
  });
});
