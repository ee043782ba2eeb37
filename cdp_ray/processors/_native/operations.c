/*
 * operations.c: the ``operations`` table (cdp_ray.processors.operations), one row per operation, with
 * stellar-etl's details map as JSON (cdp_ray.processors.operation_details) written here for every type but
 * INVOKE_HOST_FUNCTION. A details map this file does not write (that type, a signer's sponsor, two or more
 * sponsors, unusual values) comes from the Python rules through the ``details`` hook, for that cell only.
 */
#include "native.h"

const ColSpec operations_cols[] = {
    {"id", C_I64}, {"transaction_id", C_I64}, {"source_account", C_STR}, {"source_account_muxed", C_STR},
    {"type", C_I32}, {"type_string", C_STR}, {"details", C_STR}, {"closed_at", C_TIME},
    {"operation_result_code", C_STR}, {"operation_trace_code", C_STR}, {"ledger_sequence", C_U32},
};
const int operations_ncols = sizeof operations_cols / sizeof operations_cols[0];

enum {
    OP_CREATE_ACCOUNT, OP_PAYMENT, OP_PATH_RECEIVE, OP_MANAGE_SELL, OP_PASSIVE_SELL, OP_SET_OPTIONS, OP_CHANGE_TRUST,
    OP_ALLOW_TRUST, OP_ACCOUNT_MERGE, OP_INFLATION, OP_MANAGE_DATA, OP_BUMP_SEQUENCE, OP_MANAGE_BUY, OP_PATH_SEND,
    OP_CREATE_CLAIMABLE, OP_CLAIM_CLAIMABLE, OP_BEGIN_SPONSORING, OP_END_SPONSORING, OP_REVOKE_SPONSORSHIP,
    OP_CLAWBACK, OP_CLAWBACK_CLAIMABLE, OP_SET_TRUST_LINE_FLAGS, OP_POOL_DEPOSIT, OP_POOL_WITHDRAW,
    OP_INVOKE_HOST_FUNCTION, OP_EXTEND_FOOTPRINT_TTL, OP_RESTORE_FOOTPRINT,
};

/* A details map this file leaves to the Python rules: unwinds to the operation's row, which asks the hook. */
static jmp_buf *cell_jump;

__attribute__((noreturn)) static void
python_rules(void)
{
    if (cell_jump == NULL) decline("python rules outside a details map");
    longjmp(*cell_jump, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* assets                                                                                     */

static void
read_code_issuer(Rd *r, Asset *a, Py_ssize_t size)
{
    const u8 *code = take(r, size);
    Py_ssize_t n = size;
    while (n > 0 && code[n - 1] == 0) n--;
    a->code = code;
    a->code_len = n;
    a->issuer = read_account_id(r);
}

void
read_asset(Rd *r, Asset *a)
{
    a->type = u32(r);
    if (a->type == 0) return;
    if (a->type != 1 && a->type != 2) decline("asset type");
    read_code_issuer(r, a, a->type == 1 ? 4 : 12);
}

const char *ASSET_TYPES[] = {"native", "credit_alphanum4", "credit_alphanum12"};
#define NATIVE_ASSET_ID (-5706705804583548011LL)

/* stellar-etl's asset ids (FarmHash of code + issuer + type, from the asset_id hook), cached by asset. */
typedef struct {
    u8 key[48];
    int len, used;
    int64_t id;
} AssetId;

#define ASSET_IDS 8192
static AssetId asset_ids[ASSET_IDS];
static int nasset_ids;

static void
put_code(Buf *b, const Asset *a)
{
    put_utf8_replace(b, a->code, a->code_len);
}

int64_t
asset_id_of(const Asset *a, PyObject *hook)
{
    u8 key[48];
    int n = 0;
    key[n++] = (u8)a->type;
    memcpy(key + n, a->code, a->code_len);
    n += (int)a->code_len;
    key[n++] = 0xff;  /* codes hold no 0xff after NUL-stripping ambiguity: length-delimited by it */
    memcpy(key + n, a->issuer, 32);
    n += 32;
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) h = (h ^ key[i]) * 1099511628211ULL;
    int slot = (int)(h & (ASSET_IDS - 1));
    while (asset_ids[slot].used && (asset_ids[slot].len != n || memcmp(asset_ids[slot].key, key, n) != 0))
        slot = (slot + 1) & (ASSET_IDS - 1);
    if (asset_ids[slot].used) return asset_ids[slot].id;
    Buf code = {0}, issuer = {0};
    put_code(&code, a);
    put_strkey(&issuer, VB_ACCOUNT, a->issuer, 32);
    PyObject *c = PyUnicode_DecodeUTF8(code.p ? code.p : "", code.len, "strict");
    PyObject *i = PyUnicode_DecodeUTF8(issuer.p, issuer.len, "strict");
    buf_free(&code);
    buf_free(&issuer);
    PyObject *t = PyUnicode_FromString(ASSET_TYPES[a->type]);
    PyObject *id = (c && i && t) ? PyObject_CallFunctionObjArgs(hook, c, i, t, NULL) : NULL;
    Py_XDECREF(c);
    Py_XDECREF(i);
    Py_XDECREF(t);
    if (id == NULL) fail();
    long long v = PyLong_AsLongLong(id);
    Py_DECREF(id);
    if (v == -1 && PyErr_Occurred()) fail();
    if (2 * (nasset_ids + 1) > ASSET_IDS) {  /* full: start over */
        memset(asset_ids, 0, sizeof asset_ids);
        nasset_ids = 0;
        slot = (int)(h & (ASSET_IDS - 1));
    }
    asset_ids[slot].used = 1;
    asset_ids[slot].len = n;
    memcpy(asset_ids[slot].key, key, n);
    asset_ids[slot].id = v;
    nasset_ids++;
    return v;
}

/* The prefixed keys of an asset: {prefix}asset_type, _code, _issuer, _id. */
enum { A_PLAIN, A_SOURCE, A_BUYING, A_SELLING, A_RESERVE_A, A_RESERVE_B };
static const char *ASSET_KEYS[][4] = {
    {"asset_type", "asset_code", "asset_issuer", "asset_id"},
    {"source_asset_type", "source_asset_code", "source_asset_issuer", "source_asset_id"},
    {"buying_asset_type", "buying_asset_code", "buying_asset_issuer", "buying_asset_id"},
    {"selling_asset_type", "selling_asset_code", "selling_asset_issuer", "selling_asset_id"},
    {"reserve_a_asset_type", "reserve_a_asset_code", "reserve_a_asset_issuer", "reserve_a_asset_id"},
    {"reserve_b_asset_type", "reserve_b_asset_code", "reserve_b_asset_issuer", "reserve_b_asset_id"},
};

typedef struct {
    Obj o;
    PyObject *asset_id_hook;
} Details;

void
put_code_json(Buf *b, const Asset *a)
{
    Buf code = {0};
    put_code(&code, a);
    put_json_str(b, (const u8 *)(code.p ? code.p : ""), code.len, 1);
    buf_free(&code);
}

/* operation_details.add_asset: type and id, code and issuer but for native */
static void
add_asset(Details *d, const Asset *a, int prefix)
{
    const char **k = ASSET_KEYS[prefix];
    obj_cstr(&d->o, k[0], ASSET_TYPES[a->type]);
    if (a->type == 0) {
        obj_i64(&d->o, k[3], NATIVE_ASSET_ID);
        return;
    }
    put_code_json(obj_key(&d->o, k[1]), a);
    obj_end(&d->o);
    obj_strkey(&d->o, k[2], VB_ACCOUNT, a->issuer, 32);
    obj_i64(&d->o, k[3], asset_id_of(a, d->asset_id_hook));
}

/* Go's Asset.StringCanonical(): "native" or "CODE:ISSUER", as a JSON string */
void
put_canonical(Buf *b, const Asset *a)
{
    if (a->type == 0) {
        buf_cstr(b, "\"native\"");
        return;
    }
    Buf text = {0};
    put_code(&text, a);
    buf_byte(&text, ':');
    put_strkey(&text, VB_ACCOUNT, a->issuer, 32);
    put_json_str(b, (const u8 *)text.p, text.len, 1);
    buf_free(&text);
}

/* ------------------------------------------------------------------------------------------ */
/* accounts, amounts, prices                                                                  */

enum { M_FUNDER, M_FROM, M_TO, M_TRUSTOR, M_TRUSTEE, M_ACCOUNT, M_INTO, M_CLAIMANT, M_BEGIN_SPONSOR };
static const char *MUXED_KEYS[][3] = {
    {"funder", "funder_muxed", "funder_muxed_id"}, {"from", "from_muxed", "from_muxed_id"},
    {"to", "to_muxed", "to_muxed_id"}, {"trustor", "trustor_muxed", "trustor_muxed_id"},
    {"trustee", "trustee_muxed", "trustee_muxed_id"}, {"account", "account_muxed", "account_muxed_id"},
    {"into", "into_muxed", "into_muxed_id"}, {"claimant", "claimant_muxed", "claimant_muxed_id"},
    {"begin_sponsor", "begin_sponsor_muxed", "begin_sponsor_muxed_id"},
};

/* operation_details.add_account */
static void
add_account(Details *d, const Muxed *m, int which)
{
    const char **k = MUXED_KEYS[which];
    obj_strkey(&d->o, k[0], VB_ACCOUNT, m->key, 32);
    if (m->muxed) {
        Buf *b = obj_key(&d->o, k[1]);
        buf_byte(b, '"');
        put_muxed_strkey(b, m->key, m->id);
        buf_byte(b, '"');
        obj_end(&d->o);
        obj_u64(&d->o, k[2], m->id);
    }
}

static void
add_muxed_read(Details *d, Rd *r, int which)
{
    Muxed m;
    read_muxed(r, &m);
    add_account(d, &m, which);
}

static void
add_real(Details *d, const char *key, int64_t stroops)
{
    obj_float(&d->o, key, stroops_real(stroops));
}

static void
add_amount_string(Details *d, const char *key, int64_t stroops)
{
    Buf *b = obj_key(&d->o, key);
    buf_byte(b, '"');
    put_rat7(b, stroops, 10000000);
    buf_byte(b, '"');
    obj_end(&d->o);
}

/* price and price_r (operation_details.add_price) with keys ``price``/``price_r`` or their prefixed forms */
static void
add_price(Details *d, Rd *r, const char *price_key, const char *price_r_key)
{
    int32_t n = i32(r), den = i32(r);
    if (den == 0) python_rules();  /* the Python rules divide by zero */
    Buf text = {0};
    put_rat7(&text, n, den);
    buf_byte(&text, 0);
    double v = PyOS_string_to_double(text.p, NULL, NULL);
    buf_free(&text);
    if (v == -1.0 && PyErr_Occurred()) fail();
    obj_float(&d->o, price_key, v);
    Buf *b = obj_key(&d->o, price_r_key);
    buf_cstr(b, "{\"d\":");
    put_i64(b, den);
    buf_cstr(b, ",\"n\":");
    put_i64(b, n);
    buf_byte(b, '}');
    obj_end(&d->o);
}

/* ------------------------------------------------------------------------------------------ */
/* values of some operation types                                                             */

static void
put_path(Buf *b, Rd *r)
{
    uint32_t n = count(r, 5, 4);
    if (n == 0) {
        buf_cstr(b, "null");
        return;
    }
    buf_byte(b, '[');
    for (uint32_t i = 0; i < n; i++) {
        Asset a;
        read_asset(r, &a);
        if (i) buf_byte(b, ',');
        buf_cstr(b, "{\"asset_code\":");
        if (a.type == 0) {
            buf_cstr(b, "\"\",\"asset_issuer\":\"\"");
        } else {
            put_code_json(b, &a);
            buf_cstr(b, ",\"asset_issuer\":\"");
            put_strkey(b, VB_ACCOUNT, a.issuer, 32);
            buf_byte(b, '"');
        }
        buf_cstr(b, ",\"asset_type\":\"");
        buf_cstr(b, ASSET_TYPES[a.type]);
        buf_cstr(b, "\"}");
    }
    buf_byte(b, ']');
}

/* Proleptic Gregorian UTC date and time of a Unix time (operation_details._civil). */
static void
put_rfc3339(Buf *b, int64_t epoch)
{
    int64_t days = epoch / 86400, secs = epoch % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char text[64];
    snprintf(text, sizeof text, "%s%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ", year > 9999 ? "+" : "",
             (long long)year, (long long)month, (long long)day, (long long)(secs / 3600), (long long)(secs / 60 % 60),
             (long long)(secs % 60));
    buf_cstr(b, text);
}

/* operation_details.claim_predicate_json */
void
put_predicate(Buf *b, Rd *r, int depth)
{
    if (depth > 64) decline("claim predicate nested too deep");
    uint32_t type = u32(r);
    switch (type) {
    case 0:
        buf_cstr(b, "{\"unconditional\":true}");
        return;
    case 1:
    case 2: {
        uint32_t n = count(r, 2, 4);
        buf_cstr(b, type == 1 ? "{\"and\":[" : "{\"or\":[");
        for (uint32_t i = 0; i < n; i++) {
            if (i) buf_byte(b, ',');
            put_predicate(b, r, depth + 1);
        }
        buf_cstr(b, "]}");
        return;
    }
    case 3:
        buf_cstr(b, "{\"not\":");
        if (u32(r))
            put_predicate(b, r, depth + 1);
        else
            buf_cstr(b, "{}");
        buf_byte(b, '}');
        return;
    case 4: {
        int64_t epoch = i64(r);
        buf_cstr(b, "{\"abs_before\":\"");
        put_rfc3339(b, epoch);
        buf_cstr(b, "\",\"abs_before_epoch\":\"");
        put_i64(b, epoch);
        buf_cstr(b, "\"}");
        return;
    }
    case 5:
        buf_cstr(b, "{\"rel_before\":\"");
        put_i64(b, i64(r));
        buf_cstr(b, "\"}");
        return;
    }
    decline("claim predicate type");
}

static void
put_claimants(Buf *b, Rd *r)
{
    uint32_t n = count(r, 10, 4);
    if (n == 0) {
        buf_cstr(b, "null");
        return;
    }
    buf_byte(b, '[');
    for (uint32_t i = 0; i < n; i++) {
        if (u32(r) != 0) decline("claimant type");
        if (i) buf_byte(b, ',');
        buf_cstr(b, "{\"destination\":\"");
        put_strkey(b, VB_ACCOUNT, read_account_id(r), 32);
        buf_cstr(b, "\",\"predicate\":");
        put_predicate(b, r, 0);
        buf_byte(b, '}');
    }
    buf_byte(b, ']');
}

static void
add_flags(Details *d, uint32_t flags, int trustline, const char *key, const char *names_key)
{
    static const char *ACCOUNT[] = {"auth_required", "auth_revocable", "auth_immutable", "auth_clawback_enabled"};
    static const char *TRUSTLINE[] = {"authorized", "authorized_to_maintain_liabilities", "clawback_enabled"};
    const char **names = trustline ? TRUSTLINE : ACCOUNT;
    int nbits = trustline ? 3 : 4;
    Buf *b = obj_key(&d->o, key);
    buf_byte(b, '[');
    int first = 1;
    for (int i = 0; i < nbits; i++)
        if (flags & (1u << i)) {
            if (!first) buf_byte(b, ',');
            put_u64(b, 1u << i);
            first = 0;
        }
    buf_byte(b, ']');
    obj_end(&d->o);
    b = obj_key(&d->o, names_key);
    buf_byte(b, '[');
    first = 1;
    for (int i = 0; i < nbits; i++)
        if (flags & (1u << i)) {
            if (!first) buf_byte(b, ',');
            buf_byte(b, '"');
            buf_cstr(b, names[i]);
            buf_byte(b, '"');
            first = 0;
        }
    buf_byte(b, ']');
    obj_end(&d->o);
}

/* A SignerKey's strkey as a JSON string (common.signer_key_address). */
static void
put_signer_key_json(Buf *b, Rd *r)
{
    Py_ssize_t start = r->pos;
    uint32_t type = u32(r), n;
    const u8 *key = take(r, 32);
    buf_byte(b, '"');
    if (type == 3) {
        var_bytes(r, 64, &n);
        put_strkey(b, VB_SIGNED, r->p + start + 4, r->pos - start - 4);
    } else if (type <= 2) {
        static const unsigned versions[] = {VB_ACCOUNT, VB_PREAUTH, VB_HASHX};
        put_strkey(b, versions[type], key, 32);
    } else {
        decline("signer key type");
    }
    buf_byte(b, '"');
}

static void
put_balance_id(Details *d, Rd *r, const char *hex_key, const char *strkey_key)
{
    if (u32(r) != 0) decline("claimable balance id type");
    const u8 *hash = take(r, 32);
    Buf *b = obj_key(&d->o, hex_key);
    buf_cstr(b, "\"00000000");
    put_hex(b, hash, 32);
    buf_byte(b, '"');
    obj_end(&d->o);
    u8 payload[33] = {0};
    memcpy(payload + 1, hash, 32);
    obj_strkey(&d->o, strkey_key, VB_BALANCE, payload, 33);
}

static void
put_pool_id(Details *d, const u8 *id, const char *hex_key, const char *strkey_key)
{
    Buf *b = obj_key(&d->o, hex_key);
    buf_byte(b, '"');
    put_hex(b, id, 32);
    buf_byte(b, '"');
    obj_end(&d->o);
    obj_strkey(&d->o, strkey_key, VB_POOL, id, 32);
}

/* operation_details._ledger_key_details */
static void
ledger_key_details(Details *d, Rd *r)
{
    uint32_t type = u32(r), n;
    switch (type) {
    case 0:
        obj_strkey(&d->o, "account_id", VB_ACCOUNT, read_account_id(r), 32);
        return;
    case 1: {
        obj_strkey(&d->o, "trustline_account_id", VB_ACCOUNT, read_account_id(r), 32);
        uint32_t at = u32(r);
        if (at == 3) {
            put_pool_id(d, take(r, 32), "trustline_liquidity_pool_id", "trustline_liquidity_pool_id_strkey");
            return;
        }
        r->pos -= 4;
        Asset a;
        read_asset(r, &a);
        put_canonical(obj_key(&d->o, "trustline_asset"), &a);
        obj_end(&d->o);
        return;
    }
    case 2:
        read_account_id(r);
        obj_i64(&d->o, "offer_id", i64(r));
        return;
    case 3: {
        obj_strkey(&d->o, "data_account_id", VB_ACCOUNT, read_account_id(r), 32);
        const u8 *name = var_bytes(r, 64, &n);
        Buf text = {0};
        put_utf8_replace(&text, name, n);
        obj_str(&d->o, "data_name", (const u8 *)(text.p ? text.p : ""), text.len);
        buf_free(&text);
        return;
    }
    case 4:
        put_balance_id(d, r, "claimable_balance_id", "claimable_balance_id_strkey");
        return;
    case 5:
        put_pool_id(d, take(r, 32), "liquidity_pool_id", "liquidity_pool_id_strkey");
        return;
    }
    /* contract data and code, config settings, ttl: no details */
}

/* ------------------------------------------------------------------------------------------ */
/* what the details read of the transaction                                                   */

typedef struct {
    const Led *L;
    const Tx *t;
    uint32_t index;            /* 0-based operation index */
    Muxed source;              /* the operation's source */
    int has_group;             /* the operation's LedgerEntryChanges */
    uint32_t group, group_end;
    SacAssets *assets;         /* asset_balance_changes' assets */
} Ctx;

/* The operation's result XDR (NULL without one). */
static const u8 *
op_result(const Ctx *c, Py_ssize_t *len)
{
    if (c->index >= c->t->nresults) return NULL;
    *len = c->t->res[c->index + 1] - c->t->res[c->index];
    return c->L->p + c->t->res[c->index];
}

void
read_claim_atom(Rd *r, ClaimAtom *c)
{
    c->type = u32(r);
    c->seller = c->pool = NULL;
    c->offer_id = 0;
    if (c->type == 0) c->seller = take(r, 32);
    else if (c->type == 1) c->seller = read_account_id(r);
    else if (c->type == 2) c->pool = take(r, 32);
    else decline("claim atom type");
    if (c->type != 2) c->offer_id = i64(r);
    Py_ssize_t at = r->pos;
    read_asset(r, &c->sold);
    c->sold_xdr = r->p + at;
    c->sold_len = r->pos - at;
    c->amount_sold = i64(r);
    at = r->pos;
    read_asset(r, &c->bought);
    c->bought_xdr = r->p + at;
    c->bought_len = r->pos - at;
    c->amount_bought = i64(r);
}

int
path_amounts(Rd *r, int64_t *sent, int64_t *last)
{
    uint32_t n = count(r, UINT32_MAX, 4);
    int counting = 1, overflow = 0;
    ClaimAtom first, c;
    *sent = 0;
    for (uint32_t i = 0; i < n; i++) {
        read_claim_atom(r, i == 0 ? &first : &c);
        const ClaimAtom *x = i == 0 ? &first : &c;
        if (i && (c.bought_len != first.bought_len || memcmp(c.bought_xdr, first.bought_xdr, c.bought_len) != 0))
            counting = 0;
        if (counting && __builtin_add_overflow(*sent, x->amount_bought, sent)) overflow = 1;
    }
    read_account_id(r);
    Asset a;
    read_asset(r, &a);
    *last = i64(r);
    if (n == 0) *sent = *last;
    return overflow ? -1 : 0;
}

/* A successful path payment's amount from its result: ``receive``: what was sent (SendAmount()), else what
   was received; 0 when the result is not a success. */
static int64_t
path_payment_amount(const Ctx *c, int receive)
{
    Py_ssize_t len;
    const u8 *res = op_result(c, &len);
    if (res == NULL) python_rules();
    Rd r = {res, 0, len};
    if (i32(&r) != 0) python_rules();  /* no inner result: the Python rules fail on it */
    if (u32(&r) != (uint32_t)(receive ? OP_PATH_RECEIVE : OP_PATH_SEND)) python_rules();
    if (i32(&r) != 0) return 0;
    int64_t sent, last;
    if (path_amounts(&r, &sent, &last) < 0 && receive) python_rules();
    return receive ? sent : last;
}

/* The changes of a group, for pairing. */
typedef struct {
    int type;
    XdrEntry e;  /* unset for REMOVED */
} Change;

typedef struct {
    Change *items;
    Py_ssize_t n, cap;
} Changes;

static Changes changes;  /* reused across operations */

static int
collect(void *ctx, int type, const XdrEntry *e, const u8 *k, Py_ssize_t klen)
{
    if (changes.n == changes.cap) {
        Py_ssize_t cap = changes.cap ? 2 * changes.cap : 64;
        Change *more = PyMem_Realloc(changes.items, cap * sizeof(Change));
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        changes.items = more;
        changes.cap = cap;
    }
    Change *c = &changes.items[changes.n++];
    c->type = type;
    if (e != NULL) c->e = *e;
    return 0;
}

static void
read_changes(const Ctx *c)
{
    changes.n = 0;
    if (!c->has_group) return;
    if (xdr_api->changes(codec, c->L->p + c->group, c->group_end - c->group, collect, NULL) < 0) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) fail();
        PyErr_Clear();
        decline("ledger entry changes the codec rejects");
    }
}

/* The sponsor of the entries the operation created (operation_details._sponsor without a signer): none,
   one (written), or several (the Python rules order them). */
static void
add_sponsor(Details *d, const Ctx *c)
{
    if (!c->has_group) return;
    read_changes(c);
    const u8 *sponsor = NULL;
    int n = 0;
    for (Py_ssize_t i = 0; i < changes.n; i++) {
        Change *ch = &changes.items[i];
        if ((ch->type == 0 || ch->type == 4) && ch->e.sponsor != NULL) {
            sponsor = ch->e.sponsor;
            n++;
        }
    }
    if (n > 1) python_rules();
    if (n == 1) obj_strkey(&d->o, "sponsor", VB_ACCOUNT, sponsor, 32);
}

/* A liquidity pool entry's parameters' assets, reserves and total shares. */
typedef struct {
    const u8 *id;
    Asset a, b;
    int64_t ra, rb, shares;
} Pool;

static void
read_pool(const XdrEntry *e, Pool *p)
{
    Rd r = {e->data, 0, e->entry + e->entry_len - e->data};
    p->id = take(&r, 32);
    if (u32(&r) != 0) decline("liquidity pool type");
    read_asset(&r, &p->a);
    read_asset(&r, &p->b);
    i32(&r);
    p->ra = i64(&r);
    p->rb = i64(&r);
    p->shares = i64(&r);
}

/* operation_details._pool_delta over operation_details._pairs: the first change of pool ``id``. */
static int
pool_delta(const Ctx *c, const u8 *id, Pool *params, int64_t *da, int64_t *db, int64_t *ds)
{
    read_changes(c);
    for (Py_ssize_t i = 0; i < changes.n; i++) {
        Change *ch = &changes.items[i];
        const XdrEntry *pre = NULL, *post = NULL;
        if (ch->type == 0 || ch->type == 4) {
            post = &ch->e;
        } else if (ch->type == 1 || ch->type == 2) {
            if (i == 0 || (changes.items[i - 1].type != 3 && changes.items[i - 1].type != 4)) python_rules();
            pre = &changes.items[i - 1].e;
            if (ch->type == 1) post = &ch->e;
        } else {
            continue;
        }
        const XdrEntry *entry = post ? post : pre;
        if (entry->type != 5) continue;
        Pool p0 = {0}, p1 = {0};
        read_pool(entry, params);
        if (memcmp(params->id, id, 32) != 0) continue;
        if (pre) read_pool(pre, &p0);
        if (post) read_pool(post, &p1);
        if (__builtin_sub_overflow(p1.ra, p0.ra, da) || __builtin_sub_overflow(p1.rb, p0.rb, db) ||
            __builtin_sub_overflow(p1.shares, p0.shares, ds))
            python_rules();
        return 1;
    }
    return 0;
}

static void
pool_op(Details *d, Rd *r, const Ctx *c, int deposit)
{
    const u8 *id = take(r, 32);
    put_pool_id(d, id, "liquidity_pool_id", "liquidity_pool_id_strkey");
    Pool params = {0};
    Asset native = {0};
    int64_t da = 0, db = 0, shares = 0;
    int found = c->t->successful && pool_delta(c, id, &params, &da, &db, &shares);
    const Asset *a = found ? &params.a : &native, *b = found ? &params.b : &native;
    add_asset(d, a, A_RESERVE_A);
    add_asset(d, b, A_RESERVE_B);
    if (deposit) {
        add_real(d, "reserve_a_max_amount", i64(r));
        add_real(d, "reserve_b_max_amount", i64(r));
        add_price(d, r, "min_price", "min_price_r");
        add_price(d, r, "max_price", "max_price_r");
        add_real(d, "reserve_a_deposit_amount", da);
        add_real(d, "reserve_b_deposit_amount", db);
        add_real(d, "shares_received", shares);
    } else {
        add_real(d, "shares", i64(r));
        add_real(d, "reserve_a_min_amount", i64(r));
        add_real(d, "reserve_b_min_amount", i64(r));
        int64_t wa, wb;
        if (__builtin_sub_overflow(0, da, &wa) || __builtin_sub_overflow(0, db, &wb)) python_rules();
        add_real(d, "reserve_a_withdraw_amount", wa);
        add_real(d, "reserve_b_withdraw_amount", wb);
    }
}

/* ledger_key_hash and (``contract``) contract_id of a Soroban transaction's footprint (operation_details). */
static void
footprint_details(Details *d, const Tx *t, int contract)
{
    if (!t->soroban) {
        obj_raw(&d->o, "ledger_key_hash", "null");
        if (contract) obj_raw(&d->o, "contract_id", "\"\"");
        return;
    }
    Rd r = t->soroban_data;
    if (u32(&r) == 1) {
        uint32_t n = count(&r, UINT32_MAX, 4);
        take(&r, (Py_ssize_t)n * 4);
    }
    Py_ssize_t lists[2][2];  /* readOnly, readWrite: start, end */
    for (int l = 0; l < 2; l++) {
        lists[l][0] = r.pos;
        uint32_t n = count(&r, UINT32_MAX, 4);
        for (uint32_t i = 0; i < n; i++) skip_value(&r, tid.ledger_key);
        lists[l][1] = r.pos;
    }
    Buf *b = obj_key(&d->o, "ledger_key_hash");
    int any = 0;
    for (int l = 0; l < 2; l++) {
        Rd k = {r.p + lists[l][0], 0, lists[l][1] - lists[l][0]};
        uint32_t n = u32(&k);
        for (uint32_t i = 0; i < n; i++) {
            Py_ssize_t at = k.pos;
            skip_value(&k, tid.ledger_key);
            buf_cstr(b, any ? ",\"" : "[\"");
            put_sha256_hex(b, k.p + at, k.pos - at);
            buf_byte(b, '"');
            any = 1;
        }
    }
    buf_cstr(b, any ? "]" : "null");
    obj_end(&d->o);
    if (!contract) return;
    /* the first contract data key of a contract: read-write keys first */
    for (int l = 1; l >= 0; l--) {
        Rd k = {r.p + lists[l][0], 0, lists[l][1] - lists[l][0]};
        uint32_t n = u32(&k);
        for (uint32_t i = 0; i < n; i++) {
            Py_ssize_t at = k.pos;
            if (u32(&k) == 6 && u32(&k) == 1) {  /* CONTRACT_DATA, SC_ADDRESS_TYPE_CONTRACT */
                obj_strkey(&d->o, "contract_id", VB_CONTRACT, take(&k, 32), 32);
                return;
            }
            k.pos = at;
            skip_value(&k, tid.ledger_key);
        }
    }
    obj_raw(&d->o, "contract_id", "\"\"");
}

/* operation_details._begin_sponsor_source: the closest earlier BEGIN_SPONSORING_FUTURE_RESERVES naming this
   operation's source as the sponsored account */
static void
begin_sponsor(Details *d, const Ctx *c)
{
    const Tx *t = c->t;
    if (!t->successful) return;
    for (int64_t i = (int64_t)c->index - 1; i >= 0; i--) {
        Rd r = rd_span(c->L->p, t->op[i], t->op[i + 1]);
        Muxed src = t->source;
        if (u32(&r)) read_muxed(&r, &src);
        if (u32(&r) != OP_BEGIN_SPONSORING) continue;
        if (memcmp(read_account_id(&r), c->source.key, 32) == 0) {
            add_account(d, &src, M_BEGIN_SPONSOR);
            return;
        }
    }
}

/* parameters, parameters_decoded, parameters_json and parameters_json_decoded of SCVals (XDR of each in
   ``args``), as operation_details._parameters writes them. */
static Buf params[4];

static void
parameters(Details *d, Rd *args, uint32_t n)
{
    for (int k = 0; k < 4; k++) {
        params[k].len = 0;
        buf_byte(&params[k], '[');
    }
    Buf text = {0};
    for (uint32_t i = 0; i < n; i++) {
        Py_ssize_t at = args->pos;
        const u8 *start = args->p + at;
        if (args->len - at < 4) decline("truncated XDR");
        uint32_t type = be32(start);
        put_scval_json(&params[3], args, 0, 1);  /* parameters_json_decoded (reads the value) */
        Py_ssize_t len = args->pos - at;
        for (int k = 0; k < 2; k++) {
            buf_cstr(&params[k], "{\"type\":\"");
            put_enum_name(&params[k], N_SCV_ARM, type);
            buf_cstr(&params[k], "\",\"value\":");
        }
        buf_byte(&params[0], '"');
        put_b64(&params[0], start, len);
        buf_cstr(&params[0], "\"}");
        text.len = 0;
        Rd v = {start, 0, len};
        put_scval_go(&text, &v, 0);
        put_json_str(&params[1], (const u8 *)(text.p ? text.p : ""), text.len, 1);
        buf_byte(&params[1], '}');
        buf_byte(&params[2], '"');
        put_b64(&params[2], start, len);
        buf_byte(&params[2], '"');
        for (int k = 0; k < 4; k++)
            if (i + 1 < n) buf_byte(&params[k], ',');
    }
    buf_free(&text);
    static const char *keys[] = {"parameters", "parameters_decoded", "parameters_json", "parameters_json_decoded"};
    for (int k = 0; k < 4; k++) {
        buf_byte(&params[k], ']');
        buf_put(obj_key(&d->o, keys[k]), params[k].p, params[k].len);
        obj_end(&d->o);
    }
}

/* asset_balance_changes: the Stellar Asset Contract movements among a transaction's diagnostic events
   (operation_details.sac_balance_changes over scval.sac_event). */
static void
asset_balance_changes(Details *d, const Ctx *c)
{
    Buf *b = obj_key(&d->o, "asset_balance_changes");
    buf_byte(b, '[');
    const Tx *t = c->t;
    int any = 0;
    if ((t->meta_v == 3 || t->meta_v == 4) && t->diagnostic) {
        Rd r = {c->L->p + t->diagnostic, 0, c->L->len - t->diagnostic};
        uint32_t n = count(&r, UINT32_MAX, 4);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t ok = u32(&r);
            Summary s;
            summarize(&r, &s);
            PyObject *asset;
            const ScAddress *from, *to;
            int fn = ok ? sac_event(&s, c->assets, &asset, &from, &to) : -1;
            if (fn < 0) continue;
            /* keys in order: amount, asset_code, asset_issuer, asset_type, from, to, type */
            buf_cstr(b, any ? ",{\"amount\":\"" : "{\"amount\":\"");
            any = 1;
            put_rat7(b, s.amount, 10000000);
            buf_byte(b, '"');
            static const char *keys[] = {"asset_type", "asset_code", "asset_issuer"};
            for (int k = 1; k <= 3; k++) {
                int col = k == 3 ? 1 : k + 1;  /* asset_code, asset_issuer, asset_type: columns 2, 3, 1 */
                PyObject *v = PyTuple_GET_ITEM(asset, col);
                if (v == Py_None) continue;
                Py_ssize_t len;
                const char *text = PyUnicode_AsUTF8AndSize(v, &len);
                if (text == NULL) fail();
                buf_cstr(b, ",\"");
                buf_cstr(b, keys[col - 1]);
                buf_cstr(b, "\":");
                put_json_str(b, (const u8 *)text, len, 1);
            }
            if (from) {
                buf_cstr(b, ",\"from\":\"");
                put_strkey(b, from->version, from->payload, from->len);
                buf_byte(b, '"');
            }
            if (to) {
                buf_cstr(b, ",\"to\":\"");
                put_strkey(b, to->version, to->payload, to->len);
                buf_byte(b, '"');
            }
            static const char *types[] = {"transfer", "mint", "clawback", "burn"};
            buf_cstr(b, ",\"type\":\"");
            buf_cstr(b, types[fn]);
            buf_cstr(b, "\"}");
        }
    }
    buf_byte(b, ']');
    obj_end(&d->o);
}

/* operation_details._invoke_host_function */
static void
invoke_host_function(Details *d, Rd *r, const Ctx *c)
{
    uint32_t type = u32(r), n;
    Buf *b = obj_key(&d->o, "function");
    buf_byte(b, '"');
    put_enum_name(b, N_HOST_FUNCTION_TYPE, type);
    buf_byte(b, '"');
    obj_end(&d->o);
    obj_raw(&d->o, "contract_code_hash", "null");
    if (type == 0) {  /* invoke contract: the contract's address and the function's name are its first parameters */
        Buf args = {0};
        buf_put(&args, "\0\0\0\x12", 4);  /* SCV_ADDRESS */
        Py_ssize_t at = r->pos;
        ScAddress a;
        read_sc_address(r, &a);
        buf_put(&args, r->p + at, r->pos - at);
        obj_strkey(&d->o, "contract_id", a.version, a.payload, a.len);
        buf_put(&args, "\0\0\0\x0f", 4);  /* SCV_SYMBOL */
        at = r->pos;
        var_bytes(r, 32, &n);
        buf_put(&args, r->p + at, r->pos - at);
        n = count(r, UINT32_MAX, 4);
        buf_put(&args, r->p + r->pos, r->len - r->pos);
        Rd all = {(const u8 *)args.p, 0, args.len};
        obj_cstr(&d->o, "type", "invoke_contract");
        footprint_details(d, c->t, 0);
        Guard *g = guard, inner = {0};
        guard = &inner;
        if (setjmp(inner.jump) == 0)
            parameters(d, &all, n + 2);
        guard = g;
        buf_free(&args);
        if (inner.failed) fail();
        if (inner.reason) decline(inner.reason);
        asset_balance_changes(d, c);
        return;
    }
    if (type == 1 || type == 3) {
        obj_cstr(&d->o, "type", type == 3 ? "create_contract_v2" : "create_contract");
        footprint_details(d, c->t, 1);
        uint32_t from = u32(r);
        if (from == 0) {
            obj_cstr(&d->o, "from", "address");
            Buf *v = obj_key(&d->o, "address");
            buf_byte(v, '"');
            put_sc_address(v, r);
            buf_byte(v, '"');
            obj_end(&d->o);
            take(r, 32);  /* salt */
        } else if (from == 1) {
            Asset a;
            obj_cstr(&d->o, "from", "asset");
            read_asset(r, &a);
            put_canonical(obj_key(&d->o, "asset"), &a);
            obj_end(&d->o);
        } else {
            decline("contract id preimage type");
        }
        uint32_t ex = u32(r);  /* the executable */
        if (ex == 0) {
            take(r, 32);
        } else if (ex == 2) {
            ScAddress owner;
            read_sc_address(r, &owner);
            var_bytes(r, UINT32_MAX, &n);
        } else if (ex != 1) {
            decline("contract executable type");
        }
        if (type == 3) {
            n = count(r, UINT32_MAX, 4);
            parameters(d, r, n);
        }
        return;
    }
    if (type == 2) {
        obj_cstr(&d->o, "type", "upload_wasm");
        footprint_details(d, c->t, 0);
        return;
    }
    decline("host function type");
}

/* The details map of the operation whose body follows in ``r`` (its type read), less the sponsor. */
static void
details(Details *d, Rd *r, uint32_t type, const Ctx *c)
{
    const Muxed *source = &c->source;
    uint32_t n;
    Asset a;
    switch (type) {
    case OP_CREATE_ACCOUNT:
        add_account(d, source, M_FUNDER);
        obj_strkey(&d->o, "account", VB_ACCOUNT, read_account_id(r), 32);
        add_real(d, "starting_balance", i64(r));
        return;
    case OP_PAYMENT:
        add_account(d, source, M_FROM);
        add_muxed_read(d, r, M_TO);
        read_asset(r, &a);
        add_asset(d, &a, A_PLAIN);
        add_real(d, "amount", i64(r));
        return;
    case OP_PATH_RECEIVE:
    case OP_PATH_SEND: {
        int receive = type == OP_PATH_RECEIVE;
        add_account(d, source, M_FROM);
        read_asset(r, &a);
        add_asset(d, &a, A_SOURCE);
        add_real(d, receive ? "source_max" : "source_amount", i64(r));
        add_muxed_read(d, r, M_TO);
        read_asset(r, &a);
        add_asset(d, &a, A_PLAIN);
        int64_t v = i64(r);
        if (receive)
            add_real(d, "amount", v);
        else
            add_amount_string(d, "destination_min", v);
        put_path(obj_key(&d->o, "path"), r);
        obj_end(&d->o);
        const char *key = receive ? "source_amount" : "amount";
        if (c->t->successful)
            add_real(d, key, path_payment_amount(c, receive));
        else
            add_amount_string(d, key, 0);
        return;
    }
    case OP_MANAGE_SELL:
    case OP_PASSIVE_SELL:
    case OP_MANAGE_BUY:
        read_asset(r, &a);
        add_asset(d, &a, A_SELLING);
        read_asset(r, &a);
        add_asset(d, &a, A_BUYING);
        add_real(d, "amount", i64(r));
        add_price(d, r, "price", "price_r");
        if (type != OP_PASSIVE_SELL) obj_i64(&d->o, "offer_id", i64(r));
        return;
    case OP_SET_OPTIONS: {
        if (u32(r)) obj_strkey(&d->o, "inflation_dest", VB_ACCOUNT, read_account_id(r), 32);
        uint32_t clear = 0, set = 0;
        int has_clear = u32(r) != 0;
        if (has_clear) clear = u32(r);
        int has_set = u32(r) != 0;
        if (has_set) set = u32(r);
        if (has_set && set > 0) add_flags(d, set, 0, "set_flags", "set_flags_s");
        if (has_clear && clear > 0) add_flags(d, clear, 0, "clear_flags", "clear_flags_s");
        static const char *weights[] = {"master_key_weight", "low_threshold", "med_threshold", "high_threshold"};
        for (int k = 0; k < 4; k++)
            if (u32(r)) obj_u64(&d->o, weights[k], u32(r));
        if (u32(r)) {
            const u8 *home = var_bytes(r, 32, &n);
            Buf text = {0};
            put_utf8_replace(&text, home, n);
            obj_str(&d->o, "home_domain", (const u8 *)(text.p ? text.p : ""), text.len);
            buf_free(&text);
        }
        if (u32(r))
            python_rules();  /* a signer: its sponsor is read from the account entries by the Python rules */
        return;
    }
    case OP_CHANGE_TRUST: {
        uint32_t at = u32(r);
        if (at == 3) python_rules();  /* a pool share: its id is hashed by the Python rules */
        r->pos -= 4;
        read_asset(r, &a);
        add_asset(d, &a, A_PLAIN);
        if (a.type == 0)
            obj_raw(&d->o, "trustee", "null");
        else
            obj_strkey(&d->o, "trustee", VB_ACCOUNT, a.issuer, 32);
        add_account(d, source, M_TRUSTOR);
        add_real(d, "limit", i64(r));
        return;
    }
    case OP_ALLOW_TRUST: {
        const u8 *trustor = read_account_id(r);
        uint32_t code_type = u32(r);
        if (code_type != 1 && code_type != 2) decline("asset code type");
        a.type = code_type;
        const u8 *code = take(r, code_type == 1 ? 4 : 12);
        Py_ssize_t len = code_type == 1 ? 4 : 12;
        while (len > 0 && code[len - 1] == 0) len--;
        a.code = code;
        a.code_len = len;
        a.issuer = source->key;
        add_asset(d, &a, A_PLAIN);
        add_account(d, source, M_TRUSTEE);
        obj_strkey(&d->o, "trustor", VB_ACCOUNT, trustor, 32);
        uint32_t auth = u32(r);
        obj_raw(&d->o, "authorize", auth & 1 ? "true" : "false");
        if (auth & 2) obj_raw(&d->o, "authorize_to_maintain_liabilities", "true");
        if (auth & 4) obj_raw(&d->o, "clawback_enabled", "true");
        return;
    }
    case OP_ACCOUNT_MERGE:
        add_account(d, source, M_ACCOUNT);
        add_muxed_read(d, r, M_INTO);
        return;
    case OP_INFLATION:
        return;
    case OP_MANAGE_DATA: {
        const u8 *name = var_bytes(r, 64, &n);
        Buf text = {0};
        put_utf8_replace(&text, name, n);
        obj_str(&d->o, "name", (const u8 *)(text.p ? text.p : ""), text.len);
        buf_free(&text);
        if (u32(r)) {
            const u8 *value = var_bytes(r, 64, &n);
            Buf *b = obj_key(&d->o, "value");
            buf_byte(b, '"');
            put_b64(b, value, n);
            buf_byte(b, '"');
            obj_end(&d->o);
        } else {
            obj_raw(&d->o, "value", "null");
        }
        return;
    }
    case OP_BUMP_SEQUENCE: {
        Buf *b = obj_key(&d->o, "bump_to");
        buf_byte(b, '"');
        put_i64(b, i64(r));
        buf_byte(b, '"');
        obj_end(&d->o);
        return;
    }
    case OP_CREATE_CLAIMABLE:
        read_asset(r, &a);
        put_canonical(obj_key(&d->o, "asset"), &a);
        obj_end(&d->o);
        add_real(d, "amount", i64(r));
        put_claimants(obj_key(&d->o, "claimants"), r);
        obj_end(&d->o);
        return;
    case OP_CLAIM_CLAIMABLE:
        put_balance_id(d, r, "balance_id", "balance_id_strkey");
        add_account(d, source, M_CLAIMANT);
        return;
    case OP_BEGIN_SPONSORING:
        obj_strkey(&d->o, "sponsored_id", VB_ACCOUNT, read_account_id(r), 32);
        return;
    case OP_END_SPONSORING:
        begin_sponsor(d, c);
        return;
    case OP_REVOKE_SPONSORSHIP: {
        uint32_t kind = u32(r);
        if (kind == 0) {
            ledger_key_details(d, r);
        } else if (kind == 1) {
            obj_strkey(&d->o, "signer_account_id", VB_ACCOUNT, read_account_id(r), 32);
            put_signer_key_json(obj_key(&d->o, "signer_key"), r);
            obj_end(&d->o);
        } else {
            decline("revoke sponsorship type");
        }
        return;
    }
    case OP_CLAWBACK:
        read_asset(r, &a);
        add_asset(d, &a, A_PLAIN);
        add_muxed_read(d, r, M_FROM);
        add_real(d, "amount", i64(r));
        return;
    case OP_CLAWBACK_CLAIMABLE:
        put_balance_id(d, r, "balance_id", "balance_id_strkey");
        return;
    case OP_SET_TRUST_LINE_FLAGS: {
        obj_strkey(&d->o, "trustor", VB_ACCOUNT, read_account_id(r), 32);
        read_asset(r, &a);
        add_asset(d, &a, A_PLAIN);
        uint32_t clear = u32(r), set = u32(r);
        if (set > 0) add_flags(d, set, 1, "set_flags", "set_flags_s");
        if (clear > 0) add_flags(d, clear, 1, "clear_flags", "clear_flags_s");
        return;
    }
    case OP_POOL_DEPOSIT:
    case OP_POOL_WITHDRAW:
        pool_op(d, r, c, type == OP_POOL_DEPOSIT);
        return;
    case OP_EXTEND_FOOTPRINT_TTL:
    case OP_RESTORE_FOOTPRINT:
        if (u32(r) != 0) decline("extension point");
        obj_cstr(&d->o, "type", type == OP_EXTEND_FOOTPRINT_TTL ? "extend_footprint_ttl" : "restore_footprint");
        if (type == OP_EXTEND_FOOTPRINT_TTL) obj_u64(&d->o, "extend_to", u32(r));
        footprint_details(d, c->t, 1);
        obj_raw(&d->o, "contract_code_hash", "null");
        return;
    case OP_INVOKE_HOST_FUNCTION:
        invoke_host_function(d, r, c);
        return;
    }
    python_rules();  /* unknown types */
}

/* ------------------------------------------------------------------------------------------ */
/* rows                                                                                       */

static Buf scratch;  /* the details' values, reused */

/* The details column of one operation: written here, or (cell_jump) by the Python rules. */
static void
put_details(Col *col, const Led *L, const Tx *t, uint32_t i, uint32_t type, Rd body, const Ctx *c, PyObject *hooks)
{
    jmp_buf here;
    Buf *out = col_text(col);
    Py_ssize_t mark = out->len;
    cell_jump = &here;
    if (setjmp(here) == 0) {
        Details d;
        d.asset_id_hook = PyTuple_GET_ITEM(hooks, 1);
        scratch.len = 0;
        obj_init(&d.o, &scratch);
        details(&d, &body, type, c);
        add_sponsor(&d, c);
        obj_write(&d.o, out);
        cell_jump = NULL;
        col_end(col);
        return;
    }
    cell_jump = NULL;
    out->len = mark;
    PyObject *text = call_hook(PyTuple_GET_ITEM(hooks, 0),
                               Py_BuildValue("(nIII)", L->position, (unsigned)t->index, i, type));
    Py_ssize_t n;
    const char *s = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (s == NULL) {
        Py_DECREF(text);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "the details hook must return str");
        fail();
    }
    buf_put(out, s, n);
    Py_DECREF(text);
    col_end(col);
}

static void
put_codes(Col *code_col, Col *trace_col, const Tx *t, const Led *L, uint32_t i)
{
    if (i >= t->nresults) {
        col_str(code_col, "", 0);
        col_str(trace_col, "", 0);
        return;
    }
    Rd r = rd_span(L->p, t->res[i], t->res[i + 1]);
    int32_t code = i32(&r);
    put_enum_name(col_text(code_col), N_OP_RESULT_CODE, code);
    col_end(code_col);
    if (code == 0) {
        uint32_t tr = u32(&r);
        int32_t inner = i32(&r);
        if (tr >= NNAMES - N_OP_INNER_CODE) decline("operation type");
        put_enum_name(col_text(trace_col), N_OP_INNER_CODE + (int)tr, inner);
    }
    col_end(trace_col);
}

/* Hooks: (details(position, tx index, op index, type) -> str, asset_id(code, issuer, type) -> int,
   sac_columns(name, contract id, passphrase) -> asset columns, native columns, no-asset columns, cache). */
void
build_operations(Table *tb, const Led *L)
{
    Col *c = tb->cols;
    uint32_t seq = L->head->sequence;
    SacAssets assets = {PyTuple_GET_ITEM(tb->hooks, 5), PyTuple_GET_ITEM(tb->hooks, 2), PyTuple_GET_ITEM(L->network, 2),
                        PyTuple_GET_ITEM(tb->hooks, 3), PyTuple_GET_ITEM(tb->hooks, 4)};
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        read_meta(L, &t);
        int64_t tx_id = ((int64_t)seq << 32) | ((int64_t)(i + 1) << 12);
        int internal = L->head->protocol <= 12 && t.code == -11;  /* txINTERNAL_ERROR: no operation changes */
        for (uint32_t k = 0; k < t.nops; k++) {
            Rd r = rd_span(L->p, t.op[k], t.op[k + 1]);
            Ctx ctx = {L, &t, k, t.source, 0, 0, 0, &assets};
            if (u32(&r)) read_muxed(&r, &ctx.source);
            uint32_t type = u32(&r);
            if (!internal && k < t.nopmeta) {
                ctx.has_group = 1;
                ctx.group = t.opmeta[k].changes;
                ctx.group_end = t.opmeta[k].changes_end;
            }
            col_i64(&c[0], tx_id | (k + 1));
            col_i64(&c[1], tx_id);
            put_strkey(col_text(&c[2]), VB_ACCOUNT, ctx.source.key, 32);
            col_end(&c[2]);
            if (ctx.source.muxed) {
                put_muxed_strkey(col_text(&c[3]), ctx.source.key, ctx.source.id);
                col_end(&c[3]);
            } else {
                col_null(&c[3]);
            }
            col_i32(&c[4], (int32_t)type);
            put_enum_name(col_text(&c[5]), N_OP_TYPE, type);
            col_end(&c[5]);
            put_details(&c[6], L, &t, k, type, r, &ctx, tb->hooks);
            col_i64(&c[7], L->closed_at_us);
            put_codes(&c[8], &c[9], &t, L, k);
            col_u32(&c[10], seq);
        }
    }
}
