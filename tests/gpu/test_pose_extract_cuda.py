"""DWPose extraction on onnxruntime's CUDA provider gives the CPU provider's keypoints."""
from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(), reason="onnxruntime has no CUDA provider"
    ),
]


def test_cuda_matches_cpu(tmp_path):
    from model.pose.extract import DETECTOR_FILE, ESTIMATOR_FILE, DWPoseExtractor
    from tests.model.pose import standin_dwpose
    from tests.model.pose.conftest import IMAGE_BOX, LETTERBOX_SCALE, standin_bins_and_scores

    standin_dwpose.save_detector(tmp_path / DETECTOR_FILE, tuple(v * LETTERBOX_SCALE for v in IMAGE_BOX))
    standin_dwpose.save_estimator(tmp_path / ESTIMATOR_FILE, *standin_bins_and_scores())
    photo = np.full((480, 320, 3), 200, np.uint8)
    cpu = DWPoseExtractor(tmp_path, device="cpu").extract_image(photo)
    cuda = DWPoseExtractor(tmp_path, device="cuda").extract_image(photo)
    np.testing.assert_allclose(cuda.body, cpu.body, atol=1e-5)
    np.testing.assert_array_equal(cuda.body_present, cpu.body_present)
