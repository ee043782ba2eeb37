/* transactions.c: the ``transactions`` table (cdp_ray.processors.transactions), one row per transaction. */
#include "native.h"

const ColSpec transactions_cols[] = {
    {"transaction_hash", C_STR}, {"ledger_sequence", C_U32}, {"account", C_STR}, {"account_muxed", C_STR},
    {"account_sequence", C_I64}, {"max_fee", C_U32}, {"fee_charged", C_I64}, {"operation_count", C_I32},
    {"tx_envelope", C_STR}, {"tx_result", C_STR}, {"tx_meta", C_STR}, {"tx_fee_meta", C_STR},
    {"created_at", C_TIME}, {"memo_type", C_STR}, {"memo", C_STR}, {"time_bounds", C_STR}, {"successful", C_BOOL},
    {"id", C_I64}, {"fee_account", C_STR}, {"fee_account_muxed", C_STR}, {"inner_transaction_hash", C_STR},
    {"new_max_fee", C_I64}, {"ledger_bounds", C_STR}, {"min_account_sequence", C_I64},
    {"min_account_sequence_age", C_I64}, {"min_account_sequence_ledger_gap", C_I64}, {"extra_signers", C_STRS},
    {"closed_at", C_TIME}, {"resource_fee", C_I64}, {"soroban_resources_instructions", C_U32},
    {"soroban_resources_read_bytes", C_U32}, {"soroban_resources_disk_read_bytes", C_U32},
    {"soroban_resources_write_bytes", C_U32}, {"soroban_resources_archived_entries", C_U32S},
    {"transaction_result_code", C_STR}, {"inclusion_fee_bid", C_I64}, {"inclusion_fee_charged", C_I64},
    {"resource_fee_refund", C_I64}, {"non_refundable_resource_fee_charged", C_I64},
    {"refundable_resource_fee_charged", C_I64}, {"rent_fee_charged", C_I64}, {"tx_signers", C_STRS},
};
const int transactions_ncols = sizeof transactions_cols / sizeof transactions_cols[0];

enum {
    T_HASH, T_SEQ, T_ACCOUNT, T_ACCOUNT_MUXED, T_ACCOUNT_SEQ, T_MAX_FEE, T_FEE_CHARGED, T_OPS, T_ENVELOPE, T_RESULT,
    T_META, T_FEE_META, T_CREATED, T_MEMO_TYPE, T_MEMO, T_TIME_BOUNDS, T_SUCCESSFUL, T_ID, T_FEE_ACCOUNT,
    T_FEE_ACCOUNT_MUXED, T_INNER_HASH, T_NEW_MAX_FEE, T_LEDGER_BOUNDS, T_MIN_SEQ, T_MIN_AGE, T_MIN_GAP, T_EXTRA,
    T_CLOSED, T_RESOURCE_FEE, T_INSTRUCTIONS, T_READ, T_DISK_READ, T_WRITE, T_ARCHIVED, T_CODE, T_BID,
    T_INCLUSION_CHARGED, T_REFUND, T_NON_REFUNDABLE, T_REFUNDABLE, T_RENT, T_SIGNERS,
};

/* The last STATE and UPDATED balances of the account whose key is ``key`` (NULL matches nothing). */
typedef struct {
    const u8 *key;
    int64_t start, end;
} FeeScan;

static int
fee_each(void *ctx, int change, const XdrEntry *e, const u8 *k, Py_ssize_t klen)
{
    FeeScan *f = ctx;
    if (e == NULL || (change != 1 && change != 3) || e->type != 0 || f->key == NULL)
        return 0;  /* UPDATED, STATE of an account */
    if (memcmp(e->holder, f->key, 32) == 0) {
        if (change == 1)
            f->end = e->amount[0];
        else
            f->start = e->amount[0];
    }
    return 0;
}

static void
scan_fee(const Led *L, uint32_t start, uint32_t end, FeeScan *f)
{
    if (end <= start)
        return;  /* no such group */
    if (xdr_api->changes(codec, L->p + start, end - start, fee_each, f) < 0) {
        PyErr_Clear();
        decline("ledger entry changes the codec rejects");
    }
}

static int64_t
sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) decline("beyond 64 bits");
    return r;
}

/* The time bounds text: "[min,max)", "[min,)" when unbounded above. */
static void
put_bounds(Buf *b, uint64_t lo, uint64_t hi, int open)
{
    buf_byte(b, '[');
    put_u64(b, lo);
    buf_byte(b, ',');
    if (!open) put_u64(b, hi);
    buf_byte(b, ')');
}

/* A SignerKey's strkey: G, T, X, or P of the signed payload's XDR. */
static void
put_signer_key(Buf *b, Rd *r)
{
    Py_ssize_t start = r->pos;
    uint32_t type = u32(r), n;
    const u8 *key = take(r, 32);
    if (type == 3) {
        var_bytes(r, 64, &n);
        put_strkey(b, VB_SIGNED, r->p + start + 4, r->pos - start - 4);
        return;
    }
    static const unsigned versions[] = {VB_ACCOUNT, VB_PREAUTH, VB_HASHX};
    if (type > 2) decline("signer key type");
    put_strkey(b, versions[type], key, 32);
}

static void
put_signers(Col *c, Rd sigs)
{
    uint32_t n = u32(&sigs), len;
    for (uint32_t i = 0; i < n; i++) {
        take(&sigs, 4);
        const u8 *sig = var_bytes(&sigs, 64, &len);
        put_strkey(col_item_text(c), VB_ACCOUNT, sig, len);
        col_item_end(c);
    }
    col_end(c);
}

static void
put_memo(Col *type_col, Col *memo_col, Rd memo)
{
    uint32_t type = u32(&memo), n;
    put_enum_name(col_text(type_col), N_MEMO_TYPE, type);
    col_end(type_col);
    Buf *b = col_text(memo_col);
    if (type == 1) {
        const u8 *text = var_bytes(&memo, 28, &n);
        put_utf8_replace(b, text, n);
    } else if (type == 2) {
        put_u64(b, u64(&memo));
    } else if (type == 3 || type == 4) {
        put_b64(b, take(&memo, 32), 32);
    }
    col_end(memo_col);
}

/* The Soroban columns resource_fee .. rent_fee_charged, and the fee charged as stellar-etl reports it. */
static void
soroban_columns(const Led *L, Tx *t, Col *c, int64_t *fee_charged)
{
    read_meta(L, t);
    Rd d = t->soroban_data;
    uint32_t ext = u32(&d);
    Rd archived = {0};
    uint32_t narchived = 0;
    if (ext == 1) {
        narchived = count(&d, UINT32_MAX, 4);
        archived = (Rd){d.p + d.pos, 0, (Py_ssize_t)narchived * 4};
        take(&d, (Py_ssize_t)narchived * 4);
    } else if (ext != 0) {
        decline("soroban data ext");
    }
    for (int list = 0; list < 2; list++) {  /* footprint: readOnly, readWrite */
        uint32_t n = count(&d, UINT32_MAX, 4);
        for (uint32_t i = 0; i < n; i++) skip_value(&d, tid.ledger_key);
    }
    uint32_t instructions = u32(&d), disk_read = u32(&d), write = u32(&d);
    int64_t resource_fee = i64(&d);
    /* the fee source: the fee bump's, else the transaction's (a bare key for v0 never has Soroban data) */
    Muxed m = t->env_type == 5 ? t->fee_source : t->source;
    int64_t bid = t->env_type == 5 ? t->fee_bump_fee : (int64_t)t->fee;
    FeeScan f = {m.muxed ? NULL : m.key, 0, 0};
    scan_fee(L, t->x->fee, t->x->fee_end, &f);
    int64_t inclusion_charged = sub(sub(f.start, f.end), resource_fee);
    int64_t refund = 0, non_refundable = 0, refundable = 0, rent = 0;
    if (t->meta_v == 3 || t->meta_v == 4) {
        FeeScan a = {m.muxed ? NULL : m.key, 0, 0};
        scan_fee(L, t->after, t->after_end, &a);
        if (t->meta_v == 4) scan_fee(L, t->x->post, t->x->post_end, &a);
        refund = sub(a.end, a.start);
        if (t->soroban_meta) {
            Rd sm = {L->p + t->soroban_meta, 0, 32};
            if (u32(&sm) == 1) {
                u32(&sm);
                non_refundable = i64(&sm);
                refundable = i64(&sm);
                rent = i64(&sm);
            }
        }
    }
    if (L->head->protocol < 21 && t->env_type == 5)
        *fee_charged = sub(resource_fee, refund);  /* protocol 20 charged Soroban fee bumps wrongly */
    col_i64(&c[T_RESOURCE_FEE], resource_fee);
    col_u32(&c[T_INSTRUCTIONS], instructions);
    col_u32(&c[T_READ], disk_read);
    col_u32(&c[T_DISK_READ], disk_read);
    col_u32(&c[T_WRITE], write);
    if (narchived) {
        for (uint32_t i = 0; i < narchived; i++) col_item_u32(&c[T_ARCHIVED], u32(&archived));
        col_end(&c[T_ARCHIVED]);
    } else {
        col_null(&c[T_ARCHIVED]);
    }
    col_i64(&c[T_BID], sub(bid, resource_fee));
    col_i64(&c[T_INCLUSION_CHARGED], inclusion_charged);
    col_i64(&c[T_REFUND], refund);
    col_i64(&c[T_NON_REFUNDABLE], non_refundable);
    col_i64(&c[T_REFUNDABLE], refundable);
    col_i64(&c[T_RENT], rent);
}

static void
classic_columns(Col *c)
{
    for (int k = T_RESOURCE_FEE; k <= T_WRITE; k++)
        k == T_RESOURCE_FEE ? col_i64(&c[k], 0) : col_u32(&c[k], 0);
    col_null(&c[T_ARCHIVED]);
    for (int k = T_BID; k <= T_RENT; k++)
        col_i64(&c[k], 0);
}

static void
put_b64_span(Col *c, const Led *L, uint32_t start, uint32_t end, int include)
{
    if (!include) {
        col_null(c);
        return;
    }
    put_b64(col_text(c), L->p + start, end - start);
    col_end(c);
}

void
build_transactions(Table *tb, const Led *L)
{
    int include_xdr = PyObject_IsTrue(PyTuple_GET_ITEM(tb->options, 0));
    Col *c = tb->cols;
    uint32_t seq = L->head->sequence;
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        int64_t fee_charged = t.fee_charged;
        /* the Soroban columns come in the middle: built first into their columns, fee_charged after */
        if (t.soroban)
            soroban_columns(L, &t, c, &fee_charged);
        else
            classic_columns(c);
        put_hex(col_text(&c[T_HASH]), t.hash, 32);
        col_end(&c[T_HASH]);
        col_u32(&c[T_SEQ], seq);
        {
            Muxed m = t.source;
            put_strkey(col_text(&c[T_ACCOUNT]), VB_ACCOUNT, m.key, 32);
            col_end(&c[T_ACCOUNT]);
            if (m.muxed) {
                put_muxed_strkey(col_text(&c[T_ACCOUNT_MUXED]), m.key, m.id);
                col_end(&c[T_ACCOUNT_MUXED]);
            } else {
                col_null(&c[T_ACCOUNT_MUXED]);
            }
        }
        col_i64(&c[T_ACCOUNT_SEQ], t.seq);
        col_u32(&c[T_MAX_FEE], t.fee);
        col_i64(&c[T_FEE_CHARGED], fee_charged);
        col_i32(&c[T_OPS], (int32_t)t.nops);
        const LedgerIndexTx *x = t.x;
        put_b64_span(&c[T_ENVELOPE], L, x->env, x->env_end, include_xdr);
        put_b64_span(&c[T_RESULT], L, x->result + 32, x->result_end, include_xdr);
        put_b64_span(&c[T_META], L, x->meta, x->meta_end, include_xdr);
        put_b64_span(&c[T_FEE_META], L, x->fee, x->fee_end, include_xdr);
        col_i64(&c[T_CREATED], L->closed_at_us);
        put_memo(&c[T_MEMO_TYPE], &c[T_MEMO], t.memo);
        if (t.time_bounds) {
            uint64_t lo = be64(t.time_bounds), hi = be64(t.time_bounds + 8);
            put_bounds(col_text(&c[T_TIME_BOUNDS]), lo, hi, hi == 0);
        }
        col_end(&c[T_TIME_BOUNDS]);
        col_bool(&c[T_SUCCESSFUL], t.successful);
        col_i64(&c[T_ID], ((int64_t)seq << 32) | ((int64_t)(i + 1) << 12));
        if (t.env_type == 5) {
            Muxed m = t.fee_source;
            put_strkey(col_text(&c[T_FEE_ACCOUNT]), VB_ACCOUNT, m.key, 32);
            col_end(&c[T_FEE_ACCOUNT]);
            if (m.muxed) {
                put_muxed_strkey(col_text(&c[T_FEE_ACCOUNT_MUXED]), m.key, m.id);
                col_end(&c[T_FEE_ACCOUNT_MUXED]);
            } else {
                col_null(&c[T_FEE_ACCOUNT_MUXED]);
            }
            if (t.inner_hash != NULL) {
                put_hex(col_text(&c[T_INNER_HASH]), t.inner_hash, 32);
            } else {  /* no inner result: the inner transaction's hash, as transactions._inner_hash computes it */
                Buf payload = {0};
                buf_put(&payload, L->network_id, 32);
                buf_put(&payload, "\0\0\0\2", 4);  /* ENVELOPE_TYPE_TX */
                buf_put(&payload, t.inner_body, t.inner_body_end - t.inner_body);
                put_sha256_hex(col_text(&c[T_INNER_HASH]), (const u8 *)payload.p, payload.len);
                buf_free(&payload);
            }
            col_end(&c[T_INNER_HASH]);
            col_i64(&c[T_NEW_MAX_FEE], t.fee_bump_fee);
        } else {
            col_null(&c[T_FEE_ACCOUNT]);
            col_null(&c[T_FEE_ACCOUNT_MUXED]);
            col_null(&c[T_INNER_HASH]);
            col_null(&c[T_NEW_MAX_FEE]);
        }
        if (t.cond_type == 2) {
            if (t.ledger_bounds)
                put_bounds(col_text(&c[T_LEDGER_BOUNDS]), be32(t.ledger_bounds), be32(t.ledger_bounds + 4), 0);
            col_end(&c[T_LEDGER_BOUNDS]);
            if (t.has_min_seq)
                col_i64(&c[T_MIN_SEQ], t.min_seq);
            else
                col_null(&c[T_MIN_SEQ]);
            if (t.min_seq_age > INT64_MAX) decline("min_seq_age beyond int64");
            col_i64(&c[T_MIN_AGE], (int64_t)t.min_seq_age);
            col_i64(&c[T_MIN_GAP], t.min_seq_gap);
            Rd e = t.extra_signers;
            uint32_t n = u32(&e);
            for (uint32_t k = 0; k < n; k++) {
                put_signer_key(col_item_text(&c[T_EXTRA]), &e);
                col_item_end(&c[T_EXTRA]);
            }
            if (n)
                col_end(&c[T_EXTRA]);
            else
                col_null(&c[T_EXTRA]);
        } else {
            col_end(&c[T_LEDGER_BOUNDS]);
            col_null(&c[T_MIN_SEQ]);
            col_null(&c[T_MIN_AGE]);
            col_null(&c[T_MIN_GAP]);
            col_null(&c[T_EXTRA]);
        }
        col_i64(&c[T_CLOSED], L->closed_at_us);
        put_enum_name(col_text(&c[T_CODE]), N_TX_RESULT_CODE, t.code);
        col_end(&c[T_CODE]);
        put_signers(&c[T_SIGNERS], t.env_type == 5 ? t.outer_sigs : t.sigs);
    }
}

/* Size the four base64 columns for the ledger's transactions (the XDR columns are most of the table). */
void
reserve_transactions(Table *tb, const Led *L)
{
    if (!PyObject_IsTrue(PyTuple_GET_ITEM(tb->options, 0)))
        return;
    Py_ssize_t n[4] = {0, 0, 0, 0};
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        const LedgerIndexTx *x = &L->tx[i];
        n[0] += x->env_end - x->env;
        n[1] += x->result_end - x->result;
        n[2] += x->meta_end - x->meta;
        n[3] += x->fee_end - x->fee;
    }
    for (int k = 0; k < 4; k++)
        tb->cols[T_ENVELOPE + k].plan += (n[k] + 2) / 3 * 4 + 4 * L->head->ntx;
}
