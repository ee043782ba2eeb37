"""The ledger lake: SEP-54 / galexie key layout, object storage access and ledger file formats."""

from cdp_ray.lake.schema import LakeSchema
from cdp_ray.lake.store import LedgerLake, RawLedger

__all__ = ["LakeSchema", "LedgerLake", "RawLedger"]
