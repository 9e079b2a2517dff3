"""book.nn.lora: LoRA equals the dense update, merges/unmerges exactly, freezes the base, counts memory."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from book import check
from book.check import raising
from book.nn.gpt import GPT, GPTConfig
from book.nn.lora import (
    LoRALinear,
    adapter_state_dict,
    add_lora,
    lora_layers,
    merge_lora,
    trainable_parameters,
    training_memory_bytes,
    unmerge_lora,
)


def test_lora_linear_is_the_dense_update_and_merges_exactly():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    W0 = base.weight.detach().clone()
    m = LoRALinear(base, r=3, alpha=6)
    x = torch.randn(4, 12)
    assert torch.equal(m(x), base(x))                  # B = 0 at initialisation
    with torch.no_grad():
        m.B.normal_()
    dense = F.linear(x, W0 + 2.0 * m.B @ m.A, base.bias)
    assert torch.allclose(m(x), dense, atol=1e-5)
    assert torch.allclose(m.weight, W0 + m.delta_weight())
    y = m(x)
    m.merge()
    m.merge()                                          # idempotent
    assert m.merged and torch.allclose(m(x), y, atol=1e-5) and torch.allclose(m.weight, base.weight)
    m.unmerge()
    m.unmerge()
    assert not m.merged and torch.allclose(base.weight, W0, atol=1e-6)
    assert "r=3" in repr(m)


def test_gradients_reach_only_A_and_B():
    m = LoRALinear(nn.Linear(5, 5), r=2)
    m(torch.randn(3, 5)).sum().backward()
    assert m.base.weight.grad is None and m.base.bias.grad is None
    assert m.A.grad is not None and m.B.grad is not None


def test_errors_are_helpful():
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="rank r must be in 1..4"):
        LoRALinear(nn.Linear(4, 10), r=5)
    with pytest.raises(ValueError, match="linear layers are"):
        add_lora(nn.Sequential(nn.Linear(2, 2)), targets=("qkv",))
    with pytest.raises(KeyError, match="not a module"):
        add_lora(nn.Sequential(nn.Linear(2, 2)), targets=("0",), r=1, train=("head",))
    with pytest.raises(ValueError, match="optimizer"):
        training_memory_bytes(nn.Linear(2, 2), "lion")


def test_add_lora_on_gpt_counts_and_adapter():
    torch.manual_seed(0)
    model = GPT(GPTConfig(20, 16, 2, 2, 32))
    wrapped = add_lora(model, r=4, targets=("qkv", "proj", "mlp.0", "mlp.2"), train=("ln_f",))
    assert len(wrapped) == 8 and len(lora_layers(model)) == 8
    per_block = 4 * (32 + 96) + 4 * (32 + 32) + 4 * (32 + 128) + 4 * (128 + 32)
    assert trainable_parameters(model) == 2 * per_block + 64          # + ln_f weight and bias
    mem = training_memory_bytes(model, "adam")
    assert mem["optimizer"] == 2 * mem["gradients"] == 2 * 4 * trainable_parameters(model)
    adapter = adapter_state_dict(model)
    assert all("A" in k.split(".")[-1] or "B" in k.split(".")[-1] or k.startswith("ln_f") for k in adapter)
    x = torch.randint(0, 20, (2, 16))
    for m in lora_layers(model):
        with torch.no_grad():
            m.B.normal_(std=0.1)
    y = model(x)
    merge_lora(model)
    assert torch.allclose(model(x), y, atol=1e-4)
    unmerge_lora(model)
    assert torch.allclose(model(x), y, atol=1e-5)


def test_checks_accept_solutions_and_reject_wrong_ones():
    with raising():
        check.lora_params(lambda di, do, r: r * (di + do))
        check.lora_forward(lambda x, W, b, A, B, a, r: x @ W.T + b + (a / r) * (x @ A.T) @ B.T)
        check.merge_weight(lambda W, A, B, a, r: W + (a / r) * B @ A)
        check.update_rank(lambda A, B: int(torch.linalg.matrix_rank(B @ A)))
        check.adam_training_bytes(lambda n, b=4: 3 * n * b)
        check.break_even_rank(lambda di, do: -(-di * do // (di + do)))
        for name, wrong in [("lora_params", lambda di, do, r: di * do),
                            ("lora_forward", lambda x, W, b, A, B, a, r: x @ W.T + b + (x @ A.T) @ B.T),
                            ("merge_weight", lambda W, A, B, a, r: W + B @ A),
                            ("update_rank", lambda A, B: A.shape[0]),
                            ("adam_training_bytes", lambda n, b=4: 2 * n * b),
                            ("break_even_rank", lambda di, do: di * do // (di + do))]:   # rounds down
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
