/*
 * _details: what the operations table needs of an operation, read in C from the XDR the fast engine
 * kept for it (operations and their results stay raw until read), without building objects.
 *
 * operation(op, tx_source, result, successful) returns ``(source, source_muxed, type, details,
 * result_code, result_type, inner_code)``: the source account's G... and M... addresses (the
 * transaction's source ``tx_source``, a MuxedAccount's XDR, when the operation has none), the
 * OperationType value, stellar-etl's details map (cdp_ray.processors.operation_details, less the
 * sponsor) for CREATE_ACCOUNT, PAYMENT, both path payments, the three offer operations and
 * CREATE_CLAIMABLE_BALANCE, and the OperationResult's code, tr type and inner code. ``details`` is
 * None for every other operation type and for any value the Python rules would reject (so those rules
 * run and raise their own error); the codes are None where there is no result or no inner result.
 * setup(GoFloat, asset_id, claim_predicate_json_of_xdr) hands it the Python pieces it calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../xdr/fast/strkey.h"

/* keys written; each account's three and each asset's four keys are consecutive */
#define KEYS(X) \
    X(amount) X(starting_balance) X(account) X(source_amount) X(source_max) X(destination_min) X(path) \
    X(offer_id) X(price) X(price_r) X(n) X(d) X(asset) X(claimants) X(destination) X(predicate) \
    X(unconditional) \
    X(funder) X(funder_muxed) X(funder_muxed_id) X(from) X(from_muxed) X(from_muxed_id) \
    X(to) X(to_muxed) X(to_muxed_id) \
    X(asset_type) X(asset_code) X(asset_issuer) X(asset_id) \
    X(source_asset_type) X(source_asset_code) X(source_asset_issuer) X(source_asset_id) \
    X(buying_asset_type) X(buying_asset_code) X(buying_asset_issuer) X(buying_asset_id) \
    X(selling_asset_type) X(selling_asset_code) X(selling_asset_issuer) X(selling_asset_id)

#define ENUM_K(name) K_##name,
#define NAME(name) #name,
enum { KEYS(ENUM_K) NKEYS };
static const char *key_names[] = {KEYS(NAME)};
static PyObject *keys[NKEYS];

/* OperationType values handled, and the AssetType, CryptoKeyType, ClaimAtomType, ClaimPredicateType
   values read (XDR constants) */
enum { OP_CREATE_ACCOUNT = 0, OP_PAYMENT = 1, OP_PATH_RECEIVE = 2, OP_MANAGE_SELL = 3, OP_PASSIVE_SELL = 4,
       OP_MANAGE_BUY = 12, OP_PATH_SEND = 13, OP_CREATE_CLAIMABLE = 14 };
enum { ASSET_NATIVE = 0, ASSET_ALPHANUM4 = 1, ASSET_ALPHANUM12 = 2 };
enum { KEY_ED25519 = 0, KEY_MUXED_ED25519 = 0x100 };
enum { ATOM_V0 = 0, ATOM_ORDER_BOOK = 1, ATOM_LIQUIDITY_POOL = 2 };
enum { PRED_UNCONDITIONAL = 0, PRED_AND = 1, PRED_OR = 2, PRED_NOT = 3, PRED_ABSOLUTE = 4, PRED_RELATIVE = 5 };

#define ASSET_CACHE_MAX 65536
#define PREDICATE_DEPTH 64

static PyObject *go_float, *asset_id_fn, *predicate_fn;  /* set by setup() */
static PyObject *asset_cache;  /* asset key (type, code, issuer key) -> (type, code, issuer, asset_id) */
static PyObject *type_names[3], *empty, *native;

/* Any condition the Python rules treat differently: raised, then turned into a None map. */
static void *
unhandled(const char *what)
{
    PyErr_SetString(PyExc_ValueError, what);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* reading XDR                                                                                */

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, len;
} Rd;

static const unsigned char *
take(Rd *r, Py_ssize_t n)
{
    if (r->len - r->pos < n)
        return unhandled("truncated XDR");
    const unsigned char *at = r->p + r->pos;
    r->pos += n;
    return at;
}

static int
u32(Rd *r, uint32_t *v)
{
    const unsigned char *b = take(r, 4);
    if (b == NULL)
        return -1;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static int
i64(Rd *r, long long *v)
{
    uint32_t hi, lo;
    if (u32(r, &hi) < 0 || u32(r, &lo) < 0)
        return -1;
    *v = (long long)((uint64_t)hi << 32 | lo);
    return 0;
}

/* A MuxedAccount: its ed25519 key, and its id when muxed. */
typedef struct {
    const unsigned char *key;
    uint64_t id;
    int muxed;
} Muxed;

static int
muxed(Rd *r, Muxed *m)
{
    uint32_t type, hi, lo;
    if (u32(r, &type) < 0)
        return -1;
    m->muxed = type == KEY_MUXED_ED25519;
    if (m->muxed) {
        if (u32(r, &hi) < 0 || u32(r, &lo) < 0)
            return -1;
        m->id = (uint64_t)hi << 32 | lo;
    } else if (type != KEY_ED25519) {
        unhandled("muxed account type");
        return -1;
    }
    return (m->key = take(r, 32)) == NULL ? -1 : 0;
}

/* An AccountID (a PublicKey: ed25519 only): its key. */
static const unsigned char *
account(Rd *r)
{
    uint32_t type;
    if (u32(r, &type) < 0)
        return NULL;
    return type == 0 ? take(r, 32) : unhandled("public key type");
}

/* An Asset as its cache key: its type, then a credit asset's code and issuer key; the key's length. */
static Py_ssize_t
asset_key(Rd *r, unsigned char *key)
{
    uint32_t type;
    if (u32(r, &type) < 0)
        return -1;
    key[0] = (unsigned char)type;
    if (type == ASSET_NATIVE)
        return 1;
    if (type != ASSET_ALPHANUM4 && type != ASSET_ALPHANUM12) {
        unhandled("asset type");
        return -1;
    }
    Py_ssize_t size = type == ASSET_ALPHANUM4 ? 4 : 12;
    const unsigned char *code = take(r, size), *issuer = code ? account(r) : NULL;
    if (issuer == NULL)
        return -1;
    memcpy(key + 1, code, size);
    memcpy(key + 1 + size, issuer, 32);
    return 1 + size + 32;
}

/* Step over a ClaimPredicate. */
static int
skip_predicate(Rd *r, int depth)
{
    uint32_t type, n;
    if (depth <= 0) {
        unhandled("predicate too deep");
        return -1;
    }
    if (u32(r, &type) < 0)
        return -1;
    switch (type) {
    case PRED_UNCONDITIONAL:
        return 0;
    case PRED_AND:
    case PRED_OR:
        if (u32(r, &n) < 0)
            return -1;
        if (n > 2) {
            unhandled("predicate array");
            return -1;
        }
        for (uint32_t i = 0; i < n; i++)
            if (skip_predicate(r, depth - 1) < 0)
                return -1;
        return 0;
    case PRED_NOT:
        if (u32(r, &n) < 0)
            return -1;
        return n ? skip_predicate(r, depth - 1) : 0;
    case PRED_ABSOLUTE:
    case PRED_RELATIVE:
        return take(r, 8) ? 0 : -1;
    }
    unhandled("predicate type");
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* values of the details map                                                                  */

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

/* ``(G..., M... or None)`` of a MuxedAccount. */
static PyObject *
muxed_texts(const Muxed *m)
{
    PyObject *g = strkey_text(SK_ACCOUNT, m->key, 32), *mx = Py_NewRef(Py_None);
    if (g != NULL && m->muxed) {
        unsigned char payload[40];
        memcpy(payload, m->key, 32);
        for (int i = 0; i < 8; i++)
            payload[32 + i] = (unsigned char)(m->id >> (56 - 8 * i));
        Py_SETREF(mx, strkey_text(SK_MUXED, payload, 40));
    }
    PyObject *out = (g && mx) ? PyTuple_Pack(2, g, mx) : NULL;
    Py_XDECREF(g);
    Py_XDECREF(mx);
    return out;
}

/* ``{prefix}``, ``{prefix}_muxed`` and ``{prefix}_muxed_id`` (keys k, k+1, k+2) of a MuxedAccount. */
static int
add_muxed(PyObject *d, const Muxed *m, int k)
{
    PyObject *texts = muxed_texts(m);
    if (texts == NULL)
        return -1;
    int r = set(d, k, Py_NewRef(PyTuple_GET_ITEM(texts, 0)));
    if (r == 0 && m->muxed)
        r = (set(d, k + 1, Py_NewRef(PyTuple_GET_ITEM(texts, 1))) < 0 ||
             set(d, k + 2, PyLong_FromUnsignedLongLong(m->id)) < 0) ? -1 : 0;
    Py_DECREF(texts);
    return r;
}

/* add_muxed() of the MuxedAccount read next. */
static int
add_account(PyObject *d, Rd *r, int k)
{
    Muxed m;
    return muxed(r, &m) < 0 ? -1 : add_muxed(d, &m, k);
}

/* ``(asset_type, code, issuer, asset_id)`` of the Asset read next, as common.asset_parts and asset_id
   give them; a borrowed reference into the cache. */
static PyObject *
asset_parts(Rd *r)
{
    unsigned char key[45];
    Py_ssize_t n = asset_key(r, key);
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

/* ``{prefix}asset_type/_code/_issuer/_id`` (keys k..k+3) of the Asset read next; code and issuer
   omitted for native. */
static int
add_asset(PyObject *d, Rd *r, int k)
{
    PyObject *p = asset_parts(r);
    if (p == NULL)
        return -1;
    for (int i = 0; i < 4; i++)
        if ((i == 0 || i == 3 || PyTuple_GET_ITEM(p, 0) != native) &&
            set(d, k + i, Py_NewRef(PyTuple_GET_ITEM(p, i))) < 0)
            return -1;
    return 0;
}

/* d[k] = stellar-etl's float64 amount of the Int64 read next. */
static int
add_real(PyObject *d, Rd *r, int k)
{
    long long v;
    return i64(r, &v) < 0 ? -1 : set(d, k, real(v));
}

/* The array (of at most ``max`` items) read next, each item read by ``item``, as a list; None when empty. */
static PyObject *
list_or_none(Rd *r, uint32_t max, PyObject *(*item)(Rd *))
{
    uint32_t n;
    if (u32(r, &n) < 0)
        return NULL;
    if (n > max)
        return unhandled("array longer than its maximum");
    PyObject *out = n ? PyList_New(n) : Py_NewRef(Py_None);
    for (uint32_t i = 0; i < n && out != NULL; i++) {
        PyObject *e = item(r);
        if (e == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, e);
    }
    return out;
}

/* A path's Asset read next as ``{asset_code, asset_issuer, asset_type}``. */
static PyObject *
path_asset(Rd *r)
{
    PyObject *p = asset_parts(r);
    PyObject *e = p ? PyDict_New() : NULL;
    if (e == NULL || set(e, K_asset_code, Py_NewRef(PyTuple_GET_ITEM(p, 1))) < 0 ||
        set(e, K_asset_issuer, Py_NewRef(PyTuple_GET_ITEM(p, 2))) < 0 ||
        set(e, K_asset_type, Py_NewRef(PyTuple_GET_ITEM(p, 0))) < 0) {
        Py_XDECREF(e);
        return NULL;
    }
    return e;
}

/* ``price`` and ``price_r`` of the Price read next, as common.price_float and Go give them. */
static int
add_price(PyObject *d, Rd *r)
{
    uint32_t n, den;
    if (u32(r, &n) < 0 || u32(r, &den) < 0)
        return -1;
    char buf[48];
    if (rat_string((int32_t)n, (int32_t)den, buf, sizeof buf) < 0)
        return -1;
    double v = PyOS_string_to_double(buf, NULL, NULL);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    PyObject *f = PyFloat_FromDouble(v);
    PyObject *g = f ? PyObject_CallOneArg(go_float, f) : NULL;
    Py_XDECREF(f);
    if (set(d, K_price, g) < 0)
        return -1;
    PyObject *pr = PyDict_New();
    if (pr == NULL || set(pr, K_n, PyLong_FromLong((int32_t)n)) < 0 ||
        set(pr, K_d, PyLong_FromLong((int32_t)den)) < 0) {
        Py_XDECREF(pr);
        return -1;
    }
    return set(d, K_price_r, pr);
}

/* Go's Asset.StringCanonical() of the Asset read next: ``native`` or ``CODE:ISSUER``. */
static PyObject *
asset_canonical(Rd *r)
{
    PyObject *p = asset_parts(r);
    if (p == NULL)
        return NULL;
    if (PyTuple_GET_ITEM(p, 0) == native)
        return Py_NewRef(native);
    return PyUnicode_FromFormat("%U:%U", PyTuple_GET_ITEM(p, 1), PyTuple_GET_ITEM(p, 2));
}

/* A Claimant read next as ``{destination, predicate}``: an unconditional predicate is written here, any
   other through claim_predicate_json of its XDR. */
static PyObject *
claimant(Rd *r)
{
    uint32_t type;
    const unsigned char *dest;
    if (u32(r, &type) < 0)
        return NULL;
    if (type != 0)
        return unhandled("claimant type");
    if ((dest = account(r)) == NULL)
        return NULL;
    Py_ssize_t start = r->pos;
    if (skip_predicate(r, PREDICATE_DEPTH) < 0)
        return NULL;
    PyObject *pred;
    if (r->pos - start == 4) {  /* unconditional */
        pred = PyDict_New();
        if (pred != NULL && set(pred, K_unconditional, Py_NewRef(Py_True)) < 0)
            Py_CLEAR(pred);
    } else {
        PyObject *raw = PyBytes_FromStringAndSize((const char *)r->p + start, r->pos - start);
        pred = raw ? PyObject_CallOneArg(predicate_fn, raw) : NULL;
        Py_XDECREF(raw);
    }
    PyObject *e = pred ? PyDict_New() : NULL;
    if (e == NULL || set(e, K_destination, strkey_text(SK_ACCOUNT, dest, 32)) < 0) {
        Py_XDECREF(pred);
        Py_XDECREF(e);
        return NULL;
    }
    if (set(e, K_predicate, pred) < 0)  /* pred's reference taken either way */
        Py_CLEAR(e);
    return e;
}

/* Step over an Asset. */
static int
skip_asset(Rd *r)
{
    unsigned char key[45];
    return asset_key(r, key) < 0 ? -1 : 0;
}

/* Go's PathPayment*Result amounts from the success arm read next (offers, then the last payment):
   ``last`` the last payment's amount; ``sent`` PathPaymentStrictReceiveResult.SendAmount(), the amounts
   bought by the leading offers that bought the first offer's asset (``last`` without offers). */
static int
path_result(Rd *r, long long *last, long long *sent)
{
    uint32_t n, type;
    unsigned char first[45], key[45];
    Py_ssize_t first_n = 0;
    int counting = 1;
    *sent = 0;
    if (u32(r, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        long long amount;
        if (u32(r, &type) < 0)
            return -1;
        if (type == ATOM_V0 || type == ATOM_LIQUIDITY_POOL) {
            if (take(r, 32) == NULL)  /* seller key or pool id */
                return -1;
        } else if (type != ATOM_ORDER_BOOK || account(r) == NULL) {
            if (!PyErr_Occurred())
                unhandled("claim atom type");
            return -1;
        }
        if (type != ATOM_LIQUIDITY_POOL && take(r, 8) == NULL)  /* offer id */
            return -1;
        if (skip_asset(r) < 0 || take(r, 8) == NULL)  /* sold */
            return -1;
        Py_ssize_t kn = asset_key(r, i == 0 ? first : key);
        if (kn < 0 || i64(r, &amount) < 0)
            return -1;
        if (i == 0)
            first_n = kn;
        else if (counting && (kn != first_n || memcmp(first, key, kn) != 0))
            counting = 0;
        if (counting && __builtin_add_overflow(*sent, amount, sent)) {
            unhandled("sum beyond 64 bits");
            return -1;
        }
    }
    if (account(r) == NULL || skip_asset(r) < 0 || i64(r, last) < 0)
        return -1;
    if (n == 0)
        *sent = *last;
    return 0;
}

/* The amount a successful path payment's result gives (``receive``: what was sent, else what was
   received); 0 for an unsuccessful one. ``result``: the OperationResult's XDR. */
static int
path_payment_amount(const unsigned char *result, Py_ssize_t len, int receive, long long *out)
{
    Rd r = {result, 0, len};
    uint32_t code, tr_type, inner;
    long long last = 0, sent = 0;
    *out = 0;
    if (u32(&r, &code) < 0)
        return -1;
    if (code != 0) {
        unhandled("no inner result");
        return -1;
    }
    if (u32(&r, &tr_type) < 0)
        return -1;
    if (tr_type != (uint32_t)(receive ? OP_PATH_RECEIVE : OP_PATH_SEND)) {
        unhandled("result of another operation type");
        return -1;
    }
    if (u32(&r, &inner) < 0)
        return -1;
    if (inner != 0)
        return 0;
    if (path_result(&r, &last, &sent) < 0)
        return -1;
    *out = receive ? sent : last;
    return 0;
}

/* Fill ``d`` for the body of type ``type`` read next. ``result``: the OperationResult's XDR when the
   transaction succeeded, else NULL. */
static int
fill(PyObject *d, uint32_t type, Rd *r, const Muxed *source, const unsigned char *result, Py_ssize_t rlen,
     int successful)
{
    long long v;
    switch (type) {
    case OP_CREATE_ACCOUNT: {
        const unsigned char *dest;
        if (add_muxed(d, source, K_funder) < 0 || (dest = account(r)) == NULL ||
            set(d, K_account, strkey_text(SK_ACCOUNT, dest, 32)) < 0)
            return -1;
        return add_real(d, r, K_starting_balance);
    }
    case OP_PAYMENT:
        return (add_muxed(d, source, K_from) < 0 || add_account(d, r, K_to) < 0 ||
                add_asset(d, r, K_asset_type) < 0 || add_real(d, r, K_amount) < 0) ? -1 : 0;
    case OP_PATH_RECEIVE:
    case OP_PATH_SEND: {
        int receive = type == OP_PATH_RECEIVE;
        /* sendAsset, sendMax | sendAmount, destination, destAsset, destAmount | destMin, path */
        if (add_muxed(d, source, K_from) < 0 || add_asset(d, r, K_source_asset_type) < 0 ||
            add_real(d, r, receive ? K_source_max : K_source_amount) < 0 || add_account(d, r, K_to) < 0 ||
            add_asset(d, r, K_asset_type) < 0)
            return -1;
        if (receive ? add_real(d, r, K_amount) < 0
                    : (i64(r, &v) < 0 || set(d, K_destination_min, amount_string(v)) < 0))
            return -1;
        if (set(d, K_path, list_or_none(r, 5, path_asset)) < 0)
            return -1;
        int key = receive ? K_source_amount : K_amount;
        if (!successful)
            return set(d, key, amount_string(0));
        if (result == NULL) {
            unhandled("no result for the operation");
            return -1;
        }
        return path_payment_amount(result, rlen, receive, &v) < 0 ? -1 : set(d, key, real(v));
    }
    case OP_MANAGE_SELL:
    case OP_MANAGE_BUY:
    case OP_PASSIVE_SELL:
        /* selling, buying, amount | buyAmount, price, offerID (not passive) */
        if (add_asset(d, r, K_selling_asset_type) < 0 || add_asset(d, r, K_buying_asset_type) < 0 ||
            add_real(d, r, K_amount) < 0 || add_price(d, r) < 0)
            return -1;
        return type == OP_PASSIVE_SELL ? 0 : (i64(r, &v) < 0 ? -1 : set(d, K_offer_id, PyLong_FromLongLong(v)));
    case OP_CREATE_CLAIMABLE:
        return (set(d, K_asset, asset_canonical(r)) < 0 || add_real(d, r, K_amount) < 0 ||
                set(d, K_claimants, list_or_none(r, 10, claimant)) < 0) ? -1 : 0;
    }
    return 1;
}

/* The details map of an operation of type ``type`` whose body follows in ``r``: a new dict, else None
   (another type, or a value the Python rules must handle). */
static PyObject *
details(uint32_t type, Rd *r, const Muxed *source, Py_buffer *result, int successful)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    int f = fill(d, type, r, source, result ? result->buf : NULL, result ? result->len : 0, successful);
    if (f == 0 && r->pos == r->len)
        return d;
    Py_DECREF(d);
    if (f < 0 && !PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* ``(code, tr type, inner code)`` of an OperationResult's XDR, the last two None without an inner result. */
static PyObject *
result_codes(Py_buffer *result)
{
    if (result == NULL)
        return Py_BuildValue("(OOO)", Py_None, Py_None, Py_None);
    Rd r = {result->buf, 0, result->len};
    uint32_t code, tr_type, inner;
    if (u32(&r, &code) < 0)
        return NULL;
    if (code != 0)
        return Py_BuildValue("(iOO)", (int32_t)code, Py_None, Py_None);
    if (u32(&r, &tr_type) < 0 || u32(&r, &inner) < 0)
        return NULL;
    return Py_BuildValue("(iIi)", 0, tr_type, (int32_t)inner);
}

PyDoc_STRVAR(operation_doc,
"operation(op, tx_source, result, successful)\n--\n\n"
"What the operations table needs of an Operation's XDR ``op``: ``(source, source_muxed, type, details,\n"
"result_code, result_type, inner_code)``. ``tx_source``: the transaction's source account as\n"
"MuxedAccount XDR; ``result``: the OperationResult's XDR, or None without one; ``successful``: whether\n"
"the transaction succeeded. ``details`` is None where the Python rules must build the map.");

static PyObject *
operation(PyObject *module, PyObject *args)
{
    Py_buffer op, tx_source, result = {0};
    PyObject *result_obj;
    int successful;
    if (go_float == NULL)
        return PyErr_Format(PyExc_RuntimeError, "operation() called before setup()");
    if (!PyArg_ParseTuple(args, "y*y*Op", &op, &tx_source, &result_obj, &successful))
        return NULL;
    PyObject *out = NULL;
    Py_buffer *res = NULL;
    if (result_obj != Py_None) {
        if (PyObject_GetBuffer(result_obj, &result, PyBUF_SIMPLE) < 0)
            goto done;
        res = &result;
    }
    Rd r = {op.buf, 0, op.len}, s = {tx_source.buf, 0, tx_source.len};
    Muxed source;
    uint32_t has_source, type;
    if (u32(&r, &has_source) < 0 || (has_source ? muxed(&r, &source) : muxed(&s, &source)) < 0 ||
        u32(&r, &type) < 0)
        goto done;
    PyObject *texts = muxed_texts(&source), *type_obj = PyLong_FromUnsignedLong(type);
    PyObject *det = (texts && type_obj) ? details(type, &r, &source, res, successful) : NULL;
    PyObject *codes = det ? result_codes(res) : NULL;
    if (codes != NULL)
        out = PyTuple_Pack(7, PyTuple_GET_ITEM(texts, 0), PyTuple_GET_ITEM(texts, 1), type_obj, det,
                           PyTuple_GET_ITEM(codes, 0), PyTuple_GET_ITEM(codes, 1), PyTuple_GET_ITEM(codes, 2));
    Py_XDECREF(texts);
    Py_XDECREF(type_obj);
    Py_XDECREF(det);
    Py_XDECREF(codes);
done:
    PyBuffer_Release(&op);
    PyBuffer_Release(&tx_source);
    if (res != NULL)
        PyBuffer_Release(res);
    return out;
}

PyDoc_STRVAR(setup_doc,
"setup(go_float, asset_id, predicate_json)\n--\n\n"
"The Python pieces operation() calls: the float type of details maps, stellar-etl's asset id of\n"
"(code, issuer, type), and the JSON value of a ClaimPredicate given as XDR.");

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
    {"operation", operation, METH_VARARGS, operation_doc},
    {"setup", setup, METH_VARARGS, setup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef details_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_details",
    .m_doc = "What the operations table needs of an operation, read from its XDR in C.",
    .m_size = -1,
    .m_methods = details_functions,
};

PyMODINIT_FUNC
PyInit__details(void)
{
    crc16_init();
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
