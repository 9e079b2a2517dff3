"""Character-level text data: a vocabulary, train/validation/test splits, a random-window batch sampler and
the non-overlapping windows that cover a held-out text (for a loss over every one of its characters).

Chapters: introduced in ``rnn``; used again in ``gpt``, ``pretraining``, ``efficiency`` and ``scaling_laws``.
"""
from __future__ import annotations

import torch


class CharVocab:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, s: str) -> torch.Tensor:
        missing = sorted(set(s) - set(self.stoi))
        if missing:
            raise KeyError(f"characters not in the vocabulary: {missing}")
        return torch.tensor([self.stoi[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split(ids: torch.Tensor, frac: float = 0.9):
    """The first ``frac`` of the tokens and the rest (split the rest again for validation and test)."""
    n = int(frac * len(ids))
    return ids[:n], ids[n:]


def batch_sampler(ids: torch.Tensor, block: int, batch: int, generator: torch.Generator, device="cpu"):
    """``get_batch(step) -> (x, y)``: ``batch`` random windows of length ``block``; y is x shifted by one."""
    if len(ids) <= block + 1:
        raise ValueError(f"text of {len(ids)} tokens is too short for windows of {block}")

    cuda = torch.device(device).type == "cuda"

    def get_batch(step):
        i = torch.randint(0, len(ids) - block - 1, (batch,), generator=generator)
        offs = i[:, None] + torch.arange(block + 1)       # (B, block + 1)
        w = ids[offs]
        # page-locked memory lets the copy to the GPU overlap with the previous step's work (as nanoGPT does)
        w = w.pin_memory().to(device, non_blocking=True) if cuda else w.to(device)
        return w[:, :-1], w[:, 1:]                          # (B, block), (B, block)
    return get_batch


def windows(ids: torch.Tensor, block: int, device="cpu"):
    """``(x, y)``: the held-out text cut into consecutive windows of ``block`` tokens, y shifted by one.

    Unlike the random windows of :func:`batch_sampler` every token (but the first) is predicted exactly once,
    so a model's mean loss on them is the loss on that text; a leftover shorter than a window is dropped.
    The targets are ``ids[1 : n * block + 1]`` for ``n = len(x)`` windows.
    """
    n = (len(ids) - 1) // block
    if n < 1:
        raise ValueError(f"text of {len(ids)} tokens is too short for one window of {block} (+1 target)")
    x = ids[:n * block].view(n, block)
    y = ids[1:n * block + 1].view(n, block)
    return x.to(device), y.to(device)
