import hashlib
import uuid

import pytest

from service.settings import CommonSettings
from service.storage.objects import (
    LocalStorage,
    ObjectNotFound,
    StorageUnavailable,
    input_key,
    job_prefix,
    make_storage,
    result_key,
    segment_key,
)

JOB = uuid.uuid4().hex


def test_key_layout():
    assert input_key(JOB, "reference_image.png") == f"jobs/{JOB}/inputs/reference_image.png"
    assert segment_key(JOB, 7, "npz") == f"jobs/{JOB}/segments/0007.npz"
    assert result_key(JOB) == f"jobs/{JOB}/result.mp4"


@pytest.mark.parametrize("job_id, name", [
    ("../etc", "x.png"), (JOB.upper(), "x.png"), (JOB, "../passwd"), (JOB, "a/b.png"), (JOB, "My Photo.png"),
    (JOB, ""),
])
def test_keys_refuse_anything_but_ids_and_fixed_names(job_id, name):
    with pytest.raises(ValueError):
        input_key(job_id, name)


def test_segment_index_range():
    with pytest.raises(ValueError):
        segment_key(JOB, 10_000, "npz")


def test_round_trip_with_sha256(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    data = b"\x00\x01video" * 1000
    stored = storage.put_bytes(result_key(JOB), data, "video/mp4")
    assert stored.size_bytes == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert storage.get_bytes(result_key(JOB)) == data
    assert storage.exists(result_key(JOB)) and not storage.exists(input_key(JOB, "nothing.png"))
    assert storage.local_path(result_key(JOB)).read_bytes() == data
    assert storage.presigned_url(result_key(JOB), 60) is None


def test_list_and_delete_prefix(tmp_path):
    storage = LocalStorage(tmp_path)
    for k in (2, 0, 1):
        storage.put_bytes(segment_key(JOB, k, "npz"), b"x")
    storage.put_bytes(input_key(JOB, "pose_keypoints.json"), b"[]")
    assert storage.list(f"{job_prefix(JOB)}segments/") == [segment_key(JOB, k, "npz") for k in range(3)]
    assert storage.list(f"{job_prefix(JOB)}segments/000") == [segment_key(JOB, k, "npz") for k in range(3)]
    assert storage.delete_prefix(job_prefix(JOB)) == 4
    assert storage.list(job_prefix(JOB)) == []


def test_missing_object(tmp_path):
    with pytest.raises(ObjectNotFound):
        LocalStorage(tmp_path).get_bytes(result_key(JOB))


def test_keys_cannot_escape_the_root(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    for key in ("../outside", "/etc/passwd", "jobs/../../x"):
        with pytest.raises(ValueError):
            storage.put_bytes(key, b"x")


def test_ping_reports_an_unusable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageUnavailable):
        LocalStorage(blocker / "sub").ping()
    LocalStorage(tmp_path / "ok").ping()


def test_settings_pick_the_backend(tmp_path):
    storage = make_storage(CommonSettings(storage="local", local_storage_dir=tmp_path))
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path.resolve()
