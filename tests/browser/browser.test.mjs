// browser.test.mjs: parley's web client (web/parley.js, served by parleyd) in headless
// Chromium against one parleyd with [turn], [sfu] and signaling: the browser
// tests (docs/SFU.md, ../../../shared/BROWSER-TESTING.md):
//   1. a 1:1 call signaled with call.* frames, iceTransportPolicy 'relay' through
//      parleyd's TURN over UDP, then over TCP: both pages decode video and receive
//      audio, and the selected candidate pair is a relay one;
//   2. a three-party SFU room through room.* frames: each page decodes audio and video
//      from the other two;
//   3. a participant leaves and rejoins: the others see it go and come back with media;
//      a participant whose connection closes leaves too;
//   4. simulcast: a subscriber asking for low quality gets a narrower frame, then the
//      top layer's width again;
//   5. a room member restricted to TURN over TCP (iceTransportPolicy 'relay') reaches
//      the SFU through parleyd's TURN and media flows both ways;
// plus: room.mute (forwarding of that kind stops and resumes), a group call from a chat
// group (members only, the other members rung), iceServers after a config reload, and
// the room.* error frames.
//
// Must run inside a loopback-only network namespace (make browser does it):
//   unshare --net -- bash -c 'ip link set lo up && exec node --test tests/browser/'
// One browser, one context per peer; every process started here is stopped by PID.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';
import { Daemon, ROOT, freePort, parsePrometheus, sample } from '../integration/lib/daemon.mjs';

const SECRET = 'browser-test-turn-secret';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last === true || (last && last.ok)) return last;
    await sleep(250);
  }
  throw new Error(`timeout waiting for ${what}: ${JSON.stringify(last)}`);
}

describe('web client in Chromium through parleyd', () => {
  let d, browser;
  const contexts = [];

  before(async () => {
    const turnPort = await freePort();
    d = await Daemon.start({
      ini: ['[turn]', 'enabled = true', `listen = 127.0.0.1:${turnPort}`, `auth_secret = ${SECRET}`,
        'allowed_peers = 127.0.0.1/32', 'threads = 1',
        '[sfu]', 'enabled = true', 'media_threads = 2', 'ports = 42000-42999', ''].join('\n'),
      sets: ['signaling.scrypt_log2_n=10', 'signaling.threads=2', 'signaling.rate_frames=0',
        'signaling.max_errors=0', 'signaling.auth_ip_burst=100000', 'signaling.auth_ip_per_min=100000',
        `signaling.web_root=${join(ROOT, 'web')}`],
    });
    const m = await d.waitForLog(/signaling\.listening port=(\d+)/);
    d.http = `http://127.0.0.1:${m[1]}`;
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--allow-loopback-in-peer-connection', '--use-fake-ui-for-media-stream',
        '--use-fake-device-for-media-stream', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    if (browser) await browser.close();
    if (d) {
      const { code, signal } = await d.stop();
      assert.equal(code, 0, `parleyd exited ${code ?? signal}; log:\n${d.logText.slice(-4000)}`);
    }
  });

  // A page of parleyd's web client, registered and connected: { page, ctx, username, dev }.
  async function openPage() {
    const ctx = await browser.newContext();
    contexts.push(ctx);
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(d.http + '/');
    const username = `b${process.pid % 1000}x${++seq}`;
    const me = await page.evaluate(async (u) => {
      const s = await parley.register(u, 'correct horse');
      return parley.connect(s.token);
    }, username);
    return { page, ctx, username, dev: me.device_id, errors };
  }

  const callStats = (p) => p.page.evaluate(() => parley.callStats());
  const roomStats = (p) => p.page.evaluate(() => parley.roomStats());
  const events = (p) => p.page.evaluate(() => parley.roomEvents());

  // Media from pid flowing into p right now: video frames and audio packets grow.
  async function flowing(p, pid) {
    const a = (await roomStats(p))[pid];
    await sleep(700);
    const b = (await roomStats(p))[pid];
    const ok = !!(a && b && b.frames - a.frames >= 3 && b.audio - a.audio >= 5);
    return { ok, a, b };
  }

  let pages;
  test('the web client is served by parleyd', async () => {
    const res = await fetch(d.http + '/parley.js');
    assert.equal(res.status, 200);
    assert.match(await res.text(), /class Parley/);
    pages = await Promise.all([openPage(), openPage(), openPage()]);
    assert.ok(pages.every((p) => p.dev > 0));
  });

  for (const transport of ['udp', 'tcp']) {
    test(`1:1 call relayed through parleyd's TURN over ${transport}: both decode video and audio`, async () => {
      const [a, b] = pages;
      const opts = { relay: true, turnTransport: transport };
      const inv = await a.page.evaluate(([u, o]) => parley.invite(u, o), [b.username, opts]);
      assert.ok(inv.ice_servers.some((s) => s.credential && s.urls.some((u) => u.includes(`transport=${transport}`))),
        JSON.stringify(inv.ice_servers));
      await b.page.evaluate((o) => parley.acceptNext(o), opts);
      for (const p of [a, b]) {
        const s = await until(`call media on ${p.username} over ${transport}`, async () => {
          const st = await callStats(p);
          return { ok: st.frames > 10 && st.audio > 20 && st.pairState === 'succeeded', ...st };
        });
        assert.equal(s.localType, 'relay', JSON.stringify(s));
        assert.equal(s.localProtocol, transport, JSON.stringify(s));
      }
      await a.page.evaluate(() => parley.hangup());
      await until('call.ended on the callee', async () =>
        b.page.evaluate(() => parley.pushes.some((f) => f.type === 'call.ended' && parley.call && f.call_id === parley.call.id)));
      await b.page.evaluate(() => { parley.call = null; });
    });
  }

  test('room.* errors: bad room id, not joined, already joined, bad quality and kind', async () => {
    const [a] = pages;
    const codes = await a.page.evaluate(async () => {
      const code = (f) => parley.request(f).then(() => 'ok', (e) => e.code);
      const out = {};
      out.badRoom = await code({ type: 'room.join', room: 'no spaces allowed' });
      out.leave = await code({ type: 'room.leave' });
      out.sdp = await code({ type: 'room.sdp', sdp_type: 'offer', sdp: 'v=0' });
      out.sdpType = await code({ type: 'room.sdp', sdp_type: 'pranswer', sdp: 'v=0' });
      out.ice = await code({ type: 'room.ice', candidate: '' });
      out.quality = await code({ type: 'room.quality', quality: 'ultra' });
      out.mute = await code({ type: 'room.mute', kind: 'screen', muted: true });
      out.join = await code({ type: 'room.join', room: 'errs-1' });
      out.again = await code({ type: 'room.join', room: 'errs-2' });
      out.left = await code({ type: 'room.leave' });
      return out;
    });
    assert.deepEqual(codes, { badRoom: 'bad_field', leave: 'not_joined', sdp: 'not_joined',
      sdpType: 'bad_field', ice: 'not_joined', quality: 'bad_field', mute: 'bad_field',
      join: 'ok', again: 'already_joined', left: 'ok' });
  });

  test('a room member behind a strict firewall reaches the SFU through parleyd\'s TURN over TCP', async () => {
    const [a, b] = pages;
    // a may only use relay candidates, and only TURN over TCP: as a client whose network
    // lets nothing but one outgoing TCP port through would.
    await a.page.evaluate(() => parley.join('room-relay', { relay: true, turnTransport: 'tcp' }));
    await b.page.evaluate(() => parley.join('room-relay'));
    for (const [p, o] of [[a, b], [b, a]]) {
      await until(`${p.username} decoding ${o.username} in room-relay`, async () => {
        const m = await roomStats(p);
        return { ok: !!(m[o.dev] && m[o.dev].frames > 10 && m[o.dev].audio > 20), m };
      });
    }
    const path = await a.page.evaluate(() => parley.roomPath());
    assert.equal(path.pairState, 'succeeded', JSON.stringify(path));
    assert.equal(path.localType, 'relay', JSON.stringify(path));
    assert.equal(path.localProtocol, 'tcp', JSON.stringify(path));
    await Promise.all([a, b].map((p) => p.page.evaluate(() => parley.leave())));
  });

  test('three-party room: each page decodes audio and video from the other two', async () => {
    const t0 = Date.now();
    await Promise.all(pages.map((p, i) =>
      p.page.evaluate((s) => parley.join('room-1', { simulcast: s }), i === 0)));
    for (const p of pages) {
      const others = pages.filter((o) => o !== p).map((o) => o.dev);
      await until(`${p.username} decoding ${others}`, async () => {
        const m = await roomStats(p);
        return { ok: others.every((o) => m[o] && m[o].frames > 10 && m[o].audio > 20), m };
      });
    }
    const evs = await events(pages[0]);
    assert.ok(evs.includes(`sfu.joined:${pages[0].dev}`), evs.join());
    console.log(`three pages decode each other after ${Date.now() - t0} ms`);
  });

  test('a participant leaves and rejoins: the others see it go and come back with media', async () => {
    const [a, b, c] = pages;
    const before = await Promise.all([a, b].map(async (p) => (await events(p)).filter((e) => e === `sfu.participant_joined:${c.dev}`).length));
    await c.page.evaluate(() => parley.leave());
    for (const p of [a, b])
      await until(`${p.username} sees ${c.username} leave`, async () =>
        (await events(p)).includes(`sfu.participant_left:${c.dev}`));
    await c.page.evaluate(() => parley.join('room-1'));
    for (const [i, p] of [a, b].entries()) {
      await until(`${p.username} sees ${c.username} rejoin`, async () =>
        (await events(p)).filter((e) => e === `sfu.participant_joined:${c.dev}`).length > before[i]);
      await until(`media from ${c.username} to ${p.username} again`, () => flowing(p, c.dev));
    }
    for (const o of [a, b])
      await until(`media from ${o.username} to the rejoined ${c.username}`, () => flowing(c, o.dev));
  });

  test('ICE restart (a network change): new credentials both ways, media carries on', async () => {
    const [a, b, c] = pages;
    const old = await a.page.evaluate(() => parley.iceUfrag());
    const restarts = async () => sample(parsePrometheus((await d.admin('/metrics')).text),
      'parley_sfu_ice_restarts_total').value;
    const before = await restarts();
    const fresh = await a.page.evaluate(() => parley.restartIce());
    assert.ok(fresh && old && fresh !== old, `the SFU answered with new credentials (${old} -> ${fresh})`);
    assert.equal(await restarts(), before + 1);
    await until(`${a.username} connected again`, async () =>
      (await a.page.evaluate(() => parley.room.pc.iceConnectionState)) === 'connected' ||
      (await a.page.evaluate(() => parley.room.pc.iceConnectionState)) === 'completed');
    for (const o of [b, c]) {
      await until(`media from ${o.username} to ${a.username} after the restart`, () => flowing(a, o.dev));
      await until(`media from ${a.username} to ${o.username} after the restart`, () => flowing(o, a.dev));
    }
    const evs = await events(a);
    assert.ok(!evs.some((e) => e.startsWith('sfu.error')), evs.join());
    assert.deepEqual(a.errors, []);
  });

  test('simulcast: a subscriber asking for low quality gets the low layer, then the top again', async () => {
    const [a, b] = pages;
    // At 640x480 Chromium sends two of the three layers (q 160, h 320 wide).
    const full = (await until('the top layer', async () => {
      const m = await roomStats(b);
      return { ok: m[a.dev] && m[a.dev].width >= 320, m };
    })).m[a.dev].width;
    await b.page.evaluate((pub) => parley.setQuality('low', pub), a.dev);
    const low = await until('the low layer', async () => {
      const m = await roomStats(b);
      return { ok: m[a.dev] && m[a.dev].width > 0 && m[a.dev].width < full, m };
    });
    assert.ok(low.m[a.dev].width <= full / 2, JSON.stringify(low.m));
    await b.page.evaluate((pub) => parley.setQuality('high', pub), a.dev);
    await until('back to the top layer', async () => {
      const m = await roomStats(b);
      return { ok: m[a.dev] && m[a.dev].width >= full, m };
    });
  });

  test('room.mute: the room is told, forwarding of that kind stops and resumes', async () => {
    const [a, b] = pages;
    await a.page.evaluate(() => parley.mute('audio', true));
    await until(`${b.username} told of the mute`, async () =>
      (await b.page.evaluate(() => parley.room.events.some((e) => e.type === 'sfu.mute' && e.kind === 'audio' && e.muted))));
    await sleep(500);
    const s1 = (await roomStats(b))[a.dev];
    await sleep(1000);
    const s2 = (await roomStats(b))[a.dev];
    assert.ok(s2.audio - s1.audio <= 2, `audio still forwarded while muted: ${JSON.stringify([s1, s2])}`);
    assert.ok(s2.frames > s1.frames, 'video keeps flowing');
    await a.page.evaluate(() => parley.mute('audio', false));
    await until(`audio from ${a.username} again`, () => flowing(b, a.dev));
  });

  test('a participant whose connection closes leaves the room', async () => {
    const [a, , c] = pages;
    const n = (await events(a)).filter((e) => e === `sfu.participant_left:${c.dev}`).length;
    await c.ctx.close();
    await until(`${a.username} sees ${c.username} disconnect`, async () =>
      (await events(a)).filter((e) => e === `sfu.participant_left:${c.dev}`).length > n);
    for (const p of pages) assert.deepEqual(p.errors, []);
  });

  test('after SIGHUP, room.join hands out TURN credentials from the new [turn] auth_secret', async () => {
    const [, b] = pages;
    const fresh = 'rotated-turn-secret';
    writeFileSync(d.configPath, readFileSync(d.configPath, 'utf8').replace(SECRET, fresh));
    const mark = d.logText.length;
    d.signal('SIGHUP');
    await d.waitForLog(/config\.reloaded/, 5000, mark);
    const r = await b.page.evaluate(async () => {
      await parley.leave();
      const res = await parley.request({ type: 'room.join', room: 'room-2' });
      await parley.request({ type: 'room.leave' });
      return res;
    });
    const turn = r.ice_servers.find((s) => s.credential);
    assert.ok(turn, JSON.stringify(r.ice_servers));
    assert.equal(turn.credential, createHmac('sha1', fresh).update(turn.username).digest('base64'));
  });

  test('a group call from a chat group: members only, the other members are rung', async () => {
    const [a, b] = pages;
    await a.page.evaluate(() => parley.leave());
    const g = await a.page.evaluate((u) => parley.request({ type: 'chat.group.create', name: 'team', members: [u] }), b.username);
    const gid = g.group.group_id;
    const outsider = await openPage();
    const denied = await outsider.page.evaluate((id) =>
      parley.request({ type: 'room.join', group_id: id }).then(() => 'ok', (e) => e.code), gid);
    assert.equal(denied, 'not_found');
    await outsider.ctx.close();
    const joined = await a.page.evaluate((id) => parley.join(id, { ring: true }), gid);
    assert.equal(joined.room, `g${gid}`);
    const ring = await until('room.ring on the other member', async () => {
      const f = await b.page.evaluate(() => parley.pushes.find((x) => x.type === 'room.ring'));
      return { ok: !!f, f };
    });
    assert.equal(ring.f.group_id, gid);
    assert.equal(ring.f.caller_username, a.username);
    await b.page.evaluate((id) => parley.join(id), gid);
    for (const [p, o] of [[a, b], [b, a]])
      await until(`group call media from ${o.username} to ${p.username}`, () => flowing(p, o.dev));
    await b.page.evaluate(() => parley.leave());
  });
});
