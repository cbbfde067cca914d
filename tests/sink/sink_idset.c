/* sink_idset: the log_id set behind the sink's unique/duplicate counters.
 * DESIGN: a power-of-two table of {hash, key} slots, linear probing, at most 3/4 full (doubled past that).
 * A key lives in an arena chunk as [uint32 length][bytes]; chunks are never moved, so slot pointers stay
 * valid across growth. A slot whose key is NULL is empty. There is no removal. */
#include "sink_idset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IDSET_INITIAL_SLOTS 4096u
#define IDSET_CHUNK_BYTES (1u << 20)

struct idset_slot {
	uint64_t hash;
	const unsigned char *key; /* [uint32 len][bytes] in an arena chunk, or NULL */
};

struct idset_chunk {
	struct idset_chunk *next;
	size_t used, cap;
	unsigned char data[];
};

struct idset {
	struct idset_slot *slots;
	size_t mask; /* slot count - 1 */
	uint64_t count;
	struct idset_chunk *chunks; /* newest first */
};

/* 64-bit hash of a byte string: 8-byte words folded with multiply/rotate, then a final avalanche. */
static uint64_t idset_hash(const unsigned char *p, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xff51afd7ed558ccdull);
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ (w * 0xc4ceb9fe1a85ec53ull)) * 0x87c37b91114253d5ull;
		h = (h << 31) | (h >> 33);
		p += 8;
		len -= 8;
	}
	uint64_t tail = 0;
	if (len)
		memcpy(&tail, p, len);
	h ^= tail * 0x4cf5ad432745937full;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

struct idset *idset_new(void)
{
	struct idset *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->slots = calloc(IDSET_INITIAL_SLOTS, sizeof *s->slots);
	if (!s->slots) {
		free(s);
		return NULL;
	}
	s->mask = IDSET_INITIAL_SLOTS - 1;
	return s;
}

static int idset_key_equal(const unsigned char *stored, const void *key, size_t len)
{
	uint32_t slen;
	memcpy(&slen, stored, sizeof slen);
	return slen == len && memcmp(stored + sizeof slen, key, len) == 0;
}

/* Copies key into the arena as [uint32 len][bytes]; returns it or NULL when out of memory. */
static const unsigned char *idset_store(struct idset *s, const void *key, size_t len)
{
	size_t need = sizeof(uint32_t) + len;
	struct idset_chunk *c = s->chunks;
	if (!c || c->cap - c->used < need) {
		size_t cap = need > IDSET_CHUNK_BYTES ? need : IDSET_CHUNK_BYTES;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->next = s->chunks;
		c->used = 0;
		c->cap = cap;
		s->chunks = c;
	}
	unsigned char *dst = c->data + c->used;
	uint32_t len32 = (uint32_t)len;
	memcpy(dst, &len32, sizeof len32);
	if (len)
		memcpy(dst + sizeof len32, key, len);
	c->used += need;
	return dst;
}

/* Doubles the table; returns 0 or -ENOMEM (the set is then unchanged). */
static int idset_grow(struct idset *s)
{
	size_t nslots = (s->mask + 1) * 2;
	struct idset_slot *slots = calloc(nslots, sizeof *slots);
	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i <= s->mask; i++) {
		if (!s->slots[i].key)
			continue;
		size_t j = s->slots[i].hash & (nslots - 1);
		while (slots[j].key)
			j = (j + 1) & (nslots - 1);
		slots[j] = s->slots[i];
	}
	free(s->slots);
	s->slots = slots;
	s->mask = nslots - 1;
	return 0;
}

int idset_add(struct idset *s, const void *key, size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	if ((s->count + 1) * 4 > (uint64_t)(s->mask + 1) * 3 && idset_grow(s) < 0)
		return -ENOMEM;
	uint64_t h = idset_hash(key, len);
	size_t i = h & s->mask;
	while (s->slots[i].key) {
		if (s->slots[i].hash == h && idset_key_equal(s->slots[i].key, key, len))
			return 0;
		i = (i + 1) & s->mask;
	}
	const unsigned char *stored = idset_store(s, key, len);
	if (!stored)
		return -ENOMEM;
	s->slots[i].hash = h;
	s->slots[i].key = stored;
	s->count++;
	return 1;
}

uint64_t idset_count(const struct idset *s)
{
	return s->count;
}

void idset_free(struct idset *s)
{
	if (!s)
		return;
	while (s->chunks) {
		struct idset_chunk *next = s->chunks->next;
		free(s->chunks);
		s->chunks = next;
	}
	free(s->slots);
	free(s);
}
