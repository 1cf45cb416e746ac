// sdp_size.mjs: how large a browser's SDP answer gets in a big SFU room, to size
// signaling.max_frame_size. Headless Chromium answers an offer shaped like the SFU's
// (BUNDLE, rtcp-mux, sendonly m-lines alternating Opus audio and VP8+RTX video) with
// 6, 32 and 64 m-lines; a participant in a full 32-party room answers 2 of its own plus
// 2 per other participant = 64. Prints the offer, answer and room.sdp frame sizes.
// No network is used; run it in a loopback-only namespace anyway:
//   unshare --net -- bash -c 'ip link set lo up && exec node bench/sfu/sdp_size.mjs'
// 2026-11-27, Chromium of Debian 12: 64 m-lines -> answer 63,077 bytes, frame 66,467.
import { chromium } from 'playwright-core';

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--disable-gpu'] });
const page = await (await browser.newContext()).newPage();
const out = await page.evaluate(async () => {
  const res = {};
  for (const n of [6, 32, 64]) {
    const a = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    const b = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    const vc = RTCRtpSender.getCapabilities('video').codecs.filter((c) => /VP8|rtx/.test(c.mimeType)).slice(0, 2);
    const ac = RTCRtpSender.getCapabilities('audio').codecs.filter((c) => /opus/i.test(c.mimeType));
    for (let i = 0; i < n; i++) {
      const t = a.addTransceiver(i % 2 ? 'video' : 'audio', { direction: 'sendonly' });
      t.setCodecPreferences(i % 2 ? vc : ac);
    }
    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    res[n] = { offer: a.localDescription.sdp.length, answer: b.localDescription.sdp.length,
      answerJson: JSON.stringify({ type: 'room.sdp', sdp_type: 'answer', sdp: b.localDescription.sdp }).length };
    a.close(); b.close();
  }
  return res;
});
console.log(JSON.stringify(out));
await browser.close();
