"""PatientStorage: storage calls ride out an outage with growing waits, and give up after patience_s."""
from __future__ import annotations

import pytest

from service.storage.objects import LocalStorage, StorageUnavailable
from worker.patient_storage import PatientStorage


class Flaky(LocalStorage):
    """Local storage that is unreachable for the first `outage` calls."""

    def __init__(self, root, outage: int) -> None:
        super().__init__(root)
        self.outage = outage
        self.calls = 0

    def put_file(self, key, path, content_type="application/octet-stream"):
        self.calls += 1
        if self.calls <= self.outage:
            raise StorageUnavailable("connection refused")
        return super().put_file(key, path, content_type)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def patient(storage, clock: FakeClock, patience_s: float) -> PatientStorage:
    return PatientStorage(storage, patience_s, base_s=1.0, cap_s=8.0, sleep=clock.sleep, clock=lambda: clock.now,
                          rng=lambda: 1.0)


def test_an_outage_shorter_than_the_patience_is_ridden_out(tmp_path):
    clock, flaky = FakeClock(), Flaky(tmp_path, outage=5)
    stored = patient(flaky, clock, patience_s=60).put_bytes("jobs/a/x.bin", b"frames")
    assert flaky.calls == 6 and flaky.get_bytes("jobs/a/x.bin") == b"frames" and stored.size_bytes == 6
    assert clock.waits == [1.0, 2.0, 4.0, 8.0, 8.0], "exponential backoff up to the cap"


def test_a_longer_outage_reaches_the_caller_once_the_patience_is_spent(tmp_path):
    clock, flaky = FakeClock(), Flaky(tmp_path, outage=100)
    with pytest.raises(StorageUnavailable):
        patient(flaky, clock, patience_s=10).put_bytes("jobs/a/x.bin", b"frames")
    assert clock.now <= 10 and flaky.calls == 4  # waited 1 + 2 + 4; the next 8 s wait would pass the deadline


class FlakyMultipart(LocalStorage):
    """Every multipart call fails once (an outage), then works."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.failed: set[str] = set()

    def _once(self, name: str) -> None:
        if name not in self.failed:
            self.failed.add(name)
            raise StorageUnavailable(f"{name}: connection reset")

    def create_multipart(self, key, content_type="application/octet-stream"):
        self._once("create")
        return super().create_multipart(key, content_type)

    def upload_part(self, key, upload_id, number, data):
        self._once(f"part {number}")
        return super().upload_part(key, upload_id, number, data)

    def complete_multipart(self, key, upload_id, parts):
        self._once("complete")
        return super().complete_multipart(key, upload_id, parts)

    def abort_multipart(self, key, upload_id):
        self._once("abort")
        return super().abort_multipart(key, upload_id)


def test_multipart_calls_ride_out_an_outage_too(tmp_path):
    clock, flaky = FakeClock(), FlakyMultipart(tmp_path)
    storage = patient(flaky, clock, patience_s=60)
    upload_id = storage.create_multipart("jobs/a/r.mp4")
    parts = [storage.upload_part("jobs/a/r.mp4", upload_id, 1, b"only part")]
    storage.complete_multipart("jobs/a/r.mp4", upload_id, parts)
    assert flaky.get_bytes("jobs/a/r.mp4") == b"only part"
    other = storage.create_multipart("jobs/a/s.mp4")
    storage.abort_multipart("jobs/a/s.mp4", other)
    assert flaky.failed == {"create", "part 1", "complete", "abort"} and len(clock.waits) == 4
    assert not storage.exists("jobs/a/s.mp4")
