/* fuzz_config.c — libFuzzer target: the bytes of logagentd's config file (INI, read with libinih) through
 * config_load, as `logagentd --config FILE` reads it.
 *
 * config_load never exits; it returns CONFIG_RUN or CONFIG_EXIT_USAGE and prints its reasons on stderr, which
 * the target sends to /dev/null (LOGAGENT_FUZZ_VERBOSE=1 keeps them; sanitizer and libFuzzer reports always
 * show). Besides ASan/UBSan, when a file is accepted the target checks the round trip operators rely on: what
 * config_print writes (`logagentd --check-config > new.conf`) is itself a config file that loads, with the
 * same settings.
 * It also runs config_apply_live (the SIGHUP path) from the defaults to the loaded settings and back.
 * The environment is cleared of LOGAGENT_* and LOG_SERVICE_GRPC_SERVER first, so only the file counts. */
#include "fuzz_common.h"

#include "config.h"

#include <stdio.h>

extern char **environ;

/* Scratch folder and file names, and /dev/null for config_load's messages: set once per process. */
static char g_dir[512], g_in[600], g_out[600];
static FILE *g_quiet;

/* config_load(--config path). Its messages are thousands of lines a second while fuzzing: glibc's stderr is an
 * ordinary variable (glibc manual, "Standard Streams"), so it points at /dev/null during the call; sanitizer
 * and libFuzzer reports do not go through it. */
static config_result load_argv(config *cfg, const char *path)
{
    char *argv[] = {"logagentd", "--config", (char *)path, NULL};
    FILE *saved = stderr;
    if (g_quiet)
        stderr = g_quiet;
    config_result r = config_load(cfg, 3, argv);
    stderr = saved;
    return r;
}

static config_result load(const char *path, config *cfg) { return load_argv(cfg, path); }

/* config_print's text without comments and origins: one "key = value" per setting. Caller frees. */
static char *settings_text(const config *cfg, size_t *len)
{
    char *raw = NULL, *out = NULL;
    size_t raw_len = 0, out_len = 0;
    FILE *f = open_memstream(&raw, &raw_len);
    FUZZ_CHECK(f, "open_memstream");
    config_print(cfg, f);
    fclose(f);
    FILE *o = open_memstream(&out, &out_len);
    FUZZ_CHECK(o, "open_memstream");
    for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == '[')
            continue;
        char *c = strstr(line, " # "); /* a value never holds " #": the parser cuts comments there */
        size_t n = c ? (size_t)(c - line) : strlen(line);
        while (n && line[n - 1] == ' ')
            n--;
        fprintf(o, "%.*s\n", (int)n, line);
    }
    fclose(o);
    free(raw);
    *len = out_len;
    return out;
}

static void check_round_trip(const config *cfg)
{
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *f = open_memstream(&printed, &printed_len);
    FUZZ_CHECK(f, "open_memstream");
    config_print(cfg, f);
    fclose(f);
    fuzz_write_file(g_out, printed, printed_len);
    config *again = malloc(sizeof *again);
    FUZZ_CHECK(again, "malloc");
    config_result r = load(g_out, again);
    FUZZ_CHECK(r == CONFIG_RUN, "the file config_print wrote does not load:\n%s", printed);
    size_t a_len, b_len;
    char *a = settings_text(cfg, &a_len), *b = settings_text(again, &b_len);
    FUZZ_CHECK(a_len == b_len && !memcmp(a, b, a_len), "settings changed in the round trip:\n%s---\n%s", a, b);
    FUZZ_CHECK(cfg->stats_socket_gid == again->stats_socket_gid, "stats socket group resolved differently");
    free(a);
    free(b);
    free(again);
    free(printed);
}

/* SIGHUP from the defaults to cfg and back: the live lists are bounded, and a reload to the same is a no-op. */
static void check_apply_live(const config *cfg)
{
    config *cur = malloc(sizeof *cur), *dflt = malloc(sizeof *dflt);
    FUZZ_CHECK(cur && dflt, "malloc");
    FUZZ_CHECK(load_argv(dflt, "") == CONFIG_RUN, "the defaults do not load"); /* "": no file */
    *cur = *dflt;
    char live[64], restart[64]; /* small on purpose: the lists must be cut, not overflow */
    config_apply_live(cur, cfg, live, sizeof live, restart, sizeof restart);
    FUZZ_CHECK(strlen(live) < sizeof live && strlen(restart) < sizeof restart, "live lists overflow");
    config_apply_live(cur, cur, live, sizeof live, restart, sizeof restart);
    FUZZ_CHECK(!live[0] && !restart[0], "reloading the same settings changed '%s' / '%s'", live, restart);
    free(cur);
    free(dflt);
}

static void clear_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e; e++)
            if (!strncmp(*e, "LOGAGENT_", 9) || !strncmp(*e, "LOG_SERVICE_GRPC_SERVER=", 24)) {
                snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
                break;
            }
        if (!name[0])
            return;
        unsetenv(name);
    }
}

static void remove_scratch(void)
{
    unlink(g_in);
    unlink(g_out);
    rmdir(g_dir);
    if (g_quiet)
        fclose(g_quiet);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    clear_env();
    fuzz_scratch_dir(g_dir, sizeof g_dir, "config");
    snprintf(g_in, sizeof g_in, "%s/logagentd.conf", g_dir);
    snprintf(g_out, sizeof g_out, "%s/printed.conf", g_dir);
    const char *verbose = getenv("LOGAGENT_FUZZ_VERBOSE");
    if (!verbose || strcmp(verbose, "1"))
        FUZZ_CHECK((g_quiet = fopen("/dev/null", "w")) != NULL, "/dev/null: %s", strerror(errno));
    atexit(remove_scratch);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(g_in, data, size);
    config *cfg = malloc(sizeof *cfg);
    FUZZ_CHECK(cfg, "malloc");
    config_result r = load(g_in, cfg);
    FUZZ_CHECK(r == CONFIG_RUN || r == CONFIG_EXIT_USAGE, "config_load returned %d for a file", (int)r);
    if (r == CONFIG_RUN) {
        FUZZ_CHECK(!cfg->check_only && cfg->config_file_found, "file not marked as read");
        check_round_trip(cfg);
        check_apply_live(cfg);
    }
    free(cfg);
    return 0;
}
