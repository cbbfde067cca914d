/* sink_idset: the log_id set behind the sink's unique/duplicate counters.
 * DESIGN: two open-addressing tables (power of two, linear probing, at most 3/4 full, doubled past that).
 *  - hex: a key of exactly 32 lowercase hex digits (what liblogagent and logagentd generate) is stored as
 *    its 128-bit value, 16 bytes a slot, nothing else: exact, and memory is what costs most here (first
 *    touch of a page is slow, and a million ids must fit easily). Value 0 marks an empty slot; the key
 *    "000…0" itself is kept in a flag.
 *  - any other key: a slot holds its 64-bit hash and a pointer to [uint32 length][bytes] in an
 *    append-only arena of chunks that never move. A NULL pointer marks an empty slot.
 * Inserting many keys at once hashes them all first and prefetches slots a few keys ahead, so the
 * cache misses of random slots overlap. Tables of TABLE_MMAP_MIN bytes and more come from
 * mmap(MAP_POPULATE): on the VMs we run on, faulting a table in at once costs ~3 us a page against
 * ~15-20 us a page when random inserts touch it page by page. There is no removal. */
#include "sink_idset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define IDSET_INITIAL_SLOTS 4096u
#define IDSET_CHUNK_BYTES (1u << 20)
#define IDSET_PREFETCH_AHEAD 16
#define TABLE_MMAP_MIN (1u << 20)

struct hex_slot {
	uint64_t hi, lo; /* both 0: empty */
};

struct str_slot {
	uint64_t hash;
	const unsigned char *key; /* [uint32 len][bytes] in an arena chunk, or NULL: empty */
};

struct idset_chunk {
	struct idset_chunk *next;
	size_t used, cap;
	unsigned char data[];
};

/* One key of an idset_add_many call, prepared: its kind, value or hash, home slot. */
struct prepared {
	int hex;
	uint64_t hi, lo;  /* hex value */
	uint64_t hash;    /* other keys */
};

struct idset {
	struct hex_slot *hex;
	size_t hex_mask;
	uint64_t hex_count; /* excluding the zero key */
	int has_zero;
	struct str_slot *str;
	size_t str_mask;
	uint64_t str_count;
	struct idset_chunk *chunks; /* newest first */
	struct prepared *prep;      /* scratch for idset_add_many */
	size_t prep_cap;
};

/* ---- hashing ---- */

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* 64-bit hash of a byte string: 8-byte words folded with multiply/rotate, then mix64. */
static uint64_t str_hash(const unsigned char *p, size_t len)
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
	return mix64(h ^ (tail * 0x4cf5ad432745937full));
}

static uint64_t hex_hash(uint64_t hi, uint64_t lo)
{
	return mix64(hi ^ mix64(lo));
}

/* Parses 16 lowercase hex digits; returns 0 or -1. */
static int parse_hex16(const unsigned char *p, uint64_t *v)
{
	uint64_t r = 0;
	for (int i = 0; i < 16; i++) {
		unsigned c = p[i], d;
		if (c - '0' < 10)
			d = c - '0';
		else if (c - 'a' < 6)
			d = c - 'a' + 10;
		else
			return -1;
		r = (r << 4) | d;
	}
	*v = r;
	return 0;
}

static void prepare(const struct idset_key *k, struct prepared *out)
{
	const unsigned char *p = k->p;
	out->hex = k->len == 32 && parse_hex16(p, &out->hi) == 0 && parse_hex16(p + 16, &out->lo) == 0;
	out->hash = out->hex ? hex_hash(out->hi, out->lo) : str_hash(p, k->len);
}

/* ---- tables ---- */

/* Returns zeroed memory for a table of the given size, or NULL. */
static void *table_alloc(size_t bytes)
{
	if (bytes < TABLE_MMAP_MIN)
		return calloc(1, bytes);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void table_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (bytes < TABLE_MMAP_MIN)
		free(p);
	else
		munmap(p, bytes);
}

struct idset *idset_new(void)
{
	struct idset *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->hex_mask = s->str_mask = IDSET_INITIAL_SLOTS - 1;
	s->hex = table_alloc(IDSET_INITIAL_SLOTS * sizeof *s->hex);
	s->str = table_alloc(IDSET_INITIAL_SLOTS * sizeof *s->str);
	if (!s->hex || !s->str) {
		idset_free(s);
		return NULL;
	}
	return s;
}

/* Smallest power-of-two slot count that keeps count keys at most 3/4 full, at least the current. */
static size_t slots_for(uint64_t count, size_t current)
{
	size_t n = current;
	while (count * 4 > (uint64_t)n * 3)
		n *= 2;
	return n;
}

/* Makes the hex table big enough for need keys; returns 0 or -ENOMEM (table unchanged). */
static int hex_reserve(struct idset *s, uint64_t need)
{
	size_t n = slots_for(need, s->hex_mask + 1);
	if (n == s->hex_mask + 1)
		return 0;
	struct hex_slot *t = table_alloc(n * sizeof *t);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i <= s->hex_mask; i++) {
		struct hex_slot v = s->hex[i];
		if (!v.hi && !v.lo)
			continue;
		size_t j = hex_hash(v.hi, v.lo) & (n - 1);
		while (t[j].hi || t[j].lo)
			j = (j + 1) & (n - 1);
		t[j] = v;
	}
	table_free(s->hex, (s->hex_mask + 1) * sizeof *s->hex);
	s->hex = t;
	s->hex_mask = n - 1;
	return 0;
}

/* Same for the other-keys table. */
static int str_reserve(struct idset *s, uint64_t need)
{
	size_t n = slots_for(need, s->str_mask + 1);
	if (n == s->str_mask + 1)
		return 0;
	struct str_slot *t = table_alloc(n * sizeof *t);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i <= s->str_mask; i++) {
		if (!s->str[i].key)
			continue;
		size_t j = s->str[i].hash & (n - 1);
		while (t[j].key)
			j = (j + 1) & (n - 1);
		t[j] = s->str[i];
	}
	table_free(s->str, (s->str_mask + 1) * sizeof *s->str);
	s->str = t;
	s->str_mask = n - 1;
	return 0;
}

/* Returns 1 if added, 0 if present. The table has room. */
static int hex_insert(struct idset *s, const struct prepared *k)
{
	if (!k->hi && !k->lo) {
		int added = !s->has_zero;
		s->has_zero = 1;
		return added;
	}
	size_t i = k->hash & s->hex_mask;
	while (s->hex[i].hi || s->hex[i].lo) {
		if (s->hex[i].hi == k->hi && s->hex[i].lo == k->lo)
			return 0;
		i = (i + 1) & s->hex_mask;
	}
	s->hex[i].hi = k->hi;
	s->hex[i].lo = k->lo;
	s->hex_count++;
	return 1;
}

/* Copies key into the arena as [uint32 len][bytes]; returns it or NULL when out of memory. */
static const unsigned char *arena_store(struct idset *s, const struct idset_key *k)
{
	size_t need = sizeof(uint32_t) + k->len;
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
	uint32_t len32 = (uint32_t)k->len;
	memcpy(dst, &len32, sizeof len32);
	if (k->len)
		memcpy(dst + sizeof len32, k->p, k->len);
	c->used += need;
	return dst;
}

static int str_equal(const unsigned char *stored, const struct idset_key *k)
{
	uint32_t len;
	memcpy(&len, stored, sizeof len);
	return len == k->len && memcmp(stored + sizeof len, k->p, k->len) == 0;
}

/* Returns 1 if added, 0 if present, -ENOMEM. The table has room. */
static int str_insert(struct idset *s, const struct idset_key *key, const struct prepared *k)
{
	size_t i = k->hash & s->str_mask;
	while (s->str[i].key) {
		if (s->str[i].hash == k->hash && str_equal(s->str[i].key, key))
			return 0;
		i = (i + 1) & s->str_mask;
	}
	const unsigned char *stored = arena_store(s, key);
	if (!stored)
		return -ENOMEM;
	s->str[i].hash = k->hash;
	s->str[i].key = stored;
	s->str_count++;
	return 1;
}

static void prefetch_home(const struct idset *s, const struct prepared *k)
{
	if (k->hex)
		__builtin_prefetch(&s->hex[k->hash & s->hex_mask], 1);
	else
		__builtin_prefetch(&s->str[k->hash & s->str_mask], 1);
}

long idset_add_many(struct idset *s, const struct idset_key *keys, size_t n)
{
	if (n > s->prep_cap) {
		struct prepared *p = realloc(s->prep, n * sizeof *p);
		if (!p)
			return -ENOMEM;
		s->prep = p;
		s->prep_cap = n;
	}
	size_t n_hex = 0;
	for (size_t i = 0; i < n; i++) {
		if (keys[i].len > UINT32_MAX)
			return -ENOMEM;
		prepare(&keys[i], &s->prep[i]);
		n_hex += (size_t)s->prep[i].hex;
	}
	if (hex_reserve(s, s->hex_count + n_hex) < 0 || str_reserve(s, s->str_count + (n - n_hex)) < 0)
		return -ENOMEM;
	long added = 0;
	for (size_t i = 0; i < n; i++) {
		if (i + IDSET_PREFETCH_AHEAD < n)
			prefetch_home(s, &s->prep[i + IDSET_PREFETCH_AHEAD]);
		int r = s->prep[i].hex ? hex_insert(s, &s->prep[i]) : str_insert(s, &keys[i], &s->prep[i]);
		if (r < 0)
			return r;
		added += r;
	}
	return added;
}

uint64_t idset_count(const struct idset *s)
{
	return s->hex_count + (uint64_t)s->has_zero + s->str_count;
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
	table_free(s->hex, (s->hex_mask + 1) * sizeof *s->hex);
	table_free(s->str, (s->str_mask + 1) * sizeof *s->str);
	free(s->prep);
	free(s);
}
