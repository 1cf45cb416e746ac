// sigclient.mjs: helpers for the presence and calls integration tests: a parleyd with
// the signaling gateway on a free port, the HTTP account API, a parley.v1 WebSocket
// client (the `ws` package) that queues frames and matches responses by id, and a
// throw-away redis-server (Debian's binary) on a free loopback port, stopped by PID.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import WebSocket from 'ws';
import { Daemon, freePort, tempDir } from './daemon.mjs';

// Starts parleyd with the gateway on a free port (port 0, read from the log) and fast,
// permissive account settings; extra --set items in sets.
export async function startNode(sets = [], opts = {}) {
  const d = await Daemon.start({
    ...opts,
    sets: ['signaling.listen=127.0.0.1:0', 'signaling.scrypt_log2_n=10',
      'signaling.threads=2', 'signaling.auth_ip_burst=100000', 'signaling.auth_ip_per_min=100000',
      'signaling.auth_account_burst=100000', 'signaling.auth_account_per_min=100000', ...sets],
  });
  const m = await d.waitForLog(/signaling\.listening port=(\d+)/);
  d.port = Number(m[1]);
  d.http = `http://127.0.0.1:${d.port}`;
  return d;
}

export async function api(d, method, path, { body, token } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(d.http + path, { method, headers, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

let seq = 0;
export const uniqueName = (p = 'u') => `${p}${process.pid % 1000}x${++seq}`;

// Registers a user (first device "laptop"); returns {username, token, account_id, device_id}.
export async function register(d, username = uniqueName()) {
  const r = await api(d, 'POST', '/v1/register',
    { body: { username, password: 'correct horse', device_name: 'laptop' } });
  assert.equal(r.status, 201, r.text);
  return { username, ...r.json };
}

// Logs in another device of username; returns the login response body (token...).
export async function login(d, username, device_name) {
  const r = await api(d, 'POST', '/v1/login', { body: { username, password: 'correct horse', device_name } });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// A parley.v1 client: queues incoming frames, matches responses by id.
export class Client {
  static async open(d) {
    const c = new Client();
    c.ws = new WebSocket(`ws://127.0.0.1:${d.port}/ws`, 'parley.v1');
    c.frames = [];
    c.waiters = [];
    c.seq = 0;
    c.closed = new Promise((res) => c.ws.once('close', (code, reason) => res({ code, reason: reason.toString() })));
    c.ws.on('message', (data) => {
      c.frames.push(JSON.parse(data.toString()));
      c.waiters.splice(0).forEach((w) => w());
    });
    await new Promise((res, rej) => { c.ws.once('open', res); c.ws.once('error', rej); });
    return c;
  }

  // Opens a connection and authenticates it with token.
  static async authed(d, token) {
    const c = await Client.open(d);
    const r = await c.request({ type: 'auth', token });
    assert.equal(r.type, 'auth.result', JSON.stringify(r));
    c.account_id = r.account_id;
    c.device_id = r.device_id;
    c.username = r.username;
    return c;
  }

  send(obj) { this.ws.send(JSON.stringify(obj)); }

  // Resolves with the first queued frame matching pred (removing it).
  async next(pred = () => true, timeoutMs = 5000) {
    const t0 = Date.now();
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; have ${JSON.stringify(this.frames)}`);
      await Promise.race([new Promise((r) => this.waiters.push(r)),
        new Promise((r) => setTimeout(r, Math.min(left, 100)))]);
    }
  }

  // The next frame of type (a server push).
  push(type, timeoutMs = 5000) { return this.next((f) => f.type === type, timeoutMs); }

  // Asserts that no frame of type arrives within ms.
  async none(type, ms = 300) {
    await new Promise((r) => setTimeout(r, ms));
    const f = this.frames.find((x) => x.type === type);
    assert.equal(f, undefined, `unexpected ${type}: ${JSON.stringify(f)}`);
  }

  async request(obj, timeoutMs = 5000) {
    const id = obj.id ?? `r${++this.seq}`;
    this.send({ ...obj, id });
    return this.next((f) => f.id === id, timeoutMs);
  }

  // A request that must succeed: returns its .result frame.
  async ok(obj, timeoutMs = 5000) {
    const r = await this.request(obj, timeoutMs);
    assert.equal(r.type, `${obj.type}.result`, JSON.stringify(r));
    return r;
  }

  // A request that must fail with code.
  async err(obj, code, timeoutMs = 5000) {
    const r = await this.request(obj, timeoutMs);
    assert.equal(r.type, 'error', JSON.stringify(r));
    assert.equal(r.code, code, JSON.stringify(r));
    return r;
  }

  close() { try { this.ws.terminate(); } catch { /* gone */ } }
}

// A redis-server on a free loopback port in a temp dir, no persistence.
export class Redis {
  static async start(port) {
    const r = new Redis();
    r.port = port ?? await freePort();
    r.dir = r.dir ?? tempDir('parley-redis-');
    await r._spawn();
    return r;
  }

  async _spawn() {
    this.log = '';
    this.proc = spawn('/usr/bin/redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exited = new Promise((res) => this.proc.once('exit', res));
    this.proc.stdout.on('data', (b) => { this.log += b.toString(); });
    this.proc.stderr.on('data', (b) => { this.log += b.toString(); });
    const t0 = Date.now();
    while (!/Ready to accept connections/.test(this.log)) {
      if (this.proc.exitCode !== null) throw new Error(`redis-server exited: ${this.log}`);
      if (Date.now() - t0 > 10000) throw new Error(`redis-server not ready: ${this.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  // Kills the server by PID (SIGKILL: no goodbye to the clients) and waits for it.
  async kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      process.kill(this.pid, 'SIGKILL');
      await this.exited;
    }
  }

  // Starts it again on the same port (empty: nothing was saved).
  async restart() { await this._spawn(); }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      process.kill(this.pid, 'SIGTERM');
      await this.exited;
    }
  }
}

// Polls fn until it returns truthy (or throws after timeoutMs).
export async function until(fn, timeoutMs = 10000, what = 'condition') {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function readyz(d) {
  return (await d.admin('/readyz')).status;
}
