// daemon.mjs: starts a real parleyd for integration tests: a temp dir with its config,
// free loopback ports, logs captured, and stop by PID (never by name).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const PARLEYD = process.env.PARLEYD || join(ROOT, 'build/app/parleyd');

const usedPorts = new Set();

// A port free for TCP and UDP on 127.0.0.1 right now (the daemon binds it next).
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); });
    });
    if (usedPorts.has(port)) continue;
    const udpFree = await new Promise((res) => {
      const u = createSocket('udp4');
      u.once('error', () => res(false));
      u.bind(port, '127.0.0.1', () => u.close(() => res(true)));
    });
    if (!udpFree) continue;
    usedPorts.add(port);
    return port;
  }
  throw new Error('no free port');
}

// Runs parleyd to completion (for --version, --check-config, bad configs).
export function runParleyd(args, { env = {}, cwd = ROOT } = {}) {
  const r = spawnSync(PARLEYD, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Every temp dir made here goes when the test file's process exits (daemons that were
// expected to fail at start, or whose test failed, never reach Daemon.cleanup).
const madeDirs = new Set();
process.on('exit', () => {
  if (process.env.PARLEY_KEEP_TMP) return;
  for (const d of madeDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { }
  }
});

export function tempDir(prefix = 'parley-test-') {
  const d = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.add(d);
  return d;
}

export class Daemon {
  // opts: { ini: text of the config file, sets: ['k=v'], env: {}, readyEvent }
  static async start(opts = {}) {
    const d = new Daemon();
    await d._start(opts);
    return d;
  }

  async _start({ ini = '', sets = [], env = {}, readyEvent = 'app.ready', timeoutMs = 15000 }) {
    this.dir = tempDir();
    this.adminPort = await freePort();
    this.configPath = join(this.dir, 'parley.ini');
    writeFileSync(this.configPath, ini);
    // Every listener on a free port: a test never depends on a default port being free
    // (the caller's sets come later and win).
    const args = ['--config', this.configPath, '--set', `admin.listen=127.0.0.1:${this.adminPort}`,
      '--set', 'signaling.listen=127.0.0.1:0'];
    for (const s of sets) args.push('--set', s);
    this.logText = '';
    this.proc = spawn(PARLEYD, args, { cwd: this.dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.proc.pid;
    this.exited = new Promise((res) => this.proc.once('exit', (code, signal) => res({ code, signal })));
    const onData = (b) => { this.logText += b.toString(); };
    this.proc.stdout.on('data', onData);
    this.proc.stderr.on('data', onData);
    await this.waitForLog(new RegExp(`\\b${readyEvent.replace('.', '\\.')}\\b`), timeoutMs);
    this.adminUrl = `http://127.0.0.1:${this.adminPort}`;
  }

  // Resolves with the first match of re in the log (waiting up to timeoutMs).
  async waitForLog(re, timeoutMs = 10000, from = 0) {
    const t0 = Date.now();
    for (;;) {
      const m = this.logText.slice(from).match(re);
      if (m) return m;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null)
        throw new Error(`parleyd exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${re}:\n${this.logText}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${re}; log:\n${this.logText}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async admin(path, { method = 'GET', headers = {} } = {}) {
    const res = await fetch(this.adminUrl + path, { method, headers });
    return { status: res.status, headers: res.headers, text: await res.text() };
  }

  signal(sig) { process.kill(this.pid, sig); }

  // Sends sig (default SIGTERM) and waits for the exit; SIGKILL after timeoutMs.
  async stop(sig = 'SIGTERM', timeoutMs = 15000) {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      try { process.kill(this.pid, sig); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(this.pid, 'SIGKILL'); } catch { } }, timeoutMs);
      const r = await this.exited;
      clearTimeout(timer);
      this.cleanup();
      return r;
    }
    const r = await this.exited;
    this.cleanup();
    return r;
  }

  cleanup() {
    if (this.dir && !process.env.PARLEY_KEEP_TMP) rmSync(this.dir, { recursive: true, force: true });
  }
}

// Strict parser for the Prometheus text exposition format 0.0.4: returns
// { types: Map(name -> type), samples: [{name, labels, value}] } or throws on any
// line that is not valid.
export function parsePrometheus(text) {
  const types = new Map(), helps = new Map(), samples = [];
  const nameRe = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  let current = null;
  for (const line of text.split('\n').slice(0, -1)) {
    if (line.startsWith('# HELP ')) {
      const [, name] = line.match(/^# HELP (\S+) (.*)$/) || [];
      if (!name || !nameRe.test(name) || helps.has(name)) throw new Error(`bad HELP: ${line}`);
      helps.set(name, true);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = line.match(/^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/);
      if (!m || types.has(m[1])) throw new Error(`bad or repeated TYPE: ${line}`);
      types.set(m[1], m[2]);
      current = m[1];
      continue;
    }
    if (line.startsWith('#') || line === '') throw new Error(`unexpected line: ${JSON.stringify(line)}`);
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/);
    if (!m) throw new Error(`bad sample: ${line}`);
    const [, name, , labelText, valueText] = m;
    const labels = {};
    if (labelText) {
      const lre = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
      let consumed = 0, lm;
      while ((lm = lre.exec(labelText))) { labels[lm[1]] = lm[2]; consumed = lre.lastIndex; }
      if (consumed !== labelText.length) throw new Error(`bad labels: ${line}`);
    }
    const base = current && (name === current || ['_bucket', '_sum', '_count'].some((s) => name === current + s));
    if (!base) throw new Error(`sample ${name} outside its TYPE block (${current})`);
    const value = Number(valueText.replace('+Inf', 'Infinity').replace('-Inf', '-Infinity'));
    if (Number.isNaN(value) && valueText !== 'NaN') throw new Error(`bad value: ${line}`);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

export function sample(parsed, name, labels = {}) {
  return parsed.samples.find((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

// Sends raw bytes on a TCP connection and returns everything the server answered
// before it closed the connection.
export async function rawHttp(port, bytes, timeoutMs = 5000) {
  const { connect } = await import('node:net');
  return new Promise((res, rej) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const t = setTimeout(() => { s.destroy(); rej(new Error('raw http timeout')); }, timeoutMs);
    s.on('data', (b) => { out += b.toString('latin1'); });
    s.on('error', (e) => { clearTimeout(t); if (out) res(out); else rej(e); });
    s.on('close', () => { clearTimeout(t); res(out); });
    s.write(bytes);
  });
}
