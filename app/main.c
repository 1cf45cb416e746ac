/* main.c: parleyd's command line. Everything else lives in the libraries the tests
 * link (CONVENTIONS: only main() stays out of them). */
#include "app/app_int.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fputs("usage: parleyd [--config FILE] [--set section.key=value]... [--check-config]\n"
          "               [--version] [--help]\n"
          "  -c, --config FILE     INI configuration (default: built-in defaults only)\n"
          "  -s, --set K=V         override one key, e.g. --set admin.listen=127.0.0.1:9191\n"
          "      --check-config    validate, print the effective config (secrets masked), exit\n"
          "      --config-docs     print the Markdown reference of every key (docs/OPERATIONS.md)\n"
          "  -V, --version         print the version and exit\n"
          "Secrets may come from the environment: PARLEY_<SECTION>_<KEY>, e.g. PARLEY_ADMIN_TOKEN.\n"
          "Exit status: 0 clean stop, 1 start-up failure, 2 configuration error.\n", out);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, 'C'},
        {"config-docs", no_argument, NULL, 'D'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    pl_app_args_t args = {0};
    args.overrides = pl_xcalloc((size_t)argc, sizeof *args.overrides);
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': args.config_path = optarg; break;
        case 's': args.overrides[args.n_overrides++] = optarg; break;
        case 'C': args.check_config = true; break;
        case 'D': args.config_docs = true; break;
        case 'V':
            printf("parleyd %s (%s)\n", PL_VERSION, pl_build_revision());
            free(args.overrides);
            return 0;
        case 'h':
            usage(stdout);
            free(args.overrides);
            return 0;
        default:
            usage(stderr);
            free(args.overrides);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parleyd: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        free(args.overrides);
        return 2;
    }
    int status = pl_app_main(&args);
    free(args.overrides);
    return status;
}
