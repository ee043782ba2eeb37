"""Object storage servers on loopback for tests: moto (S3, for s3fs) and gcp-storage-emulator (GCS, for gcsfs).

Both run in-process on a random free port for the whole session. Buckets are made per test with
``s3_server.bucket()`` / ``gcs_server.bucket()``, which return a unique name.
"""

from __future__ import annotations

import gzip
import itertools
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

S3_CREDENTIALS = {"key": "testing", "secret": "testing"}
_names = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A moto S3 server; ``options`` are the s3fs storage options that reach it with credentials."""

    endpoint_url: str
    options: dict = field(default_factory=dict)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["key"],
            aws_secret_access_key=S3_CREDENTIALS["secret"],
        )

    def bucket(self, *, public: bool = False) -> str:
        """Create a bucket; ``public`` lets unsigned (anonymous) requests read it."""
        name = f"lake-{next(_names)}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if public:
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{name}/*"}
                ],
            }
            client.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name


@dataclass
class GCSServer:
    """A gcp-storage-emulator server; ``options`` are the gcsfs storage options that reach it."""

    endpoint_url: str
    options: dict = field(default_factory=dict)

    def bucket(self) -> str:
        from gcsfs.core import GCSFileSystem

        name = f"lake-{next(_names)}"
        GCSFileSystem(**self.options).mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    yield S3Server(url, {**S3_CREDENTIALS, "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}})
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A GCS JSON-API emulator on 127.0.0.1 for the session."""
    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.server import create_server

    _add_move_to(emulator)
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, data_dir=str(tmp_path_factory.mktemp("gcs")))
    server.start()
    url = f"http://127.0.0.1:{port}"
    yield GCSServer(url, {"endpoint_url": url, "token": "anon", "project": "test"})
    server.stop()


def _add_move_to(emulator) -> None:
    """Teach the emulator GCS's ``objects.move`` (``POST .../o/{src}/moveTo/o/{dst}``), which gcsfs tries first
    for every ``mv``: unanswered (501) it retries for about 33 s before falling back to copy and delete."""
    from gcp_storage_emulator.handlers import objects
    from gcp_storage_emulator.server import POST

    if any("moveTo" in regex for regex, _ in emulator.HANDLERS):
        return

    def move(request, response, storage, *args, **kwargs):
        request.params["dest_bucket_name"] = request.params["bucket_name"]
        objects.copy(request, response, storage)
        if response.status in (None, 200):
            storage.delete_file(request.params["bucket_name"], request.params["object_id"])

    route = (rf"^{emulator.settings.API_ENDPOINT}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/"
             r"(?P<dest_object_id>.*[^/]+)$", {POST: move})
    emulator.HANDLERS = (route, *emulator.HANDLERS)


@pytest.fixture(scope="session")
def wallet_ledgers(stellar_data: Path) -> dict[int, bytes]:
    """Pubnet ledgers 63092982-63092991 (LedgerCloseMeta XDR) from wallet-backend's gzip files."""
    return {
        seq: gzip.decompress((stellar_data / "wallet-backend" / f"ledger-{seq}.xdr.gz").read_bytes())
        for seq in range(63092982, 63092992)
    }
