"""Processors: decoded ledgers -> Arrow tables with declared schemas. Importing this registers them all,
and those of installed packages' ``cdp_ray.processors`` entry points."""

from cdp_ray.processors.base import REGISTRY, NoConfig, Processor, col, get_processor, load_entry_points, processor
from cdp_ray.processors import ledgers  # noqa: F401
from cdp_ray.processors import transactions  # noqa: F401
from cdp_ray.processors import ledger_transactions  # noqa: F401
from cdp_ray.processors import operations  # noqa: F401
from cdp_ray.processors import effects  # noqa: F401
from cdp_ray.processors import assets  # noqa: F401
from cdp_ray.processors import trades  # noqa: F401
from cdp_ray.processors import entries  # noqa: F401
from cdp_ray.processors import token_transfers  # noqa: F401
from cdp_ray.processors import contract_events  # noqa: F401
from cdp_ray.processors import contract_invocations  # noqa: F401
from cdp_ray.processors import payments  # noqa: F401

load_entry_points()

__all__ = ["REGISTRY", "NoConfig", "Processor", "col", "get_processor", "processor"]
