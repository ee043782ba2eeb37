"""Help text in click's conventions: ``INTEGER``, ``TEXT``, ``PATH`` for values, nothing for flags.

Typer 0.29 renders every parameter's type as ``<bool>``, ``<str>``, ``<int range>``, flags included;
:func:`click_metavars` makes its options and arguments show click's metavars instead.
"""

from __future__ import annotations

from typing import Any

import typer.core

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "datetime": "DATETIME"}


def _metavar(self: Any, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if getattr(self, "is_flag", False) or getattr(self, "count", False):
        return None
    label = self.display_type(ctx).removeprefix("<").removesuffix(">")
    if self.type_descriptor.is_choice:
        return f"[{label}]"
    name = " ".join(_NAMES.get(w, w.upper()) for w in label.split())
    return name + ("..." if self.nargs != 1 else "")


def click_metavars() -> None:
    """Show click's metavars in every Typer command of this process (the CLI's, applied once at import)."""
    typer.core.TyperOption.display_type_rich = _metavar  # type: ignore[method-assign]
    typer.core.TyperArgument.display_type_rich = _metavar  # type: ignore[method-assign]
