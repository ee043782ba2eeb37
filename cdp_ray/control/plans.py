"""Plan/apply: what a pipeline change will do, whether it may, what it costs, then doing it.

``create`` turns a desired pipeline (and optionally the current one) into a :class:`Plan`: the diff
with the impact of each change, safety checks, the policy verdict, the cost and time estimate, and
whether an approver must sign off. Plans persist in the store with an audit trail. ``apply``
re-checks the policies and hands the exact planned pipeline to an executor.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, ValidationError

from cdp_ray.control import telemetry
from cdp_ray.control.errors import ExecutorError, PlanConflict, PlanNotFound
from cdp_ray.control.estimate import Estimate, estimate, probe_volume
from cdp_ray.control.limits import check_size, load_yaml
from cdp_ray.control.locations import confine
from cdp_ray.control.policies import PolicyContext, Rule, Verdict, evaluate, now_utc
from cdp_ray.control.secrets import Credentials, credential_names, redact
from cdp_ray.control.settings import ControlSettings
from cdp_ray.control.store import Store, now_iso
from cdp_ray.control.toolcards import ToolCard
from cdp_ray.errors import CdpRayError, ConfigError
from cdp_ray.pipeline.config import PipelineConfig, parse_pipeline
from cdp_ray.pipeline.source import LakeSource
from cdp_ray.processors.base import no_processor_imports

PlanStatus = Literal["ready", "pending_approval", "approved", "blocked", "rejected", "applied", "expired"]


class PlanRequest(BaseModel):
    """A desired pipeline (document or one-line form) and, optionally, the one running now."""

    desired: dict[str, Any] | str = Field(
        description="PipelineConfig document, pipeline YAML text (no variables expanded), or `SOURCE | processor | SINK`; "
        "secrets only as ${credential:NAME}"
    )
    current: dict[str, Any] | str | None = Field(None, description="the pipeline as it is now, to diff against")
    comment: str = ""


class Change(BaseModel):
    path: str = Field(description="dotted path of what changes")
    op: Literal["create", "add", "remove", "modify"]
    before: Any = None
    after: Any = None
    impact: str = Field(description="what the change does to data and runs")
    reprocess_ledgers: int = Field(0, description="ledgers this change makes the run (re)process")


class Check(BaseModel):
    name: str
    status: Literal["pass", "warn", "fail"]
    detail: str


class Approval(BaseModel):
    by: str
    at: str
    decision: Literal["approve", "reject"]
    comment: str = ""


class Plan(BaseModel):
    """A reviewed, priced, policy-checked intention to run a pipeline."""

    id: str
    created_at: str
    expires_at: str
    created_by: str
    status: PlanStatus
    comment: str = ""
    desired: dict[str, Any]
    current: dict[str, Any] | None = None
    changes: list[Change]
    checks: list[Check]
    policy: Verdict
    estimate: Estimate
    approval_required: bool
    approvals: list[Approval] = Field(default_factory=list)
    pipeline_id: str | None = None
    applied_at: str | None = None
    applied_by: str | None = None

    def effective_status(self, now: datetime | None = None) -> PlanStatus:
        if self.status in ("ready", "pending_approval", "approved"):
            if (now or now_utc()) >= datetime.fromisoformat(self.expires_at):
                return "expired"
        return self.status

    def public(self) -> dict[str, Any]:
        """The plan as served: its effective status, and redacted."""
        return redact({**self.model_dump(mode="json"), "status": self.effective_status()})


_TIME_PARAMS = re.compile(r"[?&](start_time|end_time)=")


def parse_desired(doc: dict[str, Any] | str, what: str = "desired") -> PipelineConfig:
    """A pipeline from an API document, pipeline YAML text, or the one-line form.

    Nothing is expanded or read on the client's behalf: no ``${VAR}`` interpolation, no file paths,
    no UTC times resolved (clients resolve them: ``cdp-ray plan`` does), no processor module imported
    (only registered processors run). YAML is parsed with bounded aliases.
    """
    with no_processor_imports("the control plane runs registered processors only, it imports no module a client names"):
        return _parse_desired(doc, what)


def _parse_desired(doc: dict[str, Any] | str, what: str) -> PipelineConfig:
    if isinstance(doc, str):
        if "\n" in doc or doc.lstrip().startswith(("name:", "source:")):
            doc = load_yaml(doc, what)
            if not isinstance(doc, dict):
                raise ConfigError(f"{what}: the YAML text is not a pipeline document")
        elif "|" in doc:
            if _TIME_PARAMS.search(doc.split("|", 1)[0]):
                raise ConfigError(f"{what}: start_time/end_time are not resolved over the API",
                                  hint="give start and end ledgers, or send the pipeline with `cdp-ray plan`, "
                                  "which resolves times on the client")
            return parse_pipeline(doc)
        else:
            raise ConfigError(f"{what}: give a pipeline document, pipeline YAML text, or the one-line form "
                              "`SOURCE | processor | SINK`")
    try:
        return PipelineConfig.model_validate(doc)
    except ValidationError as exc:
        lines = [f"{what}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid pipeline:\n  " + "\n  ".join(lines)) from exc


# ---- diff ------------------------------------------------------------------------------------


def _ranges_minus(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Parts of range ``a`` not covered by ``b``."""
    out = []
    if a[0] < b[0]:
        out.append((a[0], min(a[1], b[0] - 1)))
    if a[1] > b[1]:
        out.append((max(a[0], b[1] + 1), a[1]))
    return [r for r in out if r[0] <= r[1]]


def diff(current: PipelineConfig | None, desired: PipelineConfig) -> list[Change]:
    """Changes from ``current`` to ``desired``, each with its impact."""
    n = desired.source.end - desired.source.start + 1
    tables = [s.name for s in desired.processors]
    if current is None:
        sinks = ", ".join(getattr(s, "uri", None) or s.type for s in desired.sinks) or "no sink"
        return [Change(path="pipeline", op="create", after=desired.name,
                       impact=f"process ledgers {desired.source.start}-{desired.source.end} ({n}) into "
                       f"{', '.join(tables)} -> {sinks}", reprocess_ledgers=n)]
    changes: list[Change] = []
    cs, ds = current.source, desired.source
    if (cs.uri, cs.network) != (ds.uri, ds.network):
        changes.append(Change(path="source", op="modify", before={"uri": cs.uri, "network": cs.network},
                              after={"uri": ds.uri, "network": ds.network},
                              impact="different source: every table is recomputed for the whole range",
                              reprocess_ledgers=n))
    cur_r, des_r = (cs.start, cs.end), (ds.start, ds.end)
    if cur_r != des_r:
        added = _ranges_minus(des_r, cur_r)
        dropped = _ranges_minus(cur_r, des_r)
        parts = [f"process {e - s + 1} new ledgers {s}-{e}" for s, e in added]
        parts += [f"stop covering {e - s + 1} ledgers {s}-{e} (their existing output is kept)" for s, e in dropped]
        changes.append(Change(path="source.range", op="modify", before=list(cur_r), after=list(des_r),
                              impact="; ".join(parts) or "range unchanged",
                              reprocess_ledgers=sum(e - s + 1 for s, e in added)))
    before = {s.name: s.config for s in current.processors}
    after = {s.name: s.config for s in desired.processors}
    for name in after.keys() - before.keys():
        changes.append(Change(path=f"processors.{name}", op="add", after=after[name],
                              impact=f"new table {name}: backfilled over all {n} ledgers", reprocess_ledgers=n))
    for name in before.keys() - after.keys():
        changes.append(Change(path=f"processors.{name}", op="remove", before=before[name],
                              impact=f"table {name} is no longer produced; its existing output is kept"))
    for name in before.keys() & after.keys():
        if before[name] != after[name]:
            changes.append(Change(path=f"processors.{name}.config", op="modify", before=before[name],
                                  after=after[name], impact=f"table {name} is recomputed over all {n} ledgers",
                                  reprocess_ledgers=n))
    cur_sinks = {s.model_dump_json(): s for s in current.sinks}
    des_sinks = {s.model_dump_json(): s for s in desired.sinks}
    for key in des_sinks.keys() - cur_sinks.keys():
        s = des_sinks[key]
        changes.append(Change(path=f"sinks.{s.type}", op="add", after=s.model_dump(mode="json"),
                              impact=f"new output {getattr(s, 'uri', s.type)}: receives every table for all {n} ledgers",
                              reprocess_ledgers=n))
    for key in cur_sinks.keys() - des_sinks.keys():
        s = cur_sinks[key]
        changes.append(Change(path=f"sinks.{s.type}", op="remove", before=s.model_dump(mode="json"),
                              impact=f"output {getattr(s, 'uri', s.type)} stops receiving data; existing data is kept"))
    if current.options != desired.options:
        changes.append(Change(path="options", op="modify", before=current.options.model_dump(),
                              after=desired.options.model_dump(), impact="execution only: output is unchanged"
                              if current.options.ledgers_per_task == desired.options.ledgers_per_task
                              else "output files are re-cut into new ranges (old range files remain beside them)"))
    if current.name != desired.name:
        changes.append(Change(path="name", op="modify", before=current.name, after=desired.name,
                              impact="stats and checkpoints are tracked under the new name"))
    return changes


# ---- safety checks ---------------------------------------------------------------------------


def _not_sent(what: str, doc: Any) -> str | None:
    names = sorted(credential_names(doc))
    if not names:
        return None
    return (f"{what} not checked at plan time: it uses credential {', '.join(names)}, which the control plane sends "
            "nowhere before the run starts")


def _source_check(src: LakeSource) -> Check:
    unchecked = _not_sent(src.uri, src.model_dump(mode="json"))
    if unchecked:
        return Check(name="source", status="warn", detail=unchecked)
    try:
        lake = src.open()
        if lake.layout != "lake":
            return Check(name="source", status="pass" if lake.fs.exists(lake.root) else "fail",
                         detail=f"{src.uri} ({lake.layout} layout)")
        missing = [seq for seq in (src.start, src.end) if not lake.fs.exists(f"{lake.root}/{lake.schema.key_for(seq)}")]
        return Check(name="source", status="fail" if missing else "pass",
                     detail=f"ledgers {missing} are not in the lake {src.uri}" if missing
                     else f"first and last ledger objects exist in {src.uri}")
    except CdpRayError as exc:
        return Check(name="source", status="fail", detail=exc.message)
    except Exception as exc:  # storage clients raise their own types for unreachable endpoints
        return Check(name="source", status="fail", detail=f"cannot open {src.uri}: {exc}")


def safety_checks(cfg: PipelineConfig) -> list[Check]:
    """Checks that need no policy: the source is there, outputs are sane. Locations that need a
    credential are not contacted (the plan is not approved yet)."""
    src = cfg.source
    checks = [Check(name="config", status="pass", detail="pipeline validates; every component is registered"),
              _source_check(src)]
    src_root = src.uri.rstrip("/")
    for s in cfg.sinks:
        uri = getattr(s, "uri", None)
        if uri is None:
            continue
        if uri.rstrip("/").startswith(src_root + "/") or uri.rstrip("/") == src_root:
            checks.append(Check(name=f"sink.{s.type}", status="fail", detail=f"output {uri} is inside the source lake"))
            continue
        if s.type == "parquet":
            unchecked = _not_sent(uri, s.model_dump(mode="json"))
            checks.append(Check(name="sink.parquet", status="warn", detail=unchecked) if unchecked
                          else _replaced_files(s, cfg))
    if not cfg.sinks:
        checks.append(Check(name="sinks", status="warn", detail="no sink: the run computes tables and discards them"))
    return checks


def _replaced_files(config: Any, cfg: PipelineConfig) -> Check:
    """Whether another pipeline owns one of the tables, and how many committed ranges of this pipeline the run
    replaces (from the manifests' names: one listing, however large the output)."""
    from cdp_ray.sinks.parquet import ParquetSink

    uri, src = config.uri, cfg.source
    try:
        sink = ParquetSink(config)
        owners = {p.name: sink.owner(p.name) for p in cfg.processors}
        taken = {t: o for t, o in owners.items() if o not in (None, cfg.name)}
        if taken:
            return Check(name="sink.parquet", status="fail",
                         detail=f"tables under {uri} belong to other pipelines: "
                         + ", ".join(f"{t} ({o})" for t, o in sorted(taken.items())))
        hit = sum(1 for r in sink.committed(cfg.name) if r.start <= src.end and r.end >= src.start)
    except Exception as exc:  # an unreachable bucket is reported, not fatal to planning
        return Check(name="sink.parquet", status="warn", detail=f"cannot list {uri}: {exc}")
    if hit:
        return Check(name="sink.parquet", status="warn",
                     detail=f"{hit} committed ranges of {cfg.name} under {uri} overlap the range and will be replaced")
    return Check(name="sink.parquet", status="pass", detail=f"no committed range of {cfg.name} under {uri} overlaps")


# ---- the service -----------------------------------------------------------------------------


class PlanService:
    """Creates, approves, rejects and applies plans; every step is audited.

    Every client document is admitted first (:meth:`admit`): bounded in size, parsed without
    expanding anything, relative local paths confined to the data directory, literal secrets and
    unknown credentials refused.
    """

    def __init__(self, store: Store, settings: ControlSettings, cards: dict[str, ToolCard], rules: list[Rule],
                 submit: Callable[[Plan, PipelineConfig, str], dict[str, Any]],
                 notify: Callable[[Plan], None] | None = None):
        self.store, self.settings, self.cards, self.rules = store, settings, cards, rules
        self.submit, self.notify = submit, notify
        self.credentials = Credentials(settings.credentials)
        self.data_dir = settings.data_dir

    def admit(self, doc: dict[str, Any] | str, what: str = "desired") -> PipelineConfig:
        """A client's pipeline document as the control plane will hold it, or the reason it is refused."""
        check_size(doc, self.settings.max_document_bytes, what)
        cfg = confine(parse_desired(doc, what), self.data_dir)
        self.credentials.check(cfg.model_dump(mode="json", by_alias=True), what)
        return cfg

    def _verdict(self, cfg: PipelineConfig, est: Estimate, phase: str, principal: str, subject: str) -> Verdict:
        with telemetry.span("policy.evaluate", phase=phase, plan_id=subject, rules=len(self.rules)):
            ctx = PolicyContext(pipeline=cfg, estimate=est, phase=phase, principal=principal, now=now_utc(),
                                applies_since=lambda t: self.store.count_applies(t.isoformat()),
                                data_dir=self.data_dir, resolve_text=self.credentials.substitute_text)
            verdict = evaluate(self.rules, ctx)
        self.store.audit(principal, "policy.evaluate", subject, "allowed" if verdict.allowed else "blocked",
                         verdict.model_dump(mode="json"))
        return verdict

    def estimate(self, cfg: PipelineConfig) -> Estimate:
        with telemetry.span("plan.estimate", pipeline=cfg.name) as sp:
            probe = None
            if not credential_names(cfg.source.model_dump(mode="json")):  # no credential leaves before apply
                try:
                    probe = probe_volume(cfg, self.cards, self.settings.probe_objects)
                except Exception as exc:  # an unreachable lake is reported by the safety checks
                    sp.set_attribute("probe_error", str(exc))
            return estimate(cfg, self.cards, self.settings.rates, default_workers=self.settings.default_workers,
                            probe=probe)

    def create(self, req: PlanRequest, principal: str) -> Plan:
        plan_id = "plan-" + secrets.token_hex(6)
        with telemetry.span("plan.create", plan_id=plan_id, principal=principal) as sp:
            desired = self.admit(req.desired)
            current = self.admit(req.current, "current") if req.current is not None else None
            sp.set_attribute("pipeline", desired.name)
            sp.set_attribute("ledgers", desired.source.end - desired.source.start + 1)
            changes = diff(current, desired)
            with telemetry.span("plan.checks", plan_id=plan_id):
                checks = safety_checks(desired)
            est = self.estimate(desired)
            verdict = self._verdict(desired, est, "plan", principal, plan_id)
            failed = any(c.status == "fail" for c in checks)
            status: PlanStatus = ("blocked" if failed or not verdict.allowed
                                  else "pending_approval" if verdict.approval_required else "ready")
            created = datetime.now(timezone.utc)
            plan = Plan(
                id=plan_id, created_at=created.isoformat(timespec="microseconds"),
                expires_at=(created + timedelta(seconds=self.settings.plan_ttl_seconds)).isoformat(timespec="microseconds"),
                created_by=principal, status=status, comment=req.comment,
                desired=desired.model_dump(mode="json"), current=current.model_dump(mode="json") if current else None,
                changes=changes, checks=checks, policy=verdict, estimate=est,
                approval_required=verdict.approval_required,
            )
            sp.set_attribute("status", status)
            self.store.save_plan(plan.model_dump(mode="json"))
            self.store.audit(principal, "plan.create", plan_id, status,
                             {"pipeline": desired.name, "ledgers": est.ledgers, "dollars": est.dollars.total})
        if status == "pending_approval" and self.notify:
            self.notify(plan)
        return plan

    def get(self, plan_id: str) -> Plan:
        doc = self.store.get_plan(plan_id)
        if doc is None:
            raise PlanNotFound(f"no plan {plan_id!r}")
        return Plan.model_validate(doc)

    def list(self, limit: int = 20, before: str | None = None) -> list[Plan]:
        return [Plan.model_validate(d) for d in self.store.list_plans(limit, before)]

    def decide(self, plan_id: str, principal: str, decision: Literal["approve", "reject"], comment: str = "") -> Plan:
        plan = self.get(plan_id)
        status = plan.effective_status()
        action = f"plan.{decision}"
        problem = None
        if status not in ("pending_approval", "ready", "approved"):
            problem = f"plan {plan_id} is {status}; only a pending plan can be {decision}d"
        elif decision == "approve" and self.settings.distinct_approver and principal == plan.created_by:
            problem = f"{principal!r} created plan {plan_id} and may not approve it"
        decided = plan.model_copy(deep=True)
        decided.approvals.append(Approval(by=principal, at=now_iso(), decision=decision, comment=comment))
        decided.status = "approved" if decision == "approve" else "rejected"
        if problem is None and not self.store.swap_plan(plan_id, plan.status, decided.model_dump(mode="json")):
            problem = f"plan {plan_id} changed while it was being {decision}d (applied or decided meanwhile)"
        if problem:
            self.store.audit(principal, action, plan_id, "refused", {"reason": problem})
            raise PlanConflict(problem)
        self.store.audit(principal, action, plan_id, "ok", {"comment": comment})
        return decided

    def apply(self, plan_id: str, principal: str) -> dict[str, Any]:
        """Submit the planned pipeline: refused unless ready/approved, unexpired and allowed now.

        The policy re-check, the rate count and the switch to ``applied`` happen in one transaction
        under a database-wide lock, so concurrent applies (of one plan or many, on any replica) cannot
        apply a plan twice or exceed a rate policy. A run that cannot start puts the plan back.
        """
        with telemetry.span("plan.apply", plan_id=plan_id, principal=principal) as sp:
            plan = self.get(plan_id)
            status = plan.effective_status()

            def refuse(reason: str, **detail: Any) -> PlanConflict:
                self.store.audit(principal, "plan.apply", plan_id, "refused", {"reason": reason, **detail})
                sp.set_attribute("refused", reason)
                return PlanConflict(reason)

            if status == "pending_approval":
                raise refuse(f"plan {plan_id} needs approval: {'; '.join(r.message or r.policy for r in plan.policy.results if r.outcome == 'approval')}")
            if status == "applied":
                raise refuse(f"plan {plan_id} was already applied as pipeline {plan.pipeline_id}")
            if status not in ("ready", "approved"):
                raise refuse(f"plan {plan_id} is {status} and cannot be applied")
            cfg = PipelineConfig.model_validate(plan.desired)
            pipeline_id = "pl-" + secrets.token_hex(6)
            applied = plan.model_copy(update={"status": "applied", "pipeline_id": pipeline_id, "applied_at": now_iso(),
                                              "applied_by": principal})
            won = False
            with self.store.transaction("apply"):
                verdict = self._verdict(cfg, plan.estimate, "apply", principal, plan_id)
                if verdict.allowed and self.store.swap_plan(plan_id, plan.status, applied.model_dump(mode="json")):
                    self.store.record_apply(pipeline_id, plan_id, principal)
                    won = True
            if not verdict.allowed:
                raise refuse(f"policy refuses the apply now: {'; '.join(verdict.blocking)}", verdict=verdict.model_dump())
            if not won:
                now = self.get(plan_id)
                raise refuse(f"plan {plan_id} was already applied as pipeline {now.pipeline_id}" if now.status == "applied"
                             else f"plan {plan_id} became {now.effective_status()} while it was being applied")
            sp.set_attribute("pipeline_id", pipeline_id)
            try:
                submitted = self.submit(applied, cfg, pipeline_id)
            except Exception as exc:
                err = exc if isinstance(exc, ExecutorError) else ExecutorError(
                    f"the run could not start: {type(exc).__name__}: {exc}")
                with self.store.transaction("apply"):
                    self.store.swap_plan(plan_id, "applied", plan.model_dump(mode="json"))
                    self.store.forget_apply(pipeline_id)
                self.store.audit(principal, "plan.apply", plan_id, "error",
                                 {"error": type(err).__name__, "message": err.message, "pipeline_id": pipeline_id})
                sp.set_attribute("error", err.message)
                raise err from exc
            self.store.audit(principal, "plan.apply", plan_id, "ok", {"pipeline_id": pipeline_id, **submitted})
            return {"plan_id": plan_id, "pipeline_id": pipeline_id, **submitted}
