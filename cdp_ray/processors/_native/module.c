/*
 * _native: the processors' native table builders (see native.h).
 *
 * setup(codec) hands the module the fast XDR codec (its type table, through the _fastxdr.API capsule).
 * build(table, ledgers, options, hooks) builds one table over a batch of indexed ledgers
 * ((raw, index, network) each) and returns its columns as Arrow buffers, where each ledger's rows end,
 * and the ledgers it declined with the reason.
 */
#include "native.h"

Guard *guard;
Tids tid;
const FastXdrApi *xdr_api;
PyObject *codec;

void
decline(const char *why)
{
    guard->reason = why;
    longjmp(guard->jump, 1);
}

void
fail(void)
{
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_SystemError, "native table builder failed without an exception");
    guard->failed = 1;
    longjmp(guard->jump, 1);
}

void
skip_value(Rd *r, int type)
{
    Py_ssize_t pos = r->pos;
    if (xdr_api->skip(codec, type, r->p, r->len, &pos) < 0) {
        PyErr_Clear();
        decline("XDR the codec rejects");
    }
    r->pos = pos;
}

static PyObject *sha256_fn;

void
put_sha256_hex(Buf *b, const u8 *s, Py_ssize_t n)
{
    PyObject *data = PyBytes_FromStringAndSize((const char *)s, n);
    PyObject *h = data ? PyObject_CallOneArg(sha256_fn, data) : NULL;
    PyObject *digest = h ? PyObject_CallMethod(h, "digest", NULL) : NULL;
    Py_XDECREF(data);
    Py_XDECREF(h);
    if (digest == NULL || !PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != 32) {
        Py_XDECREF(digest);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "sha256 digest is not 32 bytes");
        fail();
    }
    put_hex(b, (const u8 *)PyBytes_AS_STRING(digest), 32);
    Py_DECREF(digest);
}

PyObject *
call_hook(PyObject *fn, PyObject *args)
{
    if (args == NULL)
        fail();
    PyObject *out = PyObject_CallObject(fn, args);
    Py_DECREF(args);
    if (out == NULL)
        fail();
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* shared readers                                                                             */

void
read_muxed(Rd *r, Muxed *m)
{
    uint32_t type = u32(r);
    m->muxed = type == 0x100;
    m->id = 0;
    if (m->muxed)
        m->id = u64(r);
    else if (type != 0)
        decline("muxed account type");
    m->key = take(r, 32);
}

const u8 *
read_account_id(Rd *r)
{
    if (u32(r) != 0)
        decline("public key type");
    return take(r, 32);
}

void
put_muxed_address(Buf *b, const Muxed *m)
{
    if (m->muxed)
        put_muxed_strkey(b, m->key, m->id);
    else
        put_strkey(b, VB_ACCOUNT, m->key, 32);
}

typedef struct {
    int64_t lo;
    Py_ssize_t n;
    PyObject *names;  /* tuple of str: the names of values lo .. lo + n - 1, None where a value has none */
} Names;

static Names names[NNAMES];

int
has_enum_name(int table, int64_t value)
{
    Names *t = &names[table];
    return t->names != NULL && value >= t->lo && value - t->lo < t->n &&
           PyTuple_GET_ITEM(t->names, value - t->lo) != Py_None;
}

void
put_enum_name(Buf *b, int table, int64_t value)
{
    if (!has_enum_name(table, value))
        decline("enum value without a name");
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names[table].names, value - names[table].lo), &n);
    if (s == NULL)
        fail();
    buf_put(b, s, n);
}

/* ------------------------------------------------------------------------------------------ */
/* a transaction's parts                                                                      */

static void
read_signatures(Rd *r, Rd *out)
{
    Py_ssize_t start = r->pos;
    uint32_t n = count(r, 20, 8);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len;
        take(r, 4);  /* hint */
        var_bytes(r, 64, &len);
    }
    *out = (Rd){r->p + start, 0, r->pos - start};
}

static void
read_time_bounds_opt(Rd *r, Tx *t)
{
    if (u32(r))
        t->time_bounds = take(r, 16);
}

static void
read_signer_key(Rd *r)
{
    uint32_t type = u32(r), n;
    if (type > 3) decline("signer key type");
    take(r, 32);
    if (type == 3) var_bytes(r, 64, &n);
}

/* Transaction / TransactionV0 body: source .. ext */
static void
read_body(Rd *r, Tx *t, const u8 *base)
{
    if (t->v0)
        t->source = (Muxed){take(r, 32), 0, 0};
    else
        read_muxed(r, &t->source);
    t->fee = u32(r);
    t->seq = i64(r);
    if (t->v0) {
        t->cond_type = 0;
        read_time_bounds_opt(r, t);
        if (t->time_bounds) t->cond_type = 1;
    } else {
        t->cond_type = u32(r);
        if (t->cond_type == 1) {
            t->time_bounds = take(r, 16);
        } else if (t->cond_type == 2) {
            read_time_bounds_opt(r, t);
            if (u32(r)) t->ledger_bounds = take(r, 8);
            if ((t->has_min_seq = u32(r) != 0)) t->min_seq = i64(r);
            t->min_seq_age = u64(r);
            t->min_seq_gap = u32(r);
            Py_ssize_t start = r->pos;
            uint32_t n = count(r, 2, 36);
            for (uint32_t i = 0; i < n; i++) read_signer_key(r);
            t->extra_signers = (Rd){r->p + start, 0, r->pos - start};
        } else if (t->cond_type != 0) {
            decline("precondition type");
        }
    }
    Py_ssize_t memo = r->pos;
    uint32_t mt = u32(r), n;
    if (mt == 1) var_bytes(r, 28, &n);
    else if (mt == 2) take(r, 8);
    else if (mt == 3 || mt == 4) take(r, 32);
    else if (mt != 0) decline("memo type");
    t->memo = (Rd){r->p + memo, 0, r->pos - memo};
    t->nops = count(r, MAX_OPS, 8);
    for (uint32_t i = 0; i < t->nops; i++) {
        t->op[i] = (uint32_t)(r->p + r->pos - base);
        skip_value(r, tid.operation);
    }
    t->op[t->nops] = (uint32_t)(r->p + r->pos - base);
    uint32_t ext = u32(r);
    if (ext == 1 && !t->v0) {
        Py_ssize_t start = r->pos;
        skip_value(r, tid.soroban_data);
        t->soroban = 1;
        t->soroban_data = (Rd){r->p + start, 0, r->pos - start};
    } else if (ext != 0) {
        decline("transaction ext");
    }
}

static void
read_envelope(const Led *L, Tx *t)
{
    const LedgerIndexTx *x = t->x;
    Rd r = rd_span(L->p, x->env, x->env_end);
    t->env_type = u32(&r);
    if (t->env_type == 5) {
        read_muxed(&r, &t->fee_source);
        t->fee_bump_fee = i64(&r);
        if (u32(&r) != 2) decline("inner envelope type");
        t->inner_body = r.p + r.pos;
        read_body(&r, t, L->p);
        t->inner_body_end = r.p + r.pos;
        read_signatures(&r, &t->sigs);
        if (u32(&r) != 0) decline("fee bump ext");
        read_signatures(&r, &t->outer_sigs);
    } else if (t->env_type == 0 || t->env_type == 2) {
        t->v0 = t->env_type == 0;
        read_body(&r, t, L->p);
        read_signatures(&r, &t->sigs);
    } else {
        decline("envelope type");
    }
    if (r.pos != r.len) decline("envelope length");
}

static void
read_results(Rd *r, Tx *t, const u8 *base)
{
    t->has_results = 1;
    t->nresults = count(r, MAX_OPS, 4);
    for (uint32_t i = 0; i < t->nresults; i++) {
        t->res[i] = (uint32_t)(r->p + r->pos - base);
        skip_value(r, tid.operation_result);
    }
    t->res[t->nresults] = (uint32_t)(r->p + r->pos - base);
}

static void
read_result(const Led *L, Tx *t)
{
    const LedgerIndexTx *x = t->x;
    Rd r = rd_span(L->p, x->result, x->result_end);
    t->hash = take(&r, 32);
    t->fee_charged = i64(&r);
    t->code = i32(&r);
    t->inner_code = t->code;
    if (t->code == 1 || t->code == -13) {  /* txFEE_BUMP_INNER_SUCCESS / FAILED */
        t->inner_hash = take(&r, 32);
        i64(&r);
        t->inner_code = i32(&r);
        if (t->inner_code == 0 || t->inner_code == -1)
            read_results(&r, t, L->p);
        else if (t->inner_code > 0 || t->inner_code < -18 || t->inner_code == -13)
            decline("inner result code");
        if (u32(&r) != 0) decline("inner result ext");
    } else if (t->code == 0 || t->code == -1) {
        read_results(&r, t, L->p);
    } else if (t->code > 1 || t->code < -18) {
        decline("result code");
    }
    if (u32(&r) != 0) decline("result ext");
    if (r.pos != r.len) decline("result length");
    t->successful = t->code == 0 || t->code == 1;
}

void
read_meta(const Led *L, Tx *t)
{
    const LedgerIndexTx *x = t->x;
    t->meta_v = (int32_t)x->meta_version;
    t->nopmeta = x->op_meta_count;
    t->opmeta = L->ops + x->op_meta;
    t->before = x->before;
    t->before_end = x->before_end;
    t->after = x->after;
    t->after_end = x->after_end;
    t->soroban_meta = x->soroban_meta;
    t->soroban_events = x->soroban_events;
    t->events = x->events;
    t->diagnostic = x->diagnostic;
}

void
read_tx(const Led *L, Py_ssize_t i, Tx *t)
{
    memset(t, 0, sizeof *t);
    t->index = i;
    t->x = &L->tx[i];
    read_envelope(L, t);
    read_result(L, t);
}

/* ------------------------------------------------------------------------------------------ */
/* build()                                                                                    */

static Table tables[] = {
    {"ledgers", ledgers_cols, 0, build_ledgers, NULL, 0, 0, -1},
    {"transactions", transactions_cols, 0, build_transactions, reserve_transactions, 1, 0, -1},
    {"operations", operations_cols, 0, build_operations, NULL, 0, 6, 5},
    {"contract_events", contract_events_cols, 0, build_contract_events, NULL, 3, 0, -1},
    {"token_transfers", token_transfers_cols, 0, build_token_transfers, NULL, 2, 4, 3},
    {"effects", effects_cols, 0, build_effects, NULL, 0, 5, 4},
    {"trades", trades_cols, 0, build_trades, NULL, 0, 2, -1},
};
#define NTABLES ((int)(sizeof tables / sizeof tables[0]))

static void
count_columns(void)
{
    tables[0].ncols = ledgers_ncols;
    tables[1].ncols = transactions_ncols;
    tables[2].ncols = operations_ncols;
    tables[3].ncols = contract_events_ncols;
    tables[4].ncols = token_transfers_ncols;
    tables[5].ncols = effects_ncols;
    tables[6].ncols = trades_ncols;
}

static Table *
find_table(const char *name)
{
    for (int i = 0; i < NTABLES; i++)
        if (strcmp(tables[i].name, name) == 0)
            return &tables[i];
    PyErr_Format(PyExc_ValueError, "no native table %s", name);
    return NULL;
}

/* The ledger of one batch item (raw, index, network); -1 with an exception when it is not one. */
static int
ledger_of(PyObject *item, Py_buffer *raw, Py_buffer *index, Led *L)
{
    PyObject *network;
    if (!PyArg_ParseTuple(item, "y*y*O", raw, index, &network))
        return -1;
    const LedgerIndexHead *h = index->buf;
    if (index->len < (Py_ssize_t)sizeof *h || h->version != LEDGER_INDEX_VERSION ||
        index->len != (Py_ssize_t)(sizeof *h + h->ntx * sizeof(LedgerIndexTx) + h->nenv * sizeof(LedgerIndexEnv) +
                                   h->nop * sizeof(LedgerIndexOp))) {
        PyErr_SetString(PyExc_ValueError, "not a ledger index of this version");
        return -1;
    }
    if (!PyTuple_Check(network) || PyTuple_GET_SIZE(network) < 2 ||
        !PyBytes_Check(PyTuple_GET_ITEM(network, 0)) || PyBytes_GET_SIZE(PyTuple_GET_ITEM(network, 0)) != 32 ||
        !PyBytes_Check(PyTuple_GET_ITEM(network, 1)) || PyBytes_GET_SIZE(PyTuple_GET_ITEM(network, 1)) != 32) {
        PyErr_SetString(PyExc_TypeError, "network must be (network id, native asset contract id, ...)");
        return -1;
    }
    L->p = raw->buf;
    L->len = raw->len;
    L->head = h;
    L->tx = (const LedgerIndexTx *)(h + 1);
    L->env = (const LedgerIndexEnv *)(L->tx + h->ntx);
    L->ops = (const LedgerIndexOp *)(L->env + h->nenv);
    L->closed_at_us = (int64_t)h->close_time * 1000000;
    L->network = network;
    L->network_id = (const u8 *)PyBytes_AS_STRING(PyTuple_GET_ITEM(network, 0));
    L->native_sac = (const u8 *)PyBytes_AS_STRING(PyTuple_GET_ITEM(network, 1));
    if (h->close_time > (uint64_t)INT64_MAX / 1000000) {
        PyErr_SetString(PyExc_ValueError, "close time beyond the timestamp range");
        return -1;
    }
    return 0;
}

/* Check that a ledger's spans lie inside its XDR (declines otherwise). */
static void
check_spans(const Led *L)
{
    const LedgerIndexHead *h = L->head;
    uint32_t len = (uint32_t)L->len;
    if (h->header_end > len || h->evicted_end > len || h->upgrades_end > len || h->header > h->header_end)
        decline("index spans");
    for (uint32_t i = 0; i < h->ntx; i++) {
        const LedgerIndexTx *x = &L->tx[i];
        if (x->env_end > len || x->result_end > len || x->meta_end > len || x->fee_end > len || x->post_end > len ||
            x->env_index >= h->nenv || x->op_meta > h->nop || x->op_meta_count > h->nop - x->op_meta ||
            x->before_end > len || x->after_end > len || x->soroban_meta >= len || x->soroban_events >= len ||
            x->events >= len || x->diagnostic >= len)
            decline("index spans");
    }
    for (uint32_t i = 0; i < h->nenv; i++)
        if (L->env[i].env_end > len || L->env[i].body_end > L->env[i].env_end)
            decline("index spans");
    for (uint32_t i = 0; i < h->nop; i++)
        if (L->ops[i].changes_end > len || L->ops[i].changes > L->ops[i].changes_end || L->ops[i].events >= len)
            decline("index spans");
}

PyDoc_STRVAR(build_doc,
"build(table, ledgers, options, hooks)\n--\n\n"
"Build ``table`` over ``ledgers``, each ``(raw LedgerCloseMeta XDR, ledger index, network)`` with network\n"
"``(network id, native asset contract id, passphrase)``. Returns ``(columns, row_ends, declined)``: each\n"
"column as ``(kind, length, nulls, validity, data, offsets, items, item_count)``, the row count after each\n"
"ledger, and ``{position: reason}`` of the ledgers left to the Python rules (their rows left out).");

static PyObject *
build(PyObject *module, PyObject *args)
{
    const char *name;
    PyObject *items, *options, *hooks;
    if (!PyArg_ParseTuple(args, "sO!OO", &name, &PyList_Type, &items, &options, &hooks))
        return NULL;
    if (codec == NULL)
        return PyErr_Format(PyExc_RuntimeError, "build() called before setup()");
    Table *spec = find_table(name);
    if (spec == NULL)
        return NULL;
    Table tb = *spec;
    tb.options = options;
    tb.hooks = hooks;
    if (!PyTuple_Check(options) || PyTuple_GET_SIZE(options) < tb.nopts ||
        (tb.nhooks && (!PyTuple_Check(hooks) || PyTuple_GET_SIZE(hooks) < tb.nhooks)) ||
        (tb.cache >= 0 && !PyDict_Check(PyTuple_GET_ITEM(hooks, tb.cache))))
        return PyErr_Format(PyExc_TypeError, "%s takes a tuple of %d options and %d hooks (hook %d a dict)", name,
                            tb.nopts, tb.nhooks, tb.cache);
    if (strcmp(name, "contract_events") == 0 && PyTuple_GET_ITEM(options, 1) != Py_None &&
        !PyBytes_Check(PyTuple_GET_ITEM(options, 1)))
        return PyErr_Format(PyExc_TypeError, "contract_events: the wanted contract ids must be bytes or None");
    if (strcmp(name, "token_transfers") == 0 && !PyUnicode_Check(PyTuple_GET_ITEM(options, 0)))
        return PyErr_Format(PyExc_TypeError, "token_transfers: the source option must be str");
    Col *cols = PyMem_Calloc(tb.ncols, sizeof(Col));
    ColMark *marks = PyMem_Calloc(tb.ncols, sizeof(ColMark));
    PyObject *ends = PyList_New(0), *declined = PyDict_New(), *out = NULL;
    Guard g = {0};
    Guard *saved = guard;
    guard = &g;
    if (cols == NULL || marks == NULL || ends == NULL || declined == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    tb.cols = cols;
    if (setjmp(g.jump) != 0)
        goto done;  /* out of memory while the columns were started */
    for (int c = 0; c < tb.ncols; c++)
        col_init(&cols[c], tb.spec[c].kind);
    for (Py_ssize_t i = 0; tb.reserve != NULL && i < PyList_GET_SIZE(items); i++) {
        Py_buffer raw, index;
        Led L;
        if (ledger_of(PyList_GET_ITEM(items, i), &raw, &index, &L) < 0)
            goto done;
        if (setjmp(g.jump) == 0)
            tb.reserve(&tb, &L);
        PyBuffer_Release(&raw);
        PyBuffer_Release(&index);
        if (g.failed)
            goto done;
    }
    if (setjmp(g.jump) != 0)
        goto done;
    for (int c = 0; c < tb.ncols; c++)
        if (cols[c].plan)
            buf_size(&cols[c].data, cols[c].plan);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        Py_buffer raw, index;
        Led L;
        if (ledger_of(PyList_GET_ITEM(items, i), &raw, &index, &L) < 0)
            goto done;
        L.position = i;
        for (int c = 0; c < tb.ncols; c++)
            col_mark(&cols[c], &marks[c]);
        g.reason = NULL;
        if (setjmp(g.jump) == 0) {
            check_spans(&L);
            tb.build(&tb, &L);
        } else {
            for (int c = 0; c < tb.ncols; c++)
                col_rollback(&cols[c], &marks[c]);
        }
        PyBuffer_Release(&raw);
        PyBuffer_Release(&index);
        if (g.failed)
            goto done;
        if (g.reason != NULL) {
            PyObject *k = PyLong_FromSsize_t(i), *v = PyUnicode_FromString(g.reason);
            int r = (k && v) ? PyDict_SetItem(declined, k, v) : -1;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (r < 0)
                goto done;
        }
        PyObject *n = PyLong_FromSsize_t(cols[0].n);
        if (n == NULL || PyList_Append(ends, n) < 0) {
            Py_XDECREF(n);
            goto done;
        }
        Py_DECREF(n);
    }
    PyObject *exported = PyList_New(tb.ncols);
    for (int c = 0; exported != NULL && c < tb.ncols; c++) {
        PyObject *col = col_export(&cols[c]);
        if (col == NULL) {
            Py_CLEAR(exported);
            break;
        }
        PyList_SET_ITEM(exported, c, col);
    }
    if (exported != NULL)
        out = Py_BuildValue("(NOO)", exported, ends, declined);
done:
    guard = saved;
    if (cols != NULL)
        for (int c = 0; c < tb.ncols; c++)
            col_free(&cols[c]);
    PyMem_Free(cols);
    PyMem_Free(marks);
    Py_XDECREF(ends);
    Py_XDECREF(declined);
    return out;
}

PyDoc_STRVAR(columns_doc,
"columns(table)\n--\n\n``(name, kind)`` of each column ``table`` builds, in order.");

static PyObject *
columns(PyObject *module, PyObject *arg)
{
    const char *name = PyUnicode_AsUTF8(arg);
    Table *t = name ? find_table(name) : NULL;
    if (t == NULL)
        return NULL;
    PyObject *out = PyList_New(t->ncols);
    for (int c = 0; out != NULL && c < t->ncols; c++) {
        PyObject *e = Py_BuildValue("(sC)", t->spec[c].name, t->spec[c].kind);
        if (e == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, c, e);
    }
    return out;
}

PyDoc_STRVAR(setup_doc,
"setup(codec, names)\n--\n\n"
"The fast XDR codec whose type table the builders skip values with, and the names they write for enum\n"
"values: ``names[i]`` is ``(lowest value, tuple of names)`` for the builders' name table ``i``.");

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *arg, *tables;
    if (!PyArg_ParseTuple(args, "OO!", &arg, &PyTuple_Type, &tables))
        return NULL;
    if (PyTuple_GET_SIZE(tables) > NNAMES)
        return PyErr_Format(PyExc_ValueError, "at most %d name tables", NNAMES);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tables); i++) {
        long long lo;
        PyObject *tuple;
        PyObject *entry = PyTuple_GET_ITEM(tables, i);
        if (entry == Py_None) {
            Py_CLEAR(names[i].names);
            continue;
        }
        if (!PyArg_ParseTuple(entry, "LO!", &lo, &PyTuple_Type, &tuple))
            return NULL;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(tuple); k++)
            if (PyTuple_GET_ITEM(tuple, k) != Py_None && !PyUnicode_Check(PyTuple_GET_ITEM(tuple, k)))
                return PyErr_Format(PyExc_TypeError, "names must be str or None");
        names[i].lo = lo;
        names[i].n = PyTuple_GET_SIZE(tuple);
        Py_XSETREF(names[i].names, Py_NewRef(tuple));
    }
    const FastXdrApi *api = PyCapsule_Import(FASTXDR_API_NAME, 0);
    if (api == NULL)
        return NULL;
    if (api->version != FASTXDR_API_VERSION)
        return PyErr_Format(PyExc_ImportError, "_fastxdr API version %d, expected %d", api->version,
                            FASTXDR_API_VERSION);
    Tids t;
    struct { int *dst; const char *name; } names[] = {
        {&t.operation, "Operation"}, {&t.operation_result, "OperationResult"}, {&t.scval, "SCVal"},
        {&t.ledger_key, "LedgerKey"}, {&t.ledger_entry_changes, "LedgerEntryChanges"},
        {&t.contract_event, "ContractEvent"}, {&t.signer_key, "SignerKey"}, {&t.sc_address, "SCAddress"},
        {&t.claim_predicate, "ClaimPredicate"}, {&t.soroban_data, "SorobanTransactionData"},
        {&t.host_function, "HostFunction"}, {&t.auth_entry, "SorobanAuthorizationEntry"},
        {&t.stellar_value_ext, "StellarValueExt"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].dst = api->type_index(arg, names[i].name)) < 0)
            return NULL;
    if (sha256_fn == NULL) {
        PyObject *hashlib = PyImport_ImportModule("hashlib");
        sha256_fn = hashlib ? PyObject_GetAttrString(hashlib, "sha256") : NULL;
        Py_XDECREF(hashlib);
        if (sha256_fn == NULL)
            return NULL;
    }
    xdr_api = api;
    tid = t;
    Py_XSETREF(codec, Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyMethodDef native_functions[] = {
    {"build", build, METH_VARARGS, build_doc},
    {"columns", columns, METH_O, columns_doc},
    {"setup", setup, METH_VARARGS, setup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "The processors' native table builders: tables read from raw ledger XDR into Arrow buffers.",
    .m_size = -1,
    .m_methods = native_functions,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    count_columns();
    if (PyType_Ready(&ChunkType) < 0)
        return NULL;
    return PyModule_Create(&native_module);
}
