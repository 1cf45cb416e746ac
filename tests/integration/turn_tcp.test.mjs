// turn_tcp.test.mjs: parleyd's TURN server over TCP and TLS against coturn's clients
// (turnutils_uclient -t, -S, -T with turnutils_peer as the echo peer): channels and
// Send indications relayed for stream clients, RFC 6062 TCP relaying (Connect,
// ConnectionAttempt, ConnectionBind, raw data), IPv4 and ::1, static and REST
// credentials, zero loss at a moderate rate, 401 for a wrong password over TCP and
// TLS; and the TLS certificate reloaded on SIGHUP (new connections get the new one,
// open ones keep theirs, a certificate that does not load is refused).
//
// uclient starts each session's traffic 1-6 s after allocating, so the scenarios run
// concurrently against one daemon. In client-to-client modes (-T implies -y) uclient
// rounds the session count up to an even number: give it even counts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import {
  startTurnDaemonTls, startPeer, uclient, metrics, counter, devCert,
  TURN_USER, TURN_PASS, TURN_SECRET,
} from './lib/turn.mjs';

const PAYLOAD = 160;
const user = ['-u', TURN_USER, '-w', TURN_PASS];
const rest = ['-u', 'carol', '-W', TURN_SECRET];

describe('TURN over TCP and TLS with coturn clients', { concurrency: true }, () => {
  let d, peer;
  before(async () => {
    d = await startTurnDaemonTls({ threads: 2 });
    peer = await startPeer();
  });
  after(async () => {
    await peer?.stop();
    const r = await d?.stop();
    // A clean exit: under the sanitizer build a leak or error would make it non-zero.
    if (r) assert.deepEqual(r, { code: 0, signal: null }, d.logText.slice(-3000));
  });

  // Runs uclient and asserts zero loss: every message sent came back.
  async function echoRun({ server, tls = false, creds, extra = [], sessions, messages, peerAddr }) {
    const port = tls ? d.tlsPort : d.turnPort;
    const args = [...creds, '-t', ...(tls ? ['-S'] : []), '-l', String(PAYLOAD), '-n', String(messages),
      '-m', String(sessions), ...extra];
    if (peerAddr) args.push('-c', '-e', peerAddr, '-r', String(peer.port));
    const r = await uclient(server, port, args, { timeoutMs: 45000 });
    assert.equal(r.timedOut, false, `uclient timed out:\n${r.out.slice(-2000)}`);
    assert.equal(r.code, 0, `uclient exit ${r.code}:\n${r.out.slice(-2000)}`);
    const s = r.summary, expected = sessions * messages;
    assert.equal(s.sent, expected, `sent ${s.sent}, expected ${expected}:\n${r.out.slice(-1500)}`);
    assert.equal(s.received, expected, `received ${s.received} of ${expected}`);
    assert.equal(s.lost, 0);
    assert.equal(s.sendDropped, 0);
    return r;
  }

  test('TCP, IPv4, static user, channels: zero loss', async () => {
    await echoRun({ server: '127.0.0.1', creds: user, sessions: 4, messages: 100, peerAddr: '127.0.0.1' });
  });

  test('TCP, IPv4, REST credentials, Send/Data indications (-s): zero loss', async () => {
    await echoRun({ server: '127.0.0.1', creds: rest, sessions: 3, messages: 80, peerAddr: '127.0.0.1', extra: ['-s'] });
  });

  test('TCP, ::1, static user, IPv6 relay: zero loss', async () => {
    await echoRun({ server: '::1', creds: user, sessions: 3, messages: 80, peerAddr: '::1', extra: ['-x'] });
  });

  test('TCP, moderate rate (10 sessions x 200 pps each way): zero loss', async () => {
    await echoRun({ server: '127.0.0.1', creds: rest, sessions: 10, messages: 400, peerAddr: '127.0.0.1', extra: ['-z', '5'] });
  });

  test('TLS, IPv4, static user, channels: zero loss', async () => {
    await echoRun({ server: '127.0.0.1', tls: true, creds: user, sessions: 4, messages: 100, peerAddr: '127.0.0.1' });
  });

  test('TLS, ::1, REST credentials, IPv6 relay, moderate rate: zero loss', async () => {
    await echoRun({ server: '::1', tls: true, creds: rest, sessions: 6, messages: 300, peerAddr: '::1', extra: ['-x', '-z', '5'] });
  });

  test('RFC 6062 TCP relaying (-T), IPv4, static user: zero loss', async () => {
    await echoRun({ server: '127.0.0.1', creds: user, sessions: 2, messages: 100, extra: ['-T'] });
  });

  test('RFC 6062 TCP relaying over TLS (-T -S), ::1, REST credentials: zero loss', async () => {
    await echoRun({ server: '::1', tls: true, creds: rest, sessions: 4, messages: 60, extra: ['-T'] });
  });

  test('a wrong password over TCP and over TLS gets 401 and no allocation', async () => {
    const before_ = await metrics(d);
    const bad = ['-u', TURN_USER, '-w', 'not-the-password', '-c', '-e', '127.0.0.1', '-r', String(peer.port),
      '-n', '5', '-m', '1'];
    const [tcp, tls] = await Promise.all([
      uclient('127.0.0.1', d.turnPort, ['-t', ...bad], { timeoutMs: 20000 }),
      uclient('127.0.0.1', d.tlsPort, ['-t', '-S', ...bad], { timeoutMs: 20000 }),
    ]);
    for (const r of [tcp, tls]) {
      assert.notEqual(r.code, 0, r.out.slice(-1500));
      assert.match(r.out, /Cannot complete Allocation/);
    }
    const m = await metrics(d);
    const d401 = counter(m, 'parley_turn_responses_total', { code: '401' }) -
      counter(before_, 'parley_turn_responses_total', { code: '401' });
    assert.ok(d401 >= 4, `401 responses: ${d401}`);
  });
});

// ---- certificate reload --------------------------------------------------------

function tlsOpen(port) {
  return new Promise((res, rej) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => res(s));
    s.once('error', rej);
  });
}

async function servedFingerprint(port) {
  const s = await tlsOpen(port);
  const fp = s.getPeerCertificate().fingerprint256;
  s.destroy();
  return fp;
}

// Sends a STUN Binding request on an open TLS connection and resolves with the
// response's message type.
function binding(s) {
  return new Promise((res, rej) => {
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0);
    req.writeUInt32BE(0x2112A442, 4);
    randomBytes(12).copy(req, 8);
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => rej(new Error('no Binding response')), 5000);
    const onData = (b) => {
      buf = Buffer.concat([buf, b]);
      if (buf.length >= 20 && buf.length >= 20 + buf.readUInt16BE(2)) {
        clearTimeout(t);
        s.off('data', onData);
        assert.ok(buf.subarray(8, 20).equals(req.subarray(8, 20)), 'transaction id echoed');
        res(buf.readUInt16BE(0));
      }
    };
    s.on('data', onData);
    s.write(req);
  });
}

const certFingerprint = (path) => new X509Certificate(readFileSync(path)).fingerprint256;

describe('TURN over TLS: certificate reload', () => {
  test('SIGHUP serves a new certificate to new connections, open ones keep working, a bad one is refused', async () => {
    const d = await startTurnDaemonTls({ threads: 2, v6: false });
    try {
      const first = certFingerprint(d.tls.cert);
      assert.equal(await servedFingerprint(d.tlsPort), first);
      const old = await tlsOpen(d.tlsPort);
      assert.equal(await binding(old), 0x0101);

      const next = devCert();
      copyFileSync(next.cert, d.tls.cert);
      copyFileSync(next.key, d.tls.key);
      rmSync(next.dir, { recursive: true, force: true });
      const second = certFingerprint(d.tls.cert);
      assert.notEqual(second, first);
      let from = d.logText.length;
      d.signal('SIGHUP');
      await d.waitForLog(/turn\.reloaded .*tls=reloaded/, 10000, from);
      // Both threads have the new snapshot once each has seen its message: retry briefly.
      let served;
      for (let i = 0; i < 50 && (served = await servedFingerprint(d.tlsPort)) !== second; i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(served, second);
      assert.equal(await binding(old), 0x0101, 'a connection from before the reload still works');

      writeFileSync(d.tls.cert, 'not a certificate\n');
      from = d.logText.length;
      d.signal('SIGHUP');
      await d.waitForLog(/config\.reload_failed .*tls_cert/, 10000, from);
      assert.equal(await servedFingerprint(d.tlsPort), second, 'a refused reload keeps the current certificate');
      old.destroy();
    } finally {
      const r = await d.stop();
      assert.deepEqual(r, { code: 0, signal: null }, d.logText.slice(-3000));
    }
  });
});
