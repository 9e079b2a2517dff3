"""The trends chapter: a small multi-task experiment ("One body, many tasks").

* :func:`make_related_tasks` generates ``T`` linear-regression tasks whose true weight vectors all lie in
  one ``rank``-dimensional subspace: ``w_t = B a_t``. Each task alone has fewer examples than features.
* :func:`ridge_per_task` fits each task alone (closed-form ridge regression), :func:`pooled_ridge` fits
  one weight vector to all tasks together: the two trivial ways to use the data.
* :func:`fit_shared` trains the multi-task model: one shared linear body ``B`` (``dim x width``) and one
  head ``a_t`` per task, all at once with Adam on the sum of the tasks' squared errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Tasks:
    """``x`` (T, n, d) inputs, ``y`` (T, n) targets of ``T`` tasks, and the true weights ``w`` (T, d)."""
    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor

    def split(self, *sizes: int) -> list[Tasks]:
        """Split every task's examples into consecutive parts of the given sizes."""
        if sum(sizes) != self.x.shape[1]:
            raise ValueError(f"sizes {sizes} do not add up to the {self.x.shape[1]} examples per task")
        out, start = [], 0
        for n in sizes:
            out.append(Tasks(self.x[:, start:start + n], self.y[:, start:start + n], self.w))
            start += n
        return out


def make_related_tasks(n_tasks: int = 10, dim: int = 30, rank: int = 2, n_per_task: int = 220,
                       noise: float = 0.5, seed: int = 0) -> Tasks:
    """``n_tasks`` regression tasks ``y = x . w_t + noise`` with ``w_t = B a_t``: ``B`` (dim x rank) has
    orthonormal columns, shared by all tasks; ``a_t ~ N(0, 4 I)`` is each task's own."""
    if rank > dim or min(n_tasks, dim, rank, n_per_task) < 1:
        raise ValueError("need 1 <= rank <= dim and at least one task and one example")
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g))
    w = (2 * torch.randn(n_tasks, rank, generator=g)) @ basis.T
    x = torch.randn(n_tasks, n_per_task, dim, generator=g)
    y = torch.einsum("tnd,td->tn", x, w) + noise * torch.randn(n_tasks, n_per_task, generator=g)
    return Tasks(x, y, w)


def ridge_per_task(tasks: Tasks, lam: float) -> torch.Tensor:
    """(T, d): each task's ridge solution ``(X^T X + lam I)^-1 X^T y``, fitted on that task alone."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    d = tasks.x.shape[-1]
    gram = tasks.x.transpose(1, 2) @ tasks.x + lam * torch.eye(d)
    return torch.linalg.solve(gram, (tasks.x.transpose(1, 2) @ tasks.y[..., None]))[..., 0]


def pooled_ridge(tasks: Tasks, lam: float) -> torch.Tensor:
    """(T, d): one ridge solution fitted to all tasks' examples together, repeated for every task."""
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    x, y = tasks.x.reshape(-1, tasks.x.shape[-1]), tasks.y.reshape(-1)
    w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ y)
    return w.expand(tasks.x.shape[0], -1).clone()


def fit_shared(tasks: Tasks, width: int, steps: int = 400, lr: float = 0.05, seed: int = 0) -> torch.Tensor:
    """Train a shared body ``B`` (d x width) and per-task heads ``A`` (T x width) together, with Adam on the
    mean squared error over all tasks; return the effective weights ``A B^T`` (T, d)."""
    if width < 1 or steps < 1:
        raise ValueError("width and steps must be at least 1")
    g = torch.Generator().manual_seed(seed)
    t, _, d = tasks.x.shape
    body = (torch.randn(d, width, generator=g) / d ** 0.5).requires_grad_()
    heads = (torch.randn(t, width, generator=g) / width ** 0.5).requires_grad_()
    opt = torch.optim.Adam([body, heads], lr=lr)
    for _ in range(steps):
        pred = torch.einsum("tnd,dk,tk->tn", tasks.x, body, heads)
        loss = (pred - tasks.y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (heads @ body.T).detach()


def task_mse(w: torch.Tensor, tasks: Tasks) -> float:
    """Mean squared error of weights ``w`` (T, d) on ``tasks``, averaged over tasks and examples."""
    return (torch.einsum("tnd,td->tn", tasks.x, w) - tasks.y).pow(2).mean().item()
