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
