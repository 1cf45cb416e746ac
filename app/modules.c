/* modules.c: the modules parleyd runs, in start order (docs/ARCHITECTURE.md explains
 * the order). Stop order is the reverse. The admin endpoint is not in this table: the
 * app starts it before and stops it after all of these. */
#include "app/app_int.h"
#ifdef PL_HAVE_TURN
#include "relay/turn/pl_turn.h"
#endif
#ifdef PL_HAVE_SFU
#include "relay/sfu/pl_sfu.h"
#endif
#ifdef PL_HAVE_SIGNALING
#include "signaling/pl_signaling.h"
#endif

const pl_module_t *const pl_app_modules[] = {
#ifdef PL_HAVE_TURN
    &pl_turn_module,
#endif
#ifdef PL_HAVE_SFU
    &pl_sfu_module,         /* before signaling, which drives it (pl_sfu_running) */
#endif
#ifdef PL_HAVE_SIGNALING
    &pl_signaling_module,
#endif
    NULL, /* keeps the array non-empty; not counted */
};
const size_t pl_app_n_modules = PL_ARRAY_LEN(pl_app_modules) - 1;
