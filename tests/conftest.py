import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def clean_book_env(monkeypatch):
    """Each test starts without the BOOK_* overrides a developer may have exported."""
    for key in ("BOOK_DEVICE", "BOOK_PROFILE", "BOOK_THREADS", "BOOK_STRICT", "BOOK_ASSETS"):
        monkeypatch.delenv(key, raising=False)
