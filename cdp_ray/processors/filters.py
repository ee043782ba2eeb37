"""Transaction filters: keep only the transactions (and their rows) that match, and skip decoding ledgers
that cannot match.

A :class:`TransactionFilter` combines criteria with AND; each criterion's list is an OR:

* ``operation_types``: the transaction has an operation of one of these types (``payment``,
  ``invoke_host_function``, ...);
* ``accounts``: the account (``G...``, or ``M...`` for its base account) occurs in the transaction's
  envelope, result, meta or fee changes: as source, destination, signer, trade counterparty, claimant,
  changed ledger entry or contract argument;
* ``contract_ids``: the contract (``C...``) occurs there (invocation, footprint, events, storage);
* ``assets``: ``native`` or ``CODE:ISSUER``: a credit asset's XDR or its Stellar Asset Contract occurs
  there; ``native`` matches operations that name the native asset and transactions whose envelope names
  the native asset contract (every meta v4 transaction has a native fee event, so meta is not searched);
* ``event_topics``: a contract event of the transaction has a symbol or string topic equal to one of these.

Push-down: :meth:`TransactionFilter.may_match` looks for the criteria's raw bytes (account keys, contract
ids, asset XDR, topic text) in undecoded ``LedgerCloseMeta`` XDR; a ledger that lacks them cannot match and
need not be decoded. :func:`decode_matching` does both steps; :func:`select` narrows decoded ledgers to
their matching transactions, and :func:`filtered` runs any processor on that selection, so its rows are
exactly the unfiltered rows of the matching transactions.

In a pipeline, processors whose config derives from :class:`FilterConfig` take a ``where`` option::

    processors:
      - name: effects
        config: {where: {accounts: [GAZRYQ...], operation_types: [invoke_host_function]}}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from stellar_sdk import StrKey, xdr

from cdp_ray.errors import ConfigError
from cdp_ray.processors.base import Processor, get_processor
from cdp_ray.processors.scval import native_sac_strkey, parse_sep11_asset, sac_contract_id
from cdp_ray.xdr import Ledger, Transaction, decode_ledger
from cdp_ray.xdr.fast import source_xdr

_OP_TYPES = {t.name.lower(): t for t in xdr.OperationType}
_ASSET_TYPES = (xdr.Asset, xdr.ChangeTrustAsset, xdr.TrustLineAsset)


class TransactionFilter(BaseModel):
    """Which transactions to keep. Empty criteria are ignored; an empty filter keeps everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_types: list[str] = Field(
        default_factory=list, description="operation type names, e.g. payment, manage_sell_offer, invoke_host_function"
    )
    accounts: list[str] = Field(default_factory=list, description="G... or M... accounts the transaction involves")
    contract_ids: list[str] = Field(default_factory=list, description="C... contracts the transaction involves")
    assets: list[str] = Field(
        default_factory=list, description='assets the transaction involves: "native" or "CODE:ISSUER"'
    )
    event_topics: list[str] = Field(
        default_factory=list, description="symbol or string topics of the transaction's contract events, e.g. transfer"
    )

    @field_validator("operation_types")
    @classmethod
    def _op_types(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            key = name.lower().removeprefix("operation_type_")
            if key not in _OP_TYPES:
                raise ValueError(f"unknown operation type {name!r}; one of {sorted(_OP_TYPES)}")
            out.append(key)
        return out

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        for a in v:
            if not (StrKey.is_valid_ed25519_public_key(a) or StrKey.is_valid_med25519_public_key(a)):
                raise ValueError(f"{a!r} is not a G... or M... account")
        return v

    @field_validator("contract_ids")
    @classmethod
    def _contracts(cls, v: list[str]) -> list[str]:
        for c in v:
            if not StrKey.is_valid_contract(c):
                raise ValueError(f"{c!r} is not a C... contract id")
        return v

    @field_validator("assets")
    @classmethod
    def _assets(cls, v: list[str]) -> list[str]:
        for a in v:
            if parse_sep11_asset(a) is None:
                raise ValueError(f"{a!r} is not an asset; use native or CODE:ISSUER")
        return v

    @property
    def empty(self) -> bool:
        return not (self.operation_types or self.accounts or self.contract_ids or self.assets or self.event_topics)

    def compile(self, network_passphrase: str) -> CompiledFilter:
        """The byte patterns and sets the matcher needs on ``network_passphrase``."""
        return CompiledFilter.build(self, network_passphrase)

    def may_match(self, lcm_xdr: bytes, network_passphrase: str) -> bool:
        """False when no transaction of this raw ``LedgerCloseMeta`` can match (safe to skip decoding)."""
        return self.compile(network_passphrase).may_match(lcm_xdr)

    def matches(self, t: Transaction, network_passphrase: str) -> bool:
        """Whether transaction ``t`` matches."""
        return self.compile(network_passphrase).matches(t)


@dataclass(frozen=True)
class CompiledFilter:
    """A :class:`TransactionFilter` turned into byte needles and sets for one network."""

    operation_types: frozenset
    account_keys: tuple[bytes, ...]
    contract_ids: tuple[bytes, ...]
    asset_needles: tuple[bytes, ...]
    native_asset: bool
    native_sac: bytes
    topics: frozenset
    topic_needles: tuple[bytes, ...]

    @classmethod
    def build(cls, f: TransactionFilter, network_passphrase: str) -> CompiledFilter:
        keys = []
        for a in f.accounts:
            if a.startswith("M"):
                keys.append(StrKey.decode_med25519_public_key(a)[:32])
            else:
                keys.append(StrKey.decode_ed25519_public_key(a))
        needles, native = [], False
        for a in f.assets:
            asset = parse_sep11_asset(a)
            if asset.type == xdr.AssetType.ASSET_TYPE_NATIVE:
                native = True
                continue
            # The asset's XDR after its type tag: code then issuer, shared by Asset, TrustLineAsset and
            # ChangeTrustAsset; and the id of its Stellar Asset Contract.
            needles.append(asset.to_xdr_bytes()[4:])
            needles.append(sac_contract_id(asset, network_passphrase))
        native_sac = StrKey.decode_contract(native_sac_strkey(network_passphrase))
        return cls(
            operation_types=frozenset(_OP_TYPES[t] for t in f.operation_types),
            account_keys=tuple(keys),
            contract_ids=tuple(StrKey.decode_contract(c) for c in f.contract_ids),
            asset_needles=tuple(needles),
            native_asset=native,
            native_sac=native_sac,
            topics=frozenset(t.encode() for t in f.event_topics),
            topic_needles=tuple(t.encode() for t in f.event_topics),
        )

    def may_match(self, raw: bytes) -> bool:
        """Byte-level pre-check on undecoded XDR (a ledger or one transaction's envelope/result/meta)."""
        if self.account_keys and not _any_in(self.account_keys, raw):
            return False
        if self.contract_ids and not _any_in(self.contract_ids, raw):
            return False
        if self.asset_needles and not self.native_asset and not _any_in(self.asset_needles, raw):
            return False
        if self.topic_needles and not _any_in(self.topic_needles, raw):
            return False
        return True

    def _uses_native(self, t: Transaction) -> bool:
        # Not the native contract's id anywhere in the meta: meta v4 has a native fee event in every
        # transaction. Operations naming XLM, or Soroban calls/footprints with the native contract.
        return _names_native_asset(t) or self.native_sac in t.envelope.to_xdr_bytes()

    def matches(self, t: Transaction) -> bool:
        if self.operation_types and not any(op.body.type in self.operation_types for op in t.operations):
            return False
        if not (self.account_keys or self.contract_ids or self.asset_needles or self.native_asset or self.topics):
            return True
        raw = transaction_xdr(t)
        if self.account_keys and not _any_in(self.account_keys, raw):
            return False
        if self.contract_ids and not _any_in(self.contract_ids, raw):
            return False
        if (self.asset_needles or self.native_asset) and not (
            _any_in(self.asset_needles, raw) or (self.native_asset and self._uses_native(t))
        ):
            return False
        if self.topics and not any(_topic_matches(ev, self.topics) for ev in contract_events(t)):
            return False
        return True


def _any_in(needles: Iterable[bytes], haystack: bytes) -> bool:
    return any(n in haystack for n in needles)


def transaction_xdr(t: Transaction) -> bytes:
    """The transaction's envelope, result pair, meta and fee changes as one byte string (as decoded)."""
    parts = [
        source_xdr(t.envelope), t.result.transaction_hash.hash, source_xdr(t.result.result), source_xdr(t.meta),
        t.fee_changes.to_xdr_bytes(),
    ]
    if t.post_apply_fee_changes is not None:
        parts.append(t.post_apply_fee_changes.to_xdr_bytes())
    return b"".join(parts)


def _walk_assets(value, depth: int = 0):
    """Every Asset / ChangeTrustAsset / TrustLineAsset inside an XDR value."""
    if isinstance(value, _ASSET_TYPES):
        yield value
        return
    if depth > 12 or value is None or isinstance(value, (bytes, str, int, bool, float)):
        return
    if isinstance(value, list):
        for v in value:
            yield from _walk_assets(v, depth + 1)
        return
    for v in getattr(value, "__dict__", {}).values():
        yield from _walk_assets(v, depth + 1)


def _names_native_asset(t: Transaction) -> bool:
    """An operation of ``t`` names the native asset (payments, offers, paths, balances, pools, trust)."""
    return any(a.type == xdr.AssetType.ASSET_TYPE_NATIVE for op in t.operations for a in _walk_assets(op.body))


def contract_events(t: Transaction) -> list[xdr.ContractEvent]:
    """The transaction's contract and system events (meta v3 Soroban events; meta v4 operation and
    transaction events), diagnostic events excluded."""
    m = t.meta
    if m.v == 3:
        return list(m.v3.soroban_meta.events) if m.v3.soroban_meta is not None else []
    if m.v == 4:
        events = [ev for op in m.v4.operations or [] for ev in op.events]
        return events + [te.event for te in m.v4.events or []]
    return []


def _topic_matches(ev: xdr.ContractEvent, topics: frozenset) -> bool:
    if ev.body.v != 0:
        return False
    for topic in ev.body.v0.topics:
        if topic.type == xdr.SCValType.SCV_SYMBOL and topic.sym.sc_symbol in topics:
            return True
        if topic.type == xdr.SCValType.SCV_STRING and topic.str.sc_string in topics:
            return True
    return False


class FilterConfig(BaseModel):
    """Processor config with a ``where`` filter: the processor then sees only the matching transactions."""

    model_config = ConfigDict(extra="forbid")

    where: TransactionFilter | None = Field(
        None,
        description="keep only rows of transactions matching these criteria (operation_types, accounts, "
        "contract_ids, assets, event_topics; AND across criteria, OR within one)",
    )


def apply_where(ledgers: list[Ledger], config: BaseModel) -> list[Ledger]:
    """``ledgers`` narrowed by the config's ``where`` filter, if it has one."""
    where = getattr(config, "where", None)
    return ledgers if where is None or where.empty else select(ledgers, where)


# --- applying filters -------------------------------------------------------------------------------


def narrow(ledger: Ledger, keep: list[Transaction]) -> Ledger:
    """A view of ``ledger`` holding only the transactions ``keep`` (and their envelopes).

    The view remembers the full ledger as ``unfiltered`` so that per-ledger positions (such as the entry
    tables' ``change_index``) stay those of the full ledger.
    """
    ids = {id(t.envelope) for t in keep}
    view = replace(ledger, transactions=keep, envelopes=[e for e in ledger.envelopes if id(e) in ids])
    view.unfiltered = getattr(ledger, "unfiltered", ledger)
    return view


def select(ledgers: Iterable[Ledger], where: TransactionFilter) -> list[Ledger]:
    """Views of the ledgers narrowed to their matching transactions; ledgers with none are dropped."""
    if where.empty:
        return list(ledgers)
    out, compiled = [], {}
    for ledger in ledgers:
        passphrase = ledger.network_passphrase
        if passphrase is None:
            raise ConfigError(f"ledger {ledger.sequence} was decoded without a network passphrase; filters need it")
        cf = compiled.get(passphrase) or compiled.setdefault(passphrase, where.compile(passphrase))
        keep = [t for t in ledger.transactions if cf.matches(t)]
        if keep:
            out.append(narrow(ledger, keep))
    return out


@dataclass
class PushDownStats:
    """What :func:`decode_matching` skipped."""

    ledgers: int = 0
    decoded: int = 0
    kept: int = 0


def decode_matching(
    raw_ledgers: Iterable[bytes],
    network_passphrase: str,
    where: TransactionFilter,
    *,
    verify: bool = True,
    stats: PushDownStats | None = None,
) -> list[Ledger]:
    """Decode only the raw ``LedgerCloseMeta`` values that may match, then :func:`select` them."""
    cf = where.compile(network_passphrase)
    stats = stats if stats is not None else PushDownStats()
    decoded = []
    for raw in raw_ledgers:
        stats.ledgers += 1
        if where.empty or cf.may_match(raw):
            decoded.append(decode_ledger(raw, network_passphrase, verify=verify))
    stats.decoded = len(decoded)
    out = select(decoded, where)
    stats.kept = len(out)
    return out


def filtered(
    processor: str | Processor, ledgers: Iterable[Ledger], where: TransactionFilter | dict, config=None
) -> pa.Table:
    """Run ``processor`` over the matching transactions of ``ledgers`` only."""
    p = get_processor(processor) if isinstance(processor, str) else processor
    where = where if isinstance(where, TransactionFilter) else TransactionFilter.model_validate(where)
    return p.process(select(ledgers, where), config)
