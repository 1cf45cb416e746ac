/* modules.c: the modules parleyd runs, in start order (docs/ARCHITECTURE.md explains
 * the order). Stop order is the reverse. The admin endpoint is not in this table: the
 * app starts it before and stops it after all of these.
 *
 *   turn       depends on nothing; up before signaling so the TURN credentials it
 *              mints are accepted from the first call
 *   sfu        before signaling, which drives it
 *   signaling  last: it takes clients only when all they can ask for is up */
#include "app/app_int.h"
#include "relay/turn/pl_turn.h"
#include "relay/sfu/pl_sfu.h"
#include "signaling/pl_signaling.h"

const pl_module_t *const pl_app_modules[] = {
    &pl_turn_module,
    &pl_sfu_module,         /* before signaling, which drives it (pl_sfu_running) */
    &pl_signaling_module,
};
const size_t pl_app_n_modules = PL_ARRAY_LEN(pl_app_modules);
