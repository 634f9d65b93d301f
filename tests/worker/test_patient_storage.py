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
