"""Batch normalisation and layer normalisation from scratch (chapter ``residual_nets``).

Each matches its PyTorch counterpart, ``nn.BatchNorm1d``/``nn.BatchNorm2d`` (in training *and* evaluation
mode, running statistics included) and ``nn.LayerNorm``; ``tests/chapters/test_residual_nets.py`` checks
it. The difference between the two is only the axes the statistics are taken over:

* batch norm: per channel, over the batch (and, for images, the positions): ``(N,)`` or ``(N, H, W)``;
* layer norm: per example, over its features: the last ``len(normalized_shape)`` axes.
"""
from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.Module):
    """Batch normalisation of ``(N, C)`` or ``(N, C, H, W)`` inputs, written out.

    Training mode: normalise with the batch's mean and *biased* variance (divide by the count ``m``), and
    move the running statistics towards the batch's: ``running = (1 − momentum)·running + momentum·batch``,
    where the running variance takes the *unbiased* batch variance (divide by ``m − 1``), as PyTorch does.
    Evaluation mode: normalise with the running statistics, so each example's output no longer depends on
    the others in its batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))     # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))      # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (2, 4) or x.shape[1] != len(self.weight):
            raise ValueError(f"BatchNorm({len(self.weight)}) expects (N, {len(self.weight)}) or "
                             f"(N, {len(self.weight)}, H, W), got {tuple(x.shape)}")
        axes = (0,) if x.ndim == 2 else (0, 2, 3)            # everything but the channel axis
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)     # to broadcast per channel
        if self.training:
            m = x.numel() // x.shape[1]                       # values per channel in this batch
            if m < 2:
                raise ValueError("batch norm in training mode needs more than one value per channel")
            mean = x.mean(axes)
            var = x.var(axes, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * m / (m - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)


class LayerNorm(nn.Module):
    """Layer normalisation over the last ``len(normalized_shape)`` axes of each example, written out.

    The statistics are each example's own (biased variance), in training and evaluation mode alike: no
    running statistics, no dependence on the batch.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} expects inputs ending in that shape, "
                             f"got {tuple(x.shape)}")
        axes = tuple(range(-k, 0))
        mean = x.mean(axes, keepdim=True)
        var = x.var(axes, unbiased=False, keepdim=True)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias
