/* test_batch.c — BatchWriteLogsRequest assembly: entries framed by hand decode with the generated code,
 * with agent_id and batch_id; sizes are predicted exactly; entries stay addressable one by one. */
#include "flush/batch.h"
#include "check.h"

#include <logagent/v1/log_service.pb-c.h>
#include <stdlib.h>

static size_t encode_entry(int i, uint8_t *buf, size_t cap)
{
    Logagent__V1__WriteLogRequest r = LOGAGENT__V1__WRITE_LOG_REQUEST__INIT;
    char msg[64], id[40];
    snprintf(msg, sizeof msg, "message %d", i);
    snprintf(id, sizeof id, "%032x", i);
    r.message = msg;
    r.log_id = id;
    r.timestamp_unix_nano = 1000 + i;
    size_t n = logagent__v1__write_log_request__get_packed_size(&r);
    CHECK(n <= cap);
    return logagent__v1__write_log_request__pack(&r, buf);
}

int main(void)
{
    batch *b = batch_new(77);
    uint8_t buf[256];
    for (int i = 0; i < 300; i++) {
        size_t n = encode_entry(i, buf, sizeof buf);
        size_t predicted = batch_size_with(b, n);
        CHECK_INT(batch_add(b, buf, n), 0);
        CHECK(predicted >= b->len && predicted - b->len <= 200); /* entries + room for the trailer */
    }
    CHECK_INT(b->n, 300);
    size_t len;
    uint8_t *payload = batch_payload(b, "agent-x", &len);
    CHECK(len <= batch_size_with(b, 0)); /* the whole request stays within what the size check promised */
    Logagent__V1__BatchWriteLogsRequest *req = logagent__v1__batch_write_logs_request__unpack(NULL, len, payload);
    CHECK(req != NULL);
    if (req) {
        CHECK_INT(req->n_entries, 300);
        CHECK_STR(req->agent_id, "agent-x");
        CHECK_INT(req->batch_id, 77);
        CHECK_STR(req->entries[299]->message, "message 299");
        CHECK_INT(req->entries[5]->timestamp_unix_nano, 1005);
        logagent__v1__batch_write_logs_request__free_unpacked(req, NULL);
    }
    size_t elen;
    const uint8_t *e = batch_entry(b, 42, &elen);
    Logagent__V1__WriteLogRequest *one = logagent__v1__write_log_request__unpack(NULL, elen, e);
    CHECK(one && strcmp(one->message, "message 42") == 0);
    if (one)
        logagent__v1__write_log_request__free_unpacked(one, NULL);
    free(payload);
    batch_free(b);
    return check_done("test_batch");
}
