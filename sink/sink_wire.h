/* sink_wire: a light walk over protobuf wire format that finds each entry's log_id without decoding
 * the rest (the --quiet fast path). It checks tags, wire types and lengths of the fields it walks; it
 * does not look inside metadata or source. */
#ifndef LOGAGENT_SINK_WIRE_H
#define LOGAGENT_SINK_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct wire_span {
	const uint8_t *p;
	size_t len;
};

/* Finds log_id (field 7, the last one wins) of an encoded WriteLogRequest.
 * Returns 0 and sets *id (len 0 when absent), or -EINVAL when the message is malformed. */
int wire_entry_log_id(const uint8_t *p, size_t len, struct wire_span *id);

/* Walks an encoded BatchWriteLogsRequest and calls each(arg, index, log_id) for every entry in order.
 * Returns 0, -EINVAL when the message is malformed (entries before the fault may have been reported),
 * or the first negative value returned by each (which stops the walk). */
int wire_batch_log_ids(const uint8_t *p, size_t len,
		       int (*each)(void *arg, size_t index, struct wire_span id), void *arg);

#endif
