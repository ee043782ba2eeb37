/*
 * _details: stellar-etl's operation details maps of the classic operations that make up most of a
 * ledger, built in C from decoded XDR values (of either engine: both build stellar-sdk's attributes).
 *
 * classic_details(body, source, results, index) returns the dict, with the same value types, that
 * cdp_ray.processors.operation_details builds for CREATE_ACCOUNT, PAYMENT, both path payments, the
 * three offer operations and CREATE_CLAIMABLE_BALANCE, less the sponsor. It returns None for every
 * other operation, and for any value the Python rules would reject or read differently (an exception
 * raised on the way is dropped), so that those rules run instead and raise their own error.
 * setup(GoFloat, asset_id, claim_predicate_json) hands it the Python pieces it calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../xdr/fast/strkey.h"

/* attribute names read */
#define ATTRS(X) \
    X(type) X(create_account_op) X(payment_op) X(path_payment_strict_receive_op) \
    X(path_payment_strict_send_op) X(manage_sell_offer_op) X(manage_buy_offer_op) \
    X(create_passive_sell_offer_op) X(create_claimable_balance_op) X(destination) X(starting_balance) \
    X(int64) X(uint64) X(int32) X(asset) X(amount) X(send_asset) X(send_max) X(dest_asset) X(dest_amount) \
    X(path) X(send_amount) X(dest_min) X(selling) X(buying) X(buy_amount) X(price) X(offer_id) X(n) X(d) \
    X(claimants) X(v0) X(predicate) X(alpha_num4) X(alpha_num12) X(asset_code) X(asset_code4) \
    X(asset_code12) X(issuer) X(account_id) X(ed25519) X(uint256) X(med25519) X(id) X(tr) \
    X(path_payment_strict_receive_result) X(path_payment_strict_send_result) X(success) X(offers) X(last) \
    X(order_book) X(liquidity_pool) X(asset_bought) X(amount_bought)

/* keys written; each account's three and each asset's four keys are consecutive */
#define KEYS(X) \
    X(amount) X(starting_balance) X(account) X(source_amount) X(source_max) X(destination_min) X(path) \
    X(offer_id) X(price) X(price_r) X(n) X(d) X(asset) X(claimants) X(destination) X(predicate) \
    X(funder) X(funder_muxed) X(funder_muxed_id) X(from) X(from_muxed) X(from_muxed_id) \
    X(to) X(to_muxed) X(to_muxed_id) \
    X(asset_type) X(asset_code) X(asset_issuer) X(asset_id) \
    X(source_asset_type) X(source_asset_code) X(source_asset_issuer) X(source_asset_id) \
    X(buying_asset_type) X(buying_asset_code) X(buying_asset_issuer) X(buying_asset_id) \
    X(selling_asset_type) X(selling_asset_code) X(selling_asset_issuer) X(selling_asset_id)

#define ENUM_A(name) A_##name,
#define ENUM_K(name) K_##name,
#define NAME(name) #name,
enum { ATTRS(ENUM_A) NATTRS };
enum { KEYS(ENUM_K) NKEYS };
static const char *attr_names[] = {ATTRS(NAME)};
static const char *key_names[] = {KEYS(NAME)};
static PyObject *attrs[NATTRS], *keys[NKEYS];

/* OperationType values handled, AssetType and CryptoKeyType values read (XDR constants) */
enum { OP_CREATE_ACCOUNT = 0, OP_PAYMENT = 1, OP_PATH_RECEIVE = 2, OP_MANAGE_SELL = 3, OP_PASSIVE_SELL = 4,
       OP_MANAGE_BUY = 12, OP_PATH_SEND = 13, OP_CREATE_CLAIMABLE = 14 };
enum { ASSET_NATIVE = 0, ASSET_ALPHANUM4 = 1, ASSET_ALPHANUM12 = 2 };
enum { KEY_ED25519 = 0, KEY_MUXED_ED25519 = 0x100 };

#define ASSET_CACHE_MAX 65536

static PyObject *go_float, *asset_id_fn, *predicate_fn;  /* set by setup() */
static PyObject *asset_cache;  /* asset key (type, code, issuer key) -> (type, code, issuer, asset_id) */
static PyObject *type_names[3], *empty, *native;

/* Any condition the Python rules treat differently: raised, then turned into a None result. */
static void *
unhandled(const char *what)
{
    PyErr_SetString(PyExc_ValueError, what);
    return NULL;
}

/* ``o.a1.a2...`` for ``n`` attribute indices; a new reference, NULL on error. */
static PyObject *
get(PyObject *o, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    Py_XINCREF(o);
    for (int i = 0; i < n && o != NULL; i++) {
        PyObject *next = PyObject_GetAttr(o, attrs[va_arg(ap, int)]);
        Py_DECREF(o);
        o = next;
    }
    va_end(ap);
    return o;
}

/* The integer ``v`` (a reference stolen) as a long long. */
static int
as_ll(PyObject *v, long long *out)
{
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* d[keys[k]] = v, stealing the reference to ``v``. */
static int
set(PyObject *d, int k, PyObject *v)
{
    if (v == NULL)
        return -1;
    int r = PyDict_SetItem(d, keys[k], v);
    Py_DECREF(v);
    return r;
}

/* The 32 bytes of a Uint256 value ``u`` (a reference stolen) into ``out``. */
static int
key_bytes(PyObject *u, unsigned char *out)
{
    PyObject *b = get(u, 1, A_uint256);
    Py_XDECREF(u);
    if (b == NULL)
        return -1;
    int ok = PyBytes_Check(b) && PyBytes_GET_SIZE(b) == 32;
    if (ok)
        memcpy(out, PyBytes_AS_STRING(b), 32);
    Py_DECREF(b);
    return ok ? 0 : (unhandled("not a 32-byte key"), -1);
}

/* ``G...`` of an AccountID (a reference stolen). */
static PyObject *
account_id(PyObject *account)
{
    unsigned char key[32];
    int r = key_bytes(get(account, 2, A_account_id, A_ed25519), key);
    Py_XDECREF(account);
    return r < 0 ? NULL : strkey_text(SK_ACCOUNT, key, 32);
}

/* stellar-etl's float64 amount of ``stroops``: their quotient by 10^7 as Python divides, a GoFloat. */
static PyObject *
real(long long stroops)
{
    PyObject *f;
    if (stroops >= -(1LL << 53) && stroops <= (1LL << 53)) {  /* exact as a double: one rounding */
        f = PyFloat_FromDouble((double)stroops / 1e7);
    } else {
        PyObject *a = PyLong_FromLongLong(stroops), *b = PyLong_FromLong(10000000);
        f = (a && b) ? PyNumber_TrueDivide(a, b) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    if (f == NULL)
        return NULL;
    PyObject *g = PyObject_CallOneArg(go_float, f);
    Py_DECREF(f);
    return g;
}

/* Go's big.Rat FloatString(7) of num/den, rounded half away from zero, into ``buf``. */
static int
rat_string(long long num, long long den, char *buf, size_t size)
{
    if (den == 0) {
        unhandled("zero denominator");
        return -1;
    }
    int neg = (num < 0) != (den < 0);
    unsigned long long n = num < 0 ? 0ULL - (unsigned long long)num : (unsigned long long)num;
    unsigned long long m = den < 0 ? 0ULL - (unsigned long long)den : (unsigned long long)den;
    unsigned long long q, r;
    if (m == 10000000ULL) {  /* an amount: exact */
        q = n;
        r = 0;
    } else {  /* a price: n and m below 2^31, so n * 10^7 fits */
        if (n >= (1ULL << 32) || m >= (1ULL << 32)) {
            unhandled("price term beyond 32 bits");
            return -1;
        }
        q = n * 10000000ULL / m;
        r = n * 10000000ULL % m;
        if (2 * r >= m)
            q++;
    }
    snprintf(buf, size, "%s%llu.%07llu", neg && q ? "-" : "", q / 10000000ULL, q % 10000000ULL);
    return 0;
}

/* Go's amount.String of ``stroops``: "12.3400000". */
static PyObject *
amount_string(long long stroops)
{
    char buf[48];
    if (rat_string(stroops, 10000000LL, buf, sizeof buf) < 0)
        return NULL;
    return PyUnicode_FromString(buf);
}

/* ``{prefix}``, ``{prefix}_muxed`` and ``{prefix}_muxed_id`` (keys k, k+1, k+2) of a MuxedAccount. */
static int
add_muxed(PyObject *d, PyObject *m, int k)
{
    long long type;
    if (as_ll(get(m, 1, A_type), &type) < 0)
        return -1;
    unsigned char payload[40];
    if (type == KEY_ED25519) {
        if (key_bytes(get(m, 1, A_ed25519), payload) < 0)
            return -1;
        return set(d, k, strkey_text(SK_ACCOUNT, payload, 32));
    }
    if (type != KEY_MUXED_ED25519) {
        unhandled("muxed account type");
        return -1;
    }
    PyObject *med = get(m, 1, A_med25519);
    PyObject *id = get(med, 2, A_id, A_uint64);
    int r = -1;
    if (id != NULL && key_bytes(get(med, 1, A_ed25519), payload) == 0) {
        unsigned long long v = PyLong_AsUnsignedLongLong(id);
        if (!(v == (unsigned long long)-1 && PyErr_Occurred())) {
            for (int i = 0; i < 8; i++)
                payload[32 + i] = (unsigned char)(v >> (56 - 8 * i));
            Py_INCREF(id);
            r = (set(d, k, strkey_text(SK_ACCOUNT, payload, 32)) < 0 ||
                 set(d, k + 1, strkey_text(SK_MUXED, payload, 40)) < 0 ||
                 set(d, k + 2, id) < 0) ? -1 : 0;
        }
    }
    Py_XDECREF(med);
    Py_XDECREF(id);
    return r;
}

/* The cache key of an Asset into ``key``: its type, then the code and issuer key of a credit asset. */
static Py_ssize_t
asset_key(PyObject *asset, unsigned char *key)
{
    long long type;
    if (as_ll(get(asset, 1, A_type), &type) < 0)
        return -1;
    if (type == ASSET_NATIVE) {
        key[0] = ASSET_NATIVE;
        return 1;
    }
    if (type != ASSET_ALPHANUM4 && type != ASSET_ALPHANUM12) {
        unhandled("asset type");
        return -1;
    }
    Py_ssize_t size = type == ASSET_ALPHANUM4 ? 4 : 12;
    PyObject *an = get(asset, 1, type == ASSET_ALPHANUM4 ? A_alpha_num4 : A_alpha_num12);
    PyObject *code = get(an, 2, A_asset_code, type == ASSET_ALPHANUM4 ? A_asset_code4 : A_asset_code12);
    Py_ssize_t r = -1;
    if (code != NULL && key_bytes(get(an, 3, A_issuer, A_account_id, A_ed25519), key + 1 + size) == 0) {
        if (PyBytes_Check(code) && PyBytes_GET_SIZE(code) == size) {
            key[0] = (unsigned char)type;
            memcpy(key + 1, PyBytes_AS_STRING(code), size);
            r = 1 + size + 32;
        } else {
            unhandled("asset code size");
        }
    }
    Py_XDECREF(an);
    Py_XDECREF(code);
    return r;
}

/* ``(asset_type, code, issuer, asset_id)`` of an Asset, as common.asset_parts and asset_id give them;
   a borrowed reference into the cache. */
static PyObject *
asset_parts(PyObject *asset)
{
    unsigned char key[45];
    Py_ssize_t n = asset_key(asset, key);
    if (n < 0)
        return NULL;
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, n);
    if (k == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(asset_cache, k);
    if (hit != NULL || PyErr_Occurred()) {
        Py_DECREF(k);
        return hit;
    }
    PyObject *code, *issuer;
    if (key[0] == ASSET_NATIVE) {
        code = Py_NewRef(empty);
        issuer = Py_NewRef(empty);
    } else {
        Py_ssize_t size = key[0] == ASSET_ALPHANUM4 ? 4 : 12, len = size;
        while (len > 0 && key[len] == 0)  /* trailing NULs stripped */
            len--;
        code = PyUnicode_DecodeUTF8((const char *)key + 1, len, "replace");
        issuer = strkey_text(SK_ACCOUNT, key + 1 + size, 32);
    }
    PyObject *type = type_names[key[0]], *parts = NULL;
    PyObject *id = (code && issuer) ? PyObject_CallFunctionObjArgs(asset_id_fn, code, issuer, type, NULL) : NULL;
    if (id != NULL)
        parts = PyTuple_Pack(4, type, code, issuer, id);
    Py_XDECREF(code);
    Py_XDECREF(issuer);
    Py_XDECREF(id);
    if (parts != NULL && PyDict_GET_SIZE(asset_cache) >= ASSET_CACHE_MAX)
        PyDict_Clear(asset_cache);
    if (parts != NULL && PyDict_SetItem(asset_cache, k, parts) < 0)
        Py_CLEAR(parts);
    Py_DECREF(k);
    Py_XDECREF(parts);  /* the cache holds it */
    return parts;
}

/* add_muxed() of ``m``, a reference stolen. */
static int
add_account(PyObject *d, PyObject *m, int k)
{
    int r = m ? add_muxed(d, m, k) : -1;
    Py_XDECREF(m);
    return r;
}

/* ``{prefix}asset_type/_code/_issuer/_id`` (keys k..k+3) of an Asset (a reference stolen); code and
   issuer omitted for native. */
static int
add_asset(PyObject *d, PyObject *asset, int k)
{
    PyObject *p = asset ? asset_parts(asset) : NULL;
    Py_XDECREF(asset);
    if (p == NULL)
        return -1;
    for (int i = 0; i < 4; i++)
        if ((i == 0 || i == 3 || PyTuple_GET_ITEM(p, 0) != native) &&
            set(d, k + i, Py_NewRef(PyTuple_GET_ITEM(p, i))) < 0)
            return -1;
    return 0;
}

/* Go's Asset.StringCanonical(): ``native`` or ``CODE:ISSUER``. */
static PyObject *
asset_canonical(PyObject *asset)
{
    PyObject *p = asset_parts(asset);
    if (p == NULL)
        return NULL;
    if (PyTuple_GET_ITEM(p, 0) == native)
        return Py_NewRef(native);
    return PyUnicode_FromFormat("%U:%U", PyTuple_GET_ITEM(p, 1), PyTuple_GET_ITEM(p, 2));
}

/* The path's assets as ``{asset_code, asset_issuer, asset_type}`` dicts; None when it has none. */
static PyObject *
path(PyObject *assets)
{
    if (assets == NULL)
        return NULL;
    if (!PyList_Check(assets)) {
        Py_DECREF(assets);
        return unhandled("path is not a list");
    }
    Py_ssize_t n = PyList_GET_SIZE(assets);
    PyObject *out = n ? PyList_New(n) : Py_NewRef(Py_None);
    for (Py_ssize_t i = 0; i < n && out != NULL; i++) {
        PyObject *p = asset_parts(PyList_GET_ITEM(assets, i));
        PyObject *e = p ? PyDict_New() : NULL;
        if (e == NULL || set(e, K_asset_code, Py_NewRef(PyTuple_GET_ITEM(p, 1))) < 0 ||
            set(e, K_asset_issuer, Py_NewRef(PyTuple_GET_ITEM(p, 2))) < 0 ||
            set(e, K_asset_type, Py_NewRef(PyTuple_GET_ITEM(p, 0))) < 0) {
            Py_XDECREF(e);
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, e);
    }
    Py_DECREF(assets);
    return out;
}

/* ``price`` and ``price_r`` of a Price, as common.price_float and Go give them. */
static int
add_price(PyObject *d, PyObject *price)
{
    long long n, den;
    if (as_ll(get(price, 2, A_n, A_int32), &n) < 0 || as_ll(get(price, 2, A_d, A_int32), &den) < 0)
        return -1;
    char buf[48];
    if (rat_string(n, den, buf, sizeof buf) < 0)
        return -1;
    double v = PyOS_string_to_double(buf, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *f = PyFloat_FromDouble(v);
    PyObject *g = f ? PyObject_CallOneArg(go_float, f) : NULL;
    Py_XDECREF(f);
    if (set(d, K_price, g) < 0)
        return -1;
    PyObject *r = PyDict_New();
    if (r == NULL || set(r, K_n, PyLong_FromLongLong(n)) < 0 || set(r, K_d, PyLong_FromLongLong(den)) < 0) {
        Py_XDECREF(r);
        return -1;
    }
    return set(d, K_price_r, r);
}

/* d[k] = stellar-etl's float64 amount of ``o.a.int64``. */
static int
add_real(PyObject *d, int k, PyObject *o, int a)
{
    long long v;
    if (as_ll(get(o, 2, a, A_int64), &v) < 0)
        return -1;
    return set(d, k, real(v));
}

/* The OperationResult.tr of operation ``index``. */
static PyObject *
result_tr(PyObject *results, Py_ssize_t index)
{
    if (!PyList_Check(results) || index >= PyList_GET_SIZE(results))
        return unhandled("no result for the operation");
    return get(PyList_GET_ITEM(results, index), 1, A_tr);
}

/* Go's PathPaymentStrictReceiveResult.SendAmount(): the amounts of the leading offers that sold the
   first offer's asset, else the last payment's amount; 0 without success. */
static int
send_amount(PyObject *res, long long *total)
{
    *total = 0;
    PyObject *s = get(res, 1, A_success);
    if (s == NULL)
        return -1;
    if (s == Py_None) {
        Py_DECREF(s);
        return 0;
    }
    PyObject *offers = get(s, 1, A_offers);
    int r = -1;
    if (offers == NULL || !PyList_Check(offers)) {
        if (offers != NULL)
            unhandled("offers is not a list");
    } else if (PyList_GET_SIZE(offers) == 0) {
        r = as_ll(get(s, 3, A_last, A_amount, A_int64), total);
    } else {
        unsigned char first[45], key[45];
        Py_ssize_t first_n = -1;
        r = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(offers) && r == 0; i++) {
            PyObject *atom = PyList_GET_ITEM(offers, i), *body = NULL;
            static const int arms[] = {A_v0, A_order_book, A_liquidity_pool};
            for (int a = 0; a < 3 && body == NULL; a++) {
                body = get(atom, 1, arms[a]);
                if (body == Py_None)
                    Py_CLEAR(body);
                else if (body == NULL)
                    break;
            }
            if (body == NULL) {
                if (!PyErr_Occurred())
                    unhandled("claim atom without body");
                r = -1;
                break;
            }
            PyObject *bought = get(body, 1, A_asset_bought);
            Py_ssize_t n = bought ? asset_key(bought, i == 0 ? first : key) : -1;
            long long amount = 0;
            Py_XDECREF(bought);
            if (n < 0 || as_ll(get(body, 2, A_amount_bought, A_int64), &amount) < 0) {
                r = -1;
            } else if (i == 0) {
                first_n = n;
            } else if (n != first_n || memcmp(first, key, n) != 0) {
                Py_DECREF(body);
                break;
            }
            if (r == 0 && __builtin_add_overflow(*total, amount, total)) {
                unhandled("sum beyond 64 bits");
                r = -1;
            }
            Py_DECREF(body);
        }
    }
    Py_XDECREF(offers);
    Py_DECREF(s);
    return r;
}

/* Claimants as ``{destination, predicate}`` dicts; None when there are none. */
static PyObject *
claimants(PyObject *list)
{
    if (list == NULL)
        return NULL;
    if (!PyList_Check(list)) {
        Py_DECREF(list);
        return unhandled("claimants is not a list");
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    PyObject *out = n ? PyList_New(n) : Py_NewRef(Py_None);
    for (Py_ssize_t i = 0; i < n && out != NULL; i++) {
        PyObject *v0 = get(PyList_GET_ITEM(list, i), 1, A_v0);
        PyObject *pred = get(v0, 1, A_predicate);
        PyObject *e = pred ? PyDict_New() : NULL;
        if (e == NULL || set(e, K_destination, v0 ? account_id(get(v0, 1, A_destination)) : NULL) < 0 ||
            set(e, K_predicate, PyObject_CallOneArg(predicate_fn, pred)) < 0) {
            Py_XDECREF(e);
            Py_CLEAR(out);
        } else {
            PyList_SET_ITEM(out, i, e);
        }
        Py_XDECREF(v0);
        Py_XDECREF(pred);
    }
    Py_DECREF(list);
    return out;
}

/* Fill ``d`` for an operation of type ``type`` with body arm ``o``. */
static int
fill(PyObject *d, long long type, PyObject *o, PyObject *source, PyObject *results, Py_ssize_t index)
{
    long long v;
    switch (type) {
    case OP_CREATE_ACCOUNT:
        return (add_account(d, Py_NewRef(source), K_funder) < 0 ||
                set(d, K_account, account_id(get(o, 1, A_destination))) < 0 ||
                add_real(d, K_starting_balance, o, A_starting_balance) < 0) ? -1 : 0;
    case OP_PAYMENT:
        return (add_account(d, Py_NewRef(source), K_from) < 0 || add_account(d, get(o, 1, A_destination), K_to) < 0 ||
                add_real(d, K_amount, o, A_amount) < 0 || add_asset(d, get(o, 1, A_asset), K_asset_type) < 0)
                   ? -1 : 0;
    case OP_PATH_RECEIVE:
    case OP_PATH_SEND: {
        int receive = type == OP_PATH_RECEIVE;
        if (add_account(d, Py_NewRef(source), K_from) < 0 || add_account(d, get(o, 1, A_destination), K_to) < 0 ||
            add_asset(d, get(o, 1, A_dest_asset), K_asset_type) < 0 ||
            add_asset(d, get(o, 1, A_send_asset), K_source_asset_type) < 0 ||
            set(d, K_path, path(get(o, 1, A_path))) < 0)
            return -1;
        if (receive ? (add_real(d, K_amount, o, A_dest_amount) < 0 || add_real(d, K_source_max, o, A_send_max) < 0)
                    : (add_real(d, K_source_amount, o, A_send_amount) < 0 ||
                       as_ll(get(o, 2, A_dest_min, A_int64), &v) < 0 || set(d, K_destination_min, amount_string(v)) < 0))
            return -1;
        if (results == Py_None)
            return set(d, receive ? K_source_amount : K_amount, amount_string(0));
        PyObject *tr = result_tr(results, index);
        PyObject *res = get(tr, 1, receive ? A_path_payment_strict_receive_result : A_path_payment_strict_send_result);
        Py_XDECREF(tr);
        if (res == NULL)
            return -1;
        int r;
        if (receive) {
            r = send_amount(res, &v);
        } else {
            PyObject *s = get(res, 1, A_success);
            r = s == NULL ? -1 : s == Py_None ? (v = 0, 0) : as_ll(get(s, 3, A_last, A_amount, A_int64), &v);
            Py_XDECREF(s);
        }
        Py_DECREF(res);
        return r < 0 ? -1 : set(d, receive ? K_source_amount : K_amount, real(v));
    }
    case OP_MANAGE_SELL:
    case OP_MANAGE_BUY:
    case OP_PASSIVE_SELL:
        if (type != OP_PASSIVE_SELL && set(d, K_offer_id, get(o, 2, A_offer_id, A_int64)) < 0)
            return -1;
        {
            PyObject *price = get(o, 1, A_price);
            int r = price ? add_price(d, price) : -1;
            Py_XDECREF(price);
            if (r < 0)
                return -1;
        }
        return (add_real(d, K_amount, o, type == OP_MANAGE_BUY ? A_buy_amount : A_amount) < 0 ||
                add_asset(d, get(o, 1, A_buying), K_buying_asset_type) < 0 ||
                add_asset(d, get(o, 1, A_selling), K_selling_asset_type) < 0) ? -1 : 0;
    case OP_CREATE_CLAIMABLE: {
        PyObject *asset = get(o, 1, A_asset);
        int r = set(d, K_asset, asset ? asset_canonical(asset) : NULL);
        Py_XDECREF(asset);
        return (r < 0 || add_real(d, K_amount, o, A_amount) < 0 ||
                set(d, K_claimants, claimants(get(o, 1, A_claimants))) < 0) ? -1 : 0;
    }
    }
    return 1;
}

/* None in place of an exception (the Python rules raise their own); other base exceptions pass. */
static PyObject *
fallback(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(classic_details_doc,
"classic_details(body, source, results, index)\n--\n\n"
"stellar-etl's details map (less the sponsor) of an operation ``body`` (OperationBody) with source\n"
"``source`` (MuxedAccount), ``results`` the transaction's OperationResults when it succeeded (else\n"
"None) and ``index`` the operation's position; None where the Python rules must build it.");

static PyObject *
classic_details(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "classic_details() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (go_float == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "classic_details() called before setup()");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[3]);
    if (index == -1 && PyErr_Occurred())
        return NULL;
    long long type;
    if (as_ll(get(args[0], 1, A_type), &type) < 0)
        return fallback();
    static const int arm[] = {
        [OP_CREATE_ACCOUNT] = A_create_account_op, [OP_PAYMENT] = A_payment_op,
        [OP_PATH_RECEIVE] = A_path_payment_strict_receive_op, [OP_MANAGE_SELL] = A_manage_sell_offer_op,
        [OP_PASSIVE_SELL] = A_create_passive_sell_offer_op, [OP_MANAGE_BUY] = A_manage_buy_offer_op,
        [OP_PATH_SEND] = A_path_payment_strict_send_op, [OP_CREATE_CLAIMABLE] = A_create_claimable_balance_op,
    };
    if (type < 0 || type > OP_CREATE_CLAIMABLE || arm[type] == 0)
        Py_RETURN_NONE;
    PyObject *o = get(args[0], 1, arm[type]);
    PyObject *d = o ? PyDict_New() : NULL;
    int r = d ? fill(d, type, o, args[1], args[2], index) : -1;
    Py_XDECREF(o);
    if (r == 0)
        return d;
    Py_XDECREF(d);
    if (r > 0)
        Py_RETURN_NONE;
    return fallback();
}

PyDoc_STRVAR(setup_doc,
"setup(go_float, asset_id, claim_predicate_json)\n--\n\n"
"The Python pieces classic_details() calls: the float type of details maps, stellar-etl's asset id\n"
"of (code, issuer, type), and a ClaimPredicate's JSON value.");

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *f, *a, *p;
    if (!PyArg_ParseTuple(args, "OOO", &f, &a, &p))
        return NULL;
    Py_XSETREF(go_float, Py_NewRef(f));
    Py_XSETREF(asset_id_fn, Py_NewRef(a));
    Py_XSETREF(predicate_fn, Py_NewRef(p));
    PyDict_Clear(asset_cache);
    Py_RETURN_NONE;
}

static PyMethodDef details_functions[] = {
    {"classic_details", (PyCFunction)(void (*)(void))classic_details, METH_FASTCALL, classic_details_doc},
    {"setup", setup, METH_VARARGS, setup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef details_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_details",
    .m_doc = "stellar-etl's details maps of the common classic operations, built in C.",
    .m_size = -1,
    .m_methods = details_functions,
};

PyMODINIT_FUNC
PyInit__details(void)
{
    crc16_init();
    for (int i = 0; i < NATTRS; i++)
        if ((attrs[i] = PyUnicode_InternFromString(attr_names[i])) == NULL)
            return NULL;
    for (int i = 0; i < NKEYS; i++)
        if ((keys[i] = PyUnicode_InternFromString(key_names[i])) == NULL)
            return NULL;
    static const char *types[] = {"native", "credit_alphanum4", "credit_alphanum12"};
    for (int i = 0; i < 3; i++)
        if ((type_names[i] = PyUnicode_InternFromString(types[i])) == NULL)
            return NULL;
    native = type_names[ASSET_NATIVE];
    empty = PyUnicode_InternFromString("");
    asset_cache = PyDict_New();
    if (empty == NULL || asset_cache == NULL)
        return NULL;
    return PyModule_Create(&details_module);
}
