/*
 * _pgcopy: PostgreSQL's binary COPY format written straight from Arrow buffers.
 *
 * encode(columns, start, stop, first, last) returns rows start .. stop - 1 of a COPY ... (FORMAT BINARY)
 * stream (the signature and header before the first batch, the trailer after the last) of columns given as
 * their Arrow buffers (cdp_ray.sinks.postgres.copy_rows
 * hands them over): (kind, array offset, validity or None, values, offsets or None, child offsets or
 * None, child values or None). Kinds and the PostgreSQL types they are written as (cdp_ray.sinks.ddl):
 *
 *   'h' int16 -> smallint    'i' int32 -> integer     'I' uint32 -> bigint    'q' int64 -> bigint
 *   'Q' uint64 -> numeric    'f' float32 -> real      'd' float64 -> double   'b' bool -> boolean
 *   's' string -> text (NUL as U+FFFD, as the CSV path writes it)            'y' binary -> bytea
 *   't' timestamp[us] -> timestamp(tz)                'S' list<string> -> text[]
 *   'U' list<uint32> -> bigint[]                      'L' list<int64> -> bigint[]
 *
 * Offsets are int32 (string, binary, list). Every read is checked against the buffer's length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The stream being written: a bytes object resized as it fills (handed over without a copy). */
typedef struct {
    PyObject *bytes;
    char *p;
    Py_ssize_t len, cap;
} Out;

static int
grow(Out *o, Py_ssize_t n)
{
    if (o->cap - o->len >= n)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 1 << 16;
    while (cap - o->len < n) cap *= 2;
    if (o->bytes == NULL)
        o->bytes = PyBytes_FromStringAndSize(NULL, cap);
    else if (_PyBytes_Resize(&o->bytes, cap) < 0)
        o->bytes = NULL;
    if (o->bytes == NULL)
        return -1;
    o->p = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

static inline void
be16(char *q, uint16_t v)
{
    q[0] = (char)(v >> 8);
    q[1] = (char)v;
}

static inline void
be32(char *q, uint32_t v)
{
    q[0] = (char)(v >> 24);
    q[1] = (char)(v >> 16);
    q[2] = (char)(v >> 8);
    q[3] = (char)v;
}

static inline void
be64(char *q, uint64_t v)
{
    be32(q, (uint32_t)(v >> 32));
    be32(q + 4, (uint32_t)v);
}

typedef struct {
    char kind;
    Py_ssize_t offset;
    Py_buffer valid, values, offsets, child_offsets, child_values;
    int has_valid, has_offsets, has_child_offsets, has_child_values;
} Column;

static void
release(Column *c)
{
    if (c->has_valid) PyBuffer_Release(&c->valid);
    PyBuffer_Release(&c->values);
    if (c->has_offsets) PyBuffer_Release(&c->offsets);
    if (c->has_child_offsets) PyBuffer_Release(&c->child_offsets);
    if (c->has_child_values) PyBuffer_Release(&c->child_values);
}

static int
buffer_of(PyObject *obj, Py_buffer *view, int *has)
{
    *has = 0;
    if (obj == Py_None) return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
    *has = 1;
    return 0;
}

static int
bad(const char *what)
{
    PyErr_Format(PyExc_ValueError, "Arrow buffers too short for the rows: %s", what);
    return -1;
}

static int
is_valid(const Column *c, Py_ssize_t i)
{
    if (!c->has_valid) return 1;
    const unsigned char *v = c->valid.buf;
    return (v[i / 8] >> (i % 8)) & 1;
}

/* int32 offsets [i], [i + 1] of a buffer, checked. */
static int
span(const Py_buffer *offsets, Py_ssize_t i, int32_t *a, int32_t *b)
{
    if ((i + 2) * 4 > offsets->len) return bad("offsets");
    memcpy(a, (const char *)offsets->buf + 4 * i, 4);
    memcpy(b, (const char *)offsets->buf + 4 * (i + 1), 4);
    if (*a < 0 || *b < *a) return bad("offsets out of order");
    return 0;
}

/* Text with NUL written as U+FFFD; the field's length word first. */
static int
text(Out *o, const char *s, Py_ssize_t n)
{
    Py_ssize_t nul = 0;
    for (const char *q = memchr(s, 0, n); q != NULL; q = memchr(q + 1, 0, n - (q + 1 - s))) nul++;
    Py_ssize_t size = n + 2 * nul;
    if (size > INT32_MAX) return bad("text beyond 2 GB");
    if (grow(o, 4 + size) < 0) return -1;
    be32(o->p + o->len, (uint32_t)size);
    o->len += 4;
    if (!nul) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
        return 0;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (s[k] == 0) {
            memcpy(o->p + o->len, "\xef\xbf\xbd", 3);
            o->len += 3;
        } else {
            o->p[o->len++] = s[k];
        }
    }
    return 0;
}

/* numeric of an unsigned 64-bit value: base-10000 digits, most significant first, trailing zeros dropped. */
static int
numeric(Out *o, uint64_t v)
{
    uint16_t digits[5];
    int n = 0;
    while (v) {
        digits[n++] = (uint16_t)(v % 10000);
        v /= 10000;
    }
    int weight = n - 1, lead = 0;
    while (lead < n && digits[lead] == 0) lead++;  /* digits[] is least significant first: drop trailing zeros */
    int nd = n - lead;
    if (grow(o, 4 + 8 + 2 * nd) < 0) return -1;
    be32(o->p + o->len, (uint32_t)(8 + 2 * nd));
    char *q = o->p + o->len + 4;
    be16(q, (uint16_t)nd);
    be16(q + 2, (uint16_t)(nd ? weight : 0));
    be16(q + 4, 0);
    be16(q + 6, 0);
    for (int k = 0; k < nd; k++) be16(q + 8 + 2 * k, digits[n - 1 - k]);
    o->len += 4 + 8 + 2 * nd;
    return 0;
}

#define PG_EPOCH_US 946684800000000LL
enum { OID_TEXT = 25, OID_INT8 = 20 };

static int
field(Out *o, const Column *c, Py_ssize_t i)
{
    Py_ssize_t at = c->offset + i;
    if (!is_valid(c, at)) {
        if (grow(o, 4) < 0) return -1;
        be32(o->p + o->len, 0xFFFFFFFFu);
        o->len += 4;
        return 0;
    }
    const char *v = c->values.buf;
    Py_ssize_t vlen = c->values.len;
    switch (c->kind) {
    case 'h': case 'i': case 'I': case 'q': case 'f': case 'd': case 't': {
        int size = c->kind == 'h' ? 2 : (c->kind == 'i' || c->kind == 'I' || c->kind == 'f') ? 4 : 8;
        if ((at + 1) * size > vlen) return bad("values");
        if (grow(o, 12) < 0) return -1;
        char *q = o->p + o->len;
        if (c->kind == 'h') {
            int16_t x;
            memcpy(&x, v + 2 * at, 2);
            be32(q, 2);
            be16(q + 4, (uint16_t)x);
            o->len += 6;
        } else if (c->kind == 'i' || c->kind == 'f') {
            uint32_t x;
            memcpy(&x, v + 4 * at, 4);
            be32(q, 4);
            be32(q + 4, x);
            o->len += 8;
        } else {
            uint64_t x;
            if (c->kind == 'I') {
                uint32_t u;
                memcpy(&u, v + 4 * at, 4);
                x = u;
            } else {
                memcpy(&x, v + 8 * at, 8);
            }
            if (c->kind == 't') x = (uint64_t)((int64_t)x - PG_EPOCH_US);
            be32(q, 8);
            be64(q + 4, x);
            o->len += 12;
        }
        return 0;
    }
    case 'Q': {
        uint64_t x;
        if ((at + 1) * 8 > vlen) return bad("values");
        memcpy(&x, v + 8 * at, 8);
        return numeric(o, x);
    }
    case 'b': {
        if (at / 8 >= vlen) return bad("values");
        if (grow(o, 5) < 0) return -1;
        be32(o->p + o->len, 1);
        o->p[o->len + 4] = (char)((((const unsigned char *)v)[at / 8] >> (at % 8)) & 1);
        o->len += 5;
        return 0;
    }
    case 's':
    case 'y': {
        int32_t a, b;
        if (span(&c->offsets, at, &a, &b) < 0) return -1;
        if (b > vlen) return bad("string bytes");
        if (c->kind == 's') return text(o, v + a, b - a);
        if (grow(o, 4 + (b - a)) < 0) return -1;
        be32(o->p + o->len, (uint32_t)(b - a));
        memcpy(o->p + o->len + 4, v + a, b - a);
        o->len += 4 + (b - a);
        return 0;
    }
    case 'S':
    case 'U':
    case 'L': {
        int32_t a, b;
        if (span(&c->offsets, at, &a, &b) < 0) return -1;
        Py_ssize_t n = b - a;
        Py_ssize_t start = o->len;
        if (grow(o, 4 + 20) < 0) return -1;
        o->len += 4;  /* the field's length, filled in below */
        char *q = o->p + o->len;
        uint32_t oid = c->kind == 'S' ? OID_TEXT : OID_INT8;
        if (n == 0) {  /* an empty array has no dimensions */
            be32(q, 0);
            be32(q + 4, 0);
            be32(q + 8, oid);
            o->len += 12;
        } else {
            be32(q, 1);
            be32(q + 4, 0);
            be32(q + 8, oid);
            be32(q + 12, (uint32_t)n);
            be32(q + 16, 1);
            o->len += 20;
            for (Py_ssize_t k = a; k < b; k++) {
                if (c->kind == 'S') {
                    int32_t x, y;
                    if (span(&c->child_offsets, k, &x, &y) < 0) return -1;
                    if (y > c->child_values.len) return bad("item bytes");
                    if (text(o, (const char *)c->child_values.buf + x, y - x) < 0) return -1;
                } else {
                    int size = c->kind == 'U' ? 4 : 8;
                    if ((k + 1) * size > vlen) return bad("item values");
                    uint64_t x;
                    if (size == 4) {
                        uint32_t u;
                        memcpy(&u, v + 4 * k, 4);
                        x = u;
                    } else {
                        memcpy(&x, v + 8 * k, 8);
                    }
                    if (grow(o, 12) < 0) return -1;
                    be32(o->p + o->len, 8);
                    be64(o->p + o->len + 4, x);
                    o->len += 12;
                }
            }
        }
        Py_ssize_t size = o->len - start - 4;
        if (size > INT32_MAX) return bad("array beyond 2 GB");
        be32(o->p + start, (uint32_t)size);
        return 0;
    }
    }
    PyErr_Format(PyExc_ValueError, "unknown column kind %c", c->kind);
    return -1;
}

PyDoc_STRVAR(encode_doc,
"encode(columns, start, stop, first, last)\n--\n\n"
"Rows start .. stop - 1 of ``columns``, each ``(kind, array offset, validity, values, offsets, child\n"
"offsets, child values)`` (see the module), in the binary COPY format: with ``first`` the stream's\n"
"signature and header before them, with ``last`` its trailer after them.");

static PyObject *
encode(PyObject *module, PyObject *args)
{
    PyObject *spec;
    Py_ssize_t start, stop;
    int first, last;
    if (!PyArg_ParseTuple(args, "O!nnpp", &PyList_Type, &spec, &start, &stop, &first, &last))
        return NULL;
    Py_ssize_t ncols = PyList_GET_SIZE(spec);
    if (ncols > 1600 || start < 0 || stop < start)
        return PyErr_Format(PyExc_ValueError, "bad columns or rows");
    Column *cols = PyMem_Calloc(ncols ? ncols : 1, sizeof(Column));
    if (cols == NULL)
        return PyErr_NoMemory();
    Py_ssize_t ready = 0;
    Out o = {0};
    PyObject *result = NULL;
    for (; ready < ncols; ready++) {
        Column *c = &cols[ready];
        PyObject *valid, *values, *offsets, *child_offsets, *child_values;
        int has_values;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(spec, ready), "CnOOOOO", &c->kind, &c->offset, &valid, &values,
                              &offsets, &child_offsets, &child_values))
            goto done;
        if (c->offset < 0) {
            PyErr_SetString(PyExc_ValueError, "negative array offset");
            goto done;
        }
        if (buffer_of(valid, &c->valid, &c->has_valid) < 0) goto done;
        if (buffer_of(values, &c->values, &has_values) < 0 || !has_values) {
            if (c->has_valid) PyBuffer_Release(&c->valid);
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "a column without values");
            goto done;
        }
        if (buffer_of(offsets, &c->offsets, &c->has_offsets) < 0 ||
            buffer_of(child_offsets, &c->child_offsets, &c->has_child_offsets) < 0 ||
            buffer_of(child_values, &c->child_values, &c->has_child_values) < 0) {
            release(c);
            goto done;
        }
        int need_offsets = strchr("syUSL", c->kind) != NULL, need_child = c->kind == 'S';
        if ((need_offsets && !c->has_offsets) || (need_child && (!c->has_child_offsets || !c->has_child_values)) ||
            (c->has_valid && (c->offset + stop + 7) / 8 > c->valid.len)) {
            release(c);
            PyErr_Format(PyExc_ValueError, "column %zd: missing or short buffers", ready);
            goto done;
        }
    }
    Py_ssize_t estimate = 19 + 2 + (stop - start) * (2 + 4 * (Py_ssize_t)ncols);
    for (Py_ssize_t k = 0; k < ncols; k++) {
        Column *c = &cols[k];
        Py_ssize_t rows = stop - start, total = c->offset + stop > 0 ? c->offset + stop : 1;
        /* the share of the values (and items) these rows hold, plus the array headers and item words */
        Py_ssize_t bytes = c->values.len + (c->has_child_values ? c->child_values.len : 0);
        estimate += bytes / total * rows + (strchr("SUL", c->kind) ? 20 * rows : 0) +
                    (c->has_child_offsets ? c->child_offsets.len : 0) + (c->kind == 'U' ? c->values.len : 0) + 64;
    }
    if (grow(&o, estimate) < 0) goto done;
    if (first) {
        memcpy(o.p, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
        o.len = 19;
    }
    for (Py_ssize_t i = start; i < stop; i++) {
        if (grow(&o, 2) < 0) goto done;
        be16(o.p + o.len, (uint16_t)ncols);
        o.len += 2;
        for (Py_ssize_t k = 0; k < ncols; k++)
            if (field(&o, &cols[k], i) < 0) goto done;
    }
    if (last) {
        if (grow(&o, 2) < 0) goto done;
        be16(o.p + o.len, 0xFFFF);
        o.len += 2;
    }
    if (_PyBytes_Resize(&o.bytes, o.len) == 0)
        result = o.bytes;
    o.bytes = NULL;
done:
    for (Py_ssize_t k = 0; k < ready; k++) release(&cols[k]);
    PyMem_Free(cols);
    Py_XDECREF(o.bytes);
    return result;
}

static PyMethodDef pgcopy_functions[] = {
    {"encode", encode, METH_VARARGS, encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pgcopy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_pgcopy",
    .m_doc = "PostgreSQL's binary COPY format written from Arrow buffers.",
    .m_size = -1,
    .m_methods = pgcopy_functions,
};

PyMODINIT_FUNC
PyInit__pgcopy(void)
{
    return PyModule_Create(&pgcopy_module);
}
