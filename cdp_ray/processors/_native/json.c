/* json.c: a JSON object written with its keys sorted, as Go's json.Marshal writes a map. */
#include "native.h"

void
obj_init(Obj *o, Buf *scratch)
{
    o->n = 0;
    o->scratch = scratch;
    o->base = scratch->len;
}

Buf *
obj_key(Obj *o, const char *key)
{
    if (o->n == OBJ_MAX) decline("details map too large");
    o->key[o->n] = key;
    o->start[o->n] = o->scratch->len;
    return o->scratch;
}

void
obj_end(Obj *o)
{
    o->end[o->n] = o->scratch->len;
    o->n++;
}

void
obj_str(Obj *o, const char *key, const u8 *s, Py_ssize_t n)
{
    put_json_str(obj_key(o, key), s, n, 1);
    obj_end(o);
}

void
obj_cstr(Obj *o, const char *key, const char *s)
{
    obj_str(o, key, (const u8 *)s, (Py_ssize_t)strlen(s));
}

void
obj_raw(Obj *o, const char *key, const char *json)
{
    buf_cstr(obj_key(o, key), json);
    obj_end(o);
}

void
obj_i64(Obj *o, const char *key, int64_t v)
{
    put_i64(obj_key(o, key), v);
    obj_end(o);
}

void
obj_u64(Obj *o, const char *key, uint64_t v)
{
    put_u64(obj_key(o, key), v);
    obj_end(o);
}

void
obj_float(Obj *o, const char *key, double v)
{
    put_go_float(obj_key(o, key), v);
    obj_end(o);
}

void
obj_strkey(Obj *o, const char *key, unsigned version, const u8 *payload, Py_ssize_t n)
{
    Buf *b = obj_key(o, key);
    buf_byte(b, '"');
    put_strkey(b, version, payload, n);
    buf_byte(b, '"');
    obj_end(o);
}

void
obj_write(Obj *o, Buf *out)
{
    /* insertion sort by key (a handful of keys); a repeated key keeps its last value, as a dict does */
    int order[OBJ_MAX];
    int n = 0;
    for (int i = 0; i < o->n; i++) {
        int j = n, dup = -1;
        for (int k = 0; k < n; k++)
            if (strcmp(o->key[order[k]], o->key[i]) == 0) dup = k;
        if (dup >= 0) {
            order[dup] = i;
            continue;
        }
        while (j > 0 && strcmp(o->key[order[j - 1]], o->key[i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
        n++;
    }
    buf_byte(out, '{');
    for (int k = 0; k < n; k++) {
        int i = order[k];
        if (k) buf_byte(out, ',');
        buf_byte(out, '"');
        buf_cstr(out, o->key[i]);
        buf_cstr(out, "\":");
        buf_put(out, o->scratch->p + o->start[i], o->end[i] - o->start[i]);
    }
    buf_byte(out, '}');
    o->scratch->len = o->base;
}
