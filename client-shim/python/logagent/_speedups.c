/* _speedups.c — logagent._speedups: one write_log call packed to msgpack bytes in C, the hot part of the Python
 * client (issue #19). _record.py stays the reference: this file packs exactly what
 * _record.pack(_record.build(...)) packs, byte for byte, for the records it understands, and answers None for
 * every other record so that the caller takes the pure-Python path (tests/python/test_speedups.py compares the
 * two on thousands of random calls).
 *
 * Understood ("plain"): values whose exact type is str (valid UTF-8: no lone surrogates), int within
 * [-2^63, 2^64-1], float, bool, None, bytes, and dicts, lists and tuples of those (non-empty containers at most
 * MAX_DEPTH open at once, dict keys themselves plain scalars); metadata keys of exact type str. Everything else
 * (subclasses, sets, datetimes, big ints, other objects, over-deep nesting) goes to the Python path, whose
 * conversions call the caller's own code (str(), isoformat()) and whose errors carry the record's words.
 * No Python code runs here: the arguments cannot change under the encoder, and no lock is needed beyond the GIL.
 *
 * The buffer, lock, sender thread, fork and exit handling stay in _client.py: the C library's writer
 * (client-shim/logagent.c) has its own buffer, thread and fork handlers, which would give a Python process two
 * of each and change what flush(), get_stats() and the fork rules mean; see docs/python.md.
 *
 * The stable ABI (Py_LIMITED_API 3.10, one .abi3.so for every CPython >= 3.10) when the build asks for it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static int out_grow(struct out *o, size_t n)
{
    size_t cap = o->cap * 2;
    while (cap - o->len < n)
        cap *= 2;
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

struct call {
    PyObject *message, *service, *level, *trace, *span, *meta, *log_id, *now;
};

/* Counts the record map's entries (core keys first, as _record.build places them) and finds the metadata's
 * `timestamp`. Returns PACK_OK, or PACK_FALLBACK for a metadata key that is not a str. */
static int count_entries(const struct call *c, size_t *count, PyObject **timestamp)
{
    int given[K_OTHER] = {1, 1, c->service != Py_None, c->trace != Py_None, c->span != Py_None, 1, 1};
    size_t n = 0;
    for (int i = 0; i < K_OTHER; i++)
        n += (size_t)given[i];
    Py_ssize_t pos = 0, len;
    PyObject *k, *x;
    *timestamp = NULL;
    while (PyDict_Next(c->meta, &pos, &k, &x)) {
        if (Py_TYPE(k) != &PyUnicode_Type)
            return PACK_FALLBACK;
        const char *s = PyUnicode_AsUTF8AndSize(k, &len);
        if (s == NULL) {
            PyErr_Clear();
            return PACK_FALLBACK;
        }
        int ck = core_key(s, len);
        if (ck == K_TIMESTAMP)
            *timestamp = x;
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

static int pack_record(struct out *o, const struct call *c)
{
    size_t count;
    PyObject *ts;
    int r = count_entries(c, &count, &ts);
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
        r = put_core(o, K_LOG_ID, c->log_id);
    if (r == PACK_OK)
        r = put_core(o, K_TIMESTAMP, ts != NULL ? ts : c->now);
    int given[K_OTHER] = {1, 1, c->service != Py_None, c->trace != Py_None, c->span != Py_None, 1, 1};
    Py_ssize_t pos = 0, len;
    PyObject *k, *x;
    while (r == PACK_OK && PyDict_Next(c->meta, &pos, &k, &x)) {
        const char *s = PyUnicode_AsUTF8AndSize(k, &len); /* cached by count_entries: cannot fail */
        if (s == NULL)
            return PACK_NOMEM;
        int ck = core_key(s, len);
        if (ck != K_OTHER && given[ck])
            continue;
        r = put_utf8(o, s, len);
        if (r == PACK_OK)
            r = put_value(o, x, 1);
    }
    return r;
}

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
    struct call c = {args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7]};
    if (Py_TYPE(c.message) != &PyUnicode_Type || Py_TYPE(c.meta) != &PyDict_Type)
        Py_RETURN_NONE;
    struct out o;
    o.p = o.small;
    o.len = 0;
    o.cap = sizeof o.small;
    int r = pack_record(&o, &c);
    PyObject *res = NULL;
    if (r == PACK_OK)
        res = PyBytes_FromStringAndSize((const char *)o.p, (Py_ssize_t)o.len);
    else if (r == PACK_FALLBACK)
        res = Py_NewRef(Py_None);
    out_free(&o);
    return res;
}

static PyMethodDef speedups_methods[] = {
    {"pack", (PyCFunction)(void (*)(void))speedups_pack, METH_FASTCALL, pack_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "logagent._speedups",
    .m_doc = "The Python client's record encoder in C (see _record.py, the reference).",
    .m_size = 0,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&speedups_module);
    /* FORMAT: what pack() takes and gives; _record.py loads no other. */
    if (m != NULL && (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0 ||
                      PyModule_AddIntConstant(m, "FORMAT", 1) < 0))
        Py_CLEAR(m);
    return m;
}
