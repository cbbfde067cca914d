/* sink_idset: a growing set of byte strings (log_ids) for the sink's unique/duplicate counters.
 * Exact (keys are compared, not just hashed). Adding is cheap; the count is settled when it is read
 * (sink_idset.c). Not thread-safe: one owner. */
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

/* Adds keys[0..n). Returns 0, or -ENOMEM (some keys may have been added). */
int idset_add_many(struct idset *s, const struct idset_key *keys, size_t n);

/* Number of distinct keys added so far (linear in the number of keys), or -ENOMEM. */
long long idset_count(struct idset *s);

/* Frees the set and every key; NULL is allowed. */
void idset_free(struct idset *s);

#endif
