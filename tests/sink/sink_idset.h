/* sink_idset: a growing set of byte strings (log_ids), open addressing with linear probing.
 * Keys are copied into an append-only arena; the table holds a 64-bit hash and a pointer per slot.
 * Not thread-safe: one owner. */
#ifndef LOGAGENT_SINK_IDSET_H
#define LOGAGENT_SINK_IDSET_H

#include <stddef.h>
#include <stdint.h>

struct idset;

/* Returns an empty set, or NULL when out of memory. */
struct idset *idset_new(void);

/* Adds key[0..len). Returns 1 if it was new, 0 if it was already present, -ENOMEM when out of memory
 * (the set is then unchanged). */
int idset_add(struct idset *s, const void *key, size_t len);

/* Number of distinct keys in the set. */
uint64_t idset_count(const struct idset *s);

/* Frees the set and every key; NULL is allowed. */
void idset_free(struct idset *s);

#endif
