"""Looking inside a trained CNN: filters, feature maps, saliency, mistakes; convolution geometry; and the
augmented mini-batches of the chapter's augmentation experiment."""
from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from book.data import batches
from book.nn.conv import out_size
from book.ui import Explorer


def saliency(model: nn.Module, image: torch.Tensor, label: int | None = None) -> torch.Tensor:
    """``|∂ score / ∂ pixel|`` for one image (1, H, W): which pixels would change the class score most."""
    if image.ndim != 3:
        raise ValueError(f"saliency takes one image of shape (C, H, W), got {tuple(image.shape)}")
    was = model.training
    model.eval()
    x = image[None].detach().clone().requires_grad_(True)
    scores = model(x)[0]
    k = int(scores.argmax()) if label is None else label
    scores[k].backward()
    model.train(was)
    return x.grad[0].abs().amax(0)   # (H, W)


def feature_maps(model: nn.Module, image: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The output of ``layer`` for one image: (channels, h, w)."""
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("out", o.detach()))
    with torch.no_grad():
        model.eval()
        model(image[None])
    h.remove()
    return store["out"][0]


def show_grid(axes, images, titles=None, cmap="gray"):
    for i, ax in enumerate(np.ravel(axes)):
        ax.clear()
        ax.axis("off")
        if i < len(images):
            im = images[i]
            ax.imshow(im.detach().cpu().numpy() if isinstance(im, torch.Tensor) else np.asarray(im), cmap=cmap)
            if titles:
                ax.set_title(titles[i], fontsize=8)


class CNNInspector(Explorer):
    """One image at a time (the cnn chapter shows validation images): the image, its saliency map and the
    feature maps of a chosen conv layer.

    Settings ``index`` (which image) and ``layer`` (which convolution, from 0); ``show()`` adds
    controls, ``player("index", [...])`` precomputes frames for the static site (the
    :class:`~book.ui.explorer.Explorer` contract).
    """

    defaults = dict(index=0, layer=0)
    layout = dict(nrows=2, ncols=5, figsize=(11, 4.6))
    interval = 900

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **settings):
        self.model, self.images, self.labels = model, images, labels
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not self.convs:
            raise ValueError("the model has no nn.Conv2d layer to inspect")
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0 <= s["layer"] < len(self.convs):
            raise ValueError(f"layer must be in 0..{len(self.convs) - 1}, got {s['layer']}")
        if not 0 <= s["index"] < len(self.images):
            raise ValueError(f"index must be in 0..{len(self.images) - 1}, got {s['index']}")

    def _controls(self):
        import ipywidgets as w
        return {"index": w.IntSlider(min=0, max=len(self.images) - 1, description="image"),
                "layer": w.Dropdown(options=list(range(len(self.convs))), description="conv layer")}

    def draw(self, **override) -> int:
        """Draw the settings (plus ``override``); returns the predicted class."""
        s = self.resolve(**override)
        img, lab = self.images[s["index"]], int(self.labels[s["index"]])
        maps = feature_maps(self.model, img, self.convs[s["layer"]]).cpu().numpy()
        with torch.no_grad():
            pred = int(self.model(img[None]).argmax())
        sal = saliency(self.model, img).cpu().numpy()
        n = min(len(maps), 8)
        self.figure()
        for ax in self.axes.ravel():
            ax.clear()
            ax.axis("off")
        self.axes[0, 0].imshow(img[0].cpu().numpy(), cmap="gray")
        self.axes[0, 0].set_title(f"#{s['index']}: label {lab}, predicted {pred}", fontsize=8,
                                  color="black" if pred == lab else "red")
        self.axes[1, 0].imshow(sal, cmap="hot")
        self.axes[1, 0].set_title("saliency |∂score/∂pixel|", fontsize=8)
        for i, ax in enumerate(list(self.axes[:, 1:].ravel())[:n]):
            ax.imshow(maps[i], cmap="viridis")
            ax.set_title(f"conv{s['layer'] + 1} channel {i}", fontsize=8)
        self.fig.tight_layout()
        return pred


def draw_conv1d(ax, n: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    """One axis of a convolution: input cells (padding grey), and the cells each output reads."""
    m = out_size(n, k, stride, padding, dilation)
    ax.clear()
    ax.axis("off")
    total = n + 2 * padding
    for i in range(total):
        pad = i < padding or i >= padding + n
        ax.add_patch(plt.Rectangle((i, 0), 0.9, 0.9, fc="#dddddd" if pad else "#9ecae1", ec="k", lw=0.5))
    colors = plt.cm.tab10.colors
    for o in range(m):
        x_out = (total - m) / 2 + o
        ax.add_patch(plt.Rectangle((x_out, 2.4), 0.9, 0.9, fc=colors[o % 10], ec="k", lw=0.5))
        for u in range(k):
            i = o * stride + u * dilation
            ax.plot([x_out + 0.45, i + 0.45], [2.4, 0.9], color=colors[o % 10], lw=0.8, alpha=0.8)
    ax.set_xlim(-0.5, max(total, m) + 0.5)
    ax.set_ylim(-0.3, 3.6)
    ax.set_title(f"input {n} (+{padding} padding each side), kernel {k}, stride {stride}, dilation {dilation}"
                 f" → output {m}", fontsize=9)
    return m


def augmented_batches(x: torch.Tensor, y: torch.Tensor, transform: Callable | None, batch_size: int = 64,
                      seed: int = 0) -> Callable:
    """``get_batch(step)`` for :func:`book.train.fit`: shuffled mini-batches of ``(x, y)``, each image batch
    passed through ``transform(xb, generator)`` on the fly (``None``: unchanged).

    The shuffling and the transform draw from two generators seeded by ``seed``, so runs that differ only in
    ``transform`` see exactly the same batches in the same order: one change at a time.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    order = torch.Generator().manual_seed(seed)
    draws = torch.Generator().manual_seed(seed + 1)

    def stream():
        while True:
            yield from batches(x, y, batch_size, shuffle=True, generator=order)
    it = stream()

    def get_batch(step: int):
        xb, yb = next(it)
        return (xb if transform is None else transform(xb, draws)), yb
    return get_batch


# ---------------------------------------------------------------------------- receptive fields, shifts
def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate images (..., H, W) by ``dy`` rows down and ``dx`` columns right; what leaves the frame is
    lost, what enters is zero (black)."""
    if x.ndim < 2:
        raise ValueError(f"shift takes images (..., H, W), got {tuple(x.shape)}")
    H, W = x.shape[-2:]
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"a shift of ({dy}, {dx}) leaves nothing of a {H}×{W} image")
    out = torch.zeros_like(x)
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        x[..., max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


def layer_geometry(module: nn.Module) -> list[tuple[int, int, int]]:
    """``(k, stride, dilation)`` along one axis of every convolution and pooling layer of ``module``, in
    order: what :func:`book.nn.conv.receptive_field` takes."""
    def first(v):
        return v[0] if isinstance(v, tuple) else v
    layers = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            layers.append((first(m.kernel_size), first(m.stride), first(m.dilation)))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            layers.append((first(m.kernel_size), first(m.stride or m.kernel_size), first(getattr(m, "dilation", 1))))
    return layers


def dilated_lenet_features() -> nn.Sequential:
    """LeNet's feature extractor with one change: the second convolution has dilation 2."""
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, dilation=2), nn.ReLU(), nn.MaxPool2d(2))


def gradient_support(features: nn.Module, images: torch.Tensor, unit: tuple[int, int] | None = None) -> torch.Tensor:
    """Which input pixels one output position of ``features`` depends on, measured: the pixels where the
    gradient of that position (summed over channels) w.r.t. the input is nonzero, for any of ``images``
    (N, 1, H, W). ``unit`` (row, column) defaults to the centre of the output map. Returns an (H, W) mask.

    ReLU and max-pooling pass gradient along only some paths for a given image, so one image shows a
    subset; the union over many images approaches the receptive field the layers allow."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
    x = images.detach().clone().requires_grad_(True)
    was = features.training
    features.eval()
    out = features(x)
    i, j = unit if unit is not None else (out.shape[2] // 2, out.shape[3] // 2)
    out[:, :, i, j].sum().backward()
    features.train(was)
    return (x.grad != 0).any(0).any(0)


def support_box(mask: torch.Tensor) -> tuple[int, int]:
    """Height and width of the smallest box holding every True pixel of an (H, W) mask."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    if len(rows) == 0:
        return 0, 0
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
