import math

import matplotlib
import numpy as np
import pytest
import torch

from book import check
from book.data.text import batch_sampler
from book.lab.scaling_laws import (
    CHINCHILLA,
    MODELS,
    PowerLaw,
    chinchilla_loss,
    chinchilla_optimal,
    family_configs,
    fit_power_law,
    gpt_non_embedding_params,
    law_optimal,
    non_embedding_params,
    plot_scaling,
    train_family,
    training_flops,
    width_lr,
)
from book.nn.counting import count_params
from book.nn.gpt import GPT, GPTConfig

matplotlib.use("Agg")


@pytest.mark.parametrize("n_layer,n_embd,vocab,block", [(1, 8, 65, 16), (2, 32, 65, 32), (3, 48, 100, 8)])
def test_non_embedding_count_matches_formula(n_layer, n_embd, vocab, block):
    model = GPT(GPTConfig(vocab, block, n_layer, 4 if n_embd % 4 == 0 else 1, n_embd))
    n = non_embedding_params(model)
    assert n == gpt_non_embedding_params(n_layer, n_embd)
    assert count_params(model) == n + vocab * n_embd + block * n_embd     # tied head: no extra matrix


def test_counting_errors():
    with pytest.raises(TypeError, match="book.nn.gpt.GPT"):
        non_embedding_params(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="positive"):
        gpt_non_embedding_params(0, 8)
    with pytest.raises(ValueError, match="positive"):
        training_flops(-1, 10)


def test_training_flops():
    assert training_flops(175e9, 300e9) == pytest.approx(3.15e23)
    assert np.allclose(training_flops(np.array([1.0, 2.0]), 3.0), [18.0, 36.0])


def test_fit_recovers_a_pure_power_law():
    n = np.geomspace(1e3, 1e6, 6)
    law = fit_power_law(n, 7.0 * n ** -0.076)
    assert law.alpha == pytest.approx(0.076, rel=1e-9) and law.a == pytest.approx(7.0, rel=1e-9)
    assert law.E == 0 and law.r2 == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = fit_power_law(n, 7.0 * n ** -0.3 * np.exp(0.01 * rng.standard_normal(6)))
    assert abs(noisy.alpha - 0.3) < 0.01 and noisy.r2 > 0.99
    assert np.allclose(law(n), 7.0 * n ** -0.076) and "0.076" in str(law)


def test_fit_recovers_an_irreducible_term():
    n = np.geomspace(1e4, 1e9, 8)
    law = fit_power_law(n, 1.69 + 406.4 * n ** -0.34, irreducible=True)
    assert law.E == pytest.approx(1.69, abs=2e-3) and law.alpha == pytest.approx(0.34, abs=5e-3)
    assert law.r2 > 0.9999
    pure = fit_power_law(n, 1.69 + 406.4 * n ** -0.34)          # ignoring E bends the exponent down
    assert pure.alpha < 0.2 and pure.r2 < law.r2


def test_fit_errors():
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 4"):
        fit_power_law([1, 2, 3], [3, 2, 1], irreducible=True)
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 3], [3, 0, 1])
    with pytest.raises(ValueError, match="two different"):
        fit_power_law([5, 5], [3, 2])


def test_compute_optimal():
    n, d = chinchilla_optimal(6 * 20 * 70e9 ** 2)
    assert n == pytest.approx(70e9) and d == pytest.approx(1.4e12)
    ns, ds = chinchilla_optimal(np.array([1e21, 1e23]))
    assert ns.shape == (2,) and np.allclose(ds / ns, 20)
    with pytest.raises(ValueError):
        chinchilla_optimal(0)
    # the fitted law's optimum really minimises the loss along 6ND = C
    c = 5.76e23
    n_opt, d_opt = law_optimal(c)
    assert 6 * n_opt * d_opt == pytest.approx(c)
    grid = np.geomspace(n_opt / 10, n_opt * 10, 2001)
    losses = chinchilla_loss(grid, c / (6 * grid))
    assert abs(math.log(grid[losses.argmin()] / n_opt)) < 0.01
    # Chinchilla's own claim: at (about) Gopher's compute, 70B on 1.4T tokens beats 280B on 300B tokens
    assert chinchilla_loss(*MODELS["Chinchilla"]) < chinchilla_loss(*MODELS["Gopher"])
    assert chinchilla_loss(1e30, 1e30) == pytest.approx(CHINCHILLA["E"], abs=1e-3)
    with pytest.raises(ValueError):
        law_optimal(-1.0)
    with pytest.raises(ValueError):
        chinchilla_loss(0, 1)


def test_train_family_and_plot():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 10, (2000,), generator=g)
    configs = family_configs(10, [8, 16], n_layer=1, block=8)
    val = batch_sampler(ids, 8, 4, torch.Generator().manual_seed(1))(0)
    seen = []
    points = train_family(configs, lambda s: batch_sampler(ids, 8, 4, torch.Generator().manual_seed(s)), val,
                          steps=6, batch=4, base_lr=1e-2, on_point=lambda p, ps: seen.append(len(ps)), n_logs=3)
    assert seen == [1, 2] and [p.n_embd for p in points] == [8, 16]
    p = points[1]
    assert p.tokens == 6 * 4 * 8 and p.flops == pytest.approx(6 * p.n_params * p.tokens)
    assert p.n_params == gpt_non_embedding_params(1, 16) and p.n_total > p.n_params
    assert math.isfinite(p.val_loss) and p.curve_tokens[-1] == p.tokens and len(p.curve_loss) == len(p.curve_tokens)
    assert p.lr == pytest.approx(width_lr(1e-2, 16)) and width_lr(1e-2, 256) == pytest.approx(5e-3)
    with pytest.raises(ValueError, match="block_size"):
        train_family(configs, lambda s: batch_sampler(ids, 8, 4, g), (val[0][:, :4], val[1][:, :4]), steps=1,
                     batch=4, base_lr=1e-2)
    with pytest.raises(ValueError, match="expected \\(batch, block\\)"):
        train_family(configs, lambda s: batch_sampler(ids, 8, 3, g), val, steps=1, batch=4, base_lr=1e-2)
    with pytest.raises(ValueError, match="at least one width"):
        family_configs(10, [])
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    plot_scaling(ax, [1e3, 1e4, 1e5], [3.0, 2.5, 2.2], PowerLaw(4.0, 0.05), n_fit=2, title="t")
    assert len(ax.lines) == 3
    plt.close(fig)


# ---- the chapter's checks accept the reference solutions and reject typical mistakes
def _slope(n, loss):
    return -np.polyfit(np.log(n), np.log(loss), 1)[0]


@pytest.mark.parametrize("name,good,bad", [
    ("scaling_exponent", _slope, lambda n, loss: -np.polyfit(np.log10(n), np.log(loss), 1)[0]),
    ("scaling_exponent", _slope, lambda n, loss: np.polyfit(np.log(n), np.log(loss), 1)[0]),
    ("training_gpu_days", lambda n, d, g, f, u: 6 * n * d / (g * f * u) / 86400,
     lambda n, d, g, f, u: 2 * n * d / (g * f * u) / 86400),
    ("chinchilla_split", lambda c, r: (math.sqrt(c / (6 * r)), r * math.sqrt(c / (6 * r))),
     lambda c, r: (math.sqrt(c / r), r * math.sqrt(c / r))),
    ("extrapolate_loss",
     lambda n, l, m: float(np.exp(np.polyval(np.polyfit(np.log(n), np.log(l), 1), np.log(m)))),
     lambda n, l, m: float(np.polyval(np.polyfit(np.log(n), l, 1), np.log(m)))),
])
def test_scaling_checks(name, good, bad):
    with check.raising():
        getattr(check, name)(good)
        with pytest.raises(check.CheckFailed):
            getattr(check, name)(bad)
