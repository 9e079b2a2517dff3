"""The transformer_block chapter: its configurable block against book.nn.gpt.Block and PyTorch, the stage
ladder, the training run, the live monitor, and the exercise checks."""
import math

import pytest
import torch
from torch import nn

from book.lab.transformer_block import Stage, StageBlock, StageLM, StageMonitor, build_up, train_stage
from book.nn.gpt import GPT, Block, GPTConfig


def _cfg(**kw):
    return GPTConfig(vocab_size=11, block_size=8, n_head=2, n_embd=16, **kw)


def test_full_stage_block_is_gpt_block():
    torch.manual_seed(0)
    block, ours = Block(_cfg()).eval(), StageBlock(_cfg()).eval()
    ours.load_state_dict(block.state_dict())          # strict: the same names and shapes
    x = torch.randn(3, 8, 16)
    assert torch.allclose(ours(x), block(x), atol=1e-6)


def test_full_stage_block_matches_torch_encoder_layer():
    torch.manual_seed(1)
    block = StageBlock(_cfg()).eval()
    ref = nn.TransformerEncoderLayer(16, 2, 64, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=True).eval()
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        ref.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        for mine, theirs in ((block.mlp[0], ref.linear1), (block.mlp[2], ref.linear2),
                             (block.ln1, ref.norm1), (block.ln2, ref.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        x = torch.randn(2, 8, 16)
        assert torch.allclose(block(x), ref(x, src_mask=torch.ones(8, 8, dtype=torch.bool).triu(1)), atol=1e-5)


def test_switched_off_parts_are_gone_and_computed_as_said():
    torch.manual_seed(2)
    x = torch.randn(2, 8, 16)
    bare = StageBlock(_cfg(), mlp=False, residual=False, layernorm=False).eval()
    assert bare.mlp is None and isinstance(bare.ln1, nn.Identity)
    assert torch.allclose(bare(x), bare.attn(x))
    res = StageBlock(_cfg(), mlp=True, residual=True, layernorm=False).eval()
    h = x + res.attn(x)
    assert torch.allclose(res(x), h + res.mlp(h), atol=1e-6)
    nores = StageBlock(_cfg(), mlp=True, residual=False, layernorm=False).eval()
    assert torch.allclose(nores(x), nores.mlp(nores.attn(x)), atol=1e-6)


def test_ladder_changes_one_thing_per_rung():
    stages = build_up(4)
    assert [s.name for s in stages][0] == "bigram" and not stages[0].attention
    fields = ("attention", "n_head", "mlp", "residual", "layernorm", "n_layer")
    for a, b in zip(stages[1:], stages[2:]):
        assert sum(getattr(a, f) != getattr(b, f) for f in fields) == 1, (a, b)
    last = stages[-1]
    assert last.mlp and last.residual and last.layernorm and last.n_head == 4


def test_stage_models_shapes_params_and_errors():
    for stage in build_up(2):
        model = StageLM(stage, 11, 8, 16)
        assert model(torch.zeros(3, 8, dtype=torch.long)).shape == (3, 8, 11)
    one, heads = (StageLM(s, 11, 8, 16) for s in build_up(2)[1:3])
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in heads.parameters())
    with pytest.raises(ValueError, match="exceeds block_size"):
        one(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        one(torch.zeros(1, 4))


def test_fresh_model_loss_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(GPTConfig(11, block_size=8, n_layer=1, n_head=2, n_embd=16))
    idx = torch.randint(0, 11, (16, 9))
    loss = nn.functional.cross_entropy(model(idx[:, :-1]).reshape(-1, 11), idx[:, 1:].reshape(-1))
    assert abs(loss.item() - math.log(11)) < 0.02


def test_train_stage_is_deterministic_learns_and_the_monitor_replays():
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(400) % 7                       # a periodic text: easy to predict
    val = (ids[:64].view(8, 8), ids[1:65].view(8, 8))
    monitor = StageMonitor({"uniform": math.log(7)})
    runs = []
    for seed in (0, 0, 1):
        monitor.start("heads", seed)
        _, h = train_stage(Stage("heads", n_head=2, residual=True), ids, val, vocab_size=7, block=8, n_embd=16,
                           batch=8, steps=30, lr=1e-2, seed=seed, log_every=10, callbacks=[monitor])
        runs.append(h.val_loss)
    assert runs[0] == runs[1] and runs[0][-1] < math.log(7) - 0.5
    assert monitor._frames() == 3                     # seed 0 only; the repeat replaced the first curve
    html = monitor.replay(max_frames=2).data
    assert "<script" in html
    with pytest.raises(RuntimeError, match="nothing to replay"):
        StageMonitor({}).replay()
    del g


@pytest.mark.parametrize("name,good,bad", [
    ("layernorm_output_var", lambda s2, eps: s2 / (s2 + eps), lambda s2, eps: 1.0),
    ("initial_loss", lambda V: math.log(V), lambda V: math.log2(V)),
    ("pre_norm_block", lambda x, attn, mlp, ln1, ln2: (lambda h: h + mlp(ln2(h)))(x + attn(ln1(x))),
     lambda x, attn, mlp, ln1, ln2: (lambda h: ln2(h + mlp(h)))(ln1(x + attn(x)))),
    ("post_norm_block", lambda x, attn, mlp, ln1, ln2: (lambda h: ln2(h + mlp(h)))(ln1(x + attn(x))),
     lambda x, attn, mlp, ln1, ln2: (lambda h: h + mlp(ln2(h)))(x + attn(ln1(x)))),
])
def test_transformer_block_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
