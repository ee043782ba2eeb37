/*
 * native.h: the processors' native table builders (module cdp_ray.processors._native).
 *
 * A builder reads what its table needs straight from a ledger's LedgerCloseMeta XDR, located by the
 * ledger index of cdp_ray.xdr.fast (fastxdr_api.h), and appends the rows to column buffers laid out
 * as Arrow lays them out; Python wraps the buffers as arrays, no value becomes a Python object. The XDR
 * was checked when it was indexed, and every read here is bounds-checked again. Whatever a builder
 * does not reproduce exactly (a value the Python rules would reject, an unusual form) declines the
 * ledger: its rows are dropped and the Python processor builds that ledger's rows instead.
 */
#ifndef CDP_RAY_NATIVE_H
#define CDP_RAY_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include "../../xdr/fast/fastxdr_api.h"

typedef unsigned char u8;

/* strkey version bytes: G, C, M, B, L (strkey.h, which text.c includes) */
enum { VB_ACCOUNT = 6 << 3, VB_CONTRACT = 2 << 3, VB_MUXED = 12 << 3, VB_BALANCE = 1 << 3, VB_POOL = 11 << 3,
       VB_PREAUTH = 19 << 3, VB_HASHX = 23 << 3, VB_SIGNED = 15 << 3 };

/* ------------------------------------------------------------------------------------------ */
/* growable buffers                                                                           */

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

void buf_reserve(Buf *b, Py_ssize_t n);  /* room for n more bytes, growing by doubling (fails when out of memory) */
void buf_size(Buf *b, Py_ssize_t cap);   /* capacity at least ``cap``, exactly */
void buf_free(Buf *b);

static inline void
buf_put(Buf *b, const void *s, Py_ssize_t n)
{
    if (b->cap - b->len < n) buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void
buf_byte(Buf *b, char c)
{
    if (b->cap == b->len) buf_reserve(b, 1);
    b->p[b->len++] = c;
}

static inline void
buf_cstr(Buf *b, const char *s)
{
    buf_put(b, s, (Py_ssize_t)strlen(s));
}

/* ------------------------------------------------------------------------------------------ */
/* declining                                                                                  */

/* The state of one build() call: the ledger being built jumps back here to decline, or to fail with a
   Python exception set (a callback raised, memory ran out). */
typedef struct {
    jmp_buf jump;
    int failed;            /* a Python exception is set: the build fails */
    const char *reason;    /* why the ledger was declined (for tests and debugging) */
} Guard;

extern Guard *guard;  /* the build in progress */

__attribute__((noreturn)) void decline(const char *why);
__attribute__((noreturn)) void fail(void);  /* a Python exception is set */

/* ------------------------------------------------------------------------------------------ */
/* reading XDR                                                                                */

typedef struct {
    const u8 *p;
    Py_ssize_t pos, len;
} Rd;

static inline Rd
rd_span(const u8 *base, uint32_t start, uint32_t end)
{
    Rd r = {base + start, 0, (Py_ssize_t)end - (Py_ssize_t)start};
    if (end < start) decline("bad span");
    return r;
}

static inline const u8 *
take(Rd *r, Py_ssize_t n)
{
    if (n < 0 || r->len - r->pos < n) decline("truncated XDR");
    const u8 *at = r->p + r->pos;
    r->pos += n;
    return at;
}

static inline uint32_t
be32(const u8 *q)
{
    return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | (uint32_t)q[3];
}

static inline uint64_t
be64(const u8 *q)
{
    return ((uint64_t)be32(q) << 32) | be32(q + 4);
}

static inline uint32_t u32(Rd *r) { return be32(take(r, 4)); }
static inline int32_t i32(Rd *r) { return (int32_t)be32(take(r, 4)); }
static inline uint64_t u64(Rd *r) { return be64(take(r, 8)); }
static inline int64_t i64(Rd *r) { return (int64_t)be64(take(r, 8)); }

/* A variable-length opaque or string: its bytes (padding stepped over), its length in *n. */
static inline const u8 *
var_bytes(Rd *r, uint32_t max, uint32_t *n)
{
    *n = u32(r);
    if (*n > max) decline("opaque beyond its maximum");
    const u8 *at = take(r, *n);
    take(r, (4 - (*n & 3)) & 3);
    return at;
}

/* An array length, at most ``max`` and at most the items the input can hold (``min_size`` bytes each). */
static inline uint32_t
count(Rd *r, uint32_t max, Py_ssize_t min_size)
{
    uint32_t n = u32(r);
    if (n > max || (Py_ssize_t)n * min_size > r->len - r->pos) decline("array length");
    return n;
}

/* The codec's checked skip over one value of type ``tid`` (fastxdr_api.h). */
void skip_value(Rd *r, int tid);

/* Type indices of the codec, looked up at setup(). */
typedef struct {
    int operation, operation_result, scval, ledger_key, ledger_entry_changes, contract_event, signer_key,
        sc_address, claim_predicate, soroban_data, host_function, auth_entry, stellar_value_ext;
} Tids;
extern Tids tid;
extern const FastXdrApi *xdr_api;
extern PyObject *codec;

/* ------------------------------------------------------------------------------------------ */
/* columns                                                                                    */

enum {
    C_BOOL = 'b', C_I32 = 'i', C_U32 = 'I', C_I64 = 'q', C_U64 = 'Q', C_F64 = 'd', C_TIME = 't', C_STR = 's',
    C_STRS = 'S', /* list<string> */
    C_U32S = 'U', /* list<uint32> */
};

typedef struct {
    const char *name;
    char kind;
} ColSpec;

typedef struct {
    char kind;
    Py_ssize_t n, nulls;      /* rows, null rows */
    Buf data;                 /* fixed-width values, bits for booleans, bytes of strings; list items */
    Buf offs;                 /* int32 offsets: strings, lists */
    Buf valid;                /* validity bits, allocated at the first null */
    Buf items;                /* list<string>: the items' int32 offsets (their bytes are in data) */
    Py_ssize_t nitems;
    Py_ssize_t plan;          /* bytes of data the table's reserve function expects (sized once) */
} Col;

/* A column's lengths, to roll a declined ledger back. */
typedef struct {
    Py_ssize_t n, nulls, data, offs, items, nitems;
} ColMark;

void col_init(Col *c, char kind);
void col_free(Col *c);
void col_mark(const Col *c, ColMark *m);
void col_rollback(Col *c, const ColMark *m);
/* (kind, length, nulls, validity or None, data, offsets or None, items or None, item count); the buffers are
   handed over (the column is left empty) */
PyObject *col_export(Col *c);
extern PyTypeObject ChunkType;

void col_null(Col *c);
void col_bool(Col *c, int v);
void col_i32(Col *c, int32_t v);
void col_u32(Col *c, uint32_t v);
void col_i64(Col *c, int64_t v);
void col_u64(Col *c, uint64_t v);
void col_f64(Col *c, double v);
void col_str(Col *c, const char *s, Py_ssize_t n);
void col_cstr(Col *c, const char *s);
/* Write a string value's bytes into col_text(c) (its data buffer), then col_end(c). */
static inline Buf *col_text(Col *c) { return &c->data; }
void col_end(Col *c);
/* list<string> / list<uint32>: col_list_item_*() per item, then col_end(c); col_null() for a null list. */
Buf *col_item_text(Col *c);   /* write an item's bytes, then col_item_end() */
void col_item_end(Col *c);
void col_item_u32(Col *c, uint32_t v);

/* ------------------------------------------------------------------------------------------ */
/* text                                                                                       */

void put_b64(Buf *b, const u8 *s, Py_ssize_t n);
void put_hex(Buf *b, const u8 *s, Py_ssize_t n);
void put_u64(Buf *b, uint64_t v);
void put_i64(Buf *b, int64_t v);
void put_i128(Buf *b, __int128 v);
void put_u128(Buf *b, unsigned __int128 v);
void put_u256(Buf *b, const uint64_t w[4], int negative);  /* magnitude w[0] most significant */
void put_strkey(Buf *b, unsigned version, const u8 *payload, Py_ssize_t n);
void put_muxed_strkey(Buf *b, const u8 key[32], uint64_t id);
/* Python's bytes.decode("utf-8", "replace") of s[0:n], as UTF-8 */
void put_utf8_replace(Buf *b, const u8 *s, Py_ssize_t n);
int utf8_valid(const u8 *s, Py_ssize_t n);
/* JSON string of UTF-8 text: orjson's escapes (go=1 adds Go's <, >, &, U+2028, U+2029 escapes) */
void put_json_str(Buf *b, const u8 *s, Py_ssize_t n, int go);
/* Go's float64 spelling (encoding/json), of a double */
void put_go_float(Buf *b, double v);
/* stroops / 10^7 as the nearest double, as Python's int / int */
double stroops_real(int64_t v);
/* Go's big.Rat FloatString(7) of n/d (halves away from zero); declines on d == 0 */
void put_rat7(Buf *b, __int128 n, int64_t d);
/* Rust escape-bytes of s[0:n] (printable ASCII kept, \0 \t \n \r \\ named, else \xNN) */
void put_escape_bytes(Buf *b, const u8 *s, Py_ssize_t n);

/* ------------------------------------------------------------------------------------------ */
/* JSON objects with sorted keys (json.c)                                                     */

#define OBJ_MAX 48
typedef struct {
    const char *key[OBJ_MAX];   /* static strings */
    Py_ssize_t start[OBJ_MAX], end[OBJ_MAX];
    int n;
    Buf *scratch;               /* the values' text */
    Py_ssize_t base;
} Obj;

void obj_init(Obj *o, Buf *scratch);
Buf *obj_key(Obj *o, const char *key);  /* write the value's JSON to the returned buffer, then obj_end() */
void obj_end(Obj *o);
void obj_str(Obj *o, const char *key, const u8 *s, Py_ssize_t n);  /* UTF-8 text */
void obj_cstr(Obj *o, const char *key, const char *s);
void obj_raw(Obj *o, const char *key, const char *json);
void obj_i64(Obj *o, const char *key, int64_t v);
void obj_u64(Obj *o, const char *key, uint64_t v);
void obj_float(Obj *o, const char *key, double v);
void obj_strkey(Obj *o, const char *key, unsigned version, const u8 *payload, Py_ssize_t n);
void obj_write(Obj *o, Buf *out);  /* the object, keys sorted, to ``out`` (not the scratch) */

/* sha256 of s[0:n] as hex (hashlib's) */
void put_sha256_hex(Buf *b, const u8 *s, Py_ssize_t n);

/* ------------------------------------------------------------------------------------------ */
/* a ledger being built                                                                       */

typedef struct {
    const u8 *p;                  /* LedgerCloseMeta XDR */
    Py_ssize_t len;
    const LedgerIndexHead *head;
    const LedgerIndexTx *tx;      /* head->ntx */
    const LedgerIndexEnv *env;    /* head->nenv */
    const LedgerIndexOp *ops;     /* head->nop */
    int64_t closed_at_us;         /* close time, microseconds */
    Py_ssize_t position;          /* in the batch */
    PyObject *network;            /* (network_id, native SAC id, sac_columns) of its passphrase */
    const u8 *network_id, *native_sac;
} Led;

/* A MuxedAccount: its key and id (muxed), read from XDR. */
typedef struct {
    const u8 *key;
    uint64_t id;
    int muxed;
} Muxed;

/* The parts of a transaction the builders read (offsets into the ledger's XDR). */
#define MAX_OPS 100
typedef struct {
    Py_ssize_t index;                  /* 0-based apply position */
    const LedgerIndexTx *x;
    uint32_t env_type;                 /* 0 (v0), 2, 5 (fee bump) */
    /* fee bump */
    Muxed fee_source;
    int64_t fee_bump_fee;
    Rd outer_sigs;                     /* signatures array (count first) of the outer envelope */
    /* the (inner) transaction */
    int v0;                            /* a TransactionV0: source is a bare ed25519 key */
    Muxed source;                      /* (a v0 transaction's key, not muxed) */
    uint32_t fee;
    int64_t seq;
    uint32_t cond_type;                /* PreconditionType (v0: 1 with time bounds, else 0) */
    const u8 *time_bounds;             /* TimeBounds, NULL when none */
    const u8 *ledger_bounds;           /* PRECOND_V2 */
    int has_min_seq;
    int64_t min_seq;
    uint64_t min_seq_age;
    uint32_t min_seq_gap;
    Rd extra_signers;                  /* array of SignerKey (count first), PRECOND_V2 */
    Rd memo;                           /* the Memo */
    uint32_t nops;
    uint32_t op[MAX_OPS + 1];          /* offsets of the operations, op[nops] their end */
    int soroban;                       /* ext.v == 1 */
    Rd soroban_data;                   /* SorobanTransactionData */
    Rd sigs;                           /* signatures array of the (inner) envelope */
    const u8 *inner_body;              /* fee bump: the inner Transaction, and its end */
    const u8 *inner_body_end;
    /* result */
    const u8 *hash;                    /* 32 bytes */
    int64_t fee_charged;
    int32_t code;                      /* TransactionResultCode (outer) */
    const u8 *inner_hash;              /* fee bump: InnerTransactionResultPair's hash, NULL without one */
    int32_t inner_code;                /* the code holding operation results (the inner one of a fee bump) */
    int has_results;
    uint32_t nresults;
    uint32_t res[MAX_OPS + 1];         /* offsets of the OperationResults */
    int successful;
    /* meta (read_meta(): the parts the ledger index located) */
    int32_t meta_v;
    uint32_t nopmeta;
    const LedgerIndexOp *opmeta;       /* each operation's changes and (v4) events */
    uint32_t before, before_end, after, after_end;  /* txChanges(Before), txChangesAfter; 0, 0 when absent */
    uint32_t soroban_meta;             /* SorobanTransactionMeta (v3) or V2 (v4), 0 when absent */
    uint32_t soroban_events;           /* v3: its events array */
    uint32_t events, diagnostic;       /* v4: transaction events; diagnostic events (v4, or v3's sorobanMeta) */
} Tx;

/* A transaction's envelope and result; read_meta() adds its meta. */
void read_tx(const Led *L, Py_ssize_t i, Tx *t);
void read_meta(const Led *L, Tx *t);

/* A ledger's context and the columns a table builds. */
typedef struct Table Table;
typedef void (*build_fn)(Table *tb, const Led *L);
struct Table {
    const char *name;
    const ColSpec *spec;
    int ncols;
    build_fn build;
    build_fn reserve;   /* optional: called per ledger before any is built, to size the columns once */
    int nopts, nhooks;  /* the options and hooks tuples' sizes */
    int cache;          /* the hook that is a dict (a cache), -1 for none */
    Col *cols;
    PyObject *options;  /* the builder's options tuple */
    PyObject *hooks;    /* Python callables the builder calls, per table */
};

/* ------------------------------------------------------------------------------------------ */
/* shared readers                                                                             */

void read_muxed(Rd *r, Muxed *m);
const u8 *read_account_id(Rd *r);  /* AccountID (ed25519): its key */
/* Go's Address(): M... when muxed, else G... */
void put_muxed_address(Buf *b, const Muxed *m);

/* Names of enum values, handed over by setup() (Go's String() of the SDK's enums, snake-case operation
   types): enum_name() writes one, declining on a value without a name. */
enum {
    N_TX_RESULT_CODE, N_OP_TYPE, N_MEMO_TYPE, N_EVENT_TYPE, N_LEDGER_ENTRY_TYPE, N_OP_RESULT_CODE,
    N_SC_ERROR_TYPE, N_SC_ERROR_CODE, N_SC_ERROR_TYPE_GO, N_SC_ERROR_CODE_GO, N_SCV_ARM, N_HOST_FUNCTION_TYPE,
    N_OP_INNER_CODE,  /* + operation type: each operation type's result code */
    NNAMES = N_OP_INNER_CODE + 64
};
void put_enum_name(Buf *b, int table, int64_t value);
int has_enum_name(int table, int64_t value);

/* An SCAddress: its strkey version byte and payload. */
typedef struct {
    uint32_t type;
    unsigned version;
    u8 payload[40];
    Py_ssize_t len;
} ScAddress;

int read_sc_address(Rd *r, ScAddress *a);
void put_sc_address(Buf *b, Rd *r);
/* stellar-etl's JSON of the SCVal read next (cdp_ray.processors.scval.scval_json); with ``go`` its strings
   are escaped as Go's encoder escapes them (<, >, &) */
void put_scval_json(Buf *b, Rd *r, int depth, int go);
/* Go's ScVal.String() of the SCVal read next (operation_details.scval_string) */
void put_scval_go(Buf *b, Rd *r, int depth);

/* What a token movement reader looks at in a ContractEvent (cdp_ray.processors.scval.event_summary). */
typedef struct {
    const u8 *contract;
    int32_t type;
    uint32_t ntopics;
    const u8 *symbol;          /* topic 0 when a symbol */
    uint32_t symbol_len;
    int has_addr[2];           /* topics 1 and 2 when addresses */
    ScAddress addr[2];
    const u8 *name;            /* the last topic when a string */
    uint32_t name_len;
    uint32_t data_type;
    Rd data;                   /* the data SCVal */
    int has_amount;            /* the data when an i128 */
    __int128 amount;
} Summary;

/* Read the ContractEvent at ``r`` (stepping past it). */
void summarize(Rd *r, Summary *s);
int symbol_is(const Summary *s, const char *text);
__int128 read_i128(Rd *r);

/* The asset columns (asset, asset_type, asset_code, asset_issuer) of a SEP-41 event whose last topic names a
   Stellar asset, from the ``sac_columns`` hook, cached per (contract, name). */
typedef struct {
    PyObject *cache;        /* (contract + name bytes) -> asset columns */
    PyObject *sac_columns;  /* hook: (name, contract id, passphrase) -> asset columns */
    PyObject *passphrase;
    PyObject *native, *none;
} SacAssets;

PyObject *sac_columns(SacAssets *a, const u8 *contract, const u8 *name, uint32_t len);  /* borrowed */

/* An Asset read from XDR (operations.c). */
typedef struct {
    uint32_t type;              /* AssetType: 0 native, 1, 2 */
    const u8 *code;             /* NUL-stripped */
    Py_ssize_t code_len;
    const u8 *issuer;           /* 32 bytes */
} Asset;

extern const char *ASSET_TYPES[];  /* "native", "credit_alphanum4", "credit_alphanum12" */
void read_asset(Rd *r, Asset *a);
void put_code_json(Buf *b, const Asset *a);       /* the code as a JSON string */
void put_canonical(Buf *b, const Asset *a);       /* "native" or "CODE:ISSUER" as a JSON string */
void put_predicate(Buf *b, Rd *r, int depth);     /* a ClaimPredicate's JSON (operation_details) */

/* An operation's ledger entry changes as (pre, post) pairs ordered by ledger key (effects.c; the keys of
   accounts, trustlines, data and claimable balances in full, of other entries their type), as Go's ingest
   pairs and orders them: 0, or -1 when there are more than MAX_PAIRS. */
#define MAX_PAIRS 1024
typedef struct {
    const XdrEntry *pre, *post;
    u8 key[128];
    int key_len;
    int order;
} Pair;
extern Pair pairs[MAX_PAIRS];
extern int npairs;
int read_pairs(const Led *L, const Tx *t, uint32_t index);

/* stellar-etl's asset id of an asset (operations.c: the ``asset_id`` hook, cached) */
int64_t asset_id_of(const Asset *a, PyObject *hook);

/* A ClaimAtom read from XDR (operations.c): v0 and order-book claims name a seller and an offer, pool
   claims a pool. */
typedef struct {
    uint32_t type;                    /* ClaimAtomType: 0 v0, 1 order book, 2 liquidity pool */
    const u8 *seller, *pool;          /* ed25519 key; pool id */
    int64_t offer_id;
    Asset sold, bought;
    const u8 *sold_xdr;               /* the sold asset's XDR */
    Py_ssize_t sold_len;
    const u8 *bought_xdr;
    Py_ssize_t bought_len;
    int64_t amount_sold, amount_bought;
} ClaimAtom;

void read_claim_atom(Rd *r, ClaimAtom *c);
/* Of a path payment's success arm read next (offers, last): Go's PathPaymentStrictReceiveResult.SendAmount()
   and the last payment's amount. 0, or -1 when the send amount passes 64 bits. */
int path_amounts(Rd *r, int64_t *sent, int64_t *last);

/* scval.sac_event over a Summary: the function (0 transfer, 1 mint, 2 clawback, 3 burn) with the asset
   columns (borrowed), sender and recipient (NULL where the function has none); -1 when the event is not a
   Stellar Asset Contract movement. */
int sac_event(const Summary *s, SacAssets *a, PyObject **asset, const ScAddress **from, const ScAddress **to);

/* Call a Python hook: declines are not raised; an exception fails the build. */
PyObject *call_hook(PyObject *fn, PyObject *args);

/* builders */
extern const ColSpec ledgers_cols[], transactions_cols[], operations_cols[], contract_events_cols[],
    token_transfers_cols[], effects_cols[], trades_cols[];
extern const int ledgers_ncols, transactions_ncols, operations_ncols, contract_events_ncols, token_transfers_ncols,
    effects_ncols, trades_ncols;
void build_ledgers(Table *tb, const Led *L);
void build_transactions(Table *tb, const Led *L);
void build_operations(Table *tb, const Led *L);
void build_contract_events(Table *tb, const Led *L);
void build_token_transfers(Table *tb, const Led *L);
void build_effects(Table *tb, const Led *L);
void build_trades(Table *tb, const Led *L);
void reserve_transactions(Table *tb, const Led *L);

#endif
