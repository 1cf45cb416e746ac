/* pl_turn.h: parley's STUN/TURN server (RFC 8489, RFC 8656, RFC 6156), the module
 * parleyd runs when [turn] enabled = true, and the one function other modules use:
 * minting TURN REST credentials for call participants.
 *
 * Architecture (details in relay/turn/turn_int.h and docs/THREADING.md):
 * - turn.threads relay threads, each a pl_loop with its own SO_REUSEPORT UDP socket per
 *   listen address, so the kernel spreads clients by 4-tuple hash and one client's
 *   packets always reach the same thread.
 * - An allocation lives on the thread that received its Allocate; its relayed UDP
 *   sockets are in that thread's epoll set, and peer data goes back out through the
 *   same thread's listener socket (same 5-tuple).
 * - The protocol logic is written against a small I/O interface and unit-tested with
 *   a fake clock and fake sockets.
 *
 * Threading: pl_turn_mint_credentials is thread-safe (reads an immutable config
 * snapshot). The module hooks run on the main thread. */
#ifndef PL_TURN_H
#define PL_TURN_H

#include "core/pl_module.h"

/* The module: [turn] options, validate, start/drain/stop, reload, ready, stats. */
extern const pl_module_t pl_turn_module;

/* Mints TURN REST API credentials (username "<expiry>:<user>", password
 * base64(HMAC-SHA1(secret, username))) with the first turn.auth_secret, valid for
 * turn.rest_ttl from now_s (unix seconds). user may be NULL or "" (username is then
 * just the expiry). username and password are NUL-terminated; ucap >= 278 and
 * pcap >= 29 always suffice. Returns 0, -ENOENT when no auth_secret is configured,
 * PL_ELIMIT when a buffer is too small or user is longer than 255 bytes, PL_ECRYPTO.
 * Thread-safe. */
int pl_turn_mint_credentials(const pl_config_t *cfg, const char *user, uint64_t now_s,
                             char *username, size_t ucap, char *password, size_t pcap);

#endif
