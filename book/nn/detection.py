"""Object detection and segmentation from scratch: IoU, grid box encoding, NMS, average precision, Dice.

Taught in the vision_tasks chapter (``chapters/vision_tasks.ipynb``). Boxes are ``(x1, y1, x2, y2)`` in
pixels (``x2 > x1``), the convention of ``torchvision.ops``; the tests compare with
``torchvision.ops.box_iou`` / ``nms`` when torchvision is installed and with brute-force versions otherwise.
"""
from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of ``(N, 4)`` boxes ``(x1, y1, x2, y2)``; a box with ``x2 <= x1`` or ``y2 <= y1`` has area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every pair: ``a`` (N, 4), ``b`` (M, 4) -> (N, M).

    The intersection of two boxes is the box from the larger top-left corner to the smaller bottom-right
    corner (empty if they do not overlap); the union is area(a) + area(b) - intersection.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 4 or b.shape[1] != 4:
        raise ValueError(f"box_iou takes (N, 4) and (M, 4) boxes, got {tuple(a.shape)} and {tuple(b.shape)}")
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])          # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])      # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=1e-12)


def encode_box(box: torch.Tensor, stride: int, anchor: float) -> tuple[int, int, torch.Tensor]:
    """The grid cell ``(row, col)`` that owns ``box`` (the cell holding its centre) and its regression
    target ``(tx, ty, tw, th)``: the centre's offset inside the cell in [0, 1), and log(width / anchor),
    log(height / anchor) -- the YOLO-style parameterisation (Redmon et al. 2016, with a log size as in SSD)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col, row = int(cx // stride), int(cy // stride)
    t = torch.stack([cx / stride - col, cy / stride - row,
                     torch.log((box[2] - box[0]) / anchor), torch.log((box[3] - box[1]) / anchor)])
    return row, col, t


def decode_grid(t: torch.Tensor, stride: int, anchor: float) -> torch.Tensor:
    """Boxes from a grid of targets ``t`` (N, 4, G, G) -> (N, G*G, 4), cells in row-major order; the inverse
    of :func:`encode_box` at every cell."""
    n, four, g, g2 = t.shape
    if four != 4 or g != g2:
        raise ValueError(f"decode_grid takes (N, 4, G, G) targets, got {tuple(t.shape)}")
    rows, cols = torch.meshgrid(torch.arange(g, device=t.device), torch.arange(g, device=t.device),
                                indexing="ij")
    cx = (cols + t[:, 0]) * stride                                   # (N, G, G)
    cy = (rows + t[:, 1]) * stride
    w, h = anchor * t[:, 2].exp(), anchor * t[:, 3].exp()
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)   # (N, G, G, 4)
    return boxes.reshape(n, g * g, 4)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    Take the best remaining box, drop every remaining box whose IoU with it is *greater* than
    ``iou_threshold``, repeat (the rule of ``torchvision.ops.nms``)."""
    order = scores.argsort(descending=True)
    iou = box_iou(boxes, boxes)
    keep, removed = [], torch.zeros(len(boxes), dtype=torch.bool)
    for i in order.tolist():
        if removed[i]:
            continue
        keep.append(i)
        removed |= iou[i].cpu() > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """:func:`nms` within each class separately (boxes of different classes never suppress each other)."""
    keep = [idx[nms(boxes[idx], scores[idx], iou_threshold)] for c in labels.unique()
            for idx in [torch.nonzero(labels == c)[:, 0]]]
    if not keep:
        return torch.zeros(0, dtype=torch.long)
    keep = torch.cat(keep)
    return keep[scores[keep].argsort(descending=True)]


def precision_recall(matched: torch.Tensor, scores: torch.Tensor, n_gt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall after each detection, in order of decreasing score: ``matched`` (D,) bool says
    whether a detection is a true positive, ``n_gt`` is the number of ground-truth objects."""
    tp = matched[scores.argsort(descending=True)].double().cumsum(0)
    ranks = torch.arange(1, len(tp) + 1, dtype=torch.float64)
    return tp / ranks, tp / max(n_gt, 1)


def ap_from_pr(precision: torch.Tensor, recall: torch.Tensor) -> float:
    """Area under the precision-recall curve with precision made monotone: at each recall, the best
    precision reached at that recall or beyond (the all-point interpolation PASCAL VOC uses from its 2010
    challenge on; VOC 2007 averaged it at 11 recall levels instead)."""
    r = torch.cat([torch.zeros(1, dtype=torch.float64), recall.double(), torch.ones(1, dtype=torch.float64)])
    p = torch.cat([torch.zeros(1, dtype=torch.float64), precision.double(), torch.zeros(1, dtype=torch.float64)])
    p = p.flip(0).cummax(0).values.flip(0)              # the envelope: max precision to the right
    step = r[1:] != r[:-1]                               # where recall grows
    return float(((r[1:] - r[:-1]) * p[1:])[step].sum())


def match_detections(det_boxes: torch.Tensor, det_scores: torch.Tensor, gt_boxes: torch.Tensor,
                     iou_threshold: float) -> torch.Tensor:
    """Which detections of one image and class are true positives: in order of decreasing score, each takes
    the unmatched ground-truth box it overlaps most, if that IoU is at least ``iou_threshold``; a second
    detection of an already-matched object is a false positive. Returns (D,) bool in the input order."""
    matched = torch.zeros(len(det_boxes), dtype=torch.bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return matched
    iou = box_iou(det_boxes, gt_boxes).cpu()
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    for i in det_scores.argsort(descending=True).tolist():
        overlaps = iou[i].masked_fill(taken, -1.0)
        j = int(overlaps.argmax())
        if overlaps[j] >= iou_threshold:
            matched[i], taken[j] = True, True
    return matched


def pr_curve(detections, ground_truth, cls: int, iou_threshold: float = 0.5):
    """Precision and recall of class ``cls`` over a set of images (detections pooled and ranked by score),
    and its number of ground-truth objects: ``(precision, recall, n_gt)``. Arguments as for
    :func:`mean_average_precision`."""
    matched, scores, n_gt = [], [], 0
    for (boxes, sc, lab), (gt_b, gt_l) in zip(detections, ground_truth):
        d, g = lab == cls, gt_l == cls
        n_gt += int(g.sum())
        matched.append(match_detections(boxes[d], sc[d], gt_b[g], iou_threshold))
        scores.append(sc[d].detach().cpu())
    precision, recall = precision_recall(torch.cat(matched), torch.cat(scores).double(), n_gt)
    return precision, recall, n_gt


def mean_average_precision(detections, ground_truth, iou_threshold: float = 0.5,
                           n_classes: int | None = None) -> tuple[float, dict[int, float]]:
    """mAP at one IoU threshold and the AP of each class.

    ``detections``: one ``(boxes (D, 4), scores (D,), labels (D,))`` per image; ``ground_truth``: one
    ``(boxes (G, 4), labels (G,))`` per image. Detections of all images are pooled per class and ranked by
    score (:func:`pr_curve`, :func:`ap_from_pr`); the mean runs over the classes that have at least one
    ground-truth object.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} images of detections but {len(ground_truth)} of ground truth")
    classes = range(n_classes) if n_classes is not None else sorted(
        {int(c) for _, labels in ground_truth for c in labels.tolist()})
    per_class = {}
    for c in classes:
        precision, recall, n_gt = pr_curve(detections, ground_truth, c, iou_threshold)
        if n_gt > 0:
            per_class[c] = ap_from_pr(precision, recall)
    if not per_class:
        raise ValueError("no ground-truth objects: AP is undefined")
    return sum(per_class.values()) / len(per_class), per_class


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU (Jaccard index) of binary masks, one value per image: (N, ...) bool -> (N,). Two empty masks agree
    perfectly (1)."""
    p, t = pred.flatten(1).bool(), target.flatten(1).bool()
    inter, union = (p & t).sum(1).double(), (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def dice(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice coefficient ``2|P∩T| / (|P| + |T|)`` of binary masks, one value per image (1 when both are empty)."""
    p, t = pred.flatten(1).bool(), target.flatten(1).bool()
    inter, total = (p & t).sum(1).double(), (p.sum(1) + t.sum(1)).double()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))

