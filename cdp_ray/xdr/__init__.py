"""XDR decoding: ``LedgerCloseMeta`` bytes -> a uniform :class:`Ledger` view over LCM v0, v1 and v2."""

from cdp_ray.xdr.ledger import Ledger, Transaction, decode_ledger

__all__ = ["Ledger", "Transaction", "decode_ledger"]
