"""The tools chapter's checks accept the reference solutions and reject wrong ones."""
import pytest

from book import check
from book.check import raising


def test_checks_accept_solutions_and_reject_wrong_ones():
    from book.check._reference import _ema_ref as ema   # the teacher's answer

    with raising():
        check.amdahl(lambda p, s: 1 / ((1 - p) + p / s))
        check.matmul_intensity(lambda m, n, k, b: 2 * m * n * k / ((m * k + k * n + m * n) * b))
        check.attainable(lambda i, p, bw: min(p, i * bw))
        check.ema(ema)
        for name, wrong in [("amdahl", lambda p, s: s),
                            ("matmul_intensity", lambda m, n, k, b: 2 * m * n * k / b),
                            ("attainable", lambda i, p, bw: p),
                            ("ema", lambda v, w: v)]:
            with pytest.raises(check.CheckFailed):
                getattr(check, name)(wrong)
