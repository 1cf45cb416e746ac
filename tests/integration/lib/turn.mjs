// turn.mjs: shared helpers for the TURN integration tests (turn*.test.mjs): parleyd
// with [turn] enabled on free loopback ports, coturn's client tools from Debian's
// coturn package (turnutils_peer, turnutils_uclient, turnutils_stunclient; the
// turnserver binary is never used in tests) run with a timeout and their output
// parsed, and the parley_turn_* metrics read back.
//
// Everything stays on 127.0.0.1 / ::1; every process started here is stopped by PID.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, freePort, parsePrometheus, tempDir, ROOT } from './daemon.mjs';

export const TURN_USER = 'alice';
export const TURN_PASS = 'wonderland-7';
export const TURN_SECRET = 'rest-secret-42';
export const TURN_REALM = 'parley.test';

// Starts parleyd with only [turn] enabled (signaling off) on a free port, listening on
// 127.0.0.1 and ::1 with the same port, static user TURN_USER:TURN_PASS and REST secret
// TURN_SECRET. allowedPeers (CIDR list) defaults to loopback so coturn's
// turnutils_peer on 127.0.0.1/::1 can be reached. extra: more INI lines for [turn].
// sets: --set overrides. drainTimeout: uclient leaves allocations behind, and a drain
// waits for them, so tests stop quickly by default. Returns the Daemon with .turnPort.
export async function startTurnDaemon({ threads = 2, allowedPeers = ['127.0.0.1/32', '::1/128'],
  extra = '', sets = [], v6 = true, env = {}, drainTimeout = '0s' } = {}) {
  const port = await freePort();
  const listen = v6 ? `127.0.0.1:${port}, [::1]:${port}` : `127.0.0.1:${port}`;
  const ini = [
    '[process]', `drain_timeout = ${drainTimeout}`,
    '[signaling]', 'enabled = false',
    '[turn]', 'enabled = true',
    `listen = ${listen}`,
    `realm = ${TURN_REALM}`,
    `users = ${TURN_USER}:${TURN_PASS}`,
    `auth_secret = ${TURN_SECRET}`,
    `threads = ${threads}`,
    // Relayed ports above the kernel's ephemeral range (32768-60999): the clients and
    // peers of a test never hold a port the server is about to relay on (an EVEN-PORT
    // reservation is held in the pool, not by a socket, so a client taking the odd
    // port would turn the paired Allocate into a 508).
    'relay_ports = 61000-65535',
    allowedPeers.length ? `allowed_peers = ${allowedPeers.join(', ')}` : '',
    extra, '',
  ].join('\n');
  const d = await Daemon.start({ ini, sets, env });
  d.turnPort = port;
  return d;
}

// A self-signed certificate for localhost, 127.0.0.1 and ::1 made by scripts/dev-cert
// in a new temp dir (dir: reuse one). Returns { dir, cert, key } (PEM file paths).
export function devCert(dir = tempDir('parley-cert-')) {
  const r = spawnSync(join(ROOT, 'scripts/dev-cert'), [dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/dev-cert failed: ${r.stderr}`);
  return { dir, cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
}

// startTurnDaemon plus TURN over TLS (tls_listen on 127.0.0.1 and ::1 with a second
// free port) with a fresh dev certificate. Returns the Daemon with .tlsPort and .tls
// ({ dir, cert, key }); stop() also removes the certificate dir.
export async function startTurnDaemonTls(opts = {}) {
  const tls = devCert();
  const tlsPort = await freePort();
  const extra = [`tls_listen = 127.0.0.1:${tlsPort}, [::1]:${tlsPort}`, `tls_cert = ${tls.cert}`,
    `tls_key = ${tls.key}`, opts.extra ?? ''].join('\n');
  let d;
  try {
    d = await startTurnDaemon({ ...opts, extra });
  } catch (e) {
    rmSync(tls.dir, { recursive: true, force: true });
    throw e;
  }
  d.tlsPort = tlsPort;
  d.tls = tls;
  const stop = d.stop.bind(d);
  d.stop = async (...args) => {
    try { return await stop(...args); } finally { rmSync(tls.dir, { recursive: true, force: true }); }
  };
  return d;
}

// Runs bin with args; resolves { code, signal, out (stdout+stderr), timedOut } once it
// exits. Killed (SIGKILL, by PID) after timeoutMs. Asynchronous on purpose: a blocking
// spawnSync would stop the test process from draining parleyd's log pipe.
export function runTool(bin, args, { timeoutMs = 30000 } = {}) {
  return new Promise((res, rej) => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', timedOut = false;
    p.stdout.on('data', (b) => { out += b; });
    p.stderr.on('data', (b) => { out += b; });
    const t = setTimeout(() => { timedOut = true; try { process.kill(p.pid, 'SIGKILL'); } catch { } }, timeoutMs);
    p.once('error', (e) => { clearTimeout(t); rej(e); });
    p.once('close', (code, signal) => { clearTimeout(t); res({ code, signal, out, timedOut }); });
  });
}

// Starts coturn's echo peer (turnutils_peer) on a free port on each address in addrs
// and waits until it echoes. Returns { port, pid, stop() }.
export async function startPeer({ addrs = ['127.0.0.1', '::1'] } = {}) {
  const port = await freePort();
  const args = ['-p', String(port)];
  for (const a of addrs) args.push('-L', a);
  const proc = spawn('turnutils_peer', args, { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise((res) => proc.once('exit', res));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      try { process.kill(proc.pid, 'SIGTERM'); } catch { }
      await exited;
    }
  };
  for (const a of addrs) {
    if (!(await udpEcho(a, port, 5000))) { await stop(); throw new Error(`turnutils_peer on ${a}:${port} does not echo`); }
  }
  return { port, pid: proc.pid, stop };
}

// Sends a datagram to host:port until it comes back (echo) or timeoutMs passes.
export function udpEcho(host, port, timeoutMs = 2000) {
  return new Promise((res) => {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const probe = Buffer.from('parley-echo-probe');
    let done = false;
    const finish = (ok) => { if (done) return; done = true; clearInterval(iv); clearTimeout(t); s.close(); res(ok); };
    s.on('message', (m) => { if (m.equals(probe)) finish(true); });
    s.on('error', () => finish(false));
    const iv = setInterval(() => s.send(probe, port, host), 50);
    const t = setTimeout(() => finish(false), timeoutMs);
    s.send(probe, port, host);
  });
}

// Parses turnutils_uclient's closing summary. Fields are null when the line is absent
// (the client gave up before sending, e.g. 401 or 403).
export function parseUclient(text) {
  const num = (re) => { const m = text.match(re); return m ? Number(m[1]) : null; };
  const rtt = text.match(/Average round trip delay ([\d.]+) ms; min = (\d+) ms, max = (\d+) ms/);
  return {
    sent: num(/tot_send_msgs=(\d+), tot_recv_msgs=\d+\s*$/m),
    received: num(/tot_send_msgs=\d+, tot_recv_msgs=(\d+)\s*$/m),
    lost: num(/Total lost packets (\d+)/),
    lostPct: num(/Total lost packets \d+ \(([\d.]+)%\)/),
    sendDropped: num(/total send dropped (\d+)/),
    rttAvgMs: rtt ? Number(rtt[1]) : null,
    rttMinMs: rtt ? Number(rtt[2]) : null,
    rttMaxMs: rtt ? Number(rtt[3]) : null,
    errors: [...text.matchAll(/(?:ERROR|error)[: ].*$/gm)].map((m) => m[0]),
  };
}

// Runs turnutils_uclient against server (an address; port given) and parses it.
// args are uclient flags, e.g. ['-u', user, '-w', pass, '-e', '127.0.0.1', '-r', peer].
export async function uclient(server, port, args, { timeoutMs = 30000 } = {}) {
  const r = await runTool('turnutils_uclient', ['-p', String(port), ...args, server], { timeoutMs });
  return { ...r, summary: parseUclient(r.out) };
}

// Runs turnutils_stunclient (a Binding request) and returns { ..., mapped: ['ip:port'] }
// with the reflexive addresses it printed.
export async function stunclient(server, port, { timeoutMs = 10000 } = {}) {
  const r = await runTool('turnutils_stunclient', ['-p', String(port), server], { timeoutMs });
  const mapped = [...new Set([...r.out.matchAll(/reflexive addr: (\S+)/g)].map((m) => m[1]))];
  return { ...r, mapped };
}

// The daemon's /metrics, parsed strictly.
export async function metrics(d) {
  const r = await d.admin('/metrics');
  if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
  return parsePrometheus(r.text);
}

// Sum of the samples of name whose labels include labels (0 when none).
export function counter(parsed, name, labels = {}) {
  return parsed.samples.filter((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

// ---- raw STUN for bad-input tests (RFC 8489 §5, §14) ----------------------------

export const STUN_COOKIE = 0x2112A442;
let crcTable = null;
function crc32(buf) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xFFFFFFFF;
  for (const b of buf) c = crcTable[(c ^ b) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

// A STUN message of type (e.g. 0x0001 Binding request, 0x0003 Allocate request) with
// attrs [[type, Buffer]] (padded to 4), a random transaction id unless tid is given,
// and FINGERPRINT when fingerprint (badFingerprint: a wrong CRC).
export function stunMessage(type, attrs = [], { tid, fingerprint = false, badFingerprint = false } = {}) {
  tid ??= Buffer.from(Array.from({ length: 12 }, () => Math.floor(Math.random() * 256)));
  const parts = [];
  for (const [t, v] of attrs) {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(t, 0);
    h.writeUInt16BE(v.length, 2);
    parts.push(h, v, Buffer.alloc((4 - (v.length % 4)) % 4));
  }
  let body = Buffer.concat(parts);
  const head = (len) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(len, 2);
    h.writeUInt32BE(STUN_COOKIE, 4);
    tid.copy(h, 8);
    return h;
  };
  if (fingerprint || badFingerprint) {
    const msg = Buffer.concat([head(body.length + 8), body]);
    const fp = Buffer.alloc(8);
    fp.writeUInt16BE(0x8028, 0);
    fp.writeUInt16BE(4, 2);
    fp.writeUInt32BE(((crc32(msg) ^ 0x5354554E) + (badFingerprint ? 1 : 0)) >>> 0, 4);
    body = Buffer.concat([body, fp]);
  }
  return Buffer.concat([head(body.length), body]);
}

// Parses a STUN message: { type, cls ('request'|'indication'|'success'|'error'),
// method, tid (hex), attrs: Map(type -> Buffer) (first of each), errorCode } or null.
export function parseStun(buf) {
  if (buf.length < 20 || (buf[0] & 0xC0) !== 0 || buf.readUInt32BE(4) !== STUN_COOKIE) return null;
  const type = buf.readUInt16BE(0), len = buf.readUInt16BE(2);
  if (20 + len !== buf.length) return null;
  const cls = ['request', 'indication', 'success', 'error'][((type >> 4) & 1) | ((type >> 7) & 2)];
  const method = (type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2);
  const attrs = new Map();
  for (let off = 20; off + 4 <= buf.length;) {
    const t = buf.readUInt16BE(off), l = buf.readUInt16BE(off + 2);
    if (off + 4 + l > buf.length) return null;
    if (!attrs.has(t)) attrs.set(t, buf.subarray(off + 4, off + 4 + l));
    off += 4 + l + ((4 - (l % 4)) % 4);
  }
  const ec = attrs.get(0x0009);
  const errorCode = ec && ec.length >= 4 ? (ec[2] & 7) * 100 + ec[3] : null;
  return { type, cls, method, tid: buf.subarray(8, 20).toString('hex'), attrs, errorCode };
}
