"""Self-supervised pretraining of the tiny GPT, its checkpoint, and a downstream task built from shipped text.

Chapters: ``pretraining``; its checkpoint and task are reused by ``lora``, ``applications``,
``generative`` and ``trends``.

* Two objectives on unlabelled text: **causal** (predict the next character, GPT) and **masked** (hide 15 % of
  the characters and predict them from both sides, BERT).
* A held-out split that keeps the downstream test text out of pretraining: the corpus is cut into chunks
  and every ``every``-th chunk is held out (language-model validation *and* the downstream validation and
  test windows, in alternate held-out chunks).
* The downstream task: does a window of Tiny Shakespeare contain a misspelled word? Misspellings swap two
  neighbouring inner letters, so both classes use exactly the same characters; the baselines that a
  learned model must beat (majority, bag-of-characters and character n-gram logistic regression, a lookup
  in the pretraining text's vocabulary) are here too.
* ``save_checkpoint`` / ``load_checkpoint``: plain tensors + a config dict, loaded with ``weights_only=True``
  (no pickled code runs on load). ``python -m book.lab.pretraining`` rebuilds the shipped checkpoint.
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from book.config import DRY_COUNT, DRY_EVAL, dry_run
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
# The downstream classes: label 1 = the window has misspelled words (see `add_typos`).
TASK_LABELS = ("clean", "misspelled")

# Fine-tuning learning rates: the new, random head learns fast; the pretrained body moves slowly.
HEAD_LR, BODY_LR = 1e-2, 1e-4

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


def split_regions(n: int, chunk: int = 2000, every: int = 10) -> torch.Tensor:
    """Long (n,): 0 = pretraining text, 1 = a held-out *validation* chunk, 2 = a held-out *test* chunk.

    The held-out chunks of :func:`heldout_mask` alternate between validation and test, so both are spread
    over the whole text and neither was seen in pretraining."""
    held = heldout_mask(n, chunk, every)
    idx = torch.arange(n) // chunk
    region = torch.zeros(n, dtype=torch.long)
    region[held] = 1 + (idx[held] // every) % 2
    return region


# a whole lower-case word of at least 4 letters (not the cut-off end of a window)
_WORD = re.compile(r"(?<![A-Za-z'])[a-z]{4,}(?=[^A-Za-z'])")


def _typo_spots(word_start: int, word_end: int, line: str) -> list[int]:
    """Positions i where swapping letters i and i+1 misspells the word, keeping its first and last letter."""
    return [i for i in range(word_start + 1, word_end - 2) if line[i] != line[i + 1]]


def add_typos(line: str, k: int = 2, generator: torch.Generator | None = None) -> str:
    """Misspell ``k`` words of ``line``: in each, swap two neighbouring inner letters ("wodner" for "wonder").

    The characters stay the same, only their order changes. Raises if fewer than ``k`` words can be
    misspelled (whole lower-case words of at least 4 letters)."""
    words = [m.span() for m in _WORD.finditer(line) if _typo_spots(*m.span(), line)]
    if len(words) < k:
        raise ValueError(f"{line!r} has only {len(words)} words that can be misspelled, asked for {k}")
    chars = list(line)
    for w in torch.randperm(len(words), generator=generator)[:k].tolist():
        spots = _typo_spots(*words[w], line)
        i = spots[int(torch.randint(len(spots), (1,), generator=generator))]
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


@functools.lru_cache(maxsize=16)
def _window_starts(text: str, region_id: int, block: int, typos: int, chunk: int, every: int) -> torch.Tensor:
    """Starts of the line-initial windows lying wholly in one region with at least ``typos`` misspellable words."""
    inside = torch.cat([torch.zeros(1, dtype=torch.long),
                        (split_regions(len(text), chunk, every) == region_id).long().cumsum(0)])
    starts = torch.tensor([0] + [i + 1 for i, c in enumerate(text) if c == "\n" and i + 1 + block <= len(text)])
    starts = starts[inside[starts + block] - inside[starts] == block]
    return torch.tensor([i for i in starts.tolist()
                         if sum(bool(_typo_spots(*m.span(), text[i:i + block]))
                                for m in _WORD.finditer(text[i:i + block])) >= typos], dtype=torch.long)


def typo_windows(text: str, vocab: CharVocab, split: str, n: int, block: int = 64, typos: int = 2,
                 seed: int = 0, chunk: int = 2000, every: int = 10):
    """The downstream task: ``x`` (n, block) character ids, ``y`` (n,) 1 if ``typos`` words were misspelled.

    Windows start at the beginning of a line. ``split='train'`` windows come from the pretraining text,
    ``'val'`` and ``'test'`` windows from alternate held-out chunks (never pretrained on). ``n`` windows are
    drawn at random (``seed``); every second one is misspelled with :func:`add_typos`, so the classes are
    balanced and have exactly the same characters."""
    regions = {"train": 0, "val": 1, "test": 2}
    if split not in regions:
        raise ValueError(f"split must be one of {list(regions)}, got {split!r}")
    starts = _window_starts(text, regions[split], block, typos, chunk, every)
    if n > len(starts):
        raise ValueError(f"the {split} part has only {len(starts)} windows, asked for {n}")
    g = torch.Generator().manual_seed(seed)
    starts = starts[torch.randperm(len(starts), generator=g)[:n]]
    y = torch.arange(n) % 2
    lines = [text[i:i + block] for i in starts.tolist()]
    lines = [add_typos(s, typos, g) if label else s for s, label in zip(lines, y.tolist())]
    return torch.stack([vocab.encode(s) for s in lines]), y


# --------------------------------------------------------------------------- baselines for the task
def majority_classifier(y_train: torch.Tensor):
    """``predict(x)``: always the most frequent training label."""
    label = int(torch.bincount(y_train.cpu()).argmax())
    return lambda x: torch.full((len(x),), label, dtype=torch.long)


def ngram_counts(x: torch.Tensor, n_max: int, vocab_size: int, known: torch.Tensor | None = None,
                 min_count: int = 2):
    """Bag of character n-grams (n = 1..n_max) of each row of ``x``: ``(log(1 + counts), known)``.

    ``known`` (sorted n-gram codes) fixes the columns; without it they are the n-grams occurring at least
    ``min_count`` times in ``x`` (the training rows). Other n-grams are dropped: a model fitted on the
    training rows has no weight for them."""
    codes = []
    for n in range(1, n_max + 1):
        c = torch.zeros(x.shape[0], x.shape[1] - n + 1, dtype=torch.long)
        for k in range(n):
            c = c * (vocab_size + 1) + x[:, k:x.shape[1] - n + 1 + k] + 1   # + 1: no n-gram codes as 0
        codes.append(c)
    codes = torch.cat(codes, 1)
    if known is None:
        known, counts = torch.unique(codes, return_counts=True)
        known = known[counts >= min_count]
    col = torch.searchsorted(known, codes).clamp(max=len(known) - 1)
    hit = (known[col] == codes).float()
    counts = torch.zeros(x.shape[0], len(known)).scatter_add_(1, col, hit)
    return counts.log1p(), known


def fit_logistic_lbfgs(X: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float,
                       max_iter: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on features ``X`` (N, F): ``(W (F, n_classes), b)`` minimising the
    mean cross-entropy + ``weight_decay * |W|^2``, from zeros, by one L-BFGS call (strong Wolfe)."""
    W = torch.zeros(X.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W + b, y) + weight_decay * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return W.detach(), b.detach()


def ngram_classifier(train: tuple, val: tuple, n_max: int = 3, vocab_size: int = 65,
                     weight_decays=(1e-3, 1e-2, 1e-1)):
    """Logistic regression on character n-gram counts (n = 1..n_max); the weight decay is chosen on ``val``.

    ``n_max=1`` is a bag of characters. Returns ``(predict, info)``: ``predict(x)`` -> labels, and
    ``info = {'val': validation accuracy, 'weight_decay': the chosen one, 'features': columns}``."""
    (xt, yt), (xv, yv) = [(x.cpu(), y.cpu()) for x, y in (train, val)]
    Xt, known = ngram_counts(xt, n_max, vocab_size)
    mu, sd = Xt.mean(0), Xt.std(0) + 1e-3

    def design(x):
        return (ngram_counts(x.cpu(), n_max, vocab_size, known)[0] - mu) / sd

    Xt, Xv = (Xt - mu) / sd, design(xv)
    n_classes = int(yt.max()) + 1
    # a dry run (BOOK_DRYRUN) proves the plumbing at gpu sizes: a few L-BFGS iterations, not a fit
    iters = DRY_COUNT if dry_run() else 100
    best = None
    for wd in weight_decays:
        W, b = fit_logistic_lbfgs(Xt, yt, n_classes, wd, max_iter=iters)
        acc = ((Xv @ W + b).argmax(1) == yv).float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, wd, W, b)
    acc, wd, W, b = best
    return (lambda x: (design(x) @ W + b).argmax(1)), {"val": acc, "weight_decay": wd, "features": len(known)}


def known_words(text: str) -> set:
    """The lower-case words of ``text`` (a spelling dictionary made from it)."""
    return set(re.findall(r"[a-z]+", text.lower()))


def dictionary_classifier(vocab: CharVocab, words: set):
    """``predict(x)``: 1 (misspelled) for windows with a whole lower-case word of 4+ letters not in ``words``."""
    return lambda x: torch.tensor([int(any(m.group(0) not in words for m in _WORD.finditer(vocab.decode(row.tolist()))))
                                   for row in x.cpu()])


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
    """A sequence classifier on top of a (pretrained) GPT body.

    Its features are what the body computes for a window: the mean of the final hidden states, and how
    surprised the body's own language-model head is by each next character (``-log p``, in nats): on
    average, at its most surprised, and over its ``top`` most surprising characters. A linear layer maps
    them to the classes."""

    def __init__(self, body: GPT, n_classes: int, top: int = 3):
        super().__init__()
        self.body, self.top = body, top
        self.head = nn.Linear(body.cfg.n_embd + 3, n_classes)

    def surprisal(self, idx, hidden=None):
        """(B, T - 1): ``-log p(x[t+1] | x[..t])`` under the body's language-model head."""
        hidden = self.hidden(idx) if hidden is None else hidden
        logits = self.body.head(hidden[:, :-1])                              # (B, T - 1, V)
        return F.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none")

    def hidden(self, idx):
        b = self.body
        if idx.ndim != 2 or idx.dtype != torch.long:
            raise ValueError(f"expected token ids (batch, time) of dtype long, got {tuple(idx.shape)} {idx.dtype}")
        T = idx.shape[1]
        if T > b.cfg.block_size:
            raise ValueError(f"windows of {T} tokens exceed the body's block_size={b.cfg.block_size}")
        if T < 2:
            raise ValueError("windows need at least 2 tokens (the surprise is about the next one)")
        x = b.drop(b.tok(idx) + b.pos(torch.arange(T, device=idx.device)))   # (B, T, C)
        for block in b.blocks:
            x = block(x)
        return b.ln_f(x)                                                     # (B, T, C)

    def features(self, idx):
        h = self.hidden(idx)
        s = self.surprisal(idx, h)                                           # (B, T - 1)
        top = s.topk(min(self.top, s.shape[1]), dim=1).values
        return torch.cat([h.mean(1), s.mean(1, keepdim=True), top[:, :1], top.mean(1, keepdim=True)], 1)

    def forward(self, idx):
        return self.head(self.features(idx))                                 # (B, n_classes)


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
    """Mean next-token loss on ``n_windows`` fixed random windows of the held-out text (the first ``DRY_EVAL``
    of them in a dry run, as :func:`book.train.evaluate` does: a gpu-size model on 256 windows costs CPU-seconds
    and proves nothing more)."""
    if dry_run():
        n_windows = min(n_windows, DRY_EVAL)
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


def finetune(body: GPT, train: tuple, val: tuple, n_classes: int, steps: int, mode: str = "full",
             body_lr: float = BODY_LR, head_lr: float = HEAD_LR, batch_size: int = 32, log_every: int = 20,
             seed: int = 0, callbacks=()):
    """Train a :class:`GPTClassifier` on ``train = (x, y)``, measuring ``val`` every ``log_every`` steps.

    ``mode='full'`` updates every weight; ``'probe'`` freezes the body and trains only the linear head (a
    *linear probe*: how good are the pretrained features as they are?). The new head starts from random
    numbers and learns with ``head_lr``; the body, which already knows something, moves with the smaller
    ``body_lr`` (too large a one can overwrite what pretraining taught). Returns ``(classifier, history)``."""
    from book.train import fit

    if mode not in ("full", "probe"):
        raise ValueError(f"mode must be 'full' or 'probe', got {mode!r}")
    torch.manual_seed(seed)
    clf = GPTClassifier(body, n_classes).to(next(body.parameters()).device)
    clf.body.requires_grad_(mode == "full")     # full: every weight trains (even if frozen before)
    groups = [{"params": list(clf.head.parameters()), "lr": head_lr}]
    if mode == "full":
        groups.append({"params": list(clf.body.parameters()), "lr": body_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    hist = fit(clf, train, opt, steps=steps, batch_size=batch_size, val=val, log_every=log_every,
               generator=g, callbacks=callbacks, progress=False)
    clf.eval()
    return clf, hist


if __name__ == "__main__":
    main()
