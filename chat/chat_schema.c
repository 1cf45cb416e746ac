/* chat_schema.c: chat's tables (component "chat" in pl_schema_version).
 *
 *   chat_messages     one row per message or server event: metadata for lookups and
 *                     status; `body` holds a group's single ciphertext until every
 *                     recipient device acknowledged it (an event's JSON, which is
 *                     server metadata, stays for the history); `pending` counts the
 *                     envelopes still queued.
 *   chat_envelopes    the per-device queues, ordered by message id: a direct message's
 *                     per-device ciphertext lives here and nowhere else, so deleting
 *                     the envelope at the acknowledgement deletes the ciphertext;
 *                     `sender_id` (version 4) repeats the message's sender for the
 *                     acknowledgement's receipt.
 *   chat_ix_conv, chat_ix_sender, chat_ix_client, chat_ix_state
 *                     the history (by conversation), find (by sender) and idempotency
 *                     (sender, client id) indexes of chat_messages, as tables that
 *                     trail it and catch up in sorted runs (chat_index.c); version 1
 *                     had them as SQLite indexes (version 2 the last one still).
 *   chat_group_status per-member delivered/read of group messages.
 *   chat_groups, chat_members, chat_contacts, chat_partners (who wrote to whom, for
 *   identity-change announcements), chat_settings (privacy, read receipts, last
 *   seen), chat_identity and chat_prekeys (the X3DH key directory, per device).
 *
 * `pending` and the group body follow every way an envelope leaves: an
 * acknowledgement or an expiry updates them in the statement that records the new
 * status (chat_ack.c, chat_part.c); a device deleted by the accounts part takes its
 * envelopes along through the foreign key's cascade, and a trigger on devices settles
 * their messages first. So no path leaves a ciphertext behind.
 *
 * The SQL stays portable to PostgreSQL except where noted (WITHOUT ROWID, the trigger
 * syntax and AUTOINCREMENT have direct equivalents there).
 *
 * Threading: migrations run on the opener's thread before the store thread starts. */
#include "chat/chat_int.h"

static const pl_store_migration_t steps[] = {
    { 1,
      "CREATE TABLE chat_messages("
      "  id INTEGER PRIMARY KEY,"   /* ids order every queue; rows are never deleted, so
                                       max(id) + 1 never reuses one (no AUTOINCREMENT
                                       bookkeeping on the hot path) */
      "  kind INTEGER NOT NULL,"                    /* 0 message, 1 event, 2 receipts
                                                       for devices that were away */
      "  sender_id INTEGER NOT NULL,"
      "  sender_device INTEGER NOT NULL,"
      "  client_id TEXT,"
      "  peer_id INTEGER NOT NULL DEFAULT 0,"       /* direct: the recipient account */
      "  group_id INTEGER NOT NULL DEFAULT 0,"
      "  conv_a INTEGER NOT NULL,"                  /* direct: min(account ids) */
      "  conv_b INTEGER NOT NULL,"                  /* direct: max; group: 0, group id */
      "  ctype INTEGER NOT NULL DEFAULT 0,"
      "  body TEXT,"
      "  created_at INTEGER NOT NULL,"
      "  expires_at INTEGER NOT NULL,"
      "  pending INTEGER NOT NULL DEFAULT 0,"
      "  delivered_at INTEGER,"                     /* direct: first device acked */
      "  read_at INTEGER,"
      "  expired_at INTEGER,"
      "  members INTEGER NOT NULL DEFAULT 0,"       /* group: recipients at send time */
      "  undelivered INTEGER NOT NULL DEFAULT 0,"
      "  unread INTEGER NOT NULL DEFAULT 0);"
      "CREATE UNIQUE INDEX chat_messages_client ON chat_messages(sender_id, client_id);"
      "CREATE INDEX chat_messages_conv ON chat_messages(conv_a, conv_b, id);"
      "CREATE INDEX chat_messages_sender ON chat_messages(sender_id, id);"
      "CREATE TABLE chat_envelopes("
      "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
      "  message_id INTEGER NOT NULL,"
      "  expires_at INTEGER NOT NULL,"
      "  ctype INTEGER NOT NULL,"
      "  body TEXT,"                                /* NULL: the message's body */
      "  PRIMARY KEY(device_id, message_id)) WITHOUT ROWID;"
      /* Envelopes leave by acknowledgement and expiry (the code updates `pending` in
       * the same statement as the status) or with their device: */
      "CREATE TRIGGER chat_device_gone BEFORE DELETE ON devices BEGIN"
      "  UPDATE chat_messages SET pending = pending - 1,"
      "    body = CASE WHEN pending <= 1 AND kind = 0 THEN NULL ELSE body END"
      "  WHERE id IN (SELECT message_id FROM chat_envelopes WHERE device_id = OLD.id);"
      " END;"
      "CREATE TABLE chat_group_status("
      "  message_id INTEGER NOT NULL,"
      "  member_id INTEGER NOT NULL,"
      "  delivered_at INTEGER,"
      "  read_at INTEGER,"
      "  PRIMARY KEY(message_id, member_id)) WITHOUT ROWID;"
      "CREATE TABLE chat_groups("
      "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
      "  name TEXT NOT NULL,"
      "  description TEXT NOT NULL DEFAULT '',"
      "  icon TEXT NOT NULL DEFAULT '',"
      "  send_admins INTEGER NOT NULL DEFAULT 0,"   /* 1: only admins may send */
      "  info_admins INTEGER NOT NULL DEFAULT 0,"   /* 1: only admins edit the info */
      "  created_by INTEGER NOT NULL,"
      "  created_at INTEGER NOT NULL,"
      "  version INTEGER NOT NULL DEFAULT 1);"
      "CREATE TABLE chat_members("
      "  group_id INTEGER NOT NULL REFERENCES chat_groups(id) ON DELETE CASCADE,"
      "  account_id INTEGER NOT NULL,"
      "  admin INTEGER NOT NULL DEFAULT 0,"
      "  joined_at INTEGER NOT NULL,"
      "  PRIMARY KEY(group_id, account_id)) WITHOUT ROWID;"
      "CREATE INDEX chat_members_by_account ON chat_members(account_id, group_id);"
      "CREATE TABLE chat_contacts("
      "  owner_id INTEGER NOT NULL,"
      "  contact_id INTEGER NOT NULL,"
      "  added_at INTEGER NOT NULL,"
      "  PRIMARY KEY(owner_id, contact_id)) WITHOUT ROWID;"
      "CREATE INDEX chat_contacts_rev ON chat_contacts(contact_id, owner_id);"
      "CREATE TABLE chat_partners("
      "  account_id INTEGER NOT NULL,"
      "  partner_id INTEGER NOT NULL,"
      "  PRIMARY KEY(account_id, partner_id)) WITHOUT ROWID;"
      "CREATE TABLE chat_settings("
      "  account_id INTEGER PRIMARY KEY,"
      "  privacy INTEGER NOT NULL DEFAULT 0,"       /* 0 everyone, 1 contacts, 2 nobody */
      "  read_receipts INTEGER NOT NULL DEFAULT 1,"
      "  last_seen_at INTEGER NOT NULL DEFAULT 0);"
      "CREATE TABLE chat_identity("
      "  device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,"
      "  account_id INTEGER NOT NULL,"
      "  identity_key TEXT NOT NULL,"
      "  spk_id INTEGER,"
      "  spk_public TEXT,"
      "  spk_signature TEXT,"
      "  updated_at INTEGER NOT NULL,"
      "  low_notified INTEGER NOT NULL DEFAULT 0);"
      "CREATE TABLE chat_prekeys("
      "  device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,"
      "  key_id INTEGER NOT NULL,"
      "  public_key TEXT NOT NULL,"
      "  PRIMARY KEY(device_id, key_id)) WITHOUT ROWID;" },
    /* The history and find indexes become tables that trail the messages and catch up
     * in sorted runs (chat_index.c). */
    { 2,
      "DROP INDEX chat_messages_conv;"
      "DROP INDEX chat_messages_sender;"
      "CREATE TABLE chat_ix_conv("
      "  conv_a INTEGER NOT NULL,"
      "  conv_b INTEGER NOT NULL,"
      "  id INTEGER NOT NULL,"
      "  PRIMARY KEY(conv_a, conv_b, id)) WITHOUT ROWID;"
      "CREATE TABLE chat_ix_sender("
      "  sender_id INTEGER NOT NULL,"
      "  id INTEGER NOT NULL,"
      "  PRIMARY KEY(sender_id, id)) WITHOUT ROWID;"
      "CREATE TABLE chat_ix_state("
      "  id INTEGER PRIMARY KEY CHECK(id = 1),"
      "  upto INTEGER NOT NULL);"           /* both tables hold every message id <= upto */
      "INSERT INTO chat_ix_conv SELECT conv_a, conv_b, id FROM chat_messages WHERE kind <> 2"
      "  ORDER BY conv_a, conv_b, id;"
      "INSERT INTO chat_ix_sender SELECT sender_id, id FROM chat_messages WHERE kind = 0"
      "  ORDER BY sender_id, id;"
      "INSERT INTO chat_ix_state(id, upto) SELECT 1, COALESCE(max(id), 0) FROM chat_messages;" },
    /* The idempotency index trails too, up to its own mark (chat_index.c): the ids
     * above it are found by a scan when the store starts and held in memory. */
    { 3,
      "CREATE TABLE chat_ix_client("
      "  sender_id INTEGER NOT NULL,"
      "  client_id TEXT NOT NULL,"
      "  id INTEGER NOT NULL,"
      "  PRIMARY KEY(sender_id, client_id)) WITHOUT ROWID;"
      "ALTER TABLE chat_ix_state ADD COLUMN client_upto INTEGER NOT NULL DEFAULT 0;"
      "INSERT OR IGNORE INTO chat_ix_client SELECT sender_id, client_id, id FROM chat_messages"
      "  WHERE client_id IS NOT NULL AND id <= (SELECT upto FROM chat_ix_state WHERE id = 1)"
      "  ORDER BY sender_id, client_id, id;"
      "UPDATE chat_ix_state SET client_upto = upto;"
      "DROP INDEX chat_messages_client;" },
    /* An envelope names its message's sender, so an acknowledgement finds whom to tell
     * without reading the message row (chat_ack.c); 0 (rows from before, or written by
     * an older node sharing the database) means "look it up". */
    { 4,
      "ALTER TABLE chat_envelopes ADD COLUMN sender_id INTEGER NOT NULL DEFAULT 0;"
      "UPDATE chat_envelopes SET sender_id = COALESCE((SELECT m.sender_id FROM chat_messages m"
      "  WHERE m.id = chat_envelopes.message_id), 0);" },
};

const pl_store_schema_t chat_schema = { "chat", steps, PL_ARRAY_LEN(steps) };
