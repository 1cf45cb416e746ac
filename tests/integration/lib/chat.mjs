// chat.mjs: helpers for the chat integration tests: a parleyd with the signaling
// gateway and chat on free loopback ports, accounts over the HTTP API, and a parley.v1
// WebSocket client (the `ws` package) that queues frames and matches replies by id.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Daemon } from './daemon.mjs';

// Fast password hashing and no login rate limits: the tests register many users.
export const FAST_AUTH = ['signaling.listen=127.0.0.1:0', 'signaling.scrypt_log2_n=10',
  'signaling.threads=2', 'signaling.auth_ip_burst=1000000', 'signaling.auth_ip_per_min=1000000',
  'signaling.auth_account_burst=1000000', 'signaling.auth_account_per_min=1000000',
  'signaling.rate_frames=0', 'signaling.max_errors=0', 'signaling.max_devices=8'];

export async function startChat(sets = [], opts = {}) {
  const d = await Daemon.start({ ...opts, sets: [...FAST_AUTH, ...sets] });
  await attachPort(d);
  return d;
}

// Reads the gateway's port from the log (listen port 0 = any free port).
export async function attachPort(d, from = 0) {
  const m = await d.waitForLog(/signaling\.listening port=(\d+)/, 10000, from);
  d.port = Number(m[1]);
  d.http = `http://127.0.0.1:${d.port}`;
  return d;
}

export async function stopClean(d) {
  if (!d) return;
  const { code, signal } = await d.stop();
  // The log after the stop carries a sanitizer's report, if any.
  assert.equal(code, 0, `parleyd exited ${code ?? signal}; log:\n${d.logText.slice(-6000)}`);
}

let seq = 0;
export const uniqueName = (p = 'u') => `${p}${process.pid % 1000}x${++seq}`;

export async function api(d, method, path, body) {
  const res = await fetch(d.http + path, {
    method, headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, text };
}

// Registers a user; returns {username, account_id, device_id, token}.
export async function register(d, username = uniqueName(), device_name = 'phone') {
  const r = await api(d, 'POST', '/v1/register', { username, password: 'correct horse', device_name });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// Logs a user in on another device.
export async function addDevice(d, username, device_name) {
  const r = await api(d, 'POST', '/v1/login', { username, password: 'correct horse', device_name });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

export class Client {
  // Connects and authenticates with session s ({token, ...}).
  static async connect(d, s, { sync = false } = {}) {
    const c = new Client();
    c.session = s;
    c.port = d.port;
    c.frames = [];
    c.waiters = [];
    c.n = 0;
    c.ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, 'parley.v1');
    c.closed = new Promise((res) => c.ws.once('close', (code, r) => res({ code, reason: r.toString() })));
    c.ws.on('message', (data) => {
      c.frames.push(JSON.parse(data.toString()));
      c.waiters.splice(0).forEach((w) => w());
    });
    c.ws.on('error', () => { /* surfaces as close */ });
    await new Promise((res, rej) => { c.ws.once('open', res); c.ws.once('error', rej); });
    const r = await c.request({ type: 'auth', token: s.token });
    assert.equal(r.type, 'auth.result', JSON.stringify(r));
    if (sync) c.syncResult = await c.sync();
    return c;
  }

  send(obj) { this.ws.send(JSON.stringify(obj)); }

  // The first queued frame matching pred (removed from the queue).
  async next(pred = () => true, timeoutMs = 5000) {
    const t0 = Date.now();
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; queued: ${JSON.stringify(this.frames).slice(0, 2000)}`);
      await Promise.race([new Promise((r) => this.waiters.push(r)), new Promise((r) => setTimeout(r, Math.min(left, 50)))]);
    }
  }

  nextType(type, timeoutMs) { return this.next((f) => f.type === type, timeoutMs); }

  // Resolves true when no frame matching pred arrives within ms.
  async none(pred, ms = 300) {
    try { await this.next(pred, ms); return false; } catch { return true; }
  }

  async request(obj, timeoutMs = 5000) {
    const id = `r${++this.n}`;
    this.send({ ...obj, id });
    return this.next((f) => f.id === id, timeoutMs);
  }

  // A request that must succeed: returns the result frame.
  async ok(obj, timeoutMs) {
    const r = await this.request(obj, timeoutMs);
    assert.equal(r.type, `${obj.type}.result`, JSON.stringify(r));
    return r;
  }

  // A request that must fail with code: returns the error frame.
  async err(obj, code, timeoutMs) {
    const r = await this.request(obj, timeoutMs);
    assert.equal(r.type, 'error', `expected ${code}, got ${JSON.stringify(r)}`);
    assert.equal(r.code, code, JSON.stringify(r));
    return r;
  }

  sync() { return this.ok({ type: 'chat.sync' }); }

  close() { try { this.ws.terminate(); } catch { /* gone */ } }
}

export const b64 = (s) => Buffer.from(s).toString('base64');
export const unb64 = (s) => Buffer.from(s, 'base64').toString();

// A direct message to user (a session) with one envelope per device id.
export function directFrame(to, devices, text, clientId = uniqueName('m')) {
  return { type: 'chat.send', client_id: clientId, to,
    envelopes: devices.map((id) => ({ device_id: id, ctype: 1, body: b64(`${text}@${id}`) })) };
}
