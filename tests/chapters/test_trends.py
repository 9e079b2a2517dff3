"""The trends chapter's checks accept the reference solutions and reject wrong ones."""
import pytest
import torch
import torch.nn.functional as F

from book import check
from book.check import raising


def test_checks_accept_solutions_and_reject_wrong_ones():
    def clip(u, v, tau):
        u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        s, t = u @ v.T / tau, torch.arange(len(u))
        return (F.cross_entropy(s, t) + F.cross_entropy(s.T, t)) / 2
    with raising():
        check.gpu_hours(lambda f, p, m: f / (p * m) / 3600)
        check.energy_mwh(lambda h, w, pue: h * w * pue / 1e6)
        check.co2_tonnes(lambda mwh, k: mwh * k)
        check.clip_loss(clip)
        for name, wrong in [("gpu_hours", lambda f, p, m: f / p),
                            ("energy_mwh", lambda h, w, pue: h * w),
                            ("co2_tonnes", lambda mwh, k: mwh * k * 1000),
                            ("clip_loss", lambda u, v, tau: F.cross_entropy(u @ v.T / tau, torch.arange(len(u))))]:
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
