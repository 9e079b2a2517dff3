"""book.lab.pipeline (messy tables, corpus, serving, views) and the pipeline chapter's checks."""
import json
import threading
import urllib.error
import urllib.request

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from book.lab import pipeline as lab  # noqa: E402
from book.nn.dedup import MinHasher, overlapping_pairs, shingles  # noqa: E402


# ============================================================================ tables
def test_make_table_missingness():
    x, y, full = lab.make_table(4000, "mcar", 0.3, seed=0)
    miss = np.isnan(x[:, 2])
    assert abs(miss.mean() - 0.3) < 0.03 and not np.isnan(x[:, [0, 1, 3]]).any()
    assert np.allclose(x[~miss], full[~miss]) and set(np.unique(y)) == {0, 1}
    x, _, full = lab.make_table(4000, "mnar", 0.3, seed=0)
    miss = np.isnan(x[:, 2])
    assert full[miss, 2].mean() > full[~miss, 2].mean() + 1.0      # the large values go missing
    with pytest.raises(ValueError, match="mcar"):
        lab.make_table(10, "mar")


def test_impute_learns_on_train_and_applies_elsewhere():
    x = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]])
    filled, stats = lab.impute(x, "mean")
    assert np.allclose(stats, [2.0, 6.0]) and np.allclose(filled, [[1, 6], [3, 4], [2, 8]])
    other, _ = lab.impute(np.array([[np.nan, np.nan]]), "mean", stats)
    assert np.allclose(other, [[2.0, 6.0]])
    ind, _ = lab.impute(x, "mean+indicator")
    assert ind.shape == (3, 4) and np.allclose(ind[:, 2:], [[0, 1], [0, 0], [1, 0]])
    assert np.allclose(lab.impute(x, "zero")[0], [[1, 0], [3, 4], [0, 8]])
    assert np.allclose(lab.impute(x, "median")[1], [2.0, 6.0])
    with pytest.raises(ValueError, match="how must be"):
        lab.impute(x, "knn")


def test_fit_logreg_solves_the_penalised_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.logistic(size=500) > 0).astype(float)
    w = lab.fit_logreg(x, y, l2=1e-3)
    xb = np.concatenate([x, np.ones((500, 1))], axis=1)
    p = 1 / (1 + np.exp(-xb @ w))
    assert np.abs(xb.T @ (p - y) / 500 + 1e-3 * w).max() < 1e-8      # the gradient is zero
    assert lab.logreg_accuracy(w, x, y) > 0.75


def test_imputation_scores_and_outliers():
    s = lab.imputation_scores("mnar", 1000, seed=0)
    assert set(s) == set(lab.IMPUTERS) | {"no missing values"}
    assert s["mean+indicator"] > s["mean"] + 0.03
    t = lab.imputation_scores("mcar", 500, seed=0, split="test", methods=("mean",))
    assert set(t) == {"mean", "no missing values"}
    with pytest.raises(ValueError, match="split"):
        lab.imputation_scores("mcar", 10, split="train")
    o = lab.outlier_study(300, seed=1)
    assert o["mse_removed"] < o["mse_all"] / 5 and o["detect"]["IQR fences"] == (1.0, 1.0)


def test_robust_z_and_fences():
    v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert np.allclose(lab.robust_z(v), (v - 3.0) / 1.4826)
    assert lab.iqr_outliers(v).tolist() == [False, False, False, False, True]
    assert abs(lab.plain_z(v)[-1]) < 2.1                              # masking: the outlier hides itself
    with pytest.raises(ValueError, match="median absolute deviation"):
        lab.robust_z(np.array([1.0, 1.0, 1.0, 5.0]))
    assert lab.precision_recall(np.array([True, False]), np.array([True, True])) == (1.0, 0.5)


# ============================================================================ corpus
def test_make_corpus_plants_families():
    c = lab.make_corpus(300, n_topics=4, seed=0)
    n = len(c["texts"])
    assert len(c["labels"]) == len(c["topics"]) == len(c["family"]) == n
    assert len(set(c["family"].tolist())) == c["n_original"] < n
    # family members share their label (noise included) and their topic
    for f in np.unique(c["family"]):
        members = np.flatnonzero(c["family"] == f)
        assert len(set(c["labels"][members])) == 1 and len(set(c["topics"][members])) == 1
    # near-duplicates are more similar than unrelated documents
    sets = [shingles(t) for t in c["texts"]]
    ex = overlapping_pairs(sets)
    same = [j for (a, b), j in ex.items() if c["family"][a] == c["family"][b]]
    other = [j for (a, b), j in ex.items() if c["family"][a] != c["family"][b]]
    assert np.median(same) > 0.2 and (not other or max(other) < 0.1)
    assert lab.make_corpus(300, n_topics=4, seed=0)["texts"] == c["texts"]     # deterministic


def test_featurise_and_leaked():
    f = lab.featurise(["a b a", ""], dim=16)
    assert f.shape == (2, 16) and f[1].sum() == 0 and torch.isclose(f[0].max(), torch.log(torch.tensor(3.0)))
    assert lab.leaked(np.array([1, 2]), np.array([2, 3, 1])).tolist() == [True, False, True]
    m = lab.make_classifier(16, 8, 3)
    assert m(f).shape == (2, 3)


# ============================================================================ serving
def test_batcher_batches_and_counts():
    calls = []

    def predict(x):
        calls.append(len(x))
        return x * 2

    b = lab.Batcher(predict, max_batch=8, max_wait_ms=50)
    out = [None] * 20
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, b.submit(torch.tensor([float(i)]))))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    b.close()
    assert [float(o) for o in out] == [2.0 * i for i in range(20)]
    assert sum(calls) == 20 and b.passes == len(calls) < 20 and max(calls) <= 8
    assert [row[1] for row in b.log] == calls
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(torch.zeros(1))
    with pytest.raises(ValueError, match="max_batch"):
        lab.Batcher(predict, max_batch=0)


def test_batcher_reports_model_errors_and_timeouts():
    def bad(x):
        raise RuntimeError("model broke")
    b = lab.Batcher(bad, max_batch=2, max_wait_ms=1)
    with pytest.raises(RuntimeError, match="model broke"):
        b.submit(torch.zeros(1), timeout=5)
    b.close()
    slow = lab.Batcher(lambda x: (threading.Event().wait(0.5), x)[1], max_batch=1, max_wait_ms=0)
    with pytest.raises(TimeoutError):
        slow.submit(torch.zeros(1), timeout=0.05)
    slow.close()


def test_server_answers_like_the_model_and_shuts_down():
    torch.manual_seed(0)
    model = lab.make_classifier(32, 8, 3)
    texts = [f"word{i} other{i % 3} again" for i in range(24)]
    with lab.InferenceServer(model, 32, max_batch=8, max_wait_ms=5) as server:
        run = lab.load_test(server.url, texts, clients=6, timeout=10)
        health = json.loads(urllib.request.urlopen(server.url + "/health", timeout=5).read())
        with pytest.raises(urllib.error.HTTPError) as bad:
            lab.post_json(server.url + "/predict", {"no_text": 1}, timeout=5)
        assert bad.value.code == 400
        with pytest.raises(urllib.error.HTTPError) as missing:
            lab.post_json(server.url + "/other", {"text": "x"}, timeout=5)
        assert missing.value.code == 404
        # a negative Content-Length is refused at once, not read until the client hangs up
        neg = urllib.request.Request(server.url + "/predict", data=b'{"text": "x"}',
                                     headers={"Content-Length": "-1"})
        with pytest.raises(urllib.error.HTTPError) as negative:
            urllib.request.urlopen(neg, timeout=5)
        assert negative.value.code == 400
        passes = server.batcher.passes
    assert not run["errors"] and health["ok"]
    with torch.no_grad():
        direct = torch.softmax(model(lab.featurise(texts, 32)), 1)
    got = torch.tensor([r["probs"] for r in run["responses"]])
    assert torch.allclose(got, direct, atol=1e-6)
    assert [r["label"] for r in run["responses"]] == direct.argmax(1).tolist()
    assert passes <= len(texts) and not server._thread.is_alive()
    with pytest.raises(OSError):
        lab.post_json(server.url + "/predict", {"text": "x"}, timeout=1)


def test_exported_model_can_be_served():
    model = lab.make_classifier(16, 4, 2).eval()
    ep = torch.export.export(model, (torch.zeros(3, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with lab.InferenceServer(ep.module(), 16, max_batch=4) as server:
        r = lab.post_json(server.url + "/predict", {"text": "a b c"})
    assert len(r["probs"]) == 2 and abs(sum(r["probs"]) - 1) < 1e-6


# ============================================================================ views
def test_serve_monitor_replays():
    mon = lab.ServeMonitor()
    with pytest.raises(RuntimeError, match="record"):
        mon.replay()
    b = lab.Batcher(lambda x: x, max_batch=4, max_wait_ms=1)
    for i in range(3):
        b.submit(torch.zeros(1))
    b.close()
    mon.record("run", b)
    assert mon._frames() == 3
    mon.replay(max_frames=3)
    assert mon.fig is not None
    with pytest.raises(ValueError, match="no forward pass"):
        mon.record("empty", lab.Batcher(lambda x: x))


def test_scurve_explorer_measures_and_validates():
    c = lab.make_corpus(200, seed=1)
    sets = [shingles(t) for t in c["texts"]]
    sig = MinHasher(64, seed=0).signatures(sets)
    view = lab.SCurveExplorer(sig, overlapping_pairs(sets), rows=2, bands=16)
    m = view.draw()
    assert m["count"].sum() == len(view.pairs) and ((m["measured"] >= 0) & (m["measured"] <= 1)).all()
    assert view.draw(rows=8, bands=8)["candidates"] <= m["candidates"]
    with pytest.raises(ValueError, match="exceeds"):
        lab.SCurveExplorer(sig, {}, rows=8, bands=16)
    with pytest.raises(ValueError, match=">= 1"):
        view.draw(rows=0)
    view.player(("rows", "bands"), [(1, 1), (2, 8)])


# ============================================================================ checks
def _jaccard(a, b):
    return len(a & b) / len(a | b) if a or b else 1.0


def _robust(v):
    med = np.median(v)
    return (v - med) / (1.4826 * np.median(np.abs(v - med)))


@pytest.mark.parametrize("name, good, bad", [
    ("jaccard_similarity", _jaccard, lambda a, b: len(a & b) / max(1, len(a | b))),
    ("robust_zscore", _robust, lambda v: (v - np.median(v)) / v.std()),
    ("lsh_half_point", lambda r, b: (1 - 0.5 ** (1 / b)) ** (1 / r), lambda r, b: (1 / b) ** (1 / r)),
    ("noisy_label_accuracy", lambda a, rho, k: (1 - rho) * a + rho / k, lambda a, rho, k: (1 - rho) * a),
])
def test_checks_accept_good_and_reject_bad(name, good, bad, check_verdict):
    check_verdict(name, good, bad)
