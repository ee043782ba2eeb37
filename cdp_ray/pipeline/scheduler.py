"""Chunks on a pool of Ray actors, fed lazily, with bounded memory on the driver.

Ray Data pays tens of milliseconds per block (scheduling, object store, metadata; 70-110 ms per
one-row block through ``map_batches`` measured on a busy 2-core machine), and a backfill's work is
already cut into chunks that each read, decode, process and commit on their own. So chunks go
straight to long-lived actors as method calls (~2 ms each): at most ``depth`` chunks are queued per
actor, the next chunk is generated only when an actor has room, and results stream back as they
finish. Nothing on the driver grows with the range.

Faults: actors are restarted by Ray (``max_restarts=-1``) on any live node, also when their node
died; a chunk whose actor died is resubmitted to a healthy actor, up to ``attempts`` times (its
commit replaces whatever a dead attempt left). An actor becomes healthy again once a ping returns,
so calls never queue on an actor that cannot be placed. Actors are spread over the cluster's nodes.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterator

from cdp_ray.errors import CdpRayError


class NoWorkersError(CdpRayError):
    """No worker of the run could be started or kept alive."""

    hint = "check that the cluster has nodes with free CPUs (`ray status`), or lower --workers"


class ActorPool:
    """``workers`` instances of ``cls`` (a plain class), each built with ``kwargs``, running ``method``
    (in ``runtime_env`` when given, e.g. the user modules the workers must import)."""

    def __init__(self, cls: type, kwargs: dict[str, Any], workers: int, *, method: str = "process_chunk",
                 depth: int = 2, attempts: int = 4, num_cpus: float = 1, idle_timeout_s: float = 600.0,
                 runtime_env: dict[str, Any] | None = None):
        import ray

        remote = ray.remote(cls).options(
            num_cpus=num_cpus, max_restarts=-1, max_task_retries=0, scheduling_strategy="SPREAD",
            **({"runtime_env": runtime_env} if runtime_env else {}),
        )
        self.actors = [remote.remote(**kwargs) for _ in range(workers)]
        self.method, self.depth, self.attempts = method, depth, attempts
        self.idle_timeout_s = idle_timeout_s
        self.pings = {a.ping.remote(): i for i, a in enumerate(self.actors)}
        self.healthy: set[int] = set()
        self.load = [0] * workers
        self.retried = 0
        self.ready_at: float | None = None  # time.monotonic() when the first actor answered
        self.inflight: dict[Any, tuple[Any, int, int]] = {}  # ref -> (item, actor, attempt)

    def run(self, items: Iterator[Any], *, stop: Callable[[], bool] = lambda: False,
            tick: Callable[[], None] = lambda: None) -> Iterator[tuple[Any, dict | None, BaseException | None]]:
        """Yield ``(item, result, None)`` per finished item, or ``(item, None, error)`` for an item whose
        workers died ``attempts`` times. After ``stop()`` turns true no item is started; those in flight
        finish."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError

        died = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)
        inflight = self.inflight
        retry: collections.deque[tuple[Any, int]] = collections.deque()
        source = iter(items)
        exhausted, idle_since = False, time.monotonic()
        while True:
            if not stop():
                while (retry or not exhausted) and (free := self._free()) is not None:
                    if retry:
                        item, attempt = retry.popleft()
                    else:
                        try:
                            item, attempt = next(source), 0
                        except StopIteration:
                            exhausted = True
                            break
                    ref = getattr(self.actors[free], self.method).remote(item)
                    inflight[ref] = (item, free, attempt)
                    self.load[free] += 1
            elif not inflight:
                return
            if not inflight and not retry and exhausted:
                return
            if inflight or self.healthy:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.idle_timeout_s:
                raise NoWorkersError(f"no worker of the run has been alive for {self.idle_timeout_s:.0f} s")
            ready, _ = ray.wait([*inflight, *self.pings], num_returns=1, timeout=1.0)
            tick()
            for ref in ready:
                if ref in self.pings:
                    i = self.pings.pop(ref)
                    try:
                        ray.get(ref)
                        self.healthy.add(i)
                        self.ready_at = self.ready_at or time.monotonic()
                    except died:
                        self.pings[self.actors[i].ping.remote()] = i
                    continue
                item, i, attempt = inflight.pop(ref)
                self.load[i] -= 1
                try:
                    result = ray.get(ref)
                except died as exc:
                    if i in self.healthy:
                        self.healthy.discard(i)
                        self.pings[self.actors[i].ping.remote()] = i
                    if attempt + 1 >= self.attempts:
                        yield item, None, exc
                    else:
                        self.retried += 1
                        retry.append((item, attempt + 1))
                    continue
                yield item, result, None

    def _free(self) -> int | None:
        """The least loaded healthy actor with room, if any."""
        best = min((i for i in self.healthy if self.load[i] < self.depth), key=self.load.__getitem__, default=None)
        return best

    def shutdown(self, wait_s: float = 60.0) -> None:
        """Kill the actors, then wait (up to ``wait_s``) until the items they were running have ended: no
        commit of a failed run lands after the run has returned and released its locks (a commit cut short
        is atomic: the next run finishes or discards it)."""
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
        pending = list(self.inflight)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=wait_s)
        self.inflight.clear()
