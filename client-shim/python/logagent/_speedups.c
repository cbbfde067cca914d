/* _speedups.c — logagent._speedups: write_log in C, the hot part of the Python client (issue #19).
 *
 * pack(): one call's record as msgpack bytes, exactly what _record.pack(_record.build(...)) packs, byte for byte,
 * for the records it understands, and None for every other record, so that the caller takes the pure-Python
 * path. writer(): a write_log (logagent.write_log, Client.write_log) that binds the arguments, packs the record,
 * draws its id and calls the client's own _enqueue, and hands every call it does not take to the pure-Python
 * write_log unchanged. _record.py stays the reference: tests/python/test_speedups.py compares both paths on
 * thousands of random calls, call by call.
 *
 * Understood ("plain"): values whose exact type is str (valid UTF-8: no lone surrogates), int within
 * [-2^63, 2^64-1], float, bool, None, bytes, and dicts, lists and tuples of those (non-empty containers at most
 * MAX_DEPTH open at once, dict keys themselves plain scalars); metadata keys of exact type str. Everything else
 * (subclasses, sets, datetimes, big ints, other objects, over-deep nesting) goes to the Python path, whose
 * conversions call the caller's own code (str(), isoformat()) and whose errors carry the record's words.
 * No Python code runs while a record is packed: the arguments cannot change under the encoder.
 *
 * Buffer: a Client's queued records and the counters its writers change (_client._PyBuffer is its Python twin), so
 * that a plain record goes from write_log's arguments into the buffer without a Python lock or Python code. The
 * lock, the sender thread, fork and exit handling stay in _client.py: liblogagent's writer (client-shim/logagent.c)
 * has its own buffer, thread and fork handlers, which would give a Python process two of each and change what
 * flush(), get_stats() and the fork rules mean; see docs/python.md.
 *
 * The stable ABI (Py_LIMITED_API 3.10, one .abi3.so for every CPython >= 3.10) when the build asks for it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DEPTH 32 /* _record.MAX_DEPTH: non-empty containers open at once, the record map included */
#define STACK_BYTES 1024

/* A growable output buffer: the first STACK_BYTES in place, then the heap. */
struct out {
    unsigned char *p;
    size_t len, cap;
    unsigned char small[STACK_BYTES];
};

/* Outcome of packing a value: done, not understood (take the Python path), or out of memory (raised). */
enum { PACK_OK = 0, PACK_FALLBACK = 1, PACK_NOMEM = -1 };

static int out_grow(struct out *o, size_t n);

static inline int out_reserve(struct out *o, size_t n)
{
    return o->cap - o->len >= n ? PACK_OK : out_grow(o, n);
}

/* Room for n more bytes: the capacity doubled until they fit, never beyond PY_SSIZE_T_MAX (PyMem's bound, and no
 * size_t wrap on 32-bit machines: a length that cannot be had is MemoryError, then the Python path's answer). */
static int out_grow(struct out *o, size_t n)
{
    const size_t most = (size_t)PY_SSIZE_T_MAX;
    if (o->len > most || n > most - o->len) {
        PyErr_NoMemory();
        return PACK_NOMEM;
    }
    size_t need = o->len + n, cap = o->cap; /* cap >= STACK_BYTES > 0 */
    while (cap < need)
        cap = cap <= most / 2 ? cap * 2 : most;
    unsigned char *p = o->p == o->small ? PyMem_Malloc(cap) : PyMem_Realloc(o->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return PACK_NOMEM;
    }
    if (o->p == o->small)
        memcpy(p, o->small, o->len);
    o->p = p;
    o->cap = cap;
    return PACK_OK;
}

static void out_free(struct out *o)
{
    if (o->p != o->small)
        PyMem_Free(o->p);
}

static void put_be(unsigned char *d, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        d[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

/* A type byte and a big-endian number of `bytes` bytes (0: the type byte alone). */
static int put_head(struct out *o, unsigned char type, uint64_t v, int bytes)
{
    if (out_reserve(o, 1 + (size_t)bytes) != PACK_OK)
        return PACK_NOMEM;
    o->p[o->len] = type;
    put_be(o->p + o->len + 1, v, bytes);
    o->len += 1 + (size_t)bytes;
    return PACK_OK;
}

static int put_raw(struct out *o, const void *s, size_t n)
{
    if (out_reserve(o, n) != PACK_OK)
        return PACK_NOMEM;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return PACK_OK;
}

/* msgpack-python's integer forms: the smallest unsigned form for >= 0, the smallest signed one below. */
static int put_uint(struct out *o, uint64_t v)
{
    if (v < 128)
        return put_head(o, (unsigned char)v, 0, 0);
    if (v < 256)
        return put_head(o, 0xcc, v, 1);
    if (v < 65536)
        return put_head(o, 0xcd, v, 2);
    if (v <= 0xffffffffu)
        return put_head(o, 0xce, v, 4);
    return put_head(o, 0xcf, v, 8);
}

static int put_int(struct out *o, long long v)
{
    if (v >= 0)
        return put_uint(o, (uint64_t)v);
    if (v >= -32)
        return put_head(o, (unsigned char)(0xe0 | (v + 32)), 0, 0);
    if (v >= -128)
        return put_head(o, 0xd0, (uint64_t)v, 1);
    if (v >= -32768)
        return put_head(o, 0xd1, (uint64_t)v, 2);
    if (v >= -2147483648LL)
        return put_head(o, 0xd2, (uint64_t)v, 4);
    return put_head(o, 0xd3, (uint64_t)v, 8);
}

/* A str, bin, array or map header: fix form (when fix_max > 0 and n < fix_max), else 8 (str and bin only), 16
 * or 32 bits of length. */
static int put_len(struct out *o, size_t n, unsigned char fix, size_t fix_max, unsigned char t8, unsigned char t16)
{
    if (n < fix_max)
        return put_head(o, (unsigned char)(fix | n), 0, 0);
    if (t8 && n < 256)
        return put_head(o, t8, n, 1);
    if (n < 65536)
        return put_head(o, t16, n, 2);
    if (n > 0xffffffffu)
        return PACK_FALLBACK; /* msgpack refuses it: the Python path says so */
    return put_head(o, (unsigned char)(t16 + 1), n, 4);
}

static int put_utf8(struct out *o, const char *s, Py_ssize_t n)
{
    int r = put_len(o, (size_t)n, 0xa0, 32, 0xd9, 0xda);
    return r != PACK_OK ? r : put_raw(o, s, (size_t)n);
}

static int put_str(struct out *o, PyObject *v)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) { /* lone surrogates: the Python path's surrogateescape/replace retries */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return PACK_NOMEM;
        PyErr_Clear();
        return PACK_FALLBACK;
    }
    return put_utf8(o, s, n);
}

static int put_long(struct out *o, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0)
        return x == -1 && PyErr_Occurred() ? PACK_NOMEM : put_int(o, x);
    if (overflow < 0)
        return PACK_FALLBACK; /* below -2^63: sent as text by the Python path */
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return PACK_NOMEM;
        PyErr_Clear();
        return PACK_FALLBACK; /* above 2^64-1: text */
    }
    return put_uint(o, u);
}

static int put_double(struct out *o, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return put_head(o, 0xcb, bits, 8);
}

static int put_bytes(struct out *o, PyObject *v)
{
    char *s;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(v, &s, &n) < 0)
        return PACK_NOMEM;
    int r = put_len(o, (size_t)n, 0, 0, 0xc4, 0xc5);
    return r != PACK_OK ? r : put_raw(o, s, (size_t)n);
}

/* A plain scalar (see the top of the file), or PACK_FALLBACK for anything else. */
static int put_scalar(struct out *o, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyUnicode_Type)
        return put_str(o, v);
    if (t == &PyLong_Type)
        return put_long(o, v);
    if (v == Py_None)
        return put_head(o, 0xc0, 0, 0);
    if (v == Py_True || v == Py_False)
        return put_head(o, v == Py_True ? 0xc3 : 0xc2, 0, 0);
    if (t == &PyFloat_Type) {
        double d = PyFloat_AsDouble(v);
        return d == -1.0 && PyErr_Occurred() ? PACK_NOMEM : put_double(o, d);
    }
    if (t == &PyBytes_Type)
        return put_bytes(o, v);
    return PACK_FALLBACK;
}

static int put_value(struct out *o, PyObject *v, int open);

static int put_dict(struct out *o, PyObject *v, int open)
{
    Py_ssize_t n = PyDict_Size(v), pos = 0;
    if (n > 0 && open >= MAX_DEPTH)
        return PACK_FALLBACK; /* the Python path raises "nested deeper than ..." */
    int r = put_len(o, (size_t)n, 0x80, 16, 0, 0xde);
    PyObject *k, *x;
    while (r == PACK_OK && PyDict_Next(v, &pos, &k, &x)) {
        r = put_scalar(o, k);
        if (r == PACK_OK)
            r = put_value(o, x, open + 1);
    }
    return r;
}

static int put_sequence(struct out *o, PyObject *v, int open, int is_list)
{
    Py_ssize_t n = is_list ? PyList_Size(v) : PyTuple_Size(v);
    if (n > 0 && open >= MAX_DEPTH)
        return PACK_FALLBACK;
    int r = put_len(o, (size_t)n, 0x90, 16, 0, 0xdc);
    for (Py_ssize_t i = 0; r == PACK_OK && i < n; i++) {
        PyObject *x = is_list ? PyList_GetItem(v, i) : PyTuple_GetItem(v, i); /* borrowed */
        if (x == NULL)
            return PACK_NOMEM;
        r = put_value(o, x, open + 1);
    }
    return r;
}

/* A metadata or core value with `open` containers already open around it (1: the record map). */
static int put_value(struct out *o, PyObject *v, int open)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyDict_Type)
        return put_dict(o, v, open);
    if (t == &PyList_Type || t == &PyTuple_Type)
        return put_sequence(o, v, open, t == &PyList_Type);
    return put_scalar(o, v);
}

/* The core keys _record.build writes itself; a metadata key equal to one of them is left out (`timestamp` is
 * placed with the core keys instead). */
enum { K_MESSAGE, K_LEVEL, K_SERVICE, K_TRACE, K_SPAN, K_LOG_ID, K_TIMESTAMP, K_OTHER };
static const char *const core_names[] = {"message", "level", "service_name", "trace_id", "span_id", "log_id",
                                         "timestamp"};
static const unsigned char core_lens[] = {7, 5, 12, 8, 7, 6, 9};

static int core_key(const char *s, Py_ssize_t n)
{
    if (n < 5 || n > 12)
        return K_OTHER;
    for (int i = 0; i < K_OTHER; i++)
        if (n == core_lens[i] && s[0] == core_names[i][0] && memcmp(s, core_names[i], (size_t)n) == 0)
            return i;
    return K_OTHER;
}

/* One call: the core arguments (service, trace, span: Py_None when not given; level: Py_None for "INFO"), the
 * metadata as parallel arrays of keys and values (a dict's items, or a call's extra keywords), and the log id
 * (NULL: 32 placeholder bytes whose offset pack_record stores in log_id_at, for the writer to fill in). */
struct call {
    PyObject *message, *service, *level, *trace, *span, *log_id, *now;
    PyObject *const *keys;
    PyObject *const *vals;
    Py_ssize_t count;
    size_t log_id_at;
};

#define LOG_ID_LEN 32

/* Counts the record map's entries (core keys first, as _record.build places them) and finds the metadata's
 * `timestamp`. Returns PACK_OK, or PACK_FALLBACK for a metadata key that is not a str. */
static int count_entries(const struct call *c, const int *given, size_t *count, PyObject **timestamp)
{
    size_t n = 0;
    for (int i = 0; i < K_OTHER; i++)
        n += (size_t)given[i];
    *timestamp = NULL;
    for (Py_ssize_t i = 0; i < c->count; i++) {
        Py_ssize_t len;
        if (Py_TYPE(c->keys[i]) != &PyUnicode_Type)
            return PACK_FALLBACK;
        const char *s = PyUnicode_AsUTF8AndSize(c->keys[i], &len);
        if (s == NULL) {
            PyErr_Clear();
            return PACK_FALLBACK;
        }
        int ck = core_key(s, len);
        if (ck == K_TIMESTAMP)
            *timestamp = c->vals[i];
        else if (ck == K_OTHER || !given[ck])
            n++;
    }
    *count = n;
    return PACK_OK;
}

static int put_core(struct out *o, int key, PyObject *v)
{
    int r = put_utf8(o, core_names[key], core_lens[key]);
    return r != PACK_OK ? r : put_value(o, v, 1);
}

static int put_log_id(struct out *o, struct call *c)
{
    int r = put_utf8(o, core_names[K_LOG_ID], core_lens[K_LOG_ID]);
    if (r != PACK_OK || c->log_id != NULL)
        return r != PACK_OK ? r : put_value(o, c->log_id, 1);
    r = put_head(o, 0xd9, LOG_ID_LEN, 1); /* str8, as msgpack packs a 32-char str */
    c->log_id_at = o->len;
    return r != PACK_OK ? r : put_raw(o, "                                ", LOG_ID_LEN);
}

static int pack_record(struct out *o, struct call *c)
{
    int given[K_OTHER] = {1, 1, c->service != Py_None, c->trace != Py_None, c->span != Py_None, 1, 1};
    size_t count;
    PyObject *ts;
    int r = count_entries(c, given, &count, &ts);
    if (r == PACK_OK)
        r = put_len(o, count, 0x80, 16, 0, 0xde);
    if (r == PACK_OK)
        r = put_core(o, K_MESSAGE, c->message);
    if (r == PACK_OK && c->level == Py_None) { /* "level": "INFO" */
        r = put_utf8(o, "level", 5);
        if (r == PACK_OK)
            r = put_utf8(o, "INFO", 4);
    } else if (r == PACK_OK) {
        r = put_core(o, K_LEVEL, c->level);
    }
    PyObject *opt[] = {c->service, c->trace, c->span};
    for (int i = 0; r == PACK_OK && i < 3; i++)
        if (opt[i] != Py_None)
            r = put_core(o, K_SERVICE + i, opt[i]);
    if (r == PACK_OK)
        r = put_log_id(o, c);
    if (r == PACK_OK)
        r = put_core(o, K_TIMESTAMP, ts != NULL ? ts : c->now);
    for (Py_ssize_t i = 0; r == PACK_OK && i < c->count; i++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(c->keys[i], &len); /* cached by count_entries: cannot fail */
        if (s == NULL)
            return PACK_NOMEM;
        int ck = core_key(s, len);
        if (ck != K_OTHER && given[ck])
            continue;
        r = put_utf8(o, s, len);
        if (r == PACK_OK)
            r = put_value(o, c->vals[i], 1);
    }
    return r;
}

/* The record as a bytes object; Py_None when only the Python path can pack it; NULL with an exception set. */
static void out_init(struct out *o)
{
    o->p = o->small;
    o->len = 0;
    o->cap = sizeof o->small;
}

static PyObject *pack_call(struct call *c)
{
    struct out o;
    out_init(&o);
    int r = pack_record(&o, c);
    PyObject *res = NULL;
    if (r == PACK_OK)
        res = PyBytes_FromStringAndSize((const char *)o.p, (Py_ssize_t)o.len);
    else if (r == PACK_FALLBACK)
        res = Py_NewRef(Py_None);
    out_free(&o);
    return res;
}

#define META_STACK 32

PyDoc_STRVAR(pack_doc,
"pack(message, service_name, level, trace_id, span_id, metadata, log_id, now_ns) -> bytes or None\n\n"
"The msgpack bytes of _record.pack(_record.build(...)) for the same arguments (metadata: a dict), or None\n"
"when the record holds something only the Python path handles (then call it).");

static PyObject *speedups_pack(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_Format(PyExc_TypeError, "pack() takes 8 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *meta = args[5];
    if (Py_TYPE(args[0]) != &PyUnicode_Type || Py_TYPE(meta) != &PyDict_Type)
        Py_RETURN_NONE;
    PyObject *small[2 * META_STACK], **kv = small;
    Py_ssize_t n = PyDict_Size(meta), pos = 0, i = 0;
    if (n > META_STACK && (kv = PyMem_Malloc(2 * (size_t)n * sizeof *kv)) == NULL)
        return PyErr_NoMemory();
    PyObject *k, *v;
    while (i < n && PyDict_Next(meta, &pos, &k, &v)) { /* borrowed: nothing below runs Python code */
        kv[i] = k;
        kv[n + i] = v;
        i++;
    }
    struct call c = {args[0], args[1], args[2], args[3], args[4], args[6], args[7], kv, kv + n, i, 0};
    PyObject *res = pack_call(&c);
    if (kv != small)
        PyMem_Free(kv);
    return res;
}

/* ---- write_log in C ----------------------------------------------------------------------------------------
 *
 * writer(client, names, fallback, ids_names) -> a builtin function with write_log's signature:
 * (message, service_name=None, level="INFO", trace_id=None, span_id=None, **metadata). It does what
 * _client.Client.write does for the calls it understands — message an exact str, arguments bound as the
 * signature says, a record pack() takes — and hands every other call, unchanged, to fallback (the pure-Python
 * write_log with the same signature), so errors and conversions stay the Python path's:
 *   1. the client: `client`, or names["default_client"]() (the process-wide one, looked up at each call in
 *      logagent's globals as the Python write_log does, so a mock.patch of logagent.default_client is honoured;
 *      a ValueError from it: fallback, which says why; any other exception propagates, as in the Python path);
 *   2. the record packed with a placeholder id, before any random bits are drawn (so a fallback draws them the
 *      same way as the Python path: one getrandbits(128) per record that gets an id);
 *   3. the id: ids_names["_ids"].getrandbits(128) (_client's generator, looked up at each call as Client.write
 *      does) as 32 lowercase hex digits, written into the record;
 *   4. the limit: a record above client.max_record goes to client._reject(...) with the Python path's words;
 *   5. client._enqueue(data): the C Buffer's own enqueue when that is what the attribute holds (called directly:
 *      no Python call for a record that fits), else whatever it is (the Python Client._enqueue, a test's stand-in);
 *      its answer ("" or why not) becomes the result dict.
 * The state it holds (the client, the callables) is garbage-collected like any object: a Client holding its own
 * writer is a cycle the collector can break.
 * Pickling: a builtin function pickles as getattr(its __self__, name), so the state's __reduce__ decides. The
 * process-wide writer (no client) reduces to importlib.import_module(fallback.__module__), "logagent": unpickling
 * gives logagent.write_log, as pickling the pure-Python function does (ProcessPoolExecutor.submit(write_log, ...)).
 * A client's writer raises TypeError, as pickling the bound method of a Client (locks, a socket) does. */

typedef struct {
    PyObject_HEAD
    PyObject *client;      /* NULL: names["default_client"]() each call */
    PyObject *names;       /* logagent's globals (a dict), or NULL with a client */
    PyObject *fallback;
    PyObject *ids_names;   /* _client's globals (a dict): "_ids", the log id generator */
} WriterState;

static PyObject *str_enqueue, *str_reject, *str_max_record, *str_success, *str_log_id, *str_error_message,
    *str_empty, *str_default_client, *str_ids, *str_getrandbits, *int_128, *int_64;

/* names[name] as a new reference, or NULL with NameError (the Python path's LOAD_GLOBAL; builtins aside). */
static PyObject *global(PyObject *names, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(names, name); /* borrowed */
    if (v == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_NameError, "name '%U' is not defined", name);
    return v ? Py_NewRef(v) : NULL;
}

static int state_traverse(PyObject *self, visitproc visit, void *arg)
{
    WriterState *s = (WriterState *)self;
    Py_VISIT(s->client);
    Py_VISIT(s->names);
    Py_VISIT(s->fallback);
    Py_VISIT(s->ids_names);
    return 0;
}

static int state_clear(PyObject *self)
{
    WriterState *s = (WriterState *)self;
    Py_CLEAR(s->client);
    Py_CLEAR(s->names);
    Py_CLEAR(s->fallback);
    Py_CLEAR(s->ids_names);
    return 0;
}

static void state_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    state_clear(self);
    freefunc free_fn = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    free_fn(self);
    Py_DECREF(tp);
}

/* __reduce__: see the comment at the top of this section. */
static PyObject *state_reduce(PyObject *self, PyObject *unused)
{
    (void)unused;
    WriterState *s = (WriterState *)self;
    if (s->client != NULL || s->fallback == NULL) {
        PyErr_SetString(PyExc_TypeError, "cannot pickle a logagent.Client's write_log (pickle logagent.write_log, "
                                         "or make the Client in the process that writes)");
        return NULL;
    }
    PyObject *name = PyObject_GetAttrString(s->fallback, "__module__");
    PyObject *importlib = name ? PyImport_ImportModule("importlib") : NULL;
    PyObject *import = importlib ? PyObject_GetAttrString(importlib, "import_module") : NULL;
    PyObject *res = import ? Py_BuildValue("(O(O))", import, name) : NULL;
    Py_XDECREF(import);
    Py_XDECREF(importlib);
    Py_XDECREF(name);
    return res;
}

static PyMethodDef state_methods[] = {
    {"__reduce__", state_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot state_slots[] = {
    {Py_tp_methods, state_methods},
    {Py_tp_traverse, (void *)state_traverse},
    {Py_tp_clear, (void *)state_clear},
    {Py_tp_dealloc, (void *)state_dealloc},
    {0, NULL},
};

static PyType_Spec state_spec = {
    .name = "logagent._speedups.WriterState",
    .basicsize = sizeof(WriterState),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION, /* writer() makes them */
    .slots = state_slots,
};

static PyTypeObject *state_type; /* made once at import, never changed */

/* ---- the client's buffer in C ------------------------------------------------------------------------------
 *
 * Buffer(owner, slow, cap, linger_bytes): the bytes a Client has queued for its sender thread, and the counters
 * its writers change, so that a write_log of a plain record appends without a Python lock and without running
 * Python code (issue #19: with 50 threads, the Python lock convoyed with the GIL). _client._PyBuffer is the same
 * object in Python (the pure client, and the reference): same methods, same attributes, same answers.
 *
 * No lock of its own: every method runs start to end holding the GIL and calls no Python code (but enqueue's
 * wake and slow path, after its own work is done), so each is atomic with respect to every other Python thread.
 * The Client's lock still orders everything else (the sender's state, waiters, the socket); the methods that
 * make a decision the writers must see (idle, linger) take it in one call, so that a writer appending between
 * the sender's check and its wait cannot be missed.
 *
 *   enqueue(data) -> "" or why not: the writers' path (Client._enqueue on an instance whose class does not
 *       override it; the C write_log calls it directly). While the sender runs (open) and the record fits, it
 *       appends and counts; when the sender is idle (or lingering with linger_bytes pending) it marks it WAKING
 *       and calls owner._wake() (the Condition, under the Client's lock: once per idle spell, not per record).
 *       Anything else (not started, closed, full: the words and waits of the Python code) is slow(owner, data),
 *       Client._enqueue itself, which calls append() under the lock.
 *   append(data) -> 0 appended, 1 appended and the sender must be woken (state set WAKING), 2 full (no room
 *       under cap for pending + in-flight bytes).
 *   idle() -> True and state IDLE when nothing is pending (and the arrays a backlog grew go back: buffer_release);
 *       linger() -> True and state LINGER when less than linger_bytes is pending.
 *   take(limit) -> bytes: whole records off the front while under limit (at least one), now in flight
 *       (io_left); advance(n): n of them written (done_bytes, io_off; returns the records completed, counted
 *       in sent); rewind(): back to the start of the record a broken connection cut (it goes again whole).
 *   clear(): nothing pending or in flight (close); reset(): that, counters zeroed, state BUSY, not open (the
 *       forked child's fresh state).
 * Attributes: pending_bytes, io_left, buffered (their sum, one read), io_off, enq_bytes, done_bytes, written,
 * sent (read-only), state and open (the sender's, written under the Client's lock). */

enum { ST_BUSY = 0, ST_IDLE = 1, ST_LINGER = 2, ST_WAKING = 3 }; /* _client._BUSY, _IDLE, _LINGER, _WAKING */
enum { APP_OK = 0, APP_WAKE = 1, APP_FULL = 2 };

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* the Client (a cycle the collector breaks, as the C write_log's is) */
    PyObject *slow;  /* Client._enqueue, the Python function: slow(owner, data) */
    unsigned char *data; /* pending records: data[start, len) */
    size_t start, len, cap_data;
    size_t *lens; /* pending record lengths: lens[first, nrec) */
    size_t first, nrec, cap_lens;
    size_t *io_ends; /* the batch in flight: ends of its records, io_n of them; io_rec completed */
    size_t io_n, io_rec, cap_io, io_size;
    long long cap, linger_bytes;
    long long pending_bytes, io_left, io_off, enq_bytes, done_bytes, written, sent;
    int state, open;
} Buffer;

static PyTypeObject *buffer_type; /* made once at import, never changed */
static PyObject *str_wake;

#define KEEP_BYTES (1u << 20) /* an emptied buffer keeps its arrays up to this size (records: 1/64 of it) */

/* Room for more entries of `size` bytes at *p (capacity *capacity, used `used`): doubled until `need` fit. */
static int grow(void **p, size_t *capacity, size_t need, size_t size, size_t least)
{
    if (need <= *capacity)
        return 0;
    size_t c = *capacity ? *capacity : least;
    while (c < need) {
        if (c > (size_t)PY_SSIZE_T_MAX / 2 / size) {
            PyErr_NoMemory();
            return -1;
        }
        c *= 2;
    }
    void *q = PyMem_Realloc(*p, c * size);
    if (q == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *capacity = c;
    return 0;
}

/* Appends one record of n bytes (APP_* or -1 with MemoryError). */
static int buffer_put(Buffer *b, const void *p, size_t n)
{
    if ((unsigned long long)b->pending_bytes + (unsigned long long)b->io_left + n > (unsigned long long)b->cap)
        return APP_FULL;
    /* Out of room at the end: reuse the taken space at the front when it is at least as large as what would move
     * (so each byte is moved at most once per time it is taken: amortised O(1)), else grow. */
    if (b->start > 0 && b->len + n > b->cap_data && b->start >= b->len - b->start) {
        memmove(b->data, b->data + b->start, b->len - b->start);
        b->len -= b->start;
        b->start = 0;
    }
    if (b->first > 0 && b->nrec == b->cap_lens && b->first >= b->nrec - b->first) {
        memmove(b->lens, b->lens + b->first, (b->nrec - b->first) * sizeof *b->lens);
        b->nrec -= b->first;
        b->first = 0;
    }
    if (grow((void **)&b->data, &b->cap_data, b->len + n, 1, 64 << 10) < 0 ||
        grow((void **)&b->lens, &b->cap_lens, b->nrec + 1, sizeof *b->lens, 256) < 0)
        return -1;
    if (n > 0) /* (an empty record: data may still be NULL) */
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->lens[b->nrec++] = n;
    b->pending_bytes += (long long)n;
    b->enq_bytes += (long long)n;
    b->written++;
    if (b->state == ST_IDLE || (b->state == ST_LINGER && b->pending_bytes >= b->linger_bytes)) {
        b->state = ST_WAKING; /* one writer wakes it; the others see WAKING */
        return APP_WAKE;
    }
    return APP_OK;
}

/* owner._wake(); on an error (a KeyboardInterrupt in its lock wait) the sender is left marked idle again, so the
 * next writer wakes it: the record itself is queued either way. */
static int buffer_wake(Buffer *b, int was)
{
    PyObject *r = PyObject_CallMethodObjArgs(b->owner, str_wake, NULL);
    if (r == NULL) {
        if (b->state == ST_WAKING)
            b->state = was;
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* enqueue for the record p[0, n): "" or why not, NULL on an error. data: the same bytes as an object for the slow
 * path, or NULL (the C write_log's record, still in its own memory: made into bytes only if the slow path needs it). */
static PyObject *buffer_enqueue_bytes(Buffer *b, PyObject *data, const char *p, Py_ssize_t n)
{
    if (b->open && b->owner != NULL) {
        int was = b->state, r = buffer_put(b, p, (size_t)n);
        if (r < 0)
            return NULL;
        if (r == APP_WAKE && buffer_wake(b, was) < 0)
            return NULL;
        if (r != APP_FULL)
            return Py_NewRef(str_empty);
    }
    if (b->slow == NULL || b->owner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "logagent: a Buffer without its client");
        return NULL;
    }
    PyObject *made = data == NULL ? PyBytes_FromStringAndSize(p, n) : NULL;
    if (data == NULL && made == NULL)
        return NULL;
    PyObject *res = PyObject_CallFunctionObjArgs(b->slow, b->owner, data ? data : made, NULL);
    Py_XDECREF(made);
    return res;
}

static int bytes_of(PyObject *data, char **p, Py_ssize_t *n)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "logagent Buffer: a record must be bytes");
        return -1;
    }
    return PyBytes_AsStringAndSize(data, p, n);
}

static PyObject *buffer_enqueue(PyObject *self, PyObject *data)
{
    char *p;
    Py_ssize_t n;
    if (bytes_of(data, &p, &n) < 0)
        return NULL;
    return buffer_enqueue_bytes((Buffer *)self, data, p, n);
}

static PyObject *buffer_append(PyObject *self, PyObject *data)
{
    char *p;
    Py_ssize_t n;
    if (bytes_of(data, &p, &n) < 0)
        return NULL;
    int r = buffer_put((Buffer *)self, p, (size_t)n);
    return r < 0 ? NULL : PyLong_FromLong(r);
}

/* Frees the arrays above KEEP_BYTES of an empty buffer. Called when the sender goes idle (and at clear), not at each
 * take that empties it: a sender taking half the bound per take empties it at every take while writers stream, and
 * regrowing the array each time (realloc's copies and page faults) was 10% of a 50-thread writer's CPU. */
static void buffer_release(Buffer *b)
{
    if (b->cap_data > KEEP_BYTES) {
        PyMem_Free(b->data);
        b->data = NULL;
        b->cap_data = 0;
    }
    if (b->cap_lens > KEEP_BYTES / 64) {
        PyMem_Free(b->lens);
        b->lens = NULL;
        b->cap_lens = 0;
    }
}

/* Nothing pending: the arrays' space is all free again (kept: buffer_release). */
static void buffer_drained(Buffer *b)
{
    b->first = b->nrec = b->start = b->len = 0;
}

static PyObject *buffer_idle(PyObject *self, PyObject *unused)
{
    (void)unused;
    Buffer *b = (Buffer *)self;
    if (b->pending_bytes != 0)
        Py_RETURN_FALSE;
    if (b->first == b->nrec)
        buffer_release(b); /* the sender is about to sleep: a backlog's arrays go back now */
    b->state = ST_IDLE;
    Py_RETURN_TRUE;
}

static PyObject *buffer_linger(PyObject *self, PyObject *unused)
{
    (void)unused;
    Buffer *b = (Buffer *)self;
    if (b->pending_bytes >= b->linger_bytes)
        Py_RETURN_FALSE;
    b->state = ST_LINGER;
    Py_RETURN_TRUE;
}

/* Nothing pending: start over at the front, and give back arrays a backlog grew beyond what a busy sender needs
 * (a few batches), so that a Client keeps no more memory after the agent's absence than before it. */

static PyObject *buffer_take(PyObject *self, PyObject *arg)
{
    Buffer *b = (Buffer *)self;
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (limit < 0)
        limit = 0; /* one record, as _PyBuffer (not a size_t that takes them all) */
    size_t total = 0, k = 0, avail = b->nrec - b->first;
    while (k < avail && (k == 0 || total < (size_t)limit))
        total += b->lens[b->first + k++];
    if (grow((void **)&b->io_ends, &b->cap_io, k, sizeof *b->io_ends, 256) < 0)
        return NULL;
    PyObject *io = PyBytes_FromStringAndSize(total ? (const char *)b->data + b->start : "", (Py_ssize_t)total);
    if (io == NULL)
        return NULL;
    size_t end = 0;
    for (size_t i = 0; i < k; i++)
        b->io_ends[i] = end += b->lens[b->first + i];
    b->first += k;
    b->start += total;
    if (b->first == b->nrec)
        buffer_drained(b);
    b->io_n = k;
    b->io_rec = 0;
    b->io_size = total;
    b->io_off = 0;
    b->pending_bytes -= (long long)total;
    b->io_left = (long long)total;
    return io;
}

static PyObject *buffer_advance(PyObject *self, PyObject *arg)
{
    Buffer *b = (Buffer *)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || (size_t)b->io_off + (size_t)n > b->io_size) {
        PyErr_SetString(PyExc_ValueError, "logagent Buffer.advance: beyond the batch in flight");
        return NULL;
    }
    b->io_off += n;
    b->io_left -= n;
    b->done_bytes += n;
    long done = 0;
    while (b->io_rec < b->io_n && b->io_ends[b->io_rec] <= (size_t)b->io_off) {
        b->io_rec++;
        done++;
    }
    b->sent += done;
    return PyLong_FromLong(done);
}

static PyObject *buffer_rewind(PyObject *self, PyObject *unused)
{
    (void)unused;
    Buffer *b = (Buffer *)self;
    long long start = b->io_rec ? (long long)b->io_ends[b->io_rec - 1] : 0, cut = b->io_off - start;
    b->io_left += cut;
    b->done_bytes -= cut;
    b->io_off = start;
    Py_RETURN_NONE;
}

static void buffer_empty(Buffer *b)
{
    buffer_drained(b);
    buffer_release(b);
    b->io_n = b->io_rec = b->io_size = 0;
    b->pending_bytes = b->io_left = b->io_off = 0;
}

static PyObject *buffer_clear(PyObject *self, PyObject *unused)
{
    (void)unused;
    buffer_empty((Buffer *)self);
    Py_RETURN_NONE;
}

static PyObject *buffer_reset(PyObject *self, PyObject *unused)
{
    (void)unused;
    Buffer *b = (Buffer *)self;
    buffer_empty(b);
    b->enq_bytes = b->done_bytes = b->written = b->sent = 0;
    b->state = ST_BUSY;
    b->open = 0;
    Py_RETURN_NONE;
}

static PyObject *buffer_buffered(PyObject *self, void *unused)
{
    (void)unused;
    Buffer *b = (Buffer *)self;
    return PyLong_FromLongLong(b->pending_bytes + b->io_left);
}

static int buffer_init(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Buffer *b = (Buffer *)self;
    PyObject *owner, *slow;
    long long cap, linger;
    if (kwargs != NULL && PyDict_Size(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "Buffer() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OOLL:Buffer", &owner, &slow, &cap, &linger))
        return -1;
    if (cap < 0 || linger < 0) {
        PyErr_SetString(PyExc_ValueError, "Buffer(): cap and linger_bytes must be >= 0");
        return -1;
    }
    Py_CLEAR(b->owner);
    Py_CLEAR(b->slow);
    b->owner = Py_NewRef(owner);
    b->slow = Py_NewRef(slow);
    b->cap = cap;
    b->linger_bytes = linger;
    buffer_reset(self, NULL);
    return 0;
}

static int buffer_traverse(PyObject *self, visitproc visit, void *arg)
{
    Buffer *b = (Buffer *)self;
    Py_VISIT(b->owner);
    Py_VISIT(b->slow);
    return 0;
}

static int buffer_clear_refs(PyObject *self)
{
    Buffer *b = (Buffer *)self;
    Py_CLEAR(b->owner);
    Py_CLEAR(b->slow);
    return 0;
}

static void buffer_dealloc(PyObject *self)
{
    Buffer *b = (Buffer *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    buffer_clear_refs(self);
    PyMem_Free(b->data);
    PyMem_Free(b->lens);
    PyMem_Free(b->io_ends);
    freefunc free_fn = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    free_fn(self);
    Py_DECREF(tp);
}

static PyMethodDef buffer_methods[] = {
    {"enqueue", buffer_enqueue, METH_O, "enqueue(data) -> '' or why not: the writers' path (see _speedups.c)"},
    {"append", buffer_append, METH_O, "append(data) -> 0 appended, 1 appended (wake the sender), 2 full"},
    {"idle", buffer_idle, METH_NOARGS, "idle() -> True (state IDLE) when nothing is pending"},
    {"linger", buffer_linger, METH_NOARGS, "linger() -> True (state LINGER) when less than linger_bytes is pending"},
    {"take", buffer_take, METH_O, "take(limit) -> bytes: whole records off the front, now in flight"},
    {"advance", buffer_advance, METH_O, "advance(n) -> records completed by n more bytes written"},
    {"rewind", buffer_rewind, METH_NOARGS, "rewind(): back to the start of the record in flight"},
    {"clear", buffer_clear, METH_NOARGS, "clear(): nothing pending or in flight"},
    {"reset", buffer_reset, METH_NOARGS, "reset(): clear(), counters zeroed, state BUSY, not open"},
    {NULL, NULL, 0, NULL},
};

#define BUF_RO(name) {#name, T_LONGLONG, offsetof(Buffer, name), READONLY, NULL}
static PyMemberDef buffer_members[] = {
    BUF_RO(cap), BUF_RO(linger_bytes), BUF_RO(pending_bytes), BUF_RO(io_left), BUF_RO(io_off), BUF_RO(enq_bytes),
    BUF_RO(done_bytes), BUF_RO(written), BUF_RO(sent),
    {"state", T_INT, offsetof(Buffer, state), 0, NULL},
    {"open", T_INT, offsetof(Buffer, open), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef buffer_getset[] = {
    {"buffered", buffer_buffered, NULL, "pending_bytes + io_left, read at once", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot buffer_slots[] = {
    {Py_tp_init, (void *)buffer_init},
    {Py_tp_methods, buffer_methods},
    {Py_tp_members, buffer_members},
    {Py_tp_getset, buffer_getset},
    {Py_tp_traverse, (void *)buffer_traverse},
    {Py_tp_clear, (void *)buffer_clear_refs},
    {Py_tp_dealloc, (void *)buffer_dealloc},
    {Py_tp_doc, (void *)"Buffer(owner, slow, cap, linger_bytes): a Client's queued records (see _speedups.c)"},
    {0, NULL},
};

static PyType_Spec buffer_spec = {
    .name = "logagent._speedups.Buffer",
    .basicsize = sizeof(Buffer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = buffer_slots,
};

/* The Buffer behind a bound enqueue (client._enqueue as Client.__init__ sets it), or NULL: call it as Python. */
static Buffer *buffer_of(PyObject *method)
{
    if (!PyCFunction_Check(method) || PyCFunction_GetFunction(method) != buffer_enqueue)
        return NULL;
    PyObject *self = PyCFunction_GetSelf(method); /* borrowed */
    if (self == NULL || Py_TYPE(self) != buffer_type)
        return NULL;
    return (Buffer *)self;
}

/* fallback(*args, **kwargs) from a vectorcall's arguments. */
static PyObject *call_fallback(WriterState *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0;
    PyObject *tuple = PyTuple_New(nargs), *kw = nkw ? PyDict_New() : NULL, *res = NULL;
    if (tuple == NULL || (nkw && kw == NULL))
        goto out;
    for (Py_ssize_t i = 0; i < nargs; i++)
        PyTuple_SetItem(tuple, i, Py_NewRef(args[i])); /* steals the new reference */
    for (Py_ssize_t i = 0; i < nkw; i++)
        if (PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0)
            goto out;
    res = PyObject_Call(s->fallback, tuple, kw);
out:
    Py_XDECREF(tuple);
    Py_XDECREF(kw);
    return res;
}

enum { P_MESSAGE, P_SERVICE, P_LEVEL, P_TRACE, P_SPAN, P_COUNT }; /* write_log's parameters, in order */

/* Binds the arguments as write_log's signature does. Returns 0, or -1 when only Python can say what happens
 * (a missing message, a parameter given twice, too many positionals: the fallback raises the TypeError). */
static int bind_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **p, PyObject **keys,
                     PyObject **vals, Py_ssize_t *count)
{
    static const int param_of[K_OTHER] = {P_MESSAGE, P_LEVEL, P_SERVICE, P_TRACE, P_SPAN, -1, -1};
    if (nargs > P_COUNT)
        return -1;
    for (int i = 0; i < P_COUNT; i++)
        p[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0, m = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GetItem(kwnames, i);
        Py_ssize_t len;
        const char *s = Py_TYPE(k) == &PyUnicode_Type ? PyUnicode_AsUTF8AndSize(k, &len) : NULL;
        if (s == NULL) {
            PyErr_Clear();
            return -1;
        }
        int ck = core_key(s, len), param = ck == K_OTHER ? -1 : param_of[ck];
        if (param < 0) {
            keys[m] = k;
            vals[m++] = args[nargs + i];
        } else if (p[param] != NULL) {
            return -1;
        } else {
            p[param] = args[nargs + i];
        }
    }
    *count = m;
    return p[P_MESSAGE] != NULL ? 0 : -1;
}

static PyObject *result(PyObject *ok, PyObject *log_id, PyObject *error)
{
    PyObject *d = PyDict_New();
    if (d != NULL && (PyDict_SetItem(d, str_success, ok) < 0 || PyDict_SetItem(d, str_log_id, log_id) < 0 ||
                      PyDict_SetItem(d, str_error_message, error) < 0))
        Py_CLEAR(d);
    return d;
}

/* 32 lowercase hex digits of _ids.getrandbits(128) ("%032x" as _client.py writes them) into dst[33]; 0 or -1 with an
 * exception set. */
static int random_id(WriterState *s, char *dst)
{
    PyObject *ids = global(s->ids_names, str_ids);
    PyObject *bits = ids ? PyObject_CallMethodObjArgs(ids, str_getrandbits, int_128, NULL) : NULL;
    Py_XDECREF(ids);
    if (bits == NULL)
        return -1;
    PyObject *high = PyNumber_Rshift(bits, int_64);
    if (high == NULL) {
        Py_DECREF(bits);
        return -1;
    }
    unsigned long long lo = PyLong_AsUnsignedLongLongMask(bits), hi = (unsigned long long)-1;
    Py_DECREF(bits);
    if (lo != (unsigned long long)-1 || !PyErr_Occurred())
        hi = PyLong_AsUnsignedLongLongMask(high);
    Py_DECREF(high);
    if (hi == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        dst[i] = digits[(hi >> (60 - 4 * i)) & 15];
        dst[16 + i] = digits[(lo >> (60 - 4 * i)) & 15];
    }
    dst[LOG_ID_LEN] = '\0';
    return 0;
}

static PyObject *now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0) /* time.time_ns()'s clock */
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

/* The record packed into o (an initialised out) with its id: 1; or 0 for "ask the fallback" (no exception); or -1
 * with an exception set. */
static int record(WriterState *s, PyObject *const *p, PyObject **keys, PyObject **vals, Py_ssize_t count, char *id,
                  struct out *o)
{
    PyObject *now = now_ns();
    if (now == NULL)
        return -1;
    struct call c = {p[P_MESSAGE], p[P_SERVICE] ? p[P_SERVICE] : Py_None, p[P_LEVEL] ? p[P_LEVEL] : Py_None,
                     p[P_TRACE] ? p[P_TRACE] : Py_None, p[P_SPAN] ? p[P_SPAN] : Py_None, NULL, now, keys, vals,
                     count, 0};
    int r = pack_record(o, &c);
    Py_DECREF(now);
    if (r != PACK_OK) { /* out of memory in C, or a record for the Python path: ask it */
        PyErr_Clear();
        return 0;
    }
    if (random_id(s, id) < 0)
        return -1;
    memcpy(o->p + c.log_id_at, id, LOG_ID_LEN); /* our own memory: nothing else has seen it */
    return 1;
}

/* The words of client._reject for a record of n bytes above client.max_record (limit), as the Python path's
 * "%d" % limit makes them; NULL with no exception when n is within the limit; NULL with one on an error (a limit
 * that does not compare with an int: the Python path's TypeError). An int limit is the fast case; any other
 * (a float, an int beyond Py_ssize_t) is compared and formatted by Python, as Client.write does. */
static PyObject *too_large(Py_ssize_t n, PyObject *limit)
{
    if (PyLong_Check(limit)) {
        Py_ssize_t max = PyLong_AsSsize_t(limit);
        if (max != -1 || !PyErr_Occurred()) {
            return n > max ? PyUnicode_FromFormat("record too large (%zd bytes, limit %zd): record dropped", n, max)
                           : NULL;
        }
        PyErr_Clear(); /* beyond Py_ssize_t: Python's comparison below */
    }
    PyObject *size = PyLong_FromSsize_t(n), *msg = NULL;
    int above = size ? PyObject_RichCompareBool(size, limit, Py_GT) : -1;
    if (above > 0) {
        PyObject *fmt = PyUnicode_FromString("record too large (%d bytes, limit %d): record dropped");
        PyObject *args = fmt ? PyTuple_Pack(2, size, limit) : NULL;
        msg = args ? PyUnicode_Format(fmt, args) : NULL;
        Py_XDECREF(args);
        Py_XDECREF(fmt);
    }
    Py_XDECREF(size);
    return msg;
}

/* client._enqueue(the record in o) or, above client.max_record, client._reject(...); the result dict. */
static PyObject *hand_over(PyObject *client, const struct out *o, const char *id)
{
    PyObject *limit = PyObject_GetAttr(client, str_max_record);
    if (limit == NULL)
        return NULL;
    PyObject *msg = too_large((Py_ssize_t)o->len, limit);
    Py_DECREF(limit);
    if (msg != NULL) {
        PyObject *res = PyObject_CallMethodObjArgs(client, str_reject, msg, NULL);
        Py_DECREF(msg);
        return res;
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *enqueue = PyObject_GetAttr(client, str_enqueue), *err = NULL;
    if (enqueue == NULL)
        return NULL;
    Buffer *b = buffer_of(enqueue); /* the C buffer's own enqueue: no Python call, no bytes object for a record
                                     * that fits */
    if (b != NULL) {
        err = buffer_enqueue_bytes(b, NULL, (const char *)o->p, (Py_ssize_t)o->len);
    } else {
        PyObject *data = PyBytes_FromStringAndSize((const char *)o->p, (Py_ssize_t)o->len);
        err = data ? PyObject_CallFunctionObjArgs(enqueue, data, NULL) : NULL;
        Py_XDECREF(data);
    }
    Py_DECREF(enqueue);
    if (err == NULL)
        return NULL;
    int failed = PyObject_IsTrue(err);
    PyObject *res = NULL;
    if (failed == 0) {
        PyObject *log_id = PyUnicode_FromStringAndSize(id, LOG_ID_LEN);
        res = log_id ? result(Py_True, log_id, str_empty) : NULL;
        Py_XDECREF(log_id);
    } else if (failed > 0) {
        res = result(Py_False, str_empty, err);
    }
    Py_DECREF(err);
    return res;
}

static PyObject *writer_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    WriterState *s = (WriterState *)self;
    Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0, count;
    PyObject *p[P_COUNT], *small[2 * META_STACK], **kv = small, *client = NULL, *res = NULL;
    char id[LOG_ID_LEN + 1];
    int ok = 0;
    struct out o; /* the record, packed in place (the first STACK_BYTES on this stack) */
    out_init(&o);
    if (nkw > META_STACK && (kv = PyMem_Malloc(2 * (size_t)nkw * sizeof *kv)) == NULL)
        return PyErr_NoMemory();
    if (bind_args(args, nargs, kwnames, p, kv, kv + (nkw > META_STACK ? nkw : META_STACK), &count) < 0 ||
        Py_TYPE(p[P_MESSAGE]) != &PyUnicode_Type)
        goto fallback; /* the Python path's TypeError, or its "invalid argument" result */
    if (s->client != NULL) {
        client = Py_NewRef(s->client);
    } else {
        PyObject *get_client = global(s->names, str_default_client);
        client = get_client ? PyObject_CallNoArgs(get_client) : NULL;
        Py_XDECREF(get_client);
    }
    if (client == NULL) { /* no process-wide client (a bad LOGAGENT_CLIENT_* value): the Python path says why */
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            goto out; /* the Python path catches ValueError only: anything else is the caller's */
        PyErr_Clear();
        goto fallback;
    }
    ok = record(s, p, kv, kv + (nkw > META_STACK ? nkw : META_STACK), count, id, &o);
    if (ok == 1)
        res = hand_over(client, &o, id);
    if (ok != 0)
        goto out;
fallback:
    res = call_fallback(s, args, nargs, kwnames);
out:
    Py_XDECREF(client);
    out_free(&o);
    if (kv != small)
        PyMem_Free(kv);
    return res;
}

PyDoc_STRVAR(write_log_doc,
"write_log($self, /, message, service_name=None, level='INFO', trace_id=None, span_id=None, **metadata)\n--\n\n"
"Queues one record for the agent. Returns {\"success\": bool, \"log_id\": str, \"error_message\": str}.\n\n"
"logagent's write_log with its record packed in C (logagent._speedups); the same call, result and\n"
"guarantees as the pure-Python one (logagent.implementation says which one runs). success: the record is\n"
"queued (in the agent's socket, or in this process's buffer while the agent is away); log_id: 32 lowercase\n"
"hex chars made here and sent with the record (\"\" on failure); error_message: why not, otherwise.\n"
"Metadata values may be of any type; timestamp= replaces \"now\". Never raises for a bad record.");

static PyMethodDef writer_def = {"write_log", (PyCFunction)(void (*)(void))writer_call,
                                 METH_FASTCALL | METH_KEYWORDS, write_log_doc};

PyDoc_STRVAR(writer_doc,
"writer(client, names, fallback, ids_names) -> write_log\n\n"
"A write_log in C on `client` (None: names['default_client']() at each call, the process-wide client; names:\n"
"logagent's globals(), or None with a client). fallback: the pure-Python write_log of the same signature,\n"
"called with the same arguments for every call the C path does not take; ids_names: _client's globals(),\n"
"where _ids, the log id generator, is looked up at each call.");

static PyObject *speedups_writer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "writer() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if ((args[0] == Py_None && !PyDict_Check(args[1])) || (args[1] != Py_None && !PyDict_Check(args[1])) ||
        !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "writer(): names (None with a client) and ids_names must be dicts");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(state_type, Py_tp_alloc);
    WriterState *s = (WriterState *)alloc(state_type, 0);
    if (s == NULL)
        return NULL;
    s->client = args[0] == Py_None ? NULL : Py_NewRef(args[0]);
    s->names = args[1] == Py_None ? NULL : Py_NewRef(args[1]);
    s->fallback = Py_NewRef(args[2]);
    s->ids_names = Py_NewRef(args[3]);
    PyObject *module = PyObject_GetAttrString(args[2], "__module__"); /* the fallback's: "logagent" */
    PyObject *f = module ? PyCFunction_NewEx(&writer_def, (PyObject *)s, module) : NULL;
    Py_XDECREF(module);
    Py_DECREF(s);
    return f;
}

static PyMethodDef speedups_methods[] = {
    {"pack", (PyCFunction)(void (*)(void))speedups_pack, METH_FASTCALL, pack_doc},
    {"writer", (PyCFunction)(void (*)(void))speedups_writer, METH_FASTCALL, writer_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logagent._speedups",
    .m_doc = "The Python client's record encoder and write_log in C (see _record.py, the reference).",
    .m_size = 0,
    .m_methods = speedups_methods,
};

/* The constants the writer uses, made once (interned strings, two ints, the state type). */
static int init_constants(void)
{
    struct { PyObject **p; const char *s; } strs[] = {
        {&str_enqueue, "_enqueue"}, {&str_reject, "_reject"}, {&str_max_record, "max_record"},
        {&str_success, "success"}, {&str_log_id, "log_id"}, {&str_error_message, "error_message"},
        {&str_empty, ""}, {&str_default_client, "default_client"}, {&str_ids, "_ids"},
        {&str_getrandbits, "getrandbits"}, {&str_wake, "_wake"},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (*strs[i].p == NULL && (*strs[i].p = PyUnicode_InternFromString(strs[i].s)) == NULL)
            return -1;
    if ((int_128 == NULL && (int_128 = PyLong_FromLong(128)) == NULL) ||
        (int_64 == NULL && (int_64 = PyLong_FromLong(64)) == NULL))
        return -1;
    if (state_type == NULL && (state_type = (PyTypeObject *)PyType_FromSpec(&state_spec)) == NULL)
        return -1;
    if (buffer_type == NULL && (buffer_type = (PyTypeObject *)PyType_FromSpec(&buffer_spec)) == NULL)
        return -1;
    return 0;
}

PyMODINIT_FUNC PyInit__speedups(void)
{
    if (init_constants() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&speedups_module);
    /* FORMAT: what pack() and writer() take and give; _record.py loads no other. */
    if (m != NULL && (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
                      PyModule_AddIntConstant(m, "FORMAT", 4) < 0 ||
                      PyModule_AddObjectRef(m, "Buffer", (PyObject *)buffer_type) < 0))
        Py_CLEAR(m);
    return m;
}
