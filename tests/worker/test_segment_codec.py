import numpy as np
import pytest

from worker.segment_codec import decode_frames, encode_frames


def test_round_trip_is_bit_exact_and_smaller_than_raw():
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, size=(5, 48, 32, 3), dtype=np.uint8)
    frames[:, :24] = 90  # a flat region compresses, noise does not
    data = encode_frames(frames)
    decoded = np.stack(list(decode_frames(data)))
    assert decoded.shape == frames.shape
    assert np.array_equal(decoded, frames)
    assert len(data) < frames.nbytes


def test_rejects_wrong_dtype_and_empty():
    with pytest.raises(ValueError, match="uint8"):
        encode_frames([np.zeros((4, 4, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="at least one frame"):
        encode_frames([])
