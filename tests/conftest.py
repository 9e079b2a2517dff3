import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def clean_book_env(monkeypatch):
    """Each test starts without the BOOK_* overrides a developer may have exported."""
    for key in ("BOOK_DEVICE", "BOOK_PROFILE", "BOOK_THREADS", "BOOK_STRICT", "BOOK_ASSETS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def check_verdict(monkeypatch):
    """``check_verdict(name, good, bad)``: the exercise check ``book.check.<name>`` accepts ``good`` and
    rejects ``bad`` (strict mode, as CI runs the chapters). One body for every chapter's check tests."""
    from book import check

    def verdict(name, good, bad):
        monkeypatch.setenv("BOOK_STRICT", "1")
        getattr(check, name)(good)
        with pytest.raises(check.CheckFailed):
            getattr(check, name)(bad)
    return verdict


# ---- scheduling the chapter runs (tests/colab, tests/student) -------------------------------------------
# `make chapters` runs the Colab runs and the student dry runs in one pytest session, two workers. Started
# longest first, the two workers finish within a short chapter of each other instead of one idling while
# the other runs the slowest chapter last. The order comes from tests/chapter_seconds.json (seconds per
# test id, measured; a new chapter counts as the median); every run writes what it measured to
# _build/chapter-seconds.json, to copy over the table when chapters change a lot.
_SECONDS = os.path.join(os.path.dirname(__file__), "chapter_seconds.json")
_MEASURED = os.path.join(os.path.dirname(__file__), os.pardir, "_build", "chapter-seconds.json")


def _is_chapter_run(nodeid: str) -> bool:
    return any(part in nodeid for part in ("tests/colab/", "tests/student/"))


def _read_seconds(path: str) -> dict:
    """``{test id: seconds}`` from ``path``; empty when the file is missing or unreadable."""
    import json
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config, items):
    long = [it for it in items if it.get_closest_marker("long")]   # e.g. the checkpoint rebuild
    items[:] = long + [it for it in items if it not in long]
    runs = [it for it in items if _is_chapter_run(it.nodeid)]
    if len(runs) < 2:
        return
    import statistics
    seconds = _read_seconds(_SECONDS)
    default = statistics.median(seconds.values()) if seconds else 0.0
    runs.sort(key=lambda it: -seconds.get(it.nodeid.split("::", 1)[-1], default))
    rest = [it for it in items if not _is_chapter_run(it.nodeid)]
    items[:] = runs + rest


def pytest_runtest_logreport(report):
    if report.when != "call" or not _is_chapter_run(report.nodeid):
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):   # the controller writes (it sees every worker's report)
        return
    import json
    measured = _read_seconds(_MEASURED)
    measured[report.nodeid.split("::", 1)[-1]] = round(report.duration, 1)
    os.makedirs(os.path.dirname(_MEASURED), exist_ok=True)
    with open(_MEASURED, "w", encoding="utf-8") as f:
        json.dump(measured, f, indent=1, sort_keys=True)
