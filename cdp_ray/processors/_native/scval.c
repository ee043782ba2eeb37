/* scval.c: Soroban values read from XDR: SCAddress strkeys and stellar-etl's JSON of an SCVal
   (cdp_ray.processors.scval.scval_json). */
#include "native.h"

#define SCVAL_DEPTH 100

enum {
    SCV_BOOL, SCV_VOID, SCV_ERROR, SCV_U32, SCV_I32, SCV_U64, SCV_I64, SCV_TIMEPOINT, SCV_DURATION, SCV_U128,
    SCV_I128, SCV_U256, SCV_I256, SCV_BYTES, SCV_STRING, SCV_SYMBOL, SCV_VEC, SCV_MAP, SCV_ADDRESS,
    SCV_CONTRACT_INSTANCE, SCV_LEDGER_KEY_CONTRACT_INSTANCE, SCV_LEDGER_KEY_NONCE, SCV_EXECUTABLE_TAG,
};

int
read_sc_address(Rd *r, ScAddress *a)
{
    a->type = u32(r);
    switch (a->type) {
    case 0:  /* account: PublicKey */
        a->version = VB_ACCOUNT;
        if (u32(r) != 0) decline("public key type");
        memcpy(a->payload, take(r, 32), 32);
        a->len = 32;
        break;
    case 1:
        a->version = VB_CONTRACT;
        memcpy(a->payload, take(r, 32), 32);
        a->len = 32;
        break;
    case 2: {  /* MuxedEd25519Account: id, key; the strkey holds the key, then the id */
        const u8 *id = take(r, 8);
        a->version = VB_MUXED;
        memcpy(a->payload, take(r, 32), 32);
        memcpy(a->payload + 32, id, 8);
        a->len = 40;
        break;
    }
    case 3:  /* ClaimableBalanceID: type (v0), hash; the strkey holds the type's byte, then the hash */
        a->version = VB_BALANCE;
        if (u32(r) != 0) decline("claimable balance id type");
        a->payload[0] = 0;
        memcpy(a->payload + 1, take(r, 32), 32);
        a->len = 33;
        break;
    case 4:
        a->version = VB_POOL;
        memcpy(a->payload, take(r, 32), 32);
        a->len = 32;
        break;
    default:
        decline("sc address type");
    }
    return 0;
}

void
put_sc_address(Buf *b, Rd *r)
{
    ScAddress a;
    read_sc_address(r, &a);
    put_strkey(b, a.version, a.payload, a.len);
}

static void put_map_entries(Buf *b, Rd *r, int depth, int go);

/* A 256-bit integer read next: its magnitude in w (most significant first); whether it is negative. */
static int
read_256(Rd *r, uint64_t w[4], int is_signed)
{
    for (int k = 0; k < 4; k++) w[k] = u64(r);
    int negative = is_signed && (w[0] >> 63);
    if (negative) {  /* two's complement magnitude */
        unsigned carry = 1;
        for (int k = 3; k >= 0; k--) {
            w[k] = ~w[k] + carry;
            carry = carry && w[k] == 0;
        }
    }
    return negative;
}

/* Escaped bytes as a JSON string: ``"`` + escape_bytes + ``"`` (the escapes are ASCII). */
static void
put_escaped(Buf *b, const u8 *s, Py_ssize_t n, int go)
{
    Buf tmp = {0};
    put_escape_bytes(&tmp, s, n);
    put_json_str(b, (const u8 *)(tmp.p ? tmp.p : ""), tmp.len, go);
    buf_free(&tmp);
}

static void
put_quoted_decimal_u64(Buf *b, const char *name, uint64_t v)
{
    buf_cstr(b, "{\"");
    buf_cstr(b, name);
    buf_cstr(b, "\":\"");
    put_u64(b, v);
    buf_cstr(b, "\"}");
}

static void
put_executable(Buf *b, Rd *r, int go)
{
    uint32_t type = u32(r);
    if (type == 0) {
        buf_cstr(b, "{\"wasm\":\"");
        put_hex(b, take(r, 32), 32);
        buf_cstr(b, "\"}");
    } else if (type == 1) {
        buf_cstr(b, "\"stellar_asset\"");
    } else if (type == 2) {
        uint32_t n;
        buf_cstr(b, "{\"external_ref\":{\"executable_owner\":\"");
        put_sc_address(b, r);
        buf_cstr(b, "\",\"tag\":");
        const u8 *tag = var_bytes(r, UINT32_MAX, &n);
        put_escaped(b, tag, n, go);
        buf_cstr(b, "}}");
    } else {
        decline("contract executable type");
    }
}

void
put_scval_json(Buf *b, Rd *r, int depth, int go)
{
    if (depth > SCVAL_DEPTH)
        decline("SCVal nested too deep");
    uint32_t type = u32(r), n;
    switch (type) {
    case SCV_BOOL: {
        uint32_t v = u32(r);
        if (v > 1) decline("non-canonical bool");
        buf_cstr(b, v ? "{\"bool\":true}" : "{\"bool\":false}");
        return;
    }
    case SCV_VOID:
        buf_cstr(b, "\"void\"");
        return;
    case SCV_ERROR: {
        uint32_t et = u32(r);
        buf_cstr(b, "{\"error\":{\"");
        put_enum_name(b, N_SC_ERROR_TYPE, et);
        buf_cstr(b, "\":");
        if (et == 0) {
            put_u64(b, u32(r));
        } else {
            buf_byte(b, '"');
            put_enum_name(b, N_SC_ERROR_CODE, i32(r));
            buf_byte(b, '"');
        }
        buf_cstr(b, "}}");
        return;
    }
    case SCV_U32:
        buf_cstr(b, "{\"u32\":");
        put_u64(b, u32(r));
        buf_byte(b, '}');
        return;
    case SCV_I32:
        buf_cstr(b, "{\"i32\":");
        put_i64(b, i32(r));
        buf_byte(b, '}');
        return;
    case SCV_U64:
        put_quoted_decimal_u64(b, "u64", u64(r));
        return;
    case SCV_I64:
        buf_cstr(b, "{\"i64\":\"");
        put_i64(b, i64(r));
        buf_cstr(b, "\"}");
        return;
    case SCV_TIMEPOINT:
        put_quoted_decimal_u64(b, "timepoint", u64(r));
        return;
    case SCV_DURATION:
        put_quoted_decimal_u64(b, "duration", u64(r));
        return;
    case SCV_U128: {
        uint64_t hi = u64(r), lo = u64(r);
        buf_cstr(b, "{\"u128\":\"");
        put_u128(b, ((unsigned __int128)hi << 64) | lo);
        buf_cstr(b, "\"}");
        return;
    }
    case SCV_I128: {
        uint64_t hi = u64(r), lo = u64(r);
        buf_cstr(b, "{\"i128\":\"");
        put_i128(b, (__int128)(((unsigned __int128)hi << 64) | lo));
        buf_cstr(b, "\"}");
        return;
    }
    case SCV_U256:
    case SCV_I256: {
        uint64_t w[4];
        int negative = read_256(r, w, type == SCV_I256);
        buf_cstr(b, type == SCV_U256 ? "{\"u256\":\"" : "{\"i256\":\"");
        put_u256(b, w, negative);
        buf_cstr(b, "\"}");
        return;
    }
    case SCV_BYTES: {
        const u8 *s = var_bytes(r, UINT32_MAX, &n);
        buf_cstr(b, "{\"bytes\":\"");
        put_hex(b, s, n);
        buf_cstr(b, "\"}");
        return;
    }
    case SCV_STRING:
    case SCV_SYMBOL:
    case SCV_EXECUTABLE_TAG: {
        const u8 *s = var_bytes(r, type == SCV_SYMBOL ? 32 : UINT32_MAX, &n);
        buf_cstr(b, type == SCV_STRING ? "{\"string\":" : type == SCV_SYMBOL ? "{\"symbol\":" : "{\"executable_tag\":");
        put_escaped(b, s, n, go);
        buf_byte(b, '}');
        return;
    }
    case SCV_VEC:
        buf_cstr(b, "{\"vec\":");
        if (u32(r)) {
            uint32_t k = count(r, UINT32_MAX, 4);
            buf_byte(b, '[');
            for (uint32_t i = 0; i < k; i++) {
                if (i) buf_byte(b, ',');
                put_scval_json(b, r, depth + 1, go);
            }
            buf_byte(b, ']');
        } else {
            buf_cstr(b, "null");
        }
        buf_byte(b, '}');
        return;
    case SCV_MAP:
        buf_cstr(b, "{\"map\":");
        if (u32(r))
            put_map_entries(b, r, depth, go);
        else
            buf_cstr(b, "null");
        buf_byte(b, '}');
        return;
    case SCV_ADDRESS:
        buf_cstr(b, "{\"address\":\"");
        put_sc_address(b, r);
        buf_cstr(b, "\"}");
        return;
    case SCV_CONTRACT_INSTANCE:
        buf_cstr(b, "{\"contract_instance\":{\"executable\":");
        put_executable(b, r, go);
        buf_cstr(b, ",\"storage\":");
        if (u32(r))
            put_map_entries(b, r, depth, go);
        else
            buf_cstr(b, "null");
        buf_cstr(b, "}}");
        return;
    case SCV_LEDGER_KEY_CONTRACT_INSTANCE:
        buf_cstr(b, "\"ledger_key_contract_instance\"");
        return;
    case SCV_LEDGER_KEY_NONCE:
        buf_cstr(b, "{\"ledger_key_nonce\":{\"nonce\":\"");
        put_i64(b, i64(r));
        buf_cstr(b, "\"}}");
        return;
    }
    decline("SCVal type");
}

/* Go's time.Unix(epoch, 0).String() in UTC (operation_details._go_time_string). */
static void
put_go_time(Buf *b, uint64_t epoch)
{
    if (epoch > (uint64_t)INT64_MAX / 2) decline("time point beyond the calendar the builders compute");
    int64_t days = (int64_t)(epoch / 86400), secs = (int64_t)(epoch % 86400);
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char text[80];
    snprintf(text, sizeof text, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld +0000 UTC", (long long)year,
             (long long)month, (long long)day, (long long)(secs / 3600), (long long)(secs / 60 % 60),
             (long long)(secs % 60));
    buf_cstr(b, text);
}

void
put_scval_go(Buf *b, Rd *r, int depth)
{
    if (depth > SCVAL_DEPTH)
        decline("SCVal nested too deep");
    uint32_t type = u32(r), n;
    switch (type) {
    case SCV_BOOL: {
        uint32_t v = u32(r);
        if (v > 1) decline("non-canonical bool");
        buf_cstr(b, v ? "true" : "false");
        return;
    }
    case SCV_VOID:
        buf_cstr(b, "(void)");
        return;
    case SCV_ERROR: {
        uint32_t et = u32(r);
        put_enum_name(b, N_SC_ERROR_TYPE_GO, et);
        buf_byte(b, '(');
        if (et == 0)
            put_u64(b, u32(r));
        else
            put_enum_name(b, N_SC_ERROR_CODE_GO, i32(r));
        buf_byte(b, ')');
        return;
    }
    case SCV_U32:
        put_u64(b, u32(r));
        return;
    case SCV_I32:
        put_i64(b, i32(r));
        return;
    case SCV_U64:
    case SCV_DURATION:
        put_u64(b, u64(r));
        return;
    case SCV_I64:
        put_i64(b, i64(r));
        return;
    case SCV_TIMEPOINT:
        put_go_time(b, u64(r));
        return;
    case SCV_U128: {
        uint64_t hi = u64(r), lo = u64(r);
        put_u128(b, ((unsigned __int128)hi << 64) | lo);
        return;
    }
    case SCV_I128:
        put_i128(b, read_i128(r));
        return;
    case SCV_U256:
    case SCV_I256: {
        uint64_t w[4];
        put_u256(b, w, read_256(r, w, type == SCV_I256));
        return;
    }
    case SCV_BYTES: {
        const u8 *s = var_bytes(r, UINT32_MAX, &n);
        put_hex(b, s, n);
        return;
    }
    case SCV_STRING:
    case SCV_SYMBOL: {
        const u8 *s = var_bytes(r, type == SCV_SYMBOL ? 32 : UINT32_MAX, &n);
        put_utf8_replace(b, s, n);
        return;
    }
    case SCV_VEC:
        if (!u32(r)) {
            buf_cstr(b, "nil");
            return;
        }
        n = count(r, UINT32_MAX, 4);
        buf_byte(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i) buf_byte(b, ' ');
            put_scval_go(b, r, depth + 1);
        }
        buf_byte(b, ']');
        return;
    case SCV_MAP:
    case SCV_CONTRACT_INSTANCE: {
        if (type == SCV_CONTRACT_INSTANCE) {
            uint32_t ex = u32(r);
            if (ex == 0)
                put_hex(b, take(r, 32), 32);
            else if (ex == 1)
                buf_cstr(b, "(StellarAssetContract)");
            else
                decline("contract executable: the Python rules fail on it");
        }
        if (!u32(r)) {
            if (type == SCV_MAP) buf_cstr(b, "nil");
            return;
        }
        n = count(r, UINT32_MAX, 8);
        if (type == SCV_CONTRACT_INSTANCE) {
            if (n == 0) return;
            buf_cstr(b, ": ");
        }
        buf_byte(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            buf_cstr(b, i ? " {" : "{");
            put_scval_go(b, r, depth + 1);
            buf_byte(b, ' ');
            put_scval_go(b, r, depth + 1);
            buf_byte(b, '}');
        }
        buf_byte(b, ']');
        return;
    }
    case SCV_ADDRESS:
        put_sc_address(b, r);
        return;
    case SCV_LEDGER_KEY_CONTRACT_INSTANCE:
        buf_cstr(b, "(LedgerKeyContractInstance)");
        return;
    case SCV_LEDGER_KEY_NONCE: {
        int64_t v = i64(r);
        char text[32];
        snprintf(text, sizeof text, "{%s%llX}", v < 0 ? "-" : "",
                 (unsigned long long)(v < 0 ? 0 - (uint64_t)v : (uint64_t)v));
        buf_cstr(b, text);
        return;
    }
    case SCV_EXECUTABLE_TAG:
        var_bytes(r, UINT32_MAX, &n);
        buf_cstr(b, "unknown");
        return;
    }
    decline("SCVal type");
}

/* An SCMap's entries (count first) as [{"key": ..., "val": ...}, ...]. */
static void
put_map_entries(Buf *b, Rd *r, int depth, int go)
{
    uint32_t k = count(r, UINT32_MAX, 8);
    buf_byte(b, '[');
    for (uint32_t i = 0; i < k; i++) {
        buf_cstr(b, i ? ",{\"key\":" : "{\"key\":");
        put_scval_json(b, r, depth + 1, go);
        buf_cstr(b, ",\"val\":");
        put_scval_json(b, r, depth + 1, go);
        buf_byte(b, '}');
    }
    buf_byte(b, ']');
}

/* ------------------------------------------------------------------------------------------ */
/* what a token movement reader looks at in an event (scval.event_summary)                    */

__int128
read_i128(Rd *r)
{
    uint64_t hi = u64(r), lo = u64(r);
    return (__int128)(((unsigned __int128)hi << 64) | lo);
}

/* Read the ContractEvent at ``r`` (stepping past it) into ``s``. */
void
summarize(Rd *r, Summary *s)
{
    memset(s, 0, sizeof *s);
    if (u32(r) != 0) decline("contract event ext");
    s->contract = u32(r) ? take(r, 32) : NULL;
    s->type = i32(r);
    if (u32(r) != 0) decline("contract event body");
    s->ntopics = count(r, UINT32_MAX, 4);
    for (uint32_t i = 0; i < s->ntopics; i++) {
        Py_ssize_t at = r->pos;
        uint32_t type = u32(r), n;
        if (type == SCV_SYMBOL && i == 0) {
            s->symbol = var_bytes(r, 32, &n);
            s->symbol_len = n;
        } else if (type == SCV_ADDRESS && (i == 1 || i == 2)) {
            s->has_addr[i - 1] = 1;
            read_sc_address(r, &s->addr[i - 1]);
        } else {
            r->pos = at;
            skip_value(r, tid.scval);
        }
        if (i == s->ntopics - 1) {
            Rd t = {r->p + at, 0, r->pos - at};
            s->name = NULL;
            if (u32(&t) == SCV_STRING) {
                s->name = var_bytes(&t, UINT32_MAX, &n);
                s->name_len = n;
            }
        }
    }
    Py_ssize_t at = r->pos;
    skip_value(r, tid.scval);
    s->data = (Rd){r->p + at, 0, r->pos - at};
    Rd d = s->data;
    s->data_type = u32(&d);
    if (s->data_type == SCV_I128) {
        s->has_amount = 1;
        s->amount = read_i128(&d);
    }
}

int
symbol_is(const Summary *s, const char *text)
{
    size_t n = strlen(text);
    return s->symbol != NULL && s->symbol_len == n && memcmp(s->symbol, text, n) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* asset columns                                                                              */

/* The asset columns of a SEP-41 event whose last topic is ``name`` (borrowed reference). */
PyObject *
sac_columns(SacAssets *a, const u8 *contract, const u8 *name, uint32_t len)
{
    PyObject *key = PyBytes_FromStringAndSize(NULL, 32 + (Py_ssize_t)len);
    if (key == NULL) fail();
    memcpy(PyBytes_AS_STRING(key), contract, 32);
    memcpy(PyBytes_AS_STRING(key) + 32, name, len);
    PyObject *hit = PyDict_GetItemWithError(a->cache, key);
    if (hit != NULL || PyErr_Occurred()) {
        Py_DECREF(key);
        if (hit == NULL) fail();
        return hit;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)name, len, "replace");
    PyObject *cid = PyBytes_FromStringAndSize((const char *)contract, 32);
    PyObject *cols = (text && cid) ? PyObject_CallFunctionObjArgs(a->sac_columns, text, cid, a->passphrase, NULL) : NULL;
    Py_XDECREF(text);
    Py_XDECREF(cid);
    int bad = cols == NULL || !PyTuple_Check(cols) || PyTuple_GET_SIZE(cols) != 4 ||
              !PyUnicode_Check(PyTuple_GET_ITEM(cols, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(cols, 1));
    if (!bad && PyDict_SetItem(a->cache, key, cols) < 0)
        bad = 1;
    Py_DECREF(key);
    Py_XDECREF(cols);  /* the cache holds it */
    if (bad) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "sac_columns must give 4 columns");
        fail();
    }
    return cols;
}


int
sac_event(const Summary *s, SacAssets *a, PyObject **asset, const ScAddress **from, const ScAddress **to)
{
    if (s->type != 1 || s->contract == NULL || s->ntopics <= 2 || s->name == NULL) return -1;
    int fn = symbol_is(s, "transfer") ? 0 : symbol_is(s, "mint") ? 1 : symbol_is(s, "clawback") ? 2
           : symbol_is(s, "burn") ? 3 : -1;
    if (fn < 0) return -1;
    *asset = sac_columns(a, s->contract, s->name, s->name_len);
    if (*asset == NULL || PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(*asset, 0)) == 0 || !s->has_amount) return -1;
    *from = *to = NULL;
    if (fn == 3) {
        if (s->ntopics != 3 || !s->has_addr[0]) return -1;
        *from = &s->addr[0];
    } else {
        if (s->ntopics != 4 || !s->has_addr[0] || !s->has_addr[1]) return -1;
        if (fn == 0) *from = &s->addr[0], *to = &s->addr[1];
        else if (fn == 1) *to = &s->addr[1];
        else *from = &s->addr[1];
    }
    return fn;
}
