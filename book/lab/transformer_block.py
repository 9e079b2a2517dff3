"""The transformer_block chapter: one configurable language model whose switches build the Transformer
block up a piece at a time (bigram -> attention -> heads -> MLP -> residuals -> LayerNorm), its training
run, and :class:`StageMonitor`, the live view of every stage's validation curve (with a replay).

With every switch on, :class:`StageBlock` is :class:`book.nn.gpt.Block` (same parameters, same names, same
outputs: tests/chapters/test_transformer_block.py); the attention inside is
:class:`book.nn.gpt.CausalSelfAttention`. The progression follows Karpathy's "Let's build GPT" lecture and
nanoGPT (github.com/karpathy/nanoGPT).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from book.data.text import batch_sampler
from book.nn.gpt import CausalSelfAttention, GPTConfig
from book.nn.losses import lm_loss
from book.train import Callback, State, fit
from book.ui import RunsReplay


@dataclass(frozen=True)
class Stage:
    """Which parts a :class:`StageLM` has. ``attention=False`` is the bigram model (a lookup table)."""

    name: str
    attention: bool = True
    n_head: int = 1
    mlp: bool = False
    residual: bool = False
    layernorm: bool = False
    n_layer: int = 1

    def but(self, name: str, **changes) -> "Stage":
        """This stage with one (or more) switches changed, under a new name."""
        return replace(self, name=name, **changes)


def build_up(n_head: int) -> list[Stage]:
    """The chapter's ladder: each stage changes one thing of the one before."""
    bigram = Stage("bigram", attention=False)
    single = Stage("+ self-attention (1 head)")
    multi = single.but(f"+ {n_head} heads", n_head=n_head)
    mlp = multi.but("+ MLP", mlp=True)
    res = mlp.but("+ residual", residual=True)
    ln = res.but("+ LayerNorm (pre-norm)", layernorm=True)
    return [bigram, single, multi, mlp, res, ln]


class StageBlock(nn.Module):
    """A Transformer block whose parts can be switched off. All on, it computes ``book.nn.gpt.Block``::

        x = x + attn(ln1(x));  x = x + mlp(ln2(x))

    ``residual=False`` drops the ``x +``; ``layernorm=False`` drops ``ln1``/``ln2``; ``mlp=False`` drops the
    second line. Parameter names match ``Block``'s, so a ``Block``'s state dict loads into a full one.
    """

    def __init__(self, cfg: GPTConfig, mlp: bool = True, residual: bool = True, layernorm: bool = True):
        super().__init__()
        self.residual = residual
        self.attn = CausalSelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.n_embd) if layernorm else nn.Identity()
        self.ln2 = nn.LayerNorm(cfg.n_embd) if (layernorm and mlp) else nn.Identity()
        d_ff = cfg.d_ff or 4 * cfg.n_embd
        self.mlp = (nn.Sequential(nn.Linear(cfg.n_embd, d_ff), nn.GELU(), nn.Linear(d_ff, cfg.n_embd),
                                  nn.Dropout(cfg.dropout)) if mlp else None)

    def forward(self, x):
        a = self.attn(self.ln1(x))
        x = x + a if self.residual else a
        if self.mlp is not None:
            m = self.mlp(self.ln2(x))
            x = x + m if self.residual else m
        return x


class StageLM(nn.Module):
    """A character language model of one :class:`Stage`: ``idx (B, T) -> logits (B, T, vocab)``.

    Bigram: a (vocab, vocab) table of next-token logits. Otherwise: token + learned position embeddings,
    ``n_layer`` :class:`StageBlock`, a final LayerNorm when the stage has LayerNorm, and a linear head.
    PyTorch's default initialisation, as in Karpathy's lecture (``book.nn.gpt.GPT`` instead draws every
    weight from normal(0, 0.02): vectors so small that, without LayerNorm, attention scores start near
    zero and barely learn in a short run)."""

    def __init__(self, stage: Stage, vocab_size: int, block_size: int, n_embd: int):
        super().__init__()
        self.stage, self.block_size = stage, block_size
        if not stage.attention:
            self.table = nn.Embedding(vocab_size, vocab_size)
        else:
            cfg = GPTConfig(vocab_size, block_size, stage.n_layer, stage.n_head, n_embd)
            self.tok = nn.Embedding(vocab_size, n_embd)
            self.pos = nn.Embedding(block_size, n_embd)
            self.blocks = nn.ModuleList(StageBlock(cfg, stage.mlp, stage.residual, stage.layernorm)
                                        for _ in range(stage.n_layer))
            self.ln_f = nn.LayerNorm(n_embd) if stage.layernorm else nn.Identity()
            self.head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx):
        if idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError(f"expected token ids of shape (batch, time) and dtype long, got "
                             f"{tuple(idx.shape)} {idx.dtype}")
        if not self.stage.attention:
            return self.table(idx)
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens exceeds block_size={self.block_size}")
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def train_stage(stage: Stage, train_ids: torch.Tensor, val: tuple, *, vocab_size: int, block: int,
                n_embd: int, batch: int, steps: int, lr: float, seed: int, log_every: int,
                device="cpu", callbacks=()):
    """Train one stage from seed ``seed`` (the same batches for every stage of that seed: one change at a
    time) with AdamW, a one-cycle schedule peaking at ``lr``; returns ``(model, history)``."""
    torch.manual_seed(seed)
    model = StageLM(stage, vocab_size, block, n_embd).to(device)
    get_batch = batch_sampler(train_ids, block, batch, torch.Generator().manual_seed(1000 + seed), device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    history = fit(model, get_batch, opt, loss_fn=lm_loss, steps=steps, val=val, log_every=log_every,
                  grad_clip=1.0, scheduler=sched, callbacks=callbacks)
    return model, history


class StageMonitor(Callback, RunsReplay):
    """Live view of the stages' validation curves while they train, one line per stage (the seed given as
    ``seed``; other seeds are recorded but not drawn), with the baselines as dashed lines. Pass it to
    :func:`train_stage` as a callback after calling ``monitor.start(stage_name, seed)``;
    ``replay(max_frames=24, interval=400)`` replays the recorded points (the Replay contract)."""

    replay_hint = "train the stages with this monitor as a callback first"

    def __init__(self, baselines: dict[str, float], seed: int = 0, title: str = "validation loss"):
        self.baselines, self.seed, self.title = dict(baselines), seed, title
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.events: list[tuple[str, int]] = []   # (stage, number of its points) after each recorded point
        self._current = None
        self.fig = self.live = None

    def start(self, stage: str, seed: int):
        """The next run's stage name and seed."""
        self._current = None                  # other seeds: recorded by nobody
        if seed == self.seed:                 # a stage trained again replaces its earlier curve
            self.curves[stage] = []
            self._restart(stage)

    def on_log(self, state: State):
        if self._current is None:
            return
        self.curves[self._current].append((state.step, state.history.val_loss[-1]))
        self._mark(len(self.curves[self._current]))
        if state.step == state.total_steps:       # draw once per stage: cheap enough to keep
            self.draw(len(self.events) - 1)
            self.show_live()

    def draw(self, k: int):
        """Every curve as it stood after recorded point ``k``."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.ax = plt.subplots(figsize=(8, 3.6), dpi=80)
        seen = self.seen(k)
        ax = self.ax
        ax.clear()
        for i, (stage, n) in enumerate(seen.items()):
            steps, losses = zip(*self.curves[stage][:n])
            ax.plot(steps, losses, "o-", ms=3, color=f"C{i}", label=stage)
        for j, (name, value) in enumerate(self.baselines.items()):
            ax.axhline(value, ls="--", lw=1, color=f"0.{3 + 2 * j}", label=name)
        ax.set(xlabel="step", ylabel="validation loss (nats/char)", title=self.title)
        ax.legend(fontsize=7, loc="upper right")
        self.fig.tight_layout()

