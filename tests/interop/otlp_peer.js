// otlp_peer.js — an independent OTLP/gRPC logs receiver for test_otlp.py: it shares no code and no .proto file
// with logagent. The server is @grpc/grpc-js; requests are decoded with the protobufjs schema generated from the
// official opentelemetry-proto that @opentelemetry/otlp-transformer ships (build/src/generated/root.js).
// It prints one JSON line per LogRecord on stdout (resource and scope flattened into it) and, once listening,
// writes its port to the file given as the first argument. SIGTERM ends it.
//
// usage: NODE_PATH=<folder with node_modules> node otlp_peer.js PORT_FILE
'use strict';
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');

const logsV1 = root.opentelemetry.proto.collector.logs.v1;
const Request = logsV1.ExportLogsServiceRequest;
const Response = logsV1.ExportLogsServiceResponse;

const hex = (b) => (b && b.length ? Buffer.from(b).toString('hex') : '');
const str = (v) => (v === null || v === undefined ? '' : v.toString());

const set = (x) => x !== null && x !== undefined;

// An AnyValue as JSON: strings as strings, ints as decimal strings (64-bit), others tagged by their oneof case
// ({array: [...]}, {kvlist: {key: value}} recursively; {empty: true} for an AnyValue with no value, OTLP's null).
function anyValue(v) {
  if (!v) return null;
  if (set(v.stringValue)) return v.stringValue;
  if (set(v.intValue)) return { int: str(v.intValue) };
  if (set(v.boolValue)) return { bool: v.boolValue };
  if (set(v.doubleValue)) return { double: v.doubleValue };
  if (set(v.bytesValue)) return { bytes: hex(v.bytesValue) };
  if (set(v.arrayValue)) return { array: (v.arrayValue.values || []).map(anyValue) };
  if (set(v.kvlistValue)) return { kvlist: attrs(v.kvlistValue.values) };
  return { empty: true };
}

function attrs(list) {
  const out = {};
  for (const kv of list || []) out[kv.key] = anyValue(kv.value);
  return out;
}

function lines(req) {
  const out = [];
  for (const rl of req.resourceLogs || []) {
    const resource = attrs(rl.resource && rl.resource.attributes);
    for (const sl of rl.scopeLogs || []) {
      const scope = { name: (sl.scope && sl.scope.name) || '', version: (sl.scope && sl.scope.version) || '' };
      for (const r of sl.logRecords || []) {
        out.push(JSON.stringify({
          resource, scope,
          time_unix_nano: str(r.timeUnixNano), observed_time_unix_nano: str(r.observedTimeUnixNano),
          severity_number: r.severityNumber, severity_text: r.severityText, body: anyValue(r.body),
          attributes: attrs(r.attributes), flags: r.flags, trace_id: hex(r.traceId), span_id: hex(r.spanId),
        }));
      }
    }
  }
  return out;
}

const service = {
  Export: {
    path: '/opentelemetry.proto.collector.logs.v1.LogsService/Export',
    requestStream: false,
    responseStream: false,
    requestDeserialize: (buf) => Request.decode(buf),
    requestSerialize: (m) => Buffer.from(Request.encode(m).finish()),
    responseDeserialize: (buf) => Response.decode(buf),
    responseSerialize: (m) => Buffer.from(Response.encode(m).finish()),
  },
};

const server = new grpc.Server();
server.addService(service, {
  Export(call, callback) {
    const text = lines(call.request).map((l) => l + '\n').join('');
    fs.writeSync(1, text);
    callback(null, Response.create({}));
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write('otlp_peer: cannot listen: ' + err.message + '\n');
    process.exit(1);
  }
  const tmp = process.argv[2] + '.tmp';
  fs.writeFileSync(tmp, port + '\n');
  fs.renameSync(tmp, process.argv[2]);
  process.stderr.write('otlp_peer: listening on port ' + port + '\n');
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
