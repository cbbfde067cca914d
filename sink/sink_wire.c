/* sink_wire: log_id extraction straight from protobuf wire format, for the --quiet path.
 * Field numbers come from proto/logagent/v1/log_service.proto: BatchWriteLogsRequest.entries = 1
 * (agent_id = 2, batch_id = 3); WriteLogRequest strings 1-5, 7 (log_id), 9 (source), map 6, int64 8.
 * A known field with the wrong wire type, a truncated value, a zero field number or a group is an
 * error, as it is for protobuf-c; unknown fields are skipped. */
#include "sink_wire.h"

#include <errno.h>

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

struct wire_field {
	uint32_t number;
	int type;
	uint64_t varint;       /* WT_VARINT */
	struct wire_span data; /* WT_LEN */
};

static int wire_varint_slow(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (*p >= end)
			return -EINVAL;
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -EINVAL;
}

/* A varint; tags and the lengths of an entry's fields are nearly always one byte, so that case is inline. */
static inline int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	if (*p < end && **p < 0x80) {
		*v = *(*p)++;
		return 0;
	}
	return wire_varint_slow(p, end, v);
}

/* Reads one field at *p and advances past it. Returns 0 or -EINVAL. */
static inline int wire_next(const uint8_t **p, const uint8_t *end, struct wire_field *f)
{
	uint64_t tag, n;
	if (wire_varint(p, end, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
		return -EINVAL;
	f->number = (uint32_t)(tag >> 3);
	f->type = (int)(tag & 7);
	switch (f->type) {
	case WT_VARINT:
		return wire_varint(p, end, &f->varint);
	case WT_FIXED64:
	case WT_FIXED32:
		n = f->type == WT_FIXED64 ? 8 : 4;
		break;
	case WT_LEN:
		if (wire_varint(p, end, &n) < 0)
			return -EINVAL;
		break;
	default:
		return -EINVAL; /* groups (3, 4) and reserved types */
	}
	if (n > (uint64_t)(end - *p))
		return -EINVAL;
	f->data.p = *p;
	f->data.len = (size_t)n;
	*p += n;
	return 0;
}

/* The wire type each known WriteLogRequest field must have, or -1 for unknown fields. */
static int wire_entry_field_type(uint32_t number)
{
	if (number == 8)
		return WT_VARINT;
	if (number >= 1 && number <= 9)
		return WT_LEN;
	return -1;
}

int wire_entry_log_id(const uint8_t *p, size_t len, struct wire_span *id)
{
	const uint8_t *end = p + len;
	struct wire_field f;
	id->p = p;
	id->len = 0;
	while (p < end) {
		if (wire_next(&p, end, &f) < 0)
			return -EINVAL;
		int want = wire_entry_field_type(f.number);
		if (want >= 0 && want != f.type)
			return -EINVAL;
		if (f.number == 7)
			*id = f.data;
	}
	return 0;
}

int wire_batch_log_ids(const uint8_t *p, size_t len,
		       int (*each)(void *arg, size_t index, struct wire_span id), void *arg)
{
	const uint8_t *end = p + len;
	struct wire_field f;
	size_t index = 0;
	while (p < end) {
		if (wire_next(&p, end, &f) < 0)
			return -EINVAL;
		if ((f.number == 1 || f.number == 2) && f.type != WT_LEN)
			return -EINVAL;
		if (f.number == 3 && f.type != WT_VARINT)
			return -EINVAL;
		if (f.number != 1)
			continue;
		struct wire_span id;
		if (wire_entry_log_id(f.data.p, f.data.len, &id) < 0)
			return -EINVAL;
		int r = each(arg, index++, id);
		if (r < 0)
			return r;
	}
	return 0;
}
