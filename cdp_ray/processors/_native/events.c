/* events.c: the ``contract_events`` table (cdp_ray.processors.contract_events), one row per event. */
#include "native.h"

const ColSpec contract_events_cols[] = {
    {"transaction_hash", C_STR}, {"transaction_id", C_I64}, {"successful", C_BOOL}, {"ledger_sequence", C_U32},
    {"closed_at", C_TIME}, {"in_successful_contract_call", C_BOOL}, {"contract_id", C_STR}, {"type", C_I32},
    {"type_string", C_STR}, {"topics", C_STRS}, {"topics_decoded", C_STR}, {"data", C_STR},
    {"data_decoded", C_STR}, {"contract_event_xdr", C_STR}, {"operation_id", C_I64}, {"operation_index", C_I32},
    {"event_index", C_I32}, {"event_source", C_STR}, {"stage", C_STR},
};
const int contract_events_ncols = sizeof contract_events_cols / sizeof contract_events_cols[0];

enum {
    E_HASH, E_TX_ID, E_SUCCESSFUL, E_SEQ, E_CLOSED, E_IN_SUCCESSFUL, E_CONTRACT, E_TYPE, E_TYPE_STRING, E_TOPICS,
    E_TOPICS_DECODED, E_DATA, E_DATA_DECODED, E_XDR, E_OP_ID, E_OP_INDEX, E_INDEX, E_SOURCE, E_STAGE,
};

/* Which events the table keeps: options (include_diagnostic, wanted contract ids or None, wanted none). */
typedef struct {
    int diagnostic;
    const u8 *wanted;   /* sorted 32-byte contract ids, NULL: every event */
    Py_ssize_t nwanted;
    int wanted_none;    /* events without a contract id are kept */
} Filter;

static int
kept(const Filter *f, const u8 *contract)
{
    if (f->wanted == NULL && !f->wanted_none)
        return 1;
    if (contract == NULL)
        return f->wanted_none;
    Py_ssize_t lo = 0, hi = f->nwanted;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        int c = memcmp(f->wanted + 32 * mid, contract, 32);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* A ContractEvent's head, read from its XDR; ``body`` reads on at its topics. */
typedef struct {
    const u8 *start, *contract;
    int32_t type;
    uint32_t ntopics;
    Rd body;  /* from the first topic to the end of the events array */
} Event;

static void
read_event(Rd *r, Event *e)
{
    e->start = r->p + r->pos;
    if (u32(r) != 0) decline("contract event ext");
    e->contract = u32(r) ? take(r, 32) : NULL;
    e->type = i32(r);
    if (u32(r) != 0) decline("contract event body");
    e->ntopics = count(r, UINT32_MAX, 4);
    e->body = (Rd){r->p + r->pos, 0, r->len - r->pos};
}

/* Step ``r`` past an event whose head read_event() read (the topics and data read off ``e->body``). */
static void
past_event(Rd *r, const Event *e)
{
    r->pos += e->body.pos;
}

typedef struct {
    Table *tb;
    const Led *L;
    const Tx *t;
    int32_t index;         /* rows of the transaction so far */
    int64_t tx_id;
} Rows;

/* One row: ``call_ok`` the in_successful_contract_call flag, ``op`` the 1-based operation (0: none),
   ``source`` the event_source, ``stage`` a TransactionEvent's stage (-1: none). */
static void
row(Rows *w, Event *e, int call_ok, uint32_t op, const char *source, int64_t stage)
{
    Col *c = w->tb->cols;
    const Tx *t = w->t;
    put_hex(col_text(&c[E_HASH]), t->hash, 32);
    col_end(&c[E_HASH]);
    col_i64(&c[E_TX_ID], w->tx_id);
    col_bool(&c[E_SUCCESSFUL], t->successful);
    col_u32(&c[E_SEQ], w->L->head->sequence);
    col_i64(&c[E_CLOSED], w->L->closed_at_us);
    col_bool(&c[E_IN_SUCCESSFUL], call_ok);
    if (e->contract) put_strkey(col_text(&c[E_CONTRACT]), VB_CONTRACT, e->contract, 32);
    col_end(&c[E_CONTRACT]);
    col_i32(&c[E_TYPE], e->type);
    put_enum_name(col_text(&c[E_TYPE_STRING]), N_EVENT_TYPE, e->type);
    col_end(&c[E_TYPE_STRING]);
    Rd *body = &e->body;
    Buf *json = col_text(&c[E_TOPICS_DECODED]);
    buf_byte(json, '[');
    for (uint32_t i = 0; i < e->ntopics; i++) {
        Py_ssize_t at = body->pos;
        if (i) buf_byte(json, ',');
        put_scval_json(json, body, 0, 0);
        put_b64(col_item_text(&c[E_TOPICS]), body->p + at, body->pos - at);
        col_item_end(&c[E_TOPICS]);
    }
    buf_byte(json, ']');
    col_end(&c[E_TOPICS]);
    col_end(&c[E_TOPICS_DECODED]);
    Py_ssize_t data = body->pos;
    put_scval_json(col_text(&c[E_DATA_DECODED]), body, 0, 0);
    col_end(&c[E_DATA_DECODED]);
    put_b64(col_text(&c[E_DATA]), body->p + data, body->pos - data);
    col_end(&c[E_DATA]);
    const u8 *end = body->p + body->pos;
    /* DiagnosticEvent XDR: inSuccessfulContractCall, then the event */
    u8 flag[4] = {0, 0, 0, (u8)(call_ok ? 1 : 0)};
    Buf *x = col_text(&c[E_XDR]);
    Py_ssize_t n = end - e->start;
    buf_reserve(x, (n + 6) / 3 * 4 + 4);
    u8 head[6];  /* base64 works on 3-byte groups: the flag and the event's first two bytes, then the rest */
    memcpy(head, flag, 4);
    if (n < 2) decline("event length");
    memcpy(head + 4, e->start, 2);
    put_b64(x, head, 6);
    put_b64(x, e->start + 2, n - 2);
    col_end(&c[E_XDR]);
    if (op) {
        col_i64(&c[E_OP_ID], w->tx_id | op);
        col_i32(&c[E_OP_INDEX], (int32_t)op);
    } else {
        col_null(&c[E_OP_ID]);
        col_null(&c[E_OP_INDEX]);
    }
    col_i32(&c[E_INDEX], w->index++);
    col_cstr(&c[E_SOURCE], source);
    static const char *stages[] = {"before_all_txs", "after_tx", "after_all_txs"};
    if (stage >= 0 && stage <= 2)
        col_cstr(&c[E_STAGE], stages[stage]);
    else
        col_null(&c[E_STAGE]);
}

/* The events array at ``at`` (count first): plain ContractEvents (kind 0), TransactionEvents (1) or
   DiagnosticEvents (2). Returns the number of events. */
static uint32_t
events(Rows *w, const Filter *f, uint32_t at, int kind, uint32_t op, const char *source, int emit)
{
    const Led *L = w->L;
    if (at == 0) return 0;
    Rd r = {L->p + at, 0, L->len - at};
    uint32_t n = count(&r, UINT32_MAX, 4);
    for (uint32_t i = 0; emit && i < n; i++) {
        int64_t stage = -1;
        int call_ok = 1;
        if (kind == 1) stage = i32(&r);
        if (kind == 2) {
            uint32_t v = u32(&r);
            if (v > 1) decline("non-canonical bool");
            call_ok = (int)v;
        }
        Event e;
        read_event(&r, &e);
        if (kept(f, e.contract)) {
            row(w, &e, call_ok, op, source, stage);
        } else {
            w->index++;  /* event_index counts the rows before the contract filter */
            for (uint32_t k = 0; k <= e.ntopics; k++)
                skip_value(&e.body, tid.scval);
        }
        past_event(&r, &e);
    }
    return n;
}

void
build_contract_events(Table *tb, const Led *L)
{
    PyObject *opt = tb->options;
    Filter f = {PyObject_IsTrue(PyTuple_GET_ITEM(opt, 0)), NULL, 0, 0};
    if (PyTuple_GET_ITEM(opt, 1) != Py_None) {
        PyObject *w = PyTuple_GET_ITEM(opt, 1);
        f.wanted = (const u8 *)PyBytes_AS_STRING(w);
        f.nwanted = PyBytes_GET_SIZE(w) / 32;
        f.wanted_none = PyObject_IsTrue(PyTuple_GET_ITEM(opt, 2));
    }
    for (uint32_t i = 0; i < L->head->ntx; i++) {
        Tx t;
        read_tx(L, i, &t);
        read_meta(L, &t);
        Rows w = {tb, L, &t, 0, ((int64_t)L->head->sequence << 32) | ((int64_t)(i + 1) << 12)};
        if (t.meta_v == 4) {
            events(&w, &f, t.events, 1, 0, "transaction", 1);
            for (uint32_t k = 0; k < t.nopmeta; k++)
                events(&w, &f, t.opmeta[k].events, 0, k + 1, "operation", 1);
            if (f.diagnostic)
                events(&w, &f, t.diagnostic, 2, 0, "diagnostic", 1);
        } else if (t.meta_v == 3 && t.soroban && t.soroban_meta) {
            events(&w, &f, t.soroban_events, 0, 1, "operation", 1);
            if (f.diagnostic)
                events(&w, &f, t.diagnostic, 2, 0, "diagnostic", 1);
        }
    }
}
