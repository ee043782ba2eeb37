"""Generate :mod:`cdp_ray.xdr.fast.schema` from the installed ``stellar_sdk.xdr`` package.

stellar-sdk's XDR classes are themselves generated code with a small, regular ``unpack`` method per
type. This script reads those methods (and the length checks of each ``__init__``) with :mod:`ast`
and writes down, per class, exactly what the SDK decodes: struct fields in order, union arms per
discriminant value, typedef targets, array and opaque bounds. The fast codec interprets that
description, so it decodes into the same classes, attribute for attribute, as the SDK does.

Run after upgrading stellar-sdk::

    python -m cdp_ray.xdr.fast.generate            # rewrites cdp_ray/xdr/fast/schema.py
    python -m cdp_ray.xdr.fast.generate --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import ast
import enum
import inspect
import pprint
import sys
from pathlib import Path

from stellar_sdk import __version__ as SDK_VERSION
from stellar_sdk import xdr
from stellar_sdk.xdr import constants

SCHEMA_PATH = Path(__file__).with_name("schema.py")
_PRIMS = {
    "Integer": ("i32",),
    "UnsignedInteger": ("u32",),
    "Hyper": ("i64",),
    "UnsignedHyper": ("u64",),
    "Boolean": ("bool",),
    "Float": ("f32",),
    "Double": ("f64",),
}


class SchemaError(Exception):
    """An SDK ``unpack`` method has a shape this generator does not know."""


def _const(node: ast.expr) -> int | bool:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return getattr(constants, node.id)
    raise SchemaError(f"not a constant: {ast.unparse(node)}")


def _is_unpacker_uint(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "unpack_uint"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "unpacker"
    )


def _read_expr(node: ast.expr) -> tuple:
    """Type expression of one ``X.unpack(unpacker, ...)`` call (optional-wrapped when conditional)."""
    if isinstance(node, ast.IfExp):
        if not (_is_unpacker_uint(node.test) and isinstance(node.orelse, ast.Constant) and node.orelse.value is None):
            raise SchemaError(f"unknown conditional read: {ast.unparse(node)}")
        return ("opt", _read_expr(node.body))
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "unpack"):
        raise SchemaError(f"unknown read: {ast.unparse(node)}")
    name = node.func.value.id
    if name in _PRIMS:
        return _PRIMS[name]
    if name == "Opaque":
        size, fixed = _const(node.args[1]), _const(node.args[2])
        return ("opaque", size) if fixed else ("vopaque", size)
    if name == "String":
        return ("string", _const(node.args[1]))
    return ("ref", name)


class _Reader:
    """Turns a run of ``unpack`` statements into ``{variable: type expression}`` in read order."""

    def __init__(self, max_lengths: dict[str, int]):
        self.max_lengths = max_lengths

    def block(self, stmts: list[ast.stmt]) -> tuple[list[tuple[str, tuple]], ast.Return | ast.Raise]:
        reads: list[tuple[str, tuple]] = []
        i = 0
        while i < len(stmts):
            s = stmts[i]
            if isinstance(s, ast.ImportFrom):
                i += 1
                continue
            if isinstance(s, (ast.Return, ast.Raise)):
                return reads, s
            if isinstance(s, ast.If) and ast.unparse(s.test) == "depth_limit <= 0":
                i += 1
                continue
            if (
                isinstance(s, ast.Assign)
                and isinstance(s.targets[0], ast.Name)
                and s.targets[0].id == "length"
                and _is_unpacker_uint(s.value)
            ):
                # length = ...; _remaining = ...; if _remaining < length: raise; x = []; for _ in range(length): x.append(T.unpack(...))
                j = i + 1
                while not isinstance(stmts[j], ast.For):
                    j += 1
                loop = stmts[j]
                target = stmts[j - 1].targets[0].id
                if ast.unparse(loop.iter) != "range(length)":
                    raise SchemaError(f"unknown array loop: {ast.unparse(loop.iter)}")
                call = loop.body[0].value.args[0]
                reads.append((target, ("array", _read_expr(call), self.max_lengths.get(target))))
                i = j + 1
                continue
            if (
                isinstance(s, ast.Assign)
                and isinstance(s.targets[0], ast.Name)
                and s.targets[0].id == "length"
                and isinstance(s.value, ast.Constant)
            ):
                # fixed-size array: length = N; x = []; for _ in range(length): x.append(T.unpack(...))
                target, loop = stmts[i + 1].targets[0].id, stmts[i + 2]
                call = loop.body[0].value.args[0]
                reads.append((target, ("farray", _read_expr(call), s.value.value)))
                i += 3
                continue
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
                reads.append((s.targets[0].id, _read_expr(s.value)))
                i += 1
                continue
            raise SchemaError(f"unknown statement: {ast.unparse(s)}")
        raise SchemaError("block without return")


def _init_params(cls) -> list[str]:
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _init_max_lengths(init: ast.FunctionDef) -> dict[str, int]:
    """``{param: max}`` from ``_expect_max_length = N`` / ``if p and len(p) > _expect_max_length`` pairs."""
    out: dict[str, int] = {}
    pending = None
    for s in init.body:
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) and s.targets[0].id.startswith("_expect"):
            pending = (s.targets[0].id, _const(s.value))
        elif isinstance(s, ast.If) and pending is not None:
            names = [n.id for n in ast.walk(s.test) if isinstance(n, ast.Name) and n.id not in ("len", pending[0])]
            if pending[0] == "_expect_max_length":
                out[names[0]] = pending[1]
            pending = None
    return out


def _methods(cls) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(Path(inspect.getsourcefile(cls)).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            return {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
    raise SchemaError(f"class {cls.__name__} not found in its module")


def _enum_value(node: ast.expr) -> int:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        return int(getattr(getattr(xdr, node.value.id), node.attr))
    raise SchemaError(f"unknown case value: {ast.unparse(node)}")


def describe(cls) -> tuple:
    """The schema entry of one SDK XDR class."""
    if issubclass(cls, enum.IntEnum):
        return ("enum",)
    methods = _methods(cls)
    reader = _Reader(_init_max_lengths(methods["__init__"]))
    body = methods["unpack"].body
    params = _init_params(cls)
    # A union reads its discriminant, then has one `if disc == value:` block per case.
    ifs = [s for s in body if isinstance(s, ast.If) and isinstance(s.test, ast.Compare) and isinstance(s.test.ops[0], ast.Eq)]
    if ifs:
        pre, _ = reader.block(body[: body.index(ifs[0])] + [ast.Return()])
        (disc_name, disc_type), = pre
        if disc_name != params[0]:
            raise SchemaError(f"{cls.__name__}: discriminant {disc_name} is not the first parameter")
        arms: dict[str, tuple] = {}
        cases: list[tuple[int, str | None]] = []
        for s in ifs:
            left, right = s.test.left, s.test.comparators[0]
            if isinstance(left, ast.Attribute):  # `v.uint32 == 0`: a typedef'd integer discriminant
                left = left.value
            if left.id != disc_name:
                raise SchemaError(f"{cls.__name__}: unknown case test {ast.unparse(s.test)}")
            reads, _ = reader.block(s.body)
            if len(reads) > 1:
                raise SchemaError(f"{cls.__name__}: a case reads {len(reads)} values")
            if reads:
                name, expr = reads[0]
                if arms.setdefault(name, expr) != expr:
                    raise SchemaError(f"{cls.__name__}: arm {name} has two types")
                cases.append((_enum_value(right), name))
            else:
                cases.append((_enum_value(right), None))
        if set(arms) - set(params[1:]):
            raise SchemaError(f"{cls.__name__}: arms {set(arms) - set(params[1:])} are not parameters")
        return ("union", disc_name, disc_type, tuple((p, arms.get(p)) for p in params[1:]), tuple(cases))
    reads, ret = reader.block(body)
    call = ret.value
    if call.args:  # typedef: cls(value)
        (name, expr), = reads
        if params != [name]:
            raise SchemaError(f"{cls.__name__}: typedef parameter {params} != {name}")
        return ("typedef", name, expr)
    if [r[0] for r in reads] != [k.arg for k in call.keywords] or sorted(params) != sorted(r[0] for r in reads):
        raise SchemaError(f"{cls.__name__}: struct fields do not match its constructor")
    return ("struct", tuple(reads), tuple(params))


def build() -> dict[str, tuple]:
    """Schema entries for every class ``stellar_sdk.xdr`` exports, by class name."""
    out: dict[str, tuple] = {}
    for name in sorted(dir(xdr)):
        cls = getattr(xdr, name)
        if not inspect.isclass(cls) or not hasattr(cls, "from_xdr_bytes") or not cls.__module__.startswith(xdr.__name__):
            continue
        out[name] = describe(cls)
    return out


def render(types: dict[str, tuple]) -> str:
    return (
        '"""XDR type descriptions read from stellar-sdk by ``python -m cdp_ray.xdr.fast.generate``. Do not edit."""\n\n'
        f"SDK_VERSION = {SDK_VERSION!r}\n\n"
        f"TYPES = {pprint.pformat(types, width=120, sort_dicts=True)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that schema.py is up to date")
    args = ap.parse_args(argv)
    text = render(build())
    if args.check:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is out of date for stellar-sdk {SDK_VERSION}", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH} ({len(text)} bytes) for stellar-sdk {SDK_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
