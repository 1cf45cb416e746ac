// turn.test.mjs: parleyd's TURN server over UDP against software nobody here wrote:
// coturn's turnutils_stunclient (Binding), turnutils_uclient (Allocate, Refresh,
// CreatePermission, ChannelBind, ChannelData, Send/Data indications, EVEN-PORT pairs)
// and turnutils_peer (an echo peer), over IPv4 and IPv6 (::1), with static users and
// TURN REST credentials; the 403 and 401 paths; /stats and /metrics during the run.
//
// uclient starts each session's traffic 1-6 s after allocating (random), so its runs
// take ~7 s however short: the scenarios run concurrently against one daemon.
// Bad inputs against the live daemon are in turn_badinput.test.mjs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startTurnDaemon, startPeer, uclient, stunclient, metrics, counter,
  TURN_USER, TURN_PASS, TURN_SECRET,
} from './lib/turn.mjs';

const PAYLOAD = 160;

describe('TURN over UDP with coturn clients', { concurrency: true }, () => {
  let d, peer;
  before(async () => {
    d = await startTurnDaemon({ threads: 2 });
    peer = await startPeer();
  });
  after(async () => {
    await peer?.stop();
    const exit = await d?.stop();
    // A clean exit: no sanitizer report, no leak, no crash at shutdown.
    if (exit) assert.deepEqual(exit, { code: 0, signal: null }, d.logText.slice(-3000));
  });

  // Runs a uclient scenario and asserts zero loss: every message sent came back.
  async function echoRun({ server, peerAddr, creds, extra = [], sessions, messages, pairs = false }) {
    const args = [...creds, '-e', peerAddr, '-r', String(peer.port), '-l', String(PAYLOAD),
      '-n', String(messages), '-m', String(sessions), ...(pairs ? [] : ['-c']), ...extra];
    const r = await uclient(server, d.turnPort, args, { timeoutMs: 30000 });
    assert.equal(r.timedOut, false, `uclient timed out:\n${r.out.slice(-2000)}`);
    assert.equal(r.code, 0, `uclient exit ${r.code}:\n${r.out.slice(-2000)}`);
    const s = r.summary;
    // Without -c, uclient splits the sessions into RTP+RTCP pairs (still -m in all).
    const expected = sessions * messages;
    assert.equal(s.sent, expected, `sent ${s.sent}, expected ${expected}:\n${r.out.slice(-1500)}`);
    assert.equal(s.received, expected, `received ${s.received} of ${expected}`);
    assert.equal(s.lost, 0);
    assert.equal(s.sendDropped, 0);
    assert.ok(s.rttAvgMs !== null && s.rttAvgMs < 100, `round trip ${s.rttAvgMs} ms`);
    return r;
  }

  const user = ['-u', TURN_USER, '-w', TURN_PASS];
  const rest = ['-u', 'bob', '-W', TURN_SECRET];

  test('turnutils_stunclient gets its reflexive address over IPv4 and IPv6', async () => {
    const [v4, v6] = await Promise.all([stunclient('127.0.0.1', d.turnPort), stunclient('::1', d.turnPort)]);
    assert.equal(v4.code, 0, v4.out);
    assert.equal(v4.mapped.length, 1, v4.out);
    assert.match(v4.mapped[0], /^127\.0\.0\.1:\d+$/);
    assert.notEqual(v4.mapped[0], `127.0.0.1:${d.turnPort}`, 'mapped address is the client, not the server');
    assert.equal(v6.code, 0, v6.out);
    assert.equal(v6.mapped.length, 1, v6.out);
    assert.match(v6.mapped[0], /^::1:\d+$/);
  });

  test('IPv4, static user, channels: RTP+RTCP pairs (EVEN-PORT), zero loss', async () => {
    await echoRun({ server: '127.0.0.1', peerAddr: '127.0.0.1', creds: user, sessions: 4, messages: 60, pairs: true });
  });

  test('IPv4, static user, Send/Data indications (-s): zero loss', async () => {
    await echoRun({ server: '127.0.0.1', peerAddr: '127.0.0.1', creds: user, sessions: 4, messages: 60, extra: ['-s'] });
  });

  test('IPv4, REST credentials (-W secret), channels, 10 sessions at 100 pps each: zero loss', async () => {
    await echoRun({ server: '127.0.0.1', peerAddr: '127.0.0.1', creds: rest, sessions: 10, messages: 150, extra: ['-z', '10'] });
  });

  test('IPv6 (::1), static user, channels: zero loss', async () => {
    await echoRun({ server: '::1', peerAddr: '::1', creds: user, sessions: 4, messages: 60, extra: ['-x'] });
  });

  test('IPv6 (::1), REST credentials, Send/Data indications: zero loss', async () => {
    await echoRun({ server: '::1', peerAddr: '::1', creds: rest, sessions: 3, messages: 60, extra: ['-x', '-s'] });
  });

  test('/stats lists the allocations of a running uclient, /metrics counts their packets', async () => {
    const before = await metrics(d);
    // A user of its own: the other scenarios run at the same time.
    const run = uclient('127.0.0.1', d.turnPort, ['-u', 'stats-user', '-W', TURN_SECRET, '-e', '127.0.0.1', '-r', String(peer.port),
      '-l', String(PAYLOAD), '-n', '100', '-m', '3', '-c', '-z', '20'], { timeoutMs: 30000 });
    let seen = null;
    const t0 = Date.now();
    while (!seen && Date.now() - t0 < 8000) {
      await new Promise((r) => setTimeout(r, 250));
      const st = JSON.parse((await d.admin('/stats')).text).modules.turn;
      const mine = st.allocation_list.filter((a) => /^\d+:stats-user$/.test(a.user) && a.channels > 0 &&
        a.pkts_c2p > 0);
      if (mine.length) seen = { st, mine };
    }
    const r = await run;
    assert.equal(r.code, 0, r.out.slice(-1500));
    assert.ok(seen, '/stats never listed a uclient allocation with traffic');
    const a = seen.mine[0];
    assert.equal(a.transport, 'udp');
    assert.match(a.id, /^t\d+-\d+$/);
    assert.match(a.client, /^127\.0\.0\.1:\d+$/);
    assert.equal(a.server, `127.0.0.1:${d.turnPort}`);
    assert.match(a.relay[0], /^127\.0\.0\.1:\d+$/);
    assert.ok(a.bytes_c2p >= a.pkts_c2p * PAYLOAD, JSON.stringify(a));
    assert.equal(seen.st.allocations, seen.st.allocations_per_thread.reduce((x, y) => x + y, 0));
    assert.ok(seen.st.allocations >= 1);
    const after_ = await metrics(d);
    for (const dir of ['client_to_peer', 'peer_to_client']) {
      const delta = counter(after_, 'parley_turn_relayed_packets_total', { direction: dir }) -
        counter(before, 'parley_turn_relayed_packets_total', { direction: dir });
      assert.ok(delta >= 300, `${dir}: ${delta} packets counted, uclient sent 300`);
    }
  });

  test('a wrong password gets 401 and no allocation', async () => {
    const before = await metrics(d);
    const r = await uclient('127.0.0.1', d.turnPort, ['-u', TURN_USER, '-w', 'not-the-password',
      '-e', '127.0.0.1', '-r', String(peer.port), '-n', '5', '-m', '1', '-c'], { timeoutMs: 20000 });
    assert.notEqual(r.code, 0, r.out.slice(-1500));
    assert.match(r.out, /Cannot complete Allocation/);
    const m = await metrics(d);
    const d401 = counter(m, 'parley_turn_responses_total', { code: '401' }) -
      counter(before, 'parley_turn_responses_total', { code: '401' });
    const bad = counter(m, 'parley_turn_auth_failures_total', { reason: 'bad_integrity' }) -
      counter(before, 'parley_turn_auth_failures_total', { reason: 'bad_integrity' });
    assert.ok(d401 >= 2, `401 responses: ${d401}`);
    assert.ok(bad >= 1, `bad_integrity failures: ${bad}`);
    // REST credentials signed with another secret fail the same way.
    const r2 = await uclient('127.0.0.1', d.turnPort, ['-u', 'bob', '-W', 'some-other-secret',
      '-e', '127.0.0.1', '-r', String(peer.port), '-n', '5', '-m', '1', '-c'], { timeoutMs: 20000 });
    assert.notEqual(r2.code, 0);
    assert.match(r2.out, /Cannot complete Allocation/);
  });
});

describe('TURN peer policy', () => {
  let d, peer;
  before(async () => {
    // Loopback is denied by default; allow some other range only.
    d = await startTurnDaemon({ threads: 1, allowedPeers: ['192.0.2.0/24'], v6: false });
    peer = await startPeer({ addrs: ['127.0.0.1'] });
  });
  after(async () => {
    await peer?.stop();
    const exit = await d?.stop();
    // A clean exit: no sanitizer report, no leak, no crash at shutdown.
    if (exit) assert.deepEqual(exit, { code: 0, signal: null }, d.logText.slice(-3000));
  });

  test('relaying to 127.0.0.1 is refused with 403 when allowed_peers does not allow it', async () => {
    const [cb, perm] = await Promise.all([
      uclient('127.0.0.1', d.turnPort, ['-u', TURN_USER, '-w', TURN_PASS, '-e', '127.0.0.1',
        '-r', String(peer.port), '-n', '5', '-m', '1', '-c'], { timeoutMs: 20000 }),
      uclient('127.0.0.1', d.turnPort, ['-u', TURN_USER, '-w', TURN_PASS, '-e', '127.0.0.1',
        '-r', String(peer.port), '-n', '5', '-m', '1', '-c', '-s'], { timeoutMs: 20000 }),
    ]);
    assert.notEqual(cb.code, 0, cb.out.slice(-1500));
    assert.match(cb.out, /channel bind: error 403/);
    assert.notEqual(perm.code, 0, perm.out.slice(-1500));
    assert.match(perm.out, /403/);
    const m = await metrics(d);
    assert.ok(counter(m, 'parley_turn_responses_total', { code: '403' }) >= 2);
    assert.equal(counter(m, 'parley_turn_relayed_packets_total'), 0, 'nothing was relayed');
  });
});
