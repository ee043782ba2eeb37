/*
 * _fastxdr: a table-driven XDR codec that builds (and reads back) stellar-sdk's own object graph.
 *
 * The Python side (cdp_ray/xdr/fast/codec.py) compiles the type descriptions of schema.py into a
 * flat table of descriptors and hands it to Codec(). Decoding walks that table: structs, unions and
 * typedefs become instances of the given classes with the same attributes stellar-sdk's __init__
 * sets (union arms that are not selected are None), enums become the enum's members, integers,
 * booleans and opaques become Python ints, bools and bytes. The checks of stellar-sdk's unpack and
 * __init__ are kept: depth limit, array lengths against the remaining input and declared maxima,
 * opaque and string maxima, unknown discriminants and enum values.
 *
 * Encoding reads the same attributes back and writes canonical XDR (zero padding).
 *
 * Values of the types marked "keep source" also get the exact input bytes they were decoded from,
 * as bytes in their _xdr_src attribute (hashes and base64 columns read them instead of encoding).
 * The decoder accepts what stellar-sdk accepts, including non-canonical forms (non-zero padding,
 * booleans and optional flags other than 0 and 1); a value read from such bytes keeps no source and
 * is never lazy, so the raw bytes kept are always exactly the value's encoding.
 *
 * Scanners read what processors need from raw LedgerEntryChanges (balance contributions, sponsors of
 * created entries) with the decoder's checks but without building objects, and strkey() encodes
 * Stellar addresses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "fastxdr_api.h"
#include "strkey.h"

enum {
    K_I32, K_U32, K_I64, K_U64, K_BOOL, K_F32, K_F64,
    K_OPAQUE, K_VOPAQUE, K_STRING, K_ARRAY, K_FARRAY, K_OPT,
    K_ENUM, K_STRUCT, K_UNION, K_TYPEDEF, K_COUNT
};

#define MAX_DEPTH 512
#define DENSE_CASES 64
#define DENSE_ENUM 4096

typedef struct {
    int kind;
    uint32_t n;             /* opaque/farray: exact size; vopaque/string/array: maximum;
                               union: 1 when the class defaults every arm to None */
    int elem;               /* array/farray/opt: element type */
    PyObject *cls;          /* struct/union/typedef: class to build; enum: the enum class */
    PyObject *lazy_cls;     /* when set: below the top, build this class holding the raw bytes */
    int keep_source;        /* struct/union/typedef: keep the value's input bytes in _xdr_src */
    PyObject *name;         /* type name, for error messages */
    int nfields;            /* struct: fields; typedef: 1; union: 1 (discriminant) + arms */
    PyObject **fnames;      /* attribute names (wire order for structs) */
    int *ftypes;            /* their types (-1: an arm no case selects) */
    int *set_order;         /* struct: constructor order of the fields, as wire indices */
    int ncases;             /* union */
    int64_t *case_values;
    int *case_field;        /* field index of the arm (>= 1), -1 for a void arm */
    int dense_cases[DENSE_CASES]; /* case index + 1 by value, 0 = none (values 0..63) */
    int64_t emin;           /* enum: members by value - emin, or by dict when sparse */
    Py_ssize_t ecount;
    PyObject **emembers;
    PyObject *edict;
} TypeDesc;

/* Type indices and field positions the ledger-entry-change scanners read, looked up by name once. */
typedef struct {
    int ready;
    int changes, change, entry, entry_data, entry_ext, ext_v1;
    int account, trustline, claimable, pool, pool_body, product, params;
    int e_data, e_ext, x_sponsor;                   /* LedgerEntry.data/.ext, ExtensionV1.sponsoring_id */
    int a_id, a_balance, t_id, t_asset, t_balance;  /* AccountEntry, TrustLineEntry */
    int c_id, c_asset, c_amount, p_id, p_body;      /* ClaimableBalanceEntry, LiquidityPoolEntry */
    int cp_params, cp_a, cp_b, pr_a, pr_b;          /* constant product: params, reserves; params: assets */
    int event, scval;                               /* ContractEvent, SCVal (event_summary) */
} Scan;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ntypes;
    TypeDesc *types;
    Scan scan;
} Codec;

static PyObject *empty_tuple;
static PyObject *raw_name;  /* "_xdr_raw" */
static PyObject *src_name;  /* "_xdr_src" */

/* ------------------------------------------------------------------------------------------ */
/* decoding                                                                                   */

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos;
    Py_ssize_t len;
    Codec *codec;
    int lazy;
    Py_ssize_t noncanon;    /* non-canonical forms read so far (they re-encode differently) */
} Dec;

static int
need(Dec *d, Py_ssize_t n)
{
    if (d->len - d->pos < n) {
        PyErr_SetString(PyExc_EOFError, "XDR data ends inside a value");
        return -1;
    }
    return 0;
}

static inline uint32_t
rd32(Dec *d)
{
    const unsigned char *q = d->p + d->pos;
    d->pos += 4;
    return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | (uint32_t)q[3];
}

static inline uint64_t
rd64(Dec *d)
{
    uint64_t hi = rd32(d);
    return (hi << 32) | rd32(d);
}

/* Read the length of a variable-length array of type ``t``, checked against the input left and the
   array's bound. */
static int
rd_array_length(Dec *d, TypeDesc *t, uint32_t *n)
{
    if (need(d, 4) < 0) return -1;
    *n = rd32(d);
    if ((Py_ssize_t)*n > d->len - d->pos) {
        PyErr_Format(PyExc_ValueError, "array length %u exceeds remaining input length %zd", *n, d->len - d->pos);
        return -1;
    }
    if (*n > t->n) {
        PyErr_Format(PyExc_ValueError, "array length %u exceeds its maximum %u", *n, t->n);
        return -1;
    }
    return 0;
}

/*
 * Decoded values form a tree (enum members aside, which stay tracked): no reference cycles. So the
 * instances and lists built here are taken off the cyclic collector's lists; otherwise every
 * collection would traverse every value of every ledger held in memory, and stellar-sdk spends
 * about half of its decoding time in exactly that. Reference counting frees them as usual; a cycle
 * a caller creates through them later would not be collected.
 */
static PyObject *
new_instance(PyObject *cls)
{
    PyTypeObject *t = (PyTypeObject *)cls;
    PyObject *obj = t->tp_new(t, empty_tuple, NULL);
    if (obj != NULL && PyObject_IS_GC(obj))
        PyObject_GC_UnTrack(obj);
    return obj;
}

static PyObject *dec(Dec *d, int tid, int depth);

/* Read a discriminant: its object (*out) and its integer value (*value). */
static int
dec_disc(Dec *d, int tid, int depth, PyObject **out, int64_t *value)
{
    TypeDesc *t = &d->codec->types[tid];
    if (t->kind == K_TYPEDEF) {
        PyObject *inner;
        if (depth <= 0) {
            PyErr_SetString(PyExc_ValueError, "Maximum decoding depth reached");
            return -1;
        }
        if (dec_disc(d, t->ftypes[0], depth - 1, &inner, value) < 0)
            return -1;
        PyObject *obj = new_instance(t->cls);
        if (obj == NULL || PyObject_GenericSetAttr(obj, t->fnames[0], inner) < 0) {
            Py_XDECREF(obj);
            Py_DECREF(inner);
            return -1;
        }
        Py_DECREF(inner);
        *out = obj;
        return 0;
    }
    if (need(d, 4) < 0)
        return -1;
    uint32_t raw = rd32(d);
    d->pos -= 4;
    *value = (t->kind == K_U32) ? (int64_t)raw : (int64_t)(int32_t)raw;
    *out = dec(d, tid, depth);
    return *out == NULL ? -1 : 0;
}

static int
find_case(TypeDesc *t, int64_t value)
{
    if (value >= 0 && value < DENSE_CASES)
        return t->dense_cases[value] - 1;
    for (int i = 0; i < t->ncases; i++)
        if (t->case_values[i] == value)
            return i;
    return -1;
}

/* Step over ``n`` padding bytes (available), counting non-zero padding as non-canonical. */
static inline void
skip_padding(Dec *d, Py_ssize_t n)
{
    for (; n > 0; n--)
        if (d->p[d->pos++] != 0)
            d->noncanon++;
}

/* A boolean or an optional's flag: anything but 0 reads as true, only 1 is canonical. */
static inline uint32_t
rd_flag(Dec *d)
{
    uint32_t v = rd32(d);
    if (v > 1)
        d->noncanon++;
    return v;
}

static PyObject *
dec_bytes(Dec *d, uint32_t n)
{
    Py_ssize_t padded = ((Py_ssize_t)n + 3) & ~(Py_ssize_t)3;
    if (need(d, padded) < 0)
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize((const char *)d->p + d->pos, n);
    d->pos += n;
    skip_padding(d, padded - n);
    return b;
}


static int
depth_error(void)
{
    PyErr_SetString(PyExc_ValueError, "Maximum decoding depth reached");
    return -1;
}

static int
enum_check(TypeDesc *t, int64_t v)
{
    if (t->emembers != NULL) {
        if (v >= t->emin && v - t->emin < t->ecount && t->emembers[v - t->emin] != NULL)
            return 0;
    } else {
        PyObject *key = PyLong_FromLongLong(v);
        if (key == NULL) return -1;
        int r = PyDict_Contains(t->edict, key);
        Py_DECREF(key);
        if (r < 0) return -1;
        if (r) return 0;
    }
    PyErr_Format(PyExc_ValueError, "%lld is not a valid %U", (long long)v, t->name);
    return -1;
}

/* Walk one value without building it, with every check dec() makes; *value gets integer values. */
static int
skip(Dec *d, int tid, int depth, int64_t *value)
{
    TypeDesc *t = &d->codec->types[tid];
    switch (t->kind) {
    case K_I32:
    case K_U32:
    case K_F32:
        if (need(d, 4) < 0) return -1;
        *value = t->kind == K_I32 ? (int64_t)(int32_t)rd32(d) : (int64_t)rd32(d);
        return 0;
    case K_BOOL:
        if (need(d, 4) < 0) return -1;
        *value = rd_flag(d);
        return 0;
    case K_I64:
    case K_U64:
    case K_F64:
        if (need(d, 8) < 0) return -1;
        d->pos += 8;
        return 0;
    case K_OPAQUE: {
        Py_ssize_t padded = ((Py_ssize_t)t->n + 3) & ~(Py_ssize_t)3;
        if (need(d, padded) < 0) return -1;
        d->pos += t->n;
        skip_padding(d, padded - t->n);
        return 0;
    }
    case K_VOPAQUE:
    case K_STRING: {
        if (need(d, 4) < 0) return -1;
        uint32_t n = rd32(d);
        if (n > t->n) {
            PyErr_Format(PyExc_ValueError, "%s data size %u exceeds maximum %u.",
                         t->kind == K_STRING ? "String" : "Opaque", n, t->n);
            return -1;
        }
        Py_ssize_t padded = ((Py_ssize_t)n + 3) & ~(Py_ssize_t)3;
        if (need(d, padded) < 0) return -1;
        d->pos += n;
        skip_padding(d, padded - n);
        return 0;
    }
    case K_ARRAY:
    case K_FARRAY: {
        uint32_t n = t->n;
        if (t->kind == K_ARRAY && rd_array_length(d, t, &n) < 0)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (skip(d, t->elem, depth, value) < 0) return -1;
        return 0;
    }
    case K_OPT:
        if (need(d, 4) < 0) return -1;
        return rd_flag(d) ? skip(d, t->elem, depth, value) : 0;
    case K_ENUM:
        if (need(d, 4) < 0) return -1;
        *value = (int32_t)rd32(d);
        return enum_check(t, *value);
    case K_TYPEDEF:
        if (depth <= 0) return depth_error();
        return skip(d, t->ftypes[0], depth - 1, value);
    case K_STRUCT:
        if (depth <= 0) return depth_error();
        for (int i = 0; i < t->nfields; i++)
            if (skip(d, t->ftypes[i], depth - 1, value) < 0) return -1;
        return 0;
    case K_UNION: {
        int64_t v = 0;
        if (depth <= 0) return depth_error();
        if (skip(d, t->ftypes[0], depth - 1, &v) < 0) return -1;
        int c = find_case(t, v);
        if (c < 0) {
            PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->fnames[0], (long long)v);
            return -1;
        }
        int f = t->case_field[c];
        return f < 0 ? 0 : skip(d, t->ftypes[f], depth - 1, value);
    }
    }
    PyErr_SetString(PyExc_SystemError, "corrupt codec table");
    return -1;
}

static int fill(Dec *d, TypeDesc *t, int depth, PyObject *obj);

/* A struct, union or typedef value: an instance of its class, with its input bytes when kept. */
static PyObject *
dec_composite(Dec *d, TypeDesc *t, int depth)
{
    Py_ssize_t start = d->pos, noncanon = d->noncanon;
    PyObject *obj = new_instance(t->cls);
    if (obj == NULL) return NULL;
    if (fill(d, t, depth, obj) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    if (t->keep_source && d->noncanon == noncanon) {
        PyObject *src = PyBytes_FromStringAndSize((const char *)d->p + start, d->pos - start);
        if (src == NULL || PyObject_GenericSetAttr(obj, src_name, src) < 0) {
            Py_XDECREF(src);
            Py_DECREF(obj);
            return NULL;
        }
        Py_DECREF(src);
    }
    return obj;
}

/* A lazy value: an instance of the lazy class holding the value's raw XDR, decoded on first use.
   Raw bytes in a non-canonical form are decoded at once instead. */
static PyObject *
dec_lazy(Dec *d, TypeDesc *t, int tid, int depth)
{
    int64_t scratch;
    Py_ssize_t start = d->pos, noncanon = d->noncanon;
    if (skip(d, tid, depth, &scratch) < 0)
        return NULL;
    if (d->noncanon != noncanon) {
        d->pos = start;
        d->noncanon = noncanon;
        return dec_composite(d, t, depth);
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)d->p + start, d->pos - start);
    if (raw == NULL) return NULL;
    PyObject *obj = new_instance(t->lazy_cls);
    if (obj == NULL || PyObject_GenericSetAttr(obj, raw_name, raw) < 0) {
        Py_XDECREF(obj);
        obj = NULL;
    }
    Py_DECREF(raw);
    return obj;
}

static PyObject *
dec(Dec *d, int tid, int depth)
{
    TypeDesc *t = &d->codec->types[tid];
    if (t->lazy_cls != NULL && d->lazy && depth < MAX_DEPTH)
        return dec_lazy(d, t, tid, depth);
    switch (t->kind) {
    case K_I32:
        if (need(d, 4) < 0) return NULL;
        return PyLong_FromLong((long)(int32_t)rd32(d));
    case K_U32:
        if (need(d, 4) < 0) return NULL;
        return PyLong_FromUnsignedLong((unsigned long)rd32(d));
    case K_I64:
        if (need(d, 8) < 0) return NULL;
        return PyLong_FromLongLong((long long)(int64_t)rd64(d));
    case K_U64:
        if (need(d, 8) < 0) return NULL;
        return PyLong_FromUnsignedLongLong((unsigned long long)rd64(d));
    case K_BOOL: {
        if (need(d, 4) < 0) return NULL;
        PyObject *r = rd_flag(d) ? Py_True : Py_False;
        Py_INCREF(r);
        return r;
    }
    case K_F32: {
        if (need(d, 4) < 0) return NULL;
        uint32_t u = rd32(d);
        float f;
        memcpy(&f, &u, 4);
        return PyFloat_FromDouble((double)f);
    }
    case K_F64: {
        if (need(d, 8) < 0) return NULL;
        uint64_t u = rd64(d);
        double f;
        memcpy(&f, &u, 8);
        return PyFloat_FromDouble(f);
    }
    case K_OPAQUE:
        return dec_bytes(d, t->n);
    case K_VOPAQUE:
    case K_STRING: {
        if (need(d, 4) < 0) return NULL;
        uint32_t n = rd32(d);
        if (n > t->n) {
            PyErr_Format(PyExc_ValueError, "%s data size %u exceeds maximum %u.",
                         t->kind == K_STRING ? "String" : "Opaque", n, t->n);
            return NULL;
        }
        return dec_bytes(d, n);
    }
    case K_ARRAY:
    case K_FARRAY: {
        uint32_t n = t->n;
        if (t->kind == K_ARRAY && rd_array_length(d, t, &n) < 0)
            return NULL;
        PyObject *list = PyList_New(n);
        if (list == NULL) return NULL;
        PyObject_GC_UnTrack(list);
        for (uint32_t i = 0; i < n; i++) {
            PyObject *item = dec(d, t->elem, depth);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, item);
        }
        return list;
    }
    case K_OPT: {
        if (need(d, 4) < 0) return NULL;
        if (rd_flag(d) == 0)
            Py_RETURN_NONE;
        return dec(d, t->elem, depth);
    }
    case K_ENUM: {
        if (need(d, 4) < 0) return NULL;
        int64_t v = (int32_t)rd32(d);
        PyObject *m = NULL;
        if (t->emembers != NULL) {
            if (v >= t->emin && v - t->emin < t->ecount)
                m = t->emembers[v - t->emin];
        } else {
            PyObject *key = PyLong_FromLongLong(v);
            if (key == NULL) return NULL;
            m = PyDict_GetItemWithError(t->edict, key);
            Py_DECREF(key);
            if (m == NULL && PyErr_Occurred()) return NULL;
        }
        if (m == NULL) {
            PyErr_Format(PyExc_ValueError, "%lld is not a valid %U", (long long)v, t->name);
            return NULL;
        }
        Py_INCREF(m);
        return m;
    }
    case K_TYPEDEF:
    case K_STRUCT:
    case K_UNION:
        return dec_composite(d, t, depth);
    }
    PyErr_SetString(PyExc_SystemError, "corrupt codec table");
    return NULL;
}

/* Decode a typedef, struct or union value into the attributes of ``obj``. */
static int
fill(Dec *d, TypeDesc *t, int depth, PyObject *obj)
{
    if (depth <= 0)
        return depth_error();
    if (t->kind == K_TYPEDEF) {
        PyObject *inner = dec(d, t->ftypes[0], depth - 1);
        if (inner == NULL) return -1;
        int r = PyObject_GenericSetAttr(obj, t->fnames[0], inner);
        Py_DECREF(inner);
        return r;
    }
    if (t->kind == K_STRUCT) {
        PyObject *vals[64];
        int nf = t->nfields, i, r = 0;
        for (i = 0; i < nf; i++) {
            vals[i] = dec(d, t->ftypes[i], depth - 1);
            if (vals[i] == NULL) {
                while (--i >= 0) Py_DECREF(vals[i]);
                return -1;
            }
        }
        for (i = 0; i < nf && r == 0; i++) {
            int k = t->set_order[i];
            r = PyObject_GenericSetAttr(obj, t->fnames[k], vals[k]);
        }
        for (i = 0; i < nf; i++) Py_DECREF(vals[i]);
        return r;
    }
    /* union */
    PyObject *disc, *arm = NULL;
    int64_t value;
    if (dec_disc(d, t->ftypes[0], depth - 1, &disc, &value) < 0)
        return -1;
    int c = find_case(t, value);
    if (c < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->fnames[0], (long long)value);
        Py_DECREF(disc);
        return -1;
    }
    int f = t->case_field[c];
    if (f >= 0) {
        arm = dec(d, t->ftypes[f], depth - 1);
        if (arm == NULL) {
            Py_DECREF(disc);
            return -1;
        }
    }
    int r = PyObject_GenericSetAttr(obj, t->fnames[0], disc);
    if (t->n) {
        /* the class defines every arm as None: set the selected one only */
        if (f >= 0 && r == 0)
            r = PyObject_GenericSetAttr(obj, t->fnames[f], arm);
    } else {
        for (int i = 1; i < t->nfields && r == 0; i++)
            r = PyObject_GenericSetAttr(obj, t->fnames[i], i == f ? arm : Py_None);
    }
    Py_DECREF(disc);
    Py_XDECREF(arm);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* encoding                                                                                   */

typedef struct {
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    Codec *codec;
} Enc;

static int
grow(Enc *e, Py_ssize_t n)
{
    if (e->len + n <= e->cap)
        return 0;
    Py_ssize_t cap = e->cap ? e->cap : 256;
    while (cap < e->len + n)
        cap *= 2;
    char *nb = PyMem_Realloc(e->buf, cap);
    if (nb == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->buf = nb;
    e->cap = cap;
    return 0;
}

static inline int
wr32(Enc *e, uint32_t v)
{
    if (grow(e, 4) < 0) return -1;
    unsigned char *q = (unsigned char *)e->buf + e->len;
    q[0] = v >> 24; q[1] = v >> 16; q[2] = v >> 8; q[3] = v;
    e->len += 4;
    return 0;
}

static inline int
wr64(Enc *e, uint64_t v)
{
    if (wr32(e, (uint32_t)(v >> 32)) < 0) return -1;
    return wr32(e, (uint32_t)v);
}

static int
wr_bytes(Enc *e, const char *p, Py_ssize_t n)
{
    Py_ssize_t padded = (n + 3) & ~(Py_ssize_t)3;
    if (grow(e, padded) < 0) return -1;
    memcpy(e->buf + e->len, p, n);
    memset(e->buf + e->len + n, 0, padded - n);
    e->len += padded;
    return 0;
}

static int
as_int64(PyObject *v, int64_t lo, int64_t hi, int64_t *out, TypeDesc *t)
{
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < lo || x > hi) {
        PyErr_Format(PyExc_ValueError, "%lld is out of range for %U", x, t->name);
        return -1;
    }
    *out = x;
    return 0;
}

static int enc(Enc *e, int tid, PyObject *v, int depth);

/* The integer value of a discriminant object (an enum member, an int, or a typedef of one). */
static int
disc_value(Codec *c, int tid, PyObject *v, int64_t *out)
{
    TypeDesc *t = &c->types[tid];
    if (t->kind == K_TYPEDEF) {
        PyObject *inner = PyObject_GetAttr(v, t->fnames[0]);
        if (inner == NULL) return -1;
        int r = disc_value(c, t->ftypes[0], inner, out);
        Py_DECREF(inner);
        return r;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static int
enc(Enc *e, int tid, PyObject *v, int depth)
{
    TypeDesc *t = &e->codec->types[tid];
    int64_t x;
    if (depth <= 0) {
        PyErr_SetString(PyExc_ValueError, "Maximum encoding depth reached");
        return -1;
    }
    if (t->lazy_cls != NULL && (PyObject *)Py_TYPE(v) == t->lazy_cls) {
        /* not decoded yet: its raw XDR is its encoding */
        PyObject *dict = PyObject_GenericGetDict(v, NULL);
        if (dict == NULL) return -1;
        PyObject *raw = PyDict_GetItemWithError(dict, raw_name);
        int r = 1;
        if (raw != NULL && PyBytes_Check(raw)) {
            r = grow(e, PyBytes_GET_SIZE(raw));
            if (r == 0) {
                memcpy(e->buf + e->len, PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw));
                e->len += PyBytes_GET_SIZE(raw);
            }
        } else if (PyErr_Occurred()) {
            r = -1;
        }
        Py_DECREF(dict);
        if (r <= 0) return r;
    }
    switch (t->kind) {
    case K_I32:
    case K_ENUM:
        if (as_int64(v, INT32_MIN, INT32_MAX, &x, t) < 0) return -1;
        return wr32(e, (uint32_t)(int32_t)x);
    case K_U32:
        if (as_int64(v, 0, UINT32_MAX, &x, t) < 0) return -1;
        return wr32(e, (uint32_t)x);
    case K_I64:
        if (as_int64(v, INT64_MIN, INT64_MAX, &x, t) < 0) return -1;
        return wr64(e, (uint64_t)x);
    case K_U64: {
        PyObject *idx = PyNumber_Index(v);
        if (idx == NULL) return -1;
        unsigned long long u = PyLong_AsUnsignedLongLong(idx);
        Py_DECREF(idx);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        return wr64(e, (uint64_t)u);
    }
    case K_BOOL: {
        int b = PyObject_IsTrue(v);
        if (b < 0) return -1;
        return wr32(e, (uint32_t)b);
    }
    case K_F32: {
        double f = PyFloat_AsDouble(v);
        if (f == -1.0 && PyErr_Occurred()) return -1;
        float ff = (float)f;
        uint32_t u;
        memcpy(&u, &ff, 4);
        return wr32(e, u);
    }
    case K_F64: {
        double f = PyFloat_AsDouble(v);
        if (f == -1.0 && PyErr_Occurred()) return -1;
        uint64_t u;
        memcpy(&u, &f, 8);
        return wr64(e, u);
    }
    case K_OPAQUE:
    case K_VOPAQUE:
    case K_STRING: {
        Py_buffer view;
        int r = -1;
        if (PyUnicode_Check(v) && t->kind == K_STRING) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(v, &n);
            if (s == NULL) return -1;
            if (n > t->n) {
                PyErr_Format(PyExc_ValueError, "%U: length %zd exceeds maximum %u", t->name, n, t->n);
                return -1;
            }
            if (wr32(e, (uint32_t)n) < 0) return -1;
            return wr_bytes(e, s, n);
        }
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0)
            return -1;
        if (t->kind == K_OPAQUE) {
            if (view.len != t->n)
                PyErr_Format(PyExc_ValueError, "%U: length %zd, expected %u", t->name, view.len, t->n);
            else
                r = wr_bytes(e, view.buf, view.len);
        } else if (view.len > t->n) {
            PyErr_Format(PyExc_ValueError, "%U: length %zd exceeds maximum %u", t->name, view.len, t->n);
        } else if (wr32(e, (uint32_t)view.len) == 0) {
            r = wr_bytes(e, view.buf, view.len);
        }
        PyBuffer_Release(&view);
        return r;
    }
    case K_ARRAY:
    case K_FARRAY: {
        PyObject *seq = PySequence_Fast(v, "an XDR array must be a sequence");
        if (seq == NULL) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        int r = 0;
        if (t->kind == K_FARRAY ? n != t->n : n > t->n) {
            PyErr_Format(PyExc_ValueError, "%U: %zd items, %s %u", t->name, n,
                         t->kind == K_FARRAY ? "expected" : "maximum", t->n);
            r = -1;
        } else if (t->kind == K_ARRAY) {
            r = wr32(e, (uint32_t)n);
        }
        PyObject **items = PySequence_Fast_ITEMS(seq);
        for (Py_ssize_t i = 0; i < n && r == 0; i++)
            r = enc(e, t->elem, items[i], depth);
        Py_DECREF(seq);
        return r;
    }
    case K_OPT:
        if (v == Py_None)
            return wr32(e, 0);
        if (wr32(e, 1) < 0) return -1;
        return enc(e, t->elem, v, depth);
    case K_TYPEDEF: {
        PyObject *inner = PyObject_GetAttr(v, t->fnames[0]);
        if (inner == NULL) return -1;
        int r = enc(e, t->ftypes[0], inner, depth - 1);
        Py_DECREF(inner);
        return r;
    }
    case K_STRUCT:
        for (int i = 0; i < t->nfields; i++) {
            PyObject *f = PyObject_GetAttr(v, t->fnames[i]);
            if (f == NULL) return -1;
            int r = enc(e, t->ftypes[i], f, depth - 1);
            Py_DECREF(f);
            if (r < 0) return -1;
        }
        return 0;
    case K_UNION: {
        PyObject *disc = PyObject_GetAttr(v, t->fnames[0]);
        if (disc == NULL) return -1;
        int64_t value;
        int r = disc_value(e->codec, t->ftypes[0], disc, &value);
        if (r == 0)
            r = enc(e, t->ftypes[0], disc, depth - 1);
        Py_DECREF(disc);
        if (r < 0) return -1;
        int c = find_case(t, value);
        if (c < 0) {
            PyErr_Format(PyExc_ValueError, "Invalid %U.", t->fnames[0]);
            return -1;
        }
        int f = t->case_field[c];
        if (f < 0)
            return 0;
        PyObject *arm = PyObject_GetAttr(v, t->fnames[f]);
        if (arm == NULL) return -1;
        if (arm == Py_None && e->codec->types[t->ftypes[f]].kind != K_OPT) {
            PyErr_Format(PyExc_ValueError, "%U should not be None.", t->fnames[f]);
            Py_DECREF(arm);
            return -1;
        }
        r = enc(e, t->ftypes[f], arm, depth - 1);
        Py_DECREF(arm);
        return r;
    }
    }
    PyErr_SetString(PyExc_SystemError, "corrupt codec table");
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* scanning raw LedgerEntryChanges without building objects                                   */

/* LedgerEntryType and LedgerEntryChangeType values (XDR constants) */
enum { LE_ACCOUNT = 0, LE_TRUSTLINE = 1, LE_CLAIMABLE_BALANCE = 4, LE_LIQUIDITY_POOL = 5 };
enum { LC_CREATED = 0, LC_UPDATED = 1, LC_REMOVED = 2, LC_STATE = 3, LC_RESTORED = 4 };
#define ASSET_POOL_SHARE 3

static int
find_type(Codec *c, const char *name, int kind)
{
    for (Py_ssize_t i = 0; i < c->ntypes; i++)
        if (c->types[i].kind == kind && PyUnicode_CompareWithASCIIString(c->types[i].name, name) == 0)
            return (int)i;
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "the codec table has no %s type the scanners can read", name);
    return -1;
}

static int
find_field(Codec *c, int tid, const char *name)
{
    TypeDesc *t = &c->types[tid];
    for (int i = 0; i < t->nfields; i++)
        if (PyUnicode_CompareWithASCIIString(t->fnames[i], name) == 0)
            return i;
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "%U has no field %s", t->name, name);
    return -1;
}

/* The type of the arm a union selects for ``value`` (-1: void or none). */
static int
arm_type(Codec *c, int tid, int64_t value)
{
    TypeDesc *t = &c->types[tid];
    int k = find_case(t, value);
    return (k < 0 || t->case_field[k] < 0) ? -1 : t->ftypes[t->case_field[k]];
}

#define SCAN_TYPE(dst, name, k) if ((s->dst = find_type(c, name, k)) < 0) return -1
#define SCAN_FIELD(dst, tid, name) if ((s->dst = find_field(c, s->tid, name)) < 0) return -1
#define SCAN_ARM(dst, tid, value, k) \
    if ((s->dst = arm_type(c, s->tid, value)) < 0 || c->types[s->dst].kind != (k)) goto shape

static int
scan_ready(Codec *c)
{
    Scan *s = &c->scan;
    if (s->ready)
        return 0;
    if (c->types == NULL) {
        PyErr_SetString(PyExc_ValueError, "the codec has no types");
        return -1;
    }
    int changes;
    if ((changes = find_type(c, "LedgerEntryChanges", K_TYPEDEF)) < 0) return -1;
    s->changes = c->types[changes].ftypes[0];
    SCAN_TYPE(change, "LedgerEntryChange", K_UNION);
    SCAN_TYPE(entry, "LedgerEntry", K_STRUCT);
    SCAN_TYPE(entry_data, "LedgerEntryData", K_UNION);
    SCAN_TYPE(entry_ext, "LedgerEntryExt", K_UNION);
    SCAN_TYPE(pool_body, "LiquidityPoolEntryBody", K_UNION);
    SCAN_TYPE(params, "LiquidityPoolConstantProductParameters", K_STRUCT);
    SCAN_TYPE(event, "ContractEvent", K_STRUCT);
    SCAN_TYPE(scval, "SCVal", K_UNION);
    if (c->types[s->changes].kind != K_ARRAY || c->types[s->changes].elem != s->change) goto shape;
    SCAN_ARM(ext_v1, entry_ext, 1, K_STRUCT);
    SCAN_ARM(account, entry_data, LE_ACCOUNT, K_STRUCT);
    SCAN_ARM(trustline, entry_data, LE_TRUSTLINE, K_STRUCT);
    SCAN_ARM(claimable, entry_data, LE_CLAIMABLE_BALANCE, K_STRUCT);
    SCAN_ARM(pool, entry_data, LE_LIQUIDITY_POOL, K_STRUCT);
    SCAN_ARM(product, pool_body, 0, K_STRUCT);
    SCAN_FIELD(e_data, entry, "data");
    SCAN_FIELD(e_ext, entry, "ext");
    SCAN_FIELD(x_sponsor, ext_v1, "sponsoring_id");
    SCAN_FIELD(a_id, account, "account_id");
    SCAN_FIELD(a_balance, account, "balance");
    SCAN_FIELD(t_id, trustline, "account_id");
    SCAN_FIELD(t_asset, trustline, "asset");
    SCAN_FIELD(t_balance, trustline, "balance");
    SCAN_FIELD(c_id, claimable, "balance_id");
    SCAN_FIELD(c_asset, claimable, "asset");
    SCAN_FIELD(c_amount, claimable, "amount");
    SCAN_FIELD(p_id, pool, "liquidity_pool_id");
    SCAN_FIELD(p_body, pool, "body");
    SCAN_FIELD(cp_params, product, "params");
    SCAN_FIELD(cp_a, product, "reserve_a");
    SCAN_FIELD(cp_b, product, "reserve_b");
    SCAN_FIELD(pr_a, params, "asset_a");
    SCAN_FIELD(pr_b, params, "asset_b");
    s->ready = 1;
    return 0;
shape:
    PyErr_SetString(PyExc_TypeError, "the codec's ledger entry types do not have the shape the scanners read");
    return -1;
}

/* Skip a struct's fields (checked like skip()), recording where each starts; off[nfields] is its end. */
static int
walk(Dec *d, int tid, Py_ssize_t *off)
{
    TypeDesc *t = &d->codec->types[tid];
    int64_t v = 0;
    if (t->kind != K_STRUCT) {
        PyErr_Format(PyExc_SystemError, "%U is not a struct", t->name);
        return -1;
    }
    for (int i = 0; i < t->nfields; i++) {
        off[i] = d->pos;
        if (skip(d, t->ftypes[i], MAX_DEPTH, &v) < 0) return -1;
    }
    off[t->nfields] = d->pos;
    return 0;
}

/* Read a union's discriminant (checked like skip()); *arm gets the selected arm's type, -1 when void. */
static int
union_arm(Dec *d, int tid, int64_t *value, int *arm)
{
    TypeDesc *t = &d->codec->types[tid];
    *value = 0;
    if (skip(d, t->ftypes[0], MAX_DEPTH, value) < 0) return -1;
    int k = find_case(t, *value);
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->name, (long long)*value);
        return -1;
    }
    *arm = t->case_field[k] < 0 ? -1 : t->ftypes[t->case_field[k]];
    return 0;
}

static inline int64_t
at64(const unsigned char *q)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | q[i];
    return (int64_t)v;
}

static inline uint32_t
at32(const unsigned char *q)
{
    return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | (uint32_t)q[3];
}

typedef XdrEntry Entry;  /* what the scanners read of one LedgerEntry (fastxdr_api.h) */

static int
scan_data(Dec *d, Scan *s, Entry *e)
{
    Py_ssize_t off[65], sub[65], par[65];
    const unsigned char *p = d->p;
    int arm;
    if (union_arm(d, s->entry_data, &e->type, &arm) < 0) return -1;
    e->data = p + d->pos;
    e->nbal = 0;
    e->pool_share = 0;
    switch (e->type) {
    case LE_ACCOUNT:
        if (walk(d, arm, off) < 0) return -1;
        memcpy(e->holder, p + off[s->a_id] + 4, 32);
        e->holder_len = 32;
        e->asset[0] = NULL;
        e->asset_len[0] = 0;
        e->amount[0] = at64(p + off[s->a_balance]);
        e->nbal = 1;
        return 0;
    case LE_TRUSTLINE:
        if (walk(d, arm, off) < 0) return -1;
        memcpy(e->holder, p + off[s->t_id] + 4, 32);
        e->holder_len = 32;
        e->asset[0] = p + off[s->t_asset];
        e->asset_len[0] = off[s->t_asset + 1] - off[s->t_asset];
        e->pool_share = at32(e->asset[0]) == ASSET_POOL_SHARE;
        e->amount[0] = at64(p + off[s->t_balance]);
        e->nbal = 1;
        return 0;
    case LE_CLAIMABLE_BALANCE:
        if (walk(d, arm, off) < 0) return -1;
        e->holder[0] = (unsigned char)at32(p + off[s->c_id]);
        memcpy(e->holder + 1, p + off[s->c_id] + 4, 32);
        e->holder_len = 33;
        e->asset[0] = p + off[s->c_asset];
        e->asset_len[0] = off[s->c_asset + 1] - off[s->c_asset];
        e->amount[0] = at64(p + off[s->c_amount]);
        e->nbal = 1;
        return 0;
    case LE_LIQUIDITY_POOL: {
        int64_t v;
        int body;
        if (walk(d, arm, off) < 0) return -1;
        Py_ssize_t end = d->pos;
        memcpy(e->holder, p + off[s->p_id], 32);
        e->holder_len = 32;
        d->pos = off[s->p_body];
        if (union_arm(d, s->pool_body, &v, &body) < 0) return -1;
        if (body != s->product) {
            PyErr_Format(PyExc_ValueError, "Invalid LiquidityPoolEntryBody discriminant %lld.", (long long)v);
            return -1;
        }
        if (walk(d, body, sub) < 0) return -1;
        d->pos = sub[s->cp_params];
        if (walk(d, s->params, par) < 0) return -1;
        e->asset[0] = p + par[s->pr_a];
        e->asset_len[0] = par[s->pr_a + 1] - par[s->pr_a];
        e->asset[1] = p + par[s->pr_b];
        e->asset_len[1] = par[s->pr_b + 1] - par[s->pr_b];
        e->amount[0] = at64(p + sub[s->cp_a]);
        e->amount[1] = at64(p + sub[s->cp_b]);
        e->nbal = 2;
        d->pos = end;
        return 0;
    }
    default:
        if (arm < 0) return 0;
        int64_t v;
        return skip(d, arm, MAX_DEPTH, &v);
    }
}

/* Scan one LedgerEntry; the sponsor is read only when ``sponsor`` is set. */
static int
scan_entry(Dec *d, Scan *s, Entry *e, int sponsor)
{
    TypeDesc *t = &d->codec->types[s->entry];
    int64_t v;
    Py_ssize_t start = d->pos;
    e->sponsor = NULL;
    for (int i = 0; i < t->nfields; i++) {
        if (i == s->e_data) {
            if (scan_data(d, s, e) < 0) return -1;
        } else if (i == s->e_ext && sponsor) {
            Py_ssize_t off[65];
            int arm;
            if (union_arm(d, s->entry_ext, &v, &arm) < 0) return -1;
            if (arm == s->ext_v1) {
                if (walk(d, arm, off) < 0) return -1;
                /* SponsorshipDescriptor: an optional AccountID (flag, key type, key) */
                if (at32(d->p + off[s->x_sponsor]) != 0)
                    e->sponsor = d->p + off[s->x_sponsor] + 8;
            } else if (arm >= 0 && skip(d, arm, MAX_DEPTH, &v) < 0) {
                return -1;
            }
        } else if (skip(d, t->ftypes[i], MAX_DEPTH, &v) < 0) {
            return -1;
        }
    }
    e->entry = d->p + start;
    e->entry_len = d->pos - start;
    return 0;
}

static PyObject *
difference(int64_t after, int64_t before)
{
    int64_t diff;
    if (!__builtin_sub_overflow(after, before, &diff))
        return PyLong_FromLongLong(diff);
    PyObject *a = PyLong_FromLongLong(after), *b = PyLong_FromLongLong(before);
    PyObject *r = (a != NULL && b != NULL) ? PyNumber_Subtract(a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return r;
}

/* Append the (type, holder, asset, amount) contributions of a pair: pre NULL for a created or restored
 * entry (+post), post NULL for a removed one (-pre), both for an update (post - pre). Zero ones are left out. */
static int
emit(PyObject *out, const Entry *pre, const Entry *post)
{
    const Entry *id = post != NULL ? post : pre;
    if (pre != NULL && pre->nbal == 0)
        return 0;
    if (pre != NULL && post != NULL && pre->type != post->type) {
        PyErr_Format(PyExc_ValueError, "LedgerEntryChange: an update turns a type %lld entry into type %lld",
                     (long long)pre->type, (long long)post->type);
        return -1;
    }
    if (id->pool_share)
        return 0;
    for (int k = 0; k < id->nbal; k++) {
        int64_t after = post != NULL ? post->amount[k] : 0, before = pre != NULL ? pre->amount[k] : 0;
        if (after == before)
            continue;
        PyObject *item = PyTuple_New(4);
        if (item == NULL) return -1;
        PyTuple_SET_ITEM(item, 0, PyLong_FromLongLong(id->type));
        PyTuple_SET_ITEM(item, 1, PyBytes_FromStringAndSize((const char *)id->holder, id->holder_len));
        PyTuple_SET_ITEM(item, 2, id->asset[k] == NULL ? Py_NewRef(Py_None)
                                  : PyBytes_FromStringAndSize((const char *)id->asset[k], id->asset_len[k]));
        PyTuple_SET_ITEM(item, 3, difference(after, before));
        int r = -1;
        if (PyTuple_GET_ITEM(item, 0) && PyTuple_GET_ITEM(item, 1) && PyTuple_GET_ITEM(item, 2) &&
            PyTuple_GET_ITEM(item, 3))
            r = PyList_Append(out, item);  /* a tuple with a NULL slot is still freed correctly */
        Py_DECREF(item);
        if (r < 0) return -1;
    }
    return 0;
}

/*
 * Walk a raw LedgerEntryChanges with every check the decoder makes. With ``out`` (a list), append the
 * balance contributions of its accounts, trustlines, claimable balances and pools, pairing each update
 * or removal with the STATE or RESTORED change right before it. With ``sponsors`` (a list), append the
 * sponsor key of each created or restored entry that has one.
 */
static int
scan_changes(Codec *c, const unsigned char *p, Py_ssize_t len, PyObject *out, PyObject *sponsors)
{
    if (scan_ready(c) < 0) return -1;
    Scan *s = &c->scan;
    Dec d = {p, 0, len, c, 0, 0};
    Entry cur, prev;
    int have_prev = 0;
    uint32_t n;
    if (rd_array_length(&d, &c->types[s->changes], &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t type, v;
        int arm;
        if (union_arm(&d, s->change, &type, &arm) < 0) return -1;
        switch (type) {
        case LC_CREATED:
        case LC_RESTORED:
            if (scan_entry(&d, s, &cur, sponsors != NULL) < 0) return -1;
            if (out != NULL && emit(out, NULL, &cur) < 0) return -1;
            if (sponsors != NULL && cur.sponsor != NULL) {
                PyObject *key = PyBytes_FromStringAndSize((const char *)cur.sponsor, 32);
                int r = key == NULL ? -1 : PyList_Append(sponsors, key);
                Py_XDECREF(key);
                if (r < 0) return -1;
            }
            have_prev = type == LC_RESTORED;
            if (have_prev) prev = cur;
            continue;
        case LC_STATE:
            if (scan_entry(&d, s, &prev, 0) < 0) return -1;
            have_prev = 1;
            continue;
        case LC_UPDATED:
            if (scan_entry(&d, s, &cur, 0) < 0) return -1;
            break;
        default:
            if (arm >= 0 && skip(&d, arm, MAX_DEPTH, &v) < 0) return -1;
            break;
        }
        if (out != NULL) {
            if (!have_prev) {
                PyErr_Format(PyExc_ValueError,
                             "LedgerEntryChange %u: an update or removal must follow the entry's state", i);
                return -1;
            }
            if (emit(out, &prev, type == LC_UPDATED ? &cur : NULL) < 0) return -1;
        }
        have_prev = 0;
    }
    if (d.pos != d.len) {
        PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d.len - d.pos);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(Codec_balance_changes_doc,
"balance_changes(raw)\n--\n\n"
"Balance contributions of a raw ``LedgerEntryChanges``: ``(entry_type, holder, asset, amount)`` per\n"
"account, trustline, claimable balance and pool reserve whose balance it changes. ``holder`` is the\n"
"strkey payload (ed25519 key, claimable balance type byte + hash, pool id), ``asset`` the\n"
"``Asset``/``TrustLineAsset`` XDR (None for an account's lumens), ``amount`` +post for created and\n"
"restored entries, post - pre for updates, -pre for removals, where pre is the STATE or RESTORED\n"
"change right before. Pool-share trustlines and zero contributions are left out.\n\n"
"``raw`` may also be a list or tuple of groups, each scanned (and paired) on its own, their contributions\n"
"concatenated: bytes-like objects, or ``LedgerEntryChanges`` values (the raw XDR a lazy one holds, else\n"
"the value encoded).");

/* scan_changes over the bytes of ``arg``, collecting balances or sponsors into a new list. */
static PyObject *
scan_to_list(Codec *self, PyObject *arg, int sponsors)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out != NULL && scan_changes(self, view.buf, view.len, sponsors ? NULL : out, sponsors ? out : NULL) < 0)
        Py_CLEAR(out);
    PyBuffer_Release(&view);
    return out;
}

/* The XDR of ``value`` (type ``tid``) as a new bytes object. */
static PyObject *
encode_bytes(Codec *self, int tid, PyObject *value)
{
    Enc e = {NULL, 0, 0, self};
    PyObject *out = NULL;
    if (enc(&e, tid, value, MAX_DEPTH) == 0)
        out = PyBytes_FromStringAndSize(e.buf ? e.buf : "", e.len);
    PyMem_Free(e.buf);
    return out;
}

/* A new reference to the XDR of one LedgerEntryChanges group: ``g`` itself when bytes-like, the raw bytes
   a lazy value holds, else the value encoded. */
static PyObject *
changes_xdr(Codec *self, PyObject *g)
{
    if (PyObject_CheckBuffer(g))
        return Py_NewRef(g);
    PyObject *raw = PyObject_GenericGetAttr(g, raw_name);
    if (raw != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return raw;
    PyErr_Clear();
    int tid = find_type(self, "LedgerEntryChanges", K_TYPEDEF);
    return tid < 0 ? NULL : encode_bytes(self, tid, g);
}

static PyObject *
Codec_balance_changes(Codec *self, PyObject *arg)
{
    if (!PyList_Check(arg) && !PyTuple_Check(arg))
        return scan_to_list(self, arg, 0);
    PyObject *groups = PySequence_Fast(arg, "balance_changes() takes bytes or a list of groups");
    if (groups == NULL) return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PySequence_Fast_GET_SIZE(groups); i++) {
        PyObject *raw = changes_xdr(self, PySequence_Fast_GET_ITEM(groups, i));
        Py_buffer view;
        if (raw == NULL || PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
            Py_XDECREF(raw);
            Py_CLEAR(out);
            break;
        }
        if (scan_changes(self, view.buf, view.len, out, NULL) < 0)
            Py_CLEAR(out);
        PyBuffer_Release(&view);
        Py_DECREF(raw);
    }
    Py_DECREF(groups);
    return out;
}

PyDoc_STRVAR(Codec_created_sponsors_doc,
"created_sponsors(raw)\n--\n\n"
"The sponsors (ed25519 keys of ``ext.v1.sponsoringID``) of the created and restored entries of a raw\n"
"``LedgerEntryChanges`` that have one, in change order. The whole input is checked.");

static PyObject *
Codec_created_sponsors(Codec *self, PyObject *arg)
{
    return scan_to_list(self, arg, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* strkeys                                                                                    */

PyDoc_STRVAR(strkey_doc,
"strkey(version_byte, payload)\n--\n\n"
"Strkey text of ``payload``: unpadded RFC 4648 base32 of the version byte, the payload (any length)\n"
"and their CRC16-XModem checksum, little-endian.");

static PyObject *
fastxdr_strkey(PyObject *module, PyObject *args)
{
    int version;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "iy*", &version, &view))
        return NULL;
    PyObject *text = NULL;
    if (version < 0 || version > 255)
        PyErr_Format(PyExc_ValueError, "strkey version byte %d is not in range(0, 256)", version);
    else
        text = strkey_text((unsigned)version, view.buf, view.len);
    PyBuffer_Release(&view);
    return text;
}

/* ------------------------------------------------------------------------------------------ */
/* reading raw contract events                                                                */

/* SCValType and SCAddressType values (XDR constants) */
enum { SCV_I128 = 10, SCV_STRING = 14, SCV_SYMBOL = 15, SCV_ADDRESS = 18 };
enum { SCA_ACCOUNT, SCA_CONTRACT, SCA_MUXED_ACCOUNT, SCA_CLAIMABLE_BALANCE, SCA_LIQUIDITY_POOL };

/* The text of a checked SCVal ``v`` of type ``type`` (symbol or string), UTF-8 with replacement; else None. */
static PyObject *
scval_text(const unsigned char *v, uint32_t type)
{
    if (v == NULL || at32(v) != type)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8((const char *)v + 8, at32(v + 4), "replace");
}

/* The strkey of a checked SCVal ``v`` when it is an address; else None. */
static PyObject *
scval_address(const unsigned char *v)
{
    if (v == NULL || at32(v) != SCV_ADDRESS)
        Py_RETURN_NONE;
    switch (at32(v + 4)) {
    case SCA_ACCOUNT:
        return strkey_text(SK_ACCOUNT, v + 12, 32);  /* PublicKey: type (ed25519), key */
    case SCA_CONTRACT:
        return strkey_text(SK_CONTRACT, v + 8, 32);
    case SCA_MUXED_ACCOUNT: {
        unsigned char payload[40];  /* the strkey holds the key, then the id */
        memcpy(payload, v + 16, 32);
        memcpy(payload + 32, v + 8, 8);
        return strkey_text(SK_MUXED, payload, 40);
    }
    case SCA_CLAIMABLE_BALANCE:
        return strkey_text(SK_BALANCE, v + 11, 33);  /* the id's type (its last byte), hash */
    case SCA_LIQUIDITY_POOL:
        return strkey_text(SK_POOL, v + 8, 32);
    }
    Py_RETURN_NONE;
}

/* The value of a checked SCVal ``v`` when it is an i128; else None. */
static PyObject *
scval_i128(const unsigned char *v)
{
    if (at32(v) != SCV_I128)
        Py_RETURN_NONE;
    int64_t hi = at64(v + 4);
    uint64_t lo = (uint64_t)at64(v + 12);
    if ((hi == 0 && lo <= INT64_MAX) || (hi == -1 && lo > INT64_MAX))
        return PyLong_FromLongLong((long long)lo);
    PyObject *h = PyLong_FromLongLong(hi), *l = PyLong_FromUnsignedLongLong(lo), *sixty_four = PyLong_FromLong(64);
    PyObject *shifted = (h && sixty_four) ? PyNumber_Lshift(h, sixty_four) : NULL;
    PyObject *out = (shifted && l) ? PyNumber_Or(shifted, l) : NULL;
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(sixty_four);
    Py_XDECREF(shifted);
    return out;
}

PyDoc_STRVAR(Codec_event_summary_doc,
"event_summary(raw)\n--\n\n"
"What token movement readers look at in a raw ``ContractEvent`` (checked like decode()), as a tuple:\n"
"the contract id (32 bytes) or None, the type value, the number of topics, the first topic when a\n"
"symbol, the strkeys of topics 1 and 2 where addresses, the last topic when a string, the data's\n"
"SCValType value, and the data when an i128; None where a topic is missing or of another type.\n"
"Symbols and strings are decoded as UTF-8 with replacement.");

static PyObject *
Codec_event_summary(Codec *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    const unsigned char *p = view.buf, *topic[3] = {NULL, NULL, NULL}, *last = NULL;
    Dec d = {p, 0, view.len, self, 0, 0};
    int64_t v = 0;
    if (scan_ready(self) < 0 || skip(&d, self->scan.event, MAX_DEPTH, &v) < 0)
        goto done;
    if (d.pos != d.len) {
        PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d.len - d.pos);
        goto done;
    }
    /* ext (v0: void), contractID (flag, hash), type, body's arm (v0), topics (count, SCVals), data */
    int has_contract = at32(p + 4) != 0;
    Py_ssize_t at = has_contract ? 40 : 8;
    int32_t type = (int32_t)at32(p + at);
    uint32_t n = at32(p + at + 8);
    d.pos = at + 12;
    for (uint32_t i = 0; i < n; i++) {
        last = p + d.pos;
        if (i < 3)
            topic[i] = last;
        if (skip(&d, self->scan.scval, MAX_DEPTH, &v) < 0)
            goto done;
    }
    out = Py_BuildValue(
        "(NiINNNNIN)",
        has_contract ? PyBytes_FromStringAndSize((const char *)p + 8, 32) : Py_NewRef(Py_None),
        (int)type,
        n,
        scval_text(topic[0], SCV_SYMBOL),
        scval_address(topic[1]),
        scval_address(topic[2]),
        scval_text(last, SCV_STRING),
        at32(p + d.pos),
        scval_i128(p + d.pos));
done:
    PyBuffer_Release(&view);
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* the C API for other extensions (fastxdr_api.h)                                             */

static int get_tid(Codec *self, int tid);

static int
api_type_index(PyObject *codec, const char *name)
{
    Codec *c = (Codec *)codec;
    for (Py_ssize_t i = 0; i < c->ntypes; i++)
        if (PyUnicode_CompareWithASCIIString(c->types[i].name, name) == 0)
            return (int)i;
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "the codec table has no type %s", name);
    return -1;
}

static int
api_skip(PyObject *codec, int tid, const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos)
{
    Codec *c = (Codec *)codec;
    if (get_tid(c, tid) < 0)
        return -1;
    if (*pos < 0 || *pos > len) {
        PyErr_Format(PyExc_ValueError, "offset %zd outside the data (%zd bytes)", *pos, len);
        return -1;
    }
    Dec d = {p, *pos, len, c, 0, 0};
    int64_t v = 0;
    if (skip(&d, tid, MAX_DEPTH, &v) < 0)
        return -1;
    *pos = d.pos;
    return 0;
}

static int
api_changes(PyObject *codec, const unsigned char *p, Py_ssize_t len, xdr_change_fn each, void *ctx)
{
    Codec *c = (Codec *)codec;
    if (scan_ready(c) < 0) return -1;
    Scan *s = &c->scan;
    Dec d = {p, 0, len, c, 0, 0};
    uint32_t n;
    if (rd_array_length(&d, &c->types[s->changes], &n) < 0) return -1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t type, v;
        int arm, r;
        Entry e;
        if (union_arm(&d, s->change, &type, &arm) < 0) return -1;
        if (arm == s->entry) {
            if (scan_entry(&d, s, &e, 1) < 0) return -1;
            r = each(ctx, (int)type, &e, NULL, 0);
        } else {
            Py_ssize_t start = d.pos;
            if (arm >= 0 && skip(&d, arm, MAX_DEPTH, &v) < 0) return -1;
            r = each(ctx, (int)type, NULL, p + start, d.pos - start);
        }
        if (r != 0) return r;
    }
    if (d.pos != d.len) {
        PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d.len - d.pos);
        return -1;
    }
    return 0;
}

static FastXdrApi fastxdr_api = {FASTXDR_API_VERSION, api_type_index, api_skip, api_changes};

/* ------------------------------------------------------------------------------------------ */
/* the ledger index: a LedgerCloseMeta checked like decode() and located, without building it  */

/* Type indices and field positions the index walk reads, looked up by name once. */
typedef struct {
    int ready;
    int lcm, hhe, header, envelope;
    int v0, v1, v2;                 /* LedgerCloseMetaV0..V2 */
    int trm, trm1;                  /* TransactionResultMeta, TransactionResultMetaV1 */
} IndexTypes;

static IndexTypes ix;
static PyObject *sha256_fn, *update_name, *digest_name;

static int
ix_ready(Codec *c)
{
    if (ix.ready)
        return 0;
    if ((ix.lcm = find_type(c, "LedgerCloseMeta", K_UNION)) < 0 ||
        (ix.hhe = find_type(c, "LedgerHeaderHistoryEntry", K_STRUCT)) < 0 ||
        (ix.header = find_type(c, "LedgerHeader", K_STRUCT)) < 0 ||
        (ix.envelope = find_type(c, "TransactionEnvelope", K_UNION)) < 0 ||
        (ix.v0 = find_type(c, "LedgerCloseMetaV0", K_STRUCT)) < 0 ||
        (ix.v1 = find_type(c, "LedgerCloseMetaV1", K_STRUCT)) < 0 ||
        (ix.v2 = find_type(c, "LedgerCloseMetaV2", K_STRUCT)) < 0 ||
        (ix.trm = find_type(c, "TransactionResultMeta", K_STRUCT)) < 0 ||
        (ix.trm1 = find_type(c, "TransactionResultMetaV1", K_STRUCT)) < 0)
        return -1;
    /* the shapes read below: field order as the XDR definitions give it */
    TypeDesc *t = c->types;
    if (t[ix.hhe].nfields != 3 || t[ix.hhe].ftypes[1] != ix.header || t[ix.header].nfields != 15 ||
        t[ix.v0].nfields != 5 || t[ix.v1].nfields != 9 || t[ix.v2].nfields != 8 || t[ix.trm].nfields != 3 ||
        t[ix.trm1].nfields != 5 || t[ix.envelope].ncases != 3) {
        PyErr_SetString(PyExc_TypeError, "the codec's LedgerCloseMeta types do not have the shape the index reads");
        return -1;
    }
    for (int k = 0; k < 3; k++) {
        int arm = t[ix.envelope].ftypes[t[ix.envelope].case_field[k]];
        if (t[arm].kind != K_STRUCT || t[arm].nfields != 2) {
            PyErr_SetString(PyExc_TypeError, "the codec's envelope types do not have the shape the index reads");
            return -1;
        }
    }
    if (sha256_fn == NULL) {
        PyObject *hashlib = PyImport_ImportModule("hashlib");
        if (hashlib == NULL)
            return -1;
        sha256_fn = PyObject_GetAttrString(hashlib, "sha256");
        Py_DECREF(hashlib);
        update_name = PyUnicode_InternFromString("update");
        digest_name = PyUnicode_InternFromString("digest");
        if (sha256_fn == NULL || update_name == NULL || digest_name == NULL)
            return -1;
    }
    ix.ready = 1;
    return 0;
}

/* Growable arrays of the index's records. */
typedef struct {
    LedgerIndexTx *tx;
    Py_ssize_t ntx, cap_tx;
    LedgerIndexEnv *env;
    Py_ssize_t nenv, cap_env;
    LedgerIndexOp *op;
    Py_ssize_t nop, cap_op;
} Spans;

static void *
grow_array(void *items, Py_ssize_t n, Py_ssize_t *cap, size_t size)
{
    if (n < *cap)
        return items;
    Py_ssize_t want = *cap ? *cap * 2 : 64;
    void *more = PyMem_Realloc(items, (size_t)want * size);
    if (more == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    *cap = want;
    return more;
}

/* A struct at ``depth`` (as dec() would reach it): its fields' offsets into off[0..nfields]. */
static int
ix_fields(Dec *d, int tid, int depth, Py_ssize_t *off)
{
    TypeDesc *t = &d->codec->types[tid];
    int64_t v = 0;
    if (depth <= 0)
        return depth_error();
    for (int i = 0; i < t->nfields; i++) {
        off[i] = d->pos;
        if (skip(d, t->ftypes[i], depth - 1, &v) < 0) return -1;
    }
    off[t->nfields] = d->pos;
    return 0;
}

/* A TransactionEnvelope at ``depth``: its span and its signed body's, appended to the set's envelopes. */
static int
ix_envelope(Dec *d, int depth, Spans *s)
{
    Codec *c = d->codec;
    TypeDesc *t = &c->types[ix.envelope];
    Py_ssize_t start = d->pos, off[3];
    int64_t type = 0;
    if (depth <= 0)
        return depth_error();
    if (skip(d, t->ftypes[0], depth - 1, &type) < 0)
        return -1;
    int k = find_case(t, type);
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->fnames[0], (long long)type);
        return -1;
    }
    if (ix_fields(d, t->ftypes[t->case_field[k]], depth - 1, off) < 0)
        return -1;
    if ((s->env = grow_array(s->env, s->nenv, &s->cap_env, sizeof(LedgerIndexEnv))) == NULL)
        return -1;
    s->env[s->nenv++] = (LedgerIndexEnv){(uint32_t)start, (uint32_t)d->pos, (uint32_t)off[0], (uint32_t)off[1],
                                         (uint32_t)type};
    return 0;
}

/* Walk a value of type ``tid`` like skip(), recording every TransactionEnvelope in it (a transaction set). */
static int
ix_find_envelopes(Dec *d, int tid, int depth, Spans *s)
{
    TypeDesc *t = &d->codec->types[tid];
    int64_t v = 0;
    if (tid == ix.envelope)
        return ix_envelope(d, depth, s);
    switch (t->kind) {
    case K_ARRAY:
    case K_FARRAY: {
        uint32_t n = t->n;
        if (t->kind == K_ARRAY && rd_array_length(d, t, &n) < 0)
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (ix_find_envelopes(d, t->elem, depth, s) < 0) return -1;
        return 0;
    }
    case K_OPT:
        if (need(d, 4) < 0) return -1;
        return rd_flag(d) ? ix_find_envelopes(d, t->elem, depth, s) : 0;
    case K_TYPEDEF:
        if (depth <= 0) return depth_error();
        return ix_find_envelopes(d, t->ftypes[0], depth - 1, s);
    case K_STRUCT:
        if (depth <= 0) return depth_error();
        for (int i = 0; i < t->nfields; i++)
            if (ix_find_envelopes(d, t->ftypes[i], depth - 1, s) < 0) return -1;
        return 0;
    case K_UNION: {
        if (depth <= 0) return depth_error();
        if (skip(d, t->ftypes[0], depth - 1, &v) < 0) return -1;
        int c = find_case(t, v);
        if (c < 0) {
            PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->fnames[0], (long long)v);
            return -1;
        }
        int f = t->case_field[c];
        return f < 0 ? 0 : ix_find_envelopes(d, t->ftypes[f], depth - 1, s);
    }
    default:
        return skip(d, tid, depth, &v);
    }
}

/* What the index records of a field of the meta's structs, found by the field's name. */
enum { R_SKIP, R_BEFORE, R_OPS, R_AFTER, R_SOROBAN, R_EVENTS, R_DIAGNOSTIC, R_CHANGES };

typedef struct {
    int tid;
    signed char role[16];
} Roles;

static Roles roles_cache[16];
static int nroles;

static const signed char *
roles_of(Codec *c, int tid)
{
    for (int i = 0; i < nroles; i++)
        if (roles_cache[i].tid == tid)
            return roles_cache[i].role;
    TypeDesc *t = &c->types[tid];
    if (nroles == 16 || t->nfields > 16) {
        PyErr_SetString(PyExc_SystemError, "too many meta types");
        return NULL;
    }
    static const struct { const char *name; int role; } names[] = {
        {"tx_changes", R_BEFORE}, {"tx_changes_before", R_BEFORE}, {"operations", R_OPS},
        {"tx_changes_after", R_AFTER}, {"soroban_meta", R_SOROBAN}, {"events", R_EVENTS},
        {"diagnostic_events", R_DIAGNOSTIC}, {"changes", R_CHANGES},
    };
    Roles *r = &roles_cache[nroles];
    r->tid = tid;
    for (int f = 0; f < t->nfields; f++) {
        r->role[f] = R_SKIP;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (PyUnicode_CompareWithASCIIString(t->fnames[f], names[k].name) == 0)
                r->role[f] = (signed char)names[k].role;
    }
    nroles++;
    return r->role;
}

/* An array of OperationMeta / OperationMetaV2 at ``depth``: each one's changes and events. */
static int
ix_op_metas(Dec *d, int arr, int depth, LedgerIndexTx *x, Spans *s)
{
    Codec *c = d->codec;
    TypeDesc *a = &c->types[arr];
    uint32_t n;
    int64_t v = 0;
    if (a->kind != K_ARRAY || rd_array_length(d, a, &n) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "operations is not an array");
        return -1;
    }
    const signed char *role = roles_of(c, a->elem);
    if (role == NULL)
        return -1;
    TypeDesc *t = &c->types[a->elem];
    x->op_meta = (uint32_t)s->nop;
    x->op_meta_count = n;
    for (uint32_t i = 0; i < n; i++) {
        if (depth <= 0)
            return depth_error();
        if ((s->op = grow_array(s->op, s->nop, &s->cap_op, sizeof(LedgerIndexOp))) == NULL)
            return -1;
        LedgerIndexOp *o = &s->op[s->nop++];
        memset(o, 0, sizeof *o);
        for (int f = 0; f < t->nfields; f++) {
            Py_ssize_t start = d->pos;
            if (skip(d, t->ftypes[f], depth - 1, &v) < 0)
                return -1;
            if (role[f] == R_CHANGES) {
                o->changes = (uint32_t)start;
                o->changes_end = (uint32_t)d->pos;
            } else if (role[f] == R_EVENTS) {
                o->events = (uint32_t)start;
            }
        }
    }
    return 0;
}

/* The fields of a struct of the meta at ``depth``, recorded by their roles (``soroban``: the fields of
   sorobanMeta, whose events are the transaction's Soroban events). */
static int
ix_meta_fields(Dec *d, int tid, int depth, LedgerIndexTx *x, Spans *s, int soroban)
{
    Codec *c = d->codec;
    TypeDesc *t = &c->types[tid];
    const signed char *role = roles_of(c, tid);
    int64_t v = 0;
    if (role == NULL)
        return -1;
    if (depth <= 0)
        return depth_error();
    for (int f = 0; f < t->nfields; f++) {
        Py_ssize_t start = d->pos;
        int ft = t->ftypes[f], r = 0;
        switch (role[f]) {
        case R_OPS:
            r = ix_op_metas(d, ft, depth - 1, x, s);
            break;
        case R_SOROBAN: {
            TypeDesc *o = &c->types[ft];
            if (o->kind != K_OPT) {
                PyErr_SetString(PyExc_TypeError, "sorobanMeta is not optional");
                return -1;
            }
            if (need(d, 4) < 0)
                return -1;
            if (rd_flag(d)) {
                x->soroban_meta = (uint32_t)d->pos;
                r = ix_meta_fields(d, o->elem, depth - 1, x, s, 1);
            }
            break;
        }
        default:
            r = skip(d, ft, depth - 1, &v);
        }
        if (r < 0)
            return -1;
        switch (role[f]) {
        case R_BEFORE:
            x->before = (uint32_t)start;
            x->before_end = (uint32_t)d->pos;
            break;
        case R_AFTER:
            x->after = (uint32_t)start;
            x->after_end = (uint32_t)d->pos;
            break;
        case R_EVENTS:
            if (soroban)
                x->soroban_events = (uint32_t)start;
            else
                x->events = (uint32_t)start;
            break;
        case R_DIAGNOSTIC:
            x->diagnostic = (uint32_t)start;
            break;
        }
    }
    return 0;
}

/* A TransactionMeta at ``depth``: its version and parts. */
static int
ix_meta(Dec *d, int tid, int depth, LedgerIndexTx *x, Spans *s)
{
    Codec *c = d->codec;
    TypeDesc *t = &c->types[tid];
    int64_t v = 0;
    if (t->kind != K_UNION) {
        PyErr_SetString(PyExc_TypeError, "TransactionMeta is not a union");
        return -1;
    }
    if (depth <= 0)
        return depth_error();
    if (skip(d, t->ftypes[0], depth - 1, &v) < 0)
        return -1;
    int k = find_case(t, v);
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t->fnames[0], (long long)v);
        return -1;
    }
    x->meta_version = (uint32_t)v;
    int arm = t->ftypes[t->case_field[k]];
    if (c->types[arm].kind == K_ARRAY)  /* v0: the operations' metas */
        return ix_op_metas(d, arm, depth - 1, x, s);
    return ix_meta_fields(d, arm, depth - 1, x, s, 0);
}

/* The array of TransactionResultMeta(V1) at ``depth``: each transaction's spans. */
static int
ix_processing(Dec *d, int arr, int depth, int v1, Spans *s)
{
    TypeDesc *t = &d->codec->types[arr];
    Py_ssize_t off[6];
    uint32_t n;
    if (t->kind != K_ARRAY || rd_array_length(d, t, &n) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "txProcessing is not an array");
        return -1;
    }
    TypeDesc *e = &d->codec->types[t->elem];
    int b = v1 ? 1 : 0;  /* V1 starts with an ExtensionPoint */
    int64_t v = 0;
    for (uint32_t i = 0; i < n; i++) {
        if ((s->tx = grow_array(s->tx, s->ntx, &s->cap_tx, sizeof(LedgerIndexTx))) == NULL)
            return -1;
        LedgerIndexTx *x = &s->tx[s->ntx++];
        memset(x, 0, sizeof *x);
        x->env_index = UINT32_MAX;
        if (depth <= 0)
            return depth_error();
        for (int f = 0; f < e->nfields; f++) {
            off[f] = d->pos;
            int r = f == b + 2 ? ix_meta(d, e->ftypes[f], depth - 1, x, s) : skip(d, e->ftypes[f], depth - 1, &v);
            if (r < 0)
                return -1;
        }
        off[e->nfields] = d->pos;
        x->processing = (uint32_t)off[0];
        x->processing_end = (uint32_t)off[e->nfields];
        x->result = (uint32_t)off[b];
        x->result_end = (uint32_t)off[b + 1];
        x->fee = (uint32_t)off[b + 1];
        x->fee_end = (uint32_t)off[b + 2];
        x->meta = (uint32_t)off[b + 2];
        x->meta_end = (uint32_t)off[b + 3];
        if (v1) {
            x->post = (uint32_t)off[4];
            x->post_end = (uint32_t)off[5];
        }
    }
    return 0;
}

/* sha256(a + b) into ``out``, by hashlib. */
static int
sha256_two(const unsigned char *a, Py_ssize_t alen, const unsigned char *b, Py_ssize_t blen, unsigned char *out)
{
    PyObject *h = PyObject_CallNoArgs(sha256_fn), *r = NULL, *digest = NULL;
    int ok = -1;
    if (h == NULL)
        return -1;
    const unsigned char *parts[2] = {a, b};
    Py_ssize_t lens[2] = {alen, blen};
    for (int i = 0; i < 2; i++) {
        PyObject *mv = PyMemoryView_FromMemory((char *)parts[i], lens[i], PyBUF_READ);
        r = mv ? PyObject_CallMethodOneArg(h, update_name, mv) : NULL;
        Py_XDECREF(mv);
        if (r == NULL) goto done;
        Py_DECREF(r);
    }
    digest = PyObject_CallMethodNoArgs(h, digest_name);
    if (digest != NULL && PyBytes_Check(digest) && PyBytes_GET_SIZE(digest) == 32) {
        memcpy(out, PyBytes_AS_STRING(digest), 32);
        ok = 0;
    } else if (digest != NULL) {
        PyErr_SetString(PyExc_TypeError, "sha256 digest is not 32 bytes");
    }
done:
    Py_XDECREF(digest);
    Py_DECREF(h);
    return ok;
}

/* Join each transaction with the envelope its result's hash names (the last such envelope, as a dict
   keyed by hash keeps it); unmatched transactions flag the index. */
static int
ix_join(const unsigned char *p, const unsigned char *nid, Spans *s, uint32_t *flags)
{
    Py_ssize_t n = s->nenv, size = 1;
    while (size < 2 * n + 2)
        size *= 2;
    unsigned char *hashes = PyMem_Malloc((size_t)(n ? n : 1) * 32);
    int32_t *table = PyMem_Malloc((size_t)size * sizeof(int32_t));
    int ok = -1;
    if (hashes == NULL || table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++)
        table[i] = -1;
    unsigned char prefix[40];
    memcpy(prefix, nid, 32);
    for (Py_ssize_t i = 0; i < n; i++) {
        LedgerIndexEnv *e = &s->env[i];
        /* the signature payload: network id, ENVELOPE_TYPE_TX (a v0 body with the ed25519 key type before
           it) or ENVELOPE_TYPE_TX_FEE_BUMP, then the body */
        uint32_t tag = e->env_type == 5 ? 5 : 2;
        prefix[32] = prefix[33] = prefix[34] = 0;
        prefix[35] = (unsigned char)tag;
        memset(prefix + 36, 0, 4);
        if (sha256_two(prefix, e->env_type == 0 ? 40 : 36, p + e->body, e->body_end - e->body, hashes + 32 * i) < 0)
            goto done;
        uint64_t h;
        memcpy(&h, hashes + 32 * i, 8);
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(size - 1));
        while (table[slot] >= 0 && memcmp(hashes + 32 * table[slot], hashes + 32 * i, 32) != 0)
            slot = (slot + 1) & (size - 1);
        table[slot] = (int32_t)i;
    }
    for (Py_ssize_t k = 0; k < s->ntx; k++) {
        LedgerIndexTx *x = &s->tx[k];
        const unsigned char *want = p + x->result;  /* TransactionResultPair: the hash first */
        uint64_t h;
        memcpy(&h, want, 8);
        Py_ssize_t slot = (Py_ssize_t)(h & (uint64_t)(size - 1));
        while (table[slot] >= 0 && memcmp(hashes + 32 * table[slot], want, 32) != 0)
            slot = (slot + 1) & (size - 1);
        if (table[slot] < 0) {
            *flags |= LI_UNMATCHED;
            continue;
        }
        LedgerIndexEnv *e = &s->env[table[slot]];
        x->env = e->env;
        x->env_end = e->env_end;
        x->body = e->body;
        x->body_end = e->body_end;
        x->env_type = e->env_type;
        x->env_index = (uint32_t)table[slot];
    }
    ok = 0;
done:
    PyMem_Free(hashes);
    PyMem_Free(table);
    return ok;
}

/* Walk a whole LedgerCloseMeta: head fields and the spans of its transactions and envelopes. */
static int
ix_walk(Dec *d, LedgerIndexHead *head, Spans *s)
{
    Codec *c = d->codec;
    TypeDesc *t = c->types;
    int64_t v = 0;
    int depth = MAX_DEPTH;
    Py_ssize_t off[10], hoff[4], hdr[16];
    if (skip(d, t[ix.lcm].ftypes[0], depth - 1, &v) < 0)
        return -1;
    if (v < 0 || v > 2) {
        PyErr_Format(PyExc_ValueError, "Invalid %U discriminant %lld.", t[ix.lcm].fnames[0], (long long)v);
        return -1;
    }
    head->lcm_version = (uint32_t)v;
    int body = v == 0 ? ix.v0 : v == 1 ? ix.v1 : ix.v2;
    depth -= 1;  /* the body struct */
    if (depth <= 0)
        return depth_error();
    int first = v == 0 ? 0 : 1;  /* v1, v2 start with ext */
    TypeDesc *b = &t[body];
    for (int i = 0; i < b->nfields; i++) {
        off[i] = d->pos;
        int f = i - first;  /* 0 header, 1 tx set, 2 tx processing, 3 upgrades, 4 scp, 5 soroban state, 6 evicted */
        int r;
        if (f == 0) {
            r = ix_fields(d, b->ftypes[i], depth - 1, hoff);
            if (r == 0) {
                Py_ssize_t end = d->pos;
                d->pos = hoff[1];
                r = ix_fields(d, ix.header, depth - 2, hdr);
                d->pos = end;
            }
        } else if (f == 1) {
            r = ix_find_envelopes(d, b->ftypes[i], depth - 1, s);
        } else if (f == 2) {
            r = ix_processing(d, b->ftypes[i], depth - 1, v == 2, s);
        } else {
            r = skip(d, b->ftypes[i], depth - 1, &v);
        }
        if (r < 0)
            return -1;
    }
    off[b->nfields] = d->pos;
    if (d->pos != d->len) {
        PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d->len - d->pos);
        return -1;
    }
    const unsigned char *p = d->p;
    head->header_entry = (uint32_t)hoff[0];
    head->header = (uint32_t)hoff[1];
    head->header_end = (uint32_t)hoff[2];
    head->protocol = at32(p + hdr[0]);
    head->close_time = (uint64_t)at64(p + hdr[2] + 32);  /* StellarValue: txSetHash, closeTime */
    head->sequence = at32(p + hdr[5]);
    head->upgrades = (uint32_t)off[first + 3];
    head->upgrades_end = (uint32_t)off[first + 4];
    if (first) {
        Py_ssize_t ext = off[0];
        if (at32(p + ext) == 1) {  /* LedgerCloseMetaExtV1: ExtensionPoint (v0), sorobanFeeWrite1KB */
            head->has_fee_write = 1;
            head->soroban_fee_write = at64(p + ext + 8);
        }
        head->soroban_state = (uint64_t)at64(p + off[first + 5]);
        head->evicted = (uint32_t)off[first + 6];
        head->evicted_end = (uint32_t)off[first + 7];
    }
    return 0;
}

PyDoc_STRVAR(Codec_ledger_index_doc,
"ledger_index(data, network_id)\n--\n\n"
"Check the LedgerCloseMeta XDR ``data`` like decode() checks it, without building it, and locate its\n"
"parts: bytes laid out as fastxdr_api.h describes (header fields, every transaction's result, fee\n"
"changes, meta and the envelope of the set whose hash, under ``network_id``, its result names).\n"
"Raises what decode() raises for input it rejects.");

static PyObject *
Codec_ledger_index(Codec *self, PyObject *args)
{
    Py_buffer view, nid;
    if (!PyArg_ParseTuple(args, "y*y*", &view, &nid))
        return NULL;
    PyObject *out = NULL;
    Spans s = {0};
    LedgerIndexHead head;
    memset(&head, 0, sizeof head);
    head.version = LEDGER_INDEX_VERSION;
    if (nid.len != 32) {
        PyErr_SetString(PyExc_ValueError, "network_id must be 32 bytes");
        goto done;
    }
    if (view.len > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "a LedgerCloseMeta beyond 4 GB cannot be indexed");
        goto done;
    }
    if (ix_ready(self) < 0)
        goto done;
    Dec d = {view.buf, 0, view.len, self, 0, 0};
    if (ix_walk(&d, &head, &s) < 0)
        goto done;
    if (d.noncanon)
        head.flags |= LI_NONCANONICAL;
    if (ix_join(view.buf, nid.buf, &s, &head.flags) < 0)
        goto done;
    head.ntx = (uint32_t)s.ntx;
    head.nenv = (uint32_t)s.nenv;
    head.nop = (uint32_t)s.nop;
    size_t size = sizeof head + (size_t)s.ntx * sizeof(LedgerIndexTx) + (size_t)s.nenv * sizeof(LedgerIndexEnv) +
                  (size_t)s.nop * sizeof(LedgerIndexOp);
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (out == NULL)
        goto done;
    char *q = PyBytes_AS_STRING(out);
    memcpy(q, &head, sizeof head);
    if (s.ntx)
        memcpy(q + sizeof head, s.tx, (size_t)s.ntx * sizeof(LedgerIndexTx));
    q += sizeof head + (size_t)s.ntx * sizeof(LedgerIndexTx);
    if (s.nenv)
        memcpy(q, s.env, (size_t)s.nenv * sizeof(LedgerIndexEnv));
    q += (size_t)s.nenv * sizeof(LedgerIndexEnv);
    if (s.nop)
        memcpy(q, s.op, (size_t)s.nop * sizeof(LedgerIndexOp));
done:
    PyMem_Free(s.tx);
    PyMem_Free(s.env);
    PyMem_Free(s.op);
    PyBuffer_Release(&view);
    PyBuffer_Release(&nid);
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* the Codec object                                                                           */

static void
free_types(Codec *self)
{
    if (self->types == NULL)
        return;
    for (Py_ssize_t i = 0; i < self->ntypes; i++) {
        TypeDesc *t = &self->types[i];
        Py_XDECREF(t->cls);
        Py_XDECREF(t->lazy_cls);
        Py_XDECREF(t->name);
        for (int k = 0; k < t->nfields; k++)
            Py_XDECREF(t->fnames[k]);
        PyMem_Free(t->fnames);
        PyMem_Free(t->ftypes);
        PyMem_Free(t->set_order);
        PyMem_Free(t->case_values);
        PyMem_Free(t->case_field);
        if (t->emembers != NULL) {
            for (Py_ssize_t k = 0; k < t->ecount; k++)
                Py_XDECREF(t->emembers[k]);
            PyMem_Free(t->emembers);
        }
        Py_XDECREF(t->edict);
    }
    PyMem_Free(self->types);
    self->types = NULL;
}

static void
Codec_dealloc(Codec *self)
{
    free_types(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
check_tid(Py_ssize_t ntypes, long tid, int allow_none)
{
    if ((allow_none && tid == -1) || (tid >= 0 && tid < ntypes))
        return 0;
    PyErr_Format(PyExc_ValueError, "type index %ld out of range", tid);
    return -1;
}

/* One descriptor: (kind, name, cls, n, elem, fields, set_order, cases, members, lazy_cls, keep_source). */
static int
load_type(TypeDesc *t, PyObject *desc, Py_ssize_t ntypes)
{
    PyObject *name, *cls, *fields, *order, *cases, *members, *lazy_cls;
    long kind, n, elem;
    int keep_source;
    if (!PyArg_ParseTuple(desc, "lUOllOOOOOp", &kind, &name, &cls, &n, &elem, &fields, &order, &cases, &members,
                          &lazy_cls, &keep_source))
        return -1;
    if (kind < 0 || kind >= K_COUNT || n < 0 || n > (long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "bad descriptor for %U", name);
        return -1;
    }
    t->kind = (int)kind;
    t->n = (uint32_t)n;
    t->elem = (int)elem;
    Py_INCREF(name);
    t->name = name;
    if (cls != Py_None) {
        if (!PyType_Check(cls)) {
            PyErr_Format(PyExc_TypeError, "%U: class expected", name);
            return -1;
        }
        Py_INCREF(cls);
        t->cls = cls;
    }
    if (lazy_cls != Py_None) {
        if (!PyType_Check(lazy_cls) || t->cls == NULL || !(kind == K_STRUCT || kind == K_UNION || kind == K_TYPEDEF)) {
            PyErr_Format(PyExc_TypeError, "%U: a lazy class needs a struct, union or typedef", name);
            return -1;
        }
        Py_INCREF(lazy_cls);
        t->lazy_cls = lazy_cls;
    }
    if (keep_source && !(kind == K_STRUCT || kind == K_UNION || kind == K_TYPEDEF)) {
        PyErr_Format(PyExc_TypeError, "%U: only struct, union and typedef values keep their source", name);
        return -1;
    }
    t->keep_source = keep_source;
    if ((kind == K_ARRAY || kind == K_FARRAY || kind == K_OPT) && check_tid(ntypes, elem, 0) < 0)
        return -1;
    if ((kind == K_STRUCT || kind == K_UNION || kind == K_TYPEDEF) && t->cls == NULL) {
        PyErr_Format(PyExc_ValueError, "%U: a class is required", name);
        return -1;
    }
    /* fields */
    if (!PyTuple_Check(fields) || !PyTuple_Check(order) || !PyTuple_Check(cases)) {
        PyErr_Format(PyExc_TypeError, "%U: fields, order and cases must be tuples", name);
        return -1;
    }
    Py_ssize_t nf = PyTuple_GET_SIZE(fields);
    if (nf > 64 || (kind == K_TYPEDEF && nf != 1) || (kind == K_UNION && nf < 1)) {
        PyErr_Format(PyExc_ValueError, "%U: bad field count %zd", name, nf);
        return -1;
    }
    t->fnames = PyMem_Calloc(nf ? nf : 1, sizeof(PyObject *));
    t->ftypes = PyMem_Calloc(nf ? nf : 1, sizeof(int));
    t->set_order = PyMem_Calloc(nf ? nf : 1, sizeof(int));
    if (!t->fnames || !t->ftypes || !t->set_order) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < nf; i++) {
        PyObject *fname;
        long ftid;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "Ul", &fname, &ftid))
            return -1;
        if (check_tid(ntypes, ftid, kind == K_UNION && i > 0) < 0)
            return -1;
        Py_INCREF(fname);
        PyUnicode_InternInPlace(&fname);
        t->fnames[i] = fname;
        t->ftypes[i] = (int)ftid;
        t->nfields = (int)i + 1;
    }
    if (kind == K_STRUCT) {
        if (PyTuple_GET_SIZE(order) != nf) {
            PyErr_Format(PyExc_ValueError, "%U: set order has the wrong size", name);
            return -1;
        }
        for (Py_ssize_t i = 0; i < nf; i++) {
            long k = PyLong_AsLong(PyTuple_GET_ITEM(order, i));
            if (k < 0 || k >= nf) {
                if (!PyErr_Occurred())
                    PyErr_Format(PyExc_ValueError, "%U: bad set order", name);
                return -1;
            }
            t->set_order[i] = (int)k;
        }
    }
    /* union cases */
    Py_ssize_t nc = PyTuple_GET_SIZE(cases);
    if (nc) {
        t->case_values = PyMem_Calloc(nc, sizeof(int64_t));
        t->case_field = PyMem_Calloc(nc, sizeof(int));
        if (!t->case_values || !t->case_field) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < nc; i++) {
        long long value;
        long field;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(cases, i), "Ll", &value, &field))
            return -1;
        if (field != -1 && (field < 1 || field >= nf || t->ftypes[field] < 0)) {
            PyErr_Format(PyExc_ValueError, "%U: bad case arm", name);
            return -1;
        }
        t->case_values[i] = value;
        t->case_field[i] = (int)field;
        t->ncases = (int)i + 1;
        if (value >= 0 && value < DENSE_CASES && t->dense_cases[value] == 0)
            t->dense_cases[value] = (int)i + 1;
    }
    /* enum members: {value: member} */
    if (kind == K_ENUM) {
        PyObject *key, *val;
        Py_ssize_t pos = 0;
        long long lo = 0, hi = -1;
        if (!PyDict_Check(members)) {
            PyErr_Format(PyExc_TypeError, "%U: members must be a dict", name);
            return -1;
        }
        while (PyDict_Next(members, &pos, &key, &val)) {
            long long v = PyLong_AsLongLong(key);
            if (v == -1 && PyErr_Occurred()) return -1;
            if (hi < lo) lo = hi = v;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        if (hi >= lo && hi - lo < DENSE_ENUM) {
            t->emin = lo;
            t->ecount = (Py_ssize_t)(hi - lo + 1);
            t->emembers = PyMem_Calloc(t->ecount, sizeof(PyObject *));
            if (t->emembers == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            pos = 0;
            while (PyDict_Next(members, &pos, &key, &val)) {
                Py_INCREF(val);
                t->emembers[PyLong_AsLongLong(key) - lo] = val;
            }
        } else {
            Py_INCREF(members);
            t->edict = members;
        }
    }
    return 0;
}

static int
Codec_init(Codec *self, PyObject *args, PyObject *kwds)
{
    PyObject *descs;
    static char *kwlist[] = {"types", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", kwlist, &PyTuple_Type, &descs))
        return -1;
    free_types(self);
    self->scan.ready = 0;
    Py_ssize_t n = PyTuple_GET_SIZE(descs);
    self->types = PyMem_Calloc(n ? n : 1, sizeof(TypeDesc));
    if (self->types == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->ntypes = n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (load_type(&self->types[i], PyTuple_GET_ITEM(descs, i), n) < 0) {
            free_types(self);
            self->ntypes = 0;
            return -1;
        }
    return 0;
}

static int
get_tid(Codec *self, int tid)
{
    if (self->types == NULL || tid < 0 || tid >= self->ntypes) {
        PyErr_Format(PyExc_ValueError, "unknown type index %d", tid);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(Codec_decode_doc,
"decode(tid, data, offset=0, exact=True, lazy=True)\n--\n\n"
"Decode type ``tid`` from ``data`` (any bytes-like object) at ``offset``. With ``exact`` the value\n"
"must end the data and the value is returned; otherwise ``(value, end_offset)`` is returned.\n"
"With ``lazy``, values of types that have a lazy class are checked but kept as raw XDR below the top.\n"
"Values of the types that keep their source hold their input bytes in ``_xdr_src``.");

static PyObject *
Codec_decode(Codec *self, PyObject *args, PyObject *kwds)
{
    int tid, exact = 1, lazy = 1;
    Py_ssize_t offset = 0;
    Py_buffer view;
    static char *kwlist[] = {"tid", "data", "offset", "exact", "lazy", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*|npp", kwlist, &tid, &view, &offset, &exact, &lazy))
        return NULL;
    PyObject *result = NULL;
    if (get_tid(self, tid) < 0)
        goto done;
    if (offset < 0 || offset > view.len) {
        PyErr_Format(PyExc_ValueError, "offset %zd outside the data (%zd bytes)", offset, view.len);
        goto done;
    }
    Dec d = {view.buf, offset, view.len, self, lazy, 0};
    /* A decoded value is a tree: no cycles for the collector to find while it is being built. */
    int gc_was_enabled = PyGC_Disable();
    PyObject *value = dec(&d, tid, MAX_DEPTH);
    if (gc_was_enabled)
        PyGC_Enable();
    if (value == NULL)
        goto done;
    if (exact) {
        if (d.pos != d.len) {
            PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d.len - d.pos);
            Py_DECREF(value);
            goto done;
        }
        result = value;
    } else {
        result = Py_BuildValue("Nn", value, d.pos);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(Codec_encode_doc,
"encode(tid, value)\n--\n\nEncode ``value`` as XDR type ``tid`` and return the bytes.");

static PyObject *
Codec_encode(Codec *self, PyObject *args)
{
    int tid;
    PyObject *value;
    if (!PyArg_ParseTuple(args, "iO", &tid, &value))
        return NULL;
    if (get_tid(self, tid) < 0)
        return NULL;
    return encode_bytes(self, tid, value);
}

PyDoc_STRVAR(Codec_materialize_doc,
"materialize(tid, obj)\n--\n\n"
"Decode the raw XDR a lazy ``obj`` holds in ``_xdr_raw`` into its own attributes (type ``tid``).\n"
"Returns True when it did, False when ``obj`` was already decoded.");

static PyObject *
Codec_materialize(Codec *self, PyObject *args)
{
    int tid;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "iO", &tid, &obj))
        return NULL;
    if (get_tid(self, tid) < 0)
        return NULL;
    TypeDesc *t = &self->types[tid];
    if (t->kind != K_TYPEDEF && t->kind != K_STRUCT && t->kind != K_UNION) {
        PyErr_Format(PyExc_TypeError, "%U values are not lazy", t->name);
        return NULL;
    }
    PyObject *dict = PyObject_GenericGetDict(obj, NULL);
    if (dict == NULL) return NULL;
    PyObject *raw = PyDict_GetItemWithError(dict, raw_name);
    if (raw == NULL) {
        Py_DECREF(dict);
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_FALSE;
    }
    if (!PyBytes_Check(raw)) {
        Py_DECREF(dict);
        PyErr_SetString(PyExc_TypeError, "_xdr_raw must be bytes");
        return NULL;
    }
    Py_INCREF(raw);
    PyObject *result = NULL;
    if (PyDict_DelItem(dict, raw_name) == 0) {
        Dec d = {(const unsigned char *)PyBytes_AS_STRING(raw), 0, PyBytes_GET_SIZE(raw), self, 1, 0};
        int gc_was_enabled = PyGC_Disable();
        int r = fill(&d, t, MAX_DEPTH, obj);
        if (gc_was_enabled)
            PyGC_Enable();
        if (r == 0 && d.pos != d.len) {
            PyErr_Format(PyExc_ValueError, "Unexpected trailing %zd bytes in XDR data", d.len - d.pos);
            r = -1;
        }
        if (r == 0 && t->keep_source && d.noncanon == 0)
            r = PyObject_GenericSetAttr(obj, src_name, raw);
        if (r < 0) {
            PyObject *exc_type, *exc_value, *exc_tb;
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
            PyDict_SetItem(dict, raw_name, raw);
            PyErr_Restore(exc_type, exc_value, exc_tb);
        } else {
            result = Py_True;
            Py_INCREF(result);
        }
    }
    Py_DECREF(raw);
    Py_DECREF(dict);
    return result;
}

PyDoc_STRVAR(Codec_ends_doc,
"ends(tid, data, offset, count=None)\n--\n\n"
"The end offsets of ``count`` consecutive values of type ``tid`` in ``data`` (any bytes-like object)\n"
"from ``offset``, as a tuple: splits raw XDR into its values without building them. With no ``count``\n"
"the values are the items of an XDR array whose length (a u32) is at ``offset``. Lengths and values\n"
"are checked like decode() checks them.");

static PyObject *
Codec_ends(Codec *self, PyObject *args)
{
    int tid;
    Py_ssize_t offset, count = -1;
    PyObject *count_arg = Py_None;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "iy*n|O", &tid, &view, &offset, &count_arg))
        return NULL;
    PyObject *out = NULL;
    Dec d = {view.buf, offset, view.len, self, 0, 0};
    if (get_tid(self, tid) < 0)
        goto done;
    if (offset < 0 || offset > view.len) {
        PyErr_Format(PyExc_ValueError, "offset %zd outside the data (%zd bytes)", offset, view.len);
        goto done;
    }
    if (count_arg == Py_None) {
        if (need(&d, 4) < 0) goto done;
        count = rd32(&d);
    } else if ((count = PyLong_AsSsize_t(count_arg)) < 0) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "negative count %zd", count);
        goto done;
    }
    if (count > d.len - d.pos) {
        PyErr_Format(PyExc_ValueError, "array length %zd exceeds remaining input length %zd",
                     count, d.len - d.pos);
        goto done;
    }
    if ((out = PyTuple_New(count)) == NULL)
        goto done;
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *end;
        if (skip(&d, tid, MAX_DEPTH, &v) < 0 || (end = PyLong_FromSsize_t(d.pos)) == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyTuple_SET_ITEM(out, i, end);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef Codec_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Codec_decode, METH_VARARGS | METH_KEYWORDS, Codec_decode_doc},
    {"encode", (PyCFunction)Codec_encode, METH_VARARGS, Codec_encode_doc},
    {"materialize", (PyCFunction)Codec_materialize, METH_VARARGS, Codec_materialize_doc},
    {"ends", (PyCFunction)Codec_ends, METH_VARARGS, Codec_ends_doc},
    {"balance_changes", (PyCFunction)Codec_balance_changes, METH_O, Codec_balance_changes_doc},
    {"created_sponsors", (PyCFunction)Codec_created_sponsors, METH_O, Codec_created_sponsors_doc},
    {"event_summary", (PyCFunction)Codec_event_summary, METH_O, Codec_event_summary_doc},
    {"ledger_index", (PyCFunction)Codec_ledger_index, METH_VARARGS, Codec_ledger_index_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CodecType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdp_ray.xdr.fast._fastxdr.Codec",
    .tp_basicsize = sizeof(Codec),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Codec(types): an XDR codec over a table of type descriptors."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Codec_init,
    .tp_dealloc = (destructor)Codec_dealloc,
    .tp_methods = Codec_methods,
};

static PyMethodDef fastxdr_functions[] = {
    {"strkey", fastxdr_strkey, METH_VARARGS, strkey_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastxdr_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastxdr",
    .m_doc = "Table-driven XDR codec producing stellar-sdk objects.",
    .m_size = -1,
    .m_methods = fastxdr_functions,
};

PyMODINIT_FUNC
PyInit__fastxdr(void)
{
    if (PyType_Ready(&CodecType) < 0)
        return NULL;
    crc16_init();
    empty_tuple = PyTuple_New(0);
    raw_name = PyUnicode_InternFromString("_xdr_raw");
    src_name = PyUnicode_InternFromString("_xdr_src");
    if (empty_tuple == NULL || raw_name == NULL || src_name == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&fastxdr_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CodecType);
    if (PyModule_AddObject(m, "Codec", (PyObject *)&CodecType) < 0) {
        Py_DECREF(&CodecType);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *sizes = Py_BuildValue("(nnnn)", (Py_ssize_t)sizeof(LedgerIndexHead), (Py_ssize_t)sizeof(LedgerIndexTx),
                                    (Py_ssize_t)sizeof(LedgerIndexEnv), (Py_ssize_t)sizeof(LedgerIndexOp));
    if (sizes == NULL || PyModule_AddObject(m, "INDEX_SIZES", sizes) < 0) {
        Py_XDECREF(sizes);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *api = PyCapsule_New(&fastxdr_api, FASTXDR_API_NAME, NULL);
    if (api == NULL || PyModule_AddObject(m, "API", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(m);
        return NULL;
    }
    static const char *kinds[] = {"I32", "U32", "I64", "U64", "BOOL", "F32", "F64", "OPAQUE", "VOPAQUE",
                                  "STRING", "ARRAY", "FARRAY", "OPT", "ENUM", "STRUCT", "UNION", "TYPEDEF"};
    for (int i = 0; i < K_COUNT; i++)
        if (PyModule_AddIntConstant(m, kinds[i], i) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
