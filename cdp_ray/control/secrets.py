"""Secrets in pipeline documents: named credentials, refusal of literal secrets, redaction.

A client never sends a secret and the control plane never expands its own settings into a client
document. A plan names a credential the control plane holds with ``${credential:NAME}`` inside any
string (``dsn: ${credential:analytics}``, ``postgresql://app:${credential:pg_password}@db/x``,
``storage_options: {secret: ${credential:aws_secret}}``); plans, audit records and responses keep the
placeholder, and the executor substitutes the value in memory when the run starts. Everything served
or stored also goes through :func:`redact`, in case a secret arrived some other way.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Iterator

from cdp_ray.control.errors import CredentialUnavailable, UnsafeDocument

if TYPE_CHECKING:
    from cdp_ray.control.settings import Credential
    from cdp_ray.pipeline.config import PipelineConfig

PLACEHOLDER = re.compile(r"\$\{credential:([A-Za-z0-9_.-]+)\}")
VARIABLE = re.compile(r"\$\{(?!credential:[A-Za-z0-9_.-]+\})[^}]*\}?")
REDACTED = "***"
SECRET_WORDS = frozenset({"key", "secret", "token", "password", "passwd", "pwd", "credential", "credentials", "sas",
                          "apikey", "privatekey"})
DIGEST_WORDS = frozenset({"sha256", "digest", "hash"})
NOT_SECRET = frozenset({"anon", "google_default", "cloud", "cache"})  # gcsfs `token` modes that name no secret
_URL_PASSWORD = re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)(?P<pw>[^\s@/]+)(?=@)")
_URL_USERINFO = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@]+@")
_KV_PASSWORD = re.compile(r"(?P<pre>(?:^|[\s?&;])password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&;]+)", re.IGNORECASE)
CREDENTIAL_HINT = ("store the secret on the control plane as a named credential (`credentials:` in its settings) and "
                   "write ${credential:NAME} where the value goes")


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret: ``secret``, ``aws_secret_access_key``, ``sessionToken``,
    ``password``... (not a digest of one: ``report_token_sha256``)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower())
    if DIGEST_WORDS.intersection(words):
        return False
    return bool(SECRET_WORDS.intersection(words)) or "".join(words) in SECRET_WORDS


def _is_placeholder(text: str) -> bool:
    return PLACEHOLDER.fullmatch(text.strip("'")) is not None


def _leaves(doc: Any, path: str = "", key: str | None = None, keyed: bool = False) -> Iterator[tuple[str, str | None, bool, Any]]:
    """``(path, nearest key, under a secret-looking key, value)`` of every leaf of a JSON document
    (``credentials: {...}`` holds secrets at any depth)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k), str(k), keyed or is_secret_key(str(k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, f"{path}[{i}]", key, keyed)
    else:
        yield path, key, keyed, doc


def _secret_value(text: str) -> bool:
    """A literal value under a secret-looking key (not a placeholder, not a gcsfs mode)."""
    return not _is_placeholder(text) and text not in NOT_SECRET


def find_variables(doc: Any) -> list[str]:
    """Every ``${NAME}``-style variable (anything but a credential placeholder) in the document's strings."""
    found = [m.group(0) for _, _, _, v in _leaves(doc) if isinstance(v, str) for m in VARIABLE.finditer(v)]
    return list(dict.fromkeys(found))


def find_literal_secrets(doc: Any) -> list[str]:
    """Paths of values that hold a secret in clear: a password in a URL or conninfo, userinfo in an
    endpoint, a secret-looking key with a literal value."""
    hits: list[str] = []
    for path, key, keyed, v in _leaves(doc):
        if not isinstance(v, str):
            continue
        if (keyed and _secret_value(v)) or redact_text(v) != v or (
                key and ("endpoint" in key.lower() or key.lower().endswith("url")) and _URL_USERINFO.search(v)):
            hits.append(path)
    return hits


def redact_text(text: str) -> str:
    """``text`` with URL passwords and ``password=`` values replaced by ``***`` (placeholders kept)."""
    if "@" not in text and "password" not in text.lower():
        return text

    def keep_placeholder(m: re.Match) -> str:
        return m.group(0) if _is_placeholder(m.group("pw")) else m.group("pre") + REDACTED

    return _KV_PASSWORD.sub(keep_placeholder, _URL_PASSWORD.sub(keep_placeholder, text))


def redact(doc: Any, keyed: bool = False) -> Any:
    """A copy of a JSON document with every secret replaced by ``***``; credential placeholders are kept."""
    if isinstance(doc, dict):
        return {k: redact(v, keyed or is_secret_key(str(k))) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v, keyed) for v in doc]
    if isinstance(doc, str):
        return REDACTED if keyed and _secret_value(doc) else redact_text(doc)
    return doc


def credential_names(doc: Any) -> set[str]:
    """Names of the credentials a document refers to."""
    return {m.group(1) for _, _, _, v in _leaves(doc) if isinstance(v, str) for m in PLACEHOLDER.finditer(v)}


def substitute(doc: Any, values: dict[str, str]) -> Any:
    """A copy of ``doc`` with every ``${credential:NAME}`` replaced by ``values[NAME]``."""
    if isinstance(doc, dict):
        return {k: substitute(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [substitute(v, values) for v in doc]
    if isinstance(doc, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], doc)
    return doc


class Credentials:
    """The named credentials of the control plane's settings; values are read when used, never stored."""

    def __init__(self, specs: dict[str, "Credential"]):
        self.specs = dict(specs)

    def check(self, doc: Any, what: str = "desired") -> None:
        """Refuse ``${VAR}`` variables, literal secrets and unknown credential names in a client document."""
        variables = find_variables(doc)
        if variables:
            raise UnsafeDocument(
                f"{what}: {', '.join(variables)} would be expanded from the control plane's environment; "
                "the control plane expands no variables in client documents",
                hint="expand your own variables on the client (cdp-ray plan FILE does); "
                "for a secret, write ${credential:NAME} naming a credential of the control plane")
        secrets = find_literal_secrets(doc)
        if secrets:
            raise UnsafeDocument(f"{what}: {', '.join(secrets)} holds a secret in clear", hint=CREDENTIAL_HINT)
        unknown = sorted(credential_names(doc) - self.specs.keys())
        if unknown:
            known = ", ".join(sorted(self.specs)) or "none are configured"
            raise UnsafeDocument(f"{what}: unknown credential {unknown[0]!r}" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                                 hint=f"credentials of this control plane: {known}")

    def values(self, names: set[str]) -> dict[str, str]:
        """The values of ``names``, read now from the settings, the environment or secret files."""
        out = {}
        for name in sorted(names):
            spec = self.specs.get(name)
            if spec is None:
                raise CredentialUnavailable(f"credential {name!r} is no longer configured",
                                            hint="add it back to the control plane's `credentials`, or plan again without it")
            try:
                out[name] = spec.read()
            except (OSError, KeyError) as exc:
                raise CredentialUnavailable(f"credential {name!r} cannot be read: {exc}") from None
        return out

    def resolve(self, cfg: "PipelineConfig") -> "PipelineConfig":
        """``cfg`` with its credential placeholders replaced by their values (for the run, in memory only)."""
        from cdp_ray.pipeline.config import PipelineConfig

        doc = cfg.model_dump(mode="json", by_alias=True)
        names = credential_names(doc)
        return PipelineConfig.model_validate(substitute(doc, self.values(names))) if names else cfg

    def substitute_text(self, text: str) -> str:
        """``text`` with known credentials substituted (unknown or unreadable ones left as placeholders)."""
        def one(m: re.Match) -> str:
            spec = self.specs.get(m.group(1))
            try:
                return spec.read() if spec else m.group(0)
            except (OSError, KeyError):
                return m.group(0)

        return PLACEHOLDER.sub(one, text)
