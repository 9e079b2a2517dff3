"""tools/gpu_memory.py: the T4 memory estimate of every chapter's gpu profile."""
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from book.lab.efficiency import DeepMLP, SavedTensorMeter
from book.nn.counting import count_params
from book.nn.gpt import GPT, GPTConfig
from book.nn.models import LeNet

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_memory", ROOT / "tools" / "gpu_memory.py")
gm = importlib.util.module_from_spec(_spec)
sys.modules["gpu_memory"] = gm          # dataclasses look their module up by name
_spec.loader.exec_module(gm)


def test_gpt_state_is_param_count_times_bytes():
    # hand check: vocab 10, block 8, 1 layer, d 16 (head tied to the token embedding):
    # tok 160 + pos 128 + block (4·256 + 4·16 + 2·16·64 + 64 + 16 + 4·16 = 3280) + ln_f 32 = 3600
    w = gm.Workload("tiny", lambda: GPT(GPTConfig(10, 8, 1, 2, 16)), gm.tokens(8), 4, gm.lm_loss, "adamw")
    phase = gm.evaluate_phases([gm.Phase(w)])[0]
    assert phase.measured.params == 3600 == count_params(GPT(GPTConfig(10, 8, 1, 2, 16)))
    assert phase.state_bytes() == 3600 * 4 * (1 + 1 + 2)          # fp32 weights, grads, AdamW m and v
    sgd = gm.evaluate_phases([gm.Phase(gm.Workload("tiny", w.build, w.inputs, 4, gm.lm_loss, "sgd"))])[0]
    assert sgd.state_bytes() == 3600 * 4 * 2


@pytest.mark.parametrize("name, build, inputs, loss", [
    ("lenet", lambda: LeNet(width=2), gm.images, gm.ce_labels),
    ("deep_mlp", lambda: DeepMLP(depth=4, width=32, n_in=784), lambda b, d: (torch.zeros(b, 784, device=d),),
     gm.ce_labels),
    ("gpt", lambda: GPT(GPTConfig(65, 16, 2, 4, 32)), gm.tokens(16), gm.lm_loss),
])
def test_meta_activations_equal_a_real_cpu_forward(name, build, inputs, loss):
    batch = 8
    meta = gm.measure(gm.Workload(name, build, inputs, batch, loss))
    assert not meta.fallback
    torch.manual_seed(0)
    model = build()
    xs = inputs(batch, torch.device("cpu"))
    # the meta device decomposes attention into the "math" path (keeps the attention weights); force the same
    # kernel on the CPU, whose default flash kernel keeps less -- so meta is an upper bound of the default
    with sdpa_kernel(SDPBackend.MATH), SavedTensorMeter(model.parameters()) as meter:
        loss(model(*xs), xs)
    assert meta.activations == meter.bytes > 0
    with SavedTensorMeter(model.parameters()) as default:
        loss(model(*xs), xs)
    assert default.bytes <= meta.activations


def test_cpu_fallback_scales_batch_one():
    # book.lab.generative's conditional VAE checks its labels' values, which meta tensors do not have
    est = gm.estimate_chapter("generative", gm.gpu_config(ROOT / "chapters" / "generative.ipynb"))
    cvae = next(p for p in est.phases if p.workload and "conditional" in p.workload.name)
    assert cvae.measured.fallback and cvae.measured.activations > 0


def test_gpu_config_reads_the_notebook():
    cfg = gm.gpu_config(ROOT / "chapters" / "gpt.ipynb")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block, cfg.batch) == (6, 6, 384, 256, 64)
    assert gm.gpu_config(ROOT / "chapters" / "scaling_laws.ipynb").n_layer == 2   # cpu value kept (merge)


def test_every_chapter_is_in_the_table_and_fits_a_t4():
    rows = gm.estimate_all(ROOT / "chapters")
    chapters = {p.stem for p in (ROOT / "chapters").glob("*.ipynb")}
    assert {r.chapter for r in rows} == chapters
    table = gm.markdown_table(rows)
    for name in chapters:
        assert f"| {name} |" in table
    too_big = [(r.chapter, r.peak / gm.GiB) for r in rows if not r.fits]
    assert not too_big, f"gpu profiles over a T4's 15 GiB: {too_big}"
    assert all(r.peak >= gm.CUDA_CONTEXT for r in rows)


def test_a_huge_config_is_reported_as_not_fitting():
    # the gpt chapter at GPT-2 medium size, batch 64 x block 1024: tens of GiB of activations
    huge = SimpleNamespace(n_layer=24, n_head=16, n_embd=1024, block=1024, batch=64, val_batches=1)
    est = gm.estimate_chapter("gpt", huge)
    assert not est.fits and est.peak > 2 * gm.T4_USABLE
    assert "**no**" in gm.markdown_table([est])


def test_unknown_chapter_says_what_to_do():
    with pytest.raises(KeyError, match="add a ch_"):
        gm.estimate_chapter("not_a_chapter", SimpleNamespace())


def test_no_grad_peak_tracks_live_tensors_only():
    # a flat Sequential rebinds its running input, so at most two (8, 100) fp32 activations are alive at once
    # (nested Sequentials would hold three: the outer one keeps the inner one's input)
    build = lambda: torch.nn.Sequential(*[m for _ in range(5) for m in (torch.nn.Linear(100, 100),  # noqa: E731
                                                                          torch.nn.ReLU())])
    m = gm.measure(gm.Workload("mlp", build, lambda b, d: (torch.zeros(b, 100, device=d),), 8, None))
    assert m.activations == 2 * 8 * 100 * 4
