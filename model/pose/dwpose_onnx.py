"""The two DWPose networks' pre- and post-processing, as `dwpose/onnxdet.py` and `dwpose/onnxpose.py` do it.

Person detection: YOLOX-L (`yolox_l.onnx`) on a 640x640 letterboxed BGR image, class-aware NMS,
people with score > 0.3. Keypoints: RTMPose-style DWPose (`dw-ll_ucoco_384.onnx`) on each person's box
(padded 1.25x, widened to the network's aspect ratio, warped), decoded from SimCC vectors into 133
COCO-WholeBody points in image pixels. Images are BGR uint8 as `cv2.imread` gives them; the networks
were trained on that order and the mean/std below are applied to it as is.
"""
from __future__ import annotations

import cv2
import numpy as np

DETECTOR_INPUT = (640, 640)  # (height, width)
DETECTOR_PAD_VALUE = 114
DETECTOR_STRIDES = (8, 16, 32)
NMS_IOU_THRESHOLD = 0.45
NMS_SCORE_THRESHOLD = 0.1
PERSON_SCORE_THRESHOLD = 0.3
PERSON_CLASS = 0

BOX_PADDING = 1.25
POSE_MEAN = np.array([123.675, 116.28, 103.53])
POSE_STD = np.array([58.395, 57.12, 57.375])
SIMCC_SPLIT_RATIO = 2.0


# ---- person detector --------------------------------------------------------------------------


def detect_people(session, image_bgr: np.ndarray) -> np.ndarray:
    """`[N, 4]` person boxes (x1, y1, x2, y2) in image pixels, best first; empty when nobody is found."""
    letterboxed, ratio = _letterbox(image_bgr)
    outputs = session.run(None, {session.get_inputs()[0].name: letterboxed[None]})
    predictions = _decode_grid(np.array(outputs[0], dtype=np.float32))[0]
    boxes = predictions[:, :4]
    scores = predictions[:, 4:5] * predictions[:, 5:]
    corners = np.ones_like(boxes)
    corners[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
    corners[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
    corners[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
    corners[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
    corners /= ratio
    detections = _multiclass_nms(corners, scores)
    if detections is None:
        return np.zeros((0, 4))
    keep = (detections[:, 4] > PERSON_SCORE_THRESHOLD) & (detections[:, 5] == PERSON_CLASS)
    return detections[keep, :4]


def _letterbox(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Resized to fit 640x640 at the top left, padded with grey 114; CHW float32 and the scale used."""
    height, width = DETECTOR_INPUT
    padded = np.full((height, width, 3), DETECTOR_PAD_VALUE, dtype=np.uint8)
    ratio = min(height / image.shape[0], width / image.shape[1])
    new_w, new_h = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    padded[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), ratio


def _decode_grid(outputs: np.ndarray) -> np.ndarray:
    """YOLOX anchor-free outputs to box centres and sizes in letterbox pixels."""
    grids, strides = [], []
    for stride in DETECTOR_STRIDES:
        rows, cols = DETECTOR_INPUT[0] // stride, DETECTOR_INPUT[1] // stride
        xs, ys = np.meshgrid(np.arange(cols), np.arange(rows))
        grid = np.stack((xs, ys), 2).reshape(1, -1, 2)
        grids.append(grid)
        strides.append(np.full((*grid.shape[:2], 1), stride))
    grid, stride = np.concatenate(grids, 1), np.concatenate(strides, 1)
    if outputs.ndim != 3 or outputs.shape[1] != grid.shape[1] or outputs.shape[2] < 6:
        raise ValueError(f"person detector output has shape {outputs.shape}; expected [1, {grid.shape[1]}, 5 + classes]")
    outputs[..., :2] = (outputs[..., :2] + grid) * stride
    outputs[..., 2:4] = np.exp(outputs[..., 2:4]) * stride
    return outputs


def _nms(boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        overlap_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        overlap_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = overlap_w * overlap_h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= NMS_IOU_THRESHOLD]
    return keep


def _multiclass_nms(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    """Rows of (x1, y1, x2, y2, score, class), NMS run separately per class."""
    detections = []
    for cls in range(scores.shape[1]):
        valid = scores[:, cls] > NMS_SCORE_THRESHOLD
        if not valid.any():
            continue
        cls_boxes, cls_scores = boxes[valid], scores[valid, cls]
        keep = _nms(cls_boxes, cls_scores)
        if keep:
            classes = np.ones((len(keep), 1)) * cls
            detections.append(np.concatenate([cls_boxes[keep], cls_scores[keep, None], classes], 1))
    return np.concatenate(detections, 0) if detections else None


# ---- whole-body keypoints ---------------------------------------------------------------------


def estimate_keypoints(session, boxes: np.ndarray, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`([N, 133, 2] pixels, [N, 133] scores)` for each box; the whole image when there is no box."""
    height, width = session.get_inputs()[0].shape[2:]
    input_size = (int(width), int(height))
    if len(boxes) == 0:
        boxes = np.array([[0, 0, image_bgr.shape[1], image_bgr.shape[0]]])
    all_points, all_scores = [], []
    for box in boxes:
        center, scale = _box_center_scale(np.array(box[:4]))
        crop, scale = _crop(image_bgr, center, scale, input_size)
        normalised = (crop - POSE_MEAN) / POSE_STD
        net_input = normalised.transpose(2, 0, 1)[None].astype(np.float32)
        outputs = session.run([o.name for o in session.get_outputs()], {session.get_inputs()[0].name: net_input})
        points, scores = _decode_simcc(*outputs[:2])
        # SimCC bins -> crop pixels -> image pixels.
        points = points / input_size * scale + center - scale / 2
        all_points.append(points[0])
        all_scores.append(scores[0])
    return np.array(all_points), np.array(all_scores)


def _box_center_scale(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x1, y1, x2, y2 = box
    center = np.array([x1 + x2, y1 + y2]) * 0.5
    scale = np.array([x2 - x1, y2 - y1]) * BOX_PADDING
    return center, scale


def _crop(image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int]):
    """The box widened to the network's aspect ratio and warped to its input size (bilinear)."""
    width, height = input_size
    aspect = width / height
    box_w, box_h = scale
    scale = np.array([box_w, box_w / aspect]) if box_w > box_h * aspect else np.array([box_h * aspect, box_h])
    warp = _warp_matrix(center, scale, (width, height))
    return cv2.warpAffine(image, warp, (int(width), int(height)), flags=cv2.INTER_LINEAR), scale


def _warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Affine map taking the box (centre, size) onto the output, from three matching points (no rotation)."""
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, scale[0] * -0.5])
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a - b` turned 90 degrees anticlockwise about b."""
    direction = a - b
    return b + np.r_[-direction[1], direction[0]]


def _decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max of each SimCC vector; the score is the smaller of the two maxima (<= 0: location -1)."""
    n, k, _ = simcc_x.shape
    flat_x, flat_y = simcc_x.reshape(n * k, -1), simcc_y.reshape(n * k, -1)
    locations = np.stack((np.argmax(flat_x, axis=1), np.argmax(flat_y, axis=1)), axis=-1).astype(np.float32)
    scores = np.minimum(np.amax(flat_x, axis=1), np.amax(flat_y, axis=1))
    locations[scores <= 0.0] = -1
    return locations.reshape(n, k, 2) / SIMCC_SPLIT_RATIO, scores.reshape(n, k)
