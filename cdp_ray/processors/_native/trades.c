/*
 * trades.c: the ``trades`` table (cdp_ray.processors.trades), one row per offer or liquidity pool claimed
 * by a successful offer or path payment operation. Prices come from the claimed offer's state before the
 * operation, pools' rounding slippage from the ``pool_payout`` hook (Go's arithmetic on big integers).
 * Where the Python rules skip an operation (TradeError, with a warning) the ledger is left to them whole.
 */
#include "native.h"

const ColSpec trades_cols[] = {
    {"history_operation_id", C_I64}, {"order", C_I32}, {"ledger_closed_at", C_TIME}, {"ledger_sequence", C_U32},
    {"selling_account_address", C_STR}, {"selling_asset_code", C_STR}, {"selling_asset_issuer", C_STR},
    {"selling_asset_type", C_STR}, {"selling_asset_id", C_I64}, {"selling_amount", C_F64},
    {"buying_account_address", C_STR}, {"buying_asset_code", C_STR}, {"buying_asset_issuer", C_STR},
    {"buying_asset_type", C_STR}, {"buying_asset_id", C_I64}, {"buying_amount", C_F64}, {"price_n", C_I64},
    {"price_d", C_I64}, {"selling_offer_id", C_I64}, {"buying_offer_id", C_I64},
    {"selling_liquidity_pool_id", C_STR}, {"liquidity_pool_fee", C_I64}, {"trade_type", C_I32},
    {"rounding_slippage", C_I64}, {"seller_is_exact", C_BOOL}, {"selling_liquidity_pool_id_strkey", C_STR},
};
const int trades_ncols = sizeof trades_cols / sizeof trades_cols[0];

enum { OP_PATH_RECEIVE = 2, OP_MANAGE_SELL = 3, OP_PASSIVE_SELL = 4, OP_MANAGE_BUY = 12, OP_PATH_SEND = 13 };

/* The pre-state of the last change (in ledger-key order) of the offer (seller, id) or pool ``id``. */
static const XdrEntry *
latest_pre(int pool, const u8 *seller, int64_t offer_id, const u8 *pool_id)
{
    const XdrEntry *found = NULL;
    for (int i = 0; i < npairs; i++) {
        const XdrEntry *pre = pairs[i].pre;
        if (pre == NULL || pre->type != (pool ? 5 : 2)) continue;
        Rd r = {pre->data, 0, pre->entry + pre->entry_len - pre->data};
        if (pool) {
            if (memcmp(take(&r, 32), pool_id, 32) == 0) found = pre;
        } else if (memcmp(read_account_id(&r), seller, 32) == 0 && i64(&r) == offer_id) {
            found = pre;
        }
    }
    return found;
}

static void
asset_columns(Col *c, const Asset *a, PyObject *hook)
{
    if (a->type == 0) {
        col_str(&c[0], "", 0);
        col_str(&c[1], "", 0);
    } else {
        put_utf8_replace(col_text(&c[0]), a->code, a->code_len);
        col_end(&c[0]);
        put_strkey(col_text(&c[1]), VB_ACCOUNT, a->issuer, 32);
        col_end(&c[1]);
    }
    col_cstr(&c[2], ASSET_TYPES[a->type]);
    col_i64(&c[3], a->type == 0 ? -5706705804583548011LL : asset_id_of(a, hook));
}

/* trades._rounding_slippage through the pool_payout hook. */
static int64_t
slippage(uint32_t op_type, const u8 *sold_xdr, Py_ssize_t sold_len, int64_t amount_sold, int64_t amount_bought,
         const XdrEntry *pool, PyObject *hook)
{
    Rd r = {pool->data, 0, pool->entry + pool->entry_len - pool->data};
    take(&r, 32);
    if (u32(&r) != 0) decline("liquidity pool type");
    Py_ssize_t at = r.pos;
    Asset a, b;
    read_asset(&r, &a);
    int same = r.pos - at == sold_len && memcmp(r.p + at, sold_xdr, sold_len) == 0;
    read_asset(&r, &b);
    int32_t fee = i32(&r);
    int64_t ra = i64(&r), rb = i64(&r), disbursed = ra, deposited = rb;
    if (!same) {
        disbursed = rb;
        deposited = ra;
    }
    if (op_type != OP_PATH_RECEIVE && op_type != OP_PATH_SEND) decline("a pool trade of an offer operation");
    int64_t received = op_type == OP_PATH_RECEIVE ? amount_sold : amount_bought;
    PyObject *out = call_hook(hook, Py_BuildValue("(LLLi)", (long long)deposited, (long long)disbursed,
                                                  (long long)received, (int)fee));
    long long slip = 0;
    int ok = 0;
    if (!PyTuple_Check(out) || PyTuple_GET_SIZE(out) != 3 ||
        ((slip = PyLong_AsLongLong(PyTuple_GET_ITEM(out, 1))) == -1 && PyErr_Occurred()) ||
        (ok = PyObject_IsTrue(PyTuple_GET_ITEM(out, 2))) < 0) {
        Py_DECREF(out);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "pool_payout must give (payout, slippage, ok)");
        fail();
    }
    Py_DECREF(out);
    if (!ok) return op_type == OP_PATH_RECEIVE ? INT64_MAX : INT64_MIN;
    return slip;
}

/* Hooks: (asset_id(code, issuer, type) -> int, pool_payout(reserve_a, reserve_b, received, fee) ->
   (payout, slippage_bips, ok)). */
void
build_trades(Table *tb, const Led *L)
{
    Col *c = tb->cols;
    PyObject *asset_hook = PyTuple_GET_ITEM(tb->hooks, 0), *payout = PyTuple_GET_ITEM(tb->hooks, 1);
    uint32_t seq = L->head->sequence;
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        if (!t.successful) continue;
        read_meta(L, &t);
        for (uint32_t k = 0; k < t.nops; k++) {
            Rd body = rd_span(L->p, t.op[k], t.op[k + 1]);
            Muxed source = t.source;
            if (u32(&body)) read_muxed(&body, &source);
            uint32_t type = u32(&body);
            if (type != OP_PATH_RECEIVE && type != OP_MANAGE_SELL && type != OP_PASSIVE_SELL &&
                type != OP_MANAGE_BUY && type != OP_PATH_SEND)
                continue;
            if (k >= t.nresults) decline("no result for a trading operation");
            Rd r = rd_span(L->p, t.res[k], t.res[k + 1]);
            if (i32(&r) != 0) decline("no inner result");
            uint32_t tr = u32(&r);
            int path = type == OP_PATH_RECEIVE || type == OP_PATH_SEND;
            if (path ? tr != type : !(tr == type || (type == OP_PASSIVE_SELL && tr == OP_MANAGE_SELL)))
                decline("result of another operation type");
            if (i32(&r) != 0) decline("a successful transaction's trade without a successful result");
            int64_t op_id = ((int64_t)seq << 32) | ((int64_t)(i + 1) << 12) | (k + 1);
            uint32_t nclaims = count(&r, UINT32_MAX, 4);
            if (nclaims && read_pairs(L, &t, k) < 0) decline("too many changes");
            Rd claims = r;
            /* the taker's offer (ManageOfferSuccessResult.offer): its id, else the operation's synthetic id */
            int64_t buying_offer_id = op_id | ((int64_t)1 << 62);
            if (!path) {
                ClaimAtom skipped;
                for (uint32_t n = 0; n < nclaims; n++)  /* step over the claims to the offer */
                    read_claim_atom(&r, &skipped);
                uint32_t effect = u32(&r);
                if (effect == 0 || effect == 1) {
                    read_account_id(&r);
                    buying_offer_id = i64(&r);
                }
            }
            for (uint32_t order = 0; order < nclaims; order++) {
                ClaimAtom claim;
                read_claim_atom(&claims, &claim);
                const u8 *seller = claim.seller, *pool = claim.pool;
                int64_t offer_id = claim.offer_id, sold = claim.amount_sold, bought = claim.amount_bought;
                if (sold < 0 || bought < 0) decline("negative claim amount");
                if (sold == 0 && bought == 0) continue;
                const XdrEntry *pre = latest_pre(pool != NULL, seller, offer_id, pool);
                if (pre == NULL) decline("no change for the claimed offer or pool");
                int64_t price_n, price_d, fee = 0, slip = 0;
                if (pool) {
                    price_n = bought;
                    price_d = sold;
                    Rd p = {pre->data, 0, pre->entry + pre->entry_len - pre->data};
                    take(&p, 32);
                    u32(&p);
                    Asset x;
                    read_asset(&p, &x);
                    read_asset(&p, &x);
                    fee = i32(&p);
                    slip = slippage(type, claim.sold_xdr, claim.sold_len, sold, bought, pre, payout);
                } else {
                    Rd o = {pre->data, 0, pre->entry + pre->entry_len - pre->data};
                    read_account_id(&o);
                    take(&o, 8);
                    Asset x;
                    read_asset(&o, &x);
                    read_asset(&o, &x);
                    take(&o, 8);
                    price_n = i32(&o);
                    price_d = i32(&o);
                }
                col_i64(&c[0], op_id);
                col_i32(&c[1], (int32_t)order);
                col_i64(&c[2], L->closed_at_us);
                col_u32(&c[3], seq);
                if (seller) put_strkey(col_text(&c[4]), VB_ACCOUNT, seller, 32);
                col_end(&c[4]);
                asset_columns(&c[5], &claim.sold, asset_hook);
                col_f64(&c[9], stroops_real(sold));
                put_strkey(col_text(&c[10]), VB_ACCOUNT, source.key, 32);
                col_end(&c[10]);
                asset_columns(&c[11], &claim.bought, asset_hook);
                col_f64(&c[15], stroops_real(bought));
                col_i64(&c[16], price_n);
                col_i64(&c[17], price_d);
                if (pool) col_null(&c[18]);
                else col_i64(&c[18], offer_id);
                col_i64(&c[19], buying_offer_id);
                if (pool) {
                    put_hex(col_text(&c[20]), pool, 32);
                    col_end(&c[20]);
                    col_i64(&c[21], fee);
                } else {
                    col_null(&c[20]);
                    col_null(&c[21]);
                }
                col_i32(&c[22], pool ? 2 : 1);
                if (pool) col_i64(&c[23], slip);
                else col_null(&c[23]);
                if (path) col_bool(&c[24], type == OP_PATH_RECEIVE);
                else col_null(&c[24]);
                if (pool) {
                    put_strkey(col_text(&c[25]), VB_POOL, pool, 32);
                    col_end(&c[25]);
                } else {
                    col_null(&c[25]);
                }
            }
        }
    }
}
