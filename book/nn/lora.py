"""LoRA (low-rank adaptation, Hu et al. 2021) written from scratch around ``nn.Linear``.

Chapter: taught in ``lora``.

A frozen weight ``W`` (out, in) gets a trainable low-rank update: ``W' = W + (alpha / r) · B A`` with
``A`` (r, in) and ``B`` (out, r). ``B`` starts at zero, so the adapted model starts exactly where the
pretrained one is. Unmerged, the update runs as a side branch ``x -> A -> B``; merged, it is added into
``W`` and the layer costs what it cost before (no extra inference time).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · x Aᵀ Bᵀ`` with ``base`` frozen; ``merge()`` folds the update into ``base``."""

    def __init__(self, base: nn.Linear, r: int = 4, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not 1 <= r <= min(base.in_features, base.out_features):
            raise ValueError(f"rank r must be in 1..{min(base.in_features, base.out_features)} for a "
                             f"{base.out_features}x{base.in_features} layer, got {r}")
        self.base, self.r = base, r
        self.alpha = float(r if alpha is None else alpha)
        self.scaling = self.alpha / r
        base.requires_grad_(False)
        w = base.weight
        # as in the paper (and peft): A random, B zero -> the update B A is zero at the start
        self.A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.drop = nn.Dropout(dropout)
        self.merged = False

    @property
    def weight(self):   # the weight this layer currently applies (for tools that read .weight)
        return self.base.weight if self.merged else self.base.weight + self.delta_weight()

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``(alpha / r) · B A``, shape (out, in)."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x):
        y = self.base(x)
        if not self.merged:
            y = y + self.scaling * ((self.drop(x) @ self.A.T) @ self.B.T)   # (..., in) -> (..., r) -> (..., out)
        return y

    @torch.no_grad()
    def merge(self):
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False
        return self

    def extra_repr(self):
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


def add_lora(model: nn.Module, r: int = 4, alpha: float | None = None, targets=("qkv", "proj"),
             dropout: float = 0.0, train=()) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose name ends with one of ``targets`` in a LoRALinear.

    ``train``: names (prefixes) of modules that stay fully trainable, e.g. a new classification head.
    Returns the names of the wrapped layers."""
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and any(full.split(".")[-1] == t or full.endswith("." + t) or full == t
                                                    for t in targets):
                setattr(module, child_name, LoRALinear(child, r, alpha, dropout))
                wrapped.append(full)
    if not wrapped:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(f"no nn.Linear named {list(targets)} found; the model's linear layers are {linears}")
    for prefix in train:
        sub = dict(model.named_modules()).get(prefix)
        if sub is None:
            raise KeyError(f"train={prefix!r} is not a module of the model")
        sub.requires_grad_(True)
    return wrapped


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    for m in lora_layers(model):
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for m in lora_layers(model):
        m.unmerge()
    return model


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_state_dict(model: nn.Module) -> dict:
    """Only what fine-tuning changed (the trainable tensors): what a LoRA "adapter file" stores per task."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def training_memory_bytes(model: nn.Module, optimizer: str = "adam") -> dict:
    """Bytes of weights, gradients and optimizer state (Adam keeps two numbers per trainable parameter)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    train = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    states = {"adam": 2, "sgd": 0, "momentum": 1}
    if optimizer not in states:
        raise ValueError(f"optimizer must be one of {list(states)}, got {optimizer!r}")
    return {"weights": total, "gradients": train, "optimizer": states[optimizer] * train}
