"""Models used across chapters: a LeNet-style CNN and configurable deep MLPs.

Chapters: :class:`LeNet` is introduced in ``cnn`` and reused in ``adversarial``, ``compression``,
``applications``, ``generative`` and ``tools``; :func:`deep_mlp` is ``training_practice``'s (depth,
initialisation, normalisation). :class:`SmallCNN` (one switch per experiment: pooling, head, separable
blocks) is ``modern_cnn``'s. :class:`ResidualMLP`, :class:`BasicBlock` and :class:`SmallResNet` (each with a
``skip`` switch: the residual network or the plain one of the same depth) are ``residual_nets``'.
"""
from __future__ import annotations

import math

from torch import nn

INITS = ("default", "naive", "xavier", "he")


class LeNet(nn.Module):
    """LeNet-5 style: two 5×5 convolutions with max-pooling, three fully connected layers (ReLU)."""

    def __init__(self, width: int = 1, n_classes: int = 10):
        super().__init__()
        c1, c2 = 6 * width, 16 * width
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # (B, c1, 28, 28) -> (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),              # (B, c2, 10, 10) -> (B, c2, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),                                                  # (B, c2·25)
            nn.Linear(c2 * 25, 120 * width), nn.ReLU(),
            nn.Linear(120 * width, 84 * width), nn.ReLU(),
            nn.Linear(84 * width, n_classes),
        )

    def forward(self, x):
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"LeNet expects images of shape (B, 1, 28, 28), got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def deep_mlp(depth: int = 8, width: int = 256, act: str = "tanh", init: str = "default", norm: str | None = None,
             n_in: int = 784, n_out: int = 10, dropout: float = 0.0) -> nn.Sequential:
    """A plain deep MLP for initialisation/normalisation experiments.

    ``init`` sets the weights of every hidden linear layer (their biases start at 0), whatever ``act``
    is; the output layer keeps PyTorch's default:

    * ``default``: PyTorch's ``nn.Linear`` default (uniform, variance 1/(3·fan_in)), biases too;
    * ``naive``: N(0, 0.01²), the classic "small random numbers" that are too small for deep nets;
    * ``xavier``: N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010), no gain;
    * ``he``: N(0, 2/fan_in) (He et al. 2015, derived for ReLU), also for tanh. No activation-specific
      gain is applied: PyTorch's ``kaiming_normal_(..., nonlinearity="tanh")`` would use gain 5/3, i.e.
      variance (25/9)/fan_in; this helper never does, so ``he`` always means what the chapter teaches.

    ``norm``: None, ``batch`` or ``layer`` (after each hidden linear layer, before the activation).
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    if norm not in (None, "batch", "layer"):
        raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
    acts = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
    if act not in acts:
        raise ValueError(f"unknown activation {act!r}; choose one of {list(acts)}")
    layers: list[nn.Module] = [nn.Flatten()]
    d = n_in
    for _ in range(depth):
        lin = nn.Linear(d, width)
        if init != "default":   # N(0, std²) weights, zero biases; no activation-specific gain
            std = {"naive": 0.01, "xavier": math.sqrt(2 / (d + width)), "he": math.sqrt(2 / d)}[init]
            nn.init.normal_(lin.weight, 0.0, std)
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(acts[act]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = width
    layers.append(nn.Linear(d, n_out))   # the output layer keeps PyTorch's default init
    return nn.Sequential(*layers)


class ResidualMLP(nn.Module):
    """An MLP of ``depth`` blocks BatchNorm → ReLU → Linear(width, width), with or without skips.

    Chapter ``residual_nets``. ``skip=True``: each block adds its input back, ``h ← h + F(h)``; ``skip=False``:
    ``h ← F(h)``, the plain network. That is the only difference (the same layers, the same initial
    weights for the same seed). A linear stem maps the image to ``width`` features; the head is
    BatchNorm → ReLU → Linear(width, n_out).
    """

    def __init__(self, depth: int = 20, width: int = 64, skip: bool = True, n_in: int = 784, n_out: int = 10):
        super().__init__()
        if depth < 0 or width < 1:
            raise ValueError(f"need depth >= 0 and width >= 1, got depth={depth}, width={width}")
        self.skip = skip
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(n_in, width))
        self.blocks = nn.ModuleList(nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width))
                                    for _ in range(depth))
        self.head = nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, n_out))

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h) if self.skip else block(h)
        return self.head(h)


class BasicBlock(nn.Module):
    """ResNet's basic block (He et al. 2016): 3×3 conv → BN → ReLU → 3×3 conv → BN, plus the shortcut, → ReLU.

    Chapter ``residual_nets``. The shortcut is the identity when the shape is kept, else a 1×1 convolution
    with the block's stride and a BN (the paper's "option B"). ``skip=False`` drops the shortcut: the
    block of the plain network of the same depth.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, skip: bool = True):
        super().__init__()
        self.skip = skip
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if skip and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
        return nn.functional.relu(out + self.shortcut(x) if self.skip else out)


class SmallResNet(nn.Module):
    """A ResNet for 28×28 digits: a stride-2 3×3 stem, three stages of ``blocks`` basic blocks, average pool.

    Chapter ``residual_nets``. The stages have ``widths`` channels at 14×14, 7×7 and 4×4 (the first block of
    the 2nd and 3rd stages halves the resolution). Weighted layers: 1 + 6·blocks + 1, so ``blocks=3`` is
    a 20-layer network, the depth of the CIFAR ResNet-20 of He et al. ``skip=False``: the plain network of
    the same depth.
    """

    def __init__(self, widths: tuple = (8, 16, 32), blocks: int = 3, skip: bool = True, n_classes: int = 10):
        super().__init__()
        if len(widths) != 3 or blocks < 1:
            raise ValueError(f"need three stage widths and blocks >= 1, got {widths}, {blocks}")
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(c, w, 2 if i > 0 and j == 0 else 1, skip))
                c = w
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


DOWNSAMPLING = ("max", "avg", "stride")


class SmallCNN(nn.Module):
    """A small CNN of 3×3 blocks with one switch per experiment of ``modern_cnn``.

    Each block is a 3×3 convolution (padding 1), a ReLU and a halving of the resolution; ``down`` says how:
    ``"max"`` or ``"avg"`` (2×2 pooling after the ReLU), or ``"stride"`` (the convolution itself takes
    stride 2: no pooling at all). ``separable=True`` makes every block after the first a depthwise 3×3
    convolution (``groups`` = its input channels) followed by a 1×1 convolution. ``head="flatten"`` gives
    every position of the last map its own weights in the final linear layer; ``head="gap"`` averages each
    channel over all positions first (global average pooling).
    """

    def __init__(self, channels=(8, 16, 32), down: str = "max", head: str = "flatten",
                 separable: bool = False, n_classes: int = 10, size: int = 28):
        super().__init__()
        if down not in DOWNSAMPLING:
            raise ValueError(f"down must be one of {DOWNSAMPLING}, got {down!r}")
        if head not in ("flatten", "gap"):
            raise ValueError(f"head must be 'flatten' or 'gap', got {head!r}")
        if not channels or any(c < 1 for c in channels):
            raise ValueError(f"channels must list at least one positive width, got {channels}")
        layers: list[nn.Module] = []
        c_in, s = 1, size
        for i, c in enumerate(channels):
            stride = 2 if down == "stride" else 1
            if separable and i > 0:
                layers += [nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in),
                           nn.Conv2d(c_in, c, 1)]
            else:
                layers.append(nn.Conv2d(c_in, c, 3, stride=stride, padding=1))
            layers.append(nn.ReLU())
            if down == "max":
                layers.append(nn.MaxPool2d(2))
            elif down == "avg":
                layers.append(nn.AvgPool2d(2))
            s = (s - 1) // 2 + 1 if down == "stride" else s // 2
            c_in = c
        self.features = nn.Sequential(*layers)
        n_feat = c_in * s * s if head == "flatten" else c_in
        pool = nn.Flatten() if head == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(pool, nn.Linear(n_feat, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))

