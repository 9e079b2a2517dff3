"""The modern_block chapter: the ablation's arms at equal parameter count (:func:`arms`,
:func:`matched`), one arm's training run (:func:`train_arm`), and :class:`TileExplorer`, a view of the
tiles a tiled attention pass visits. The live view of the arms' validation curves is
:class:`book.lab.transformer_block.StageMonitor` (one line per arm, with a replay).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from book.data.text import batch_sampler
from book.nn.counting import count_params
from book.nn.losses import lm_loss
from book.nn.modern import ModernConfig, ModernGPT, attention_memory, swiglu_hidden
from book.train import fit
from book.ui.explorer import Explorer

__all__ = ["arms", "matched", "train_arm", "TileExplorer"]


def arms(base: ModernConfig, n_kv_head: int) -> dict[str, ModernConfig]:
    """The baseline (the book's GPT), each change alone, and all four together; every arm with the
    baseline's parameter count (within one MLP unit per layer, see :func:`matched`)."""
    changes = {"GPT (baseline)": {}, "RMSNorm": dict(rmsnorm=True), "RoPE": dict(rope=True),
               "SwiGLU": dict(swiglu=True), f"GQA ({n_kv_head} kv heads)": dict(n_kv_head=n_kv_head),
               "all four": dict(rmsnorm=True, rope=True, swiglu=True, n_kv_head=n_kv_head)}
    return {name: matched(replace(base, **c), base) for name, c in changes.items()}


def matched(cfg: ModernConfig, base: ModernConfig) -> ModernConfig:
    """``cfg`` with its MLP width moved so that it has as many parameters as ``base``.

    RoPE drops the position table, GQA shrinks the key/value projections, RMSNorm drops the norms'
    biases: each arm gives those parameters back to its MLP, so no arm wins by being bigger."""
    target = count_params(ModernGPT(base))
    width = cfg.d_ff or (swiglu_hidden(cfg.n_embd) if cfg.swiglu else 4 * cfg.n_embd)
    per_unit = cfg.n_layer * (3 * cfg.n_embd if cfg.swiglu else 2 * cfg.n_embd + 1)  # params per MLP unit
    gap = target - count_params(ModernGPT(replace(cfg, d_ff=width)))
    return replace(cfg, d_ff=width + round(gap / per_unit))


def train_arm(cfg: ModernConfig, train_ids: torch.Tensor, val: tuple, *, batch: int, steps: int, lr: float,
              seed: int, log_every: int, device="cpu", callbacks=()):
    """Train one arm from seed ``seed`` with AdamW and a one-cycle schedule peaking at ``lr``; every arm
    of a seed gets the same initial seed and the same batches (one change at a time). -> (model, history)"""
    torch.manual_seed(seed)
    model = ModernGPT(cfg).to(device)
    get_batch = batch_sampler(train_ids, cfg.block_size, batch, torch.Generator().manual_seed(1000 + seed),
                              device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    history = fit(model, get_batch, opt, loss_fn=lm_loss, steps=steps, val=val, log_every=log_every,
                  grad_clip=1.0, scheduler=sched, callbacks=callbacks)
    return model, history


class TileExplorer(Explorer):
    """The score matrix of one head, cut into tiles: the tiles a causal tiled pass computes (shaded by
    the order it visits them), those it skips (above the diagonal), and the bytes each way."""

    defaults = dict(T=64, block=16, head_dim=32, causal=True)
    layout = dict(figsize=(5.5, 5))

    def _validate(self, s, changed):
        if s["T"] < 1 or s["block"] < 1 or s["head_dim"] < 1:
            raise ValueError(f"T, block and head_dim must be positive, got {s['T']}, {s['block']}, "
                             f"{s['head_dim']}")

    def _controls(self):
        import ipywidgets as w
        return {"T": w.IntSlider(min=16, max=256, step=16, description="T"),
                "block": w.Dropdown(options=[4, 8, 16, 32, 64], description="tile"),
                "head_dim": w.Dropdown(options=[16, 32, 64, 128], description="head dim"),
                "causal": w.Checkbox(description="causal")}

    def tiles(self, **override) -> torch.Tensor:
        """(n, n) visit order of the tiles (0, 1, ...), -1 for a tile the pass skips."""
        s = self.resolve(**override)
        n = -(-s["T"] // s["block"])
        order = torch.full((n, n), -1)
        k = 0
        for i in range(n):
            for j in range(i + 1 if s["causal"] else n):
                order[i, j] = k
                k += 1
        return order

    def draw(self, **override):
        s = self.resolve(**override)
        order = self.tiles(**override)
        mem = attention_memory(s["T"], s["block"], s["head_dim"])
        self.figure()
        ax = self.axes
        ax.clear()
        shown = order.float().masked_fill(order < 0, float("nan"))
        ax.imshow(shown.numpy(), cmap="viridis")
        n = order.shape[0]
        ax.set_xticks(range(n), [f"{j * s['block']}" for j in range(n)], fontsize=7)
        ax.set_yticks(range(n), [f"{i * s['block']}" for i in range(n)], fontsize=7)
        ax.set(xlabel="key tile (first position)", ylabel="query tile (first position)")
        ax.set_title(f"{int((order >= 0).sum())} of {n * n} tiles computed; scores held: "
                     f"{mem['tiled'] / 1024:.1f} KiB tiled vs {mem['full'] / 1024:.0f} KiB full", fontsize=8)
        return order
