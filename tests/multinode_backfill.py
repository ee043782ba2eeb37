"""Driver of tests/test_multinode.py, run in its own process: a Ray cluster of a head and two worker nodes on
this machine (``ray.cluster_utils.Cluster``, under the private ``$RAY_TMPDIR`` the test gives it), a backfill
into PostgreSQL and Parquet across the worker nodes, and one worker node removed (its processes killed)
after a few chunks committed. Prints the run summary and what happened as JSON on its last line."""

from __future__ import annotations

import json
import sys

import ray
from ray.cluster_utils import Cluster

from cdp_ray.errors import ConfigError
from cdp_ray.pipeline.config import PipelineConfig
from cdp_ray.pipeline.runner import run_pipeline


def main(doc_json: str, kill_after: int) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "object_store_memory": 80 * 2**20})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        doc = json.loads(doc_json)
        relative = {**doc, "sinks": [{"type": "parquet", "uri": "relative/out"}]}
        try:
            run_pipeline(PipelineConfig.model_validate(relative))
            refused = None
        except ConfigError as exc:
            refused = exc.message
        nodes_used: dict[str, int] = {}
        events: list[dict] = []

        def on_chunk(row: dict) -> None:
            node = row["node"]
            nodes_used[node] = nodes_used.get(node, 0) + 1
            if len(events) == 0 and sum(nodes_used.values()) >= kill_after:
                victim = next(w for w in workers if w.node_id == node)
                cluster.remove_node(victim, allow_graceful=False)
                events.append({"removed": node, "after_chunks": sum(nodes_used.values())})

        summary = run_pipeline(PipelineConfig.model_validate(doc), on_chunk=on_chunk)
        return {
            "refused_relative": refused, "chunks": summary.chunks, "ledgers": summary.ledgers,
            "retried_chunks": summary.retried_chunks, "rows": summary.rows_by_table, "nodes_used": nodes_used,
            "events": events,
        }
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
