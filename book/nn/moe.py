"""A mixture-of-experts layer with a top-k router and the load-balancing loss (chapter ``using_models``).

Shazeer et al. 2017 (arXiv:1701.06538) route each token to the ``k`` experts with the largest router
logits and mix their outputs with a softmax over those ``k`` logits; Fedus et al. 2022 (Switch
Transformer, arXiv:2101.03961) add the auxiliary loss ``E * sum_i f_i * P_i`` that pushes the router
towards equal use of the experts.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def top_k_gates(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights, idx)``, both ``(N, k)``: the ``k`` largest logits of each row and a softmax over them.

    With ``k`` equal to the number of experts this is the plain softmax of every logit."""
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k={k} must be between 1 and the number of experts ({logits.shape[-1]})")
    top, idx = logits.topk(k, dim=-1)
    return top.softmax(-1), idx


def load_balancing_loss(probs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss ``E * sum_i f_i * P_i`` for router ``probs`` ``(N, E)``.

    ``f_i``: the fraction of the ``N * k`` routing choices ``idx`` ``(N, k)`` that went to expert ``i``
    (counted, no gradient); ``P_i``: the mean router probability of expert ``i`` (differentiable).
    It equals 1 when both are uniform, and ``E`` when every token goes to one expert with certainty."""
    E = probs.shape[-1]
    f = torch.bincount(idx.reshape(-1), minlength=E).to(probs.dtype) / idx.numel()
    return E * (f * probs.mean(0)).sum()


class MoE(nn.Module):
    """``n_experts`` two-layer MLPs (``dim -> hidden -> dim``) and a linear router; each token uses ``k``.

    ``forward(x)`` takes ``(..., dim)`` and returns the same shape. After each call ``self.aux_loss`` holds
    the load-balancing loss of that batch and ``self.usage`` the fraction of routing choices per expert."""

    def __init__(self, dim: int, hidden: int, n_experts: int, k: int = 1):
        super().__init__()
        if not 1 <= k <= n_experts:
            raise ValueError(f"k={k} must be between 1 and n_experts={n_experts}")
        self.k, self.n_experts = k, n_experts
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            for _ in range(n_experts))
        self.aux_loss = torch.tensor(0.0)
        self.usage = torch.zeros(n_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])                                     # (N, dim)
        logits = self.router(x)                                          # (N, E)
        weights, idx = top_k_gates(logits, self.k)                       # (N, k) each
        self.aux_loss = load_balancing_loss(logits.softmax(-1), idx)
        self.usage = torch.bincount(idx.reshape(-1), minlength=self.n_experts).float() / idx.numel()
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = (idx == e).nonzero(as_tuple=True)              # who chose expert e, in which slot
            if token.numel():                                            # only those tokens run through it
                out.index_add_(0, token, weights[token, slot, None] * expert(x[token]))
        return out.reshape(shape)
