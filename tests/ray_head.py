"""A private Ray head with a dashboard for tests that submit real Ray jobs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="session")
def private_ray(tmp_path_factory):
    """``(dashboard URL, env)`` of a Ray head of the session's own: ``ray start --head --block`` with its own
    temp dir and loopback ports, stopped by its PID (``--block`` ends every process it started). The package
    is on its PYTHONPATH, as ray-cluster.yaml installs it on every node; ``python`` on its PATH is this one."""
    tmp = tmp_path_factory.mktemp("ray")
    gcs, dash, client, agent, agent_grpc, metrics, runtime_env = free_ports(7)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(tmp),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    log = open(tmp / "ray-start.log", "w")
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--temp-dir", str(tmp / "t"), "--port", str(gcs), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--object-store-memory", str(128 * 2**20), "--disable-usage-stats",
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics),
         "--runtime-env-agent-port", str(runtime_env)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp / "ray-start.log").read_text()[-3000:]
            ok = subprocess.run([RAY, "job", "list", "--address", url], env=env, capture_output=True)
            if ok.returncode == 0:
                break
            assert time.monotonic() < deadline, ok.stderr.decode()[-2000:]
            time.sleep(2)
        yield url, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
