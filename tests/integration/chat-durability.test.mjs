// chat-durability.test.mjs: chat survives SIGKILL. Senders stream direct messages
// (several in flight each) while receivers acknowledge what they get; parleyd is
// killed with SIGKILL mid-load and restarted on the same database, several times.
// Senders resend whatever had no "sent" answer yet, with the same client_id, as a
// real client does. At the end:
//   - every message a sender got "sent" for was delivered to its receiver (none lost);
//   - no message was delivered again after its acknowledgement was answered;
//   - a client_id never became two messages (idempotent resends across crashes);
//   - each conversation's history (chat.history, paged) lists exactly the messages
//     that were answered "sent", newest first: the history index, which trails the
//     messages and catches up in runs, lost none to the kills and holds none twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { tempDir } from './lib/daemon.mjs';
import { startChat, stopClean, register, Client, b64, unb64 } from './lib/chat.mjs';

const PAIRS = 6;
const IN_FLIGHT = 16;
const KILLS = 4;
const PHASE_MS = 1200;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class Sender {
  constructor(session, peer, tag) {
    Object.assign(this, { session, peer, tag, k: 0, sent: new Map(), outstanding: new Set() });
  }

  frame(cid) {
    return { type: 'chat.send', id: cid, client_id: cid, to: this.peer.username,
      envelopes: [{ device_id: this.peer.device_id, ctype: 1, body: b64(cid) }] };
  }

  // Streams messages until the connection dies or stop() is called.
  async run(d, stopAt) {
    const c = this.c = await Client.connect(d, this.session);
    let dead = false;
    c.closed.then(() => { dead = true; });
    const send = (cid) => { this.outstanding.add(cid); c.send(this.frame(cid)); };
    for (const cid of this.outstanding) send(cid);       // resends after a crash
    c.ws.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type !== 'chat.send.result') return;
      const prev = this.sent.get(f.id);
      assert.ok(prev === undefined || prev === f.message_id, `client_id ${f.id} became two messages`);
      this.sent.set(f.id, f.message_id);
      this.outstanding.delete(f.id);
    });
    while (!dead && Date.now() < stopAt) {
      while (this.outstanding.size < IN_FLIGHT) send(`${this.tag}-${this.k++}`);
      await sleep(5);
    }
    // The last phase waits for every answer; the others are cut short by the kill.
    while (!dead && this.outstanding.size) await sleep(10);
  }
}

class Receiver {
  constructor(session) {
    Object.assign(this, { session, got: new Map(), confirmed: new Set(), violations: [],
      bodies: new Map() });
  }

  async run(d) {
    const c = this.c = await Client.connect(d, this.session);
    c.ws.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type === 'chat.message') {
        if (this.confirmed.has(f.message_id))
          this.violations.push(`message ${f.message_id} delivered after its ack was answered`);
        this.got.set(f.message_id, (this.got.get(f.message_id) ?? 0) + 1);
        const cid = unb64(f.body);
        const ids = this.bodies.get(cid) ?? new Set();
        ids.add(f.message_id);
        this.bodies.set(cid, ids);
        c.send({ type: 'chat.ack', id: `ack-${f.message_id}`, message_ids: [f.message_id] });
      } else if (f.type === 'chat.ack.result') {
        this.confirmed.add(Number(f.id.slice(4)));
      }
    });
    await c.sync();
  }
}

test('chat: every "sent" message is delivered across SIGKILL restarts, none after its ack', async (t) => {
  const dir = tempDir('parley-chat-dur-');
  const sets = [`store.path=${join(dir, 'chat.db')}`, 'chat.window=64', 'chat.page=16',
    'chat.history_max=1000'];
  let d = await startChat(sets);
  const senders = [], receivers = [];
  let inFlightAtKill = 0;
  for (let i = 0; i < PAIRS; i++) {
    const s = await register(d), r = await register(d);
    senders.push(new Sender(s, r, `p${i}`));
    receivers.push(new Receiver(r));
  }
  try {
    for (let phase = 0; phase <= KILLS; phase++) {
      const last = phase === KILLS;
      await Promise.all(receivers.map((r) => r.run(d)));
      const stopAt = Date.now() + (last ? 800 : PHASE_MS + Math.random() * 600);
      const running = Promise.all(senders.map((s) => s.run(d, last ? stopAt : Infinity)));
      if (!last) {
        await sleep(PHASE_MS * (0.5 + Math.random()));
        inFlightAtKill += senders.reduce((n, s) => n + s.outstanding.size, 0);
        const r = await d.stop('SIGKILL');
        assert.equal(r.signal, 'SIGKILL');
        await running;
        for (const x of [...senders, ...receivers]) x.c.close();
        d = await startChat(sets);
      } else {
        await running;
      }
    }
    // Everything sent is delivered: wait for the receivers to catch up.
    const want = (i) => [...senders[i].sent.values()];
    const t0 = Date.now();
    while (Date.now() - t0 < 20000 &&
           !receivers.every((r, i) => want(i).every((id) => r.got.has(id)))) await sleep(50);
    let total = 0;
    for (let i = 0; i < PAIRS; i++) {
      const r = receivers[i];
      const missing = want(i).filter((id) => !r.got.has(id));
      assert.deepEqual(missing, [], `pair ${i}: "sent" but never delivered`);
      assert.deepEqual(r.violations, []);
      for (const [cid, ids] of r.bodies)
        assert.equal(ids.size, 1, `${cid} arrived as ${[...ids]}`);
      assert.equal(senders[i].outstanding.size, 0);
      total += want(i).length;
    }
    // The history of every conversation, paged from the sender's side.
    for (let i = 0; i < PAIRS; i++) {
      const c = await Client.connect(d, senders[i].session);
      const seen = [];
      let before;
      for (;;) {
        const h = await c.ok({ type: 'chat.history', with: senders[i].peer.username, limit: 1000,
          ...(before ? { before } : {}) });
        seen.push(...h.messages.map((m) => m.message_id));
        if (!h.more) break;
        before = seen[seen.length - 1];
      }
      c.close();
      const want = [...new Set(senders[i].sent.values())].sort((a, b) => b - a);
      assert.deepEqual(seen, want, `pair ${i}: history differs from what was "sent"`);
    }
    const redelivered = receivers.reduce((n, r) => n + [...r.got.values()].filter((v) => v > 1).length, 0);
    t.diagnostic(`${total} messages, ${KILLS} SIGKILLs with ${inFlightAtKill} sends in flight, ` +
                 `${redelivered} redelivered after a lost ack`);
    assert.ok(total > 500, `only ${total} messages went through`);
    assert.ok(inFlightAtKill > 0, 'the kills should hit sends in flight');
  } finally {
    for (const x of [...senders, ...receivers]) x.c?.close();
    await stopClean(d);
    rmSync(dir, { recursive: true, force: true });
  }
});
