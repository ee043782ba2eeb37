"""Policies: rules every plan is checked against, at plan time and again at apply time.

``*.yaml`` files in the policies directory (default: the package's ``cdp_ray/policies/``) hold a
``policies:`` list; each entry names a ``rule`` and a ``mode``:
``block`` (a failure stops the plan), ``warn`` (reported, not enforced) or ``audit`` (only
recorded). Rules: ``max_ledgers``, ``resources``, ``max_cost``, ``time_window``,
``approval_required`` (a match makes the plan wait for an approver instead of failing),
``rate_limit`` (applies per period) and ``allowed_roots`` (where sinks write and sources read).
Every evaluation is written to the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Callable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cdp_ray.control.estimate import Estimate
from cdp_ray.control.locations import Location, root_location, sink_location, source_location
from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import PipelineConfig

Mode = Literal["block", "warn", "audit"]
Phase = Literal["plan", "apply"]


@dataclass
class PolicyContext:
    """What a rule sees: the pipeline, its estimate, who asks, when, and recent apply counts."""

    pipeline: PipelineConfig
    estimate: Estimate
    phase: Phase
    principal: str
    now: datetime
    applies_since: Callable[[datetime], int]
    data_dir: Path = Path(".")
    resolve_text: Callable[[str], str] = lambda text: text


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="unique name, shown in verdicts and the audit trail")
    mode: Mode = "block"
    description: str = ""

    @property
    def asks_approval(self) -> bool:
        """A failed check makes the plan wait for an approver instead of failing it."""
        return False


class MaxLedgers(RuleBase):
    """The range may not exceed ``limit`` ledgers."""

    rule: Literal["max_ledgers"]
    limit: int = Field(ge=1)

    def check(self, ctx: PolicyContext) -> str | None:
        n = ctx.estimate.ledgers
        return f"range of {n} ledgers exceeds the limit of {self.limit}" if n > self.limit else None


class Resources(RuleBase):
    """Caps on parallel workers and on estimated memory."""

    rule: Literal["resources"]
    max_workers: int | None = Field(None, ge=1)
    max_memory_gb: float | None = Field(None, gt=0)

    def check(self, ctx: PolicyContext) -> str | None:
        problems = []
        if self.max_workers is not None and ctx.estimate.workers > self.max_workers:
            problems.append(f"{ctx.estimate.workers} workers exceed the limit of {self.max_workers}")
        mem_gb = ctx.estimate.memory_bytes / 2**30
        if self.max_memory_gb is not None and mem_gb > self.max_memory_gb:
            problems.append(f"estimated memory {mem_gb:.1f} GiB exceeds the limit of {self.max_memory_gb} GiB")
        return "; ".join(problems) or None


class MaxCost(RuleBase):
    """The estimated cost may not exceed ``limit_usd`` dollars (and ``max_cpu_hours``)."""

    rule: Literal["max_cost"]
    limit_usd: float | None = Field(None, ge=0)
    max_cpu_hours: float | None = Field(None, ge=0)

    def check(self, ctx: PolicyContext) -> str | None:
        est, problems = ctx.estimate, []
        if self.limit_usd is not None and est.dollars.total > self.limit_usd:
            problems.append(f"estimated cost ${est.dollars.total:.4f} exceeds the limit of ${self.limit_usd}")
        if self.max_cpu_hours is not None and est.cpu_hours > self.max_cpu_hours:
            problems.append(f"estimated {est.cpu_hours:.3f} CPU-hours exceed the limit of {self.max_cpu_hours}")
        return "; ".join(problems) or None


class TimeWindow(RuleBase):
    """Applies only within UTC hours ``[start_hour, end_hour)`` on the listed weekdays (0 = Monday).

    Checked at apply time; at plan time a failure is reported as a warning of what apply will do.
    """

    rule: Literal["time_window"]
    start_hour: int = Field(0, ge=0, le=23)
    end_hour: int = Field(24, ge=1, le=24)
    weekdays: list[int] = Field(default_factory=lambda: list(range(7)))

    def check(self, ctx: PolicyContext) -> str | None:
        t = ctx.now.astimezone(timezone.utc)
        inside = t.weekday() in self.weekdays and (
            self.start_hour <= t.hour < self.end_hour
            if self.start_hour < self.end_hour
            else (t.hour >= self.start_hour or t.hour < self.end_hour)
        )
        if inside:
            return None
        return f"{t:%a %H:%M} UTC is outside the apply window {self.start_hour:02d}:00-{self.end_hour:02d}:00 UTC on weekdays {self.weekdays}"


class ApprovalRequired(RuleBase):
    """A matching plan needs an approver before apply. With no conditions, every plan matches;
    otherwise any one condition matching is enough."""

    rule: Literal["approval_required"]
    min_ledgers: int | None = Field(None, ge=1)
    min_cost_usd: float | None = Field(None, ge=0)
    sink_types: list[str] | None = Field(None, description="sinks whose use needs approval, e.g. [postgres]")

    @property
    def asks_approval(self) -> bool:
        return True

    def check(self, ctx: PolicyContext) -> str | None:
        reasons = []
        if self.min_ledgers is not None and ctx.estimate.ledgers >= self.min_ledgers:
            reasons.append(f"range of {ctx.estimate.ledgers} ledgers >= {self.min_ledgers}")
        if self.min_cost_usd is not None and ctx.estimate.dollars.total >= self.min_cost_usd:
            reasons.append(f"estimated cost ${ctx.estimate.dollars.total:.4f} >= ${self.min_cost_usd}")
        if self.sink_types:
            hit = sorted({s.type for s in ctx.pipeline.sinks} & set(self.sink_types))
            if hit:
                reasons.append(f"writes to {', '.join(hit)}")
        unconditional = self.min_ledgers is None and self.min_cost_usd is None and not self.sink_types
        if unconditional:
            return "every plan needs approval"
        return "approval needed: " + "; ".join(reasons) if reasons else None


class RateLimit(RuleBase):
    """At most ``max_applies`` applies per ``per_seconds``."""

    rule: Literal["rate_limit"]
    max_applies: int = Field(ge=0)
    per_seconds: int = Field(ge=1)

    def check(self, ctx: PolicyContext) -> str | None:
        done = ctx.applies_since(ctx.now - timedelta(seconds=self.per_seconds))
        if done >= self.max_applies:
            return f"{done} applies in the last {self.per_seconds}s reach the limit of {self.max_applies}"
        return None


class RootSpec(BaseModel):
    """A root on an S3- or GCS-compatible service other than the provider's own."""

    model_config = ConfigDict(extra="forbid")
    uri: str
    endpoint_url: str


class AllowedRoots(RuleBase):
    """Sinks (or the source) must lie under one of ``roots``; anything else waits for an approver
    (``outside: approval``) or is refused (``outside: block``).

    Roots: local directories (relative ones under the control plane's ``data_dir``; symlinks are
    resolved on both sides), ``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``postgresql://host[:port]/db[/schema]``, or ``{uri, endpoint_url}`` for another S3/GCS service.
    """

    rule: Literal["allowed_roots"]
    applies_to: Literal["sinks", "sources"] = "sinks"
    roots: list[Union[str, RootSpec]] = Field(min_length=1)
    outside: Literal["approval", "block"] = "approval"

    @property
    def asks_approval(self) -> bool:
        return self.outside == "approval"

    def root_locations(self, data_dir: Path) -> list[Location]:
        return [root_location(r if isinstance(r, str) else r.model_dump(), data_dir) for r in self.roots]

    def misplaced(self, cfg: PipelineConfig, data_dir: Path, resolve_text: Callable[[str], str]) -> list[str]:
        """The locations of ``cfg`` that lie under none of the roots."""
        roots = self.root_locations(data_dir)
        if self.applies_to == "sources":
            places = [source_location(cfg.source)]
        else:
            places = [sink_location(s, resolve_text) for s in cfg.sinks]
        return [str(p) for p in places if p is not None and not any(p.within(r) for r in roots)]

    def check(self, ctx: PolicyContext) -> str | None:
        bad = self.misplaced(ctx.pipeline, ctx.data_dir, ctx.resolve_text)
        if not bad:
            return None
        what = "writes to" if self.applies_to == "sinks" else "reads from"
        return f"{what} {', '.join(bad)}, outside the allowed roots {', '.join(map(str, self.root_locations(ctx.data_dir)))}"


Rule = Annotated[
    Union[MaxLedgers, Resources, MaxCost, TimeWindow, ApprovalRequired, RateLimit, AllowedRoots],
    Field(discriminator="rule"),
]
_RULES = TypeAdapter(list[Rule])


class RuleResult(BaseModel):
    """One rule's outcome: ``pass``, ``fail``, or ``approval`` (an approval_required rule matched)."""

    policy: str
    rule: str
    mode: Mode
    outcome: Literal["pass", "fail", "approval"]
    message: str | None = None


class Verdict(BaseModel):
    """All rules' outcomes for one plan at one phase."""

    phase: Phase
    allowed: bool = Field(description="no blocking rule failed")
    approval_required: bool
    blocking: list[str] = Field(description="messages of failed block-mode rules")
    warnings: list[str]
    results: list[RuleResult]


def load_policies(directory: Path | None) -> list[Rule]:
    """Every ``*.yaml`` policy file in ``directory``, in file-name order."""
    if directory is None or not Path(directory).is_dir():
        return []
    rules: list = []
    for path in sorted(Path(directory).glob("*.y*ml")):
        try:
            doc = yaml.safe_load(path.read_text()) or {}
            rules += _RULES.validate_python(doc.get("policies", []))
        except (yaml.YAMLError, ValidationError, AttributeError) as exc:
            raise ConfigError(f"invalid policy file {path}: {exc}", hint="see cdp_ray/policies/default.yaml for the rule formats") from exc
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"policy names must be unique; repeated: {', '.join(dupes)}")
    return rules


def evaluate(rules: list[Rule], ctx: PolicyContext) -> Verdict:
    """Check every rule. ``time_window`` and ``rate_limit`` only block at apply time."""
    results, blocking, warnings, approval = [], [], [], False
    for rule in rules:
        msg = rule.check(ctx)
        if msg is None:
            results.append(RuleResult(policy=rule.name, rule=rule.rule, mode=rule.mode, outcome="pass"))
            continue
        if rule.asks_approval:
            outcome = "approval"
            if rule.mode == "block":
                approval = True
            elif rule.mode == "warn":
                warnings.append(f"{rule.name}: {msg}")
        else:
            outcome = "fail"
            apply_only = isinstance(rule, (TimeWindow, RateLimit)) and ctx.phase == "plan"
            if rule.mode == "block" and not apply_only:
                blocking.append(f"{rule.name}: {msg}")
            elif rule.mode != "audit":
                warnings.append(f"{rule.name}: {msg}" + (" (enforced at apply)" if apply_only and rule.mode == "block" else ""))
        results.append(RuleResult(policy=rule.name, rule=rule.rule, mode=rule.mode, outcome=outcome, message=msg))
    return Verdict(phase=ctx.phase, allowed=not blocking, approval_required=approval, blocking=blocking,
                   warnings=warnings, results=results)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
