/* text.c: buffers and the text forms of values (base64, hex, decimals, strkeys, JSON, Go floats). */
#include "native.h"

#include "../../xdr/fast/strkey.h"

void
buf_size(Buf *b, Py_ssize_t cap)
{
    if (b->cap >= cap)
        return;
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        fail();
    }
    b->p = p;
    b->cap = cap;
}

void
buf_reserve(Buf *b, Py_ssize_t n)
{
    if (b->cap - b->len >= n)
        return;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            fail();
        }
        cap *= 2;
    }
    buf_size(b, cap);
}

void
buf_free(Buf *b)
{
    PyMem_Free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char B64_PAIRS[4096][2];  /* the two digits of each 12-bit value */

void
put_b64(Buf *b, const u8 *s, Py_ssize_t n)
{
    if (B64_PAIRS[1][1] == 0)
        for (int v = 0; v < 4096; v++) {
            B64_PAIRS[v][0] = B64[v >> 6];
            B64_PAIRS[v][1] = B64[v & 63];
        }
    buf_reserve(b, (n + 2) / 3 * 4);
    char *o = b->p + b->len;
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        memcpy(o, B64_PAIRS[v >> 12], 2);
        memcpy(o + 2, B64_PAIRS[v & 4095], 2);
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = B64[v >> 18];
        *o++ = B64[(v >> 12) & 63];
        *o++ = B64[(v >> 6) & 63];
        *o++ = '=';
    }
    b->len = o - b->p;
}

void
put_hex(Buf *b, const u8 *s, Py_ssize_t n)
{
    static const char H[] = "0123456789abcdef";
    buf_reserve(b, 2 * n);
    char *o = b->p + b->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        *o++ = H[s[i] >> 4];
        *o++ = H[s[i] & 15];
    }
    b->len = o - b->p;
}

void
put_u128(Buf *b, unsigned __int128 v)
{
    char tmp[48];
    int i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    buf_put(b, tmp + i, sizeof tmp - i);
}

void
put_u64(Buf *b, uint64_t v)
{
    put_u128(b, v);
}

void
put_i64(Buf *b, int64_t v)
{
    if (v < 0) {
        buf_byte(b, '-');
        put_u128(b, (unsigned __int128)(0 - (uint64_t)v));
    } else {
        put_u128(b, (uint64_t)v);
    }
}

void
put_i128(Buf *b, __int128 v)
{
    if (v < 0) {
        buf_byte(b, '-');
        put_u128(b, (unsigned __int128)0 - (unsigned __int128)v);
    } else {
        put_u128(b, (unsigned __int128)v);
    }
}

void
put_u256(Buf *b, const uint64_t w[4], int negative)
{
    uint64_t x[4] = {w[0], w[1], w[2], w[3]};
    char tmp[96];
    int i = sizeof tmp;
    const uint64_t base = 10000000000000000000ULL;  /* 10^19 */
    for (;;) {
        unsigned __int128 rem = 0;
        int zero = 1;
        for (int k = 0; k < 4; k++) {
            unsigned __int128 cur = (rem << 64) | x[k];
            x[k] = (uint64_t)(cur / base);
            rem = cur % base;
            zero &= x[k] == 0;
        }
        uint64_t chunk = (uint64_t)rem;
        if (zero) {
            do {
                tmp[--i] = (char)('0' + chunk % 10);
                chunk /= 10;
            } while (chunk);
            break;
        }
        for (int k = 0; k < 19; k++) {
            tmp[--i] = (char)('0' + chunk % 10);
            chunk /= 10;
        }
    }
    if (negative)
        buf_byte(b, '-');
    buf_put(b, tmp + i, sizeof tmp - i);
}

static int crc_ready;

void
put_strkey(Buf *b, unsigned version, const u8 *q, Py_ssize_t n)
{
    if (!crc_ready) {
        crc16_init();
        crc_ready = 1;
    }
    Py_ssize_t len = strkey_length(n);
    buf_reserve(b, len);
    strkey_write(b->p + b->len, version, q, n);
    b->len += len;
}

void
put_muxed_strkey(Buf *b, const u8 key[32], uint64_t id)
{
    u8 payload[40];
    memcpy(payload, key, 32);
    for (int i = 0; i < 8; i++)
        payload[32 + i] = (u8)(id >> (56 - 8 * i));
    put_strkey(b, VB_MUXED, payload, 40);
}

int
utf8_valid(const u8 *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        u8 c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += len;
    }
    return 1;
}

void
put_utf8_replace(Buf *b, const u8 *s, Py_ssize_t n)
{
    if (utf8_valid(s, n)) {
        buf_put(b, s, n);
        return;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s, n, "replace");
    Py_ssize_t size;
    const char *u = text ? PyUnicode_AsUTF8AndSize(text, &size) : NULL;
    if (u == NULL) {
        Py_XDECREF(text);
        fail();
    }
    buf_reserve(b, size);
    buf_put(b, u, size);
    Py_DECREF(text);
}

void
put_json_str(Buf *b, const u8 *s, Py_ssize_t n, int go)
{
    static const char H[] = "0123456789abcdef";
    buf_reserve(b, n + 2);
    buf_byte(b, '"');
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        u8 c = s[i];
        const char *esc = NULL;
        char u[7];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            default:
                memcpy(u, "\\u00", 4);
                u[4] = H[c >> 4];
                u[5] = H[c & 15];
                u[6] = 0;
                esc = u;
            }
        } else if (go && (c == '<' || c == '>' || c == '&')) {
            esc = c == '<' ? "\\u003c" : c == '>' ? "\\u003e" : "\\u0026";
        } else if (go && c == 0xE2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
            esc = s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
            buf_put(b, s + i - run, run);
            run = 0;
            buf_cstr(b, esc);
            i += 2;
            continue;
        }
        if (esc == NULL) {
            run++;
            continue;
        }
        buf_put(b, s + i - run, run);
        run = 0;
        buf_cstr(b, esc);
    }
    buf_put(b, s + n - run, run);
    buf_byte(b, '"');
}

void
put_go_float(Buf *b, double v)
{
    if (v == 0) {
        buf_cstr(b, signbit(v) ? "-0" : "0");
        return;
    }
    char *text = PyOS_double_to_string(v, 'r', 0, 0, NULL);
    if (text == NULL)
        fail();
    char *e = strchr(text, 'e');
    double a = v < 0 ? -v : v;
    if (e == NULL) {
        buf_cstr(b, text);
    } else if (a < 1e-6 || a >= 1e21) {
        /* exponent form: Go drops the exponent's leading zero (1e-07 -> 1e-7) */
        buf_put(b, text, e - text);
        buf_byte(b, 'e');
        if (e[1] == '-' && e[2] == '0')
            buf_byte(b, '-'), buf_cstr(b, e + 3);
        else
            buf_cstr(b, e + 1);
    } else {
        /* fixed form of the shortest digits (what format(Decimal(repr), "f") gives) */
        const char *m = text;
        if (*m == '-') {
            buf_byte(b, '-');
            m++;
        }
        char digits[32];
        int nd = 0, point = -1;
        for (const char *q = m; q < e; q++) {
            if (*q == '.')
                point = nd;
            else if (nd < (int)sizeof digits)
                digits[nd++] = *q;
        }
        if (point < 0)
            point = nd;
        int exp = atoi(e + 1) + point;  /* digits[0:exp] are the integer part */
        if (exp <= 0) {
            buf_cstr(b, "0.");
            for (int k = 0; k < -exp; k++)
                buf_byte(b, '0');
            buf_put(b, digits, nd);
        } else if (exp >= nd) {
            buf_put(b, digits, nd);
            for (int k = nd; k < exp; k++)
                buf_byte(b, '0');
        } else {
            buf_put(b, digits, exp);
            buf_byte(b, '.');
            buf_put(b, digits + exp, nd - exp);
        }
    }
    PyMem_Free(text);
}

double
stroops_real(int64_t v)
{
    if (v >= -(1LL << 53) && v <= (1LL << 53))
        return (double)v / 1e7;  /* exact operands: one rounding, as Python's */
    PyObject *a = PyLong_FromLongLong(v), *d = PyLong_FromLong(10000000);
    PyObject *q = (a && d) ? PyNumber_TrueDivide(a, d) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(d);
    if (q == NULL)
        fail();
    double out = PyFloat_AsDouble(q);
    Py_DECREF(q);
    return out;
}

void
put_rat7(Buf *b, __int128 n, int64_t d)
{
    if (d == 0)
        decline("zero denominator");
    int neg = (n < 0) != (d < 0);
    unsigned __int128 un = n < 0 ? (unsigned __int128)0 - (unsigned __int128)n : (unsigned __int128)n;
    unsigned __int128 ud = d < 0 ? (unsigned __int128)(0 - (uint64_t)d) : (unsigned __int128)d, q;
    if (ud == 10000000u) {  /* an amount: exact */
        q = un;
    } else {
        if (un >> 64) decline("price term beyond 64 bits");
        unsigned __int128 r = un * 10000000u % ud;
        q = un * 10000000u / ud;
        if (2 * r >= ud)
            q++;
    }
    if (neg && q)
        buf_byte(b, '-');
    put_u128(b, q / 10000000u);
    buf_byte(b, '.');
    char frac[8];
    uint64_t f = (uint64_t)(q % 10000000u);
    for (int k = 6; k >= 0; k--) {
        frac[k] = (char)('0' + f % 10);
        f /= 10;
    }
    buf_put(b, frac, 7);
}

void
put_escape_bytes(Buf *b, const u8 *s, Py_ssize_t n)
{
    static const char H[] = "0123456789abcdef";
    for (Py_ssize_t i = 0; i < n; i++) {
        u8 c = s[i];
        switch (c) {
        case 0: buf_cstr(b, "\\0"); continue;
        case '\t': buf_cstr(b, "\\t"); continue;
        case '\n': buf_cstr(b, "\\n"); continue;
        case '\r': buf_cstr(b, "\\r"); continue;
        case '\\': buf_cstr(b, "\\\\"); continue;
        }
        if (c >= 0x20 && c <= 0x7E) {
            buf_byte(b, (char)c);
        } else {
            char x[4] = {'\\', 'x', H[c >> 4], H[c & 15]};
            buf_put(b, x, 4);
        }
    }
}
