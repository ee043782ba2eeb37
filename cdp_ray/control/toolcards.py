"""Tool cards: one machine-readable description per source, processor and sink.

A card is generated from the component's own declarations (config model -> JSON Schema, output
Arrow schema -> JSON Schema, primary key, tags) plus cost hints measured by running the component
over the bundled sample lake. ``version`` fingerprints the declared part; a committed card is
*stale* when its declared part differs from what the registries declare now
(``cdp-ray tools generate --check``). Measured costs vary by machine and are not compared.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from cdp_ray import errors as E

Kind = Literal["source", "processor", "sink"]
Danger = Literal["read_only", "writes", "destructive"]
CARD_FORMAT = 1


class ErrorDoc(BaseModel):
    """One error a component can raise: its class, when it happens and what to do."""

    error: str
    when: str
    hint: str


class ToolCard(BaseModel):
    """What an agent or a person needs to discover, plan and call a component safely."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="`<kind>.<name>`")
    kind: Kind
    name: str
    description: str
    version: str = Field(description="fingerprint of the declared part of this card")
    config_schema: dict[str, Any] = Field(description="JSON Schema of the component's configuration")
    output_schema: dict[str, Any] | None = Field(None, description="JSON Schema of one output row (processors)")
    primary_key: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    idempotency: str
    danger: Danger
    required_scopes: dict[str, list[str]] = Field(description="action -> bearer scopes it needs")
    examples: list[dict[str, Any]]
    errors: list[ErrorDoc]
    cost: dict[str, Any] | None = Field(None, description="hints measured on the bundled sample lake")

    def declared(self) -> dict[str, Any]:
        """The card without its measured part: what the staleness check compares."""
        return self.model_dump(mode="json", exclude={"cost"})


# ---- Arrow schema -> JSON Schema -------------------------------------------------------------


def arrow_type_schema(t: pa.DataType) -> dict[str, Any]:
    """JSON Schema of one Arrow type's values as the control plane serialises them."""
    out: dict[str, Any]
    if pa.types.is_boolean(t):
        out = {"type": "boolean"}
    elif pa.types.is_integer(t):
        out = {"type": "integer"}
        if pa.types.is_unsigned_integer(t):
            out["minimum"] = 0
    elif pa.types.is_floating(t):
        out = {"type": "number"}
    elif pa.types.is_decimal(t):
        out = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        out = {"type": "string"}
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        out = {"type": "string", "contentEncoding": "base64"}
    elif pa.types.is_timestamp(t):
        out = {"type": "string", "format": "date-time"}
    elif pa.types.is_date(t):
        out = {"type": "string", "format": "date"}
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        out = {"type": "array", "items": field_schema(t.value_field)}
    elif pa.types.is_struct(t):
        out = {
            "type": "object",
            "properties": {t.field(i).name: field_schema(t.field(i)) for i in range(t.num_fields)},
        }
    elif pa.types.is_map(t):
        out = {"type": "object", "additionalProperties": field_schema(t.item_field)}
    else:
        out = {}
    out["x-arrow-type"] = str(t)
    return out


def field_schema(f: pa.Field) -> dict[str, Any]:
    out = arrow_type_schema(f.type)
    if f.nullable and "type" in out:
        out["type"] = [out["type"], "null"]
    meta = f.metadata or {}
    if b"description" in meta:
        out = {"description": meta[b"description"].decode(), **out}
    return out


def arrow_schema_to_json_schema(schema: pa.Schema, title: str) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "properties": {f.name: field_schema(f) for f in schema},
        "required": [f.name for f in schema if not f.nullable],
    }


# ---- declarations ----------------------------------------------------------------------------


def _errors(*classes: type[E.CdpRayError]) -> list[ErrorDoc]:
    out = []
    for cls in classes:
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        out.append(ErrorDoc(error=cls.__name__, when=doc, hint=cls.hint or E.CdpRayError.hint or "see the message"))
    return out


SAMPLE_SOURCE = {"uri": "s3://aws-public-blockchain/v1.1/stellar/ledgers/pubnet", "start": 63092982,
                 "end": 63092991, "network": "pubnet", "anonymous": True}


def _fingerprint(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _card(**fields: Any) -> ToolCard:
    fields = {**fields, "version": ""}
    draft = ToolCard(**fields).model_dump(mode="json", exclude={"cost", "version"})
    return ToolCard(**{**fields, "version": f"{CARD_FORMAT}-{_fingerprint(draft)}"})


def source_card() -> ToolCard:
    from cdp_ray.pipeline.source import LakeSource

    return _card(
        id="source.lake",
        kind="source",
        name="lake",
        description="Ledgers from a SEP-54 ledger data lake (galexie export: zstd XDR LedgerCloseMetaBatch "
        "objects) or a directory of ledger files, on local disk, S3 or GCS. Object keys are computed from "
        "the range, so planning never lists the bucket; every ledger's header hash and the hash chain are "
        "verified.",
        config_schema=LakeSource.model_json_schema(),
        tags=["source", "ledgers", "sep-54"],
        idempotency="read-only: reading a range twice yields the same ledgers",
        danger="read_only",
        required_scopes={"discover": ["read"], "plan": ["plan"], "run": ["apply"]},
        examples=[
            {"title": "public pubnet lake on S3", "config": SAMPLE_SOURCE},
            {"title": "one-line form", "cli": "cdp-ray run 'lake:///data/lake?start=63092982&end=63092991 | ledgers | parquet://out'"},
        ],
        errors=_errors(E.ConfigError, E.LakeError, E.LedgerNotFoundError, E.LedgerGapError, E.CorruptLedgerFileError,
                       E.LedgerIntegrityError, E.NetworkMismatchError),
    )


def processor_card(proc) -> ToolCard:
    return _card(
        id=f"processor.{proc.name}",
        kind="processor",
        name=proc.name,
        description=proc.description,
        config_schema=proc.config_model.model_json_schema(),
        output_schema=arrow_schema_to_json_schema(proc.schema, proc.name),
        primary_key=list(proc.primary_key),
        tags=list(proc.tags),
        idempotency="deterministic: the same ledgers and config always give the same rows; "
        f"rows are unique by ({', '.join(proc.primary_key)})",
        danger="read_only",
        required_scopes={"discover": ["read"], "preview": ["read"], "plan": ["plan"], "run": ["apply"]},
        examples=[
            {"title": f"{proc.name} to Parquet", "pipeline": {
                "name": f"{proc.name}-example", "source": SAMPLE_SOURCE, "processors": [proc.name],
                "sinks": [{"type": "parquet", "uri": f"out/{proc.name}"}]}},
            {"title": "notebook", "python": f"cdp_ray.load({proc.name!r}, {SAMPLE_SOURCE['uri']!r}, "
             f"{SAMPLE_SOURCE['start']}, {SAMPLE_SOURCE['end']}, anonymous=True)"},
        ],
        errors=_errors(E.ConfigError, E.UnknownComponentError, E.LedgerIntegrityError),
    )


def sink_card(name: str, config_model: type[BaseModel], sink_cls: type) -> ToolCard:
    example_cfg = {"type": name}
    for fname, f in config_model.model_fields.items():
        if f.is_required() and fname != "type":
            example_cfg[fname] = "out" if fname == "uri" else f"<{fname}>"
    return _card(
        id=f"sink.{name}",
        kind="sink",
        name=name,
        description=" ".join(x.strip() for x in [(config_model.__doc__ or ""), (sink_cls.__doc__ or "")] if x.strip()),
        config_schema=config_model.model_json_schema(),
        tags=["sink"],
        idempotency="idempotent per ledger range: a rerun of a range replaces that range's output "
        "atomically, never duplicates it",
        danger="writes",
        required_scopes={"discover": ["read"], "plan": ["plan"], "run": ["apply"]},
        examples=[{"title": f"write to {name}", "config": example_cfg}],
        errors=_errors(E.ConfigError, E.SinkError),
    )


def declared_cards() -> dict[str, ToolCard]:
    """Cards for every registered component, without measurements."""
    import cdp_ray.processors  # noqa: F401  (registers processors)
    import cdp_ray.sinks  # noqa: F401  (registers sinks)
    from cdp_ray.processors.base import REGISTRY
    from cdp_ray.sinks.base import SINKS

    cards = [source_card()]
    cards += [processor_card(p) for _, p in sorted(REGISTRY.items())]
    cards += [sink_card(n, cfg, cls) for n, (cfg, cls) in sorted(SINKS.items())]
    return {c.id: c for c in cards}


# ---- measurement -----------------------------------------------------------------------------


def measure_sample() -> dict[str, dict[str, Any]]:
    """Run the source and every processor over the bundled sample lake; per-ledger figures by card id."""
    from cdp_ray.pipeline.source import LakeSource
    from cdp_ray.processors.base import REGISTRY
    from cdp_ray.sample import SAMPLE_LAKE, SAMPLE_RANGE
    from cdp_ray.xdr import decode_ledger

    start, end = SAMPLE_RANGE
    n = end - start + 1
    src = LakeSource(uri=str(SAMPLE_LAKE), start=start, end=end, network="pubnet")
    lake = src.open()
    keys = lake.keys_for_range(start, end)
    compressed = sum(lake.fs.size(f"{lake.root}/{k}") for k in keys)
    cpu0 = time.process_time()
    raws = list(lake.read_range(start, end))
    ledgers = [decode_ledger(r.xdr, src.network_passphrase, key=r.key) for r in raws]
    decode_cpu = time.process_time() - cpu0  # read, decompress, verify and decode
    sample = f"pubnet {start}-{end} (bundled sample lake)"
    out: dict[str, dict[str, Any]] = {
        "source.lake": {
            "sample": sample,
            "ledgers": n,
            "objects_per_ledger": round(len(keys) / n, 4),
            "compressed_bytes_per_ledger": round(compressed / n),
            "xdr_bytes_per_ledger": round(sum(len(r.xdr) for r in raws) / n),
            "transactions_per_ledger": round(sum(len(lg.transactions) for lg in ledgers) / n, 2),
            "cpu_seconds_per_ledger": round(decode_cpu / n, 4),
        }
    }
    for name, proc in sorted(REGISTRY.items()):
        cpu0 = time.process_time()
        try:
            table = proc.process(ledgers)
        except Exception as exc:  # one broken processor must not stop the other cards
            warnings.warn(f"processor {name} failed on the sample lake; its card has no cost: {exc}", stacklevel=2)
            continue
        cpu = time.process_time() - cpu0
        buf = io.BytesIO()
        cpu1 = time.process_time()
        pq.write_table(table, buf, compression="zstd")
        write_cpu = time.process_time() - cpu1
        out[f"processor.{name}"] = {
            "sample": sample,
            "ledgers": n,
            "rows_per_ledger": round(table.num_rows / n, 3),
            "arrow_bytes_per_ledger": round(table.nbytes / n),
            "parquet_bytes_per_ledger": round(buf.tell() / n),
            "cpu_seconds_per_ledger": round(cpu / n, 5),
            "write_cpu_seconds_per_ledger": round(write_cpu / n, 5),
        }
    return out


# ---- files -----------------------------------------------------------------------------------


def card_path(directory: Path, card_id: str) -> Path:
    return Path(directory) / f"{card_id}.json"


def dump_card(card: ToolCard) -> str:
    return json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def load_cards(directory: Path) -> dict[str, ToolCard]:
    """Cards stored in ``directory`` (none when it does not exist)."""
    out = {}
    for p in sorted(Path(directory).glob("*.json")):
        card = ToolCard.model_validate_json(p.read_text())
        out[card.id] = card
    return out


def generate(directory: Path, *, measure: bool = True) -> list[Path]:
    """Write every card to ``directory`` and remove cards of components no longer registered."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cards = declared_cards()
    costs = measure_sample() if measure else {}
    written = []
    for cid, card in cards.items():
        card = card.model_copy(update={"cost": costs.get(cid)}) if cid in costs else card
        path = card_path(directory, cid)
        path.write_text(dump_card(card))
        written.append(path)
    for p in directory.glob("*.json"):
        if p.stem not in cards:
            p.unlink()
    return written


def stale_cards(directory: Path) -> list[str]:
    """Problems that make the stored cards disagree with the registries; empty when up to date."""
    try:
        stored = load_cards(directory)
    except ValueError as exc:
        return [f"unreadable card: {exc}"]
    current = declared_cards()
    problems = []
    for cid, card in current.items():
        old = stored.get(cid)
        if old is None:
            problems.append(f"{cid}: missing")
        elif old.declared() != card.declared():
            changed = sorted(k for k, v in card.declared().items() if old.declared().get(k) != v)
            problems.append(f"{cid}: stale ({', '.join(changed)} changed)")
    problems += [f"{cid}: no longer registered" for cid in stored if cid not in current]
    return problems


def current_cards(directory: Path | None) -> dict[str, ToolCard]:
    """The registries' cards, with the measured costs of stored cards whose declaration matches."""
    cards = declared_cards()
    stored = load_cards(directory) if directory and Path(directory).is_dir() else {}
    for cid, card in cards.items():
        old = stored.get(cid)
        if old is not None and old.cost:
            cost = old.cost if old.version == card.version else {**old.cost, "declaration_changed": True}
            cards[cid] = card.model_copy(update={"cost": cost})
    return cards
