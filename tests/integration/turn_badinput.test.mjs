// turn_badinput.test.mjs: bad input against a live parleyd TURN server over UDP while
// coturn's turnutils_uclient relays through it: malformed STUN, wrong FINGERPRINT,
// unknown comprehension-required attributes (420), oversized datagrams, truncated and
// unbound ChannelData, responses where requests belong, and a flood of unauthenticated
// Allocates from one source (per-source rate limit). Each either gets the answer RFC
// 8489/8656 prescribes or is dropped and counted under parley_turn_drops_total{reason};
// the uclient session keeps zero loss throughout.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import {
  startTurnDaemon, startPeer, uclient, metrics, counter, stunMessage, parseStun,
  TURN_USER, TURN_PASS,
} from './lib/turn.mjs';

const BINDING = 0x0001, ALLOCATE = 0x0003, BINDING_OK = 0x0101;
const REQUESTED_TRANSPORT_UDP = [0x0019, Buffer.from([17, 0, 0, 0])];
const UNAUTH_RATE = 100;    // turn.unauth_rate default: requests/s per source IP

// A UDP socket bound to a loopback source address of its own (127.0.0.0/8 is all
// local), so the per-source rate limit of one probe does not touch the others.
const opened = [];
async function socketFrom(addr) {
  const s = createSocket('udp4');
  await new Promise((res, rej) => { s.once('error', rej); s.bind(0, addr, res); });
  s.replies = [];
  s.on('message', (m) => s.replies.push(m));
  opened.push(s);
  return s;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const send = (s, buf, port) => new Promise((res, rej) => s.send(buf, port, '127.0.0.1', (e) => (e ? rej(e) : res())));

function dropDeltas(before, after_) {
  const out = {};
  for (const s of after_.samples.filter((x) => x.name === 'parley_turn_drops_total'))
    out[s.labels.reason] = s.value - counter(before, 'parley_turn_drops_total', { reason: s.labels.reason });
  return out;
}

describe('bad input against a live TURN server', () => {
  let d, peer;
  before(async () => {
    d = await startTurnDaemon({ threads: 2, v6: false });
    peer = await startPeer({ addrs: ['127.0.0.1'] });
  });
  after(async () => {
    for (const s of opened.splice(0)) s.close();
    await peer?.stop();
    const exit = await d?.stop();
    // A clean exit: no sanitizer report, no leak, no crash at shutdown.
    if (exit) assert.deepEqual(exit, { code: 0, signal: null }, d.logText.slice(-3000));
  });

  test('malformed packets and a rate-limited flood are answered or dropped and counted; a uclient session keeps zero loss', async () => {
    const sessions = 4, messages = 150;
    const run = uclient('127.0.0.1', d.turnPort, ['-u', TURN_USER, '-w', TURN_PASS, '-e', '127.0.0.1',
      '-r', String(peer.port), '-l', '160', '-n', String(messages), '-m', String(sessions), '-c', '-z', '20'],
    { timeoutMs: 40000 });
    await sleep(1500);      // allocations and channels are up; data flows from 1-6 s on

    const before = await metrics(d);
    const probe = await socketFrom('127.0.0.3');
    const P = d.turnPort;
    const tidOf = (b) => b.subarray(8, 20).toString('hex');

    // Answered: a valid Binding (with a correct FINGERPRINT), a request whose header is
    // fine but whose attribute overruns the body (400, RFC 8489 §6.3), a request with an
    // unknown comprehension-required attribute (420 + UNKNOWN-ATTRIBUTES, §6.3.1.1).
    const good = stunMessage(BINDING, [], { fingerprint: true });
    const overrun = stunMessage(BINDING, [[0x0006, Buffer.from('abcd')]]);
    overrun.writeUInt16BE(200, 22);         // USERNAME claims 200 bytes; 4 are there
    const unknown = stunMessage(BINDING, [[0x0031, Buffer.from([1, 2, 3, 4])]]);
    // Dropped: expected reason for each.
    const lengthMismatch = stunMessage(BINDING);
    lengthMismatch.writeUInt16BE(8, 2);     // header says 8 more bytes; none follow
    const badFp = stunMessage(BINDING, [], { badFingerprint: true });
    const noCookie = Buffer.from(stunMessage(BINDING)); noCookie.writeUInt32BE(0x12345678, 4);
    const response = stunMessage(BINDING_OK);       // a success response sent to the server
    const cdTruncated = Buffer.concat([Buffer.from([0x40, 0x00, 0x00, 0x64]), Buffer.alloc(10)]);
    const cdUnbound = Buffer.concat([Buffer.from([0x40, 0x01, 0x00, 0x08]), Buffer.alloc(8)]);
    const cdShort = Buffer.from([0x40, 0x00, 0x00]);
    const oversized = Buffer.alloc(4000, 0x41);     // larger than a receive slot
    const cases = [
      [good], [overrun], [unknown],
      [lengthMismatch, 'malformed'], [badFp, 'bad_fingerprint'], [noCookie, 'not_stun'],
      [Buffer.alloc(0), 'not_stun'], [Buffer.from('GET / HTTP/1.1\r\n\r\n'), 'malformed'],     // 'G' = 0b01...: ChannelData
      [response, 'unexpected'], [cdTruncated, 'malformed'], [cdUnbound, 'no_allocation'],
      [cdShort, 'not_stun'], [oversized, 'truncated'],
    ];
    for (const [buf] of cases) await send(probe, buf, P);

    // A flood of unauthenticated Allocates from one source, sent as fast as we can.
    const flood = await socketFrom('127.0.0.2');
    const N = 1500;
    const t0 = Date.now();
    for (let i = 0; i < N; i += 50) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + 50); k++)
        batch.push(send(flood, stunMessage(ALLOCATE, [REQUESTED_TRANSPORT_UDP]), P));
      await Promise.all(batch);
    }
    const floodS = (Date.now() - t0) / 1000;
    // Another source is not limited by the flood.
    const bystander = await socketFrom('127.0.0.4');
    const bgood = stunMessage(BINDING);
    await send(bystander, bgood, P);
    await sleep(700);

    // --- the answers ---
    const replies = new Map(probe.replies.map((b) => [tidOf(b), b]));
    const rGood = parseStun(replies.get(tidOf(good)) ?? Buffer.alloc(0));
    assert.ok(rGood && rGood.cls === 'success' && rGood.attrs.has(0x0020), 'Binding answered with XOR-MAPPED-ADDRESS');
    assert.ok(rGood.attrs.has(0x8028), 'FINGERPRINT answered with FINGERPRINT');
    const rOverrun = parseStun(replies.get(tidOf(overrun)) ?? Buffer.alloc(0));
    assert.equal(rOverrun?.errorCode, 400, 'overrunning attribute: 400');
    const rUnknown = parseStun(replies.get(tidOf(unknown)) ?? Buffer.alloc(0));
    assert.equal(rUnknown?.errorCode, 420, 'unknown comprehension-required attribute: 420');
    assert.deepEqual([...(rUnknown.attrs.get(0x000A) ?? [])].slice(0, 2), [0x00, 0x31], 'UNKNOWN-ATTRIBUTES lists 0x0031');
    assert.equal(probe.replies.length, 3, `only the three requests are answered (${probe.replies.length} replies)`);
    assert.equal(bystander.replies.length, 1, 'a Binding from another source is answered during the flood');
    assert.equal(parseStun(bystander.replies[0])?.cls, 'success');

    const answered = flood.replies.map(parseStun);
    assert.ok(answered.every((r) => r && r.cls === 'error' && r.errorCode === 401), 'flood answers are 401s');
    assert.ok(flood.replies.every((b) => b.length <= 160), `401 stays small: ${Math.max(...flood.replies.map((b) => b.length))} bytes`);
    // One source's 4-tuple reaches one relay thread: a burst of UNAUTH_RATE, then
    // UNAUTH_RATE per second.
    const cap = UNAUTH_RATE + UNAUTH_RATE * (floodS + 0.7) + 5;
    assert.ok(answered.length >= UNAUTH_RATE / 2 && answered.length <= cap,
      `flood of ${N} in ${floodS}s: ${answered.length} answered (expected ${UNAUTH_RATE}..${cap.toFixed(0)})`);

    // --- the counters ---
    const m = await metrics(d);
    const drops = dropDeltas(before, m);
    const expected = {};
    for (const [, reason] of cases) if (reason) expected[reason] = (expected[reason] ?? 0) + 1;
    expected.malformed += 1;    // the overrunning request is counted as malformed and answered
    for (const [reason, n] of Object.entries(expected))
      assert.equal(drops[reason], n, `drops{reason="${reason}"}: ${drops[reason]}, expected ${n} (${JSON.stringify(drops)})`);
    assert.equal(drops.rate_limited, N - answered.length, `rate_limited ${drops.rate_limited} + answered ${answered.length} = ${N}`);
    for (const reason of ['no_permission', 'no_channel', 'send_failed', 'bandwidth'])
      assert.equal(drops[reason] ?? 0, 0, `drops{reason="${reason}"} stayed 0 during the uclient session`);

    // --- one source over many ports: SO_REUSEPORT hands them to both relay threads,
    // which share the buckets, so the source still gets UNAUTH_RATE and no more.
    // (20 random source ports all on one of two threads: ~2e-6.)
    const spread = await Promise.all(Array.from({ length: 20 }, () => socketFrom('127.0.0.3')));
    const t1 = Date.now();
    for (let i = 0; i < N; i += 50) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + 50); k++)
        batch.push(send(spread[k % spread.length], stunMessage(ALLOCATE, [REQUESTED_TRANSPORT_UDP]), P));
      await Promise.all(batch);
    }
    const spreadS = (Date.now() - t1) / 1000;
    await sleep(700);
    const spreadAnswered = spread.reduce((n, x) => n + x.replies.length, 0);
    const cap2 = UNAUTH_RATE + UNAUTH_RATE * (spreadS + 0.7) + 5;
    assert.ok(spreadAnswered >= UNAUTH_RATE / 2 && spreadAnswered <= cap2,
      `flood of ${N} over ${spread.length} ports in ${spreadS}s: ${spreadAnswered} answered ` +
      `(expected ${UNAUTH_RATE}..${cap2.toFixed(0)}, as from one port)`);
    const m2 = await metrics(d);
    assert.equal(dropDeltas(m, m2).rate_limited, N - spreadAnswered);

    // --- the real session, all along ---
    const r = await run;
    assert.equal(r.code, 0, r.out.slice(-1500));
    assert.equal(r.summary.sent, sessions * messages);
    assert.equal(r.summary.received, sessions * messages, r.out.slice(-1500));
    assert.equal(r.summary.lost, 0);
    assert.equal((await d.admin('/healthz')).status, 200);
  });
});
