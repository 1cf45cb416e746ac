// turn_limits.test.mjs: turn.max_unallocated_per_ip against raw TCP clients. One source
// address may hold that many TCP connections without an allocation; the next is closed
// at once (counted in parley_turn_stream_refused_total) while other addresses connect
// as usual. A connection that makes an allocation (an authenticated Allocate over that
// connection, built here by hand: 401, then MESSAGE-INTEGRITY with the long-term key)
// or closes frees its place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createHash, createHmac } from 'node:crypto';
import {
  startTurnDaemon, stunMessage, parseStun, metrics, counter, TURN_USER, TURN_PASS, TURN_REALM,
} from './lib/turn.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A TCP connection from localAddress; resolves once connected, with `gone` set when
// the server closes it and the STUN messages it sent queued in `msgs`.
function open(port, localAddress) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress });
    s.gone = false;
    s.msgs = [];
    let buf = Buffer.alloc(0);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 20 && buf.length >= 20 + buf.readUInt16BE(2)) {
        const n = 20 + buf.readUInt16BE(2);
        s.msgs.push(parseStun(buf.subarray(0, n)));
        buf = buf.subarray(n);
      }
    });
    s.on('close', () => { s.gone = true; });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

async function nextMsg(s, ms = 3000) {
  const end = Date.now() + ms;
  while (!s.msgs.length && Date.now() < end) await sleep(10);
  assert.ok(s.msgs.length, 'no STUN answer');
  return s.msgs.shift();
}

// An Allocate (UDP relay) with the long-term credential mechanism (RFC 8489 §9.2).
async function allocate(s) {
  const transport = Buffer.from([17, 0, 0, 0]);               // REQUESTED-TRANSPORT: UDP
  s.write(stunMessage(0x0003, [[0x0019, transport]]));
  const challenge = await nextMsg(s);
  assert.equal(challenge.errorCode, 401);
  const nonce = challenge.attrs.get(0x0015), realm = challenge.attrs.get(0x0014);
  assert.equal(realm.toString(), TURN_REALM);
  const attrs = [[0x0019, transport], [0x0006, Buffer.from(TURN_USER)], [0x0014, realm],
    [0x0015, nonce]];
  const unsigned = stunMessage(0x0003, attrs);
  // MESSAGE-INTEGRITY: HMAC-SHA1 over the message with its length counting the attribute.
  const head = Buffer.from(unsigned);
  head.writeUInt16BE(unsigned.length - 20 + 24, 2);
  const key = createHash('md5').update(`${TURN_USER}:${TURN_REALM}:${TURN_PASS}`).digest();
  const mi = Buffer.alloc(24);
  mi.writeUInt16BE(0x0008, 0);
  mi.writeUInt16BE(20, 2);
  createHmac('sha1', key).update(head).digest().copy(mi, 4);
  s.write(Buffer.concat([head, mi]));
  const ok = await nextMsg(s);
  assert.equal(ok.cls, 'success', `Allocate answered ${ok.errorCode}`);
}

test('turn.max_unallocated_per_ip: a source holds only so many TCP connections without an allocation', async () => {
  const d = await startTurnDaemon({ threads: 2, v6: false, extra: 'max_unallocated_per_ip = 3' });
  try {
    const port = d.turnPort;
    // The connections the server has taken in (accepted or refused) and refused so far:
    // a connect completes in the kernel before the server's accept, so each attempt
    // waits for the server to have handled it (slow sanitizer builds included).
    const tally = async () => {
      const m = await metrics(d);
      const refused = counter(m, 'parley_turn_stream_refused_total');
      return { seen: counter(m, 'parley_turn_stream_accepts_total') + refused, refused };
    };
    const attempt = async (ip) => {
      const before = await tally();
      const s = await open(port, ip);
      let now = before;
      for (let i = 0; i < 200 && now.seen === before.seen; i++) {
        await sleep(25);
        now = await tally();
      }
      assert.equal(now.seen, before.seen + 1, 'the server handled the connection');
      s.refused = now.refused > before.refused;
      if (s.refused)
        for (let i = 0; i < 200 && !s.gone; i++) await sleep(25);
      return s;
    };
    // Tries until a connection from ip is taken (the refused ones are dropped).
    const placeWithin = async (ip, pauseMs) => {
      for (let i = 0; i < 30; i++) {
        await sleep(pauseMs);
        const s = await attempt(ip);
        if (!s.refused) return s;
        s.destroy();
      }
      return null;
    };
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await attempt('127.0.0.1'));
    assert.ok(held.every((s) => !s.refused), 'three connections are taken');
    const over = await attempt('127.0.0.1');
    assert.ok(over.refused && over.gone, 'the fourth connection from 127.0.0.1 is closed');
    const other = await attempt('127.0.0.2');
    assert.ok(!other.refused && !other.gone, 'another address is not affected');
    assert.ok(held.every((s) => !s.gone), 'the first three stay');
    // An allocation frees its connection's place (the sweep runs every second)...
    await allocate(held[0]);
    const freed = await placeWithin('127.0.0.1', 200);
    assert.ok(freed, 'a place after the allocation');
    // ...and so does a close.
    held[1].destroy();
    const again = await placeWithin('127.0.0.1', 100);
    assert.ok(again, 'a place after a close');
    const after = await attempt('127.0.0.1');
    assert.ok(after.refused && after.gone, 'and the cap holds again');
    assert.match(d.logText, /turn\.stream\.refused thread=\d+ ip="?127\.0\.0\.1"? cap=3/);
    for (const s of [...held, other, freed, again]) s.destroy();
  } finally {
    const r = await d.stop();
    assert.deepEqual(r, { code: 0, signal: null }, d.logText.slice(-3000));
  }
});
