"""Stand-in DWPose networks: tiny ONNX graphs with the real models' input and output signatures.

The detector (`yolox_l.onnx`: images [1, 3, 640, 640] -> [1, 8400, 85]) reports one person box whose
objectness grows with how much the brightest input pixel exceeds the letterbox grey (114), so a black
image has no detection. Two estimators (`dw-ll_ucoco_384.onnx`: [1, 3, 384, 288] -> simcc_x
[1, 133, 576], simcc_y [1, 133, 768]):
- `save_estimator` returns fixed SimCC vectors peaking at chosen bins with chosen heights (the scores);
- `save_marker_estimator` looks at its input: keypoint k peaks where input channel `MARKER_CHANNELS[k]`
  is brightest (the column maximum along x, the row maximum along y, each bin repeated twice as SimCC
  has two bins per pixel), so its score is that channel's normalised peak value.
Both also return their input unchanged as a third output, `crop`, so a test can see exactly what the
network was given (the real model has no such output; the code reads only the first two).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DETECTOR_ROWS = 80 * 80 + 40 * 40 + 20 * 20
ESTIMATOR_INPUT = (384, 288)  # (height, width)


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector_outputs(box_letterbox: tuple[float, float, float, float]) -> np.ndarray:
    """Raw YOLOX rows encoding one box (x1, y1, x2, y2 in 640x640 letterbox pixels) at a stride-8 cell."""
    x1, y1, x2, y2 = box_letterbox
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    gx, gy = int(cx // 8), int(cy // 8)
    rows = np.zeros((1, DETECTOR_ROWS, 85), np.float32)
    row = gy * 80 + gx
    rows[0, row, :4] = [cx / 8 - gx, cy / 8 - gy, math.log(w / 8), math.log(h / 8)]
    rows[0, row, 4] = 0.9  # objectness, scaled by the image brightness in the graph
    rows[0, row, 5] = 1.0  # class 0: person
    return rows


def save_detector(path: Path, box_letterbox: tuple[float, float, float, float]) -> Path:
    rows = detector_outputs(box_letterbox)
    scale = np.zeros((1, 1, 85), np.float32)
    scale[0, 0, 4] = 1.0 / (255.0 - 114.0)
    offset = np.ones((1, 1, 85), np.float32)
    offset[0, 0, 4] = 0.0
    grey = np.array(114.0, np.float32)
    # output = rows * (offset + scale * (max(image) - 114)): only the objectness column follows the image.
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        helper.make_node("Sub", ["peak", "grey"], ["above_grey"]),
        helper.make_node("Mul", ["scale", "above_grey"], ["scaled"]),
        helper.make_node("Add", ["offset", "scaled"], ["factor"]),
        helper.make_node("Mul", ["rows", "factor"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "standin_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, DETECTOR_ROWS, 85])],
        initializer=[numpy_helper.from_array(a, n) for a, n in
                     ((rows, "rows"), (scale, "scale"), (offset, "offset"), (grey, "grey"))],
    )
    return _save(graph, path)


def simcc_vectors(bins: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors for 133 keypoints peaking at `bins` [133, 2] (x, y) with heights `scores` [133]."""
    height, width = ESTIMATOR_INPUT
    simcc_x = np.zeros((1, 133, width * 2), np.float32)
    simcc_y = np.zeros((1, 133, height * 2), np.float32)
    simcc_x[0, np.arange(133), bins[:, 0]] = scores
    simcc_y[0, np.arange(133), bins[:, 1]] = scores
    return simcc_x, simcc_y


MARKER_CHANNELS = np.arange(133) % 3  # input channel (BGR order: 0 blue, 1 green, 2 red) keypoint k follows
_INPUTS = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *ESTIMATOR_INPUT])]
_OUTPUTS = [
    helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 133, ESTIMATOR_INPUT[1] * 2]),
    helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 133, ESTIMATOR_INPUT[0] * 2]),
    helper.make_tensor_value_info("crop", TensorProto.FLOAT, [1, 3, *ESTIMATOR_INPUT]),
]


def save_estimator(path: Path, bins: np.ndarray, scores: np.ndarray) -> Path:
    simcc_x, simcc_y = simcc_vectors(bins, scores)
    nodes = [
        helper.make_node("Identity", ["cx"], ["simcc_x"]),
        helper.make_node("Identity", ["cy"], ["simcc_y"]),
        helper.make_node("Identity", ["input"], ["crop"]),
    ]
    graph = helper.make_graph(
        nodes, "standin_dwpose", _INPUTS, _OUTPUTS,
        initializer=[numpy_helper.from_array(simcc_x, "cx"), numpy_helper.from_array(simcc_y, "cy")],
    )
    return _save(graph, path)


def _twice_each(size: int) -> np.ndarray:
    """[size, 2 * size] matrix copying value i to SimCC bins 2i and 2i + 1."""
    matrix = np.zeros((size, 2 * size), np.float32)
    matrix[np.arange(size), 2 * np.arange(size)] = 1.0
    matrix[np.arange(size), 2 * np.arange(size) + 1] = 1.0
    return matrix


def save_marker_estimator(path: Path) -> Path:
    height, width = ESTIMATOR_INPUT
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["column_peaks"], axes=[2], keepdims=0),  # [1, 3, W]
        helper.make_node("MatMul", ["column_peaks", "twice_w"], ["bins_x"]),  # [1, 3, 2W]
        helper.make_node("Gather", ["bins_x", "channels"], ["simcc_x"], axis=1),  # [1, 133, 2W]
        helper.make_node("ReduceMax", ["input"], ["row_peaks"], axes=[3], keepdims=0),  # [1, 3, H]
        helper.make_node("MatMul", ["row_peaks", "twice_h"], ["bins_y"]),
        helper.make_node("Gather", ["bins_y", "channels"], ["simcc_y"], axis=1),
        helper.make_node("Identity", ["input"], ["crop"]),
    ]
    graph = helper.make_graph(
        nodes, "standin_dwpose_markers", _INPUTS, _OUTPUTS,
        initializer=[numpy_helper.from_array(_twice_each(width), "twice_w"),
                     numpy_helper.from_array(_twice_each(height), "twice_h"),
                     numpy_helper.from_array(MARKER_CHANNELS.astype(np.int64), "channels")],
    )
    return _save(graph, path)
