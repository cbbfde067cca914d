/* sink_idset: a growing set of byte strings (log_ids) for the sink's unique/duplicate counters.
 * Exact (keys are compared, not just hashed). Not thread-safe: one owner. */
#ifndef LOGAGENT_SINK_IDSET_H
#define LOGAGENT_SINK_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct idset;

struct idset_key {
	const void *p;
	size_t len;
};

/* Returns an empty set, or NULL when out of memory. */
struct idset *idset_new(void);

/* Adds keys[0..n) in order (a key repeated inside keys counts as new once).
 * Returns how many of them were new, or -ENOMEM (some keys may have been added). */
long idset_add_many(struct idset *s, const struct idset_key *keys, size_t n);

/* Number of distinct keys in the set. */
uint64_t idset_count(const struct idset *s);

/* Frees the set and every key; NULL is allowed. */
void idset_free(struct idset *s);

#endif
