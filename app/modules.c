/* modules.c: the modules parleyd runs, in start order (docs/ARCHITECTURE.md explains
 * the order). Stop order is the reverse. The admin endpoint is not in this table: the
 * app starts it before and stops it after all of these. */
#include "app/app_int.h"

const pl_module_t *const pl_app_modules[] = {
    NULL, /* keeps the array non-empty until the first module lands */
};
const size_t pl_app_n_modules = 0;
