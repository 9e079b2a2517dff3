"""Plumbing of the chapter "Explaining predictions" (``chapters/explanations.ipynb``).

* :func:`additive_task` -- a generated tabular task whose true function is additive, so its Shapley values
  have a closed form (:func:`true_shapley`); :func:`fit_mlp` and :func:`linear_fit` to learn it;
* :func:`train_cnn` -- LeNet on MNIST (optionally with shuffled labels) through :func:`book.train.fit`;
* :func:`randomise_top` -- cascading randomisation (Adebayo et al. 2018), top layer first;
* :func:`attribution_maps` -- one call for every method of the chapter on a batch of digits;
* :func:`sanity_table`, :func:`deletion_scores` -- the two evaluations;
* :class:`IGMonitor` -- a ``fit`` callback drawing losses, validation accuracy and the IG map of a fixed digit
  (an :class:`~book.ui.Explorer` over its recorded frames and a :class:`~book.ui.Replay`);
* :class:`ExplanationExplorer` -- method x digit x randomisation level -> attribution maps.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.nn.explain import (
    deletion_curve,
    integrated_gradients,
    kernel_shap,
    lime,
    masked_value,
    occlusion,
    patch_masks_to_pixels,
    saliency,
    spearman,
)
from book.nn.models import LeNet
from book.train import Callback, fit
from book.ui import Explorer, Replay

METHODS = ("gradient", "gradient x input", "integrated gradients", "occlusion", "LIME (patches)",
           "KernelSHAP (patches)", "edge detector")


# ============================================================================ the tabular task
def true_terms(x: torch.Tensor) -> torch.Tensor:
    """The additive terms g_i(x_i) of the true function, (..., 8): two of the eight features do nothing."""
    return torch.stack([2 * x[..., 0], 1.5 * torch.sin(2 * x[..., 1]), x[..., 2] ** 2 - 1, -x[..., 3],
                        torch.relu(x[..., 4]) * 2, 0.5 * x[..., 5], 0 * x[..., 6], 0 * x[..., 7]], -1)


def true_function(x: torch.Tensor) -> torch.Tensor:
    return true_terms(x).sum(-1)


def additive_task(n: int, noise: float = 0.3, seed: int = 0):
    """``(x, y)``: ``n`` points with 8 standard normal features and ``y = f(x) + noise``, f additive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, true_function(x) + noise * torch.randn(n, generator=g)


def true_shapley(x: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Closed form for an additive f with a background sample: ``phi_i = g_i(x_i) - mean_b g_i(b_i)``."""
    return true_terms(x) - true_terms(background).mean(0)


def fit_mlp(x, y, hidden: int = 64, steps: int = 1500, lr: float = 3e-3, seed: int = 0) -> nn.Module:
    """A two-hidden-layer MLP regressor trained full-batch with Adam on (x, y); returns it in eval mode."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                        nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(net(x)[:, 0], y).backward()
        opt.step()
    return _Squeeze(net).eval()


class _Squeeze(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


def linear_fit(x, y):
    """Least squares ``(w, b)``: the strongest trivial model (and explanation ``w_i (x_i - mean x_i)``)."""
    a = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    sol = torch.linalg.lstsq(a, y.double().unsqueeze(1)).solution[:, 0]
    return sol[:-1].float(), float(sol[-1])


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - ((pred - y) ** 2).mean() / ((y - y.mean()) ** 2).mean())


# ============================================================================ MNIST models
def train_cnn(data, epochs: int, lr: float, seed: int = 0, shuffle_labels: bool = False,
              log_every: int = 50, callbacks=(), val=None) -> tuple[nn.Module, object]:
    """LeNet trained with Adam for ``epochs`` on ``data.x_train`` (labels permuted when ``shuffle_labels``);
    returns ``(model in eval mode, history)``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    y = data.y_train
    if shuffle_labels:
        y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1000)).to(y.device)]
    model = LeNet().to(data.x_train.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = fit(model, (data.x_train, y), opt, epochs=epochs, batch_size=64, log_every=log_every,
               generator=g, callbacks=list(callbacks), val=val, progress=False)
    return model.eval(), hist


def layers_top_down(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers with weights, output layer first: the order of cascading randomisation."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))][::-1]


def randomise_top(model: nn.Module, k: int, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose top ``k`` layers (output first) are re-initialised (PyTorch's default init)."""
    layers = layers_top_down(model)
    if not 0 <= k <= len(layers):
        raise ValueError(f"k must be between 0 and {len(layers)}, got {k}")
    m = copy.deepcopy(model)
    torch.manual_seed(seed)
    for name, _ in layers[:k]:
        m.get_submodule(name).reset_parameters()
    return m.eval()


# ============================================================================ attributions
PATCH = 7   # 16 patches of 7 x 7 pixels for LIME and KernelSHAP on digits
_GROUPS = torch.arange(16).view(4, 4).repeat_interleave(PATCH, 0).repeat_interleave(PATCH, 1).view(1, 28, 28)


def edge_map(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of images (n, 1, H, W) -> (n, H, W): an 'explanation' that ignores the model."""
    kx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], device=x.device).view(1, 1, 3, 3)
    gx, gy = F.conv2d(x, kx, padding=1), F.conv2d(x, kx.transpose(2, 3), padding=1)
    return (gx ** 2 + gy ** 2).sqrt()[:, 0]


def attribution_maps(model, x: torch.Tensor, targets: torch.Tensor, method: str, ig_steps: int = 32,
                     patch_samples: int = 200, seed: int = 0) -> torch.Tensor:
    """(n, 28, 28) signed attribution maps of ``method`` (one of ``METHODS``) for the ``targets``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if method == "edge detector":
        return edge_map(x).detach()
    maps = []
    for xi, t in zip(x, targets.tolist()):
        if method == "gradient":
            m = saliency(model, xi[None], t)[0, 0]
        elif method == "gradient x input":
            m = saliency(model, xi[None], t, times_input=True)[0, 0]
        elif method == "integrated gradients":
            m = integrated_gradients(model, xi, t, steps=ig_steps)[0]
        elif method == "occlusion":
            m = occlusion(model, xi, t, patch=4, stride=4)
        else:
            value = masked_value(lambda z: model(z).log_softmax(-1), xi, torch.zeros_like(xi), target=t,
                                 groups=_GROUPS)
            g = torch.Generator().manual_seed(seed)
            phi = (lime(value, 16, patch_samples, generator=g) if method.startswith("LIME")
                   else kernel_shap(value, 16, patch_samples, generator=g))
            m = patch_masks_to_pixels(phi, _GROUPS)[0].float()
        maps.append(m.detach())
    return torch.stack(maps)


def sanity_table(models: dict, x, y, methods, on_strokes: bool = False, **kw) -> dict:
    """``{method: {model name: mean Spearman correlation of |map| with the first model's |map|}}`` over the
    digits ``x``. ``on_strokes``: rank only the pixels where the digit is not black (x > 0), so that the
    zeros of the background -- the same for every model -- do not count as agreement."""
    names = list(models)
    keep = (x[:, 0] > 0).flatten(1)
    out = {}
    for method in methods:
        ref = attribution_maps(models[names[0]], x, y, method, **kw).abs().flatten(1)
        out[method] = {}
        for n in names:
            other = attribution_maps(models[n], x, y, method, **kw).abs().flatten(1)
            if on_strokes:
                rho = torch.stack([spearman(a[k], b[k]) for a, b, k in zip(ref, other, keep)])
            else:
                rho = spearman(ref, other)
            out[method][n] = float(rho.mean())
    return out


def deletion_scores(model, x, y, maps: dict, steps: int = 10, fraction: float = 0.2, insertion: bool = False):
    """``{name: mean area under the deletion (or insertion) curve}`` over the digits, for maps (n, 28, 28);
    the area is the mean of the curve over its ``steps + 1`` points (deleting up to ``fraction`` of pixels)."""
    return {name: float(torch.stack([deletion_curve(model, xi, int(t), m, steps, fraction=fraction,
                                                    insertion=insertion).mean()
                                     for xi, t, m in zip(x, y, a)]).mean())
            for name, a in maps.items()}


# ============================================================================ views
def _show_map(ax, m, title):
    m = m.detach().cpu().float().numpy()
    lim = float(abs(m).max()) or 1.0
    ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


class IGMonitor(Callback, Explorer, Replay):
    """A :func:`book.train.fit` callback: at each log point it records the training loss, the validation
    accuracy (give ``fit`` its ``val=``) and the integrated-gradients map of one fixed digit, and redraws.
    As an Explorer its one setting is ``frame`` (the recorded point to draw, -1 the newest); ``replay()``
    steps through the run."""

    defaults = {"frame": -1}
    layout = {"ncols": 3, "figsize": (9, 2.8)}
    replay_hint = "pass the monitor to fit(callbacks=[...]) first"

    def __init__(self, x: torch.Tensor, target: int, ig_steps: int = 16, redraw_every: int = 2):
        self.x, self.target = x, int(target)
        self.ig_steps, self.redraw_every = ig_steps, max(1, redraw_every)
        self.records: list[tuple[int, float, float, torch.Tensor]] = []
        super().__init__()

    def on_log(self, state):
        model = state.model
        was = model.training
        model.eval()
        acc = state.history.val_acc[-1] if state.history.val_acc else float("nan")
        ig = integrated_gradients(model, self.x, self.target, steps=self.ig_steps)[0].detach().cpu()
        model.train(was)
        self.records.append((state.step, state.history.train_loss[-1], acc, ig))
        # redraw at the first record, every redraw_every-th after it and at the end of the run
        if state.step == state.total_steps or (len(self.records) - 1) % self.redraw_every == 0:
            self._draw_frame(len(self.records) - 1)
            self.show_live()                   # Replay: displayed once, then redrawn in place

    def draw(self, **override):
        s = self.resolve(**override)
        if not self.records:
            raise RuntimeError(f"nothing recorded yet: {self.replay_hint}")
        k = s["frame"] % len(self.records)
        self.figure()
        ax0, ax1, ax2 = self.axes
        for ax in self.axes:
            ax.clear()
        steps = [r[0] for r in self.records[:k + 1]]
        ax0.plot(steps, [r[1] for r in self.records[:k + 1]], "o-", ms=3)
        ax0.set(xlim=(0, self.records[-1][0] * 1.05 + 1), xlabel="step", ylabel="training loss", yscale="log")
        ax1.plot(steps, [r[2] for r in self.records[:k + 1]], "s-", ms=3, color="C1")
        ax1.set(xlim=ax0.get_xlim(), ylim=(0, 1), xlabel="step", ylabel="validation accuracy")
        step, _, acc, ig = self.records[k]
        _show_map(ax2, ig, f"IG of the digit (class {self.target}), step {step}")
        self.fig.tight_layout()
        return {"step": step, "acc": acc}

    def _frames(self) -> int:
        return len(self.records)

    def _draw_frame(self, k: int):
        self.draw(frame=k)


class ExplanationExplorer(Explorer):
    """One digit: the image, the attribution map of ``method`` for the trained model and for the model with
    its top ``level`` layers randomised (cascading, output first), with their rank correlation.
    ``randomised[k]`` is the model with its top k layers re-initialised, so ``randomised[0]`` must be the
    trained model itself; ``ig_steps`` and ``patch_samples`` as in :func:`attribution_maps`."""

    defaults = {"method": "integrated gradients", "digit": 0, "level": 0}
    layout = {"ncols": 3, "figsize": (8, 2.9)}

    def __init__(self, model, x, y, randomised: list, ig_steps: int = 32, patch_samples: int = 200,
                 **settings):
        self.model, self.x, self.y, self.randomised = model, x, y, randomised
        self.ig_steps, self.patch_samples = ig_steps, patch_samples
        self._cache: dict = {}
        super().__init__(**settings)

    def _validate(self, s, changed):
        if s["method"] not in METHODS:
            raise ValueError(f"unknown method {s['method']!r}; choose one of {METHODS}")
        if not 0 <= s["digit"] < len(self.x):
            raise ValueError(f"digit must be in 0..{len(self.x) - 1}")
        if not 0 <= s["level"] < len(self.randomised):
            raise ValueError(f"level must be in 0..{len(self.randomised) - 1}")

    def _controls(self):
        import ipywidgets as w
        return {"method": w.Dropdown(options=list(METHODS), description="method"),
                "digit": w.IntSlider(min=0, max=len(self.x) - 1, description="digit"),
                "level": w.IntSlider(min=0, max=len(self.randomised) - 1, description="randomised")}

    def maps(self, method, digit, level):
        key = (method, digit, level)
        if key not in self._cache:
            xi, t = self.x[digit:digit + 1], self.y[digit:digit + 1]
            self._cache[key] = attribution_maps(self.randomised[level], xi, t, method, ig_steps=self.ig_steps,
                                                patch_samples=self.patch_samples)[0].cpu()
        return self._cache[key]

    def draw(self, **override):
        s = self.resolve(**override)
        orig = self.maps(s["method"], s["digit"], 0)
        now = self.maps(s["method"], s["digit"], s["level"])
        rho = float(spearman(orig.abs().flatten(), now.abs().flatten()))
        self.figure()
        for ax in self.axes:
            ax.clear()
        a0, a1, a2 = self.axes
        a0.imshow(self.x[s["digit"], 0].cpu().numpy(), cmap="gray_r")
        a0.set_title(f"digit {s['digit']} (label {int(self.y[s['digit']])})", fontsize=8)
        a0.set_xticks([])
        a0.set_yticks([])
        _show_map(a1, orig, f"{s['method']}: trained")
        _show_map(a2, now, f"top {s['level']} layers random: ρ = {rho:.2f}")
        self.fig.tight_layout()
        return {"rho": rho, "map": now}


def kernel_shap_errors(value, exact: torch.Tensor, sample_counts, seeds) -> np.ndarray:
    """(len(sample_counts), len(seeds)): max ``|KernelSHAP - exact|`` with that many sampled coalitions."""
    return np.array([[float((kernel_shap(value, len(exact), n, generator=torch.Generator().manual_seed(s))
                             - exact).abs().max()) for s in seeds] for n in sample_counts])


def ig_completeness_errors(model, x, target: int, step_counts) -> dict:
    """``{steps: |sum IG - (f(x) - f(0))|}`` for one image ``x`` (1, 28, 28) and the target logit."""
    gap = log_odds_gap(model, x, target)
    return {s: abs(float(integrated_gradients(model, x, target, steps=s).sum()) - gap) for s in step_counts}


def log_odds_gap(model, x, t) -> float:
    """``f(x) - f(0)`` for the target logit of one image ``x`` (1, 28, 28): the amount IG distributes."""
    with torch.no_grad():
        return float(model(x[None])[0, t] - model(torch.zeros_like(x)[None])[0, t])


__all__ = ["METHODS", "true_terms", "true_function", "additive_task", "true_shapley", "fit_mlp", "linear_fit",
           "r2", "train_cnn", "layers_top_down", "randomise_top", "edge_map", "attribution_maps",
           "sanity_table", "deletion_scores", "IGMonitor", "ExplanationExplorer", "kernel_shap_errors",
           "ig_completeness_errors", "log_odds_gap"]
