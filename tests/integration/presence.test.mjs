// presence.test.mjs: presence in Redis and cross-node routing with two real parleyd
// nodes sharing a real redis-server (Debian's, on a free loopback port, stopped by PID)
// and one SQLite file (the accounts both nodes know): a call invite, its answer, SDP
// and trickled ICE routed across nodes both ways; one live connection per device
// across nodes; Redis killed (SIGKILL) and restarted mid-test: both nodes say so in
// /readyz, metrics and logs, keep serving their own users, reconnect, re-register and
// route across nodes again; a node that dies has its devices expire.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { parsePrometheus, sample, tempDir } from './lib/daemon.mjs';
import { startNode, register, login, Client, Redis, until, readyz } from './lib/sigclient.mjs';

async function metric(d, name, labels = {}) {
  const m = parsePrometheus((await d.admin('/metrics')).text);
  const s = sample(m, name, labels);
  return s ? s.value : undefined;
}

describe('presence in Redis, two nodes', () => {
  let redis, n1, n2, shared;
  const nodeSets = (name) => [`process.node_id=${name}`, 'presence.backend=redis',
    `presence.redis_url=redis://127.0.0.1:${redis.port}`, `presence.key_prefix=t${process.pid}:`,
    'presence.ttl=2s', 'presence.heartbeat_interval=500ms', 'presence.reconnect_max=500ms',
    'presence.connect_timeout=1s', `store.path=${join(shared, 'parley.db')}`];

  before(async () => {
    shared = tempDir('parley-shared-');
    redis = await Redis.start();
    n1 = await startNode(nodeSets('n1'));
    n2 = await startNode(nodeSets('n2'));
    await until(async () => await readyz(n1) === 200 && await readyz(n2) === 200, 10000, 'both nodes ready');
  });
  after(async () => {
    await n1?.stop();
    await n2?.stop();
    await redis?.stop();
    rmSync(shared, { recursive: true, force: true });
  });

  // A registered user with one device connected to each node in `nodes`.
  async function user(nodes) {
    const reg = await register(nodes[0]);
    const clients = [await Client.authed(nodes[0], reg.token)];
    for (let i = 1; i < nodes.length; i++) {
      const l = await login(nodes[i], reg.username, `dev${i}`);
      clients.push(await Client.authed(nodes[i], l.token));
    }
    return { username: reg.username, account_id: reg.account_id, clients };
  }

  test('a call invite, its answer, SDP and ICE are routed across nodes', async () => {
    const a = await user([n1]);
    const b = await user([n2, n2]);
    const remote0 = await metric(n1, 'parley_router_events_total', { route: 'remote' });
    const inv = await a.clients[0].ok({ type: 'call.invite', callee_id: b.account_id, media: 'video' });
    assert.match(inv.call_id, /@n1$/, 'the call lives on the caller\'s node');
    const call_id = inv.call_id;
    for (const c of b.clients) {
      const ring = await c.push('call.ring');
      assert.deepEqual([ring.call_id, ring.caller_id, ring.media], [call_id, a.account_id, 'video']);
    }
    await b.clients[0].ok({ type: 'call.ringing', call_id });
    assert.equal((await a.clients[0].push('call.ringing')).device_id, b.clients[0].device_id);
    const acc = await b.clients[0].ok({ type: 'call.accept', call_id });   // forwarded to n1
    assert.ok(Array.isArray(acc.ice_servers));
    assert.equal((await a.clients[0].push('call.accepted')).device_id, b.clients[0].device_id);
    assert.equal((await b.clients[1].push('call.answered_elsewhere')).answer, 'accepted');

    await a.clients[0].ok({ type: 'call.sdp', call_id, sdp_type: 'offer', sdp: 'v=0 offer from n1' });
    assert.equal((await b.clients[0].push('call.sdp')).sdp, 'v=0 offer from n1');
    await b.clients[0].ok({ type: 'call.sdp', call_id, sdp_type: 'answer', sdp: 'v=0 answer from n2' });
    assert.equal((await a.clients[0].push('call.sdp')).sdp, 'v=0 answer from n2');
    for (let i = 0; i < 5; i++)
      await b.clients[0].ok({ type: 'call.ice', call_id, candidate: { candidate: `candidate:${i}`, sdpMid: '0' } });
    for (let i = 0; i < 5; i++)
      assert.equal((await a.clients[0].push('call.ice')).candidate.candidate, `candidate:${i}`, 'in order');
    await a.clients[0].ok({ type: 'call.ice', call_id, candidate: { candidate: 'candidate:a' } });
    assert.equal((await b.clients[0].push('call.ice')).candidate.candidate, 'candidate:a');
    // The device on n2 that did not answer is not in the call, across nodes too.
    await b.clients[1].err({ type: 'call.ice', call_id, candidate: { candidate: '' } }, 'not_in_call');
    await b.clients[0].ok({ type: 'call.hangup', call_id });
    assert.equal((await a.clients[0].push('call.ended')).reason, 'hangup');
    assert.ok(await metric(n1, 'parley_router_events_total', { route: 'remote' }) > remote0);

    // The other way round: a call homed on n2, rejected from n1.
    const inv2 = await b.clients[1].ok({ type: 'call.invite', callee_id: a.account_id, media: 'audio' });
    assert.match(inv2.call_id, /@n2$/);
    await a.clients[0].push('call.ring');
    await a.clients[0].ok({ type: 'call.reject', call_id: inv2.call_id });
    assert.equal((await b.clients[1].push('call.rejected')).call_id, inv2.call_id);
    for (const c of [...a.clients, ...b.clients]) c.close();
  });

  test('one live connection per device across nodes', async () => {
    const reg = await register(n1);
    const first = await Client.authed(n1, reg.token);
    const kicks0 = await metric(n1, 'parley_presence_kicks_total');
    const second = await Client.authed(n2, reg.token);
    const closed = await Promise.race([first.closed,
      new Promise((_, rej) => setTimeout(() => rej(new Error('first connection not closed')), 5000))]);
    assert.equal(closed.code, 4001);
    assert.equal(await metric(n1, 'parley_presence_kicks_total'), kicks0 + 1);
    // The device is reachable on n2.
    const caller = await user([n1]);
    await caller.clients[0].ok({ type: 'call.invite', callee_id: reg.account_id, media: 'audio' });
    const ring = await second.push('call.ring');
    await caller.clients[0].ok({ type: 'call.cancel', call_id: ring.call_id });
    second.close();
    caller.clients[0].close();
  });

  test('Redis killed and restarted: both nodes report it, serve their own users, and recover', async () => {
    const a = await user([n1]);
    const a2 = await user([n1]);
    const b = await user([n2]);
    const from1 = n1.logText.length, from2 = n2.logText.length;
    await redis.kill();
    await until(async () => await readyz(n1) === 503 && await readyz(n2) === 503, 10000, '503 on both');
    assert.equal(await metric(n1, 'parley_presence_redis_up'), 0);
    assert.equal(await metric(n2, 'parley_presence_redis_up'), 0);
    await n1.waitForLog(/presence\.redis\.down/, 5000, from1);
    await n2.waitForLog(/presence\.redis\.down/, 5000, from2);

    // Local users are still served: a call between two users of n1.
    const local = await a.clients[0].ok({ type: 'call.invite', callee_id: a2.account_id, media: 'audio' });
    await a2.clients[0].push('call.ring');
    await a2.clients[0].ok({ type: 'call.accept', call_id: local.call_id });
    await a.clients[0].push('call.accepted');
    await a.clients[0].ok({ type: 'call.sdp', call_id: local.call_id, sdp_type: 'offer', sdp: 'local' });
    assert.equal((await a2.clients[0].push('call.sdp')).sdp, 'local');
    await a.clients[0].ok({ type: 'call.hangup', call_id: local.call_id });
    await a2.clients[0].push('call.ended');
    // Another node's user cannot be reached meanwhile.
    await a.clients[0].err({ type: 'call.invite', callee_id: b.account_id, media: 'audio' }, 'callee_unreachable');

    const reconnects0 = await metric(n1, 'parley_presence_redis_reconnects_total');
    await redis.restart();           // empty: both nodes must register their devices again
    await until(async () => await readyz(n1) === 200 && await readyz(n2) === 200, 15000, '200 on both');
    assert.equal(await metric(n1, 'parley_presence_redis_up'), 1);
    assert.ok(await metric(n1, 'parley_presence_redis_reconnects_total') >= reconnects0);
    await n1.waitForLog(/presence\.redis\.up .*down_ms=\d+/, 5000, from1);

    // Cross-node routing works again, both ways.
    const inv = await a.clients[0].ok({ type: 'call.invite', callee_id: b.account_id, media: 'audio' });
    await b.clients[0].push('call.ring');
    await b.clients[0].ok({ type: 'call.accept', call_id: inv.call_id });
    await a.clients[0].push('call.accepted');
    await b.clients[0].ok({ type: 'call.sdp', call_id: inv.call_id, sdp_type: 'offer', sdp: 'after' });
    assert.equal((await a.clients[0].push('call.sdp')).sdp, 'after');
    await a.clients[0].ok({ type: 'call.hangup', call_id: inv.call_id });
    await b.clients[0].push('call.ended');
    for (const c of [...a.clients, ...a2.clients, ...b.clients]) c.close();
  });

  test('a node that dies has its devices expire from the registry', async () => {
    const a = await user([n1]);
    const b = await user([n2]);
    const inv = await a.clients[0].ok({ type: 'call.invite', callee_id: b.account_id, media: 'audio' });
    await b.clients[0].push('call.ring');
    await a.clients[0].ok({ type: 'call.cancel', call_id: inv.call_id });
    await n2.stop('SIGKILL');
    n2 = null;
    // Within ttl (2 s) its entries are gone and the callee is offline, not unreachable.
    await until(async () => {
      const r = await a.clients[0].request({ type: 'call.invite', callee_id: b.account_id, media: 'audio' });
      if (r.type === 'call.invite.result') {
        await a.clients[0].ok({ type: 'call.cancel', call_id: r.call_id });
        return false;
      }
      assert.equal(r.type, 'error');
      return r.code === 'callee_offline';
    }, 6000, 'callee_offline after the node died');
    a.clients[0].close();
  });
});
