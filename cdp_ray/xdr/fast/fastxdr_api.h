/*
 * fastxdr_api.h: what cdp_ray.xdr.fast._fastxdr offers other C extensions.
 *
 * A ledger index (Codec.ledger_index) is a bytes object: a LedgerIndexHead, then ``ntx`` LedgerIndexTx
 * (transactions in apply order, each with the envelope its result's hash names, and the parts of its
 * meta), then ``nenv`` LedgerIndexEnv (the transaction set's envelopes in set order), then ``nop``
 * LedgerIndexOp (the operations' metas, each transaction's from its ``op_meta``). Offsets are into the
 * LedgerCloseMeta XDR the index was made from, which was checked like decode() checks it; 0 marks a
 * part that is absent (no part starts at offset 0).
 *
 * The capsule ``_fastxdr.API`` (FASTXDR_API_NAME) holds a FastXdrApi: a checked skip over one value of
 * any type of a codec, and a scanner of raw LedgerEntryChanges that reports each change's entry as an
 * XdrEntry (the balance holders' fields read, the rest located).
 */
#ifndef CDP_RAY_FASTXDR_API_H
#define CDP_RAY_FASTXDR_API_H

#include <Python.h>
#include <stdint.h>

#define FASTXDR_API_NAME "cdp_ray.xdr.fast._fastxdr.API"
#define FASTXDR_API_VERSION 1
#define LEDGER_INDEX_VERSION 2

/* LedgerIndexHead.flags */
#define LI_NONCANONICAL 1u  /* a non-canonical form was read: the raw bytes are not the values' encoding */
#define LI_UNMATCHED 2u     /* a transaction's hash names no envelope of the set (wrong network?) */

typedef struct {
    uint64_t close_time;
    uint64_t soroban_state;        /* totalByteSizeOfLiveSorobanState (LCM v1, v2), else 0 */
    int64_t soroban_fee_write;     /* ext.v1.sorobanFeeWrite1KB (LCM v1, v2 with ext v1), else 0 */
    uint32_t version;              /* LEDGER_INDEX_VERSION */
    uint32_t lcm_version;
    uint32_t sequence, protocol;
    uint32_t ntx, nenv;
    uint32_t header_entry;         /* LedgerHeaderHistoryEntry: its hash, then the header */
    uint32_t header, header_end;   /* LedgerHeader */
    uint32_t evicted, evicted_end; /* evictedKeys, count included (LCM v1, v2), else 0, 0 */
    uint32_t upgrades, upgrades_end; /* upgradesProcessing, count included */
    uint32_t has_fee_write;        /* LCM v1, v2 with ext v1 */
    uint32_t flags;                /* LI_* */
    uint32_t nop;                  /* LedgerIndexOp records */
} LedgerIndexHead;

typedef struct {
    uint32_t processing, processing_end; /* TransactionResultMeta (LCM v0, v1) or TransactionResultMetaV1 */
    uint32_t result, result_end;         /* TransactionResultPair */
    uint32_t fee, fee_end;               /* feeProcessing */
    uint32_t meta, meta_end;             /* txApplyProcessing */
    uint32_t post, post_end;             /* postTxApplyFeeProcessing (LCM v2), else 0, 0 */
    uint32_t env, env_end;               /* the envelope; 0, 0 when unmatched */
    uint32_t body, body_end;             /* its signed body: TransactionV0, Transaction or FeeBumpTransaction */
    uint32_t env_type;                   /* EnvelopeType: 0, 2 or 5 */
    uint32_t env_index;                  /* its position in the set; UINT32_MAX when unmatched */
    /* the meta's parts */
    uint32_t meta_version;               /* TransactionMeta's v: 0 .. 4 */
    uint32_t before, before_end;         /* txChanges (v1) / txChangesBefore (v2 .. v4) */
    uint32_t after, after_end;           /* txChangesAfter (v2 .. v4) */
    uint32_t soroban_meta;               /* SorobanTransactionMeta (v3) / SorobanTransactionMetaV2 (v4), if set */
    uint32_t soroban_events;             /* v3: sorobanMeta.events (count first) */
    uint32_t events;                     /* v4: events, TransactionEvents (count first) */
    uint32_t diagnostic;                 /* v4: diagnosticEvents; v3: sorobanMeta.diagnosticEvents */
    uint32_t op_meta, op_meta_count;     /* the operations' metas: LedgerIndexOp records op_meta .. + count */
} LedgerIndexTx;

typedef struct {
    uint32_t changes, changes_end;       /* LedgerEntryChanges */
    uint32_t events;                     /* OperationMetaV2 (v4): its ContractEvents (count first), else 0 */
} LedgerIndexOp;

typedef struct {
    uint32_t env, env_end, body, body_end, env_type;
} LedgerIndexEnv;

/* One LedgerEntry of a change, as the scanner reads it; pointers point into the scanned buffer. */
typedef struct {
    int64_t type;                   /* LedgerEntryType */
    int nbal;                       /* balances: 0 (not a balance holder), 1, or 2 (pool reserves) */
    int pool_share;                 /* a pool-share trustline */
    unsigned char holder[33];       /* strkey payload: ed25519 key, pool id, or claimable balance type + hash */
    Py_ssize_t holder_len;
    const unsigned char *asset[2];  /* Asset / TrustLineAsset XDR, NULL for an account's native balance */
    Py_ssize_t asset_len[2];
    int64_t amount[2];
    const unsigned char *sponsor;   /* ed25519 key of the sponsoring account, NULL when not sponsored */
    const unsigned char *entry;     /* the LedgerEntry's XDR */
    Py_ssize_t entry_len;
    const unsigned char *data;      /* its LedgerEntryData's arm (after the type) */
} XdrEntry;

/* Called per change of a scanned LedgerEntryChanges: its LedgerEntryChangeType and, except for a
   removal (entry NULL; ``key``/``key_len`` its LedgerKey XDR), the entry. Non-zero stops the scan. */
typedef int (*xdr_change_fn)(void *ctx, int change_type, const XdrEntry *entry, const unsigned char *key,
                             Py_ssize_t key_len);

typedef struct {
    int version;  /* FASTXDR_API_VERSION */
    /* The type index of ``name`` in ``codec``, -1 with an exception set when it has none. */
    int (*type_index)(PyObject *codec, const char *name);
    /* Step over one value of type ``tid`` at ``*pos`` (checked like decode()); -1 with an exception set. */
    int (*skip)(PyObject *codec, int tid, const unsigned char *p, Py_ssize_t len, Py_ssize_t *pos);
    /* Scan a LedgerEntryChanges filling p[0:len] (checked like decode()), calling ``each`` per change;
       -1 with an exception set, else what ``each`` last returned (0 when it never stopped the scan). */
    int (*changes)(PyObject *codec, const unsigned char *p, Py_ssize_t len, xdr_change_fn each, void *ctx);
} FastXdrApi;

#endif
