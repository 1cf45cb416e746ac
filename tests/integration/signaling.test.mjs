// signaling.test.mjs: the signaling gateway of a real parleyd, through real WebSocket
// (the `ws` package) and HTTP clients: registration and login, per-device sessions,
// WebSocket authentication and its deadline, every protocol error path (frames before
// auth, invalid JSON, unknown types, bad fields, binary and oversized frames, abuse),
// one connection per device, revocation mid-session, HTTP bearer auth, rate limits,
// keepalive and idle timeout, slow consumers, static files and metrics.
import { test, describe, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import WebSocket from 'ws';
import { Daemon, tempDir, parsePrometheus, sample } from './lib/daemon.mjs';
import { until } from './lib/sigclient.mjs';

// ---- helpers -------------------------------------------------------------------------

// Starts parleyd with the signaling gateway on a free port (port 0, read from the log).
// TZ is set because lws calls mktime() on its threads (TLS certificate lifetime checks);
// with TZ unset glibc re-reads the zone on every call under an internal lock that
// ThreadSanitizer cannot see, and reports a race that is not one.
async function startSignaling(sets = []) {
  const d = await Daemon.start({
    env: { TZ: process.env.TZ || 'UTC' },
    sets: ['signaling.listen=127.0.0.1:0', 'signaling.scrypt_log2_n=10',
      'signaling.threads=2', 'signaling.auth_ip_burst=100000', 'signaling.auth_ip_per_min=100000',
      'signaling.auth_account_burst=100000', 'signaling.auth_account_per_min=100000', ...sets],
  });
  const m = await d.waitForLog(/signaling\.listening port=(\d+)/);
  d.port = Number(m[1]);
  d.http = `http://127.0.0.1:${d.port}`;
  return d;
}

// Stops parleyd and checks it exited 0 (a sanitizer report or a crash fails the suite).
async function stopClean(d) {
  if (!d) return;
  const { code, signal } = await d.stop();
  assert.equal(code, 0, `parleyd exited ${code ?? signal}; log:\n${d.logText.slice(-6000)}`);
}

async function api(d, method, path, { body, token, raw } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined || raw !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(d.http + path, {
    method, headers, body: raw !== undefined ? raw : body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, headers: res.headers };
}

let nameSeq = 0;
const uniqueName = (p = 'user') => `${p}${process.pid % 1000}x${++nameSeq}`;

async function register(d, extra = {}) {
  const username = extra.username ?? uniqueName();
  const r = await api(d, 'POST', '/v1/register',
    { body: { username, password: 'correct horse', device_name: 'laptop', ...extra } });
  assert.equal(r.status, 201, r.text);
  return { username, ...r.json };
}

async function login(d, username, device_name, password = 'correct horse') {
  return api(d, 'POST', '/v1/login', { body: { username, password, device_name } });
}

// A parley.v1 client: queues incoming frames, matches responses by id.
class Client {
  static async open(d, { protocol = 'parley.v1', path = '/ws', options = {}, url } = {}) {
    const c = new Client();
    c.ws = new WebSocket(url ?? `ws://127.0.0.1:${d.port}${path}`, protocol === null ? undefined : protocol,
      options);
    c.frames = [];
    c.waiters = [];
    c.pings = 0;
    c.seq = 0;
    c.closed = new Promise((res) => c.ws.once('close', (code, reason) => res({ code, reason: reason.toString() })));
    c.ws.on('ping', () => { c.pings++; });
    c.ws.on('message', (data, isBinary) => {
      const f = isBinary ? { binary: data } : JSON.parse(data.toString());
      c.frames.push(f);
      c.waiters.splice(0).forEach((w) => w());
    });
    await new Promise((res, rej) => {
      c.ws.once('open', res);
      c.ws.once('error', rej);
      c.ws.once('unexpected-response', (req, resp) => rej(new Error(`HTTP ${resp.statusCode}`)));
    });
    return c;
  }

  send(obj) { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); }

  // Resolves with the first queued frame matching pred (removing it).
  async next(pred = () => true, timeoutMs = 5000) {
    const t0 = Date.now();
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new Error(`no matching frame; have ${JSON.stringify(this.frames)}`);
      await Promise.race([new Promise((r) => this.waiters.push(r)),
        new Promise((r) => setTimeout(r, Math.min(left, 100)))]);
    }
  }

  async request(obj, timeoutMs = 5000) {
    const id = obj.id ?? `r${++this.seq}`;
    this.send({ ...obj, id });
    return this.next((f) => f.id === id, timeoutMs);
  }

  async auth(token) {
    const r = await this.request({ type: 'auth', token });
    assert.equal(r.type, 'auth.result', JSON.stringify(r));
    return r;
  }

  async closedWithin(ms = 5000) {
    return Promise.race([this.closed,
      new Promise((_, rej) => setTimeout(() => rej(new Error('connection not closed')), ms))]);
  }

  close() { try { this.ws.terminate(); } catch { /* gone */ } }
}

// ---- the main daemon ---------------------------------------------------------------

describe('signaling', () => {
  let d;
  let webRoot;
  before(async () => {
    webRoot = tempDir('parley-web-');
    writeFileSync(join(webRoot, 'index.html'), '<!doctype html><title>parley</title>hello parley\n');
    mkdirSync(join(webRoot, 'js'));
    writeFileSync(join(webRoot, 'js', 'app.js'), 'console.log("parley");\n');
    d = await startSignaling(['signaling.auth_timeout=1s', 'signaling.max_devices=2',
      'signaling.max_frame_size=4KiB', 'signaling.max_errors=6', `signaling.web_root=${webRoot}`]);
  });
  after(async () => { await stopClean(d); });

  describe('HTTP accounts API', () => {
    test('register returns a session for the first device', async () => {
      const r = await register(d, { display_name: 'Alice A.' });
      assert.ok(r.account_id > 0 && r.device_id > 0);
      assert.equal(r.device_name, 'laptop');
      assert.match(r.token, /^[A-Za-z0-9_-]{43}$/);
      assert.ok(r.expires_at_ms > Date.now() + 86400e3);
    });

    test('usernames are case-insensitive and unique', async () => {
      const name = uniqueName('Dup');
      await register(d, { username: name });
      const r = await api(d, 'POST', '/v1/register',
        { body: { username: name.toUpperCase(), password: 'another pass' } });
      assert.equal(r.status, 409);
      assert.equal(r.json.error.code, 'username_taken');
    });

    const badRegs = [
      ['short username', { username: 'ab', password: 'correct horse' }, 'bad_field'],
      ['username with a space', { username: 'a b c', password: 'correct horse' }, 'bad_field'],
      ['short password', { username: 'okname1', password: 'short' }, 'bad_field'],
      ['password not a string', { username: 'okname2', password: 12345678 }, 'bad_field'],
      ['missing password', { username: 'okname3' }, 'bad_field'],
      ['control char in device name', { username: 'okname4', password: 'correct horse', device_name: 'a\nb' }, 'bad_field'],
    ];
    for (const [name, body, code] of badRegs) {
      test(`register rejects: ${name}`, async () => {
        const r = await api(d, 'POST', '/v1/register', { body });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error.code, code);
        assert.ok(r.json.error.message.length > 0);
      });
    }

    test('register rejects a body that is not a JSON object', async () => {
      for (const raw of ['{"username":', '[1,2]', 'hello']) {
        const r = await api(d, 'POST', '/v1/register', { raw });
        assert.equal(r.status, 400, raw);
        assert.equal(r.json.error.code, 'bad_json');
      }
    });

    test('unknown endpoint is 404 and wrong method is 405', async () => {
      assert.equal((await api(d, 'GET', '/v1/nothing')).status, 404);
      const r = await api(d, 'GET', '/v1/register');
      assert.equal(r.status, 405);
      assert.equal(r.json.error.code, 'bad_frame');
    });

    test('login with the right password opens a new device session', async () => {
      const u = await register(d);
      const r = await login(d, u.username, 'phone');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.account_id, u.account_id);
      assert.notEqual(r.json.device_id, u.device_id);
      assert.notEqual(r.json.token, u.token);
      assert.equal(r.json.device_name, 'phone');
    });

    test('wrong password and unknown user answer the same', async () => {
      const u = await register(d);
      const bad = await login(d, u.username, 'phone', 'wrong password');
      assert.equal(bad.status, 401);
      assert.equal(bad.json.error.code, 'bad_credentials');
      const unknown = await login(d, uniqueName('ghost'), 'phone');
      assert.equal(unknown.status, 401);
      assert.deepEqual(unknown.json, bad.json);
    });

    test('logging in again with the same device name replaces its session', async () => {
      const u = await register(d);
      const again = await login(d, u.username, 'laptop');
      assert.equal(again.status, 200);
      assert.equal(again.json.device_id, u.device_id);
      assert.equal((await api(d, 'GET', '/v1/devices', { token: u.token })).status, 401);
      assert.equal((await api(d, 'GET', '/v1/devices', { token: again.json.token })).status, 200);
    });

    test('too many devices is refused until one is revoked', async () => {
      const u = await register(d);                       // device 1 (max_devices = 2)
      const second = await login(d, u.username, 'phone');
      assert.equal(second.status, 200);
      const third = await login(d, u.username, 'tablet');
      assert.equal(third.status, 409);
      assert.equal(third.json.error.code, 'too_many_devices');
      const del = await api(d, 'DELETE', `/v1/devices/${second.json.device_id}`, { token: u.token });
      assert.equal(del.status, 200, del.text);
      assert.equal((await login(d, u.username, 'tablet')).status, 200);
    });

    test('bearer auth on HTTP: devices list, missing and bad tokens', async () => {
      const u = await register(d);
      const ok = await api(d, 'GET', '/v1/devices', { token: u.token });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get('cache-control'), 'no-store');
      assert.equal(ok.json.devices.length, 1);
      assert.equal(ok.json.devices[0].id, u.device_id);
      assert.equal(ok.json.devices[0].current, true);
      assert.equal(ok.json.devices[0].online, false);
      const none = await api(d, 'GET', '/v1/devices');
      assert.equal(none.status, 401);
      assert.equal(none.json.error.code, 'auth_required');
      const bad = await api(d, 'GET', '/v1/devices', { token: 'x'.repeat(43) });
      assert.equal(bad.status, 401);
      assert.equal(bad.json.error.code, 'auth_failed');
    });

    test('revoking another account\'s device is not found', async () => {
      const a = await register(d);
      const b = await register(d);
      const r = await api(d, 'DELETE', `/v1/devices/${b.device_id}`, { token: a.token });
      assert.equal(r.status, 404);
      assert.equal(r.json.error.code, 'not_found');
      assert.equal((await api(d, 'DELETE', '/v1/devices/abc', { token: a.token })).status, 404);
    });

    test('profile over HTTP: read, update, read another user', async () => {
      const a = await register(d, { display_name: 'Ann' });
      const b = await register(d);
      let r = await api(d, 'GET', '/v1/profile', { token: a.token });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json.profile, { username: a.username, display_name: 'Ann', about: '', avatar: '' });
      r = await api(d, 'POST', '/v1/profile', { token: a.token, body: { about: 'hi\nthere', avatar: 'blob:abc-1' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.profile.about, 'hi\nthere');
      r = await api(d, 'GET', `/v1/profile/${a.username}`, { token: b.token });
      assert.equal(r.json.profile.avatar, 'blob:abc-1');
      r = await api(d, 'POST', '/v1/profile', { token: a.token, body: { avatar: '../../etc' } });
      assert.equal(r.status, 400);
      r = await api(d, 'POST', '/v1/profile', { token: a.token, body: {} });
      assert.equal(r.status, 400);
      assert.equal((await api(d, 'GET', '/v1/profile/nobody-here', { token: a.token })).status, 404);
    });

    test('logout over HTTP ends the session', async () => {
      const u = await register(d);
      const r = await api(d, 'POST', '/v1/logout', { token: u.token });
      assert.equal(r.status, 200, r.text);
      assert.equal((await api(d, 'GET', '/v1/devices', { token: u.token })).status, 401);
    });

    test('static files are served from web_root', async () => {
      let r = await fetch(`${d.http}/`);
      assert.equal(r.status, 200);
      assert.match(await r.text(), /hello parley/);
      r = await fetch(`${d.http}/js/app.js`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /javascript/);
      r = await fetch(`${d.http}/missing.html`);
      assert.equal(r.status, 404);
    });
  });

  describe('WebSocket authentication', () => {
    test('auth with a valid token echoes the request id', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      assert.equal(c.ws.protocol, 'parley.v1');
      const r = await c.request({ type: 'auth', token: u.token, id: 42 });
      assert.deepEqual(r, { type: 'auth.result', id: 42, account_id: u.account_id, device_id: u.device_id,
        username: u.username, expires_at_ms: u.expires_at_ms });
      const p = await c.request({ type: 'ping' });
      assert.equal(p.type, 'ping.result');
      assert.ok(Math.abs(p.time_ms - Date.now()) < 60000);
      c.close();
    });

    test('a connection without the parley.v1 subprotocol is refused', async () => {
      await assert.rejects(Client.open(d, { protocol: null }));
      await assert.rejects(Client.open(d, { protocol: 'chat.v2' }));
    });

    test('a WebSocket on another path is refused', async () => {
      await assert.rejects(Client.open(d, { path: '/other' }));
    });

    test('no auth within auth_timeout: error frame, then close 4002', async () => {
      const c = await Client.open(d);
      const t0 = Date.now();
      const e = await c.next((f) => f.type === 'error', 4000);
      assert.equal(e.code, 'auth_required');
      const { code } = await c.closedWithin(4000);
      assert.equal(code, 4002);
      assert.ok(Date.now() - t0 >= 800, 'closed too early');
    });

    test('a frame other than auth first: error, then close 4000', async () => {
      const c = await Client.open(d);
      c.send({ type: 'ping', id: 'early' });
      const e = await c.next((f) => f.type === 'error');
      assert.equal(e.code, 'auth_required');
      assert.equal(e.id, 'early');
      assert.equal((await c.closedWithin()).code, 4000);
    });

    test('invalid JSON before auth also closes with 4000', async () => {
      const c = await Client.open(d);
      c.send('{"type":');
      const e = await c.next((f) => f.type === 'error');
      assert.equal(e.code, 'auth_required');
      assert.equal((await c.closedWithin()).code, 4000);
    });

    test('an invalid token: auth_failed, then close 4003', async () => {
      const c = await Client.open(d);
      const e = await c.request({ type: 'auth', token: 'not-a-token' });
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'auth_failed');
      assert.equal((await c.closedWithin()).code, 4003);
    });

    test('auth twice is an error and the connection lives on', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      const e = await c.request({ type: 'auth', token: u.token });
      assert.equal(e.code, 'already_authenticated');
      assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
      c.close();
    });
  });

  describe('protocol errors keep the connection', () => {
    // A fresh connection per test: errors count towards max_errors (6) per minute.
    let c;
    beforeEach(async () => {
      const u = await register(d);
      c = await Client.open(d);
      await c.auth(u.token);
    });
    afterEach(() => c.close());

    test('invalid JSON -> bad_json', async () => {
      c.send('{not json');
      const e = await c.next((f) => f.type === 'error');
      assert.equal(e.code, 'bad_json');
      assert.equal(e.id, undefined);
      assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    });

    test('not an object, missing or bad type -> bad_frame', async () => {
      for (const text of ['[1]', '"ping"', '{"id":"x"}', '{"type":7,"id":"x"}', '{"type":"Bad Type"}']) {
        c.send(text);
        const e = await c.next((f) => f.type === 'error');
        assert.equal(e.code, 'bad_frame', text);
      }
      assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    });

    test('unknown type -> unknown_type with the id echoed', async () => {
      const e = await c.request({ type: 'teleport', id: 'u1' });
      assert.deepEqual(Object.keys(e).sort(), ['code', 'id', 'message', 'type']);
      assert.equal(e.code, 'unknown_type');
      assert.equal(e.id, 'u1');
    });

    test('missing and wrong-typed fields -> bad_field naming the field', async () => {
      let e = await c.request({ type: 'devices.revoke' });
      assert.equal(e.code, 'bad_field');
      assert.match(e.message, /device_id/);
      e = await c.request({ type: 'devices.revoke', device_id: 'seven' });
      assert.equal(e.code, 'bad_field');
      e = await c.request({ type: 'profile.update', display_name: 5 });
      assert.equal(e.code, 'bad_field');
      assert.match(e.message, /display_name/);
      assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    });
  });

  describe('protocol limits', () => {
    test('binary frames -> bad_frame', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      const e = await c.next((f) => f.type === 'error');
      assert.equal(e.code, 'bad_frame');
      assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
      c.close();
    });

    test('a text frame that is not UTF-8 closes with 1007', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
      assert.equal((await c.closedWithin()).code, 1007);
    });

    test('an oversized frame closes with 1009', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      c.send({ type: 'ping', pad: 'x'.repeat(5000) });        // max_frame_size = 4 KiB
      assert.equal((await c.closedWithin()).code, 1009);
    });

    test('a large frame in fragments under the limit is reassembled', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      const text = JSON.stringify({ type: 'ping', id: 'big', pad: 'y'.repeat(3000) });
      const mid = 1500;
      c.ws.send(text.slice(0, mid), { fin: false });
      c.ws.send(text.slice(mid), { fin: true });
      const r = await c.next((f) => f.id === 'big');
      assert.equal(r.type, 'ping.result');
      c.close();
    });

    test('repeated abuse closes with 4006', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      for (let i = 0; i < 6; i++) c.send('garbage');           // max_errors = 6
      assert.equal((await c.closedWithin()).code, 4006);
    });
  });

  describe('devices and sessions', () => {
    test('a second connection of the same device replaces the first (4001)', async () => {
      const u = await register(d);
      const a = await Client.open(d);
      await a.auth(u.token);
      const b = await Client.open(d);
      await b.auth(u.token);
      const { code, reason } = await a.closedWithin();
      assert.equal(code, 4001);
      assert.match(reason, /replaced/);
      assert.equal((await b.request({ type: 'ping' })).type, 'ping.result');
      b.close();
    });

    test('two devices of one account stay connected together', async () => {
      const u = await register(d);
      const phone = (await login(d, u.username, 'phone')).json;
      const a = await Client.open(d);
      await a.auth(u.token);
      const b = await Client.open(d);
      await b.auth(phone.token);
      const list = await a.request({ type: 'devices.list' });
      assert.equal(list.type, 'devices.list.result');
      const byId = Object.fromEntries(list.devices.map((x) => [x.id, x]));
      assert.equal(byId[u.device_id].current, true);
      assert.equal(byId[phone.device_id].current, false);
      assert.equal(byId[phone.device_id].online, true);
      assert.equal((await b.request({ type: 'ping' })).type, 'ping.result');
      a.close();
      b.close();
    });

    test('a device revoked over HTTP is disconnected mid-session (4004)', async () => {
      const u = await register(d);
      const phone = (await login(d, u.username, 'phone')).json;
      const c = await Client.open(d);
      await c.auth(phone.token);
      const r = await api(d, 'DELETE', `/v1/devices/${phone.device_id}`, { token: u.token });
      assert.equal(r.status, 200);
      assert.equal((await c.closedWithin()).code, 4004);
      assert.equal((await api(d, 'GET', '/v1/devices', { token: phone.token })).status, 401);
      const c2 = await Client.open(d);
      const e = await c2.request({ type: 'auth', token: phone.token });
      assert.equal(e.code, 'auth_failed');
      assert.equal((await c2.closedWithin()).code, 4003);
    });

    test('a device revoked over WebSocket by another device is disconnected', async () => {
      const u = await register(d);
      const phone = (await login(d, u.username, 'phone')).json;
      const a = await Client.open(d);
      await a.auth(u.token);
      const b = await Client.open(d);
      await b.auth(phone.token);
      const r = await a.request({ type: 'devices.revoke', device_id: phone.device_id });
      assert.deepEqual(r, { type: 'devices.revoke.result', id: r.id, device_id: phone.device_id });
      assert.equal((await b.closedWithin()).code, 4004);
      const again = await a.request({ type: 'devices.revoke', device_id: phone.device_id });
      assert.equal(again.code, 'not_found');
      a.close();
    });

    test('logout over WebSocket answers, closes 1000 and kills the token', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      const r = await c.request({ type: 'logout' });
      assert.equal(r.type, 'logout.result');
      assert.equal((await c.closedWithin()).code, 1000);
      assert.equal((await api(d, 'GET', '/v1/devices', { token: u.token })).status, 401);
    });

    test('profile over WebSocket', async () => {
      const a = await register(d, { display_name: 'Zed' });
      const b = await register(d);
      const c = await Client.open(d);
      await c.auth(a.token);
      let r = await c.request({ type: 'profile.update', display_name: 'Zed Z', about: 'x' });
      assert.equal(r.type, 'profile.update.result');
      assert.deepEqual(r.profile, { username: a.username, display_name: 'Zed Z', about: 'x', avatar: '' });
      r = await c.request({ type: 'profile.get', username: b.username });
      assert.equal(r.profile.username, b.username);
      r = await c.request({ type: 'profile.get', username: 'no-such-user-x' });
      assert.equal(r.code, 'not_found');
      r = await c.request({ type: 'profile.update' });
      assert.equal(r.code, 'bad_field');
      c.close();
    });
  });

  describe('metrics', () => {
    test('/metrics has connections, handshakes, auth failures, frames and errors', async () => {
      const u = await register(d);
      const c = await Client.open(d);
      await c.auth(u.token);
      await c.request({ type: 'ping' });
      await c.request({ type: 'nope' });
      const m = parsePrometheus((await d.admin('/metrics')).text);
      assert.equal(m.types.get('parley_signaling_connections'), 'gauge');
      assert.ok(sample(m, 'parley_signaling_connections').value >= 1);
      assert.ok(sample(m, 'parley_signaling_handshakes_total').value >= 1);
      assert.ok(sample(m, 'parley_signaling_frames_in_total', { type: 'ping' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_frames_in_total', { type: 'unknown' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_frames_out_total', { type: 'ping.result' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_errors_total', { code: 'unknown_type' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_auth_failures_total', { reason: 'timeout' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_auth_failures_total', { reason: 'token_invalid' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_auth_failures_total', { reason: 'frame_before_auth' }).value >= 1);
      assert.ok(sample(m, 'parley_signaling_auth_failures_total', { reason: 'bad_credentials' }).value >= 1);
      assert.ok(sample(m, 'parley_store_batches_total').value >= 1);
      // Registrations wrote, so the syncer made them durable (store.synchronous=full).
      assert.ok(sample(m, 'parley_store_syncs_total').value >= 1);
      assert.equal(sample(m, 'parley_store_sync_seconds_count').value, sample(m, 'parley_store_syncs_total').value);
      // Every request's wait is observed as its transaction begins (a request still
      // running at the scrape has its wait counted and not yet itself); every written
      // transaction waited for its sync.
      assert.ok(sample(m, 'parley_store_wait_seconds_count').value >= sample(m, 'parley_store_requests_total').value);
      assert.ok(sample(m, 'parley_store_wait_seconds_count').value >= 1);
      assert.ok(sample(m, 'parley_store_durable_wait_seconds_count').value >= 1);
      assert.ok(sample(m, 'parley_store_durable_wait_seconds_count').value <= sample(m, 'parley_store_batches_total').value);
      c.close();
      const stats = JSON.parse((await d.admin('/stats')).text);
      assert.ok(JSON.stringify(stats).includes('"gateway"'));
    });
  });
});

// ---- daemons with special limits -----------------------------------------------------

describe('signaling rate limits', () => {
  let d;
  before(async () => {
    d = await startSignaling(['signaling.auth_ip_burst=4', 'signaling.auth_ip_per_min=1',
      'signaling.auth_account_burst=2', 'signaling.auth_account_per_min=1']);
  });
  after(async () => { await stopClean(d); });

  test('logins per account, then registrations per IP, are rate limited', async () => {
    const u = await register(d);                               // IP token 1
    assert.equal((await login(d, u.username, 'a', 'wrong pass')).status, 401);  // IP 2, acct 1
    assert.equal((await login(d, u.username, 'a', 'wrong pass')).status, 401);  // IP 3, acct 2
    const limited = await login(d, u.username, 'a');            // IP 4, account bucket empty
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error.code, 'rate_limited');
    assert.match(limited.json.error.message, /retry in \d+ s/);
    const r = await api(d, 'POST', '/v1/register', { body: { username: uniqueName(), password: 'correct horse' } });
    assert.equal(r.status, 429);                                // IP bucket empty
    const m = parsePrometheus((await d.admin('/metrics')).text);
    assert.ok(sample(m, 'parley_signaling_auth_failures_total', { reason: 'rate_limited' }).value >= 2);
  });
});

describe('signaling unauthenticated connections per address', () => {
  let d;
  before(async () => {
    d = await Daemon.start({
      ini: '[signaling]\nmax_unauth_per_ip = 3\n',
      sets: ['signaling.listen=127.0.0.1:0', 'signaling.scrypt_log2_n=10', 'signaling.threads=2',
        'signaling.auth_ip_burst=100000', 'signaling.auth_ip_per_min=100000'],
    });
    d.port = Number((await d.waitForLog(/signaling\.listening port=(\d+)/))[1]);
    d.http = `http://127.0.0.1:${d.port}`;
  });
  after(async () => { await stopClean(d); });

  const from = (ip) => ({ options: { localAddress: ip } });

  test('beyond the cap a connection is closed with 4008; others and authenticated ones are not', async () => {
    const u = await register(d), v = await register(d);
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await Client.open(d, from('127.0.0.1')));
    const over = await Client.open(d, from('127.0.0.1'));
    const { code, reason } = await over.closed;
    assert.equal(code, 4008);
    assert.match(reason, /too many unauthenticated connections/);
    // Another address is not affected, and the held ones still work.
    const other = await Client.open(d, from('127.0.0.2'));
    await other.auth(v.token);
    assert.equal((await other.request({ type: 'ping' })).type, 'ping.result');
    // Authenticating one frees its place...
    await held[0].auth(u.token);
    const next = await Client.open(d, from('127.0.0.1'));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(next.ws.readyState, 1, 'open, waiting for auth');
    // ...and so does closing one; authenticated connections never count.
    held[1].close();
    await held[1].closed;
    await until(async () => {
      const c = await Client.open(d, from('127.0.0.1'));
      const r = await Promise.race([c.closed, new Promise((res) => setTimeout(() => res(null), 300))]);
      if (r) return false;
      held.push(c);
      return true;
    }, 5000, 'a place after a close');
    assert.equal((await held[0].request({ type: 'ping' })).type, 'ping.result');
    const m = parsePrometheus((await d.admin('/metrics')).text);
    // The first refusal, plus any try of the wait above that came before the server
    // had seen the close.
    assert.ok(sample(m, 'parley_signaling_closes_total', { reason: 'unauth_per_ip' }).value >= 1);
    assert.match(d.logText, /signaling\.conn\.unauth_per_ip ip="?127\.0\.0\.1"? cap=3/);
    for (const c of [...held, other, next]) c.close();
  });

  test('the cap is reloadable (SIGHUP); 0 lifts it', async () => {
    writeFileSync(d.configPath, '[signaling]\nmax_unauth_per_ip = 0\n');
    const at = d.logText.length;
    process.kill(d.pid, 'SIGHUP');
    await d.waitForLog(/config\.reloaded/, 5000, at);
    const many = [];
    for (let i = 0; i < 8; i++) many.push(await Client.open(d, from('127.0.0.3')));
    await new Promise((r) => setTimeout(r, 300));
    for (const c of many) assert.equal(c.ws.readyState, 1, 'still open');
    for (const c of many) c.close();
  });
});

describe('signaling per-connection frame rate', () => {
  let d;
  before(async () => {
    d = await startSignaling(['signaling.rate_frames=5', 'signaling.rate_burst=5',
      'signaling.max_errors=100']);
  });
  after(async () => { await stopClean(d); });

  test('frames beyond the bucket are answered rate_limited; the connection lives', async () => {
    const u = await register(d);
    const c = await Client.open(d);
    await c.auth(u.token);
    for (let i = 0; i < 20; i++) c.send({ type: 'ping', id: `p${i}` });
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await c.next((f) => f.id === `p${i}`));
    const limited = answers.filter((f) => f.type === 'error' && f.code === 'rate_limited').length;
    assert.ok(limited >= 10, `only ${limited} limited`);
    assert.ok(answers.filter((f) => f.type === 'ping.result').length >= 4);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    c.close();
  });
});

describe('signaling liveness', () => {
  let d;
  before(async () => {
    d = await startSignaling(['signaling.ping_interval=1s', 'signaling.idle_timeout=3s',
      'signaling.send_queue_max=4KiB', 'signaling.rate_frames=0', 'signaling.max_frame_size=1MiB']);
  });
  after(async () => { await stopClean(d); });

  test('an idle connection gets WebSocket pings and stays while it answers', async () => {
    const u = await register(d);
    const c = await Client.open(d);
    await c.auth(u.token);
    await new Promise((r) => setTimeout(r, 4500));
    assert.ok(c.pings >= 2, `pings: ${c.pings}`);
    assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    c.close();
  });

  test('a peer that stops answering pings is closed after idle_timeout', async () => {
    const u = await register(d);
    const c = await Client.open(d, { options: { autoPong: false } });
    await c.auth(u.token);
    const t0 = Date.now();
    await c.closedWithin(8000);
    assert.ok(Date.now() - t0 >= 2000, 'closed before idle_timeout');
  });

  test('max_frame_size counts after auth; before auth a frame over 8 KiB closes with 1009', async () => {
    const u = await register(d);
    const big = await Client.open(d);
    await big.auth(u.token);
    // ~70 KB: the size of a browser's SDP answer in a 32-party room (max_frame_size 1 MiB here).
    const r = await big.request({ type: 'ping', pad: 'z'.repeat(70000) });
    assert.equal(r.type, 'ping.result');
    big.close();
    const anon = await Client.open(d);
    anon.send({ type: 'auth', token: u.token, pad: 'x'.repeat(9000) });
    assert.equal((await anon.closedWithin()).code, 1009);
    const ok = await Client.open(d);               // and the server goes on
    await ok.auth(u.token);
    assert.equal((await ok.request({ type: 'ping' })).type, 'ping.result');
    ok.close();
  });

  test('a client that stops reading is closed as a slow consumer (4005)', async () => {
    const u = await register(d);
    const c = await Client.open(d);
    await c.auth(u.token);
    await c.request({ type: 'profile.update', about: 'a'.repeat(256), display_name: 'd'.repeat(64) });
    c.ws._socket.pause();
    // Each answer is ~450 bytes. Requests go out in small paced batches until the
    // server gives up on us; requests still in flight then must not turn the close into
    // a TCP reset (the server half-closes and drains: a lingering close).
    const req = JSON.stringify({ type: 'profile.get' });
    let slow = null;
    d.waitForLog(/signaling\.conn\.slow_consumer/, 20000).then((m) => { slow = m; }, () => { slow = false; });
    for (let i = 0; i < 500 && slow === null; i++) {
      for (let j = 0; j < 100; j++) c.ws.send(req);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(slow, 'the server never saw a slow consumer');
    // Let the server read (and discard) what was still in flight before we read again:
    // a socket closed with unread input sends a reset, which would eat the close frame.
    c.ws._socket.resume();
    const { code } = await c.closedWithin(10000);
    assert.equal(code, 4005);
  });
});

describe('signaling drain', () => {
  test('SIGTERM closes WebSockets with 1001 and parleyd exits 0', async () => {
    const d = await startSignaling();
    const u = await register(d);
    const c = await Client.open(d);
    await c.auth(u.token);
    const stopping = d.stop();
    assert.equal((await c.closedWithin(8000)).code, 1001);
    const { code } = await stopping;
    assert.equal(code, 0);
  });
});

describe('signaling event loops', () => {
  for (const loop of ['libev', 'poll']) {
    test(`event_loop=${loop}: accounts, auth, frames, pings and a clean stop`, async () => {
      const d = await startSignaling([`signaling.event_loop=${loop}`, 'signaling.ping_interval=1s']);
      try {
        await d.waitForLog(new RegExp(`signaling\\.listening .* loop=${loop}`));
        const users = await Promise.all([1, 2, 3, 4].map(() => register(d)));
        const clients = await Promise.all(users.map(() => Client.open(d)));
        await Promise.all(clients.map((c, i) => c.auth(users[i].token)));
        for (let i = 0; i < 50; i++)
          for (const c of clients) assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
        await new Promise((r) => setTimeout(r, 1600));
        for (const c of clients) assert.ok(c.pings >= 1, `pings: ${c.pings}`);
        for (const c of clients) c.close();
      } finally {
        await stopClean(d);
      }
    });
  }
});

describe('signaling over TLS', () => {
  let d;
  before(async () => {
    const dir = tempDir('parley-tls-');
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
      '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    d = await startSignaling([`signaling.tls_cert=${cert}`, `signaling.tls_key=${key}`,
      'signaling.tls_listen=127.0.0.1:0']);
    const m = await d.waitForLog(/signaling\.listening port=\d+ tls_port=(\d+)/);
    d.tlsPort = Number(m[1]);
    assert.ok(d.tlsPort > 0);
  });
  after(async () => { await stopClean(d); });

  test('register over HTTPS, then auth over wss://', async () => {
    const username = uniqueName('tls');
    const body = JSON.stringify({ username, password: 'correct horse' });
    const res = await new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: d.tlsPort, path: '/v1/register', method: 'POST',
        rejectUnauthorized: false, headers: { 'content-type': 'application/json', 'content-length': body.length } },
      (r) => { let t = ''; r.on('data', (b) => { t += b; }); r.on('end', () => resolve({ status: r.statusCode, json: JSON.parse(t) })); });
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(res.status, 201);
    const c = await Client.open(d, { url: `wss://127.0.0.1:${d.tlsPort}/ws`, options: { rejectUnauthorized: false } });
    const r = await c.auth(res.json.token);
    assert.equal(r.username, username);
    assert.equal((await c.request({ type: 'ping' })).type, 'ping.result');
    c.close();
    // The plain listener still works next to it.
    assert.equal((await api(d, 'GET', '/v1/devices', { token: res.json.token })).status, 200);
  });
});
