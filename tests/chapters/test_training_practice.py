"""The training_practice chapter: its exercise checks accept a right answer and reject a typical wrong one."""
import math

import pytest
import torch

from book import check


@pytest.mark.parametrize("name,good,bad", [
    ("init_std", lambda k, i, o: math.sqrt(2 / (i + o)) if k == "xavier" else math.sqrt(2 / i),
     lambda k, i, o: math.sqrt(1 / i)),
    ("batchnorm_forward", lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps),
     lambda x, eps: (x - x.mean(0)) / torch.sqrt(x.var(0) + eps)),
    ("warmup_cosine_lr", lambda s, T, w, b: (b * (s + 1) / w if s < w
                                             else b * 0.5 * (1 + math.cos(math.pi * (s - w) / (T - w)))),
     lambda s, T, w, b: b * 0.5 * (1 + math.cos(math.pi * s / T))),
    ("clip_by_norm", lambda gs, m: [g * min(1.0, m / float(torch.sqrt(sum((t ** 2).sum() for t in gs)))) for g in gs],
     lambda gs, m: [g.clamp(-m, m) for g in gs]),
])
def test_training_practice_checks(name, good, bad, monkeypatch):
    monkeypatch.setenv("BOOK_STRICT", "1")
    getattr(check, name)(good)
    with pytest.raises(check.CheckFailed):
        getattr(check, name)(bad)
