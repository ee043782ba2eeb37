/* ledgers.c: the ``ledgers`` table (cdp_ray.processors.ledgers), one row per ledger. */
#include "native.h"

const ColSpec ledgers_cols[] = {
    {"sequence", C_U32}, {"id", C_I64}, {"ledger_hash", C_STR}, {"previous_ledger_hash", C_STR},
    {"ledger_header", C_STR}, {"transaction_count", C_I32}, {"operation_count", C_I32},
    {"successful_transaction_count", C_I32}, {"failed_transaction_count", C_I32}, {"tx_set_operation_count", C_STR},
    {"closed_at", C_TIME}, {"total_coins", C_I64}, {"fee_pool", C_I64}, {"base_fee", C_U32}, {"base_reserve", C_U32},
    {"max_tx_set_size", C_U32}, {"protocol_version", C_U32}, {"soroban_fee_write_1kb", C_I64}, {"node_id", C_STR},
    {"signature", C_STR}, {"total_byte_size_of_bucket_list", C_U64}, {"total_byte_size_of_live_soroban_state", C_U64},
    {"evicted_ledger_keys_type", C_STRS}, {"evicted_ledger_keys_hash", C_STRS},
};
const int ledgers_ncols = sizeof ledgers_cols / sizeof ledgers_cols[0];

/* The number of operations of an envelope (the inner transaction's for a fee bump). */
static uint32_t
envelope_ops(Rd *r)
{
    uint32_t type = u32(r), n;
    Muxed m;
    if (type == 5) {
        read_muxed(r, &m);
        i64(r);
        if (u32(r) != 2) decline("inner envelope type");
        type = 2;
    }
    if (type == 0) {
        take(r, 32);
    } else if (type == 2) {
        read_muxed(r, &m);
    } else {
        decline("envelope type");
    }
    take(r, 12);  /* fee, seqNum */
    uint32_t cond = type == 0 ? (u32(r) ? 1 : 0) : u32(r);
    if (cond == 1) {
        take(r, 16);
    } else if (cond == 2) {
        if (u32(r)) take(r, 16);
        if (u32(r)) take(r, 8);
        if (u32(r)) take(r, 8);
        take(r, 12);
        uint32_t k = count(r, 2, 36);
        for (uint32_t i = 0; i < k; i++) {
            uint32_t t = u32(r);
            take(r, 32);
            if (t == 3) var_bytes(r, 64, &n);
            else if (t > 3) decline("signer key type");
        }
    } else if (cond != 0) {
        decline("precondition type");
    }
    uint32_t memo = u32(r);
    if (memo == 1) var_bytes(r, 28, &n);
    else if (memo == 2) take(r, 8);
    else if (memo == 3 || memo == 4) take(r, 32);
    else if (memo != 0) decline("memo type");
    return u32(r);
}

void
build_ledgers(Table *tb, const Led *L)
{
    const LedgerIndexHead *h = L->head;
    Col *c = tb->cols;
    const u8 *p = L->p;
    int32_t succeeded = 0, ops = 0;
    for (uint32_t i = 0; i < h->ntx; i++) {
        Rd r = rd_span(p, L->tx[i].result, L->tx[i].result_end);
        take(&r, 40);  /* hash, feeCharged */
        int32_t code = i32(&r), inner = code;
        if (code == 1 || code == -13) {
            take(&r, 40);
            inner = i32(&r);
        }
        if (code == 0 || code == 1) {
            succeeded++;
            if (inner == 0 || inner == -1)
                ops += (int32_t)u32(&r);  /* the results' count */
        }
    }
    uint64_t set_ops = 0;
    for (uint32_t i = 0; i < h->nenv; i++) {
        Rd r = rd_span(p, L->env[i].env, L->env[i].env_end);
        set_ops += envelope_ops(&r);
    }
    Rd r = rd_span(p, h->header, h->header_end);
    uint32_t version = u32(&r);
    const u8 *prev = take(&r, 32);
    take(&r, 40);  /* txSetHash, closeTime */
    uint32_t nup = count(&r, 6, 4), n;
    for (uint32_t i = 0; i < nup; i++) var_bytes(&r, 128, &n);
    uint32_t sv = u32(&r);
    const u8 *node = NULL, *sig = NULL;
    uint32_t sig_len = 0;
    if (sv == 1) {
        node = read_account_id(&r);
        sig = var_bytes(&r, 64, &sig_len);
    } else if (sv != 0) {
        r.pos -= 4;
        skip_value(&r, tid.stellar_value_ext);
    }
    take(&r, 64);  /* txSetResultHash, bucketListHash */
    uint32_t seq = u32(&r);
    int64_t total_coins = i64(&r), fee_pool = i64(&r);
    take(&r, 12);  /* inflationSeq, idPool */
    uint32_t base_fee = u32(&r), base_reserve = u32(&r), max_set = u32(&r);

    col_u32(&c[0], seq);
    col_i64(&c[1], (int64_t)seq << 32);
    put_hex(col_text(&c[2]), p + h->header_entry, 32);
    col_end(&c[2]);
    put_hex(col_text(&c[3]), prev, 32);
    col_end(&c[3]);
    put_b64(col_text(&c[4]), p + h->header, h->header_end - h->header);
    col_end(&c[4]);
    col_i32(&c[5], succeeded);
    col_i32(&c[6], ops);
    col_i32(&c[7], succeeded);
    col_i32(&c[8], (int32_t)h->ntx - succeeded);
    put_u64(col_text(&c[9]), set_ops);
    col_end(&c[9]);
    col_i64(&c[10], L->closed_at_us);
    col_i64(&c[11], total_coins);
    col_i64(&c[12], fee_pool);
    col_u32(&c[13], base_fee);
    col_u32(&c[14], base_reserve);
    col_u32(&c[15], max_set);
    col_u32(&c[16], version);
    col_i64(&c[17], h->has_fee_write ? h->soroban_fee_write : 0);
    if (node != NULL) {
        put_strkey(col_text(&c[18]), VB_ACCOUNT, node, 32);
        put_b64(col_text(&c[19]), sig, sig_len);
    }
    col_end(&c[18]);
    col_end(&c[19]);
    col_u64(&c[20], h->soroban_state);
    col_u64(&c[21], h->soroban_state);
    if (h->lcm_version == 0) {
        col_null(&c[22]);
        col_null(&c[23]);
        return;
    }
    Rd e = rd_span(p, h->evicted, h->evicted_end);
    uint32_t nkeys = count(&e, UINT32_MAX, 4);
    for (uint32_t i = 0; i < nkeys; i++) {
        Py_ssize_t start = e.pos;
        int64_t type = i32(&e);
        e.pos = start;
        skip_value(&e, tid.ledger_key);
        put_enum_name(col_item_text(&c[22]), N_LEDGER_ENTRY_TYPE, type);
        col_item_end(&c[22]);
        put_b64(col_item_text(&c[23]), e.p + start, e.pos - start);
        col_item_end(&c[23]);
    }
    col_end(&c[22]);
    col_end(&c[23]);
}
