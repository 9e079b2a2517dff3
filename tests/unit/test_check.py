import pytest
import torch

from book import check
from book.check.core import Case, close, run_cases


def test_close_handles_numbers_tensors_and_tuples():
    assert close(1.0, 1.0 + 1e-9)[0]
    assert close(torch.ones(2), torch.ones(2))[0]
    assert close((torch.ones(2), 3.0), (torch.ones(2), 3.0))[0]
    ok, why = close([1.0, 2.0], torch.ones(2))
    assert not ok and "torch.Tensor" in why
    ok, why = close(torch.ones(3), torch.ones(2))
    assert not ok and "shape" in why
    ok, why = close(torch.ones(2), (torch.ones(2), torch.ones(2)))
    assert not ok and "tuple of 2" in why
    ok, why = close("abc", 1.0)
    assert not ok


def test_report_lists_cases(capsys):
    cases = [Case((2,), 4), Case((3,), 9, public=False)]
    assert run_cases("square", lambda v: v * v, cases)
    out = capsys.readouterr().out
    assert "2/2 cases passed ✓" in out and "case 2 (extra)" in out
    assert check.results["square"] == (2, 2)


def test_failures_errors_and_stubs_are_reported(capsys):
    cases = [Case((2,), 4), Case((3,), 9, public=False)]
    assert not run_cases("square", lambda v: v + v, cases, hint="multiply")
    out = capsys.readouterr().out
    assert "1/2" in out and "expected 9" not in out and "(hidden inputs)" in out and "hint: multiply" in out

    def broken(v):
        raise ZeroDivisionError("oops")
    run_cases("square", broken, cases)
    assert "raised ZeroDivisionError: oops" in capsys.readouterr().out

    def stub(v):
        raise NotImplementedError
    assert not run_cases("square", stub, cases)
    assert "not attempted yet" in capsys.readouterr().out


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("BOOK_STRICT", "1")
    with pytest.raises(check.CheckFailed, match="square: 0/1"):
        run_cases("square", lambda v: 0, [Case((2,), 4)])
    run_cases("square", lambda v: v * v, [Case((2,), 4)])  # passing checks do not raise


def test_raising_context_is_strict_only_inside():
    with pytest.raises(check.CheckFailed):
        with check.raising():
            run_cases("square", lambda v: 0, [Case((2,), 4)])
    assert not check.strict()
    run_cases("square", lambda v: 0, [Case((2,), 4)])  # outside: reports, does not raise


def test_check_needs_a_function():
    with pytest.raises(TypeError, match=r"check.quadratic_grad\(my_fn\)"):
        check.quadratic_grad(torch.zeros(2))


# ---- the chapter checks accept the reference solutions and reject typical mistakes
def quadratic_grad(t):
    return torch.stack([2 * (t[0] - 1), 2 * (t[1] - 2)])


def momentum_step(theta, v, grad, lr, mu):
    v = mu * v + grad
    return theta - lr * v, v


def adam_step(theta, m, v, grad, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    return theta - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps), m, v


def adam_no_correction(theta, m, v, grad, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad ** 2
    return theta - lr * m / (v.sqrt() + eps), m, v


@pytest.mark.parametrize("name,good,bad", [
    ("quadratic_grad", quadratic_grad, lambda t: torch.stack([2 * (t[0] - 1), 2 * (t[1] - 1)])),
    ("momentum_step", momentum_step, lambda th, v, g, lr, mu: (th - lr * g, v)),
    ("adam_step", adam_step, adam_no_correction),
    ("max_stable_lr", lambda c: 2 / max(c), lambda c: 1 / max(c)),
])
def test_chapter_checks(name, good, bad, check_verdict):
    check_verdict(name, good, bad)


def test_every_check_module_is_registered_one_way():
    """book/check/<module>.py is registered by its name in MODULES and its __all__; nothing else."""
    import ast
    from pathlib import Path

    import book.check as bc
    folder = Path(bc.__file__).parent
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "core", "_reference"}
    assert set(bc.MODULES) == modules
    for name in bc.MODULES:
        tree = ast.parse((folder / f"{name}.py").read_text())
        public = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
        mod = __import__(f"book.check.{name}", fromlist=["__all__"])
        assert set(mod.__all__) == public, f"book.check.{name}: __all__ and its public functions differ"
        assert all(getattr(bc, f) is getattr(mod, f) for f in mod.__all__)


def test_single_number_comparators_refuse_what_is_not_one_number():
    """Every comparator of a single number starts with ``core._number``: an answer that is not one number
    fails with the same message, and one that is passes or fails on its value."""
    from book.check import core, few_shot, graphs, losses_activations, vision_tasks
    comparators = [(core._rel, (2.0,), 2.0), (losses_activations._close_float, (2.0,), 2.0),
                   (vision_tasks._num, (2.0, 1e-6), 2.0), (few_shot._coverage_ok, ((0.9, 0.05),), 139),
                   (graphs._homophily_ok, (0.5,), 0.5), (graphs._neutral_ok, ((2, 3),), 1 / 3)]
    for compare, args, right in comparators:
        for wrong in ("half", None, [1.0, 2.0], torch.zeros(2)):
            ok, why = compare(wrong, *args)
            assert not ok and why.startswith("expected a number, got "), (compare.__name__, wrong, why)
        assert compare(torch.tensor(right), *args) == (True, ""), compare.__name__
        assert not compare(2 * right, *args)[0], compare.__name__
