"""Small explorers for the mathematics chapters: losses, activations, softmax temperature.

Each has ``settings`` (one dict), ``draw(**override)``, ``show()`` (ipywidgets controls + a LiveFigure that
keeps its last frame in the static site) and ``player(key, values)`` (a precomputed JavaScript player).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import activations as A
from .viz import LiveFigure, player


class _Explorer:
    controls: dict = {}

    def __init__(self, **settings):
        unknown = set(settings) - set(self.defaults)
        if unknown:
            raise TypeError(f"unknown settings {sorted(unknown)}; valid: {sorted(self.defaults)}")
        self.settings = {**self.defaults, **settings}
        self.fig = None
        self.live = None

    def show(self):
        import ipywidgets as w
        from IPython.display import display

        ctls = {k: make() for k, make in self._controls().items()}
        for k, c in ctls.items():
            c.value = self.settings[k]

            def changed(change, k=k):
                self.settings[k] = change["new"]
                self.draw()
                self.live.update()
            c.observe(changed, names="value")
        display(w.HBox(list(ctls.values())))
        self.draw()
        self.live = LiveFigure(self.fig)
        return self

    def player(self, key: str, values, interval: int = 700):
        if key not in self.settings:
            raise KeyError(f"{key!r} is not a setting; settings are {list(self.settings)}")
        values = list(values)
        self.draw()
        return player(lambda i: self.draw(**{key: values[i]}), len(values), self.fig, interval)


class LossExplorer(_Explorer):
    """Binary classification, one example: label ``y`` and predicted probability ``p`` = sigmoid(z).

    Left: BCE and squared error as functions of p, with the current p marked. Right: the gradient of each
    loss with respect to the logit z — BCE's is p - y (never vanishes while wrong), squared error's is
    2 (p - y) p (1 - p), which vanishes when the model is confidently wrong.
    """

    defaults = dict(y=1, p=0.3)

    def _controls(self):
        import ipywidgets as w
        return {"y": lambda: w.ToggleButtons(options=[0, 1], description="label y"),
                "p": lambda: w.FloatSlider(min=0.001, max=0.999, step=0.001, description="predicted p",
                                           readout_format=".3f")}

    def values(self, **override) -> dict:
        s = {**self.settings, **override}
        y, p = float(s["y"]), float(s["p"])
        if y not in (0.0, 1.0) or not 0 < p < 1:
            raise ValueError(f"need y in {{0, 1}} and 0 < p < 1, got y={y}, p={p}")
        return {"bce": -(y * np.log(p) + (1 - y) * np.log(1 - p)), "mse": (p - y) ** 2,
                "d_bce_dz": p - y, "d_mse_dz": 2 * (p - y) * p * (1 - p)}

    def draw(self, **override):
        s = {**self.settings, **override}
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=80)
        ax1, ax2 = self.axes
        ax1.clear(), ax2.clear()
        ps = np.linspace(0.001, 0.999, 400)
        v = {k: np.array([self.values(p=q, y=s["y"])[k] for q in ps]) for k in ("bce", "mse", "d_bce_dz", "d_mse_dz")}
        now = self.values(**override)
        ax1.plot(ps, v["bce"], label="binary cross-entropy")
        ax1.plot(ps, v["mse"], label="squared error")
        ax1.plot([s["p"]] * 2, [now["bce"], now["mse"]], "ko")
        ax1.set(xlabel="predicted probability p", ylabel="loss", ylim=(0, 5),
                title=f"y = {s['y']}: BCE {now['bce']:.3f}, squared error {now['mse']:.3f}")
        ax2.plot(ps, v["d_bce_dz"], label="∂BCE/∂z = p − y")
        ax2.plot(ps, v["d_mse_dz"], label="∂(p−y)²/∂z")
        ax2.plot([s["p"]] * 2, [now["d_bce_dz"], now["d_mse_dz"]], "ko")
        ax2.axhline(0, color="gray", lw=0.5)
        ax2.set(xlabel="predicted probability p", ylabel="gradient w.r.t. the logit z",
                title="what the last layer is told to change")
        for ax in self.axes:
            ax.legend(fontsize=8)
        self.fig.tight_layout()
        return now


class ActivationExplorer(_Explorer):
    """An activation and its derivative, and what it does to inputs x ~ N(0, scale²)."""

    defaults = dict(name="tanh", scale=1.0)

    def _controls(self):
        import ipywidgets as w
        return {"name": lambda: w.Dropdown(options=list(A.ACTIVATIONS), description="activation"),
                "scale": lambda: w.FloatLogSlider(base=10, min=-1, max=1.3, step=0.05, description="input scale")}

    def stats(self, **override) -> dict:
        s = {**self.settings, **override}
        f, df = A.get(s["name"])
        x = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * s["scale"]
        return {"mean_grad": float(df(x).mean()), "small_grad": float((df(x) < 0.01).float().mean())}

    def draw(self, **override):
        s = {**self.settings, **override}
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 3, figsize=(13, 3.3), dpi=80)
        for ax in self.axes:
            ax.clear()
        f, df = A.get(s["name"])
        x = torch.linspace(-5, 5, 400)
        self.axes[0].plot(x, f(x), label="f(x)")
        self.axes[0].plot(x, df(x), label="f'(x)")
        self.axes[0].set(title=s["name"], xlabel="x")
        self.axes[0].legend(fontsize=8)
        xs = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * s["scale"]
        self.axes[1].hist(f(xs).numpy(), bins=60, color="tab:blue")
        self.axes[1].set(title=f"f(x) for x ~ N(0, {s['scale']:.2g}²)", xlabel="output")
        st = self.stats(**override)
        self.axes[2].hist(df(xs).numpy(), bins=60, color="tab:orange")
        self.axes[2].set(title=f"f'(x): mean {st['mean_grad']:.3f}, {st['small_grad']:.0%} below 0.01",
                         xlabel="derivative")
        self.fig.tight_layout()
        return st


class SoftmaxExplorer(_Explorer):
    """softmax(z / T) of fixed logits for a temperature T: T → 0 approaches argmax, T → ∞ uniform."""

    defaults = dict(temperature=1.0, logits=(2.0, 1.0, 0.5, 0.0, -1.0))

    def _controls(self):
        import ipywidgets as w
        return {"temperature": lambda: w.FloatLogSlider(base=10, min=-1.3, max=1.3, step=0.05,
                                                        description="temperature")}

    def probs(self, **override) -> np.ndarray:
        s = {**self.settings, **override}
        if s["temperature"] <= 0:
            raise ValueError(f"temperature must be positive, got {s['temperature']}")
        z = torch.tensor(s["logits"], dtype=torch.float64) / s["temperature"]
        return torch.softmax(z, 0).numpy()

    def draw(self, **override):
        s = {**self.settings, **override}
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(6, 3), dpi=80)
        self.ax.clear()
        p = self.probs(**override)
        entropy = float(-(p * np.log(p + 1e-300)).sum())
        self.ax.bar([f"z={z:g}" for z in s["logits"]], p, color="tab:purple")
        self.ax.set(ylim=(0, 1), ylabel="probability",
                    title=f"softmax(z / T), T = {s['temperature']:.2g}: entropy {entropy:.2f} nats")
        self.fig.tight_layout()
        return p


class GenerationExplorer(_Explorer):
    """Sample from a character-level language model (``book.gpt.GPT``) with a prompt, temperature,
    top-k, top-p or greedy decoding; the generated text is drawn as a figure (so the page keeps it)."""

    defaults = dict(prompt="ROMEO:\n", temperature=0.8, top_k=0, top_p=1.0, greedy=False, n=150, seed=0)

    def __init__(self, model, vocab, **settings):
        super().__init__(**settings)
        self.model, self.vocab = model, vocab

    def _controls(self):
        import ipywidgets as w
        return {"prompt": lambda: w.Text(description="prompt"),
                "temperature": lambda: w.FloatLogSlider(base=10, min=-1, max=0.5, step=0.05, description="temperature"),
                "top_k": lambda: w.IntSlider(min=0, max=30, description="top-k (0 = off)"),
                "top_p": lambda: w.FloatSlider(min=0.05, max=1.0, step=0.05, description="top-p"),
                "greedy": lambda: w.Checkbox(description="greedy"),
                "n": lambda: w.IntSlider(min=20, max=400, step=10, description="characters"),
                "seed": lambda: w.IntSlider(min=0, max=20, description="seed")}

    def sample(self, **override) -> str:
        s = {**self.settings, **override}
        device = next(self.model.parameters()).device
        idx = self.vocab.encode(s["prompt"] or "\n").view(1, -1).to(device)
        out = self.model.generate(idx, s["n"], temperature=s["temperature"], top_k=s["top_k"] or None,
                                  top_p=s["top_p"] if s["top_p"] < 1 else None, greedy=s["greedy"],
                                  generator=torch.Generator().manual_seed(s["seed"]))
        return self.vocab.decode(out[0, idx.shape[1]:].tolist())

    def draw(self, **override):
        s = {**self.settings, **override}
        text = self.sample(**override)
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(10, 3.2), dpi=80)
        self.ax.clear()
        self.ax.axis("off")
        how = "greedy" if s["greedy"] else (f"T={s['temperature']:.2g}"
                                            + (f", top-k {s['top_k']}" if s["top_k"] else "")
                                            + (f", top-p {s['top_p']:.2g}" if s["top_p"] < 1 else ""))
        self.ax.set_title(how)
        self.ax.text(0, 1, (s["prompt"] + text)[:600], family="monospace", fontsize=8, va="top", wrap=True)
        return text


class AttentionExplorer(_Explorer):
    """Attention weights of one layer and head of a ``book.gpt.GPT`` for a text you type."""

    defaults = dict(text="ROMEO:\nBut soft, what light", layer=0, head=0)

    def __init__(self, model, vocab, **settings):
        super().__init__(**settings)
        self.model, self.vocab = model, vocab
        cfg = model.cfg
        if not (0 <= self.settings["layer"] < cfg.n_layer and 0 <= self.settings["head"] < cfg.n_head):
            raise ValueError(f"layer must be < {cfg.n_layer} and head < {cfg.n_head}")

    def _controls(self):
        import ipywidgets as w
        cfg = self.model.cfg
        return {"text": lambda: w.Text(description="text"),
                "layer": lambda: w.Dropdown(options=list(range(cfg.n_layer)), description="layer"),
                "head": lambda: w.Dropdown(options=list(range(cfg.n_head)), description="head")}

    def weights(self, **override) -> torch.Tensor:
        s = {**self.settings, **override}
        text = s["text"][-self.model.cfg.block_size:] or "\n"
        idx = self.vocab.encode(text).view(1, -1).to(next(self.model.parameters()).device)
        return self.model.attention_maps(idx)[s["layer"]][0, s["head"]].cpu()   # (T, T)

    def draw(self, **override):
        s = {**self.settings, **override}
        w = self.weights(**override)
        text = s["text"][-self.model.cfg.block_size:] or "\n"
        labels = [repr(c)[1:-1] for c in text]
        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(5.5, 5), dpi=80)
        self.ax.clear()
        self.ax.imshow(w.numpy(), cmap="Blues", vmin=0, vmax=1)
        self.ax.set_xticks(range(len(labels)), labels, fontsize=7)
        self.ax.set_yticks(range(len(labels)), labels, fontsize=7)
        self.ax.set_title(f"layer {s['layer'] + 1}, head {s['head'] + 1}: row = query, column = key", fontsize=9)
        return w
