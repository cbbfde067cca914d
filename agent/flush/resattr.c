/* resattr.c — `--resource-attr` parsed, its `${env:NAME}` / `${NAME}` values taken from the environment, and the
 * pairs encoded once as BatchWriteLogsRequest.resource map entries (resattr.h says what the set is for). */
#include "flush/resattr.h"

#include "pbwire.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESOURCE_FIELD 4 /* BatchWriteLogsRequest.resource */

/* Expands value[0..n) into out (NULL: only checks; env NULL: variables are not read). Returns the expanded
 * length, -ENOENT when a variable is not set (its name appended to unset), or -EINVAL with why filled. */
static long expand(const char *v, size_t n, char *out, int env, char *unset, size_t unsetlen, char *why,
                   size_t whylen)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (v[i] != '$' || i + 1 >= n || v[i + 1] != '{') {
            if (out)
                out[o] = v[i];
            o++, i++;
            continue;
        }
        const char *close = memchr(v + i, '}', n - i);
        if (!close) {
            snprintf(why, whylen, "'%.*s': '${' without its '}'", (int)(n < 60 ? n : 60), v);
            return -EINVAL;
        }
        const char *name = v + i + 2;
        size_t len = (size_t)(close - name);
        if (len >= 4 && !memcmp(name, "env:", 4))
            name += 4, len -= 4;
        for (size_t k = 0; k < len; k++)
            if (!isalnum((unsigned char)name[k]) && name[k] != '_')
                len = 0; /* refused below */
        if (len == 0 || len > 128) {
            snprintf(why, whylen, "'%.*s': expected ${env:NAME} or ${NAME} (letters, digits, _)", (int)(n < 60 ? n : 60),
                     v);
            return -EINVAL;
        }
        i = (size_t)(close - v) + 1;
        if (!env)
            continue;
        char var[130];
        memcpy(var, name, len);
        var[len] = 0;
        const char *val = getenv(var);
        if (!val) {
            size_t u = strlen(unset);
            snprintf(unset + u, unsetlen - u, "%s%s", u ? "," : "", var);
            return -ENOENT;
        }
        if (out)
            memcpy(out + o, val, strlen(val));
        o += strlen(val);
    }
    return (long)o;
}

/* Adds a variable's name to r->unset once. */
static void note_unset(resattr *r, const char *var)
{
    size_t u = strlen(r->unset), vl = strlen(var);
    for (const char *p = r->unset; (p = strstr(p, var)) != NULL; p += vl)
        if ((p == r->unset || p[-1] == ',') && (p[vl] == ',' || p[vl] == 0))
            return;
    snprintf(r->unset + u, sizeof r->unset - u, "%s%s", u ? "," : "", var);
}

/* Walks "k=v,k2=v2" calling expand on each value; with r, stores the pairs whose variables are all set.
 * Returns 0 or -EINVAL / -ENOMEM with why filled. */
static int walk(const char *spec, resattr *r, char *why, size_t whylen)
{
    for (const char *s = spec; s && *s;) {
        const char *comma = strchr(s, ','), *end = comma ? comma : s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        if (!eq || eq == s) {
            snprintf(why, whylen, "'%.*s': expected KEY=VALUE (comma-separated pairs, KEY not empty)",
                     (int)(end - s < 60 ? end - s : 60), s);
            return -EINVAL;
        }
        char unset[256] = "";
        long len = expand(eq + 1, (size_t)(end - eq - 1), NULL, r != NULL, unset, sizeof unset, why, whylen);
        if (len == -EINVAL)
            return -EINVAL;
        if (r && len == -ENOENT)
            note_unset(r, unset); else if (r) {
            size_t klen = (size_t)(eq - s);
            char *k = malloc(klen + 1 + (size_t)len + 1);
            resattr_pair *p = realloc(r->pairs, (r->n + 1) * sizeof *p);
            if (p)
                r->pairs = p;
            if (!k || !p) {
                free(k);
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
            }
            memcpy(k, s, klen);
            k[klen] = 0;
            expand(eq + 1, (size_t)(end - eq - 1), k + klen + 1, 1, unset, sizeof unset, why, whylen);
            k[klen + 1 + len] = 0;
            r->pairs[r->n++] = (resattr_pair){k, k + klen + 1};
        }
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

int resattr_check(const char *spec, char *why, size_t whylen)
{
    return walk(spec, NULL, why, whylen);
}

/* The pairs as map entries: tag 4, then an entry message {1: key, 2: value}. */
static int encode(resattr *r, char *why, size_t whylen)
{
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t e = pbw_len_field_size(strlen(r->pairs[i].key)) + pbw_len_field_size(strlen(r->pairs[i].value));
        total += pbw_len_field_size(e);
    }
    if (total > RESATTR_MAX_PB) {
        snprintf(why, whylen, "the attributes take %zu bytes once expanded, more than %d", total, RESATTR_MAX_PB);
        return -EINVAL;
    }
    if (!(r->pb = malloc(total ? total : 1))) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    uint8_t *p = r->pb;
    for (size_t i = 0; i < r->n; i++) {
        size_t kl = strlen(r->pairs[i].key), vl = strlen(r->pairs[i].value);
        p = pbw_put_tag(p, RESOURCE_FIELD, 2);
        p = pbw_put_varint(p, pbw_len_field_size(kl) + pbw_len_field_size(vl));
        p = pbw_put_bytes(p, 1, r->pairs[i].key, kl);
        p = pbw_put_bytes(p, 2, r->pairs[i].value, vl);
    }
    r->pb_len = (size_t)(p - r->pb);
    return 0;
}

resattr *resattr_new(const char *spec, char *why, size_t whylen)
{
    resattr *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (walk(spec ? spec : "", r, why, whylen) < 0 || encode(r, why, whylen) < 0) {
        resattr_free(r);
        return NULL;
    }
    return r;
}

void resattr_free(resattr *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free((char *)r->pairs[i].key); /* key and value share one allocation */
    free(r->pairs);
    free(r->pb);
    free(r);
}

const char *resattr_get(const resattr *r, const char *key)
{
    for (size_t i = 0; r && i < r->n; i++)
        if (!strcmp(r->pairs[i].key, key))
            return r->pairs[i].value;
    return NULL;
}
