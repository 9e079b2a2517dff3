"""Self-supervised pretraining of the tiny GPT, its checkpoint, and a downstream task built from shipped text.

Chapters: ``pretraining``; its checkpoint and task are reused by ``lora``, ``applications``,
``generative`` and ``trends``.

* Two objectives on unlabelled text: **causal** (predict the next character, GPT) and **masked** (hide 15 % of
  the characters and predict them from both sides, BERT).
* A held-out split that keeps the downstream test text out of pretraining: the corpus is cut into chunks
  and every ``every``-th chunk is held out (language-model validation *and* downstream test windows).
* The downstream task: which play does a 64-character window of Tiny Shakespeare come from?
* ``save_checkpoint`` / ``load_checkpoint``: plain tensors + a config dict, loaded with ``weights_only=True``
  (no pickled code runs on load). ``python -m book.lab.pretraining`` rebuilds the shipped checkpoint.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from book.data import sha256
from book.data.text import CharVocab
from book.nn.gpt import GPT, GPTConfig
from book.nn.losses import lm_loss

# Where each play of Tiny Shakespeare starts: (title, the first characters of its first speech heading).
PLAY_MARKERS = (
    ("Coriolanus", "First Citizen:\nBefore we proceed"),
    ("Richard III", "GLOUCESTER:\nNow is the winter"),
    ("Richard II", "KING RICHARD II:\n"),
    ("Romeo and Juliet", "SAMPSON:\n"),
    ("Henry VI, Part 3", "WARWICK:\nI wonder how the king"),
    ("The Winter's Tale", "ARCHIDAMUS:\n"),
    ("Measure for Measure", "DUKE VINCENTIO:\n"),
    ("The Taming of the Shrew", "SLY:\n"),
    ("The Tempest", "Boatswain:\n"),
)
# The downstream classes: plays with different casts (the two Wars-of-the-Roses plays share theirs).
TASK_PLAYS = ("Coriolanus", "Richard II", "Romeo and Juliet", "The Winter's Tale", "Measure for Measure",
              "The Taming of the Shrew")

CHECKPOINT = "gpt-char-shakespeare.pt"   # in assets/data/, SHA-256 in book.data.CHECKSUMS
# The shipped checkpoint's recipe: `python -m book.lab.pretraining` runs exactly this (and so does its unit test).
RECIPE = dict(n_layer=2, n_head=4, n_embd=128, block=64, batch=32, steps=1500, lr=3e-3, seed=0,
              chunk=2000, every=10)


def play_spans(text: str) -> list[tuple[str, int, int]]:
    """``[(title, start, end), ...]`` character ranges of the plays, in the order they appear in the text."""
    starts = []
    for title, marker in PLAY_MARKERS:
        i = text.find(marker)
        if i < 0:
            raise ValueError(f"could not find the start of {title!r} ({marker!r}): is this Tiny Shakespeare?")
        starts.append((title, i))
    ends = [s for _, s in starts[1:]] + [len(text)]
    if any(e <= s for (_, s), e in zip(starts, ends)):
        raise ValueError("play markers are out of order")
    return [(t, s, e) for (t, s), e in zip(starts, ends)]


def heldout_mask(n: int, chunk: int = 2000, every: int = 10) -> torch.Tensor:
    """Bool (n,): True for characters in held-out chunks (chunk index ≡ every // 2 mod every).

    Interleaving the held-out chunks spreads them over every play, so the downstream test set covers all
    classes, while no held-out character is ever seen in pretraining."""
    if chunk < 1 or every < 2:
        raise ValueError(f"need chunk >= 1 and every >= 2, got chunk={chunk}, every={every}")
    idx = torch.arange(n) // chunk
    return idx % every == every // 2


def pretraining_split(ids: torch.Tensor, chunk: int = 2000, every: int = 10):
    """(train_ids, val_ids): the kept chunks and the held-out chunks, each concatenated in order."""
    held = heldout_mask(len(ids), chunk, every)
    return ids[~held], ids[held]


def play_windows(text: str, vocab: CharVocab, split: str, per_class: int | None = None, block: int = 64,
                 chunk: int = 2000, every: int = 10, seed: int = 0, plays=TASK_PLAYS):
    """The downstream task: ``x`` (N, block) character ids, ``y`` (N,) the index of the play in ``plays``.

    ``split='test'`` windows lie wholly inside held-out chunks (never pretrained on), ``'train'`` windows wholly
    outside. Windows start at the beginning of a line. ``per_class`` windows per play (random, ``seed``);
    ``None`` keeps all."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    spans = {t: (s, e) for t, s, e in play_spans(text)}
    unknown = [p for p in plays if p not in spans]
    if unknown:
        raise KeyError(f"unknown plays {unknown}; choose from {list(spans)}")
    held = heldout_mask(len(text), chunk, every)
    # fraction of held-out characters in each window = prefix sums, so every window is checked in O(1)
    cum = torch.cat([torch.zeros(1, dtype=torch.long), held.long().cumsum(0)])
    ids = vocab.encode(text)
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for label, play in enumerate(plays):
        s, e = spans[play]
        starts = torch.tensor([i + 1 for i in range(s, e - block - 1) if text[i] == "\n"] or [s])
        n_held = cum[starts + block] - cum[starts]
        keep = starts[n_held == block] if split == "test" else starts[n_held == 0]
        if per_class is not None:
            if len(keep) < per_class:
                raise ValueError(f"{play!r} has only {len(keep)} {split} windows, asked for {per_class}")
            keep = keep[torch.randperm(len(keep), generator=g)[:per_class]]
        xs.append(ids[keep[:, None] + torch.arange(block)])            # (n, block)
        ys.append(torch.full((len(keep),), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------- masked-token objective
def mask_tokens(x: torch.Tensor, mask_id: int, vocab_size: int, p: float = 0.15,
                generator: torch.Generator | None = None):
    """BERT's corruption: choose ``p`` of the positions; of those, 80 % become ``mask_id``, 10 % a random
    token, 10 % stay. Returns ``(inputs, labels)`` with ``labels = -100`` (ignored) where nothing was chosen."""
    if x.dtype != torch.long:
        raise TypeError(f"expected token ids of dtype long, got {x.dtype}")
    if not 0 < p < 1:
        raise ValueError(f"masking probability must be in (0, 1), got {p}")
    u = torch.rand(x.shape, generator=generator).to(x.device)
    r = torch.rand(x.shape, generator=generator).to(x.device)
    chosen = u < p
    inputs = x.clone()
    inputs[chosen & (r < 0.8)] = mask_id
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand] = torch.randint(0, vocab_size, (int(rand.sum()),), generator=generator).to(x.device)
    labels = torch.where(chosen, x, torch.full_like(x, -100))
    return inputs, labels


def masked_loss(logits, labels):
    """Cross-entropy over the chosen positions only (labels -100 elsewhere)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


# --------------------------------------------------------------------------- downstream classifier
class GPTClassifier(nn.Module):
    """A sequence classifier on top of a (pretrained) GPT body: mean of the final hidden states -> linear."""

    def __init__(self, body: GPT, n_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(body.cfg.n_embd, n_classes)

    def features(self, idx):
        b = self.body
        if idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError(f"expected token ids (batch, time) of dtype long, got {tuple(idx.shape)} {idx.dtype}")
        T = idx.shape[1]
        if T > b.cfg.block_size:
            raise ValueError(f"windows of {T} tokens exceed the body's block_size={b.cfg.block_size}")
        x = b.drop(b.tok(idx) + b.pos(torch.arange(T, device=idx.device)))   # (B, T, C)
        for block in b.blocks:
            x = block(x)
        return b.ln_f(x).mean(1)                                            # (B, C)

    def forward(self, idx):
        return self.head(self.features(idx))                                # (B, n_classes)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(model: GPT, path, vocab: CharVocab, **meta) -> Path:
    """Save weights, config, vocabulary and ``meta`` (numbers/strings only) as plain data."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k != "head.weight"}  # tied
    for k, v in meta.items():
        if not isinstance(v, (int, float, str, bool)):
            raise TypeError(f"meta[{k!r}] is a {type(v).__name__}; give numbers or strings (weights_only loading "
                            "refuses other objects)")
    meta = {k: (str(v) if isinstance(v, str) else v) for k, v in meta.items()}   # e.g. TorchVersion -> str
    torch.save({"config": asdict(model.cfg), "chars": "".join(vocab.chars), "state": state, "meta": meta}, path)
    return path


def load_checkpoint(path=None, device="cpu"):
    """``(model, vocab, meta)`` from a checkpoint; ``path=None`` loads the shipped one (SHA-256 checked).

    ``weights_only=True`` restricts unpickling to tensors and plain containers: a checkpoint downloaded from
    somewhere cannot run code when loaded."""
    if path is None:
        from book.data import asset
        path = asset(CHECKPOINT)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ck["config"]))
    missing, unexpected = model.load_state_dict(ck["state"], strict=False)
    if unexpected or set(missing) - {"head.weight"}:
        raise ValueError(f"checkpoint {path} does not fit GPT({ck['config']}): "
                         f"missing {missing}, unexpected {unexpected}")
    vocab = CharVocab(ck["chars"])
    return model.to(device), vocab, ck["meta"]




@torch.no_grad()
def lm_val_loss(model: GPT, val_ids: torch.Tensor, block: int, n_windows: int = 256, seed: int = 123) -> float:
    """Mean next-token loss on ``n_windows`` fixed random windows of the held-out text."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(val_ids) - block - 1, (n_windows,), generator=g)
    w = val_ids[i[:, None] + torch.arange(block + 1)].to(next(model.parameters()).device)  # (n, block + 1)
    was = model.training
    model.eval()
    loss = sum(lm_loss(model(w[j:j + 64, :-1]), w[j:j + 64, 1:]).item() * len(w[j:j + 64])
               for j in range(0, len(w), 64)) / len(w)
    model.train(was)
    return loss


def build_checkpoint(out, text: str | None = None, device="cpu", **override) -> dict:
    """Pretrain the shipped model (``RECIPE``, or overrides) with the causal objective and save it."""
    from book.config import seed_everything
    from book.data import load_text
    from book.data.text import batch_sampler
    from book.train import fit

    r = {**RECIPE, **override}
    text = load_text() if text is None else text
    vocab = CharVocab(text)
    train_ids, val_ids = pretraining_split(vocab.encode(text), r["chunk"], r["every"])
    gen = seed_everything(r["seed"])
    model = GPT(GPTConfig(len(vocab), r["block"], r["n_layer"], r["n_head"], r["n_embd"])).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=0.1, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, r["steps"]) / r["steps"])))
    t0 = time.perf_counter()
    fit(model, batch_sampler(train_ids, r["block"], r["batch"], gen, device), opt, loss_fn=lm_loss,
        steps=r["steps"], log_every=r["steps"], scheduler=sched, grad_clip=1.0, progress=False)
    val = lm_val_loss(model, val_ids, r["block"])
    meta = dict(recipe=str(sorted(r.items())), val_loss=round(val, 4), seconds=round(time.perf_counter() - t0, 1),
                torch=torch.__version__, objective="causal")
    save_checkpoint(model, out, vocab, **meta)
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description="Rebuild the book's pretrained tiny GPT checkpoint.")
    p.add_argument("--out", default=None, help="where to write it (default: the shipped assets/ file)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    if a.out is None:
        from book.data import assets_dir
        a.out = assets_dir() / "data" / CHECKPOINT
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta = build_checkpoint(a.out, device=a.device)
    print(f"wrote {a.out}: {meta}\nsha256 {sha256(a.out)}")


if __name__ == "__main__":
    main()


def finetune(body: GPT, train: tuple, test: tuple, n_classes: int, steps: int, lr: float = 1e-3,
             mode: str = "full", batch_size: int = 32, log_every: int = 20, seed: int = 0, callbacks=()):
    """Train a :class:`GPTClassifier` on ``train = (x, y)``, evaluating on ``test`` every ``log_every`` steps.

    ``mode='full'`` updates every weight; ``'probe'`` freezes the body and trains only the linear head (a
    *linear probe*: how good are the pretrained features as they are?). Returns ``(classifier, history)``."""
    from book.train import fit

    if mode not in ("full", "probe"):
        raise ValueError(f"mode must be 'full' or 'probe', got {mode!r}")
    torch.manual_seed(seed)
    clf = GPTClassifier(body, n_classes).to(next(body.parameters()).device)
    clf.body.requires_grad_(mode == "full")     # full: every weight trains (even if frozen before)
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    hist = fit(clf, train, opt, steps=steps, batch_size=batch_size, val=test, log_every=log_every,
               generator=g, callbacks=callbacks, progress=False)
    clf.eval()
    return clf, hist
