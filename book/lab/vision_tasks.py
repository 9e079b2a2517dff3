"""The vision_tasks chapter: generated scenes of MNIST digits, a grid detector, a small U-Net, their baselines
and views (:class:`DetectionMonitor`, live while the detector trains, with a replay; :class:`BoxExplorer`).

IoU, box encoding, NMS, AP and Dice are written from scratch in :mod:`book.nn.detection`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.nn.detection import (ap_from_pr, batched_nms, decode_grid, dice, encode_box, mask_iou,
                                match_detections, mean_average_precision, pr_curve)
from book.train import Callback, State, fit
from book.ui import Explorer, Replay

N_CLASSES = 10


# ============================================================================ generated scenes
@dataclass
class Scenes:
    """Canvases with digits at random positions and scales, and what is known about them.

    ``images`` (N, 1, S, S) in [0, 1]; ``masks`` (N, 1, S, S) bool, the digits' pixels (not the clutter);
    ``boxes[i]`` (k, 4) the tight boxes ``(x1, y1, x2, y2)`` of image i's digits, ``labels[i]`` (k,) their classes.
    """

    images: torch.Tensor
    masks: torch.Tensor
    boxes: list
    labels: list

    def __len__(self):
        return len(self.images)

    def ground_truth(self, n: int | None = None):
        """``[(boxes, labels), ...]`` of the first ``n`` images, the form ``mean_average_precision`` takes."""
        return list(zip(self.boxes, self.labels))[:n]


def _iou(a, b) -> float:
    """IoU of two boxes given as 4-tuples (plain Python: the scene generator calls it often)."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _place(digits: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, side: torch.Tensor, size: int):
    """Render each 28x28 digit scaled to ``side`` pixels with its top-left corner at (x0, y0) on an empty
    ``size`` x ``size`` canvas, all in one ``grid_sample``: (M, 1, 28, 28) -> (M, 1, size, size)."""
    m = len(digits)
    theta = torch.zeros(m, 2, 3)
    # output x (normalised, align_corners=False) -> input x: pixel centre p + 0.5 = (x_out + 1) size / 2,
    # and the digit spans [x0, x0 + side), so x_in = 2 (p + 0.5 - x0) / side - 1
    theta[:, 0, 0] = theta[:, 1, 1] = size / side
    theta[:, 0, 2] = (size - 2 * x0) / side - 1
    theta[:, 1, 2] = (size - 2 * y0) / side - 1
    grid = F.affine_grid(theta, (m, 1, size, size), align_corners=False)
    return F.grid_sample(digits, grid, align_corners=False, padding_mode="zeros")


def make_scenes(digits: torch.Tensor, labels: torch.Tensor, n: int, size: int = 48, max_objects: int = 3,
                scale: tuple[int, int] = (20, 32), clutter: int = 3, noise: float = 0.08,
                seed: int = 0) -> Scenes:
    """``n`` scenes of 1..``max_objects`` digits drawn from ``digits`` (N, 1, 28, 28) with their ``labels``.

    Each digit is scaled to a side in ``scale`` (pixels of the 28-px patch; the ink is smaller) and placed so
    that its box overlaps no earlier box by more than 0.1 IoU. ``clutter`` stroke fragments (10x10 crops of
    other digits) and Gaussian pixel noise make the background harder than a threshold: they are in the
    image but in no box and no mask. Everything is fixed by ``seed``.
    """
    if not 1 <= max_objects <= 6 or not 8 <= scale[0] <= scale[1] <= size:
        raise ValueError(f"need 1 <= max_objects <= 6 and 8 <= scale[0] <= scale[1] <= size, "
                         f"got {max_objects}, {scale}, size {size}")
    rng = np.random.default_rng(seed)
    pick, xs, ys, sides, owner = [], [], [], [], []
    for i in range(n):
        placed = []                                                 # (x1, y1, x2, y2) of this scene
        for _ in range(rng.integers(1, max_objects + 1)):
            for _try in range(20):
                s = int(rng.integers(scale[0], scale[1] + 1))
                x, y = (int(v) for v in rng.integers(0, size - s + 1, 2))
                if all(_iou((x, y, x + s, y + s), b) <= 0.1 for b in placed):
                    placed.append((x, y, x + s, y + s))
                    pick.append(int(rng.integers(len(digits))))
                    xs.append(x), ys.append(y), sides.append(s), owner.append(i)
                    break
    objects = _place(digits[pick].float().cpu(), torch.tensor(xs, dtype=torch.float32),
                     torch.tensor(ys, dtype=torch.float32), torch.tensor(sides, dtype=torch.float32), size)
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    boxes, labs = [[] for _ in range(n)], [[] for _ in range(n)]
    for j, i in enumerate(owner):
        images[i] = torch.maximum(images[i], objects[j])
        ink = objects[j, 0] > 0.3                                   # (size, size) the digit's pixels
        masks[i, 0] |= objects[j, 0] > 0.5
        rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
        if len(rows) == 0:                                          # a blank digit: nothing to find
            continue
        boxes[i].append(torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32))
        labs[i].append(int(labels[pick[j]]))
    src = digits[torch.from_numpy(rng.integers(0, len(digits), n * clutter))].float().cpu()[:, 0]
    rc = rng.integers(5, 14, (n * clutter, 2))                      # a 10x10 window with strokes
    xy = rng.integers(0, size - 10 + 1, (n * clutter, 2))
    for j in range(n * clutter):                                    # clutter: fragments of other digits
        (r, c), (x, y), i = rc[j], xy[j], j // clutter
        patch = images[i, 0, y:y + 10, x:x + 10]
        images[i, 0, y:y + 10, x:x + 10] = torch.maximum(patch, src[j, r:r + 10, c:c + 10])
    g = torch.Generator().manual_seed(seed)
    images = (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)
    return Scenes(images, masks, [torch.stack(b) if b else torch.zeros(0, 4) for b in boxes],
                  [torch.tensor(lab, dtype=torch.long) for lab in labs])


def scene_splits(data, n_train: int, n_val: int, n_test: int, seed: int = 0, **kw):
    """Train / validation / test scenes built from the digits of the matching MNIST split (``data`` from
    ``load_mnist(n_val=...)``), so that no digit image appears in two splits; seeds ``seed``, +1, +2."""
    return (make_scenes(data.x_train, data.y_train, n_train, seed=seed, **kw),
            make_scenes(data.x_val, data.y_val, n_val, seed=seed + 1, **kw),
            make_scenes(data.x_test, data.y_test, n_test, seed=seed + 2, **kw))


# ============================================================================ the grid detector
def grid_targets(scenes: Scenes, stride: int, anchor: float) -> torch.Tensor:
    """Per-cell training targets (N, 6, G, G): objectness, class, tx, ty, tw, th (see ``encode_box``).
    A cell holding two box centres keeps the larger box (rare with the overlap limit of ``make_scenes``)."""
    n, size = len(scenes), scenes.images.shape[-1]
    g = size // stride
    t = torch.zeros(n, 6, g, g)
    for i, (boxes, labels) in enumerate(zip(scenes.boxes, scenes.labels)):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for j in areas.argsort().tolist():                          # larger boxes written last: they win
            row, col, tb = encode_box(boxes[j], stride, anchor)
            t[i, 0, row, col], t[i, 1, row, col], t[i, 2:, row, col] = 1.0, labels[j], tb
    return t


class GridDetector(nn.Module):
    """A single-stage detector in the YOLO family: a small CNN whose last map has one cell per ``stride``
    pixels; each cell predicts an objectness logit, ``n_classes`` class logits and a box (tx, ty, tw, th)."""

    def __init__(self, channels=(8, 16, 32, 32), n_classes: int = N_CLASSES, stride: int = 8,
                 anchor: float = 20.0):
        super().__init__()
        if len(channels) != 4 or stride != 8:
            raise ValueError("GridDetector has three 2x2 poolings (stride 8) and four conv layers; "
                             f"got channels={channels}, stride={stride}")
        c1, c2, c3, c4 = channels
        self.stride, self.anchor, self.n_classes = stride, anchor, n_classes
        block = lambda i, o: [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]  # noqa: E731
        self.features = nn.Sequential(*block(1, c1), nn.MaxPool2d(2), *block(c1, c2), nn.MaxPool2d(2),
                                      *block(c2, c3), nn.MaxPool2d(2), *block(c3, c4))
        self.head = nn.Conv2d(c4, 1 + n_classes + 4, 1)

    def forward(self, x):                     # (N, 1, S, S) -> (N, 1 + C + 4, S/8, S/8)
        return self.head(self.features(x))


def detection_loss_parts(out: torch.Tensor, target: torch.Tensor) -> dict:
    """The three terms: objectness BCE over every cell; class cross-entropy and box squared error over the
    cells that own an object. ``out`` (N, 1 + C + 4, G, G), ``target`` from :func:`grid_targets`."""
    obj = target[:, 0] > 0.5                                        # (N, G, G)
    n_pos = obj.sum().clamp(min=1)
    objectness = F.binary_cross_entropy_with_logits(out[:, 0], target[:, 0])
    logits = out[:, 1:-4].permute(0, 2, 3, 1)[obj]                  # (P, C)
    cls = F.cross_entropy(logits, target[:, 1][obj].long(), reduction="sum") / n_pos
    pred_box = torch.cat([out[:, -4:-2].sigmoid(), out[:, -2:]], 1)  # offsets in (0, 1), log sizes
    box = ((pred_box - target[:, 2:]) ** 2).sum(1)[obj].sum() / n_pos
    return {"objectness": objectness, "class": cls, "box": box}


def detection_loss(out: torch.Tensor, target: torch.Tensor, w_box: float = 2.0) -> torch.Tensor:
    """Objectness + class + ``w_box`` x box (the terms of :func:`detection_loss_parts`)."""
    p = detection_loss_parts(out, target)
    return p["objectness"] + p["class"] + w_box * p["box"]


@dataclass
class Raw:
    """Every cell's decoded box, score and class for a batch of images (before thresholds and NMS)."""

    boxes: torch.Tensor      # (N, G*G, 4)
    scores: torch.Tensor     # (N, G*G): P(object) x P(class | object)
    labels: torch.Tensor     # (N, G*G)


@torch.no_grad()
def raw_predictions(model: GridDetector, images: torch.Tensor, fixed_boxes: bool = False,
                    batch_size: int = 256, fixed_size: tuple[float, float] | None = None) -> Raw:
    """Decode every cell. ``fixed_boxes=True`` ignores the regressed box and puts a box of ``fixed_size``
    ``(w, h)`` pixels (default: the anchor-sized square) on the cell's centre: the detector without box
    regression (a sliding-window classifier). The chapter passes the mean training box, the best single size
    such a baseline can know without looking at the image."""
    was, dev = model.training, next(model.parameters()).device
    model.eval()
    outs = torch.cat([model(images[i:i + batch_size].to(dev)).float().cpu()
                      for i in range(0, len(images), batch_size)])
    model.train(was)
    t = torch.cat([outs[:, -4:-2].sigmoid(), outs[:, -2:]], 1)
    if fixed_boxes:
        t = torch.cat([torch.full_like(t[:, :2], 0.5), torch.zeros_like(t[:, 2:])], 1)   # (N, 4, G, G)
        if fixed_size is not None:                  # log size relative to the anchor, as encoded
            w, h = fixed_size
            if w <= 0 or h <= 0:
                raise ValueError(f"fixed_size must be positive (w, h) in pixels, got {fixed_size}")
            t[:, 2] = math.log(w / model.anchor)
            t[:, 3] = math.log(h / model.anchor)
    boxes = decode_grid(t, model.stride, model.anchor)
    cls = outs[:, 1:-4].softmax(1).flatten(2)                       # (N, C, G*G)
    p_cls, labels = cls.max(1)
    scores = outs[:, 0].sigmoid().flatten(1) * p_cls
    return Raw(boxes, scores, labels)


def postprocess(raw: Raw, score_threshold: float = 0.05, nms_threshold: float = 0.5,
                n: int | None = None) -> list:
    """Detections per image: cells scoring above ``score_threshold``, then NMS within each class.
    ``nms_threshold=1`` keeps every box. Returns ``[(boxes, scores, labels), ...]`` for the first ``n``."""
    out = []
    for b, s, lab in list(zip(raw.boxes, raw.scores, raw.labels))[:n]:
        keep = s > score_threshold
        b, s, lab = b[keep], s[keep], lab[keep]
        k = batched_nms(b, s, lab, nms_threshold) if nms_threshold < 1 else s.argsort(descending=True)
        out.append((b[k], s[k], lab[k]))
    return out


def prior_box_baseline(train: Scenes, n_images: int) -> list:
    """The trivial detector: one box per image, at the mean training box, labelled with the most common
    training class (score 1)."""
    boxes, labels = torch.cat(train.boxes), torch.cat(train.labels)
    box, label = boxes.mean(0, keepdim=True), labels.bincount().argmax().view(1)
    return [(box.clone(), torch.ones(1), label.clone()) for _ in range(n_images)]


def detection_map(model: GridDetector, scenes: Scenes, iou_threshold: float = 0.5,
                  nms_threshold: float = 0.5, fixed_boxes: bool = False, n: int | None = None,
                  fixed_size: tuple[float, float] | None = None) -> float:
    """mAP at ``iou_threshold`` of ``model`` on the first ``n`` scenes (default: all); ``fixed_boxes`` and
    ``fixed_size`` as for :func:`raw_predictions`."""
    n = n or len(scenes)
    raw = raw_predictions(model, scenes.images[:n], fixed_boxes, fixed_size=fixed_size)
    dets = postprocess(raw, nms_threshold=nms_threshold)
    return mean_average_precision(dets, scenes.ground_truth(n), iou_threshold, N_CLASSES)[0]


class DetectionMonitor(Callback, Replay):
    """The detector's training, live (a :func:`book.train.fit` callback): the training loss and the three
    validation loss terms, validation mAP@0.5, and the boxes predicted on one fixed validation image.
    ``replay()`` steps through the recorded log points."""

    replay_hint = "train with this monitor as a callback of fit first"

    def __init__(self, val: Scenes, val_target: torch.Tensor, index: int = 0, n_map: int = 100,
                 title: str = "grid detector"):
        self.val, self.val_target, self.index, self.n_map, self.title = val, val_target, index, n_map, title
        self.steps, self.train_loss, self.parts, self.maps, self.shown = [], [], [], [], []
        self.fig = self.axes = self.live = None

    def on_log(self, state: State):
        model = state.model
        dev = next(model.parameters()).device
        n = min(self.n_map, len(self.val))
        with torch.no_grad():
            model.eval()
            out = model(self.val.images[:n].to(dev))
            model.train()
            parts = detection_loss_parts(out.float(), self.val_target[:n].to(dev))
        self.steps.append(state.step)
        self.train_loss.append(state.history.train_loss[-1])
        self.parts.append({k: float(v) for k, v in parts.items()})
        raw = raw_predictions(model, self.val.images[:n].to(dev))
        self.maps.append(mean_average_precision(postprocess(raw), self.val.ground_truth(n), 0.5, N_CLASSES)[0])
        one = Raw(raw.boxes[self.index:self.index + 1], raw.scores[self.index:self.index + 1],
                  raw.labels[self.index:self.index + 1])
        self.shown.append(postprocess(one)[0])
        self.draw(len(self.steps) - 1)
        self.show_live()

    def draw(self, k: int):
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=80,
                                               gridspec_kw={"width_ratios": [1.3, 1, 1]})
        ax_loss, ax_map, ax_img = self.axes
        ax_loss.clear()
        steps = self.steps[:k + 1]
        ax_loss.plot(steps, self.train_loss[:k + 1], "k-", label="train (total)")
        for name, style in (("objectness", "C0--"), ("class", "C1--"), ("box", "C2--")):
            ax_loss.plot(steps, [p[name] for p in self.parts[:k + 1]], style, label=f"val {name}")
        ax_loss.set(xlabel="step", ylabel="loss", yscale="log", xlim=(0, max(self.steps) * 1.02))
        ax_loss.legend(fontsize=7)
        ax_map.clear()
        ax_map.plot(steps, self.maps[:k + 1], "o-", color="C3")
        ax_map.set(xlabel="step", ylabel="validation mAP@0.5", ylim=(0, 1), xlim=(0, max(self.steps) * 1.02))
        ax_map.set_title(f"on the first {min(self.n_map, len(self.val))} validation scenes", fontsize=9)
        draw_boxes(ax_img, self.val.images[self.index, 0], self.shown[k], self.val.boxes[self.index],
                   title=f"{self.title}, step {self.steps[k]}")
        self.fig.tight_layout()

    def _frames(self) -> int:
        return len(self.steps)

    def _draw_frame(self, k: int):
        self.draw(k)


def draw_boxes(ax, image, detections=None, gt_boxes=None, matched=None, title: str = ""):
    """An image with ground-truth boxes (dashed white) and detections (labelled with class and score;
    green when ``matched`` says true positive, red when false positive, yellow when not judged)."""
    ax.clear()
    ax.imshow(image.detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
    for b in (gt_boxes if gt_boxes is not None else []):
        x1, y1, x2, y2 = b.tolist()
        ax.add_patch(plt.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="w", ls="--", lw=1))
    boxes, scores, labels = detections if detections is not None else (torch.zeros(0, 4),) * 3
    for j, (b, s, c) in enumerate(zip(boxes.tolist(), scores.tolist(), labels.tolist())):
        color = "gold" if matched is None else ("lime" if matched[j] else "red")
        ax.add_patch(plt.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, ec=color,
                                   lw=1.5))
        ax.text(b[0], b[1] - 1, f"{int(c)}:{s:.2f}", color=color, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def train_detector(train: Scenes, val: Scenes, steps: int, lr: float = 3e-3, batch_size: int = 32,
                   seed: int = 0, channels=(8, 16, 32, 32), anchor: float = 20.0, log_every: int = 50,
                   monitor: bool = False, device=None):
    """Train a :class:`GridDetector` with :func:`book.train.fit` on random mini-batches of ``train``;
    returns ``(model, history, monitor or None)``."""
    torch.manual_seed(seed)
    model = GridDetector(channels, anchor=anchor).to(device or "cpu")
    x, target = train.images.to(device or "cpu"), grid_targets(train, model.stride, anchor).to(device or "cpu")
    g = torch.Generator().manual_seed(seed)

    def get_batch(step):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        return x[idx], target[idx]
    mon = DetectionMonitor(val, grid_targets(val, model.stride, anchor)) if monitor else None
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = fit(model, get_batch, opt, loss_fn=detection_loss, steps=steps, log_every=log_every,
               callbacks=[mon] if mon else ())
    return model, hist, mon


# ============================================================================ segmentation
class UNet(nn.Module):
    """A two-level U-Net (Ronneberger et al. 2015): an encoder that halves the resolution twice, a decoder
    that doubles it back with transposed convolutions, and *skip connections* that concatenate each encoder
    map to the decoder map of the same size. ``skip=False`` concatenates zeros instead: the same layers and
    parameters, only the skip information removed (the ablation's one change)."""

    def __init__(self, channels=(8, 16, 32), skip: bool = True):
        super().__init__()
        c1, c2, c3 = channels
        self.skip = skip
        conv = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o),  # noqa: E731
                                          nn.ReLU())
        self.enc1, self.enc2, self.mid = conv(1, c1), conv(c1, c2), conv(c2, c3)
        self.up2, self.dec2 = nn.ConvTranspose2d(c3, c2, 2, stride=2), conv(2 * c2, c2)
        self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), conv(2 * c1, c1)
        self.out = nn.Conv2d(c1, 1, 1)

    def _join(self, up, enc):
        return torch.cat([up, enc if self.skip else torch.zeros_like(enc)], 1)

    def forward(self, x):                                  # (N, 1, S, S) -> (N, 1, S, S) logits
        e1 = self.enc1(x)                                  # (N, c1, S, S)
        e2 = self.enc2(F.max_pool2d(e1, 2))                # (N, c2, S/2, S/2)
        m = self.mid(F.max_pool2d(e2, 2))                  # (N, c3, S/4, S/4)
        d2 = self.dec2(self._join(self.up2(m), e2))        # (N, c2, S/2, S/2)
        d1 = self.dec1(self._join(self.up1(d2), e1))       # (N, c1, S, S)
        return self.out(d1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice with probabilities in place of the binary prediction, over each image, averaged: it scores
    the overlap itself, so the rare foreground counts as much as the background (``eps`` avoids 0/0)."""
    p, t = logits.sigmoid().flatten(1), target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel binary cross-entropy plus the soft Dice loss (:func:`soft_dice_loss`)."""
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)


def train_unet(train: Scenes, steps: int, lr: float = 3e-3, batch_size: int = 16, seed: int = 0,
               channels=(8, 16, 32), skip: bool = True, log_every: int = 50, device=None):
    """Train a :class:`UNet` on the scenes' masks with :func:`segmentation_loss` (``fit``)."""
    torch.manual_seed(seed)
    model = UNet(channels, skip).to(device or "cpu")
    x, y = train.images.to(device or "cpu"), train.masks.float().to(device or "cpu")
    g = torch.Generator().manual_seed(seed)

    def get_batch(step):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        return x[idx], y[idx]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = fit(model, get_batch, opt, loss_fn=segmentation_loss, steps=steps,
               log_every=log_every)
    return model, hist


@torch.no_grad()
def segment(model: UNet, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Binary masks (logit > 0) for ``images``, evaluated in batches."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model(images[i:i + batch_size].to(dev)) > 0 for i in range(0, len(images), batch_size)])
    model.train(was)
    return out.cpu()


def best_threshold(scenes: Scenes, grid: int = 41) -> float:
    """The intensity threshold (of ``grid - 2`` evenly spaced ones in (0, 1)) with the best mean mask IoU on
    ``scenes``: the baseline is tuned too. One histogram per image gives every threshold's counts at once."""
    ts = torch.linspace(0, 1, grid)[1:-1]
    x, m = scenes.images.flatten(1), scenes.masks.flatten(1)
    bins = torch.bucketize(x, ts)                       # x > ts[k]  <=>  bins > k
    hist_all = torch.zeros(len(x), len(ts) + 1).scatter_add_(1, bins, torch.ones_like(x))
    hist_in = torch.zeros(len(x), len(ts) + 1).scatter_add_(1, bins, m.float())
    above = lambda h: h.flip(1).cumsum(1).flip(1)[:, 1:]          # noqa: E731  (N, K): count in bins > k
    inter, pred = above(hist_in), above(hist_all)
    union = pred + m.sum(1, keepdim=True) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))   # (N, K)
    return float(ts[iou.mean(0).argmax()])


def seg_scores(pred: torch.Tensor, target: torch.Tensor) -> dict:
    """Mean IoU and mean Dice over images, and the per-image values."""
    j, d = mask_iou(pred, target), dice(pred, target)
    return {"iou": float(j.mean()), "dice": float(d.mean()), "per_iou": j, "per_dice": d}


# ============================================================================ the explorer
class BoxExplorer(Explorer):
    """Thresholds after the detector: the score threshold and NMS IoU decide which boxes survive; the
    matching IoU decides which count as correct. Left: one validation image (green true positives, red
    false positives, dashed ground truth); right: the precision-recall curve of the whole validation set
    and its AP (averaged over the classes: mAP)."""

    defaults = {"index": 0, "nms_threshold": 0.5, "iou_threshold": 0.5, "score_threshold": 0.05}
    layout = {"ncols": 2, "figsize": (9, 3.6)}

    def __init__(self, raw: Raw, scenes: Scenes, **settings):
        self.raw, self.scenes = raw, scenes
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0 <= s["index"] < len(self.scenes):
            raise ValueError(f"index must be in 0..{len(self.scenes) - 1}, got {s['index']}")
        for k in ("nms_threshold", "iou_threshold", "score_threshold"):
            if not 0 <= s[k] <= 1:
                raise ValueError(f"{k} must be in [0, 1], got {s[k]}")

    def _controls(self):
        import ipywidgets as w
        return {"index": w.IntSlider(min=0, max=len(self.scenes) - 1, description="image"),
                "nms_threshold": w.FloatSlider(min=0.1, max=1.0, step=0.05, description="NMS IoU"),
                "iou_threshold": w.FloatSlider(min=0.1, max=0.9, step=0.05, description="match IoU"),
                "score_threshold": w.FloatSlider(min=0.0, max=0.9, step=0.05, description="min score")}

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        ax_img, ax_pr = self.axes
        dets = postprocess(self.raw, s["score_threshold"], s["nms_threshold"])
        gt = self.scenes.ground_truth()
        curves = {c: pr_curve(dets, gt, c, s["iou_threshold"]) for c in range(N_CLASSES)}
        per_class = {c: ap_from_pr(p, r) for c, (p, r, n_gt) in curves.items() if n_gt > 0}
        m_ap = sum(per_class.values()) / len(per_class)
        i = s["index"]
        b, sc, lab = dets[i]
        gb, gl = gt[i]
        matched = torch.zeros(len(b), dtype=torch.bool)
        for c in lab.unique().tolist():                    # match within each class, as AP does
            k = lab == c
            matched[k] = match_detections(b[k], sc[k], gb[gl == c], s["iou_threshold"])
        draw_boxes(ax_img, self.scenes.images[i, 0], dets[i], gb, matched,
                   title=f"image {i}: {len(b)} boxes kept, {int(matched.sum())} correct")
        ax_pr.clear()
        for c, ap in per_class.items():
            p, r, _ = curves[c]
            ax_pr.plot(r.numpy(), p.numpy(), lw=1, alpha=0.7, label=f"{c}: AP {ap:.2f}")
        ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax_pr.set_title(f"validation mAP@{s['iou_threshold']:.2f} = {m_ap:.3f} (NMS {s['nms_threshold']:.2f})",
                        fontsize=9)
        ax_pr.legend(fontsize=6, ncol=2, loc="lower left")
        return m_ap
