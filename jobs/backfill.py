"""Ray job entrypoint: run any pipeline on the Ray cluster this job runs on, and print its summary.

Submit it to a cluster where cdp-ray is installed (``ray-cluster.yaml`` installs it on every node)::

    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/backfill.py pipelines/payments.yaml
    ray job submit --runtime-env jobs/runtime_env.yaml -- python jobs/backfill.py pipelines/core.yaml \\
        --start-time 2025-06-01T00:00:00Z --end-time 2025-06-02T00:00:00Z --resume

``jobs/runtime_env.yaml`` uploads the working directory (pipeline files, user processors) without the
checkout's ``cdp_ray/``: an uploaded copy would shadow the installed package on the driver and every
worker, without its compiled extensions (git-ignored, so never uploaded), and decode with stellar-sdk.

or run it directly: it joins ``$RAY_ADDRESS`` or the cluster ``ray start`` started here, else starts a local Ray.
The last line on stdout is the run summary as JSON. Exit codes: 0 ok, 1 failed, 2 bad input,
3 finished with quarantined ranges, 4 success criteria failed, 130 stopped. With ``--control-url`` (or
``$CDP_RAY_CONTROL_URL`` and ``$CDP_RAY_TOKEN`` in the job's runtime env) the run registers with that
control plane, reports per-chunk stats and stops when asked there (or by ``ray job stop``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

# Run from a checkout where cdp-ray is not installed: import it from the checkout. Under
# `--runtime-env jobs/runtime_env.yaml` the upload has no cdp_ray/ and the installed package is used.
ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("cdp_ray") is None and (ROOT / "cdp_ray" / "__init__.py").is_file():
    sys.path.insert(0, str(ROOT))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="backfill.py", description="Run a cdp-ray pipeline as a Ray job.")
    p.add_argument("spec", nargs="?", default=None,
                   help="pipeline YAML or one-liner 'SOURCE | processor | SINK' (default: the bundled sample)")
    p.add_argument("--start", type=int, help="first ledger (overrides the pipeline's)")
    p.add_argument("--end", type=int, help="last ledger (overrides the pipeline's)")
    p.add_argument("--start-time", help="first ledger closed at or after this UTC time (ISO 8601)")
    p.add_argument("--end-time", help="last ledger closed at or before this UTC time (ISO 8601)")
    p.add_argument("--workers", type=int, help="parallel workers (default: every CPU of the cluster)")
    p.add_argument("--resume", action="store_true", help="skip ranges every sink already committed")
    p.add_argument("--force", action="store_true", help="run although the sinks hold ranges of another config")
    p.add_argument("--address", default=None,
                   help="Ray cluster address; `local` starts a new local Ray (default: $RAY_ADDRESS, else the cluster "
                        "`ray start` started on this machine, else a new local Ray)")
    p.add_argument("--control-url", default=os.environ.get("CDP_RAY_CONTROL_URL"),
                   help="report to this control plane (default: $CDP_RAY_CONTROL_URL)")
    p.add_argument("--control-token", default=os.environ.get("CDP_RAY_TOKEN"),
                   help="its bearer token, with the apply scope (default: $CDP_RAY_TOKEN)")
    return p.parse_args(argv)


def _job_id() -> str | None:
    """The Ray job submission id of this driver, when it runs as one."""
    try:
        doc = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except ValueError:
        return None
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    return (meta or {}).get("job_submission_id") or None


def _log(msg: str) -> None:
    print(f"[backfill] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from cdp_ray.cli.main import exit_code, summary_doc
    from cdp_ray.cli.ray_env import connect, quiet_environment, remote_user_error
    from cdp_ray.control.client import RunHooks

    quiet_environment()
    from cdp_ray.errors import CdpRayError, ConfigError
    from cdp_ray.pipeline.config import parse_pipeline, with_range
    from cdp_ray.pipeline.runner import run_pipeline

    try:
        spec = args.spec
        if spec is None:
            from cdp_ray.sample import sample_pipeline_path

            spec = str(sample_pipeline_path())
        cfg = with_range(parse_pipeline(spec), start=args.start, end=args.end,
                         start_time=args.start_time, end_time=args.end_time)
        if args.workers:
            cfg.options.workers = args.workers
        cfg.source.open()  # fail fast on a wrong URI, missing root or credentials
        where = connect(args.address)
        src = cfg.source
        total = src.end - src.start + 1
        _log(f"{cfg.name}: ledgers {src.start}-{src.end} ({total:,}) from {src.uri} on {where}")
        done, last = 0, time.monotonic()

        def progress(row: dict) -> None:
            nonlocal done, last
            done += int(row["ledgers"])
            if row.get("status") == "quarantined":
                _log(f"ledgers {row['start']}-{row['end']} quarantined: {row['error']}: {row['error_message']}")
            if time.monotonic() - last > 10 or done == total:
                _log(f"{done:,}/{total:,} ledgers")
                last = time.monotonic()

        hooks = RunHooks(cfg, url=args.control_url, token=args.control_token, on_chunk=progress, job_id=_job_id())
        if hooks.pipeline_id:
            _log(f"reporting to {args.control_url} as {hooks.pipeline_id}")
        signal.signal(signal.SIGTERM, lambda *_: hooks.request_stop())  # `ray job stop`: stop between chunks
        try:
            summary = run_pipeline(cfg, on_chunk=hooks.on_chunk, resume=args.resume, force=args.force,
                                   should_stop=hooks.should_stop)
        except Exception as exc:
            error = remote_user_error(exc) or exc
            hooks.finish(error=error)
            raise error
    except CdpRayError as exc:
        print(json.dumps({"ok": False, "error": type(exc).__name__, "message": exc.message, "hint": exc.hint}))
        _log(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
        return 2 if isinstance(exc, ConfigError) else 1
    _log("decoder: " + (", ".join(f"{d} ({n} chunks)" for d, n in summary.decoders.items()) or "none ran"))
    for w in summary.decoder_warnings:
        _log(f"WARNING: {w}")
    final = hooks.finish(summary)
    doc = summary_doc(cfg, summary, final)
    print(json.dumps(doc), flush=True)
    return exit_code(cfg, summary, final)


if __name__ == "__main__":
    sys.exit(main())
