import shutil
import urllib.request

import pytest
import torch

from book import data
from book.data import ChecksumError, asset, batches, load_mnist, load_text, make_2d


def test_shipped_checksums_match():
    for name, digest in data.CHECKSUMS.items():
        assert data.sha256(data.assets_dir() / "data" / name) == digest, name


def test_every_shipped_file_has_a_checksum():
    shipped = {p.name for p in (data.assets_dir() / "data").iterdir()}
    assert shipped == set(data.CHECKSUMS), "add new data files to CHECKSUMS (or remove stray files)"


def test_damaged_file_is_reported_by_name(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    for name in data.CHECKSUMS:
        shutil.copy(data.assets_dir() / "data" / name, tmp_path / "data" / name)
    with open(tmp_path / "data" / "tinyshakespeare.txt.xz", "ab") as f:
        f.write(b"x")
    monkeypatch.setenv("BOOK_ASSETS", str(tmp_path))
    with pytest.raises(ChecksumError, match="tinyshakespeare.txt.xz.*git checkout"):
        load_text()
    (tmp_path / "data" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_mnist()
    with pytest.raises(KeyError, match="not a shipped data file"):
        asset("cifar10.tar")


def test_mnist_split_shapes_ranges_and_determinism():
    s = load_mnist(n_train=8000, split_seed=0)
    assert s.x_train.shape == (8000, 1, 28, 28) and s.x_test.shape == (2000, 1, 28, 28)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert 0.0 == s.x_train.min() and s.x_train.max() == 1.0
    assert set(s.y_test.tolist()) == set(range(10))
    assert torch.bincount(s.y_train).min() > 600  # every digit well represented
    again = load_mnist(n_train=8000, split_seed=0)
    assert torch.equal(s.y_test, again.y_test)
    other = load_mnist(n_train=8000, split_seed=1)
    assert not torch.equal(s.y_test, other.y_test)
    assert "8000/2000" in repr(s)


def test_mnist_bad_n_train():
    with pytest.raises(ValueError, match="n_train"):
        load_mnist(n_train=10000)


def test_full_mnist_falls_back_offline(monkeypatch, tmp_path):
    def no_network(*a, **k):
        raise OSError("no network in this test")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(data.Path, "home", lambda: tmp_path)
    with pytest.warns(UserWarning, match="full MNIST unavailable"):
        s = load_mnist(full=True)
    assert len(s.x_train) == 8000


def test_idx_parser_rejects_bad_files():
    with pytest.raises(ValueError, match="unsigned-byte"):
        data._read_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="truncated"):
        data._read_idx(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")


def test_tiny_shakespeare():
    text = load_text()
    assert len(text) == 1_115_394 and len(set(text)) == 65
    assert text.startswith("First Citizen:")
    with pytest.raises(KeyError):
        load_text("wikipedia")


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_toy_datasets(name):
    x, y = make_2d(name, n=300, noise=0.05, seed=1)
    assert x.shape == (300, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) == {0, 1} and abs(y.float().mean() - 0.5) < 0.1
    assert x.abs().max() < 3
    assert torch.equal(make_2d(name, n=300, noise=0.05, seed=1)[0], x)


def test_toy_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_2d("swissroll")
    with pytest.raises(ValueError, match="at least 2"):
        make_2d("moons", n=1)


def test_batches_cover_everything_once():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(b[1]) for b in batches(x, y, 4, shuffle=False)] == [4, 4, 2]
    with pytest.raises(ValueError, match="different lengths"):
        next(batches(x, y[:5], 2))
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(x, y, 0))


def test_installed_assets_are_found_without_a_checkout(monkeypatch, tmp_path):
    """Outside a checkout (pip-installed in Colab) the assets come from the `book_assets` package."""
    import importlib.util
    from types import SimpleNamespace

    fake = tmp_path / "site-packages" / "book_assets"
    (fake / "data").mkdir(parents=True)
    monkeypatch.setattr(data, "__file__", str(tmp_path / "site-packages" / "book" / "data.py"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(fake)]))
    assert data.assets_dir() == fake
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="reinstall the book package"):
        data.assets_dir()


def test_validation_split_is_carved_from_training_and_leaves_test_alone():
    plain, split = load_mnist(), load_mnist(n_val=1000)
    assert torch.equal(plain.x_test, split.x_test) and torch.equal(plain.y_test, split.y_test)
    assert torch.equal(plain.x_train[:7000], split.x_train) and torch.equal(plain.x_train[7000:], split.x_val)
    assert split.y_val.shape == (1000,) and "val (1000, 1, 28, 28)" in repr(split)
    assert split.to("cpu").x_val.shape == (1000, 1, 28, 28) and plain.x_val is None
    with pytest.raises(ValueError, match="already has a validation set"):
        split.with_validation(10)
    with pytest.raises(ValueError, match="n_val must be between 1 and 7999"):
        plain.with_validation(8000)
