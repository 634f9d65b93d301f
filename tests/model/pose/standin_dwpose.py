"""Stand-in DWPose networks: tiny ONNX graphs with the real models' input and output signatures.

The detector (`yolox_l.onnx`: images [1, 3, 640, 640] -> [1, 8400, 85]) reports one person box whose
objectness grows with how much the brightest input pixel exceeds the letterbox grey (114), so a black
image has no detection. The estimator
(`dw-ll_ucoco_384.onnx`: [1, 3, 384, 288] -> simcc_x [1, 133, 576], simcc_y [1, 133, 768]) returns fixed
SimCC vectors peaking at chosen bins with chosen heights (the scores).
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


def save_estimator(path: Path, bins: np.ndarray, scores: np.ndarray) -> Path:
    simcc_x, simcc_y = simcc_vectors(bins, scores)
    height, width = ESTIMATOR_INPUT
    nodes = [
        # Touch the input so the graph is a function of it, then add 0 * it to the constants.
        helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["cx", "nothing"], ["simcc_x"]),
        helper.make_node("Add", ["cy", "nothing"], ["simcc_y"]),
    ]
    graph = helper.make_graph(
        nodes, "standin_dwpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [1, 133, width * 2]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [1, 133, height * 2])],
        initializer=[numpy_helper.from_array(simcc_x, "cx"), numpy_helper.from_array(simcc_y, "cy"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    return _save(graph, path)
