/*
 * transfers.c: the ``token_transfers`` table (cdp_ray.processors.token_transfers) from meta v4's unified
 * events, checked against the balance changes of each transaction's ledger entry changes as the Python
 * rules check them. Older meta (whose events the Python rules derive) and anything malformed decline.
 */
#include "native.h"

const ColSpec token_transfers_cols[] = {
    {"transaction_hash", C_STR}, {"transaction_id", C_I64}, {"operation_id", C_I64}, {"event_topic", C_STR},
    {"from", C_STR}, {"to", C_STR}, {"asset", C_STR}, {"asset_type", C_STR}, {"asset_code", C_STR},
    {"asset_issuer", C_STR}, {"amount", C_F64}, {"amount_raw", C_STR}, {"contract_id", C_STR},
    {"ledger_sequence", C_U32}, {"closed_at", C_TIME}, {"to_muxed", C_STR}, {"to_muxed_id", C_STR},
    {"event_index", C_I32},
};
const int token_transfers_ncols = sizeof token_transfers_cols / sizeof token_transfers_cols[0];

enum { TOPIC_FEE, TOPIC_TRANSFER, TOPIC_MINT, TOPIC_BURN, TOPIC_CLAWBACK };
static const char *TOPICS[] = {"fee", "transfer", "mint", "burn", "clawback"};
static const uint32_t EXPECTED_TOPICS[] = {2, 4, 3, 3, 3};

enum { SCV_U64 = 5, SCV_I128 = 10, SCV_BYTES = 13, SCV_STRING = 14, SCV_SYMBOL = 15, SCV_MAP = 17 };

/* One row, kept until the ledger's rows are ordered and its transactions verified. */
typedef struct {
    uint32_t tx;            /* 0-based */
    uint32_t op;            /* 1-based, 0 for fee rows */
    int topic;
    int has_from, has_to;
    ScAddress from, to;
    __int128 amount;
    PyObject *asset;        /* (asset, asset_type, asset_code, asset_issuer), borrowed from the cache */
    const u8 *contract;     /* 32 bytes */
    int muxed;              /* to_muxed / to_muxed_id: the recipient's key and id */
    u8 muxed_key[32];
    uint64_t muxed_id;
} Row;

typedef struct {
    Row *rows;
    Py_ssize_t n, cap;
} Rows;

static Row *
add_row(Rows *w)
{
    if (w->n == w->cap) {
        Py_ssize_t cap = w->cap ? 2 * w->cap : 64;
        Row *more = PyMem_Realloc(w->rows, cap * sizeof(Row));
        if (more == NULL) {
            PyErr_NoMemory();
            fail();
        }
        w->rows = more;
        w->cap = cap;
    }
    Row *r = &w->rows[w->n++];
    memset(r, 0, sizeof *r);
    return r;
}

/* SEP-41 map data {amount, to_muxed_id} (token_transfers._amount_and_muxed): 0 when it is not one. */
static int
amount_and_muxed(Rd d, __int128 *amount, int *has_muxed, uint64_t *muxed_id)
{
    u32(&d);  /* SCV_MAP */
    if (!u32(&d)) return 0;
    int has_amount = 0;
    uint32_t n = count(&d, UINT32_MAX, 8), len;
    *has_muxed = 0;
    for (uint32_t i = 0; i < n; i++) {
        Py_ssize_t at = d.pos;
        if (u32(&d) != SCV_SYMBOL) return 0;
        const u8 *key = var_bytes(&d, 32, &len);
        (void)at;
        Py_ssize_t val = d.pos;
        uint32_t type = u32(&d);
        if (len == 6 && memcmp(key, "amount", 6) == 0) {
            if (type != SCV_I128) return 0;
            *amount = read_i128(&d);
            has_amount = 1;
        } else if (len == 11 && memcmp(key, "to_muxed_id", 11) == 0) {
            if (type == SCV_U64) {
                *muxed_id = u64(&d);
            } else if (type == SCV_BYTES || type == SCV_STRING) {
                *muxed_id = 0;  /* a hash / text memo: stellar-etl's GetId() reads 0 */
                d.pos = val;
                skip_value(&d, tid.scval);
            } else {
                return 0;
            }
            *has_muxed = 1;
        } else {
            d.pos = val;
            skip_value(&d, tid.scval);
        }
    }
    return has_amount;
}

/* ------------------------------------------------------------------------------------------ */
/* verification: the events against the balance changes (token_transfers._verify_transaction) */

#define KEY_MAX 128

typedef struct {
    u8 key[KEY_MAX];
    int len;
    int used;
    __int128 sum;
} Delta;

typedef struct {
    Delta *slots;
    Py_ssize_t size, used;
} Deltas;

static uint64_t
hash_key(const u8 *k, int n)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return h;
}

static void
deltas_clear(Deltas *d)
{
    if (d->used)
        memset(d->slots, 0, d->size * sizeof(Delta));
    d->used = 0;
}

static void deltas_add(Deltas *d, const u8 *key, int n, __int128 amount);

static void
deltas_grow(Deltas *d)
{
    Deltas old = *d;
    Py_ssize_t size = old.size ? old.size * 2 : 64;
    d->slots = PyMem_Calloc(size, sizeof(Delta));
    if (d->slots == NULL) {
        d->slots = old.slots;
        PyErr_NoMemory();
        fail();
    }
    d->size = size;
    d->used = 0;
    for (Py_ssize_t i = 0; i < old.size; i++)
        if (old.slots[i].used) deltas_add(d, old.slots[i].key, old.slots[i].len, old.slots[i].sum);
    PyMem_Free(old.slots);
}

static void
deltas_add(Deltas *d, const u8 *key, int n, __int128 amount)
{
    if (2 * (d->used + 1) > d->size) deltas_grow(d);
    Py_ssize_t i = (Py_ssize_t)(hash_key(key, n) & (uint64_t)(d->size - 1));
    while (d->slots[i].used && (d->slots[i].len != n || memcmp(d->slots[i].key, key, n) != 0))
        i = (i + 1) & (d->size - 1);
    Delta *s = &d->slots[i];
    if (!s->used) {
        s->used = 1;
        s->len = n;
        memcpy(s->key, key, n);
        s->sum = 0;
        d->used++;
    }
    if (__builtin_add_overflow(s->sum, amount, &s->sum)) decline("balance sum beyond 128 bits");
}

/* The key of a holder's balance of an asset: the holder's strkey version byte and payload, then the
   canonical asset text ("native" or "CODE:ISSUER"). */
static int
holder_key(u8 *key, unsigned version, const u8 *payload, Py_ssize_t n)
{
    key[0] = (u8)version;
    memcpy(key + 1, payload, n);
    key[1 + n] = '|';
    return (int)(2 + n);
}

static int
asset_key_text(u8 *key, int at, const char *text, Py_ssize_t n)
{
    if (at + n > KEY_MAX) decline("asset key");
    memcpy(key + at, text, n);
    return (int)(at + n);
}

/* The canonical text of an Asset / TrustLineAsset XDR (NULL: an account's lumens), as
   token_transfers._asset_xdr_canonical gives it. */
static int
asset_key_xdr(u8 *key, int at, const u8 *asset, Py_ssize_t len)
{
    if (asset == NULL || len < 4 || be32(asset) == 0)
        return asset_key_text(key, at, "native", 6);
    uint32_t type = be32(asset);
    Py_ssize_t size = type == 1 ? 4 : 12;
    if ((type != 1 && type != 2) || len < 4 + size + 36) decline("asset type");
    const u8 *code = asset + 4;
    Py_ssize_t n = size;
    while (n > 0 && code[n - 1] == 0) n--;
    if (!utf8_valid(code, n)) decline("asset code is not UTF-8");  /* the Python rules replace it */
    Buf b = {0};
    buf_put(&b, code, n);
    buf_byte(&b, ':');
    put_strkey(&b, VB_ACCOUNT, asset + 4 + size + 4, 32);
    if (at + b.len > KEY_MAX) {
        buf_free(&b);
        decline("asset key");
    }
    memcpy(key + at, b.p, b.len);
    at += (int)b.len;
    buf_free(&b);
    return at;
}

/* Pairing of a change group's entries (as Codec.balance_changes pairs them): the last STATE/RESTORED. */
typedef struct {
    Deltas *deltas;
    XdrEntry prev;
    int have_prev;
} Pairing;

static void
contribute(Deltas *d, const XdrEntry *pre, const XdrEntry *post)
{
    const XdrEntry *id = post != NULL ? post : pre;
    if (pre != NULL && pre->nbal == 0)
        return;
    if (pre != NULL && post != NULL && pre->type != post->type) decline("an update changes the entry's type");
    if (id->pool_share)
        return;
    static const unsigned versions[] = {VB_ACCOUNT, VB_ACCOUNT, 0, 0, VB_BALANCE, VB_POOL};
    for (int k = 0; k < id->nbal; k++) {
        int64_t after = post != NULL ? post->amount[k] : 0, before = pre != NULL ? pre->amount[k] : 0;
        if (after == before)
            continue;
        u8 key[KEY_MAX];
        int n = holder_key(key, versions[id->type], id->holder, id->holder_len);
        n = asset_key_xdr(key, n, id->asset[k], id->asset_len[k]);
        deltas_add(d, key, n, (__int128)after - before);
    }
}

static int
pair_each(void *ctx, int change, const XdrEntry *e, const u8 *k, Py_ssize_t klen)
{
    Pairing *p = ctx;
    switch (change) {
    case 0:  /* CREATED */
    case 4:  /* RESTORED */
        if (e->nbal) contribute(p->deltas, NULL, e);
        p->have_prev = change == 4;
        if (p->have_prev) p->prev = *e;
        return 0;
    case 3:  /* STATE */
        p->prev = *e;
        p->have_prev = 1;
        return 0;
    case 1:  /* UPDATED */
    case 2:  /* REMOVED */
        if (!p->have_prev) decline("an update or removal without the entry's state");
        contribute(p->deltas, &p->prev, change == 1 ? e : NULL);
        p->have_prev = 0;
        return 0;
    }
    decline("ledger entry change type");
}

static void
group_deltas(const Led *L, uint32_t start, uint32_t end, Deltas *d)
{
    if (end <= start) return;
    Pairing p = {d};
    p.have_prev = 0;
    if (xdr_api->changes(codec, L->p + start, end - start, pair_each, &p) < 0) {
        PyErr_Clear();
        decline("ledger entry changes the codec rejects");
    }
}

/* The asset text of a row's asset column ("" skipped: a token that is no Stellar asset). */
static int
row_asset_key(u8 *key, int at, PyObject *asset)
{
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(asset, 0), &n);
    if (text == NULL) fail();
    if (n == 0) return -1;
    if (n == 6 && memcmp(text, "native", 6) == 0) return asset_key_text(key, at, text, n);
    const char *colon = memchr(text, ':', n);
    if (colon == NULL) decline("asset text");
    return asset_key_text(key, at, colon + 1, n - (colon + 1 - text));
}

static void
event_delta(Deltas *d, const ScAddress *a, PyObject *asset, __int128 amount)
{
    if (a->version == VB_CONTRACT) return;  /* contract balances live in contract data */
    u8 key[KEY_MAX];
    int n = holder_key(key, a->version, a->payload, a->len);
    n = row_asset_key(key, n, asset);
    if (n >= 0) deltas_add(d, key, n, amount);
}

static void
verify(const Led *L, const Tx *t, const Row *rows, Py_ssize_t nrows, Deltas *d)
{
    deltas_clear(d);
    const LedgerIndexTx *x = t->x;
    group_deltas(L, x->fee, x->fee_end, d);
    group_deltas(L, t->before, t->before_end, d);
    for (uint32_t k = 0; k < t->nopmeta; k++)
        group_deltas(L, t->opmeta[k].changes, t->opmeta[k].changes_end, d);
    group_deltas(L, t->after, t->after_end, d);
    group_deltas(L, x->post, x->post_end, d);
    for (Py_ssize_t i = 0; i < nrows; i++) {
        const Row *r = &rows[i];
        if (r->has_from) event_delta(d, &r->from, r->asset, r->amount);   /* the sender's balance fell */
        if (r->has_to) event_delta(d, &r->to, r->asset, -r->amount);
    }
    for (Py_ssize_t i = 0; i < d->size; i++)
        if (d->slots[i].used && d->slots[i].sum != 0) decline("token transfers do not match the balance changes");
}

/* ------------------------------------------------------------------------------------------ */
/* rows                                                                                       */

static void
fee_rows(const Led *L, const Tx *t, Rows *w, PyObject *native_cols)
{
    Rd r = {L->p + t->events, 0, L->len - t->events};
    uint32_t n = count(&r, UINT32_MAX, 4), fees = 0;
    for (uint32_t i = 0; i < n; i++) {
        Summary s;
        u32(&r);  /* stage */
        summarize(&r, &s);
        if (s.type != 1 || s.contract == NULL) decline("malformed transaction event");
        if (!symbol_is(&s, "fee")) continue;
        if (!s.has_amount || s.ntopics != 2 || !s.has_addr[0] || memcmp(s.contract, L->native_sac, 32) != 0)
            decline("malformed fee event");
        Row *row = add_row(w);
        row->tx = (uint32_t)t->index;
        row->topic = TOPIC_FEE;
        row->has_from = 1;
        row->from = s.addr[0];
        row->amount = s.amount;
        row->asset = native_cols;
        row->contract = L->native_sac;
        fees++;
    }
    if (fees < 1 || fees > 2) decline("not 1 or 2 fee events");
}

static void
operation_rows(const Led *L, const Tx *t, Rows *w, SacAssets *a)
{
    if (!t->successful) return;
    for (uint32_t k = 0; k < t->nopmeta; k++) {
        if (t->opmeta[k].events == 0) continue;
        Rd r = {L->p + t->opmeta[k].events, 0, L->len - t->opmeta[k].events};
        uint32_t n = count(&r, UINT32_MAX, 4);
        for (uint32_t i = 0; i < n; i++) {
            Summary s;
            summarize(&r, &s);
            int topic = -1;
            for (int f = TOPIC_TRANSFER; f <= TOPIC_CLAWBACK; f++)
                if (symbol_is(&s, TOPICS[f])) topic = f;
            if (s.type != 1 || s.contract == NULL || s.ntopics < 2 || topic < 0) continue;
            __int128 amount = s.amount;
            int has_muxed = 0;
            uint64_t muxed_id = 0;
            if (s.data_type == SCV_MAP) {
                if (!amount_and_muxed(s.data, &amount, &has_muxed, &muxed_id)) continue;
            } else if (!s.has_amount) {
                continue;
            }
            int has_from = 0, has_to = 0;
            ScAddress from, to;
            if (topic == TOPIC_TRANSFER) {
                if (s.ntopics < 3 || !s.has_addr[0] || !s.has_addr[1]) continue;
                has_from = has_to = 1;
                from = s.addr[0];
                to = s.addr[1];
            } else if (!s.has_addr[0]) {
                continue;
            } else if (topic == TOPIC_MINT) {
                has_to = 1;
                to = s.addr[0];
            } else {
                has_from = 1;
                from = s.addr[0];
            }
            Row *row = add_row(w);
            row->tx = (uint32_t)t->index;
            row->op = k + 1;
            row->topic = topic;
            row->has_from = has_from;
            row->has_to = has_to;
            if (has_from) row->from = from;
            if (has_to) row->to = to;
            row->amount = amount;
            row->contract = s.contract;
            if (has_muxed && has_to && to.type == 0) {  /* the recipient is an account */
                row->muxed = 1;
                memcpy(row->muxed_key, to.payload, 32);
                row->muxed_id = muxed_id;
            }
            row->asset = a->none;
            if (s.ntopics == EXPECTED_TOPICS[topic] && s.name != NULL && s.name_len > 0)
                row->asset = sac_columns(a, s.contract, s.name, s.name_len);
            if (row->asset == NULL) row->asset = a->none;
        }
    }
}

static void
put_optional(Col *c, PyObject *text)
{
    if (text == Py_None) {
        col_null(c);
        return;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) fail();
    col_str(c, s, n);
}

static void
emit(Table *tb, const Led *L, const Row *r, int32_t index)
{
    Col *c = tb->cols;
    const LedgerIndexTx *x = &L->tx[r->tx];
    Rd res = rd_span(L->p, x->result, x->result_end);
    put_hex(col_text(&c[0]), take(&res, 32), 32);
    col_end(&c[0]);
    int64_t tx_id = ((int64_t)L->head->sequence << 32) | ((int64_t)(r->tx + 1) << 12);
    col_i64(&c[1], tx_id);
    if (r->op)
        col_i64(&c[2], tx_id | r->op);
    else
        col_null(&c[2]);
    col_cstr(&c[3], TOPICS[r->topic]);
    if (r->has_from) put_strkey(col_text(&c[4]), r->from.version, r->from.payload, r->from.len), col_end(&c[4]);
    else col_null(&c[4]);
    if (r->has_to) put_strkey(col_text(&c[5]), r->to.version, r->to.payload, r->to.len), col_end(&c[5]);
    else col_null(&c[5]);
    for (int k = 0; k < 4; k++)
        put_optional(&c[6 + k], PyTuple_GET_ITEM(r->asset, k));
    col_f64(&c[10], (double)r->amount * 0.0000001);
    put_i128(col_text(&c[11]), r->amount);
    col_end(&c[11]);
    put_strkey(col_text(&c[12]), VB_CONTRACT, r->contract, 32);
    col_end(&c[12]);
    col_u32(&c[13], L->head->sequence);
    col_i64(&c[14], L->closed_at_us);
    if (r->muxed) {
        put_muxed_strkey(col_text(&c[15]), r->muxed_key, r->muxed_id);
        col_end(&c[15]);
        put_u64(col_text(&c[16]), r->muxed_id);
        col_end(&c[16]);
    } else {
        col_null(&c[15]);
        col_null(&c[16]);
    }
    col_i32(&c[17], index);
}

/* Options (source, verify); hooks (sac_columns, native columns, no-asset columns). */
void
build_token_transfers(Table *tb, const Led *L)
{
    const char *source = PyUnicode_AsUTF8(PyTuple_GET_ITEM(tb->options, 0));
    if (source == NULL) fail();
    if (strcmp(source, "derived") == 0) decline("derived events are the Python rules'");
    int check = PyObject_IsTrue(PyTuple_GET_ITEM(tb->options, 1));
    static SacAssets a;
    static Rows fees, ops;  /* reused: emptied per ledger */
    static Deltas deltas;
    a.sac_columns = PyTuple_GET_ITEM(tb->hooks, 0);
    a.native = PyTuple_GET_ITEM(tb->hooks, 1);
    a.none = PyTuple_GET_ITEM(tb->hooks, 2);
    a.cache = PyTuple_GET_ITEM(tb->hooks, 3);
    a.passphrase = PyTuple_GET_ITEM(L->network, 2);
    fees.n = ops.n = 0;
    int p23 = L->head->protocol >= 23;
    Py_ssize_t nrefunds = 0;
    /* fees: each transaction's charge first, its refund (when it has one) among the refunds */
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        read_meta(L, &t);
        if (t.meta_v != 4) decline("meta before v4: events derived by the Python rules");
        Py_ssize_t first = fees.n;
        fee_rows(L, &t, &fees, a.native);
        Py_ssize_t ofirst = ops.n;
        operation_rows(L, &t, &ops, &a);
        if (check) {
            /* verify against the transaction's rows: its fees and its operations' rows */
            Py_ssize_t nf = fees.n - first, no = ops.n - ofirst;
            Row *mine = PyMem_Malloc((nf + no + 1) * sizeof(Row));
            if (mine == NULL) {
                PyErr_NoMemory();
                fail();
            }
            memcpy(mine, fees.rows + first, nf * sizeof(Row));
            memcpy(mine + nf, ops.rows + ofirst, no * sizeof(Row));
            Guard *g = guard, inner;
            inner.failed = 0;
            inner.reason = NULL;
            guard = &inner;
            if (setjmp(inner.jump) == 0)
                verify(L, &t, mine, nf + no, &deltas);
            guard = g;
            PyMem_Free(mine);
            if (inner.failed) fail();
            if (inner.reason) decline(inner.reason);
        }
        if (fees.n - first == 2) {
            if (!p23) {
                *add_row(&ops) = fees.rows[first + 1];  /* before protocol 23: right after its operations' rows */
                fees.n--;
            } else {
                nrefunds++;
            }
        }
    }
    int32_t index = 0;
    /* the charges (each transaction's first fee row), the operations' rows, then (protocol 23+) refunds */
    for (Py_ssize_t i = 0; i < fees.n; i++)
        if (i == 0 || fees.rows[i].tx != fees.rows[i - 1].tx) emit(tb, L, &fees.rows[i], index++);
    for (Py_ssize_t i = 0; i < ops.n; i++)
        emit(tb, L, &ops.rows[i], index++);
    for (Py_ssize_t i = 1; i < fees.n; i++)
        if (fees.rows[i].tx == fees.rows[i - 1].tx) emit(tb, L, &fees.rows[i], index++);
    (void)nrefunds;
}
