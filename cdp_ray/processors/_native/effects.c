/*
 * effects.c: the ``effects`` table (cdp_ray.processors.effects), one row per effect of each operation of a
 * successful transaction, for the common operations: payments, path payments and offers (trades against
 * order-book offers), account creation, claimable balance creation and Stellar Asset Contract movements of
 * invoke_host_function, with the sponsorship effects of the account, trustline, data and claimable
 * balance entries they change. Any other operation, a trade against a liquidity pool, a signer's sponsorship
 * or a pool entry change, takes its rows from the Python rules through the ``effects`` hook (that operation
 * only); where the Python rules would skip the transaction (EffectError) the ledger is declined.
 */
#include "native.h"

const ColSpec effects_cols[] = {
    {"id", C_STR}, {"operation_id", C_I64}, {"index", C_U32}, {"address", C_STR}, {"address_muxed", C_STR},
    {"type", C_I32}, {"type_string", C_STR}, {"details", C_STR}, {"ledger_sequence", C_U32}, {"closed_at", C_TIME},
};
const int effects_ncols = sizeof effects_cols / sizeof effects_cols[0];

enum {
    OP_CREATE_ACCOUNT = 0, OP_PAYMENT = 1, OP_PATH_RECEIVE = 2, OP_MANAGE_SELL = 3, OP_PASSIVE_SELL = 4,
    OP_MANAGE_BUY = 12, OP_PATH_SEND = 13, OP_CREATE_CLAIMABLE = 14, OP_INVOKE_HOST_FUNCTION = 24,
};

/* effect types (Horizon's numbers) */
static const struct { const char *name; int type; } KINDS[] = {
    {"account_created", 0}, {"account_credited", 2}, {"account_debited", 3}, {"signer_created", 10},
    {"offer_created", 30}, {"offer_removed", 31}, {"offer_updated", 32}, {"trade", 33},
    {"claimable_balance_created", 50}, {"claimable_balance_claimant_created", 51},
    {"account_sponsorship_created", 60}, {"account_sponsorship_updated", 61}, {"account_sponsorship_removed", 62},
    {"trustline_sponsorship_created", 63}, {"trustline_sponsorship_updated", 64}, {"trustline_sponsorship_removed", 65},
    {"data_sponsorship_created", 66}, {"data_sponsorship_updated", 67}, {"data_sponsorship_removed", 68},
    {"claimable_balance_sponsorship_created", 69}, {"claimable_balance_sponsorship_updated", 70},
    {"claimable_balance_sponsorship_removed", 71}, {"contract_credited", 96}, {"contract_debited", 97},
    {"liquidity_pool_trade", 92},
};
enum {
    E_ACCOUNT_CREATED, E_CREDITED, E_DEBITED, E_SIGNER_CREATED, E_OFFER_CREATED, E_OFFER_REMOVED, E_OFFER_UPDATED,
    E_TRADE, E_CB_CREATED, E_CB_CLAIMANT_CREATED, E_SPONSORSHIP, /* + 3 * entry kind + created/updated/removed */
    E_CONTRACT_CREDITED = E_SPONSORSHIP + 12, E_CONTRACT_DEBITED, E_POOL_TRADE,
};

/* The Python rules' rows for this operation: unwinds to the operation, which asks the hook. */
static jmp_buf *op_jump;

__attribute__((noreturn)) static void
python_rules(void)
{
    if (op_jump == NULL) decline("python rules outside an operation");
    longjmp(*op_jump, 1);
}

/* An operation's effects so far: each row's address, muxed address, kind and details text. */
typedef struct {
    Buf text;                 /* addresses and details, one after the other */
    int n;
    struct { Py_ssize_t addr, addr_end, muxed, muxed_end, details, details_end; int kind; } row[4096];
} Rows;

static Rows rows;
static Buf scratch;

/* Add a row; the address and muxed address are written by the caller into rows.text between marks. */
typedef struct {
    Muxed m;
    int is_muxed;   /* give the M... address too */
} Who;

static void
add(const u8 *key, const Muxed *muxed, int kind, Obj *details)
{
    if (rows.n == (int)(sizeof rows.row / sizeof rows.row[0])) python_rules();
    Buf *t = &rows.text;
    rows.row[rows.n].kind = kind;
    rows.row[rows.n].addr = t->len;
    put_strkey(t, VB_ACCOUNT, key, 32);
    rows.row[rows.n].addr_end = rows.row[rows.n].muxed = t->len;
    if (muxed != NULL && muxed->muxed) put_muxed_strkey(t, muxed->key, muxed->id);
    rows.row[rows.n].muxed_end = rows.row[rows.n].details = t->len;
    obj_write(details, t);
    rows.row[rows.n].details_end = t->len;
    rows.n++;
}

static void
add_muxed(const Muxed *m, int kind, Obj *d)
{
    add(m->key, m, kind, d);
}

static void
amount(Obj *o, const char *key, int64_t v)
{
    Buf *b = obj_key(o, key);
    buf_byte(b, '"');
    put_rat7(b, v, 10000000);
    buf_byte(b, '"');
    obj_end(o);
}

/* effects.add_asset_details with a prefix: {prefix}asset_type, and unless native _code and _issuer */
static const char *PREFIXED[][3] = {
    {"asset_type", "asset_code", "asset_issuer"},
    {"bought_asset_type", "bought_asset_code", "bought_asset_issuer"},
    {"sold_asset_type", "sold_asset_code", "sold_asset_issuer"},
};

static void
asset_details(Obj *o, const Asset *a, int prefix)
{
    obj_cstr(o, PREFIXED[prefix][0], ASSET_TYPES[a->type]);
    if (a->type == 0) return;
    put_code_json(obj_key(o, PREFIXED[prefix][1]), a);
    obj_end(o);
    obj_strkey(o, PREFIXED[prefix][2], VB_ACCOUNT, a->issuer, 32);
}

/* ------------------------------------------------------------------------------------------ */
/* the operation's changes, paired and ordered by ledger key (effects.sorted_operation_changes) */

typedef struct {
    int type;
    XdrEntry e;
} Change;

static Change changes[MAX_PAIRS];
static int nchanges;
Pair pairs[MAX_PAIRS];
int npairs;

static int
collect(void *ctx, int type, const XdrEntry *e, const u8 *k, Py_ssize_t klen)
{
    if (nchanges == MAX_PAIRS) return 1;
    changes[nchanges].type = type;
    if (e != NULL) changes[nchanges].e = *e;
    nchanges++;
    return 0;
}

/* The ledger key of an account, trustline, data or claimable balance entry (its data's arm at e->data); the
   other types sort after them and make no effects here, so only their type is kept. */
static int
ledger_key(const XdrEntry *e, u8 *key)
{
    Rd r = {e->data, 0, e->entry + e->entry_len - e->data};
    uint32_t n;
    if (e->type < 0 || e->type > 255) decline("ledger entry type");
    key[0] = key[1] = key[2] = 0;
    key[3] = (u8)e->type;
    int at = 4;
    switch (e->type) {
    case 0:  /* account: AccountID */
    case 1:  /* trustline: AccountID, TrustLineAsset */
    case 3: { /* data: AccountID, name */
        const u8 *start = r.p + r.pos;
        read_account_id(&r);
        if (e->type == 1) {
            uint32_t t = u32(&r);
            if (t == 1 || t == 2) take(&r, t == 1 ? 40 : 48);
            else if (t == 3) take(&r, 32);
            else if (t != 0) decline("trustline asset type");
        } else if (e->type == 3) {
            var_bytes(&r, 64, &n);
        }
        Py_ssize_t len = r.p + r.pos - start;
        if (len > 124) decline("ledger key");
        memcpy(key + at, start, len);
        return at + (int)len;
    }
    case 4:  /* claimable balance: its id, first in the entry */
        memcpy(key + at, take(&r, 36), 36);
        return at + 36;
    default:  /* offers, pools: no effects here */
        return 4;
    }
}

static int
pair_cmp(const void *a, const void *b)
{
    const Pair *x = a, *y = b;
    int n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->key_len != y->key_len) return x->key_len - y->key_len;
    return x->order - y->order;
}

int
read_pairs(const Led *L, const Tx *t, uint32_t index)
{
    nchanges = npairs = 0;
    if ((L->head->protocol <= 12 && t->code == -11) || index >= t->nopmeta) return 0;
    const LedgerIndexOp *o = &t->opmeta[index];
    int r = xdr_api->changes(codec, L->p + o->changes, o->changes_end - o->changes, collect, NULL);
    if (r < 0) {
        PyErr_Clear();
        decline("ledger entry changes the codec rejects");
    }
    if (r > 0) return -1;  /* more changes than kept here */
    for (int i = 0; i < nchanges; i++) {
        Change *c = &changes[i];
        const XdrEntry *pre = NULL, *post = NULL;
        if (c->type == 0 || c->type == 4) {
            post = &c->e;
        } else if (c->type == 1 || c->type == 2) {
            if (i == 0 || (changes[i - 1].type != 3 && changes[i - 1].type != 4)) decline("change without its state");
            pre = &changes[i - 1].e;
            if (c->type == 1) post = &c->e;
        } else {
            continue;
        }
        Pair *p = &pairs[npairs];
        p->pre = pre;
        p->post = post;
        p->order = npairs;
        p->key_len = ledger_key(post ? post : pre, p->key);
        npairs++;
    }
    qsort(pairs, npairs, sizeof(Pair), pair_cmp);
    return 0;
}

static void balance_id(Obj *o, const u8 *id);

/* ------------------------------------------------------------------------------------------ */
/* sponsorship of the changed entries                                                          */

/* Whether an account entry has signers with sponsors (AccountEntry ext v1, ext v2, signerSponsoringIDs). */
static int
signer_sponsored(const XdrEntry *e)
{
    Rd r = {e->data, 0, e->entry + e->entry_len - e->data};
    uint32_t n;
    read_account_id(&r);
    take(&r, 8 + 8 + 4);  /* balance, seqNum, numSubEntries */
    if (u32(&r)) read_account_id(&r);
    take(&r, 4);  /* flags */
    var_bytes(&r, 32, &n);
    take(&r, 4);  /* thresholds */
    uint32_t signers = count(&r, 20, 40);
    for (uint32_t i = 0; i < signers; i++) {
        uint32_t type = u32(&r);
        take(&r, 32);
        if (type == 3) var_bytes(&r, 64, &n);
        take(&r, 4);
    }
    if (u32(&r) != 1) return 0;
    take(&r, 16);  /* liabilities */
    if (u32(&r) != 2) return 0;
    take(&r, 8);  /* numSponsored, numSponsoring */
    uint32_t ids = count(&r, 20, 4);
    for (uint32_t i = 0; i < ids; i++)
        if (u32(&r)) return 1;
    return 0;
}

static void
sponsorship(const Pair *p, const Muxed *source)
{
    const XdrEntry *e = p->post ? p->post : p->pre;
    int kind = e->type == 0 ? 0 : e->type == 1 ? 1 : e->type == 3 ? 2 : e->type == 4 ? 3 : -1;
    if (e->type == 0 && ((p->pre && signer_sponsored(p->pre)) || (p->post && signer_sponsored(p->post))))
        python_rules();  /* signers' sponsorships: the Python rules compare them */
    if (kind < 0) return;
    const u8 *pre_s = p->pre ? p->pre->sponsor : NULL, *post_s = p->post ? p->post->sponsor : NULL;
    int change;
    Obj o;
    obj_init(&o, &scratch);
    if (pre_s == NULL && post_s != NULL) {
        change = 0;
        obj_strkey(&o, "sponsor", VB_ACCOUNT, post_s, 32);
    } else if (pre_s != NULL && post_s == NULL) {
        change = 2;
        obj_strkey(&o, "former_sponsor", VB_ACCOUNT, pre_s, 32);
    } else if (pre_s != NULL && post_s != NULL && memcmp(pre_s, post_s, 32) != 0) {
        change = 1;
        obj_strkey(&o, "new_sponsor", VB_ACCOUNT, post_s, 32);
        obj_strkey(&o, "former_sponsor", VB_ACCOUNT, pre_s, 32);
    } else {
        scratch.len = o.base;
        return;
    }
    int effect = E_SPONSORSHIP + 3 * kind + change;
    Rd r = {e->data, 0, e->entry + e->entry_len - e->data};
    uint32_t n;
    if (kind == 0) {
        add(read_account_id(&r), NULL, effect, &o);
    } else if (kind == 1) {
        const u8 *account = read_account_id(&r);
        uint32_t t = u32(&r);
        if (t == 3) {
            obj_cstr(&o, "asset_type", "liquidity_pool");
            Buf *b = obj_key(&o, "liquidity_pool_id");
            buf_byte(b, '"');
            put_hex(b, take(&r, 32), 32);
            buf_byte(b, '"');
            obj_end(&o);
        } else {
            r.pos -= 4;
            Asset a;
            read_asset(&r, &a);
            put_canonical(obj_key(&o, "asset"), &a);
            obj_end(&o);
        }
        add(account, NULL, effect, &o);
    } else if (kind == 2) {
        read_account_id(&r);
        const u8 *name = var_bytes(&r, 64, &n);
        Buf text = {0};
        put_utf8_replace(&text, name, n);
        obj_str(&o, "data_name", (const u8 *)(text.p ? text.p : ""), text.len);
        buf_free(&text);
        add_muxed(source, effect, &o);
    } else {
        balance_id(&o, take(&r, 36));
        add_muxed(source, effect, &o);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* operations                                                                                  */

typedef struct {
    const Led *L;
    const Tx *t;
    uint32_t index;
    Muxed source;
    SacAssets *assets;
} Op;

static void
credit_debit(int kind, const Muxed *who, int64_t v, const Asset *a)
{
    Obj o;
    obj_init(&o, &scratch);
    amount(&o, "amount", v);
    asset_details(&o, a, 0);
    add_muxed(who, kind, &o);
}

/* The operation's result's success arm, after its tr type (checked) and code (0). */
static Rd
success(const Op *op, uint32_t tr_type)
{
    const Tx *t = op->t;
    if (op->index >= t->nresults) decline("no result for the operation");
    Rd r = rd_span(op->L->p, t->res[op->index], t->res[op->index + 1]);
    if (i32(&r) != 0 || u32(&r) != tr_type || i32(&r) != 0)
        decline("a successful transaction's operation without a successful result");
    return r;
}

/* effects.liquidity_pool_details of the pool entry of the operation's first change of pool ``id`` (the
   state after it, else before it), as JSON; declines the ledger when there is none (the Python rules skip
   the transaction). */
static void
put_pool_details(Buf *b, const u8 *id)
{
    const XdrEntry *lp = NULL;
    for (int i = 0; i < npairs && lp == NULL; i++) {
        const XdrEntry *e = pairs[i].post ? pairs[i].post : pairs[i].pre;
        if (e->type != 5) continue;
        if ((pairs[i].pre && memcmp(pairs[i].pre->data, id, 32) != 0) ||
            (pairs[i].post && memcmp(pairs[i].post->data, id, 32) != 0))
            continue;
        lp = e;
    }
    if (lp == NULL) decline("liquidity pool change not found");
    Rd r = {lp->data, 0, lp->entry + lp->entry_len - lp->data};
    const u8 *pool = take(&r, 32);
    if (u32(&r) != 0) decline("liquidity pool type");
    Asset a, bb;
    read_asset(&r, &a);
    read_asset(&r, &bb);
    int32_t fee = i32(&r);
    int64_t ra = i64(&r), rb = i64(&r), shares = i64(&r), trustlines = i64(&r);
    buf_cstr(b, "{\"fee_bp\":");
    put_i64(b, fee);
    buf_cstr(b, ",\"id\":\"");
    put_hex(b, pool, 32);
    buf_cstr(b, "\",\"reserves\":[{\"amount\":\"");
    put_rat7(b, ra, 10000000);
    buf_cstr(b, "\",\"asset\":");
    put_canonical(b, &a);
    buf_cstr(b, "},{\"amount\":\"");
    put_rat7(b, rb, 10000000);
    buf_cstr(b, "\",\"asset\":");
    put_canonical(b, &bb);
    buf_cstr(b, "}],\"total_shares\":\"");
    put_rat7(b, shares, 10000000);
    buf_cstr(b, "\",\"total_trustlines\":\"");
    put_i64(b, trustlines);
    buf_cstr(b, "\",\"type\":\"constant_product\"}");
}

static void
put_amount_asset(Buf *b, int64_t v, const Asset *a)
{
    buf_cstr(b, "{\"amount\":\"");
    put_rat7(b, v, 10000000);
    buf_cstr(b, "\",\"asset\":");
    put_canonical(b, a);
    buf_byte(b, '}');
}

/* effects._trades over the claim atoms read next (count first). */
static void
trades(const Op *op, Rd *r, int strict_send)
{
    uint32_t n = count(r, UINT32_MAX, 4);
    const Muxed *buyer = &op->source;
    for (uint32_t i = 0; i < n; i++) {
        ClaimAtom c;
        read_claim_atom(r, &c);
        const Asset *sold_asset = &c.sold, *bought_asset = &c.bought;
        int64_t sold = c.amount_sold, bought = c.amount_bought, offer_id = c.offer_id;
        const u8 *seller = c.seller;
        if (sold == 0 && bought == 0) continue;
        if (c.type == 2) {  /* a liquidity pool */
            Obj o;
            obj_init(&o, &scratch);
            put_pool_details(obj_key(&o, "liquidity_pool"), c.pool);
            obj_end(&o);
            put_amount_asset(obj_key(&o, "sold"), sold, sold_asset);
            obj_end(&o);
            put_amount_asset(obj_key(&o, "bought"), bought, bought_asset);
            obj_end(&o);
            add_muxed(buyer, E_POOL_TRADE, &o);
            continue;
        }
        static const int kinds[] = {E_TRADE, E_OFFER_UPDATED, E_OFFER_REMOVED, E_OFFER_CREATED};
        for (int k = 0; k < (strict_send ? 3 : 4); k++) {
            Obj bd;
            obj_init(&bd, &scratch);
            obj_i64(&bd, "offer_id", offer_id);
            obj_strkey(&bd, "seller", VB_ACCOUNT, seller, 32);
            amount(&bd, "bought_amount", sold);
            amount(&bd, "sold_amount", bought);
            asset_details(&bd, sold_asset, 1);
            asset_details(&bd, bought_asset, 2);
            add_muxed(buyer, kinds[k], &bd);
            Obj sd;
            obj_init(&sd, &scratch);
            obj_i64(&sd, "offer_id", offer_id);
            amount(&sd, "bought_amount", bought);
            amount(&sd, "sold_amount", sold);
            obj_strkey(&sd, "seller", VB_ACCOUNT, buyer->key, 32);
            if (buyer->muxed) {
                Buf *b = obj_key(&sd, "seller_muxed");
                buf_byte(b, '"');
                put_muxed_strkey(b, buyer->key, buyer->id);
                buf_byte(b, '"');
                obj_end(&sd);
                obj_u64(&sd, "seller_muxed_id", buyer->id);
            }
            asset_details(&sd, bought_asset, 1);
            asset_details(&sd, sold_asset, 2);
            add(seller, NULL, kinds[k], &sd);
        }
    }
}

static void
path_payment(const Op *op, Rd *body, int receive)
{
    Asset send_asset, dest_asset;
    read_asset(body, &send_asset);
    int64_t send = i64(body);  /* sendMax | sendAmount */
    Muxed dest;
    read_muxed(body, &dest);
    read_asset(body, &dest_asset);
    int64_t dest_amount = i64(body);  /* destAmount | destMin */
    Rd s = success(op, receive ? OP_PATH_RECEIVE : OP_PATH_SEND);
    Rd offers = s;
    int64_t sent, last;
    if (path_amounts(&s, &sent, &last) < 0 && receive) decline("send amount beyond 64 bits");
    if (receive) {
        credit_debit(E_CREDITED, &dest, dest_amount, &dest_asset);
        credit_debit(E_DEBITED, &op->source, sent, &send_asset);
    } else {
        credit_debit(E_CREDITED, &dest, last, &dest_asset);
        credit_debit(E_DEBITED, &op->source, send, &send_asset);
    }
    /* stellar-etl passes isPathPayment=true for strict-send only: strict-receive claims get offer_created */
    trades(op, &offers, !receive);
}

/* balance_id: the hex of a ClaimableBalanceID's XDR (36 bytes) */
static void
balance_id(Obj *o, const u8 *id)
{
    Buf *b = obj_key(o, "balance_id");
    buf_byte(b, '"');
    put_hex(b, id, 36);
    buf_byte(b, '"');
    obj_end(o);
}

/* The first claimable balance created by the operation (in key order): its pieces. */
static void
claimable_balance_created(const Op *op, Rd *body)
{
    const XdrEntry *cb = NULL;
    for (int i = 0; i < npairs; i++)
        if (pairs[i].post && pairs[i].post->type == 4) {
            cb = pairs[i].post;
            break;
        }
    if (cb == NULL) decline("claimable balance entry not found in its changes");
    Rd r = {cb->data, 0, cb->entry + cb->entry_len - cb->data};
    const u8 *id = take(&r, 36);
    uint32_t n = count(&r, 10, 4);
    for (uint32_t i = 0; i < n; i++) {  /* the entry's claimants: the operation's are written */
        if (u32(&r) != 0) decline("claimant type");
        read_account_id(&r);
        skip_value(&r, tid.claim_predicate);
    }
    Asset a;
    read_asset(&r, &a);
    int64_t v = i64(&r);
    int clawback = 0;
    if (u32(&r) == 1) {
        u32(&r);
        clawback = (u32(&r) & 1) != 0;
    }
    Obj o;
    obj_init(&o, &scratch);
    balance_id(&o, id);
    amount(&o, "amount", v);
    put_canonical(obj_key(&o, "asset"), &a);
    obj_end(&o);
    if (clawback) obj_raw(&o, "claimable_balance_clawback_enabled_flag", "true");
    add_muxed(&op->source, E_CB_CREATED, &o);
    /* the operation: asset, amount, claimants */
    Asset op_asset;
    read_asset(body, &op_asset);
    i64(body);
    n = count(body, 10, 4);
    for (uint32_t i = 0; i < n; i++) {
        if (u32(body) != 0) decline("claimant type");
        const u8 *dest = read_account_id(body);
        Obj c;
        obj_init(&c, &scratch);
        balance_id(&c, id);
        amount(&c, "amount", v);
        put_predicate(obj_key(&c, "predicate"), body, 0);
        obj_end(&c);
        put_canonical(obj_key(&c, "asset"), &a);
        obj_end(&c);
        add(dest, NULL, E_CB_CLAIMANT_CREATED, &c);
    }
    credit_debit(E_DEBITED, &op->source, v, &a);
}

/* effects.invoke_host_function: Stellar Asset Contract movements among the first operation's events. */
static void
invoke_host_function(const Op *op)
{
    const Tx *t = op->t;
    uint32_t at = 0;
    if (t->meta_v == 3 && t->soroban_meta) at = t->soroban_events;
    else if (t->meta_v == 4 && t->nopmeta) at = t->opmeta[0].events;
    if (at == 0) return;
    Rd r = {op->L->p + at, 0, op->L->len - at};
    uint32_t n = count(&r, UINT32_MAX, 4);
    for (uint32_t i = 0; i < n; i++) {
        Summary s;
        summarize(&r, &s);
        PyObject *asset;
        const ScAddress *from, *to;
        int fn = sac_event(&s, op->assets, &asset, &from, &to);
        if (fn < 0) continue;
        static const char *names[] = {"transfer", "mint", "clawback", "burn"};
        for (int side = 0; side < 2; side++) {
            const ScAddress *who = side == 0 ? from : to;
            if (who == NULL) continue;
            Obj o;
            obj_init(&o, &scratch);
            for (int k = 1; k <= 3; k++) {  /* asset_type, asset_code, asset_issuer: columns 1, 2, 3 */
                PyObject *v = PyTuple_GET_ITEM(asset, k);
                if (v == Py_None) continue;
                Py_ssize_t len;
                const char *text = PyUnicode_AsUTF8AndSize(v, &len);
                if (text == NULL) fail();
                obj_str(&o, PREFIXED[0][k - 1], (const u8 *)text, len);
            }
            obj_cstr(&o, "contract_event_type", names[fn]);
            Buf *b = obj_key(&o, "amount");
            buf_byte(b, '"');
            put_rat7(b, s.amount, 10000000);
            buf_byte(b, '"');
            obj_end(&o);
            if (who->version == VB_ACCOUNT) {
                add(who->payload, NULL, side == 0 ? E_DEBITED : E_CREDITED, &o);
            } else {
                Buf *c = obj_key(&o, "contract");
                buf_byte(c, '"');
                put_strkey(c, who->version, who->payload, who->len);
                buf_byte(c, '"');
                obj_end(&o);
                add_muxed(&op->source, side == 0 ? E_CONTRACT_DEBITED : E_CONTRACT_CREDITED, &o);
            }
        }
    }
}

/* The rows of one operation: its own effects, then its changes' sponsorship effects. */
static void
operation(const Op *op, uint32_t type, Rd *body)
{
    switch (type) {
    case OP_CREATE_ACCOUNT: {
        const u8 *dest = read_account_id(body);
        int64_t start = i64(body);
        Obj o;
        obj_init(&o, &scratch);
        amount(&o, "starting_balance", start);
        add(dest, NULL, E_ACCOUNT_CREATED, &o);
        obj_init(&o, &scratch);
        obj_cstr(&o, "asset_type", "native");
        amount(&o, "amount", start);
        add_muxed(&op->source, E_DEBITED, &o);
        obj_init(&o, &scratch);
        obj_strkey(&o, "public_key", VB_ACCOUNT, dest, 32);
        obj_raw(&o, "weight", "1");
        add(dest, NULL, E_SIGNER_CREATED, &o);
        break;
    }
    case OP_PAYMENT: {
        Muxed dest;
        read_muxed(body, &dest);
        Asset a;
        read_asset(body, &a);
        int64_t v = i64(body);
        credit_debit(E_CREDITED, &dest, v, &a);
        credit_debit(E_DEBITED, &op->source, v, &a);
        break;
    }
    case OP_PATH_RECEIVE:
    case OP_PATH_SEND:
        path_payment(op, body, type == OP_PATH_RECEIVE);
        break;
    case OP_MANAGE_SELL:
    case OP_MANAGE_BUY:
    case OP_PASSIVE_SELL: {
        /* stellar-core sets the ManageSellOffer result arm for passive offers */
        const Tx *t = op->t;
        if (op->index >= t->nresults) decline("no result for the operation");
        Rd r = rd_span(op->L->p, t->res[op->index], t->res[op->index + 1]);
        if (i32(&r) != 0) decline("no inner result");
        uint32_t tr = u32(&r);
        if (tr != type && !(type == OP_PASSIVE_SELL && tr == OP_MANAGE_SELL)) decline("result of another type");
        if (i32(&r) != 0) decline("a successful transaction's offer without a successful result");
        trades(op, &r, 0);
        break;
    }
    case OP_CREATE_CLAIMABLE:
        claimable_balance_created(op, body);
        break;
    case OP_INVOKE_HOST_FUNCTION:
        invoke_host_function(op);
        break;
    default:
        python_rules();
    }
    for (int i = 0; i < npairs; i++) {
        const XdrEntry *e = pairs[i].post ? pairs[i].post : pairs[i].pre;
        if (e->type == 5 && (pairs[i].pre == NULL || pairs[i].post == NULL))
            python_rules();  /* a pool created or removed: the Python rules write its effect */
        sponsorship(&pairs[i], &op->source);
    }
}

/* Write the operation's rows; ``python``: the hook's rows (a list of (address, muxed, type, type_string,
   details)) instead. */
static void
emit(Table *tb, const Led *L, int64_t op_id, PyObject *python)
{
    Col *c = tb->cols;
    Py_ssize_t n = python ? PyList_GET_SIZE(python) : rows.n;
    for (Py_ssize_t i = 0; i < n; i++) {
        Buf *id = col_text(&c[0]);
        put_i64(id, op_id);
        buf_byte(id, '-');
        put_i64(id, i);
        col_end(&c[0]);
        col_i64(&c[1], op_id);
        col_u32(&c[2], (uint32_t)i);
        if (python) {
            PyObject *row = PyList_GET_ITEM(python, i);
            Py_ssize_t len;
            const char *s;
            if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 5) {
                PyErr_SetString(PyExc_TypeError, "effect rows must be 5-tuples");
                fail();
            }
            for (int k = 0; k < 5; k++) {
                PyObject *v = PyTuple_GET_ITEM(row, k);
                Col *col = &c[3 + k];
                if (k == 2) {
                    long type = PyLong_AsLong(v);
                    if (type == -1 && PyErr_Occurred()) fail();
                    col_i32(col, (int32_t)type);
                } else if (v == Py_None) {
                    col_null(col);
                } else {
                    if ((s = PyUnicode_AsUTF8AndSize(v, &len)) == NULL) fail();
                    col_str(col, s, len);
                }
            }
        } else {
            const char *t = rows.text.p;
            col_str(&c[3], t + rows.row[i].addr, rows.row[i].addr_end - rows.row[i].addr);
            if (rows.row[i].muxed_end > rows.row[i].muxed)
                col_str(&c[4], t + rows.row[i].muxed, rows.row[i].muxed_end - rows.row[i].muxed);
            else
                col_null(&c[4]);
            col_i32(&c[5], KINDS[rows.row[i].kind].type);
            col_cstr(&c[6], KINDS[rows.row[i].kind].name);
            col_str(&c[7], t + rows.row[i].details, rows.row[i].details_end - rows.row[i].details);
        }
        col_u32(&c[8], L->head->sequence);
        col_i64(&c[9], L->closed_at_us);
    }
}

/* Hooks: (effects(position, tx index, op index) -> rows or None when the Python rules skip the transaction,
   sac_columns, native columns, no-asset columns, cache). */
void
build_effects(Table *tb, const Led *L)
{
    SacAssets assets = {PyTuple_GET_ITEM(tb->hooks, 4), PyTuple_GET_ITEM(tb->hooks, 1), PyTuple_GET_ITEM(L->network, 2),
                        PyTuple_GET_ITEM(tb->hooks, 2), PyTuple_GET_ITEM(tb->hooks, 3)};
    uint32_t seq = L->head->sequence;
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        if (!t.successful) continue;
        read_meta(L, &t);
        for (uint32_t k = 0; k < t.nops; k++) {
            int64_t op_id = ((int64_t)seq << 32) | ((int64_t)(i + 1) << 12) | (k + 1);
            Rd body = rd_span(L->p, t.op[k], t.op[k + 1]);
            Op op = {L, &t, k, t.source, &assets};
            if (u32(&body)) read_muxed(&body, &op.source);
            uint32_t type = u32(&body);
            jmp_buf here;
            op_jump = &here;
            rows.n = 0;
            rows.text.len = 0;
            scratch.len = 0;
            if (setjmp(here) == 0) {
                if (read_pairs(L, &t, k) < 0) python_rules();
                operation(&op, type, &body);
                op_jump = NULL;
                emit(tb, L, op_id, NULL);
                continue;
            }
            op_jump = NULL;
            PyObject *py = call_hook(PyTuple_GET_ITEM(tb->hooks, 0), Py_BuildValue("(nII)", L->position, i, k));
            if (py == Py_None) {
                Py_DECREF(py);
                decline("the Python rules skip the transaction");
            }
            if (!PyList_Check(py)) {
                Py_DECREF(py);
                PyErr_SetString(PyExc_TypeError, "the effects hook must return a list");
                fail();
            }
            Guard *g = guard, inner = {0};
            guard = &inner;
            if (setjmp(inner.jump) == 0)
                emit(tb, L, op_id, py);
            guard = g;
            Py_DECREF(py);
            if (inner.failed) fail();
            if (inner.reason) decline(inner.reason);
        }
    }
}
