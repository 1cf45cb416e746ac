/* sig_parts.h: how the parts of the signaling module (accounts now; presence and call
 * signaling later) plug into it. module.c lists the parts; at start each part gets the
 * gateway before it serves and registers its frame handlers, hooks, push types and HTTP
 * routes, plus its store schema. Private to signaling/.
 *
 * Order at start: store open (every part's schema migrated) -> part init (in list
 * order) -> gateway start. At stop: gateway stop -> part stop (in reverse) -> store
 * close -> part destroy -> gateway destroy. So a part's threads may still post to the
 * gateway and submit to the store while they stop.
 *
 * Threading: every hook here runs on the main thread. */
#ifndef PL_SIG_PARTS_H
#define PL_SIG_PARTS_H

#include "signaling/pl_sig_part.h"    /* pl_sig_ctx_t, pl_sig_part_t (public: chat/ is a part too) */

extern const pl_sig_part_t pl_sig_accounts_part;
extern const pl_sig_part_t pl_sig_calls_part;
extern const pl_sig_part_t pl_sig_rooms_part;   /* group calls through the SFU (rooms*.c) */

#endif
