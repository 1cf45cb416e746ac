// store-backup.test.mjs: the backup procedure docs/OPERATIONS.md gives operators, proven
// end to end. While parleyd runs and a sender keeps sending, SQLite's own CLI takes an
// online backup (`sqlite3 DB ".backup COPY"`, the backup API under one read
// transaction: a consistent snapshot, writers not blocked in WAL mode). A second parleyd
// started on the copy then serves it: the accounts and sessions are there (the old
// tokens work), and the receiver's queue holds every message that was "sent" before the
// backup began, in order, each once. The copy passes PRAGMA integrity_check.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tempDir } from './lib/daemon.mjs';
import { startChat, stopClean, register, Client, directFrame, unb64 } from './lib/chat.mjs';

const sqlite3 = (...args) => execFileSync('sqlite3', args, { encoding: 'utf8' });

test('an online backup with sqlite3 .backup restores into a working parleyd', async () => {
  const dir = tempDir('parley-backup-');
  const db = join(dir, 'live.db'), copy = join(dir, 'copy.db');
  const live = await startChat([`store.path=${db}`]);
  let restored;
  try {
    const alice = await register(live), bob = await register(live);   // bob stays away
    const ca = await Client.connect(live, alice);
    const before = [];
    for (let i = 0; i < 20; i++)
      before.push((await ca.ok(directFrame(bob.username, [bob.device_id], `b${i}`))).message_id);
    // Keep writing while the backup runs: it must not wait for, or tear, the writes.
    let stop = false, during = 0;
    const writer = (async () => {
      while (!stop) { await ca.ok(directFrame(bob.username, [bob.device_id], `w${during}`)); during++; }
    })();
    await new Promise((r) => setTimeout(r, 100));
    sqlite3(db, `.backup '${copy}'`);
    stop = true;
    await writer;
    assert.ok(during > 0, 'messages were being sent during the backup');
    assert.equal(sqlite3(copy, 'PRAGMA integrity_check').trim(), 'ok');
    ca.close();

    restored = await startChat([`store.path=${copy}`]);
    const cb = await Client.connect(restored, bob);                      // the old token works
    const sync = await cb.sync();
    assert.ok(sync.queued >= before.length && sync.queued <= before.length + during,
      `queued ${sync.queued}: the 20 sent before the backup, and some of the ${during} after`);
    // Acknowledging as it reads, as a client does: the server pushes one window
    // (chat.window, 256) of unacknowledged messages, and a fast store may have taken
    // more than that during the backup.
    const got = [];
    for (let i = 0; i < sync.queued; i++) {
      const m = await cb.nextType('chat.message');
      got.push(m);
      cb.send({ type: 'chat.ack', upto: m.message_id });
    }
    await cb.nextType('chat.queue_empty');
    assert.deepEqual(got.slice(0, 20).map((m) => m.message_id), before, 'in order, each once');
    assert.deepEqual(got.slice(0, 20).map((m) => unb64(m.body)),
      before.map((_, i) => `b${i}@${bob.device_id}`));
    assert.equal(new Set(got.map((m) => m.message_id)).size, got.length, 'no duplicates');
    // The restored node takes new writes of its own.
    const ca2 = await Client.connect(restored, alice);
    const after = await ca2.ok(directFrame(bob.username, [bob.device_id], 'after restore'));
    assert.ok(after.message_id > got[got.length - 1].message_id);
    assert.equal((await cb.nextType('chat.message')).message_id, after.message_id);
    ca2.close(); cb.close();
  } finally {
    await stopClean(restored);
    await stopClean(live);
  }
  assert.ok(existsSync(copy));
});
