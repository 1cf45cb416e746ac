// calls.test.mjs: 1:1 call signaling on one parleyd (memory presence) through real
// WebSocket clients: every flow (invite -> ring on every callee device -> ringing ->
// accept -> answered elsewhere -> SDP offer/answer and trickled ICE -> hangup; reject;
// cancel; busy; ring timeout -> missed; a party disconnecting), every error path
// (not_in_call, bad_state, callee_offline, cannot_call_self, not_found, bad fields),
// the call metrics, the iceServers with TURN REST credentials that check out against
// [turn] auth_secret, and those credentials accepted by parleyd's own TURN server
// (coturn's turnutils_uclient).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { parsePrometheus, sample, freePort } from './lib/daemon.mjs';
import { startNode, register, login, Client } from './lib/sigclient.mjs';
import { uclient, startPeer } from './lib/turn.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A user with `devices` connected devices: { username, account_id, clients: [Client] }.
async function user(d, devices = 1) {
  const reg = await register(d);
  const clients = [await Client.authed(d, reg.token)];
  for (let i = 1; i < devices; i++) {
    const l = await login(d, reg.username, `phone${i}`);
    clients.push(await Client.authed(d, l.token));
  }
  return { username: reg.username, account_id: clients[0].account_id, clients };
}

// Invites callee from caller's first device; returns { call_id, result, rings }.
async function call(caller, callee, media = 'audio') {
  const result = await caller.clients[0].ok({ type: 'call.invite', callee_id: callee.account_id, media });
  const rings = [];
  for (const c of callee.clients) rings.push(await c.push('call.ring'));
  return { call_id: result.call_id, result, rings };
}

async function metric(d, name) {
  const m = parsePrometheus((await d.admin('/metrics')).text);
  const s = sample(m, name);
  return s ? s.value : 0;
}

function closeAll(...users) {
  for (const u of users) for (const c of u.clients) c.close();
}

describe('calls on one node', () => {
  let d;
  before(async () => { d = await startNode(['calls.ring_timeout=1500ms']); });
  after(async () => { await d.stop(); });

  test('invite rings every callee device; accept, answered elsewhere, SDP and ICE relayed, hangup', async () => {
    const a = await user(d), b = await user(d, 2);
    const invites0 = await metric(d, 'parley_calls_invites_total');
    const answered0 = await metric(d, 'parley_calls_answered_total');
    const setup0 = await metric(d, 'parley_calls_setup_seconds_count');
    const { call_id, result, rings } = await call(a, b, 'video');
    assert.match(call_id, /^[0-9a-f]{24}@node-1$/);
    assert.equal(result.callee_id, b.account_id);
    assert.equal(result.media, 'video');
    assert.ok(Array.isArray(result.ice_servers));
    for (const r of rings) {
      assert.equal(r.call_id, call_id);
      assert.equal(r.caller_id, a.account_id);
      assert.equal(r.caller_username, a.username);
      assert.equal(r.caller_device_id, a.clients[0].device_id);
      assert.equal(r.media, 'video');
      assert.ok(Array.isArray(r.ice_servers));
    }
    // Ringing is told to the caller once, whichever devices report it.
    await b.clients[0].ok({ type: 'call.ringing', call_id });
    await b.clients[1].ok({ type: 'call.ringing', call_id });
    const ringing = await a.clients[0].push('call.ringing');
    assert.equal(ringing.call_id, call_id);
    await a.clients[0].none('call.ringing');

    const acc = await b.clients[1].ok({ type: 'call.accept', call_id });
    assert.equal(acc.call_id, call_id);
    assert.ok(Array.isArray(acc.ice_servers));
    const accepted = await a.clients[0].push('call.accepted');
    assert.equal(accepted.device_id, b.clients[1].device_id);
    const elsewhere = await b.clients[0].push('call.answered_elsewhere');
    assert.deepEqual([elsewhere.call_id, elsewhere.answer], [call_id, 'accepted']);
    await b.clients[1].none('call.answered_elsewhere', 100);

    await a.clients[0].ok({ type: 'call.sdp', call_id, sdp_type: 'offer', sdp: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n' });
    const offer = await b.clients[1].push('call.sdp');
    assert.deepEqual([offer.sdp_type, offer.sdp, offer.from_device_id],
      ['offer', 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n', a.clients[0].device_id]);
    await b.clients[1].ok({ type: 'call.sdp', call_id, sdp_type: 'answer', sdp: 'v=0 answer' });
    const answer = await a.clients[0].push('call.sdp');
    assert.equal(answer.sdp_type, 'answer');
    // Trickled candidates, in order, with only RTCIceCandidateInit members relayed.
    for (let i = 0; i < 3; i++)
      await a.clients[0].ok({ type: 'call.ice', call_id,
        candidate: { candidate: `candidate:${i} 1 udp 2122260223 192.0.2.1 5000${i} typ host`, sdpMid: '0', sdpMLineIndex: 0, evil: 'x' } });
    for (let i = 0; i < 3; i++) {
      const ice = await b.clients[1].push('call.ice');
      assert.deepEqual(ice.candidate, { candidate: `candidate:${i} 1 udp 2122260223 192.0.2.1 5000${i} typ host`, sdpMid: '0', sdpMLineIndex: 0 });
    }
    await b.clients[1].ok({ type: 'call.ice', call_id, candidate: { candidate: '', sdpMid: null, sdpMLineIndex: null } });
    assert.equal((await a.clients[0].push('call.ice')).candidate.candidate, '');
    // The device that did not answer is not in the call.
    await b.clients[0].err({ type: 'call.sdp', call_id, sdp_type: 'answer', sdp: 'x' }, 'not_in_call');
    await b.clients[0].none('call.sdp', 50);

    await b.clients[1].ok({ type: 'call.hangup', call_id });
    const ended = await a.clients[0].push('call.ended');
    assert.deepEqual([ended.call_id, ended.reason], [call_id, 'hangup']);
    // The call is gone.
    await a.clients[0].err({ type: 'call.sdp', call_id, sdp_type: 'offer', sdp: 'x' }, 'not_in_call');
    assert.equal(await metric(d, 'parley_calls_invites_total'), invites0 + 1);
    assert.equal(await metric(d, 'parley_calls_answered_total'), answered0 + 1);
    assert.equal(await metric(d, 'parley_calls_setup_seconds_count'), setup0 + 1);
    closeAll(a, b);
  });

  test('reject: the caller learns it, the callee\'s other devices stop ringing', async () => {
    const a = await user(d), b = await user(d, 2);
    const rejected0 = await metric(d, 'parley_calls_rejected_total');
    const { call_id } = await call(a, b);
    await b.clients[0].ok({ type: 'call.reject', call_id });
    assert.equal((await a.clients[0].push('call.rejected')).call_id, call_id);
    const e = await b.clients[1].push('call.answered_elsewhere');
    assert.equal(e.answer, 'rejected');
    await b.clients[1].err({ type: 'call.accept', call_id }, 'not_in_call');
    assert.equal(await metric(d, 'parley_calls_rejected_total'), rejected0 + 1);
    // Both are free again.
    const again = await call(a, b);
    await a.clients[0].ok({ type: 'call.cancel', call_id: again.call_id });
    closeAll(a, b);
  });

  test('cancel while ringing; hangup while ringing is cancel (caller) or reject (callee)', async () => {
    const a = await user(d), b = await user(d, 2);
    let { call_id } = await call(a, b);
    await a.clients[0].ok({ type: 'call.cancel', call_id });
    for (const c of b.clients) {
      const f = await c.push('call.cancelled');
      assert.deepEqual([f.call_id, f.reason], [call_id, 'cancelled']);
    }
    ({ call_id } = await call(a, b));
    await a.clients[0].ok({ type: 'call.hangup', call_id });
    for (const c of b.clients) assert.equal((await c.push('call.cancelled')).call_id, call_id);
    ({ call_id } = await call(a, b));
    await b.clients[1].ok({ type: 'call.hangup', call_id });
    assert.equal((await a.clients[0].push('call.rejected')).call_id, call_id);
    assert.equal((await b.clients[0].push('call.answered_elsewhere')).answer, 'rejected');
    closeAll(a, b);
  });

  test('busy: a callee in a call, and a caller already in one', async () => {
    const a = await user(d), b = await user(d), c = await user(d);
    const busy0 = await metric(d, 'parley_calls_busy_total');
    const { call_id } = await call(a, b);
    await b.clients[0].ok({ type: 'call.accept', call_id });
    await a.clients[0].push('call.accepted');
    await c.clients[0].err({ type: 'call.invite', callee_id: b.account_id, media: 'audio' }, 'busy');
    await c.clients[0].err({ type: 'call.invite', callee_id: a.account_id, media: 'audio' }, 'busy');
    await a.clients[0].err({ type: 'call.invite', callee_id: c.account_id, media: 'audio' }, 'already_in_call');
    await c.clients[0].none('call.ring', 50);
    assert.equal(await metric(d, 'parley_calls_busy_total'), busy0 + 2);
    await a.clients[0].ok({ type: 'call.hangup', call_id });
    await b.clients[0].push('call.ended');
    const again = await call(c, b);
    await c.clients[0].ok({ type: 'call.cancel', call_id: again.call_id });
    closeAll(a, b, c);
  });

  test('no answer within ring_timeout: call.missed to both sides', async () => {
    const a = await user(d), b = await user(d, 2);
    const missed0 = await metric(d, 'parley_calls_missed_total');
    const { call_id } = await call(a, b);
    const m = await a.clients[0].push('call.missed', 5000);
    assert.deepEqual([m.call_id, m.caller_id, m.callee_id, m.media], [call_id, a.account_id, b.account_id, 'audio']);
    for (const c of b.clients) assert.equal((await c.push('call.missed', 5000)).call_id, call_id);
    await b.clients[0].err({ type: 'call.accept', call_id }, 'not_in_call');
    assert.equal(await metric(d, 'parley_calls_missed_total'), missed0 + 1);
    closeAll(a, b);
  });

  test('a party disconnecting ends the call', async () => {
    const a = await user(d), b = await user(d, 2);
    let { call_id } = await call(a, b);
    await b.clients[0].ok({ type: 'call.accept', call_id });
    await a.clients[0].push('call.accepted');
    b.clients[0].close();
    const e = await a.clients[0].push('call.ended');
    assert.deepEqual([e.call_id, e.reason], [call_id, 'disconnected']);
    // The caller goes away while it rings: the callee's devices stop ringing.
    const a2 = await user(d);
    const b2 = await user(d, 2);
    ({ call_id } = await call(a2, b2));
    a2.clients[0].close();
    for (const c of b2.clients) {
      const f = await c.push('call.cancelled');
      assert.deepEqual([f.call_id, f.reason], [call_id, 'disconnected']);
    }
    closeAll(a, b, b2);
  });

  test('invite by username; unknown users, offline callees and yourself', async () => {
    const a = await user(d), b = await user(d);
    const r = await a.clients[0].ok({ type: 'call.invite', callee: b.username.toUpperCase(), media: 'audio' });
    assert.equal(r.callee_id, b.account_id);
    await b.clients[0].push('call.ring');
    await a.clients[0].ok({ type: 'call.cancel', call_id: r.call_id });
    await a.clients[0].err({ type: 'call.invite', callee: 'nosuchuser123', media: 'audio' }, 'not_found');
    await a.clients[0].err({ type: 'call.invite', callee: 'bad name!', media: 'audio' }, 'not_found');
    await a.clients[0].err({ type: 'call.invite', callee_id: a.account_id, media: 'audio' }, 'cannot_call_self');
    const off = await register(d);       // registered, never connected
    await a.clients[0].err({ type: 'call.invite', callee_id: off.account_id, media: 'audio' }, 'callee_offline');
    await a.clients[0].err({ type: 'call.invite', callee_id: 999999, media: 'audio' }, 'callee_offline');
    closeAll(a, b);
  });

  test('who may do what: not_in_call and bad_state', async () => {
    const a = await user(d), b = await user(d), eve = await user(d);
    const { call_id } = await call(a, b);
    const fake = call_id.replace(/^./, call_id[0] === 'a' ? 'b' : 'a');
    for (const type of ['call.accept', 'call.reject', 'call.ringing', 'call.cancel', 'call.hangup'])
      await eve.clients[0].err({ type, call_id }, 'not_in_call');
    await eve.clients[0].err({ type: 'call.sdp', call_id, sdp_type: 'offer', sdp: 'x' }, 'not_in_call');
    await eve.clients[0].err({ type: 'call.ice', call_id, candidate: { candidate: '' } }, 'not_in_call');
    await b.clients[0].err({ type: 'call.accept', call_id: fake }, 'not_in_call');
    await b.clients[0].err({ type: 'call.accept', call_id: call_id.replace('@node-1', '@node-9') }, 'not_in_call');
    await a.clients[0].err({ type: 'call.sdp', call_id, sdp_type: 'offer', sdp: 'x' }, 'bad_state');
    await a.clients[0].err({ type: 'call.accept', call_id }, 'bad_state');
    await a.clients[0].err({ type: 'call.reject', call_id }, 'bad_state');
    await b.clients[0].err({ type: 'call.cancel', call_id }, 'bad_state');
    await b.clients[0].ok({ type: 'call.accept', call_id });
    await b.clients[0].err({ type: 'call.accept', call_id }, 'bad_state');
    await a.clients[0].err({ type: 'call.cancel', call_id }, 'bad_state');
    await a.clients[0].push('call.accepted');
    await eve.clients[0].none('call.ring', 50);
    await a.clients[0].ok({ type: 'call.hangup', call_id });
    closeAll(a, b, eve);
  });

  test('malformed call frames get bad_field and the connection lives on', async () => {
    const a = await user(d), b = await user(d);
    const bad = [
      { type: 'call.invite', callee_id: b.account_id },
      { type: 'call.invite', callee_id: b.account_id, media: 'smell' },
      { type: 'call.invite', media: 'audio' },
      { type: 'call.invite', callee_id: 'x', media: 'audio' },
      { type: 'call.invite', callee_id: -1, media: 'audio' },
      { type: 'call.accept' },
      { type: 'call.accept', call_id: 5 },
      { type: 'call.accept', call_id: 'not-a-call' },
      { type: 'call.accept', call_id: '0123456789abcdef01234567@bad node' },
      { type: 'call.sdp', call_id: '0123456789abcdef01234567@node-1', sdp_type: 'offer' },
      { type: 'call.sdp', call_id: '0123456789abcdef01234567@node-1', sdp_type: 'bogus', sdp: 'x' },
      { type: 'call.ice', call_id: '0123456789abcdef01234567@node-1' },
      { type: 'call.ice', call_id: '0123456789abcdef01234567@node-1', candidate: 'x' },
      { type: 'call.ice', call_id: '0123456789abcdef01234567@node-1', candidate: {} },
      { type: 'call.ice', call_id: '0123456789abcdef01234567@node-1', candidate: { candidate: '', sdpMLineIndex: -1 } },
      { type: 'call.ice', call_id: '0123456789abcdef01234567@node-1', candidate: { candidate: 'x'.repeat(5000) } },
    ];
    for (const f of bad) await a.clients[0].err(f, 'bad_field');
    // Still usable.
    const { call_id } = await call(a, b);
    await a.clients[0].ok({ type: 'call.cancel', call_id });
    closeAll(a, b);
  });
});

// TURN REST (draft-uberti-behave-turn-rest-00): password = base64(HMAC-SHA1(secret, username)).
function restPassword(secret, username) {
  return createHmac('sha1', secret).update(username).digest('base64');
}

describe('iceServers and parleyd\'s TURN', () => {
  const secret = 'calls-turn-secret';
  let d, turnPort;
  before(async () => {
    turnPort = await freePort();
    d = await startNode([], {
      ini: ['[turn]', 'enabled = true', `listen = 127.0.0.1:${turnPort}`, `auth_secret = ${secret}`,
        'rest_ttl = 10m', 'allowed_peers = 127.0.0.1/32', 'threads = 1', ''].join('\n'),
    });
  });
  after(async () => { await d.stop(); });

  test('both participants get STUN and TURN URLs with credentials minted from [turn] auth_secret', async () => {
    const a = await user(d), b = await user(d);
    const { call_id, result, rings } = await call(a, b);
    const acc = await b.clients[0].ok({ type: 'call.accept', call_id });
    for (const [servers, account] of [[result.ice_servers, a.account_id], [rings[0].ice_servers, b.account_id],
      [acc.ice_servers, b.account_id]]) {
      assert.deepEqual(servers[0], { urls: [`stun:127.0.0.1:${turnPort}`] });
      const t = servers[1];
      assert.deepEqual(t.urls, [`turn:127.0.0.1:${turnPort}?transport=udp`, `turn:127.0.0.1:${turnPort}?transport=tcp`]);
      const [expiry, who] = t.username.split(':');
      assert.equal(Number(who), account);
      const left = Number(expiry) - Date.now() / 1000;
      assert.ok(left > 590 && left <= 601, `expiry in ${left} s`);
      assert.equal(t.credential, restPassword(secret, t.username));
    }
    await a.clients[0].ok({ type: 'call.hangup', call_id });
    closeAll(a, b);
  });

  test('the minted credentials are accepted by parleyd\'s TURN (turnutils_uclient)', async () => {
    const a = await user(d), b = await user(d);
    const { call_id, result } = await call(a, b);
    const turn = result.ice_servers.find((s) => s.username);
    const peer = await startPeer({ addrs: ['127.0.0.1'] });
    try {
      const r = await uclient('127.0.0.1', turnPort,
        ['-n', '3', '-m', '1', '-u', turn.username, '-w', turn.credential, '-e', '127.0.0.1', '-r', String(peer.port)]);
      assert.equal(r.timedOut, false, r.out);
      assert.equal(r.summary.errors.length, 0, r.out);
      assert.ok(r.summary.received >= 1, r.out);
      // A forged password is refused.
      const bad = await uclient('127.0.0.1', turnPort,
        ['-n', '1', '-m', '1', '-u', turn.username, '-w', 'forged', '-e', '127.0.0.1', '-r', String(peer.port)],
        { timeoutMs: 15000 });
      assert.ok(!(bad.summary.received >= 1), bad.out);
    } finally { await peer.stop(); }
    await a.clients[0].ok({ type: 'call.cancel', call_id });
    closeAll(a, b);
  });
});
