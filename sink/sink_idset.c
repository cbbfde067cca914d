/* sink_idset: the log_id set behind the sink's unique/duplicate counters.
 * DESIGN: exact (keys are compared, never just hashed), and as cheap as possible while calls come in,
 * because the sink shares the machine with the agent the benchmark measures. Two kinds of keys:
 *  - hex: a key of exactly 32 lowercase hex digits (what liblogagent and logagentd generate) is parsed
 *    to its 128-bit value (a table lookup per digit) and appended to a log of 16-byte values. Nothing
 *    is looked up while calls come in: idset_count sorts the log (LSD radix sort on the high half,
 *    11 bits a pass, passes where every key has the same digit skipped; then runs of an equal high half
 *    by the low half), drops the repeats and keeps the sorted unique values as the log's first segment,
 *    so the counters are exact whenever they are read (the summary at exit, SIGUSR1). Sorting is
 *    linear in the log's length and touches memory in order; a hash table touches a random slot per
 *    key, and on the VMs we run on a cold page costs tens of microseconds.
 *  - any other key: an open-addressing table (power of two, linear probing, at most 3/4 full, doubled
 *    past that) of 64-bit hashes and pointers to [uint32 length][bytes] in an append-only arena of
 *    chunks that never move; a NULL pointer marks an empty slot. Checked at once, as before.
 * The log's segments and the sort's buffers are anonymous mappings marked MADV_HUGEPAGE: a 2 MiB page
 * is faulted in once where 512 small pages would each fault. There is no removal. */
#include "sink_idset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define IDSET_INITIAL_SLOTS 4096u
#define IDSET_CHUNK_BYTES (1u << 20)
#define TABLE_MMAP_MIN (1u << 20)
#define SEGMENT_KEYS ((size_t)1 << 18) /* 4 MiB of 16-byte values per log segment */
#define RADIX_BITS 11
#define RADIX_BUCKETS (1u << RADIX_BITS)
#define RADIX_PASSES ((64 + RADIX_BITS - 1) / RADIX_BITS)
#define RADIX_MIN 4096 /* fewer keys than this are sorted with qsort */

struct hex_key {
	uint64_t hi, lo;
};

/* A run of hex values: the sorted unique ones (first segment after a count) or appended ones. */
struct segment {
	struct hex_key *keys; /* a mapping of map_bytes */
	size_t n, cap, map_bytes;
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

struct idset {
	struct segment *segs;  /* the hex log, oldest first */
	size_t n_segs, segs_cap;
	size_t n_hex;          /* values in the log */
	size_t n_sorted;       /* the first n_sorted values (segment 0) are sorted and unique */
	struct str_slot *str;
	size_t str_mask;
	uint64_t str_count;
	struct idset_chunk *chunks; /* newest first */
};

/* ---- memory ---- */

/* Zeroed memory of at least bytes, from mmap (huge pages asked for); NULL when out of memory. The size
 * actually mapped goes to *mapped. */
static void *map_zeroed(size_t bytes, size_t *mapped)
{
	size_t n = (bytes + 4095) & ~(size_t)4095;
	void *p = mmap(NULL, n ? n : 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
#ifdef MADV_HUGEPAGE
	(void)madvise(p, n ? n : 4096, MADV_HUGEPAGE); /* a hint: without it small pages do */
#endif
	*mapped = n ? n : 4096;
	return p;
}

static void unmap(void *p, size_t mapped)
{
	if (p)
		munmap(p, mapped);
}

/* ---- hex keys ---- */

/* Each lowercase hex digit's value plus one; 0 for every other byte. */
static const unsigned char hex_digit[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
	['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* Parses 16 lowercase hex digits; returns 0 or -1. No branch per digit. */
static int parse_hex16(const unsigned char *p, uint64_t *v)
{
	uint64_t r = 0;
	unsigned ok = 1;
	for (int i = 0; i < 16; i++) {
		unsigned d = hex_digit[p[i]];
		ok &= d != 0;
		r = (r << 4) | ((d - 1) & 15);
	}
	*v = r;
	return ok ? 0 : -1;
}

/* Appends one value to the log. Returns 0 or -ENOMEM. */
static int log_append(struct idset *s, struct hex_key k)
{
	struct segment *last = s->n_segs ? &s->segs[s->n_segs - 1] : NULL;
	if (!last || last->n == last->cap) {
		if (s->n_segs == s->segs_cap) {
			size_t cap = s->segs_cap ? s->segs_cap * 2 : 16;
			struct segment *ns = realloc(s->segs, cap * sizeof *ns);
			if (!ns)
				return -ENOMEM;
			s->segs = ns;
			s->segs_cap = cap;
		}
		last = &s->segs[s->n_segs];
		last->keys = map_zeroed(SEGMENT_KEYS * sizeof *last->keys, &last->map_bytes);
		if (!last->keys)
			return -ENOMEM;
		last->n = 0;
		last->cap = SEGMENT_KEYS;
		s->n_segs++;
	}
	last->keys[last->n++] = k;
	s->n_hex++;
	return 0;
}

/* ---- sorting the log ---- */

static int key_cmp(const void *a, const void *b)
{
	const struct hex_key *x = a, *y = b;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static unsigned digit(uint64_t v, int pass)
{
	return (unsigned)(v >> (pass * RADIX_BITS)) & (RADIX_BUCKETS - 1);
}

/* Every segment's values, in order, into dst (room for s->n_hex); frees the segments. */
static void log_gather(struct idset *s, struct hex_key *dst)
{
	for (size_t i = 0; i < s->n_segs; i++) {
		memcpy(dst, s->segs[i].keys, s->segs[i].n * sizeof *dst);
		dst += s->segs[i].n;
		unmap(s->segs[i].keys, s->segs[i].map_bytes);
	}
	s->n_segs = 0;
}

/* One radix pass of src[0..n) into dst by digit `pass` of hi, using that digit's histogram. */
static void radix_pass(const struct hex_key *src, struct hex_key *dst, size_t n, int pass, size_t *hist)
{
	size_t sum = 0;
	for (unsigned b = 0; b < RADIX_BUCKETS; b++) {
		size_t c = hist[b];
		hist[b] = sum;
		sum += c;
	}
	for (size_t i = 0; i < n; i++)
		dst[hist[digit(src[i].hi, pass)]++] = src[i];
}

/* Sorts a[0..n) by hi with tmp (room for n) as the other buffer; returns whichever holds the result. */
static struct hex_key *radix_sort_hi(struct hex_key *a, struct hex_key *tmp, size_t n)
{
	size_t *hist = calloc((size_t)RADIX_PASSES * RADIX_BUCKETS, sizeof *hist);
	if (!hist) {
		qsort(a, n, sizeof *a, key_cmp); /* slower, same result */
		return a;
	}
	for (size_t i = 0; i < n; i++)
		for (int p = 0; p < RADIX_PASSES; p++)
			hist[(size_t)p * RADIX_BUCKETS + digit(a[i].hi, p)]++;
	struct hex_key *src = a, *dst = tmp;
	for (int p = 0; p < RADIX_PASSES; p++) {
		size_t *h = hist + (size_t)p * RADIX_BUCKETS;
		if (h[digit(src[0].hi, p)] == n)
			continue; /* every key has this digit: the pass would change nothing */
		radix_pass(src, dst, n, p, h);
		struct hex_key *t = src;
		src = dst;
		dst = t;
	}
	free(hist);
	return src;
}

/* Sorts runs of an equal hi by lo, then drops repeats. Returns the number of unique values left. */
static size_t sort_runs_and_dedup(struct hex_key *a, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && a[j].hi == a[i].hi)
			j++;
		if (j - i > 1)
			qsort(a + i, j - i, sizeof *a, key_cmp);
		i = j;
	}
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (u == 0 || a[i].hi != a[u - 1].hi || a[i].lo != a[u - 1].lo)
			a[u++] = a[i];
	return u;
}

/* Sorts the whole log and keeps its unique values as one segment. Returns 0 or -ENOMEM (log unchanged).
 * Memory: the log plus one copy while gathering, then two copies while sorting (the log is gone by then). */
static int log_settle(struct idset *s)
{
	if (s->n_sorted == s->n_hex)
		return 0;
	size_t n = s->n_hex, a_bytes, t_bytes = 0;
	struct hex_key *a = map_zeroed(n * sizeof *a, &a_bytes);
	if (!a)
		return -ENOMEM;
	log_gather(s, a);
	struct hex_key *tmp = n >= RADIX_MIN ? map_zeroed(n * sizeof *tmp, &t_bytes) : NULL;
	struct hex_key *sorted = a;
	if (tmp)
		sorted = radix_sort_hi(a, tmp, n);
	else
		qsort(a, n, sizeof *a, key_cmp); /* few keys, or no memory for the radix sort's second buffer */
	size_t u = sort_runs_and_dedup(sorted, n);
	if (sorted == a)
		unmap(tmp, t_bytes);
	else
		unmap(a, a_bytes);
	s->segs[0] = (struct segment){sorted, u, u, sorted == a ? a_bytes : t_bytes}; /* segs_cap >= 1 */
	s->n_segs = 1;
	s->n_hex = s->n_sorted = u;
	return 0;
}

/* ---- other keys ---- */

/* 64-bit hash of a byte string: 8-byte words folded with multiply/rotate, then a final mix. */
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
	h ^= tail * 0x4cf5ad432745937full;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

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

/* Makes the table big enough for need keys (at most 3/4 full); returns 0 or -ENOMEM (table unchanged). */
static int str_reserve(struct idset *s, uint64_t need)
{
	size_t n = s->str_mask + 1;
	while (need * 4 > (uint64_t)n * 3)
		n *= 2;
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

/* Adds a key that is not hex. Returns 0 or -ENOMEM. */
static int str_add(struct idset *s, const struct idset_key *key)
{
	if (key->len > UINT32_MAX || str_reserve(s, s->str_count + 1) < 0)
		return -ENOMEM;
	uint64_t hash = str_hash(key->p, key->len);
	size_t i = hash & s->str_mask;
	while (s->str[i].key) {
		if (s->str[i].hash == hash && str_equal(s->str[i].key, key))
			return 0;
		i = (i + 1) & s->str_mask;
	}
	const unsigned char *stored = arena_store(s, key);
	if (!stored)
		return -ENOMEM;
	s->str[i].hash = hash;
	s->str[i].key = stored;
	s->str_count++;
	return 0;
}

/* ---- the set ---- */

struct idset *idset_new(void)
{
	struct idset *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->str_mask = IDSET_INITIAL_SLOTS - 1;
	s->str = table_alloc(IDSET_INITIAL_SLOTS * sizeof *s->str);
	if (!s->str) {
		idset_free(s);
		return NULL;
	}
	return s;
}

int idset_add_many(struct idset *s, const struct idset_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const unsigned char *p = keys[i].p;
		struct hex_key k;
		int r;
		if (keys[i].len == 32 && parse_hex16(p, &k.hi) == 0 && parse_hex16(p + 16, &k.lo) == 0)
			r = log_append(s, k);
		else
			r = str_add(s, &keys[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

long long idset_count(struct idset *s)
{
	if (log_settle(s) < 0)
		return -ENOMEM;
	return (long long)(s->n_hex + s->str_count);
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
	for (size_t i = 0; i < s->n_segs; i++)
		unmap(s->segs[i].keys, s->segs[i].map_bytes);
	free(s->segs);
	table_free(s->str, (s->str_mask + 1) * sizeof *s->str);
	free(s);
}
