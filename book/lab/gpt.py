"""The gpt chapter's views: :class:`GenerationExplorer` (sampling settings) and :class:`AttentionExplorer`
(attention maps per layer and head), both on :class:`book.ui.explorer.Explorer`. The generative chapter
reuses :class:`GenerationExplorer`.
"""
from __future__ import annotations

import torch

from book.ui.explorer import Explorer


class GenerationExplorer(Explorer):
    """Sample from a character-level language model (``book.nn.gpt.GPT``) with a prompt, temperature,
    top-k, top-p or greedy decoding; the generated text is drawn as a figure (so the page keeps it)."""

    defaults = dict(prompt="ROMEO:\n", temperature=0.8, top_k=0, top_p=1.0, greedy=False, n=150, seed=0)
    layout = dict(figsize=(10, 3.2))

    def __init__(self, model, vocab, **settings):
        self.model, self.vocab = model, vocab
        super().__init__(**settings)

    def _controls(self):
        import ipywidgets as w
        return {"prompt": w.Text(description="prompt"),
                "temperature": w.FloatLogSlider(base=10, min=-1, max=0.5, step=0.05, description="temperature"),
                "top_k": w.IntSlider(min=0, max=30, description="top-k (0 = off)"),
                "top_p": w.FloatSlider(min=0.05, max=1.0, step=0.05, description="top-p"),
                "greedy": w.Checkbox(description="greedy"),
                "n": w.IntSlider(min=20, max=400, step=10, description="characters"),
                "seed": w.IntSlider(min=0, max=20, description="seed")}

    def sample(self, **override) -> str:
        s = self.resolve(**override)
        device = next(self.model.parameters()).device
        idx = self.vocab.encode(s["prompt"] or "\n").view(1, -1).to(device)
        out = self.model.generate(idx, s["n"], temperature=s["temperature"], top_k=s["top_k"] or None,
                                  top_p=s["top_p"] if s["top_p"] < 1 else None, greedy=s["greedy"],
                                  generator=torch.Generator().manual_seed(s["seed"]))
        return self.vocab.decode(out[0, idx.shape[1]:].tolist())

    def draw(self, **override):
        s = self.resolve(**override)
        text = self.sample(**override)
        self.figure()
        ax = self.axes
        ax.clear()
        ax.axis("off")
        how = "greedy" if s["greedy"] else (f"T={s['temperature']:.2g}"
                                            + (f", top-k {s['top_k']}" if s["top_k"] else "")
                                            + (f", top-p {s['top_p']:.2g}" if s["top_p"] < 1 else ""))
        ax.set_title(how)
        ax.text(0, 1, (s["prompt"] + text)[:600], family="monospace", fontsize=8, va="top", wrap=True)
        return text


class AttentionExplorer(Explorer):
    """Attention weights of one layer and head of a ``book.nn.gpt.GPT`` for a text you type."""

    defaults = dict(text="ROMEO:\nBut soft, what light", layer=0, head=0)
    layout = dict(figsize=(5.5, 5))

    def __init__(self, model, vocab, **settings):
        self.model, self.vocab = model, vocab
        super().__init__(**settings)

    def _validate(self, s, changed):
        cfg = self.model.cfg
        if not (0 <= s["layer"] < cfg.n_layer and 0 <= s["head"] < cfg.n_head):
            raise ValueError(f"layer must be < {cfg.n_layer} and head < {cfg.n_head}, got {s['layer']}, {s['head']}")

    def _controls(self):
        import ipywidgets as w
        cfg = self.model.cfg
        return {"text": w.Text(description="text"),
                "layer": w.Dropdown(options=list(range(cfg.n_layer)), description="layer"),
                "head": w.Dropdown(options=list(range(cfg.n_head)), description="head")}

    def weights(self, **override) -> torch.Tensor:
        s = self.resolve(**override)
        text = s["text"][-self.model.cfg.block_size:] or "\n"
        idx = self.vocab.encode(text).view(1, -1).to(next(self.model.parameters()).device)
        return self.model.attention_maps(idx)[s["layer"]][0, s["head"]].cpu()   # (T, T)

    def draw(self, **override):
        s = self.resolve(**override)
        w = self.weights(**override)
        text = s["text"][-self.model.cfg.block_size:] or "\n"
        labels = [repr(c)[1:-1] for c in text]
        self.figure()
        ax = self.axes
        ax.clear()
        ax.imshow(w.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"layer {s['layer'] + 1}, head {s['head'] + 1}: row = query, column = key", fontsize=9)
        return w
