"""The tools chapter's checks accept the reference solutions and reject wrong ones."""
import pytest

from book import check
from book.check import raising


def test_checks_accept_solutions_and_reject_wrong_ones():
    def ema(vals, w):
        out, s = [], vals[0]
        for v in vals:
            s = w * s + (1 - w) * v
            out.append(s)
        return out
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
