import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book import check
from book.lab.compression import (
    CompressionExplorer,
    distillation_loss,
    latency_ms,
    logits_of,
    magnitude_masks,
    make_pruning_permanent,
    prunable,
    prune_finetune_curve,
    scratch_global_prune,
    soft_target_loss,
    state_dict_bytes,
    student_mlp,
    torch_global_prune,
    train_student,
    weight_sparsity,
)
from book.nn.models import LeNet
from book.nn.quantize import (
    Int8Linear,
    affine_qparams,
    dequantize,
    fake_quantize,
    qrange,
    quantize,
    quantize_dynamic_int8,
    quiet_quantization_warnings,
    symmetric_qparams,
    torch_quantize,
)

HAS_QTENSOR = torch_quantize(torch.ones(2), 0.1) is not None


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


# ----------------------------------------------------------------------------- quantization


def test_qrange_and_errors():
    assert qrange(8) == (-128, 127) and qrange(8, False) == (0, 255) and qrange(4) == (-8, 7)
    for bad in (1, 9, 8.0):
        with pytest.raises(ValueError, match="bits"):
            qrange(bad)


def test_symmetric_roundtrip_error_is_at_most_half_a_step():
    x = _x(64, 33)
    for dim in (None, 0, 1):
        s, z = symmetric_qparams(x, 8, dim)
        assert (z == 0).all()
        q = quantize(x, s, z, dim=dim)
        assert q.dtype == torch.int8 and q.abs().max() == 127           # the extreme lands exactly on ±127
        err = (dequantize(q, s, z, dim=dim) - x).abs()
        step = s if dim is None else s.reshape([-1 if d == dim else 1 for d in range(2)])
        assert (err <= step / 2 + 1e-6).all()
    # per channel is never worse than per tensor
    assert (fake_quantize(x, 4, dim=0) - x).abs().mean() <= (fake_quantize(x, 4) - x).abs().mean()


@pytest.mark.skipif(not HAS_QTENSOR, reason="this torch has no quantized tensors")
@pytest.mark.parametrize("dim", [None, 0, 1])
@pytest.mark.parametrize("signed", [True, False])
def test_quantize_matches_torch_bit_for_bit(dim, signed):
    x = _x(200, 300, seed=1)
    s, z = (symmetric_qparams if signed else affine_qparams)(x, 8, dim)
    ours = quantize(x, s, z, 8, signed, dim)
    ref = torch_quantize(x, s, z, signed, dim)
    assert ref.dtype == ours.dtype
    diff = (ours.long() - ref.long()).abs()
    # equal codes, except (a few per million) one step apart within float32 rounding of a half-step
    assert diff.max() <= 1 and (diff != 0).float().mean() < 1e-4
    # and dequantize matches torch.dequantize
    with quiet_quantization_warnings():
        if dim is None:
            qt = torch.quantize_per_tensor(x, float(s), int(z), torch.qint8 if signed else torch.quint8)
        else:
            qt = torch.quantize_per_channel(x, s.double(), z, dim, torch.qint8 if signed else torch.quint8)
    assert torch.allclose(dequantize(ref, s, z, dim), qt.dequantize(), atol=1e-6)


@pytest.mark.skipif(not HAS_QTENSOR, reason="this torch has no quantized tensors")
@pytest.mark.parametrize("dim", [None, 0])
def test_affine_qparams_match_minmax_observer(dim):
    with quiet_quantization_warnings():
        from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
        obs = (MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine) if dim is None else
               PerChannelMinMaxObserver(ch_axis=dim, dtype=torch.quint8, qscheme=torch.per_channel_affine))
        x = _x(16, 40, seed=2) + 0.7
        obs(x)
        s_ref, z_ref = obs.calculate_qparams()
    s, z = affine_qparams(x, 8, dim)
    assert torch.allclose(s, s_ref.reshape(s.shape)) and torch.equal(z, z_ref.reshape(z.shape).long())


def test_affine_keeps_zero_exact_and_handles_constant_tensors():
    x = torch.tensor([0.0, 0.3, 1.7, 2.55])
    s, z = affine_qparams(x)
    assert dequantize(quantize(x, s, z, signed=False), s, z)[0] == 0.0
    s, z = symmetric_qparams(torch.zeros(5))
    assert s > 0 and torch.equal(quantize(torch.zeros(5), s, z), torch.zeros(5, dtype=torch.int8))


def test_quantize_errors():
    x = _x(4, 3)
    with pytest.raises(TypeError, match="floating"):
        quantize(torch.ones(3, dtype=torch.int64), 0.1)
    with pytest.raises(TypeError, match="integer codes"):
        dequantize(x, 0.1)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        quantize(x, torch.ones(3), torch.zeros(3), dim=0)
    with pytest.raises(ValueError, match="dim=<channel axis>"):
        quantize(x, torch.ones(4), 0)
    with pytest.raises(ValueError, match="positive"):
        quantize(x, -1.0)
    with pytest.raises(ValueError, match="out of range"):
        symmetric_qparams(x, dim=2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        symmetric_qparams([1.0, 2.0])


# ----------------------------------------------------------------------------- dynamic quantization


def test_int8_linear_matches_float_closely_and_torch_dynamic():
    torch.manual_seed(0)
    lin = nn.Linear(50, 20)
    x = torch.randn(32, 50)
    q = Int8Linear.from_float(lin)
    assert q.weight_int8.dtype == torch.int8
    y, yq = lin(x), q(x)
    assert (yq - y).abs().max() < 0.02 * y.abs().max()
    qmodel, backend = quantize_dynamic_int8(nn.Sequential(lin))
    if backend == "torch.ao":
        assert (qmodel(x) - yq).abs().max() < 0.02 * y.abs().max()
    with pytest.raises(ValueError, match="50 features"):
        q(torch.randn(3, 49))
    with pytest.raises(TypeError, match="nn.Linear"):
        Int8Linear.from_float(nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("force_scratch", [False, True])
def test_quantize_dynamic_lenet_size_and_outputs(force_scratch):
    torch.manual_seed(0)
    m = LeNet().eval()
    x = torch.rand(8, 1, 28, 28)
    qm, backend = quantize_dynamic_int8(m, force_scratch=force_scratch)
    assert backend == ("scratch" if force_scratch else backend)
    assert backend in ("torch.ao", "scratch")
    assert isinstance(m.classifier[1], nn.Linear)                      # the original is untouched
    ratio = state_dict_bytes(m.classifier) / state_dict_bytes(qm.classifier)
    assert 3.5 < ratio < 4.05
    assert (qm(x) - m(x)).abs().max() < 0.05 * m(x).abs().max() + 1e-3


def test_quantize_dynamic_falls_back_when_torch_ao_is_missing(monkeypatch):
    import torch.ao.quantization as tq
    monkeypatch.delattr(tq, "quantize_dynamic")
    with pytest.warns(UserWarning, match="scratch"):
        qm, backend = quantize_dynamic_int8(nn.Sequential(nn.Linear(4, 3)))
    assert backend == "scratch" and isinstance(qm[0], Int8Linear)


def test_size_and_latency_helpers():
    m = nn.Linear(100, 10)
    assert state_dict_bytes(m) > 4 * 1010
    assert latency_ms(m, torch.randn(4, 100), repeats=3) > 0 and m.training
    with pytest.raises(ValueError, match="repeats"):
        latency_ms(m, torch.randn(4, 100), repeats=0)
    with pytest.raises(TypeError, match="nn.Module"):
        state_dict_bytes({"w": torch.ones(2)})


# ----------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.8, 0.95, 1.0])
def test_scratch_pruning_equals_torch_prune(sparsity):
    torch.manual_seed(1)
    a = LeNet()
    b = copy.deepcopy(a)
    torch_global_prune(a, sparsity)
    masks = scratch_global_prune(b, sparsity)
    for (ma, _), (mb, _), mask in zip(prunable(a), prunable(b), masks):
        assert torch.equal(ma.weight_mask, mask)
        assert torch.equal(ma.weight, mb.weight)
    n = sum(m.weight.numel() for m, _ in prunable(a))
    assert weight_sparsity(a) == pytest.approx(round(sparsity * n) / n)
    make_pruning_permanent(a)
    assert not hasattr(a.features[0], "weight_mask") and weight_sparsity(a) == weight_sparsity(b)


def test_magnitude_masks_is_global_and_errors():
    small, big = torch.full((10,), 0.01), torch.full((10,), 5.0)
    m_small, m_big = magnitude_masks([small, big], 0.5)
    assert m_small.sum() == 0 and m_big.sum() == 10                      # global: the small layer goes first
    assert magnitude_masks(torch.arange(4.0) - 1.5, 0.5)[0].tolist() == [1, 0, 0, 1]
    with pytest.raises(ValueError, match="fraction"):
        magnitude_masks([big], 1.5)
    with pytest.raises(ValueError, match="at least one"):
        magnitude_masks([], 0.5)
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        prunable(nn.ReLU())


def test_prune_finetune_keeps_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(64, 1, 4, 4), torch.randint(0, 3, (64,))
    rows = prune_finetune_curve(model, [0.5, 0.9], (x, y), (x, y), ft_steps=5, generator=torch.Generator())
    assert [r["measured"] for r in rows] == pytest.approx([0.5, 0.9], abs=0.01)
    assert all(0 <= r["pruned"] <= 1 and 0 <= r["finetuned"] <= 1 for r in rows)
    assert weight_sparsity(model) == 0                                 # the original is untouched
    # each row keeps its fine-tuned model, mask folded in, for the final test
    assert [weight_sparsity(r["model"]) for r in rows] == pytest.approx([0.5, 0.9], abs=0.01)
    assert not any(hasattr(m, "weight_mask") for r in rows for m in r["model"].modules())
    from book.train import accuracy
    assert accuracy(rows[0]["model"], x, y) == rows[0]["finetuned"]


# ----------------------------------------------------------------------------- distillation


def test_soft_target_loss_matches_definition_and_t_squared():
    s, t = _x(6, 10, seed=3), _x(6, 10, seed=4)
    for T in (1.0, 3.0):
        p, q = F.softmax(s / T, 1), F.softmax(t / T, 1)
        kl = (q * (q.log() - p.log())).sum(1).mean()
        assert torch.allclose(soft_target_loss(s, t, T), T * T * kl, atol=1e-5)
    # the T² factor keeps the gradient scale: with it, grads at T=4 and T=16 agree within 2x; without, 16x apart
    norms = []
    for T in (4.0, 16.0):
        z = s.clone().requires_grad_(True)
        soft_target_loss(z, t, T).backward()
        norms.append(z.grad.norm().item())
    assert 0.5 < norms[0] / norms[1] < 2
    assert torch.allclose(distillation_loss(s, t, torch.zeros(6, dtype=torch.long), 2.0, 1.0),
                          soft_target_loss(s, t, 2.0))
    assert torch.allclose(distillation_loss(s, t, torch.zeros(6, dtype=torch.long), 2.0, 0.0),
                          F.cross_entropy(s, torch.zeros(6, dtype=torch.long)))
    assert soft_target_loss(s, s, 3.0).abs() < 1e-6


def test_distillation_errors():
    s = torch.zeros(4, 10)
    with pytest.raises(ValueError, match=r"\(B, n_classes\)"):
        soft_target_loss(s, torch.zeros(4, 9))
    with pytest.raises(ValueError, match="positive"):
        soft_target_loss(s, s, T=0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, torch.zeros(4, dtype=torch.long), alpha=2)
    with pytest.raises(ValueError, match="class indices"):
        distillation_loss(s, s, torch.zeros(4))
    with pytest.raises(ValueError, match="logits_of"):
        train_student(student_mlp(4), torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long),
                      torch.zeros(5, 10), steps=1)


def test_train_student_learns_and_same_batches():
    torch.manual_seed(0)
    x = torch.rand(256, 1, 28, 28)
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    tl = logits_of(teacher, x)
    assert tl.shape == (256, 2)
    s = student_mlp(8, n_out=2)
    h = train_student(s, x, y, tl, steps=40, generator=torch.Generator().manual_seed(0))
    assert len(h.train_loss) >= 1
    a, b = student_mlp(8, n_out=2), student_mlp(8, n_out=2)
    b.load_state_dict(a.state_dict())
    train_student(a, x, y, steps=20, generator=torch.Generator().manual_seed(1))
    train_student(b, x, y, steps=20, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# ----------------------------------------------------------------------------- explorer


def test_explorer_draws_and_plays():
    import matplotlib
    matplotlib.use("Agg")
    torch.manual_seed(0)
    m = LeNet()
    ex = CompressionExplorer(m, torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,)),
                             sparsities=(0.0, 0.9), bit_widths=(32, 4), sparsity=0.5)
    assert ex.settings == {"sparsity": 0.5, "bits": 32}
    acc = ex.draw(sparsity=0.9, bits=4)
    assert 0 <= acc <= 1 and (0.9, 4) in ex.cache and (0.0, 32) in ex.cache
    c = ex.compressed(0.9, 4)
    assert abs(weight_sparsity(c) - 0.9) < 0.01 and weight_sparsity(m) == 0
    html = ex.player(("sparsity", "bits"), [(0.0, 32), (0.9, 4)])
    assert "<script" in html.data
    assert ex.show().live is not None and ex.settings == {"sparsity": 0.5, "bits": 32}
    with pytest.raises(ValueError, match="bits"):
        ex.draw(bits=1)
    with pytest.raises(ValueError, match="sparsity"):
        CompressionExplorer(m, torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), sparsity=1.5)


# ----------------------------------------------------------------------------- checks


def _sym(x):
    s = x.abs().max() / 127
    return torch.round(x / s).to(torch.int8), s


def _aff(x):
    lo, hi = min(x.min(), 0), max(x.max(), 0)
    s = (hi - lo) / 255
    return s, int(-torch.round(lo / s))


def _mask(w, sparsity):
    k = round(sparsity * w.numel())
    m = torch.ones_like(w).reshape(-1)
    if k:
        m[w.abs().reshape(-1).argsort()[:k]] = 0
    return m.reshape(w.shape).bool()


def _kd(s, t, T):
    p, q = F.log_softmax(s / T, 1), F.log_softmax(t / T, 1)
    return T ** 2 * (q.exp() * (q - p)).sum(1).mean()


def _csr(w):
    nnz = int((w != 0).sum())
    return 12 * nnz + 8 * (w.shape[0] + 1)


@pytest.mark.parametrize("name,good,bad", [
    ("quantize_symmetric", _sym, lambda x: (torch.round(x / (x.max() / 127)).to(torch.int8), x.max() / 127)),
    ("affine_params", _aff, lambda x: ((x.max() - x.min()) / 255,
                                       int(-torch.round(x.min() / ((x.max() - x.min()) / 255))))),
    ("magnitude_mask", _mask, lambda w, s: _mask(w.abs().neg() + w.abs().max() + 1, s)),
    ("kd_loss", _kd, lambda s, t, T: _kd(s, t, T) / T ** 2),
    ("csr_bytes", _csr, lambda w: 12 * int((w != 0).sum())),
])
def test_checks_accept_the_solution_and_reject_a_wrong_one(name, good, bad):
    fn = getattr(check, name)
    with check.raising():
        fn(good)
        with pytest.raises(check.CheckFailed):
            fn(bad)


def test_magnitude_mask_check_rejects_signed_ranking():
    with check.raising(), pytest.raises(check.CheckFailed):
        check.magnitude_mask(lambda w, s: _mask(w - w.min(), s))          # ranks by w, not |w|


def test_no_warnings_leak_from_quantization():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_dynamic_int8(nn.Sequential(nn.Linear(4, 3)))
        torch_quantize(torch.ones(3), 0.1)
        state_dict_bytes(quantize_dynamic_int8(nn.Sequential(nn.Linear(4, 3)))[0])
