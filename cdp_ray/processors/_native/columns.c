/* columns.c: Arrow-layout column buffers (values, int32 offsets, validity bits), rolled back per ledger. */
#include "native.h"

void
col_init(Col *c, char kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    if (kind == C_STR || kind == C_STRS || kind == C_U32S) {
        int32_t zero = 0;
        buf_put(&c->offs, &zero, 4);
    }
    if (kind == C_STRS)
        buf_put(&c->items, &(int32_t){0}, 4);
}

void
col_free(Col *c)
{
    buf_free(&c->data);
    buf_free(&c->offs);
    buf_free(&c->valid);
    buf_free(&c->items);
}

void
col_mark(const Col *c, ColMark *m)
{
    m->n = c->n;
    m->nulls = c->nulls;
    m->data = c->data.len;
    m->offs = c->offs.len;
    m->items = c->items.len;
    m->nitems = c->nitems;
}

void
col_rollback(Col *c, const ColMark *m)
{
    c->n = m->n;
    c->nulls = m->nulls;
    c->data.len = m->data;
    c->offs.len = m->offs;
    c->items.len = m->items;
    c->nitems = m->nitems;
    if (c->kind == C_BOOL)
        c->data.len = (c->n + 7) / 8;
    if (c->valid.len)
        c->valid.len = (c->n + 7) / 8;
}

/* Set validity bit ``i`` (bits are allocated at the first null, earlier rows valid). */
static void
set_valid(Col *c, Py_ssize_t i, int ok)
{
    Py_ssize_t need = (i + 8) / 8;
    if (c->valid.len < need) {
        buf_reserve(&c->valid, need - c->valid.len);
        memset(c->valid.p + c->valid.len, 0, need - c->valid.len);
        c->valid.len = need;
    }
    if (ok)
        c->valid.p[i / 8] |= (char)(1 << (i % 8));
    else
        c->valid.p[i / 8] &= (char)~(1 << (i % 8));
}

/* Count a row; ``ok``: not null. */
static inline void
row(Col *c, int ok)
{
    if (!ok && c->nulls == 0 && c->valid.len == 0) {  /* first null: earlier rows valid */
        for (Py_ssize_t i = 0; i < c->n; i++)
            set_valid(c, i, 1);
    }
    if (!ok || c->valid.len)
        set_valid(c, c->n, ok);
    if (!ok)
        c->nulls++;
    c->n++;
}

static inline void
fixed(Col *c, const void *v, Py_ssize_t size)
{
    buf_put(&c->data, v, size);
    row(c, 1);
}

static Py_ssize_t
fixed_size(char kind)
{
    switch (kind) {
    case C_I32:
    case C_U32:
        return 4;
    case C_I64:
    case C_U64:
    case C_F64:
    case C_TIME:
        return 8;
    }
    return 0;
}

void
col_null(Col *c)
{
    Py_ssize_t size = fixed_size(c->kind);
    if (size) {
        buf_reserve(&c->data, size);
        memset(c->data.p + c->data.len, 0, size);
        c->data.len += size;
    } else if (c->kind == C_BOOL) {
        Py_ssize_t need = (c->n + 8) / 8;
        if (c->data.len < need) buf_byte(&c->data, 0);
        c->data.p[c->n / 8] &= (char)~(1 << (c->n % 8));
    } else {
        int32_t end = (int32_t)(c->kind == C_STR ? c->data.len : c->kind == C_STRS ? c->nitems : c->data.len / 4);
        buf_put(&c->offs, &end, 4);
    }
    row(c, 0);
}

void
col_bool(Col *c, int v)
{
    Py_ssize_t need = (c->n + 8) / 8;
    if (c->data.len < need) buf_byte(&c->data, 0);
    if (v)
        c->data.p[c->n / 8] |= (char)(1 << (c->n % 8));
    else
        c->data.p[c->n / 8] &= (char)~(1 << (c->n % 8));
    row(c, 1);
}

void col_i32(Col *c, int32_t v) { fixed(c, &v, 4); }
void col_u32(Col *c, uint32_t v) { fixed(c, &v, 4); }
void col_i64(Col *c, int64_t v) { fixed(c, &v, 8); }
void col_u64(Col *c, uint64_t v) { fixed(c, &v, 8); }
void col_f64(Col *c, double v) { fixed(c, &v, 8); }

void
col_end(Col *c)
{
    Py_ssize_t end = c->kind == C_STR ? c->data.len : c->kind == C_STRS ? c->nitems : c->data.len / 4;
    if (end > INT32_MAX)
        decline("column beyond 2 GB");  /* the caller builds smaller batches */
    int32_t e = (int32_t)end;
    buf_put(&c->offs, &e, 4);
    row(c, 1);
}

void
col_str(Col *c, const char *s, Py_ssize_t n)
{
    buf_put(&c->data, s, n);
    col_end(c);
}

void
col_cstr(Col *c, const char *s)
{
    col_str(c, s, (Py_ssize_t)strlen(s));
}

Buf *
col_item_text(Col *c)
{
    return &c->data;
}

void
col_item_end(Col *c)
{
    if (c->data.len > INT32_MAX)
        decline("column beyond 2 GB");
    int32_t e = (int32_t)c->data.len;
    buf_put(&c->items, &e, 4);
    c->nitems++;
}

void
col_item_u32(Col *c, uint32_t v)
{
    buf_put(&c->data, &v, 4);
    c->nitems++;
}

/* A buffer handed to Python without a copy: it owns the memory a Buf held (buffer protocol, read-only). */
typedef struct {
    PyObject_HEAD
    char *p;
    Py_ssize_t len;
} Chunk;

static void
chunk_dealloc(Chunk *self)
{
    PyMem_Free(self->p);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
chunk_getbuffer(Chunk *self, Py_buffer *view, int flags)
{
    return PyBuffer_FillInfo(view, (PyObject *)self, self->p ? self->p : "", self->len, 1, flags);
}

static PyBufferProcs chunk_buffer = {(getbufferproc)chunk_getbuffer, NULL};

PyTypeObject ChunkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cdp_ray.processors._native.Chunk",
    .tp_basicsize = sizeof(Chunk),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Bytes a native table builder wrote, handed over without a copy."),
    .tp_dealloc = (destructor)chunk_dealloc,
    .tp_as_buffer = &chunk_buffer,
};

/* The Buf's memory as a Chunk (the Buf is emptied). */
static PyObject *
bytes_of(Buf *b)
{
    Chunk *c = PyObject_New(Chunk, &ChunkType);
    if (c == NULL)
        return NULL;
    c->p = b->p;
    c->len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return (PyObject *)c;
}

PyObject *
col_export(Col *c)
{
    PyObject *valid = c->nulls ? bytes_of(&c->valid) : Py_NewRef(Py_None);
    PyObject *data = bytes_of(&c->data);
    int offsets = c->kind == C_STR || c->kind == C_STRS || c->kind == C_U32S;
    PyObject *offs = offsets ? bytes_of(&c->offs) : Py_NewRef(Py_None);
    PyObject *items = c->kind == C_STRS ? bytes_of(&c->items) : Py_NewRef(Py_None);
    if (valid == NULL || data == NULL || offs == NULL || items == NULL) {
        Py_XDECREF(valid);
        Py_XDECREF(data);
        Py_XDECREF(offs);
        Py_XDECREF(items);
        return NULL;
    }
    return Py_BuildValue("(CnnNNNNn)", c->kind, c->n, c->nulls, valid, data, offs, items, c->nitems);
}
