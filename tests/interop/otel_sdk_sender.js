// otel_sdk_sender.js — the OpenTelemetry JS SDK's log pipeline as an application runs it (LoggerProvider, a
// BatchLogRecordProcessor, one of the official OTLP log exporters), sending to logagent's OTLP ingest. Nothing
// here is logagent's code: the bytes on the wire are the SDK's own.
//
//   node otel_sdk_sender.js EXPORTER URL COUNT
//     EXPORTER  http-json (@opentelemetry/exporter-logs-otlp-http), http-proto (-otlp-proto) or grpc (-otlp-grpc)
//     URL       http://127.0.0.1:PORT/v1/logs (http-*), http://127.0.0.1:PORT (grpc)
//     COUNT     records; record i has body "sdk <EXPORTER> <i>", severity WARN (i odd: ERROR + severityText
//               "error"), attributes {i, odd (bool), ratio (double), tags (array), ctx (map)}, and a trace context
//               (trace id 0102...10, span id 1112...18) on even records.
// Prints one JSON line with what the exporter reported ({"exported": COUNT, "failed": N}); exit 0 when every
// export succeeded.
'use strict';
const api = require('@opentelemetry/api');
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { SeverityNumber } = require('@opentelemetry/api-logs');

const [kind, url, countText] = process.argv.slice(2);
const count = Number(countText || '10');
const exporters = {
  'http-json': () => new (require('@opentelemetry/exporter-logs-otlp-http').OTLPLogExporter)({ url }),
  'http-proto': () => new (require('@opentelemetry/exporter-logs-otlp-proto').OTLPLogExporter)({ url }),
  'grpc': () => new (require('@opentelemetry/exporter-logs-otlp-grpc').OTLPLogExporter)({ url }),
};
if (!exporters[kind]) {
  console.error('usage: node otel_sdk_sender.js http-json|http-proto|grpc URL COUNT');
  process.exit(2);
}

const inner = exporters[kind]();
let exported = 0, failed = 0;
const exporter = { // counts what the SDK's exporter reports back (success, or failure after its own retries)
  export(records, done) {
    inner.export(records, (result) => {
      if (result.code === 0) exported += records.length; else failed += records.length;
      done(result);
    });
  },
  shutdown() { return inner.shutdown(); },
  forceFlush() { return inner.forceFlush ? inner.forceFlush() : Promise.resolve(); },
};
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': 'otel-js-app', 'deployment.environment': 'test' }),
  processors: [new BatchLogRecordProcessor(exporter, { maxExportBatchSize: 64, scheduledDelayMillis: 50 })],
});
const logger = provider.getLogger('logagent-interop', '1.0.0');
const spanContext = { traceId: '0102030405060708090a0b0c0d0e0f10', spanId: '1112131415161718',
                      traceFlags: api.TraceFlags.SAMPLED };
for (let i = 0; i < count; i++) {
  const odd = i % 2 === 1;
  logger.emit({
    body: `sdk ${kind} ${i}`,
    severityNumber: odd ? SeverityNumber.ERROR : SeverityNumber.WARN,
    severityText: odd ? 'error' : undefined,
    timestamp: new Date(1700000000000 + i),
    attributes: { i, odd, ratio: i / 4, tags: ['a', 'b'], ctx: { k: `v${i}` } },
    context: odd ? api.context.active() : api.trace.setSpanContext(api.context.active(), spanContext),
  });
}
provider.forceFlush().then(() => provider.shutdown()).then(() => {
  console.log(JSON.stringify({ exported, failed }));
  process.exit(failed === 0 && exported === count ? 0 : 1);
}, (err) => {
  console.log(JSON.stringify({ exported, failed, error: String(err) }));
  process.exit(1);
});
