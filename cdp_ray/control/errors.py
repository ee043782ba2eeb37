"""Errors the control plane answers with; ``http_status`` is the status of the JSON error body."""

from __future__ import annotations

from cdp_ray.errors import CdpRayError, ConfigError


class PlanNotFound(CdpRayError):
    """No plan has this id."""

    http_status = 404
    hint = "list plans with GET /plans"


class PlanConflict(CdpRayError):
    """The plan is not in a state that allows the action (not approved, expired, blocked, ...)."""

    http_status = 409
    hint = "create a new plan with POST /plans, or approve this one first"


class UnsafeDocument(CdpRayError):
    """A client document asks for something the control plane never does for a client: expand a
    server variable, carry a literal secret, name an unknown credential, leave the data directory."""

    http_status = 400
    hint = "fix the document; see docs/security.md for what a plan may contain"


class DocumentTooLarge(CdpRayError):
    """A request body or a pipeline document is over the configured size."""

    http_status = 413
    hint = "send a smaller document; split long `where` lists into several pipelines"


class LocationNotAllowed(CdpRayError):
    """A source or sink location lies outside the roots the policies allow."""

    http_status = 403
    hint = "use a location under the data directory or an allowed root (`allowed_roots` policies)"


class PreviewTooLarge(CdpRayError):
    """A preview would read more bytes than ``preview_max_bytes``."""

    http_status = 413
    hint = "preview fewer ledgers, or plan a pipeline for more"


class ExecutorError(CdpRayError):
    """The run could not be started; the plan is unchanged and can be applied again."""

    http_status = 502
    hint = "fix the cause below and apply the plan again; it was not applied"


class JobSubmitError(ExecutorError):
    """The Ray dashboard refused the job submission (bad runtime env, entrypoint, ...)."""

    hint = "read the dashboard's reason above, fix the cluster or runtime env, and apply the plan again"


class RayUnavailable(ExecutorError):
    """The Ray dashboard (job API) cannot be reached."""

    http_status = 503
    hint = "check that the Ray head is up and `ray_address` points at its dashboard (http://HOST:8265); then apply again"


class CredentialUnavailable(ExecutorError):
    """A named credential's value cannot be read by the control plane (unset variable, unreadable file)."""

    http_status = 503
    hint = "fix the credential's `env` or `file` in the control plane's settings, then apply again"


def http_status(exc: CdpRayError) -> int:
    """The status a control-plane answer carries for ``exc``: its ``http_status``, 422 for bad configs, else 400."""
    return getattr(exc, "http_status", None) or (422 if isinstance(exc, ConfigError) else 400)
