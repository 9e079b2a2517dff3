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


# ============================================================================ book.lab.trends: multi-task learning
def test_related_tasks_share_a_low_rank_subspace_and_split():
    from book.lab.trends import make_related_tasks

    t = make_related_tasks(n_tasks=6, dim=12, rank=2, n_per_task=30, seed=1)
    assert t.x.shape == (6, 30, 12) and t.y.shape == (6, 30) and t.w.shape == (6, 12)
    assert torch.linalg.matrix_rank(t.w).item() == 2                 # six tasks, one 2-D subspace
    assert torch.equal(t.y, make_related_tasks(n_tasks=6, dim=12, rank=2, n_per_task=30, seed=1).y)
    a, b = t.split(10, 20)
    assert a.x.shape[1] == 10 and torch.equal(b.y, t.y[:, 10:]) and a.w is t.w
    with pytest.raises(ValueError, match="add up"):
        t.split(10, 10)
    with pytest.raises(ValueError, match="rank"):
        make_related_tasks(dim=3, rank=4)


def test_ridge_solutions_match_torch_lstsq_and_the_pooled_fit():
    from book.lab.trends import make_related_tasks, pooled_ridge, ridge_per_task, task_mse

    t = make_related_tasks(n_tasks=3, dim=5, rank=2, n_per_task=40, noise=0.1, seed=0)
    w = ridge_per_task(t, 0.0)
    ref = torch.stack([torch.linalg.lstsq(t.x[i], t.y[i][:, None]).solution[:, 0] for i in range(3)])
    assert torch.allclose(w, ref, atol=1e-4)
    # ridge as least squares on rows augmented with sqrt(lam) I
    lam, i = 2.0, 1
    xa = torch.cat([t.x[i], lam ** 0.5 * torch.eye(5)])
    ya = torch.cat([t.y[i], torch.zeros(5)])
    assert torch.allclose(ridge_per_task(t, lam)[i], torch.linalg.lstsq(xa, ya[:, None]).solution[:, 0],
                          atol=1e-4)
    pooled = pooled_ridge(t, 0.0)
    flat = torch.linalg.lstsq(t.x.reshape(-1, 5), t.y.reshape(-1, 1)).solution[:, 0]
    assert pooled.shape == (3, 5) and torch.allclose(pooled[2], flat, atol=1e-4)
    assert task_mse(t.w, t) < 0.02 and task_mse(w, t) <= task_mse(t.w, t) + 1e-6  # fits its own data
    for fn in (ridge_per_task, pooled_ridge):
        with pytest.raises(ValueError, match="lam"):
            fn(t, -1.0)


def test_shared_body_beats_tasks_alone_when_data_are_few():
    from book.lab.trends import fit_shared, make_related_tasks, ridge_per_task, task_mse

    tr, te = make_related_tasks(n_per_task=15 + 200, seed=1).split(15, 200)
    shared = fit_shared(tr, 2, steps=400, seed=1)
    assert shared.shape == tr.w.shape
    assert task_mse(shared, te) < 0.5 * task_mse(ridge_per_task(tr, 1.0), te)
    with pytest.raises(ValueError, match="width"):
        fit_shared(tr, 0)
