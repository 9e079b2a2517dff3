import pytest
import torch

from book.config import Env, pick_device, pick_profile, seed_everything, setup


def test_default_device_is_best_available():
    dev = pick_device()
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert dev.type == expected


def test_env_var_overrides_device(monkeypatch):
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_explains_how_to_fix(monkeypatch):
    monkeypatch.setenv("BOOK_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available.*BOOK_DEVICE"):
        pick_device()


def test_nonsense_device_is_rejected():
    with pytest.raises(RuntimeError):
        pick_device("gpu")


def test_profile_follows_device_and_env(monkeypatch):
    assert pick_profile(torch.device("cpu")) == "cpu"
    assert pick_profile(torch.device("cuda")) == "gpu"
    monkeypatch.setenv("BOOK_PROFILE", "gpu")
    assert pick_profile(torch.device("cpu")) == "gpu"
    monkeypatch.setenv("BOOK_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        pick_profile(torch.device("cpu"))


def test_pick_merges_gpu_over_cpu(monkeypatch):
    env = setup(seed=1, device="cpu", profile="gpu", verbose=False)
    cfg = env.pick(cpu=dict(epochs=2, width=8), gpu=dict(epochs=9))
    assert (cfg.epochs, cfg.width) == (9, 8)
    env = setup(seed=1, device="cpu", profile="cpu", verbose=False)
    assert env.pick(cpu=dict(epochs=2), gpu=dict(epochs=9)).epochs == 2


def test_pick_rejects_gpu_only_keys_and_non_dicts():
    env = setup(seed=0, device="cpu", verbose=False)
    with pytest.raises(KeyError, match="cpu profile lacks"):
        env.pick(cpu=dict(epochs=1), gpu=dict(width=3))
    with pytest.raises(TypeError):
        env.pick(cpu=[("epochs", 1)])


def test_seed_everything_is_reproducible():
    seed_everything(3)
    a = torch.randn(4)
    g = seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(TypeError):
        seed_everything(1.5)


def test_setup_prints_and_applies_threads(monkeypatch, capsys):
    old = torch.get_num_threads()
    try:
        monkeypatch.setenv("BOOK_THREADS", "1")
        env = setup(seed=0, device="cpu")
        assert env.threads == 1 and torch.get_num_threads() == 1
        out = capsys.readouterr().out
        assert "device=cpu" in out and "profile=cpu" in out and "seed=0" in out
        assert env.amp_dtype is None and not env.cuda
        monkeypatch.setenv("BOOK_THREADS", "two")
        with pytest.raises(ValueError, match="BOOK_THREADS"):
            setup(seed=0, device="cpu", verbose=False)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16),   # T4 (Colab's free GPU)
                                                  ((7, 0), torch.float16),   # V100
                                                  ((8, 0), torch.bfloat16),  # A100
                                                  ((9, 0), torch.bfloat16)])  # H100
def test_amp_dtype_is_fp16_below_ampere_and_never_bf16_there(monkeypatch, capability, expected):
    """No T4 is needed: the CUDA capability is mocked. fp16 below 8.0 (then `fit` adds loss scaling)."""
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    env = Env(device=torch.device("cuda"), profile="gpu", seed=0, threads=1, generator=torch.Generator())
    assert env.amp_dtype == expected and asked == [torch.device("cuda")]
    cpu = Env(device=torch.device("cpu"), profile="cpu", seed=0, threads=1, generator=torch.Generator())
    assert cpu.amp_dtype is None



def test_dry_run_shrinks_counts_and_keeps_sizes(monkeypatch):
    from book.config import shrink
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    env = setup(seed=0, device="cpu", verbose=False)
    assert env.dry and env.profile == "gpu"            # the gpu configuration, on whatever device
    cfg = env.pick(cpu=dict(steps=500, epochs=6, batch=32, block=64, test_per_class=100, seeds=5, lr=1e-3,
                            kd_steps=(1000, 3000), recipe=dict(steps=4000, n_embd=256), val_batches=1),
                   gpu=dict(steps=5000, epochs=15, batch=64, block=256, test_per_class=300, val_batches=100))
    # evaluation batches: one (always a valid count); steps: two (a schedule or a loop may need a second)
    assert (cfg.steps, cfg.epochs, cfg.seeds, cfg.kd_steps, cfg.val_batches) == (2, 1, 2, (2, 4), 1)
    assert (cfg.batch, cfg.block, cfg.test_per_class, cfg.lr) == (64, 256, 300, 1e-3)  # what can be wrong
    assert cfg.recipe == {"steps": 2, "n_embd": 256}
    assert shrink("seeds", [3, 4, 5]) == [3] and shrink("pretrain_live", True) is True
    monkeypatch.setenv("BOOK_DRYRUN", "0")
    assert not setup(seed=0, device="cpu", verbose=False).dry


def test_dry_run_evaluates_the_first_examples_only(monkeypatch):
    from book.config import DRY_EVAL
    from book.train import evaluate
    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(500, 3), torch.randint(0, 2, (500,))
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    full = evaluate(model, x, y)
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    dry = evaluate(model, x, y)
    monkeypatch.setenv("BOOK_DRYRUN", "0")
    first = evaluate(model, x[:DRY_EVAL], y[:DRY_EVAL])
    assert calls == [500, DRY_EVAL, DRY_EVAL]
    assert dry == pytest.approx(first) and dry != pytest.approx(full)


def test_dry_run_epoch_is_a_few_batches(monkeypatch):
    from book.config import DRY_COUNT
    from book.train import batches_per_epoch, fit
    x, y = torch.randn(1000, 3), torch.randint(0, 2, (1000,))

    def steps_of(epochs):
        model = torch.nn.Linear(3, 2)
        h = fit(model, (x, y), torch.optim.SGD(model.parameters(), lr=0.1), epochs=epochs,
                batch_size=100, log_every=1, progress=False)
        return h.step[-1]
    assert steps_of(2) == 20                      # ten batches an epoch
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    assert steps_of(2) == 2 * DRY_COUNT           # the dry run: DRY_COUNT batches an epoch
    assert batches_per_epoch(1000, 100) == DRY_COUNT and batches_per_epoch(50, 100) == 1
    monkeypatch.setenv("BOOK_DRYRUN", "0")
    assert batches_per_epoch(1000, 100) == 10 and batches_per_epoch(1001, 100) == 11
    with pytest.raises(ValueError, match="batch_size >= 1"):
        batches_per_epoch(10, 0)
    model = torch.nn.Linear(3, 2)                 # steps= (a get_batch function) is not capped here
    h = fit(model, lambda s: (x[:10], y[:10]), torch.optim.SGD(model.parameters(), lr=0.1),
            steps=7, log_every=1, progress=False)
    assert h.step[-1] == 7


def test_dry_run_counts_notebook_asserts_but_still_evaluates_them():
    import ast

    from book.config import DRY_ASSERTS, _CountAsserts, _dry_assert
    code = "x = 1\nassert x == 2, 'learning threshold'\ny = 3\nassert undefined_name > 0"
    tree = ast.fix_missing_locations(_CountAsserts().visit(ast.parse(code)))
    ns = {"__book_dry_assert__": _dry_assert}
    DRY_ASSERTS.clear()
    with pytest.raises(NameError):                      # an error computing the condition still fails
        exec(compile(tree, "<cell>", "exec"), ns)
    assert ns["y"] == 3 and DRY_ASSERTS == [(False, "x == 2")]


def test_dry_overrides_apply_only_in_the_dry_run(monkeypatch):
    kw = dict(cpu=dict(steps=10, mlp_batch=256), gpu=dict(mlp_batch=16384), dry=dict(mlp_batch=1024))
    monkeypatch.setenv("BOOK_DRYRUN", "1")
    assert setup(device="cpu", verbose=False).pick(**kw).mlp_batch == 1024
    monkeypatch.delenv("BOOK_DRYRUN")
    assert setup(device="cpu", profile="gpu", verbose=False).pick(**kw).mlp_batch == 16384
    with pytest.raises(KeyError, match="dry profile"):
        setup(device="cpu", verbose=False).pick(cpu=dict(a=1), dry=dict(b=2))


def test_sync_accepts_every_device_type_and_rejects_nonsense():
    from book.config import sync
    sync("cpu")
    sync(torch.device("cpu"))
    with pytest.raises(RuntimeError):
        sync("gpu")
