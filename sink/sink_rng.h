/* sink_rng: the sink's seeded pseudo-random source (splitmix64) for --fail-rate and --reject-rate.
 * Deterministic for a given --seed; one owner, not thread-safe. */
#ifndef LOGAGENT_SINK_RNG_H
#define LOGAGENT_SINK_RNG_H

#include <stdint.h>

struct sink_rng {
	uint64_t state;
};

static inline uint64_t sink_rng_next(struct sink_rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Returns 1 with probability p (0 never draws, so a zero rate leaves the sequence untouched). */
static inline int sink_rng_chance(struct sink_rng *r, double p)
{
	if (p <= 0.0)
		return 0;
	return (double)(sink_rng_next(r) >> 11) * 0x1.0p-53 < p;
}

#endif
