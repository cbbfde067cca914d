/* resattr.h — `--resource-attr`: the attributes of where the agent runs (pod, namespace, node, environment, team),
 * sent once per call to the log service on both upstream protocols: as OTLP Resource attributes
 * (flush/otlp.c) and as BatchWriteLogsRequest.resource (map<string,string> field 4, proto/logagent/v1).
 *
 * The spec is "KEY=VALUE,KEY2=VALUE2". A value may take text from the agent's environment, as the OpenTelemetry
 * Collector's configuration does: `${env:NAME}` or `${NAME}` (the Kubernetes Downward API puts the pod's name,
 * namespace and node into variables: packaging/k8s/sidecar.yaml). The environment is read once, when the set is
 * made. A pair whose variable is not set is left out, and said so (a missing Downward API entry must not stop the
 * logs). A set is read-only once made: any thread may use it. */
#ifndef LOGAGENT_RESATTR_H
#define LOGAGENT_RESATTR_H

#include <stddef.h>
#include <stdint.h>

/* Largest expanded set, as encoded protobuf map entries: a bound on every call's trailer. */
#define RESATTR_MAX_PB 4096

typedef struct resattr_pair {
    const char *key, *value; /* point into the set's own storage */
} resattr_pair;

typedef struct resattr {
    resattr_pair *pairs;
    size_t n;
    uint8_t *pb;             /* the pairs as `map<string,string> resource = 4` entries, ready to append */
    size_t pb_len;
    char unset[256];         /* "POD_NAME,NODE_NAME": variables named by the spec but not set ("" when none) */
} resattr;

/* Checks a spec without reading the environment. Returns 0, or -EINVAL with the reason in why. */
int resattr_check(const char *spec, char *why, size_t whylen);

/* Parses spec and expands its variables from getenv into a new set (owned by the caller: resattr_free).
 * NULL with why filled on a bad spec, an expanded set over RESATTR_MAX_PB, or no memory. */
resattr *resattr_new(const char *spec, char *why, size_t whylen);
void resattr_free(resattr *r);

/* The value of key in r, or NULL. */
const char *resattr_get(const resattr *r, const char *key);

#endif
