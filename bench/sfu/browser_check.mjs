// browser_check.mjs: headless Chromium pages in an SFU room, driven through sfu_bridge
// (stdin/stdout JSON lines) instead of the signaling module: an interoperability check
// of the SFU's ICE, DTLS-SRTP, SDP, forwarding and simulcast against a real browser
// until signaling carries room frames. It mirrors the browser tests 2-4:
//   1. three pages each decode audio and video from the other two;
//   2. one leaves and rejoins: the others see it go, come back, and decode it again;
//   3. simulcast: a subscriber asking for low quality gets a narrower frame, then the
//      top layer's width again.
// Run it inside a loopback-only network namespace (see ../../../shared/BROWSER-TESTING.md):
//   unshare --net -- bash -c 'ip link set lo up && exec node bench/sfu/browser_check.mjs BUILD_DIR'
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const build = process.argv[2] || 'build';
const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

const PAGE = `<!doctype html><html><body><script>
let pc, id, tracks = {}, queue = Promise.resolve(), events = [];
window.start = async (myId, simulcast) => {
  id = myId;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly', streams: [stream] });
  pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream],
    sendEncodings: simulcast ? [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] : undefined });
  pc.onicecandidate = (e) => send({ op: 'candidate', id, candidate: e.candidate ? e.candidate.candidate : '', mid: e.candidate ? e.candidate.sdpMid : '' });
  pc.ontrack = (e) => {
    const el = document.createElement(e.track.kind);
    el.muted = true; el.autoplay = true; el.srcObject = new MediaStream([e.track]);
    document.body.appendChild(el);
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  send({ op: 'offer', id, sdp: offer.sdp });
};
window.onEvent = (ev) => { queue = queue.then(() => handle(ev)).catch((e) => { events.push({ type: 'page.error', message: String(e) }); }); return queue; };
async function handle(ev) {
  events.push(ev);
  if (ev.type === 'sfu.answer') await pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp });
  if (ev.type === 'sfu.offer') {
    for (const t of ev.tracks) tracks[t.mid] = t;
    await pc.setRemoteDescription({ type: 'offer', sdp: ev.sdp });
    const a = await pc.createAnswer();
    await pc.setLocalDescription(a);
    send({ op: 'answer', id, sdp: a.sdp });
  }
}
window.leave = () => { pc.close(); pc = null; };
window.eventTypes = () => events.map((e) => e.type + (e.code ? ':' + e.code : '') + (e.participant ? ':' + e.participant : ''));
// Per remote publisher: video framesDecoded/frameWidth and audio packetsReceived.
window.media = async () => {
  const out = {};
  if (!pc) return out;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const t = tracks[s.mid];
    if (!t) return;
    const o = out[t.participant] || (out[t.participant] = { frames: 0, width: 0, audio: 0 });
    if (s.kind === 'video') { o.frames += s.framesDecoded || 0; o.width = Math.max(o.width, s.frameWidth || 0); }
    else o.audio += s.packetsReceived || 0;
  });
  return out;
};
</script></body></html>`;

function startBridge() {
  const p = spawn(`${build}/bench/sfu/sfu_bridge`, ['--set', 'sfu.media_threads=2'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  const pages = new Map();
  readline.createInterface({ input: p.stdout }).on('line', (line) => {
    const m = JSON.parse(line);
    if (m.rc !== undefined && m.rc !== 0) log('bridge rc', line);
    if (m.to !== undefined) {
      const page = pages.get(m.to);
      if (m.event.type === 'sfu.error') log('sfu.error to', m.to, m.event);
      if (page) page.evaluate((ev) => window.onEvent(ev), m.event).catch(() => {});
    }
  });
  let err = '';
  p.stderr.on('data', (d) => { err += d; if (process.env.SFU_LOG) process.stderr.write(d); });
  const send = (cmd) => p.stdin.write(JSON.stringify(cmd) + '\n');
  return { p, pages, send, stderr: () => err };
}

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last === true || (last && last.ok)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timeout waiting for ${what}: ${JSON.stringify(last)}`);
}

async function main() {
  const server = http.createServer((req, res) => { res.setHeader('content-type', 'text/html'); res.end(PAGE); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const bridge = startBridge();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--allow-loopback-in-peer-connection', '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const open = async (id, simulcast = false) => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on('pageerror', (e) => log('pageerror', id, e.message));
    await page.exposeFunction('send', (cmd) => bridge.send(cmd));
    await page.goto(url);
    bridge.pages.set(id, page);
    bridge.send({ op: 'join', room: 'browser-room', id, display: `page${id}` });
    await page.evaluate(([i, s]) => window.start(i, s), [id, simulcast]);
    return { id, ctx, page };
  };
  const media = (p) => p.page.evaluate(() => window.media());
  const decodesAll = (p, others) => async () => {
    const m = await media(p);
    const ok = others.every((o) => m[o] && m[o].frames > 10 && m[o].audio > 20);
    return { ok, m };
  };
  try {
    const t0 = Date.now();
    const [a, b, c] = await Promise.all([open(1, true), open(2), open(3)]);
    for (const [p, others] of [[a, [2, 3]], [b, [1, 3]], [c, [1, 2]]])
      await until(`page ${p.id} decoding ${others}`, decodesAll(p, others));
    log(`1. three pages decode each other (${Date.now() - t0} ms)`, JSON.stringify(await media(a)));

    // 2. leave and rejoin.
    await c.page.evaluate(() => window.leave());
    bridge.send({ op: 'leave', id: 3 });
    for (const p of [a, b])
      await until(`page ${p.id} sees 3 leave`, async () =>
        (await p.page.evaluate(() => window.eventTypes())).includes('sfu.participant_left:3'));
    await c.ctx.close();
    const c2 = await open(3);
    for (const [p, others] of [[a, [2, 3]], [b, [1, 3]], [c2, [1, 2]]])
      await until(`page ${p.id} decoding ${others} after rejoin`, async () => {
        const m = await media(p);
        // After the rejoin, 3's new tracks must decode (frames counted on new mids).
        return { ok: others.every((o) => m[o] && m[o].frames > 10 && m[o].audio > 20), m };
      });
    log('2. leave and rejoin: media back', JSON.stringify(await media(a)));

    // 3. simulcast: page 2 asks for low quality from page 1, then high again. At 640x480
    // Chromium sends two of the three layers (q 160 and h 320 wide; its layer limit for
    // the resolution), so "high" is the 320-wide layer here.
    const full = (await until('the top layer', async () => {
      const m = await media(b);
      return { ok: m[1] && m[1].width >= 320, m };
    })).m[1].width;
    bridge.send({ op: 'quality', id: 2, publisher: 1, quality: 'low' });
    const low = await until('low layer', async () => {
      const m = await media(b);
      return { ok: m[1] && m[1].width > 0 && m[1].width < full, m };
    });
    log('3. low quality: width', low.m[1].width, 'from', full);
    bridge.send({ op: 'quality', id: 2, publisher: 1, quality: 'high' });
    await until('back to full width', async () => {
      const m = await media(b);
      return { ok: m[1] && m[1].width >= full, m };
    });
    log('3. high quality again: width', full);
    bridge.send({ op: 'metrics' });
    log('all browser checks passed');
  } finally {
    await browser.close();
    bridge.p.stdin.end();
    await new Promise((r) => bridge.p.once('exit', r));
    server.close();
    if (process.exitCode) process.stderr.write(bridge.stderr().slice(-6000));
  }
}

main().catch((e) => { console.error(e); process.exitCode = 1; });
