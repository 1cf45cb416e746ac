// foundation.test.mjs: parleyd as a process: command line, config errors, the admin
// endpoint (/metrics parsed back strictly, /healthz, /readyz, /stats, bad requests),
// admin token, SIGHUP reload and graceful SIGTERM drain.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, runParleyd, tempDir, parsePrometheus, sample, rawHttp, freePort, ROOT } from './lib/daemon.mjs';

describe('command line and configuration', () => {
  test('--version prints the version', () => {
    const r = runParleyd(['--version']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^parleyd \d+\.\d+\.\d+ \(/);
  });

  test('--check-config prints the effective config with secrets masked', () => {
    const r = runParleyd(['--config', 'configs/parley.ini', '--check-config', '--set', 'log.level=debug'],
      { env: { PARLEY_ADMIN_TOKEN: 'sekret-token-123' } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\[admin\]/);
    assert.match(r.stdout, /level = debug/);
    assert.match(r.stdout, /token = \*\*\*/);
    assert.ok(!r.stdout.includes('sekret-token-123'), 'secret leaked into --check-config');
  });

  const bad = [
    ['unknown key', '[admin]\nlisten = 127.0.0.1:9090\nlistn = x\n', /:3: \[admin\] listn: .*unknown/],
    ['unknown section', '[nope]\nx = 1\n', /:1: \[nope\]/],
    ['bad enum', '[log]\nlevel = loud\n', /:2: \[log\] level: /],
    ['bad duration', '[process]\ndrain_timeout = soon\n', /:2: \[process\] drain_timeout: /],
    ['out of range', '[log]\nburst = 0\n', /:2: \[log\] burst: /],
    ['key before section', 'level = info\n', /:1: /],
    ['non-loopback admin without token', '[admin]\nlisten = 0.0.0.0:9090\n', /\[admin\] listen: .*token/],
    ['binary garbage', '\u0000\u0001\u0002[\n', /:1: /],
  ];
  for (const [name, ini, re] of bad) {
    test(`bad config exits 2 with one line: ${name}`, () => {
      const dir = tempDir();
      const path = join(dir, 'bad.ini');
      writeFileSync(path, ini);
      const r = runParleyd(['--config', path, '--check-config']);
      assert.equal(r.status, 2, `status ${r.status}: ${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
      assert.match(lines[0], re);
      if (!name.includes('non-loopback')) assert.ok(lines[0].includes(path), 'names the file');
    });
  }

  test('missing config file exits 2 naming it', () => {
    const r = runParleyd(['--config', '/nonexistent/parley.ini']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /\/nonexistent\/parley\.ini: .*(No such file|ENOENT)/);
  });

  test('bad --set exits 2 naming the key', () => {
    const r = runParleyd(['--set', 'log.level=loud', '--check-config']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /log\.level/);
    const r2 = runParleyd(['--set', 'nosuchthing', '--check-config']);
    assert.equal(r2.status, 2);
  });

  test('unknown command-line option exits 2', () => {
    assert.equal(runParleyd(['--frobnicate']).status, 2);
  });

  test('the admin port in use is a clear start-up failure (exit 1)', async () => {
    const d = await Daemon.start();
    try {
      const r = runParleyd(['--set', `admin.listen=127.0.0.1:${d.adminPort}`]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /admin/);
    } finally { await d.stop(); }
  });
});

describe('admin endpoint', () => {
  let d;
  before(async () => { d = await Daemon.start(); });
  after(async () => { await d.stop(); });

  test('/metrics is valid Prometheus exposition with build and process metrics', async () => {
    const r = await d.admin('/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const p = parsePrometheus(r.text);
    const info = sample(p, 'parley_build_info');
    assert.ok(info, 'parley_build_info present');
    assert.equal(info.value, 1);
    assert.match(info.labels.version, /^\d+\.\d+\.\d+$/);
    assert.ok(sample(p, 'parley_process_resident_memory_bytes').value > 1e6);
    assert.ok(sample(p, 'parley_process_open_fds').value >= 3);
    assert.ok(sample(p, 'parley_process_cpu_seconds_total').value >= 0);
    assert.equal(p.types.get('parley_process_cpu_seconds_total'), 'counter');
    for (const name of p.types.keys()) assert.match(name, /^parley_/);
  });

  test('/healthz, /readyz and /stats', async () => {
    assert.equal((await d.admin('/healthz')).status, 200);
    const ready = await d.admin('/readyz');
    assert.equal(ready.status, 200, ready.text);
    const stats = await d.admin('/stats');
    assert.equal(stats.status, 200);
    const j = JSON.parse(stats.text);
    assert.match(j.version, /^\d/);
    assert.equal(typeof j.uptime_s, 'number');
    assert.equal(typeof j.modules, 'object');
    assert.equal(typeof j.metrics, 'object');
  });

  test('unknown path 404, other methods 405, HEAD has no body', async () => {
    assert.equal((await d.admin('/nope')).status, 404);
    const post = await d.admin('/metrics', { method: 'POST' });
    assert.equal(post.status, 405);
    assert.match(post.headers.get('allow'), /GET/);
    const head = await d.admin('/healthz', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  test('malformed and oversized requests get 400/431 and the endpoint keeps serving', async () => {
    assert.match(await rawHttp(d.adminPort, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
    assert.match(await rawHttp(d.adminPort, 'GET /metrics HTTP/9.9\r\n\r\n'), /^HTTP\/1\.1 400 /);
    assert.match(await rawHttp(d.adminPort, 'GET /metrics HTTP/1.1\r\n bad fold\r\n\r\n'), /^HTTP\/1\.1 400 /);
    assert.match(await rawHttp(d.adminPort, 'GET /metrics HTTP/1.1\r\nX: ' + 'a'.repeat(10000) + '\r\n\r\n'), /^HTTP\/1\.1 431 /);
    assert.match(await rawHttp(d.adminPort, Buffer.from([0, 1, 2, 255, 13, 10, 13, 10])), /^HTTP\/1\.1 400 /);
    const r = await d.admin('/metrics');
    assert.equal(r.status, 200);
    const p = parsePrometheus(r.text);
    assert.ok(sample(p, 'parley_admin_requests_total', { code: '400' }).value >= 5);
  });
});

describe('admin token', () => {
  test('a configured token is required on every request', async () => {
    const d = await Daemon.start({ env: { PARLEY_ADMIN_TOKEN: 'tok-abc' } });
    try {
      const none = await d.admin('/metrics');
      assert.equal(none.status, 401);
      assert.equal((await d.admin('/metrics', { headers: { authorization: 'Bearer wrong!' } })).status, 401);
      assert.equal((await d.admin('/metrics', { headers: { authorization: 'Bearer tok-abc' } })).status, 200);
      assert.ok(!d.logText.includes('tok-abc'), 'token must never be logged');
    } finally { await d.stop(); }
  });
});

describe('reload and shutdown', () => {
  test('SIGHUP applies reloadable keys and refuses the rest, keeping the old config', async () => {
    const d = await Daemon.start({ ini: '[log]\nlevel = info\n' });
    try {
      writeFileSync(d.configPath, '[log]\nlevel = debug\n');
      let mark = d.logText.length;
      d.signal('SIGHUP');
      await d.waitForLog(/config\.reloaded level=debug/, 5000, mark);

      writeFileSync(d.configPath, '[log]\nlevel = debug\nformat = json\n');
      mark = d.logText.length;
      d.signal('SIGHUP');
      await d.waitForLog(/config\.reload_failed.*format.*restart/, 5000, mark);

      writeFileSync(d.configPath, '[log]\nlevel = shouting\n');
      mark = d.logText.length;
      d.signal('SIGHUP');
      await d.waitForLog(/config\.reload_failed/, 5000, mark);

      const p = parsePrometheus((await d.admin('/metrics')).text);
      assert.equal(sample(p, 'parley_config_reloads_total', { result: 'ok' }).value, 1);
      assert.equal(sample(p, 'parley_config_reloads_total', { result: 'error' }).value, 2);
      assert.equal((await d.admin('/healthz')).status, 200);
    } finally { await d.stop(); }
  });

  test('SIGTERM drains and exits 0; SIGINT too', async () => {
    for (const sig of ['SIGTERM', 'SIGINT']) {
      const d = await Daemon.start();
      const t0 = Date.now();
      const r = await d.stop(sig);
      assert.equal(r.code, 0, d.logText);
      assert.ok(Date.now() - t0 < 5000);
      assert.match(d.logText, /app\.draining/);
      assert.match(d.logText, /app\.stopped/);
    }
  });

  test('logs are JSON lines when log.format = json', async () => {
    const d = await Daemon.start({ ini: '[log]\nformat = json\n' });
    try {
      await d.admin('/healthz');
    } finally { await d.stop(); }
    const lines = d.logText.trim().split('\n');
    assert.ok(lines.length >= 2);
    for (const l of lines) {
      const j = JSON.parse(l);
      assert.ok(j.ts && j.level && j.event, l);
    }
  });
});

describe('docs', () => {
  test('docs/OPERATIONS.md carries the reference of every key, as generated from the option tables', () => {
    const r = runParleyd(['--config-docs']);
    assert.equal(r.status, 0);
    const ops = readFileSync(join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
    const b = '<!-- BEGIN CONFIG REFERENCE (scripts/gen-config-docs) -->', e = '<!-- END CONFIG REFERENCE -->';
    const inDoc = ops.slice(ops.indexOf(b) + b.length, ops.indexOf(e)).trim();
    assert.equal(inDoc, r.stdout.trim(), 'docs/OPERATIONS.md is out of date: run scripts/gen-config-docs');
    const check = runParleyd(['--check-config']);
    for (const line of check.stdout.split('\n')) {
      const k = line.match(/^(\w+) = /);
      if (k) assert.ok(inDoc.includes(`\`${k[1]}\``), `reference lacks ${k[1]}`);
    }
  });
});
