/* test_token.c — the bearer token file: trimmed on read; refused when missing, empty, multi-line or too big (the
 * message never holds the token); re-read only when due and changed (a rename in place counts); an unusable new
 * content keeps the previous token. */
#include "check.h"
#include "flush/token.h"

#include <stdlib.h>
#include <unistd.h>

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int main(void)
{
    char dir[] = "/tmp/logagent-token-XXXXXX", path[128], tmp[140], err[512];
    if (!mkdtemp(dir))
        return 2;
    snprintf(path, sizeof path, "%s/token", dir);
    snprintf(tmp, sizeof tmp, "%s/token.new", dir);

    CHECK(token_file_open(path, err, sizeof err) == NULL);
    CHECK(strstr(err, "No such file or directory") != NULL);
    put(path, " \n\t\n");
    CHECK(token_file_open(path, err, sizeof err) == NULL && strstr(err, ": empty"));
    put(path, "secret-a\nsecret-b\n");
    CHECK(token_file_open(path, err, sizeof err) == NULL && strstr(err, "more than one line"));
    CHECK(strstr(err, "secret") == NULL);
    char *big = malloc((64 << 10) + 2);
    memset(big, 'x', (64 << 10) + 1);
    big[(64 << 10) + 1] = '\0';
    put(path, big);
    free(big);
    CHECK(token_file_open(path, err, sizeof err) == NULL && strstr(err, "over 64 KiB"));

    put(path, "first-token \r\n");
    token_file *t = token_file_open(path, err, sizeof err);
    CHECK(t != NULL);
    if (!t)
        return 1;
    CHECK_STR(token_file_value(t), "first-token");
    CHECK(token_file_refresh(t, 0) == 0); /* first look: same file */
    put(tmp, "second-token\n");
    CHECK(rename(tmp, path) == 0);
    CHECK(token_file_refresh(t, 500) == 0); /* not due: looked less than a second ago */
    CHECK_STR(token_file_value(t), "first-token");
    CHECK(token_file_refresh(t, 1000) == 1);
    CHECK_STR(token_file_value(t), "second-token");
    CHECK(token_file_changes(t) == 1);
    CHECK(token_file_refresh(t, 2000) == 0); /* unchanged file */

    put(tmp, "");
    CHECK(rename(tmp, path) == 0);
    CHECK(token_file_refresh(t, 3000) == 0); /* empty now: the previous token stays */
    CHECK_STR(token_file_value(t), "second-token");
    CHECK(unlink(path) == 0);
    CHECK(token_file_refresh(t, 4000) == 0); /* gone: the previous token stays */
    CHECK_STR(token_file_value(t), "second-token");
    put(path, "third-token");
    CHECK(token_file_refresh(t, 5000) == 1);
    CHECK_STR(token_file_value(t), "third-token");
    CHECK(token_file_changes(t) == 2);
    token_file_free(t);

    unlink(path);
    rmdir(dir);
    return check_failed_count != 0;
}
