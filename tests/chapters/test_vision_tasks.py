import pytest
import torch

from book.lab.vision_tasks import (BoxExplorer, DetectionMonitor, GridDetector, Scenes, UNet, best_threshold,
                                   detection_loss, detection_loss_parts, detection_map, grid_targets,
                                   make_scenes, postprocess, prior_box_baseline, raw_predictions, seg_scores,
                                   segment, segmentation_loss, soft_dice_loss, train_detector, train_unet)
from book.nn.detection import (ap_from_pr, batched_nms, box_area, box_iou, decode_grid, dice, encode_box,
                               mask_iou, match_detections, mean_average_precision, nms, precision_recall)
from book.nn.counting import count_params


def _random_boxes(n, seed=0, integer=False):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=g) * 15], 1)
    return boxes.round() if integer else boxes


def _pixels(box, size=64):
    m = torch.zeros(size, size, dtype=torch.bool)
    x1, y1, x2, y2 = (int(v) for v in box.tolist())
    m[y1:y2, x1:x2] = True
    return m


def test_box_iou_against_pixel_counting():
    a, b = _random_boxes(7, 0, integer=True), _random_boxes(5, 1, integer=True)
    iou = box_iou(a, b)
    for i in range(len(a)):
        for j in range(len(b)):
            pa, pb = _pixels(a[i]), _pixels(b[j])
            assert iou[i, j] == pytest.approx((pa & pb).sum().item() / (pa | pb).sum().item(), abs=1e-6)
    assert torch.allclose(box_area(a), (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))
    with pytest.raises(ValueError, match="box_iou"):
        box_iou(a[:, :3], b)


def test_box_iou_and_nms_against_torchvision():
    ops = pytest.importorskip("torchvision.ops")
    a, b = _random_boxes(20, 2), _random_boxes(9, 3)
    assert torch.allclose(box_iou(a, b), ops.box_iou(a, b), atol=1e-6)
    scores = torch.rand(20, generator=torch.Generator().manual_seed(4))
    for thr in (0.1, 0.3, 0.5, 0.8):
        assert nms(a, scores, thr).tolist() == ops.nms(a, scores, thr).tolist()
    labels = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(5))
    assert sorted(batched_nms(a, scores, labels, 0.3).tolist()) == sorted(
        ops.batched_nms(a, scores, labels, 0.3).tolist())


def _brute_nms(boxes, scores, thr):
    """NMS by its definition: a box survives if no kept box of higher score overlaps it by more than thr."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -float(scores[i])):
        if all(box_iou(boxes[i:i + 1], boxes[k:k + 1])[0, 0] <= thr for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("thr", [0.0, 0.2, 0.5, 0.9])
def test_nms_against_its_definition(thr):
    boxes = _random_boxes(25, 6)
    scores = torch.rand(25, generator=torch.Generator().manual_seed(7))
    assert nms(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)
    labels = torch.tensor([0, 1] * 12 + [0])
    per_class = batched_nms(boxes, scores, labels, thr)
    expected = []
    for c in (0, 1):
        idx = torch.nonzero(labels == c)[:, 0]
        expected += [int(idx[k]) for k in _brute_nms(boxes[idx], scores[idx], thr)]
    assert sorted(per_class.tolist()) == sorted(expected)
    assert scores[per_class].diff().le(0).all()              # highest score first
    assert batched_nms(boxes[:0], scores[:0], labels[:0], thr).numel() == 0


def test_encode_decode_round_trip():
    boxes = _random_boxes(10, 8) + 5
    for box in boxes:
        row, col, t = encode_box(box, 8, 20.0)
        grid = torch.zeros(1, 4, 8, 8)
        grid[0, :, row, col] = t
        assert torch.allclose(decode_grid(grid, 8, 20.0)[0, row * 8 + col], box, atol=1e-4)
        assert 0 <= t[0] < 1 and 0 <= t[1] < 1
    with pytest.raises(ValueError, match="decode_grid"):
        decode_grid(torch.zeros(1, 3, 4, 4), 8, 20.0)


def test_average_precision_hand_case_and_extremes():
    # ranked TP, FP, TP with 2 objects: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # the envelope is 1 up to recall 1/2 and 2/3 after: AP = 1/2 + 1/2 * 2/3
    p, r = precision_recall(torch.tensor([True, False, True]), torch.tensor([0.9, 0.8, 0.7]), 2)
    assert ap_from_pr(p, r) == pytest.approx(0.5 + 0.5 * 2 / 3)
    p, r = precision_recall(torch.tensor([False, True]), torch.tensor([0.9, 0.8]), 1)
    assert ap_from_pr(p, r) == pytest.approx(0.5)
    gt = [(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([3]))]
    perfect = [(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([3]))]
    assert mean_average_precision(perfect, gt)[0] == pytest.approx(1.0)
    duplicate = [(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), torch.tensor([0.5, 0.9]), torch.tensor([3, 3]))]
    assert match_detections(*duplicate[0][:2], gt[0][0], 0.5).tolist() == [False, True]
    wrong_class = [(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0.9]), torch.tensor([4]))]
    m, per = mean_average_precision(wrong_class, gt, n_classes=10)
    assert m == 0.0 and list(per) == [3]
    shifted = [(torch.tensor([[4.0, 0, 14, 10]]), torch.tensor([0.9]), torch.tensor([3]))]   # IoU 6/14
    assert mean_average_precision(shifted, gt, 0.5)[0] == 0.0
    assert mean_average_precision(shifted, gt, 0.4)[0] == 1.0
    with pytest.raises(ValueError, match="images"):
        mean_average_precision(perfect, gt * 2)
    with pytest.raises(ValueError, match="undefined"):
        mean_average_precision(perfect, [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))])


def test_mask_iou_and_dice():
    g = torch.Generator().manual_seed(9)
    a, b = torch.rand(6, 1, 9, 9, generator=g) < 0.4, torch.rand(6, 1, 9, 9, generator=g) < 0.4
    j, d = mask_iou(a, b), dice(a, b)
    assert torch.allclose(d, 2 * j / (1 + j))
    inter, union = (a & b).flatten(1).sum(1), (a | b).flatten(1).sum(1)
    assert torch.allclose(j, inter.double() / union)
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert mask_iou(empty, empty).item() == 1.0 and dice(empty, empty).item() == 1.0
    assert mask_iou(empty, ~empty).item() == 0.0


@pytest.fixture(scope="module")
def scenes():
    g = torch.Generator().manual_seed(0)
    digits = torch.zeros(20, 1, 28, 28)
    digits[:, :, 6:22, 10:18] = torch.rand(20, 1, 16, 8, generator=g) * 0.5 + 0.5   # ink in a known box
    return make_scenes(digits, torch.arange(20) % 10, 16, seed=3)


def test_scenes_boxes_masks_and_determinism(scenes):
    assert scenes.images.shape == (16, 1, 48, 48) and scenes.masks.dtype == torch.bool
    assert 0 <= scenes.images.min() and scenes.images.max() <= 1
    for img_mask, boxes, labels in zip(scenes.masks, scenes.boxes, scenes.labels):
        assert 1 <= len(boxes) <= 3 and len(boxes) == len(labels)
        inside = torch.zeros_like(img_mask[0])
        for b in boxes:
            inside |= _pixels(b, 48)
            assert (b[2:] > b[:2]).all()
        assert not (img_mask[0] & ~inside).any()              # every mask pixel lies in a box
    again = make_scenes(torch.ones(3, 1, 28, 28) * 0, torch.zeros(3, dtype=torch.long), 2, seed=3, clutter=0,
                        noise=0.0)
    assert again.images.sum() == 0 and not again.masks.any()
    assert len(scenes.ground_truth(5)) == 5
    with pytest.raises(ValueError, match="max_objects"):
        make_scenes(torch.zeros(2, 1, 28, 28), torch.zeros(2), 1, max_objects=0)


def test_targets_decode_to_the_ground_truth(scenes):
    t = grid_targets(scenes, 8, 20.0)
    assert t.shape == (16, 6, 6, 6)
    boxes = decode_grid(t[:, 2:], 8, 20.0)
    for i in range(16):
        cells = t[i, 0].flatten().nonzero()[:, 0]
        got = boxes[i, cells]
        assert box_iou(got, scenes.boxes[i]).max(0).values.min() > 0.999 or len(cells) < len(scenes.boxes[i])
        assert sorted(t[i, 1].flatten()[cells].long().tolist()) == sorted(scenes.labels[i].tolist()) or \
            len(cells) < len(scenes.boxes[i])


def test_detector_loss_predictions_and_baselines(scenes):
    torch.manual_seed(0)
    model = GridDetector()
    with torch.no_grad():
        out = model(scenes.images)
    assert out.shape == (16, 15, 6, 6)
    target = grid_targets(scenes, 8, model.anchor)
    parts = detection_loss_parts(out, target)
    assert set(parts) == {"objectness", "class", "box"}
    assert detection_loss(out, target, w_box=0.0) == pytest.approx(float(parts["objectness"] + parts["class"]))
    # a model that outputs the targets exactly (large logits) finds every object: mAP 1
    perfect = torch.full_like(out, -20.0)
    perfect[:, 0] = torch.where(target[:, 0] > 0, 20.0, -20.0)
    perfect.scatter_(1, 1 + target[:, 1:2].long(), 20.0)
    perfect[:, -4:-2] = torch.logit(target[:, 2:4].clamp(1e-6, 1 - 1e-6))
    perfect[:, -2:] = target[:, 4:]

    class Fixed(GridDetector):
        def forward(self, x):
            return perfect[:len(x)]
    fixed = Fixed()
    full = len(scenes) if all(target[i, 0].sum() == len(b) for i, b in enumerate(scenes.boxes)) else None
    if full:
        assert detection_map(fixed, scenes) == pytest.approx(1.0)
    raw = raw_predictions(model, scenes.images, fixed_boxes=True)
    widths = raw.boxes[..., 2] - raw.boxes[..., 0]
    assert torch.allclose(widths, torch.full_like(widths, 20.0))
    sized = raw_predictions(model, scenes.images, fixed_boxes=True, fixed_size=(13.0, 17.5)).boxes
    assert torch.allclose(sized[..., 2] - sized[..., 0], torch.full_like(widths, 13.0))
    assert torch.allclose(sized[..., 3] - sized[..., 1], torch.full_like(widths, 17.5))
    assert torch.allclose(sized[..., :2] + sized[..., 2:], raw.boxes[..., :2] + raw.boxes[..., 2:])  # centres
    with pytest.raises(ValueError, match="positive"):
        raw_predictions(model, scenes.images, fixed_boxes=True, fixed_size=(0.0, 5.0))
    dets = postprocess(raw, score_threshold=0.0, nms_threshold=1.0, n=3)
    assert len(dets) == 3 and len(dets[0][0]) == 36
    base = prior_box_baseline(scenes, 4)
    assert len(base) == 4 and base[0][0].shape == (1, 4)
    with pytest.raises(ValueError, match="stride"):
        GridDetector(channels=(8, 16))


def test_training_views_and_unet(scenes):
    model, hist, mon = train_detector(scenes, scenes, steps=4, batch_size=4, log_every=2, monitor=True)
    assert isinstance(mon, DetectionMonitor) and mon._frames() == 2 and len(hist.train_loss) == 2
    assert "<script" in mon.replay(max_frames=2).data
    raw = raw_predictions(model, scenes.images)
    view = BoxExplorer(raw, scenes, nms_threshold=0.4)
    assert 0 <= view.draw() <= 1
    assert "<script" in view.player("nms_threshold", [0.3, 1.0]).data
    with pytest.raises(ValueError, match="index"):
        BoxExplorer(raw, scenes, index=99)
    with pytest.raises(ValueError, match="nms_threshold"):
        BoxExplorer(raw, scenes, nms_threshold=1.5)
    target = scenes.masks.float()
    sure = (target * 2 - 1) * 50                                  # logits that are certain and right
    assert soft_dice_loss(sure, target) < 1e-6 < soft_dice_loss(-sure, target) - 0.99
    assert segmentation_loss(sure, target) < 1e-6
    assert count_params(UNet(skip=True)) == count_params(UNet(skip=False))
    assert UNet()(scenes.images).shape == scenes.images.shape
    unet, _ = train_unet(scenes, steps=2, batch_size=4, log_every=1)
    masks = segment(unet, scenes.images)
    assert masks.shape == scenes.masks.shape and masks.dtype == torch.bool
    r = seg_scores(masks, scenes.masks)
    assert torch.allclose(r["per_dice"], 2 * r["per_iou"] / (1 + r["per_iou"]))
    ts = torch.linspace(0, 1, 41)[1:-1]                          # the threshold by brute force
    brute = torch.stack([mask_iou(scenes.images > t, scenes.masks).mean() for t in ts])
    assert best_threshold(scenes) == pytest.approx(float(ts[brute.argmax()]))
    assert isinstance(scenes, Scenes)


def _scaled_good(rw, rh):
    m = min(rw, 1) * min(rh, 1)
    return m / (1 + rw * rh - m)


def _scaled_wrong(rw, rh):
    return min(rw * rh, 1 / (rw * rh))            # right only when both factors are on the same side of 1


def _shift_wrong(side, t):
    return side * (1 - t)


def _nms_wrong(boxes, scores, thr):
    return list(range(len(boxes)))


def _iou_wrong(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]))   # forgot - inter


def _iou_good(a, b):
    return float(box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0, 0])


@pytest.mark.parametrize("name,good,bad", [
    ("pair_iou", _iou_good, _iou_wrong),
    ("scaled_box_iou", _scaled_good, _scaled_wrong),
    ("max_shift_for_iou", lambda s, t: s * (1 - t) / (1 + t), _shift_wrong),
    ("greedy_nms", lambda b, s, t: nms(b, s, t).tolist(), _nms_wrong),
])
def test_vision_tasks_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
