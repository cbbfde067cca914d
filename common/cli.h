/* cli.h — how the command-line programs say "bad usage", one copy: logagentd, logagentctl, logagent-send,
 * logagent-sink and logagent-bench all print
 *
 *     PROG: what is wrong, naming the flag or argument
 *     Try 'PROG --help' for more information.
 *
 * on stderr and exit 2 (the convention every man page's "Exit status" states).
 *
 * Header-only (static inline) so that programs which share no object files (logagentd links the agent library,
 * logagentctl must not, the others are separate targets) use the same text. The client library (client-shim/)
 * itself does not include it: it depends on nothing here. */
#ifndef LOGAGENT_CLI_H
#define LOGAGENT_CLI_H

#include <stdarg.h>
#include <stdio.h>

#define CLI_EXIT_USAGE 2 /* bad usage: an unknown flag, a bad value, a missing or extra argument */

/* Prints "PROG: MESSAGE" and the --help hint on stderr. Returns CLI_EXIT_USAGE (to return from main, or exit). */
static inline __attribute__((format(printf, 2, 3))) int cli_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    return CLI_EXIT_USAGE;
}

/* getopt_long's two complaints in the same words for every program: "option '--x' needs a value" (missing_value)
 * or "unknown option '--x'"; arg is the option as the user wrote it (argv[optind - 1]). Returns CLI_EXIT_USAGE. */
static inline int cli_option_error(const char *prog, int missing_value, const char *arg)
{
    return missing_value ? cli_usage_error(prog, "option '%s' needs a value", arg)
                         : cli_usage_error(prog, "unknown option '%s'", arg);
}

#endif
