/* pl_chat.h: parley's chat: durable store-and-forward end-to-end-encrypted messaging
 * (one ciphertext envelope per recipient device, or one sender-key ciphertext fanned
 * out to a group), receipts, groups, contacts, presence and last seen, typing
 * indicators, and the X3DH key directory. The server never sees plaintext: payloads
 * are opaque base64 ciphertext with a type.
 *
 * Chat is a part of the signaling module (signaling/pl_sig_part.h): it registers its
 * chat.* frames on the gateway, its schema with the store, and reads the [chat]
 * options. docs/PROTOCOL.md "Chat" is the wire contract.
 *
 * Threading: see chat/chat_int.h. Everything here is registered on the main thread. */
#ifndef PL_CHAT_H
#define PL_CHAT_H

#include "signaling/pl_sig_part.h"

/* The part for the signaling module's parts list. */
extern const pl_sig_part_t pl_chat_part;

/* The [chat] option table for the app's schema. */
extern const pl_opt_table_t pl_chat_options;

#endif
