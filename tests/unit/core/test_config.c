/* test_config.c: configuration snapshots: every option type, the four source layers,
 * the exact one-line error for every kind of mistake, INI edge cases (CRLF, BOM,
 * quoting, NUL bytes, huge lines), reload checks, rendering with masked secrets,
 * Markdown docs, reference counting, and the aborts reserved for programming bugs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/config_int.h"
#include "core/pl_config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the test schema: every type, bounds, a secret, a dash in a key ---- */

static const pl_opt_def_t turn_defs[] = {
    { "turn", "threads", PL_OPT_INT, "2", 1, 64, NULL, 0, "Relay worker threads" },
    { "turn", "port", PL_OPT_INT, "3478", 1, 65535, NULL, 0, "Listening port" },
    { "turn", "enabled", PL_OPT_BOOL, "true", 0, 0, NULL, 0, "Run the relay" },
    { "turn", "lifetime", PL_OPT_DURATION, "10m", 1000, 3600000, NULL, PL_OPT_RELOADABLE,
      "Allocation lifetime" },
    { "turn", "quota", PL_OPT_SIZE, "1MiB", 1024, 1LL << 30, NULL, PL_OPT_RELOADABLE,
      "Bytes per allocation" },
    { "turn", "realm", PL_OPT_STRING, "parley.local", 0, 32, NULL, PL_OPT_RELOADABLE,
      "TURN realm" },
    { "turn", "auth_secret", PL_OPT_STRING, "", 0, 64, NULL,
      PL_OPT_SECRET | PL_OPT_RELOADABLE, "Shared REST secret" },
    { "turn", "transport", PL_OPT_ENUM, "udp", 0, 0, "udp|tcp|tls", 0, "Transport" },
    { "turn", "denied_peers", PL_OPT_LIST, "10.0.0.0/8, 192.168.0.0/16", 0, 4, NULL,
      PL_OPT_RELOADABLE, "Peer ranges never relayed" },
};
static const pl_opt_def_t log_defs[] = {
    { "log", "level", PL_OPT_ENUM, "info", 0, 0, "debug|info|warn|error", PL_OPT_RELOADABLE,
      "Minimum level" },
    { "log", "max-size", PL_OPT_SIZE, "16MiB", 0, 0, NULL, 0, "Rotate | truncate after" },
    { "log", "big", PL_OPT_INT, "0", 0, 0, NULL, 0, "Unbounded integer" },
    { "log", "timeout", PL_OPT_DURATION, "30", 0, 0, NULL, 0, "Unbounded duration" },
    { "log", "tags", PL_OPT_LIST, "", 0, 0, NULL, 0, "Free-form tags" },
    { "log", "note", PL_OPT_STRING, "", 0, 0, NULL, 0, "Free text" },
};
static const pl_opt_table_t turn_table = { "TURN relay", turn_defs, PL_ARRAY_LEN(turn_defs) };
static const pl_opt_table_t log_table = { "Logging", log_defs, PL_ARRAY_LEN(log_defs) };
static const pl_opt_table_t *const schema[] = { &turn_table, &log_table, NULL };

static char g_dir[] = "/tmp/pl_test_config_XXXXXX";
static char g_cwd[4096];

static int group_setup(void **state)
{
    PL_UNUSED(state);
    if (!getcwd(g_cwd, sizeof g_cwd) || !mkdtemp(g_dir) || chdir(g_dir) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    PL_UNUSED(state);
    unlink("t.ini");
    unlink("bad.ini");
    unlink("round.ini");
    rmdir("adir");
    if (chdir(g_cwd) != 0)
        return -1;
    return rmdir(g_dir);
}

static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(name, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

typedef struct src {
    const char *path;
    const char *const *env;
    const char *const *ov;
    size_t n_ov;
} src_t;

static int load(const src_t *s, pl_config_t **cfg, pl_config_error_t *err)
{
    pl_config_source_t src = { s->path, s->ov, s->n_ov, s->env };
    int rc = pl_config_load(schema, &src, cfg, err);
    if (rc == 0) {
        assert_non_null(*cfg);
    } else {
        assert_null(*cfg);
        assert_null(strchr(err->msg, '\n'));    /* always exactly one line */
        assert_true(strlen(err->msg) > 0);
    }
    return rc;
}

/* Loads text as bad.ini and expects exactly msg. */
static void expect_file_error(const char *text, const char *msg)
{
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    write_file("bad.ini", text, strlen(text));
    src_t s = { .path = "bad.ini" };
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, msg);
}

static void expect_override_error(const char *ov, const char *msg)
{
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *ovs[] = { ov };
    src_t s = { .ov = ovs, .n_ov = 1 };
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, msg);
}

static pl_config_t *load_ok_text(const char *text)
{
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    write_file("t.ini", text, strlen(text));
    src_t s = { .path = "t.ini" };
    int rc = load(&s, &cfg, &err);
    if (rc != 0)
        fail_msg("load failed: %s", err.msg);
    return cfg;
}

/* ---- sources ---- */

static void test_defaults(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *const *items = NULL;
    assert_int_equal(pl_config_load(schema, NULL, &cfg, &err), 0);
    assert_int_equal(pl_config_int(cfg, "turn", "threads"), 2);
    assert_int_equal(pl_config_int(cfg, "turn", "port"), 3478);
    assert_true(pl_config_bool(cfg, "turn", "enabled"));
    assert_int_equal(pl_config_int(cfg, "turn", "lifetime"), 600000);
    assert_int_equal(pl_config_int(cfg, "turn", "quota"), 1 << 20);
    assert_string_equal(pl_config_str(cfg, "turn", "realm"), "parley.local");
    assert_string_equal(pl_config_str(cfg, "turn", "auth_secret"), "");
    assert_string_equal(pl_config_str(cfg, "turn", "transport"), "udp");
    assert_int_equal(pl_config_list(cfg, "turn", "denied_peers", &items), 2);
    assert_string_equal(items[0], "10.0.0.0/8");
    assert_string_equal(items[1], "192.168.0.0/16");
    assert_null(items[2]);
    assert_int_equal(pl_config_list(cfg, "log", "tags", &items), 0);
    assert_non_null(items);
    assert_int_equal(pl_config_int(cfg, "log", "timeout"), 30000);   /* bare = seconds */
    assert_int_equal(pl_config_int(cfg, "log", "max-size"), 16 << 20);
    assert_string_equal(pl_config_origin(cfg, "turn", "threads"), "default");
    assert_null(pl_config_path(cfg));
    pl_config_unref(cfg);
}

static const char full_ini[] =
    "# parley test\n"
    "[turn]\n"
    "threads = 8\n"
    "  ; indented comment\n"
    "port=5349\n"
    "enabled = off\n"
    "lifetime = 90s\n"
    "quota = 2 MiB\n"
    "realm = example.org\n"
    "auth_secret = s3cr3t-value\n"
    "transport = tls\n"
    "denied_peers = a, , b ,c,\n"
    "\n"
    "[log]\n"
    "level = debug\n"
    "max-size = 512\n"
    "note = keep # this is not a comment\n";

static void test_file_values(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = load_ok_text(full_ini);
    const char *const *items = NULL;
    assert_int_equal(pl_config_int(cfg, "turn", "threads"), 8);
    assert_int_equal(pl_config_int(cfg, "turn", "port"), 5349);
    assert_false(pl_config_bool(cfg, "turn", "enabled"));
    assert_int_equal(pl_config_int(cfg, "turn", "lifetime"), 90000);
    assert_int_equal(pl_config_int(cfg, "turn", "quota"), 2 << 20);
    assert_string_equal(pl_config_str(cfg, "turn", "realm"), "example.org");
    assert_string_equal(pl_config_str(cfg, "turn", "auth_secret"), "s3cr3t-value");
    assert_string_equal(pl_config_str(cfg, "turn", "transport"), "tls");
    assert_int_equal(pl_config_list(cfg, "turn", "denied_peers", &items), 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
    assert_string_equal(items[2], "c");
    assert_string_equal(pl_config_str(cfg, "log", "level"), "debug");
    assert_int_equal(pl_config_int(cfg, "log", "max-size"), 512);
    /* Documented: a trailing "# ..." is part of the value. */
    assert_string_equal(pl_config_str(cfg, "log", "note"), "keep # this is not a comment");
    assert_string_equal(pl_config_origin(cfg, "turn", "threads"), "file");
    assert_string_equal(pl_config_origin(cfg, "log", "big"), "default");
    assert_string_equal(pl_config_path(cfg), "t.ini");
    pl_config_unref(cfg);
}

static void test_env_beats_file(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *env[] = { "HOME=/root", "PARLEY_TURN_THREADS=16", "PARLEY_LOG_MAX_SIZE=1KiB",
                          "PARLEY_TURN_AUTH_SECRET=from-env", "PARLEY_NOPE=1", "PARLEY_TURN=3",
                          "PARLEY_CONFIG=/etc/parley.ini", "PARLEY_TURN_THREADSX=abc",
                          "PARLEY_TURN_PORT", "parley_turn_port=1", NULL };
    write_file("t.ini", full_ini, strlen(full_ini));
    src_t s = { .path = "t.ini", .env = env };
    assert_int_equal(load(&s, &cfg, &err), 0);
    assert_int_equal(pl_config_int(cfg, "turn", "threads"), 16);
    assert_string_equal(pl_config_origin(cfg, "turn", "threads"), "env");
    assert_int_equal(pl_config_int(cfg, "log", "max-size"), 1024);
    assert_string_equal(pl_config_str(cfg, "turn", "auth_secret"), "from-env");
    assert_int_equal(pl_config_int(cfg, "turn", "port"), 5349);   /* malformed env ignored */
    assert_string_equal(pl_config_origin(cfg, "turn", "port"), "file");
    pl_config_unref(cfg);
}

static void test_override_beats_env(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *env[] = { "PARLEY_TURN_THREADS=16", "PARLEY_TURN_REALM=env.example", NULL };
    const char *ov[] = { "turn.threads=32", "log.level=warn", "log.level=error",
                         "turn.denied_peers=", "log.note= spaced " };
    write_file("t.ini", full_ini, strlen(full_ini));
    src_t s = { .path = "t.ini", .env = env, .ov = ov, .n_ov = PL_ARRAY_LEN(ov) };
    assert_int_equal(load(&s, &cfg, &err), 0);
    assert_int_equal(pl_config_int(cfg, "turn", "threads"), 32);
    assert_string_equal(pl_config_origin(cfg, "turn", "threads"), "override");
    assert_string_equal(pl_config_str(cfg, "turn", "realm"), "env.example");
    assert_string_equal(pl_config_str(cfg, "log", "level"), "error");   /* last --set wins */
    assert_int_equal(pl_config_list(cfg, "turn", "denied_peers", NULL), 0);
    assert_string_equal(pl_config_str(cfg, "log", "note"), " spaced ");  /* literal */
    pl_config_unref(cfg);

    const char *ov2[] = { "turn.realm=a=b" };   /* only the first '=' splits */
    src_t s2 = { .ov = ov2, .n_ov = 1 };
    assert_int_equal(pl_config_load(schema, &(pl_config_source_t){ NULL, ov2, 1, NULL },
                                    &cfg, NULL), 0);   /* err may be NULL */
    assert_string_equal(pl_config_str(cfg, "turn", "realm"), "a=b");
    pl_config_unref(cfg);
    const char *ov3[] = { "turn.denied_peers=a,\x1b[31m" };
    s2.ov = ov3;
    assert_int_equal(load(&s2, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "--set turn.denied_peers=a,\\x1b[31m: "
                                 "the value contains a control character");
}

/* ---- errors, each with its exact line ---- */

static void test_file_errors(void **state)
{
    PL_UNUSED(state);
    expect_file_error("[turn]\nthreads = abc\n", "bad.ini:2: [turn] threads: \"abc\" is not an integer");
    expect_file_error("[turn]\n\nthread = 4\n",
                      "bad.ini:3: [turn] thread: unknown key (did you mean \"threads\"?)");
    expect_file_error("[turn]\nxyzzy = 4\n", "bad.ini:2: [turn] xyzzy: unknown key");
    expect_file_error("[tunr]\n", "bad.ini:1: [tunr]: unknown section (did you mean \"turn\"?)");
    expect_file_error("[chat]\n", "bad.ini:1: [chat]: unknown section");
    expect_file_error("threads = 4\n", "bad.ini:1: key \"threads\" is outside any [section]");
    expect_file_error("[turn]\nthreads = 4\nport = 1\nthreads = 5\n",
                      "bad.ini:4: [turn] threads: duplicate key (first set on line 2)");
    expect_file_error("[turn]\nthreads 4\n",
                      "bad.ini:2: expected \"key = value\", \"[section]\" or a comment");
    expect_file_error("[turn]\n= 4\n", "bad.ini:2: missing key before \"=\"");
    expect_file_error("[turn]\nthr eads = 4\n", "bad.ini:2: invalid key name \"thr eads\"");
    expect_file_error("[turn\n", "bad.ini:1: expected \"]\" at the end of the section header");
    expect_file_error("[tu rn]\n", "bad.ini:1: invalid section name \"tu rn\"");
    expect_file_error("[turn]\nport = 300000\n",
                      "bad.ini:2: [turn] port: 300000 is above the maximum 65535");
    expect_file_error("[turn]\nport = -1\n", "bad.ini:2: [turn] port: -1 is below the minimum 1");
    expect_file_error("[turn]\nenabled = maybe\n",
                      "bad.ini:2: [turn] enabled: \"maybe\" is not a boolean "
                      "(use true/false, yes/no, on/off or 1/0)");
    expect_file_error("[turn]\nlifetime = 5x\n",
                      "bad.ini:2: [turn] lifetime: \"5x\" is not a duration "
                      "(use an integer with ms, s, m, h or d)");
    expect_file_error("[turn]\nlifetime = 2h\n",
                      "bad.ini:2: [turn] lifetime: 2h is above the maximum 1h");
    expect_file_error("[turn]\nlifetime = 500ms\n",
                      "bad.ini:2: [turn] lifetime: 500ms is below the minimum 1s");
    expect_file_error("[turn]\nquota = 10KB\n",
                      "bad.ini:2: [turn] quota: \"10KB\" is not a size "
                      "(use an integer with B, KiB, MiB or GiB)");
    expect_file_error("[turn]\ntransport = udpx\n",
                      "bad.ini:2: [turn] transport: \"udpx\" is not one of udp, tcp, tls "
                      "(did you mean \"udp\"?)");
    expect_file_error("[turn]\ndenied_peers = a,b,c,d,e\n",
                      "bad.ini:2: [turn] denied_peers: 5 items, more than the maximum 4");
    expect_file_error("[turn]\nrealm = 0123456789012345678901234567890123\n",
                      "bad.ini:2: [turn] realm: the value is 34 bytes, longer than the maximum 32");
    expect_file_error("[turn]\nrealm = \"abc\n", "bad.ini:2: [turn] realm: unterminated quoted value");
    expect_file_error("[turn]\nrealm = \"abc\\", "bad.ini:2: [turn] realm: unterminated quoted value");
    expect_file_error("[turn]\nrealm = \"a\\nb\"\n",
                      "bad.ini:2: [turn] realm: invalid escape \"\\\\n\" in quoted value "
                      "(only \\\" and \\\\ are allowed)");
    expect_file_error("[turn]\nrealm = \"a\" b\n",
                      "bad.ini:2: [turn] realm: unexpected text after the closing quote");
    expect_file_error("[turn]\nrealm = a\x01z\n",
                      "bad.ini:2: [turn] realm: the value contains a control character");
    expect_file_error("[turn]\nthreads = 4\x02\n", "bad.ini:2: [turn] threads: \"4\\x02\" is not an integer");
}

static void test_secret_never_echoed_in_errors(void **state)
{
    PL_UNUSED(state);
    static const char long_secret[] =
        "topsecret-topsecret-topsecret-topsecret-topsecret-topsecret-topsecret";
    char text[256];
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    snprintf(text, sizeof text, "[turn]\nauth_secret = %s\n", long_secret);
    expect_file_error(text, "bad.ini:2: [turn] auth_secret: the value is 69 bytes, "
                            "longer than the maximum 64");
    char ov[256];
    snprintf(ov, sizeof ov, "turn.auth_secret=%s", long_secret);
    expect_override_error(ov, "--set turn.auth_secret=***: the value is 69 bytes, "
                              "longer than the maximum 64");
    char envs[256];
    snprintf(envs, sizeof envs, "PARLEY_TURN_AUTH_SECRET=%s", long_secret);
    const char *env[] = { envs, NULL };
    src_t s = { .env = env };
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_null(strstr(err.msg, "topsecret"));
    assert_string_equal(err.msg, "PARLEY_TURN_AUTH_SECRET: the value is 69 bytes, "
                                 "longer than the maximum 64");
}

static void test_env_and_override_errors(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *env[] = { "PARLEY_TURN_THREADS=abc", NULL };
    src_t s = { .env = env };
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "PARLEY_TURN_THREADS: \"abc\" is not an integer");
    const char *env2[] = { "PARLEY_TURN_REALM=a\nb", NULL };
    s.env = env2;
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "PARLEY_TURN_REALM: the value contains a control character");

    expect_override_error("turn.threads=abc", "--set turn.threads=abc: \"abc\" is not an integer");
    expect_override_error("turn.thread=4",
                          "--set turn.thread: unknown key (did you mean \"turn.threads\"?)");
    expect_override_error("tunr.threads=4",
                          "--set tunr.threads: unknown key (did you mean \"turn.threads\"?)");
    expect_override_error("nothing.here=4", "--set nothing.here: unknown key");
    expect_override_error("turnthreads=4", "--set \"turnthreads\": expected section.key=value");
    expect_override_error("turn.threads", "--set \"turn.threads\": expected section.key=value");
    expect_override_error("turn.port=70000",
                          "--set turn.port=70000: 70000 is above the maximum 65535");
}

static void test_unreadable_file(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    src_t s = { .path = "nope.ini" };
    assert_int_equal(load(&s, &cfg, &err), -ENOENT);
    assert_string_equal(err.msg, "nope.ini: cannot read: No such file or directory");
    assert_int_equal(mkdir("adir", 0700), 0);
    s.path = "adir";
    assert_int_equal(load(&s, &cfg, &err), -EISDIR);
    assert_string_equal(err.msg, "adir: cannot read: Is a directory");
}

/* ---- INI edge cases ---- */

static void test_crlf_bom_quotes(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = load_ok_text(
        "\xEF\xBB\xBF[turn]\r\n"
        "realm = \"  a \\\"quoted\\\" \\\\ realm \"  \r\n"
        "\t# tabbed comment\r\n"
        "auth_secret = \"# not a comment\"\r\n"
        "transport = tcp");                        /* no final newline */
    assert_string_equal(pl_config_str(cfg, "turn", "realm"), "  a \"quoted\" \\ realm ");
    assert_string_equal(pl_config_str(cfg, "turn", "auth_secret"), "# not a comment");
    assert_string_equal(pl_config_str(cfg, "turn", "transport"), "tcp");
    pl_config_unref(cfg);

    cfg = load_ok_text("");                        /* empty file: defaults */
    assert_int_equal(pl_config_int(cfg, "turn", "threads"), 2);
    pl_config_unref(cfg);

    cfg = load_ok_text("[log]\nnote = \"\"\n[turn]\n[log]\nlevel=warn\n");  /* re-opened section */
    assert_string_equal(pl_config_str(cfg, "log", "note"), "");
    assert_string_equal(pl_config_str(cfg, "log", "level"), "warn");
    pl_config_unref(cfg);

    /* A BOM anywhere but the start is just bytes. */
    expect_file_error("[turn]\n\xEF\xBB\xBFthreads = 1\n",
                      "bad.ini:2: invalid key name \"\xEF\xBB\xBFthreads\"");
}

static void test_nul_byte_is_an_error(void **state)
{
    PL_UNUSED(state);
    static const char text[] = "[turn]\nthreads = 4\0 5\n";
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    write_file("bad.ini", text, sizeof text - 1);
    src_t s = { .path = "bad.ini" };
    assert_int_equal(load(&s, &cfg, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "bad.ini:2: line contains a NUL byte");
}

static void test_long_lines(void **state)
{
    PL_UNUSED(state);
    size_t n = 100 * 1024;
    char *text = malloc(n + 64);
    assert_non_null(text);
    int o = snprintf(text, 64, "[log]\nnote = ");
    memset(text + o, 'x', n);
    memcpy(text + o + n, "\n", 2);
    expect_file_error(text, "bad.ini:2: line is longer than 65536 bytes");

    /* Exactly 64 KiB (CR excluded) is fine. */
    size_t val = 65536 - strlen("note = ");
    o = snprintf(text, 64, "[log]\nnote = ");
    memset(text + o, 'y', val);
    memcpy(text + o + val, "\r\n", 3);
    pl_config_t *cfg = load_ok_text(text);
    assert_int_equal(strlen(pl_config_str(cfg, "log", "note")), val);
    pl_config_unref(cfg);
    free(text);
}

/* Random bytes and mutated valid files: a result or one error line, never a crash. */
static void test_parser_is_total(void **state)
{
    PL_UNUSED(state);
    static const char alphabet[] = "[]=#;\" \\\r\n\tturnlogthreads0123456789,.-\x00\xEF\xBB\xBF";
    uint64_t x = 0x9E3779B97F4A7C15u;
    char buf[512];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        if (iter % 2) {
            len = PL_MIN(sizeof full_ini - 1, sizeof buf);
            memcpy(buf, full_ini, len);
            for (int k = 0; k < 4; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[x % len] = alphabet[(x >> 32) % (sizeof alphabet - 1)];
            }
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            len = x % sizeof buf;
            for (size_t i = 0; i < len; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[i] = (iter % 4) ? alphabet[x % (sizeof alphabet - 1)] : (char)x;
            }
        }
        pl_config_t *cfg = NULL;
        pl_config_error_t err;
        write_file("t.ini", buf, len);
        src_t s = { .path = "t.ini" };
        int rc = load(&s, &cfg, &err);
        assert_true(rc == 0 || rc == PL_ECONFIG);
        if (rc == PL_ECONFIG)
            assert_true(strncmp(err.msg, "t.ini:", 6) == 0);
        pl_config_unref(cfg);
    }
}

/* ---- numbers and units ---- */

static int64_t set_and_get(const char *arg, const char *section, const char *key)
{
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    const char *ov[] = { arg };
    src_t s = { .ov = ov, .n_ov = 1 };
    if (load(&s, &cfg, &err) != 0)
        fail_msg("%s: %s", arg, err.msg);
    int64_t v = pl_config_int(cfg, section, key);
    pl_config_unref(cfg);
    return v;
}

static void test_units_and_overflow(void **state)
{
    PL_UNUSED(state);
    assert_int_equal(set_and_get("log.timeout=1500ms", "log", "timeout"), 1500);
    assert_int_equal(set_and_get("log.timeout=45", "log", "timeout"), 45000);
    assert_int_equal(set_and_get("log.timeout=2m", "log", "timeout"), 120000);
    assert_int_equal(set_and_get("log.timeout=3h", "log", "timeout"), 10800000);
    assert_int_equal(set_and_get("log.timeout=7d", "log", "timeout"), 604800000);
    assert_int_equal(set_and_get("log.timeout=5 s", "log", "timeout"), 5000);
    assert_int_equal(set_and_get("log.timeout=0", "log", "timeout"), 0);
    assert_int_equal(set_and_get("log.timeout=106751991167d", "log", "timeout"),
                     106751991167LL * 86400000);    /* the largest whole day in int64 ms */
    assert_int_equal(set_and_get("log.max-size=512", "log", "max-size"), 512);
    assert_int_equal(set_and_get("log.max-size=7B", "log", "max-size"), 7);
    assert_int_equal(set_and_get("log.max-size=4KiB", "log", "max-size"), 4096);
    assert_int_equal(set_and_get("log.max-size=3MiB", "log", "max-size"), 3 << 20);
    assert_int_equal(set_and_get("log.max-size=5GiB", "log", "max-size"), 5LL << 30);
    assert_int_equal(set_and_get("turn.quota=1GiB", "turn", "quota"), 1LL << 30);
    assert_int_equal(set_and_get("turn.quota=1KiB", "turn", "quota"), 1024);
    assert_int_equal(set_and_get("log.big=-9223372036854775808", "log", "big"), INT64_MIN);
    assert_int_equal(set_and_get("log.big=9223372036854775807", "log", "big"), INT64_MAX);
    assert_int_equal(set_and_get("log.big=+17", "log", "big"), 17);
    assert_int_equal(set_and_get("turn.threads=64", "turn", "threads"), 64);
    assert_int_equal(set_and_get("turn.threads=1", "turn", "threads"), 1);

    expect_override_error("log.big=9223372036854775808",
                          "--set log.big=9223372036854775808: \"9223372036854775808\" does not fit in 64 bits");
    expect_override_error("log.big=-9223372036854775809",
                          "--set log.big=-9223372036854775809: \"-9223372036854775809\" does not fit in 64 bits");
    expect_override_error("log.big=", "--set log.big=: \"\" is not an integer");
    expect_override_error("log.big=1e3", "--set log.big=1e3: \"1e3\" is not an integer");
    expect_override_error("log.big= 4", "--set log.big= 4: \" 4\" is not an integer");
    expect_override_error("log.timeout=106751991168d", "--set log.timeout=106751991168d: \"106751991168d\" is too large");
    expect_override_error("log.timeout=99999999999999999999ms",
                          "--set log.timeout=99999999999999999999ms: \"99999999999999999999ms\" is too large");
    expect_override_error("log.timeout=1.5s",
                          "--set log.timeout=1.5s: \"1.5s\" is not a duration (use an integer with ms, s, m, h or d)");
    expect_override_error("log.timeout=-1s",
                          "--set log.timeout=-1s: \"-1s\" is not a duration (use an integer with ms, s, m, h or d)");
    expect_override_error("log.timeout=5S",
                          "--set log.timeout=5S: \"5S\" is not a duration (use an integer with ms, s, m, h or d)");
    expect_override_error("log.max-size=8589934592GiB",
                          "--set log.max-size=8589934592GiB: \"8589934592GiB\" is too large");
    expect_override_error("log.max-size=1kib",
                          "--set log.max-size=1kib: \"1kib\" is not a size (use an integer with B, KiB, MiB or GiB)");
    expect_override_error("log.max-size=1MB",
                          "--set log.max-size=1MB: \"1MB\" is not a size (use an integer with B, KiB, MiB or GiB)");
    expect_override_error("turn.quota=1023",
                          "--set turn.quota=1023: 1023B is below the minimum 1KiB");
    expect_override_error("turn.quota=2GiB",
                          "--set turn.quota=2GiB: 2GiB is above the maximum 1GiB");
    expect_override_error("turn.threads=65", "--set turn.threads=65: 65 is above the maximum 64");
    expect_override_error("turn.threads=0", "--set turn.threads=0: 0 is below the minimum 1");
}

static void test_bool_forms(void **state)
{
    PL_UNUSED(state);
    static const char *const yes[] = { "true", "yes", "on", "1", "TRUE", "Yes" };
    static const char *const no[] = { "false", "no", "off", "0", "OFF" };
    char arg[64];
    for (size_t i = 0; i < PL_ARRAY_LEN(yes) + PL_ARRAY_LEN(no); i++) {
        bool want = i < PL_ARRAY_LEN(yes);
        snprintf(arg, sizeof arg, "turn.enabled=%s", want ? yes[i] : no[i - PL_ARRAY_LEN(yes)]);
        const char *ov[] = { arg };
        pl_config_t *cfg = NULL;
        pl_config_error_t err;
        src_t s = { .ov = ov, .n_ov = 1 };
        assert_int_equal(load(&s, &cfg, &err), 0);
        assert_int_equal(pl_config_bool(cfg, "turn", "enabled"), want);
        pl_config_unref(cfg);
    }
    expect_override_error("turn.enabled=2", "--set turn.enabled=2: \"2\" is not a boolean "
                                            "(use true/false, yes/no, on/off or 1/0)");
}

/* ---- reload ---- */

static void test_reload_check(void **state)
{
    PL_UNUSED(state);
    pl_config_t *running = load_ok_text("[turn]\nthreads = 4\nrealm = a\n");
    pl_config_t *next = load_ok_text("[turn]\nthreads = 4\nrealm = b\nlifetime = 1h\n"
                                     "denied_peers = x\n");
    pl_config_error_t err;
    assert_int_equal(pl_config_reload_check(running, next, &err), 0);
    assert_true(pl_config_changed(running, next, "turn", "realm"));
    assert_true(pl_config_changed(running, next, "turn", "lifetime"));
    assert_true(pl_config_changed(running, next, "turn", "denied_peers"));
    assert_false(pl_config_changed(running, next, "turn", "threads"));
    assert_false(pl_config_changed(running, next, "log", "level"));
    pl_config_unref(next);

    /* Same value from another source is not a change. */
    const char *env[] = { "PARLEY_TURN_THREADS=4", NULL };
    src_t s = { .env = env };
    assert_int_equal(load(&s, &next, &err), 0);
    assert_false(pl_config_changed(running, next, "turn", "threads"));
    assert_true(pl_config_changed(running, next, "turn", "realm"));
    assert_int_equal(pl_config_reload_check(running, next, &err), 0);
    pl_config_unref(next);

    next = load_ok_text("[turn]\nthreads = 5\nrealm = a\n");
    assert_int_equal(pl_config_reload_check(running, next, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "[turn] threads: cannot change on reload; restart parleyd");
    pl_config_unref(next);

    next = load_ok_text("[turn]\nthreads = 4\nrealm = a\n[log]\nmax-size = 1MiB\n");
    assert_int_equal(pl_config_reload_check(running, next, &err), PL_ECONFIG);
    assert_string_equal(err.msg, "[log] max-size: cannot change on reload; restart parleyd");
    pl_config_unref(next);
    pl_config_unref(running);
}

/* ---- rendering ---- */

static void test_render_masks_secrets(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    pl_buf_t out;
    const char *env[] = { "PARLEY_TURN_THREADS=12", NULL };
    const char *ov[] = { "log.level=warn" };
    static const char ini[] = "[turn]\nauth_secret = hunter2-very-secret\nrealm = r\n";
    write_file("t.ini", ini, strlen(ini));
    src_t s = { .path = "t.ini", .env = env, .ov = ov, .n_ov = 1 };
    assert_int_equal(load(&s, &cfg, &err), 0);
    pl_buf_init(&out);
    pl_config_render(cfg, &out);
    assert_null(strstr(out.data, "hunter2"));
    assert_null(strstr(out.data, "very-secret"));
    assert_non_null(strstr(out.data, "\nauth_secret = ***\n"));
    assert_non_null(strstr(out.data, "# Shared REST secret (string max 64 bytes, default \"\", "
                                     "reloadable, secret)\n# from file, line 2\nauth_secret = ***\n"));
    assert_non_null(strstr(out.data, "# Relay worker threads (int 1..64, default 2)\n"
                                     "# from env, PARLEY_TURN_THREADS\nthreads = 12\n"));
    assert_non_null(strstr(out.data, "# from override (--set)\nlevel = warn\n"));
    assert_non_null(strstr(out.data, "# Allocation lifetime (duration 1s..1h, default 10m, "
                                     "reloadable)\nlifetime = 10m\n"));
    assert_non_null(strstr(out.data, "(enum udp|tcp|tls, default udp)\ntransport = udp\n"));
    assert_non_null(strstr(out.data, "denied_peers = 10.0.0.0/8, 192.168.0.0/16\n"));
    assert_non_null(strstr(out.data, "[turn]\n# TURN relay\n"));
    char *turn = strstr(out.data, "[turn]"), *log = strstr(out.data, "[log]");
    assert_true(turn && log && turn < log);
    assert_null(strstr(log + 1, "[turn]"));
    pl_config_unref(cfg);

    /* An empty secret prints empty. */
    pl_buf_reset(&out);
    assert_int_equal(pl_config_load(schema, NULL, &cfg, &err), 0);
    pl_config_render(cfg, &out);
    assert_non_null(strstr(out.data, "\nauth_secret = \"\"\n"));
    assert_null(strstr(out.data, "***"));
    pl_config_unref(cfg);
    pl_buf_deinit(&out);
}

/* The rendered INI loads back to the same values, tricky strings included. */
static void test_render_round_trip(void **state)
{
    PL_UNUSED(state);
    pl_config_t *a = load_ok_text(
        "[turn]\nthreads=7\nenabled=no\nlifetime=1500ms\nquota=3000\n"
        "realm = \" lead \\\\ \\\"q\\\" trail \"\ntransport=tls\ndenied_peers= x ,y\n"
        "[log]\nnote=\"\\\"starts with a quote\"\ntags=#hash, ;semi\nbig=-5\ntimeout=2d\n");
    pl_config_t *b = NULL;
    pl_config_error_t err;
    pl_buf_t out;
    pl_buf_init(&out);
    pl_config_render(a, &out);
    write_file("round.ini", out.data, out.len);
    src_t s = { .path = "round.ini" };
    if (load(&s, &b, &err) != 0)
        fail_msg("re-load failed: %s\n%s", err.msg, out.data);
    for (size_t t = 0; schema[t]; t++)
        for (size_t i = 0; i < schema[t]->n_defs; i++)
            if (pl_config_changed(a, b, schema[t]->defs[i].section, schema[t]->defs[i].key))
                fail_msg("[%s] %s differs after round trip", schema[t]->defs[i].section,
                         schema[t]->defs[i].key);
    assert_string_equal(pl_config_str(b, "turn", "realm"), " lead \\ \"q\" trail ");
    pl_buf_deinit(&out);
    pl_config_unref(a);
    pl_config_unref(b);
}

static void test_render_docs(void **state)
{
    PL_UNUSED(state);
    pl_buf_t a, b;
    char want[128];
    pl_buf_init(&a);
    pl_buf_init(&b);
    pl_config_render_docs(schema, &a);
    pl_config_render_docs(schema, &b);
    assert_string_equal(a.data, b.data);    /* deterministic */
    for (size_t t = 0; schema[t]; t++) {
        snprintf(want, sizeof want, "### [%s]\n\n%s\n\n| key | type | default | range / choices "
                 "| reload | description |\n", schema[t]->defs[0].section, schema[t]->section_doc);
        assert_non_null(strstr(a.data, want));
        for (size_t i = 0; i < schema[t]->n_defs; i++) {
            snprintf(want, sizeof want, "| `%s` |", schema[t]->defs[i].key);
            assert_non_null(strstr(a.data, want));
        }
    }
    assert_non_null(strstr(a.data, "| `threads` | int | `2` | 1..64 | no | Relay worker threads |\n"));
    assert_non_null(strstr(a.data, "| `transport` | enum | `udp` | `udp`, `tcp`, `tls` | no |"));
    assert_non_null(strstr(a.data, "| `auth_secret` | string (secret) | `\"\"` | max 64 bytes | yes |"));
    assert_non_null(strstr(a.data, "| `lifetime` | duration | `10m` | 1s..1h | yes |"));
    assert_non_null(strstr(a.data, "| `max-size` | size | `16MiB` |  | no | Rotate \\| truncate after |"));
    pl_buf_deinit(&a);
    pl_buf_deinit(&b);
}

/* A table may declare keys in several sections: each section is listed once, with its
 * keys from every table, and documented by the table that starts with it. */
static void test_sections_across_tables(void **state)
{
    PL_UNUSED(state);
    static const pl_opt_def_t xd[] = { { "x", "one", PL_OPT_INT, "1", 0, 0, NULL, 0, "first" } };
    static const pl_opt_def_t yd[] = { { "y", "two", PL_OPT_INT, "2", 0, 0, NULL, 0, "second" },
                                       { "x", "three", PL_OPT_INT, "3", 0, 0, NULL, 0, "third" } };
    const pl_opt_table_t tx = { "X things", xd, 1 }, ty = { "Y things", yd, 2 };
    const pl_opt_table_t *const sch[] = { &tx, &ty, NULL };
    pl_buf_t out;
    pl_config_t *cfg = NULL;
    pl_buf_init(&out);
    pl_config_render_docs(sch, &out);
    const char *x = strstr(out.data, "### [x]\n\nX things\n\n");
    const char *y = strstr(out.data, "### [y]\n\nY things\n\n");
    assert_true(x && y && x < y);
    const char *three = strstr(out.data, "| `three` |");
    assert_true(three && three < y);
    assert_null(strstr(y + 1, "### [x]"));
    pl_buf_reset(&out);
    assert_int_equal(pl_config_load(sch, NULL, &cfg, NULL), 0);
    pl_config_render(cfg, &out);
    assert_non_null(strstr(out.data, "[x]\n# X things\n\n# first (int, default 1)\none = 1\n\n"
                                     "# third (int, default 3)\nthree = 3\n\n[y]\n# Y things\n"));
    pl_config_unref(cfg);
    pl_buf_deinit(&out);
}

/* ---- reference counting ---- */

static void *ref_worker(void *arg)
{
    pl_config_t *cfg = arg;
    for (int i = 0; i < 20000; i++) {
        pl_config_t *r = pl_config_ref(cfg);
        if (pl_config_int(r, "turn", "threads") != 2)
            abort();
        pl_config_unref(r);
    }
    pl_config_unref(cfg);   /* the reference the main thread took for us */
    return NULL;
}

static void test_refcount(void **state)
{
    PL_UNUSED(state);
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    pthread_t th[4];
    assert_int_equal(pl_config_load(schema, NULL, &cfg, &err), 0);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    assert_ptr_equal(pl_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refs), 2);
    pl_config_unref(cfg);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    for (size_t i = 0; i < PL_ARRAY_LEN(th); i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_worker, pl_config_ref(cfg)), 0);
    for (size_t i = 0; i < PL_ARRAY_LEN(th); i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&cfg->refs), 1);
    pl_config_unref(cfg);   /* frees; ASan reports a leak or double free otherwise */
    pl_config_unref(NULL);
}

/* ---- programming bugs abort with a message ---- */

static const pl_opt_def_t dup_defs[] = {
    { "a", "x", PL_OPT_INT, "1", 0, 0, NULL, 0, "x" },
    { "a", "x", PL_OPT_INT, "1", 0, 0, NULL, 0, "x again" },
};
static const pl_opt_def_t baddef_defs[] = {
    { "a", "n", PL_OPT_INT, "ten", 0, 0, NULL, 0, "bad default" },
};
static const pl_opt_def_t range_defs[] = {
    { "a", "n", PL_OPT_INT, "100", 1, 10, NULL, 0, "default out of range" },
};
static const pl_opt_def_t env_a[] = { { "a_b", "c", PL_OPT_INT, "1", 0, 0, NULL, 0, "1" } };
static const pl_opt_def_t env_b[] = { { "a", "b_c", PL_OPT_INT, "1", 0, 0, NULL, 0, "2" } };
static const pl_opt_def_t upper_defs[] = { { "A", "x", PL_OPT_INT, "1", 0, 0, NULL, 0, "x" } };
static const pl_opt_def_t enum_defs[] = { { "a", "e", PL_OPT_ENUM, "x", 0, 0, "x||y", 0, "e" } };

typedef enum { BUG_DUP, BUG_DEFAULT, BUG_RANGE, BUG_ENV, BUG_UPPER, BUG_ENUM, BUG_KEY,
               BUG_TYPE } bug_t;

static void trigger(bug_t bug)
{
    const pl_opt_table_t t1 = { "s", dup_defs, 2 }, t2 = { "s", baddef_defs, 1 },
                         t3 = { "s", range_defs, 1 }, t4 = { "s", env_a, 1 },
                         t5 = { "s", env_b, 1 }, t6 = { "s", upper_defs, 1 },
                         t7 = { "s", enum_defs, 1 };
    const pl_opt_table_t *s_dup[] = { &t1, NULL }, *s_def[] = { &t2, NULL },
                         *s_range[] = { &t3, NULL }, *s_env[] = { &t4, &t5, NULL },
                         *s_upper[] = { &t6, NULL }, *s_enum[] = { &t7, NULL };
    const pl_opt_table_t *const *pick[] = { s_dup, s_def, s_range, s_env, s_upper, s_enum };
    pl_config_t *cfg = NULL;
    pl_config_error_t err;
    if (bug < BUG_KEY) {
        pl_config_load(pick[bug], NULL, &cfg, &err);
        return;
    }
    if (pl_config_load(schema, NULL, &cfg, &err) != 0)
        return;
    if (bug == BUG_KEY)
        (void)pl_config_int(cfg, "turn", "thread");
    else
        (void)pl_config_str(cfg, "turn", "threads");
}

/* Runs trigger(bug) in a child; expects SIGABRT and msg on its stderr. */
static void expect_abort(bug_t bug, const char *msg)
{
    int fds[2];
    char out[1024] = "";
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        trigger(bug);
        _exit(0);   /* reached only if nothing aborted */
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], out + got, sizeof out - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    if (!strstr(out, msg))
        fail_msg("expected \"%s\" in child's stderr, got \"%s\"", msg, out);
}

static void test_programming_bugs_abort(void **state)
{
    PL_UNUSED(state);
    expect_abort(BUG_DUP, "schema: [a] x is declared twice");
    expect_abort(BUG_DEFAULT, "schema: [a] n: invalid default: \"ten\" is not an integer");
    expect_abort(BUG_RANGE, "schema: [a] n: invalid default: 100 is above the maximum 10");
    expect_abort(BUG_ENV, "both map to PARLEY_A_B_C");
    expect_abort(BUG_UPPER, "schema: [A] x: names must be non-empty [a-z0-9_-]");
    expect_abort(BUG_ENUM, "schema: [a] e: enum needs choices");
    expect_abort(BUG_KEY, "pl_config_int: [turn] thread is not in the schema");
    expect_abort(BUG_TYPE, "pl_config_str: [turn] threads has type int");
}

static void test_suggest(void **state)
{
    PL_UNUSED(state);
    const char *const c[] = { "threads", "port", "id", "turn" };
    assert_string_equal(pl_cfg_suggest("thraeds", 7, c, 4), "threads");   /* transposition */
    assert_string_equal(pl_cfg_suggest("prot", 4, c, 4), "port");
    assert_string_equal(pl_cfg_suggest("ip", 2, c, 4), "id");
    assert_null(pl_cfg_suggest("x", 1, c, 4));
    assert_null(pl_cfg_suggest("completely", 10, c, 4));
    assert_null(pl_cfg_suggest("xy", 2, c, 4));
    assert_string_equal(pl_cfg_suggest("tr", 2, c, 4), "turn");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_env_beats_file),
        cmocka_unit_test(test_override_beats_env),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_secret_never_echoed_in_errors),
        cmocka_unit_test(test_env_and_override_errors),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_crlf_bom_quotes),
        cmocka_unit_test(test_nul_byte_is_an_error),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_parser_is_total),
        cmocka_unit_test(test_units_and_overflow),
        cmocka_unit_test(test_bool_forms),
        cmocka_unit_test(test_reload_check),
        cmocka_unit_test(test_render_masks_secrets),
        cmocka_unit_test(test_render_round_trip),
        cmocka_unit_test(test_render_docs),
        cmocka_unit_test(test_sections_across_tables),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_programming_bugs_abort),
        cmocka_unit_test(test_suggest),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
