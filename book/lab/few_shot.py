"""The few_shot chapter: prototypical networks on MNIST digits the network never saw.

Base classes (0-4) train the embedding; novel classes (5-9) are only ever seen as N-way K-shot
episodes: validation episodes from the validation split, test episodes from the test split.
The prototype classifier (``prototypes``, ``proto_logits``, ``proto_loss``) is written from scratch
and checked against ``torch.cdist`` and ``F.cross_entropy`` in the chapter and in the tests.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.train import Callback, State, fit
from book.ui import Explorer, Replay

BASE, NOVEL = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


# ----------------------------------------------------------------------------- the classifier
def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, n_way: int) -> torch.Tensor:
    """The mean embedding of each class's support examples: ``(n_way, D)``; labels are ``0..n_way-1``."""
    if z_support.ndim != 2 or len(z_support) != len(y_support):
        raise ValueError(f"z_support must be (N, D) with one label per row, got {tuple(z_support.shape)} "
                         f"and {len(y_support)} labels")
    counts = torch.bincount(y_support, minlength=n_way)
    if len(counts) > n_way or (counts == 0).any():
        raise ValueError(f"every class 0..{n_way - 1} needs at least one support example, got counts "
                         f"{counts.tolist()}")
    sums = torch.zeros(n_way, z_support.shape[1], dtype=z_support.dtype, device=z_support.device)
    sums.index_add_(0, y_support, z_support)
    return sums / counts[:, None].to(z_support.dtype)


def proto_logits(z_query: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Logits ``-||q - c_k||^2`` of every query (rows) for every prototype (columns)."""
    diff = z_query[:, None, :] - protos[None, :, :]
    return -(diff ** 2).sum(-1)


def proto_loss(z: torch.Tensor, y: torch.Tensor, n_way: int, k_shot: int) -> torch.Tensor:
    """The episodic loss of Snell et al. 2017: the first ``n_way * k_shot`` rows of ``z`` are the support
    set (labels in ``y``), the rest the queries; cross-entropy of the queries' prototype logits."""
    n_s = n_way * k_shot
    protos = prototypes(z[:n_s], y[:n_s], n_way)
    return F.cross_entropy(proto_logits(z[n_s:], protos), y[n_s:])


def linear_form(protos: torch.Tensor):
    """``(W, b)`` of the linear classifier equal to the prototype classifier: ``W_k = 2 c_k``,
    ``b_k = -||c_k||^2`` (the dropped ``-||q||^2`` is the same for every class)."""
    return 2 * protos, -(protos ** 2).sum(1)


# ----------------------------------------------------------------------------- the network
class Embedder(nn.Sequential):
    """A small CNN: 28x28 image -> ``dim`` features (two conv blocks, then a linear map)."""

    def __init__(self, dim: int = 64, width: int = 16):
        super().__init__(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * width * 49, dim))
        self.dim = dim


def restrict(x: torch.Tensor, y: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """The examples of ``classes`` only (labels unchanged)."""
    keep = torch.isin(y, torch.as_tensor(classes, device=y.device))
    return x[keep], y[keep]


def with_rotations(x: torch.Tensor, y: torch.Tensor, flips: bool = True):
    """More training classes from few: every rotation by a multiple of 90 degrees (and, with ``flips``,
    its mirror image) of a class becomes a class of its own, labelled ``y + 10 * r`` (r = 0..7).
    The trick Snell et al. 2017 used on Omniglot; digit 6 rotated by 180 degrees looks like a 9, which
    is why it is applied to the base classes only."""
    views = [torch.rot90(x, r, (2, 3)) for r in range(4)]
    if flips:
        views += [torch.flip(v, (3,)) for v in views]
    return torch.cat(views), torch.cat([y + 10 * r for r in range(len(views))])


class Episodes:
    """N-way K-shot episodes drawn from ``(x, y)`` restricted to ``classes``, reproducible by ``seed``.

    ``episode(i)`` gives the indices of support (class by class, ``k_shot`` each) and queries
    (``n_query`` per class) into ``x`` and the episode labels ``0..n_way-1`` of both."""

    def __init__(self, y: torch.Tensor, classes, n_way: int, k_shot: int, n_query: int, seed: int = 0):
        classes = [int(c) for c in classes]
        if n_way > len(classes):
            raise ValueError(f"n_way={n_way} but only {len(classes)} classes: {classes}")
        self.by_class = {c: torch.nonzero(y.cpu() == c).flatten() for c in classes}
        short = {c: len(i) for c, i in self.by_class.items() if len(i) < k_shot + n_query}
        if short:
            raise ValueError(f"classes with fewer than k_shot + n_query = {k_shot + n_query} examples: {short}")
        self.classes, self.n_way, self.k_shot, self.n_query, self.seed = classes, n_way, k_shot, n_query, seed

    def episode(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        chosen = torch.randperm(len(self.classes), generator=g)[:self.n_way].tolist()
        sup, qry = [], []
        for c in chosen:
            idx = self.by_class[self.classes[c]]
            pick = idx[torch.randperm(len(idx), generator=g)[:self.k_shot + self.n_query]]
            sup.append(pick[:self.k_shot])
            qry.append(pick[self.k_shot:])
        ys = torch.arange(self.n_way).repeat_interleave(self.k_shot)
        yq = torch.arange(self.n_way).repeat_interleave(self.n_query)
        return torch.cat(sup), ys, torch.cat(qry), yq, [self.classes[c] for c in chosen]


@torch.no_grad()
def embed(model: nn.Module | None, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Features of images ``x``: ``model``'s outputs in eval mode, or the raw pixels when ``model`` is None."""
    if model is None:
        return x.flatten(1)
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train(was)
    return out


def episode_accuracy(z: torch.Tensor, episodes: Episodes, n_episodes: int, rule: str = "mean") -> np.ndarray:
    """Query accuracy of each of ``n_episodes`` episodes on precomputed features ``z``; ``rule``:
    ``"mean"`` (nearest prototype) or ``"nn"`` (nearest single support example)."""
    if rule not in ("mean", "nn"):
        raise ValueError(f"rule must be 'mean' or 'nn', got {rule!r}")
    accs = []
    for i in range(n_episodes):
        s, ys, q, yq, _ = episodes.episode(i)
        zs, zq = z[s.to(z.device)], z[q.to(z.device)]
        if rule == "mean":
            pred = proto_logits(zq, prototypes(zs, ys.to(z.device), episodes.n_way)).argmax(1)
        else:
            pred = ys.to(z.device)[proto_logits(zq, zs).argmax(1)]
        accs.append((pred.cpu() == yq).float().mean().item())
    return np.array(accs)


# ----------------------------------------------------------------------------- training
def train_protonet(x, y, *, n_way: int, k_shot: int, n_query: int, steps: int, lr: float, seed: int,
                   dim: int = 64, width: int = 16, log_every: int = 50, callbacks=()):
    """Episodic training of an :class:`Embedder` on ``(x, y)`` (the base classes) with ``fit``."""
    torch.manual_seed(seed)
    model = Embedder(dim, width).to(x.device)
    eps = Episodes(y, sorted(set(y.tolist())), n_way, k_shot, n_query, seed=10_000 + seed)

    def get_batch(step):
        s, ys, q, yq, _ = eps.episode(step)
        return x[torch.cat([s, q]).to(x.device)], torch.cat([ys, yq]).to(x.device)

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = fit(model, get_batch, opt, steps=steps, log_every=log_every, callbacks=callbacks,
               loss_fn=lambda z, t: proto_loss(z, t, n_way, k_shot))
    return model, hist


def train_classifier(x, y, *, steps: int, batch: int, lr: float, seed: int, dim: int = 64, width: int = 16,
                     log_every: int = 50, callbacks=()):
    """A plain classifier on ``(x, y)``: an :class:`Embedder` plus a linear head over the classes; returns
    the embedder (its ``dim`` features are used like the prototypical network's) and the history."""
    torch.manual_seed(seed)
    classes = sorted(set(y.tolist()))
    lookup = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    lookup[classes] = torch.arange(len(classes))
    body = Embedder(dim, width)
    model = nn.Sequential(body, nn.ReLU(), nn.Linear(dim, len(classes))).to(x.device)
    g = torch.Generator().manual_seed(20_000 + seed)
    target = lookup.to(y.device)[y]

    def get_batch(step):
        i = torch.randint(0, len(y), (batch,), generator=g).to(x.device)
        return x[i], target[i]

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = fit(model, get_batch, opt, steps=steps, log_every=log_every, callbacks=callbacks)
    return body, hist


# ----------------------------------------------------------------------------- the live view
class EpisodeMonitor(Callback, Replay):
    """Live view of episodic training: the training loss and the mean query accuracy of fixed validation
    episodes (novel classes), with baselines as dashed lines. A ``fit`` callback; ``embedder`` picks the
    part of the model whose features are scored (default: the model itself)."""

    replay_hint = "train with this monitor in callbacks= first"

    def __init__(self, x_val, episodes: Episodes, n_episodes: int, baselines: dict[str, float],
                 embedder=None, title: str = "episodic training"):
        self.x_val, self.episodes, self.n_episodes = x_val, episodes, n_episodes
        self.baselines, self.embedder, self.title = dict(baselines), embedder, title
        self.steps, self.loss, self.acc = [], [], []
        self.fig = self.live = None

    def on_log(self, state: State):
        model = self.embedder if self.embedder is not None else state.model
        acc = episode_accuracy(embed(model, self.x_val), self.episodes, self.n_episodes).mean()
        self.steps.append(state.step)
        self.loss.append(state.history.train_loss[-1])
        self.acc.append(float(acc))
        self.draw(len(self.steps) - 1)
        self.show_live()

    def best(self) -> tuple[int, float]:
        """``(step, accuracy)`` of the best validation point recorded."""
        k = int(np.argmax(self.acc))
        return self.steps[k], self.acc[k]

    def draw(self, k: int):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
        a, b = self.axes
        a.clear()
        b.clear()
        a.plot(self.steps[:k + 1], self.loss[:k + 1], "o-", ms=3)
        a.set(xlabel="step", ylabel="episode loss (train)", title=self.title)
        b.plot(self.steps[:k + 1], self.acc[:k + 1], "o-", ms=3, color="C1", label="trained embedding")
        for j, (name, value) in enumerate(self.baselines.items()):
            b.axhline(value, ls="--", lw=1, color=f"C{j + 2}", label=name)
        b.set(xlabel="step", ylabel="val episode accuracy", ylim=(0, 1), title="novel digits 5-9")
        b.legend(fontsize=7, loc="lower right")
        self.fig.tight_layout()

    def _frames(self) -> int:
        return len(self.steps)

    def _draw_frame(self, k: int):
        self.draw(k)


# ----------------------------------------------------------------------------- the explorer
class EpisodeExplorer(Explorer):
    """One episode on novel digits: its support set, the prototypes (mean support image, shown), and the
    queries classified by the nearest prototype in the chosen feature space. Settings: ``k_shot``,
    ``episode`` (which draw), ``space`` (a name of ``spaces``: a model, None for pixels, or the
    features of ``x`` already computed)."""

    defaults = {"k_shot": 1, "episode": 0, "space": "trained"}
    layout = {"figsize": (9, 3.4)}

    def __init__(self, x, y, spaces: dict, n_way: int = 5, n_query: int = 6, **settings):
        self.x, self.y, self.spaces, self.n_way, self.n_query = x, y, dict(spaces), n_way, n_query
        self.z = {name: m if isinstance(m, torch.Tensor) else embed(m, x) for name, m in self.spaces.items()}
        super().__init__(**settings)

    def _validate(self, s, changed):
        if s["space"] not in self.spaces:
            raise ValueError(f"space must be one of {list(self.spaces)}, got {s['space']!r}")
        if not 1 <= s["k_shot"] <= 10:
            raise ValueError(f"k_shot must be between 1 and 10, got {s['k_shot']}")

    def _controls(self):
        import ipywidgets as w
        return {"k_shot": w.IntSlider(min=1, max=10, description="K (shots)"),
                "episode": w.IntSlider(min=0, max=20, description="episode"),
                "space": w.Dropdown(options=list(self.spaces), description="features")}

    def _new_figure(self):
        import matplotlib.pyplot as plt
        fig = plt.figure(**{"dpi": 80, **self.layout})
        return fig, None

    def draw(self, **override):
        s = self.resolve(**override)
        eps = Episodes(self.y, NOVEL, self.n_way, s["k_shot"], self.n_query, seed=7)
        sup, ys, q, yq, digits = eps.episode(s["episode"])
        z = self.z[s["space"]]
        pred = proto_logits(z[q], prototypes(z[sup], ys, self.n_way)).argmax(1)
        acc = (pred == yq).float().mean().item()
        fig = self.figure()
        fig.clear()
        cols = max(self.n_way + 3, 10)
        grid = fig.add_gridspec(2, cols, hspace=0.5)
        mean_img = prototypes(self.x[sup].flatten(1), ys, self.n_way).reshape(-1, 28, 28)
        for k in range(self.n_way):
            ax = fig.add_subplot(grid[0, k])
            ax.imshow(mean_img[k].cpu().numpy(), cmap="gray")
            ax.set_title(f"digit {digits[k]}", fontsize=8)
            ax.axis("off")
        ax = fig.add_subplot(grid[0, self.n_way:])
        ax.axis("off")
        ax.text(0, 0.5, f"{self.n_way}-way {s['k_shot']}-shot\nfeatures: {s['space']}\n"
                f"query accuracy {acc:.2f}", fontsize=9, va="center")
        order = torch.randperm(len(q), generator=torch.Generator().manual_seed(s["episode"]))
        for j, i in enumerate(order[:cols].tolist()):
            ax = fig.add_subplot(grid[1, j])
            ax.imshow(self.x[q[i]].squeeze(0).cpu().numpy(), cmap="gray")
            ok = bool(pred[i] == yq[i])
            ax.set_title(f"→ {digits[int(pred[i])]}", fontsize=8, color="green" if ok else "red")
            ax.axis("off")
        fig.suptitle("top: mean support image per class; bottom: queries → digit of the nearest prototype",
                     fontsize=9)
        return {"accuracy": acc, "digits": digits}
