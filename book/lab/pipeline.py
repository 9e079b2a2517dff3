"""The pipeline chapter: from raw, messy data to a model served over HTTP.

* generated messy tables (missing values completely at random or not at random, gross outliers, label
  noise) and the cleaning steps measured on them (:func:`make_table`, :func:`impute`,
  :func:`fit_logreg`, :func:`robust_z`, :func:`iqr_outliers`);
* a generated text corpus with planted near-duplicates (:func:`make_corpus`) for the MinHash / LSH
  dedup of :mod:`book.nn.dedup`, a hashed bag-of-words featuriser and a small classifier;
* a small inference service: :class:`Batcher` (dynamic batching: a queue emptied up to ``max_batch``
  requests or ``max_wait_ms``) behind :class:`InferenceServer` (stdlib ``ThreadingHTTPServer`` on
  127.0.0.1, JSON in and out), :func:`load_test` (concurrent clients, a timeout on every call);
* the views: :class:`ServeMonitor` (a Replay of the batches the service ran) and :class:`SCurveExplorer`
  (LSH rows/bands -> the S-curve against the measured candidate rate).
"""
from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import torch
from torch import nn

from book.nn.dedup import lsh_candidates, s_curve
from book.ui import Explorer, Replay


# ============================================================================ messy tables
def make_table(n: int, missing: str = "mnar", miss_rate: float = 0.3, seed: int = 0):
    """A binary classification table with four features; column 2 has missing values (NaN).

    ``missing="mcar"``: each value of column 2 is missing with probability ``miss_rate``, independent of
    everything. ``"mnar"``: the larger the value, the likelier it is missing (a logistic in the value,
    shifted so that about ``miss_rate`` are missing) -- the value that is hidden is what decides it.
    Returns ``(x, y, x_full)``: features with NaNs, labels (0/1 int), the features before any went missing.
    """
    if missing not in ("mcar", "mnar"):
        raise ValueError(f"missing must be 'mcar' or 'mnar', got {missing!r}")
    rng = np.random.default_rng(seed)
    x_full = rng.normal(size=(n, 4))
    logit = 1.0 * x_full[:, 0] - 1.0 * x_full[:, 1] + 2.0 * x_full[:, 2] + 0.5 * x_full[:, 3]
    y = (logit + rng.logistic(size=n) > 0).astype(np.int64)
    if missing == "mcar":
        gone = rng.random(n) < miss_rate
    else:
        shift = np.quantile(x_full[:, 2], 1 - miss_rate)
        gone = rng.random(n) < 1 / (1 + np.exp(-4.0 * (x_full[:, 2] - shift)))
    x = x_full.copy()
    x[gone, 2] = np.nan
    return x, y, x_full


IMPUTERS = ("mean", "median", "zero", "mean+indicator")


def impute(x: np.ndarray, how: str, stats: np.ndarray | None = None):
    """Fill NaNs column by column: ``"mean"``, ``"median"``, ``"zero"`` or ``"mean+indicator"`` (mean, plus
    one 0/1 column "was missing" per column; one that never misses is a constant 0). ``stats`` are the fill
    values learned on the training split (``None``: learn them from ``x``). Returns ``(filled, stats)``."""
    if how not in IMPUTERS:
        raise ValueError(f"how must be one of {IMPUTERS}, got {how!r}")
    if stats is None:
        if how == "median":
            stats = np.nanmedian(x, axis=0)
        elif how == "zero":
            stats = np.zeros(x.shape[1])
        else:
            stats = np.nanmean(x, axis=0)
        stats = np.where(np.isnan(stats), 0.0, stats)
    miss = np.isnan(x)
    filled = np.where(miss, stats[None, :], x)
    if how == "mean+indicator":
        filled = np.concatenate([filled, miss.astype(float)], axis=1)
    return filled, stats


def fit_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 25) -> np.ndarray:
    """Logistic regression by Newton's method (with an intercept, a small L2 penalty): the weights
    ``(d + 1,)``, intercept last. Columns that are constant get weight 0 through the penalty."""
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) / len(y) + l2 * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def logreg_accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return float(np.mean((xb @ w > 0) == (y == 1)))


def imputation_scores(missing: str, n: int, seed: int = 0, miss_rate: float = 0.3,
                      split: str = "val", methods=IMPUTERS) -> dict:
    """Accuracy of logistic regression after each imputer in ``methods`` (fill values learned on the
    training split), on the validation or the test split (``n`` rows each, drawn with ``seed``), and of
    the model fitted before any value went missing (``"no missing values"``: what the gaps cost)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    x, y, full = make_table(3 * n, missing, miss_rate, seed)
    tr, ev = slice(0, n), (slice(n, 2 * n) if split == "val" else slice(2 * n, 3 * n))
    out = {}
    for how in methods:
        ftr, stats = impute(x[tr], how)
        fev, _ = impute(x[ev], how, stats)
        out[how] = logreg_accuracy(fit_logreg(ftr, y[tr]), fev, y[ev])
    out["no missing values"] = logreg_accuracy(fit_logreg(full[tr], y[tr]), full[ev], y[ev])
    return out


# ============================================================================ outliers
def make_regression(n: int, outlier_rate: float = 0.05, seed: int = 0):
    """``y = 2 x + 1 + N(0, 1)`` with a fraction ``outlier_rate`` of gross recording errors (``y`` off by
    20 to 60, either sign). Returns ``(x, y, is_outlier)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=n)
    y = 2 * x + 1 + rng.normal(size=n)
    bad = rng.random(n) < outlier_rate
    y[bad] += rng.choice([-1.0, 1.0], size=bad.sum()) * rng.uniform(20, 60, size=bad.sum())
    return x, y, bad


def plain_z(v: np.ndarray) -> np.ndarray:
    """``(v - mean) / std`` -- the outliers themselves inflate the std they are measured with."""
    return (v - v.mean()) / v.std()


def robust_z(v: np.ndarray) -> np.ndarray:
    """``(v - median) / (1.4826 MAD)``: median and median absolute deviation barely move when a few
    values are wild; 1.4826 makes the MAD estimate the std of a normal distribution."""
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    if mad == 0:
        raise ValueError("the median absolute deviation is 0: more than half the values are equal")
    return (v - med) / (1.4826 * mad)


def iqr_outliers(v: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Tukey's fences: outside ``[Q1 - k IQR, Q3 + k IQR]``."""
    q1, q3 = np.quantile(v, [0.25, 0.75])
    return (v < q1 - k * (q3 - q1)) | (v > q3 + k * (q3 - q1))


def ols_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)``."""
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def outlier_study(n: int, outlier_rate: float = 0.05, seed: int = 0, cut: float = 3.5) -> dict:
    """One draw of :func:`make_regression`: precision and recall of three detectors against the planted
    errors (``|z| > 3``, ``|robust z| > cut``, Tukey's fences), and the mean squared error of the fitted
    line against the true line ``2x + 1`` on a grid of ``x`` (the clean test), fitted on all rows or
    after removing what the robust z-score flags."""
    x, y, bad = make_regression(n, outlier_rate, seed)
    flags = {"z-score > 3": np.abs(plain_z(y)) > 3, f"robust z > {cut}": np.abs(robust_z(y)) > cut,
             "IQR fences": iqr_outliers(y)}
    grid = np.linspace(-3, 3, 61)

    def line_mse(keep):
        slope, intercept = ols_line(x[keep], y[keep])
        return float(np.mean((slope * grid + intercept - (2 * grid + 1)) ** 2))

    return dict(detect={k: precision_recall(f, bad) for k, f in flags.items()}, planted=int(bad.sum()),
                mse_all=line_mse(np.ones(n, bool)), mse_removed=line_mse(~flags[f"robust z > {cut}"]))


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean flags against the planted truth (precision 1 if nothing flagged)."""
    tp = float(np.sum(flagged & truth))
    return (tp / flagged.sum() if flagged.sum() else 1.0), (tp / truth.sum() if truth.sum() else 1.0)


# ============================================================================ text with near-duplicates
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "pe", "da", "zu", "fi", "go", "he", "ji", "bo")


def _words(n: int, rng) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))))
    return sorted(out)


def _edit(words: list[str], rate: float, common: list[str], rng) -> list[str]:
    out = []
    for w in words:
        u = rng.random()
        if u < rate / 3:                           # delete
            continue
        if u < 2 * rate / 3:                       # replace
            out.append(common[rng.integers(len(common))])
            continue
        out.append(w)
        if u < rate:                               # keep and insert one after it
            out.append(common[rng.integers(len(common))])
    return out


def make_corpus(n_docs: int, n_topics: int = 6, dup_fraction: float = 0.3, label_noise: float = 0.3,
                max_edit: float = 0.25, doc_words: tuple[int, int] = (40, 80), seed: int = 0) -> dict:
    """Generated documents in ``n_topics`` topics; a fraction ``dup_fraction`` of the originals get 1-3
    near-duplicate copies (word deletions, replacements, insertions at a rate drawn in ``[0.02,
    max_edit]``), as scraped pages repeat with small changes. Each original's label is its topic, except
    a fraction ``label_noise`` drawn at random (annotation noise) -- and copies carry their original's
    label, noise included. Returns ``texts``, ``labels`` (int64 array), ``topics`` (the true topic),
    ``family`` (the original each document comes from) and ``n_original``; documents are shuffled."""
    rng = np.random.default_rng(seed)
    vocab = _words(1500 + 40 * n_topics, rng)
    rng.shuffle(vocab)
    common, topical = vocab[:1500], [vocab[1500 + 40 * t:1500 + 40 * (t + 1)] for t in range(n_topics)]
    zipf = 1 / np.arange(1, len(common) + 1) ** 0.8
    zipf /= zipf.sum()
    n_orig = int(round(n_docs / (1 + 2 * dup_fraction)))
    docs, labels, topics, family = [], [], [], []
    for i in range(n_orig):
        t = int(rng.integers(n_topics))
        length = int(rng.integers(*doc_words))
        from_topic = rng.random(length) < 0.2
        pick_c, pick_t = rng.choice(len(common), size=length, p=zipf), rng.integers(40, size=length)
        words = [topical[t][k] if f else common[c] for f, c, k in zip(from_topic, pick_c, pick_t)]
        label = t if rng.random() >= label_noise else int(rng.integers(n_topics))
        docs.append(words), labels.append(label), topics.append(t), family.append(i)
        if rng.random() < dup_fraction:
            for _ in range(int(rng.integers(1, 4))):
                docs.append(_edit(words, rng.uniform(0.02, max_edit), common, rng))
                labels.append(label), topics.append(t), family.append(i)
    order = rng.permutation(len(docs))
    return dict(texts=[" ".join(docs[i]) for i in order], labels=np.array(labels)[order],
                topics=np.array(topics)[order], family=np.array(family)[order], n_original=n_orig)


def featurise(texts: list[str], dim: int = 512) -> torch.Tensor:
    """Hashed bag of words: ``log(1 + count)`` of each word in bucket ``crc32(word) % dim``."""
    rows, cols = [], []
    for i, t in enumerate(texts):
        ids = [zlib.crc32(w.encode()) % dim for w in t.split()]
        rows += [i] * len(ids)
        cols += ids
    flat = np.array(rows, dtype=np.int64) * dim + np.array(cols, dtype=np.int64)
    counts = np.bincount(flat, minlength=len(texts) * dim).reshape(len(texts), dim)
    return torch.from_numpy(counts).float().log1p()


def make_classifier(dim: int, hidden: int, n_classes: int) -> nn.Module:
    """The model the chapter trains, exports and serves: hashed bag of words -> MLP -> class logits."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


def leaked(train_family: np.ndarray, test_family: np.ndarray) -> np.ndarray:
    """Test documents whose family (original) also has a member in the training split."""
    return np.isin(test_family, train_family)


# ============================================================================ serving
MAX_BODY = 1 << 20       # bytes: a request body larger than this (or a negative length) is a 400


class _Request:
    __slots__ = ("x", "done", "result")

    def __init__(self, x):
        self.x, self.done, self.result = x, threading.Event(), None


class Batcher:
    """Dynamic batching: requests wait in a queue; one worker thread takes the first, then keeps taking
    more until it has ``max_batch`` or ``max_wait_ms`` have passed since the first, and runs ``predict``
    once on the stacked batch. ``max_batch=1`` is no batching: one forward pass per request.

    Counted: ``passes`` (forward passes), ``log`` (per pass: seconds since start, batch size, requests
    still queued). ``submit(x, timeout)`` blocks until the answer is there (``TimeoutError`` if not)."""

    def __init__(self, predict, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000
        self.queue: queue.Queue = queue.Queue()
        self.passes, self.log = 0, []
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="batcher")
        self._thread.start()

    def submit(self, x: torch.Tensor, timeout: float = 10.0):
        if self._stop.is_set():
            raise RuntimeError("the batcher is closed")
        req = _Request(x)
        self.queue.put(req)
        if not req.done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout} s")
        if isinstance(req.result, Exception):
            raise req.result
        return req.result

    def _loop(self):
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.max_wait
            while len(batch) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    batch.append(self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with torch.no_grad():
                    out = self.predict(torch.stack([r.x for r in batch]))
                results = list(out)
            except Exception as e:       # every waiting client gets the error, the worker keeps going
                results = [e] * len(batch)
            self.passes += 1
            self.log.append((time.perf_counter() - self._t0, len(batch), self.queue.qsize()))
            for r, res in zip(batch, results):
                r.result = res
                r.done.set()

    def close(self, timeout: float = 5.0):
        self._stop.set()
        self._thread.join(timeout)


class InferenceServer:
    """``POST /predict`` with ``{"text": "..."}`` -> ``{"label": k, "probs": [...]}``; ``GET /health``.

    A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (port 0: the OS picks a free one), served from a daemon
    thread; each request thread featurises its text and hands it to a :class:`Batcher`. Use it as a
    context manager: leaving the block shuts the server and the batcher down."""

    def __init__(self, model: nn.Module, dim: int, max_batch: int = 32, max_wait_ms: float = 5.0,
                 timeout: float = 10.0):
        try:
            model.eval()
        except NotImplementedError:      # a torch.export module has no train/eval switch: it is frozen
            pass
        self.dim = dim
        self.batcher = Batcher(lambda x: torch.softmax(model(x), dim=1), max_batch, max_wait_ms)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):          # quiet: no line per request
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    self._reply(200, {"ok": True, "passes": server.batcher.passes})
                else:
                    self._reply(404, {"error": "unknown path"})

            def do_POST(self):
                if self.path != "/predict":
                    return self._reply(404, {"error": "unknown path"})
                try:
                    length = int(self.headers.get("Content-Length", 0))
                    if not 0 <= length <= MAX_BODY:    # read(-1) would wait for the client to hang up
                        raise ValueError(f"Content-Length {length} outside 0..{MAX_BODY}")
                    body = json.loads(self.rfile.read(length))
                    x = featurise([str(body["text"])], server.dim)[0]
                except (ValueError, KeyError, TypeError) as e:
                    return self._reply(400, {"error": f"bad request: {e}"})
                try:
                    probs = server.batcher.submit(x, timeout)
                except Exception as e:   # noqa: BLE001 -- a timeout or a model error: 503, never a hang
                    return self._reply(503, {"error": str(e)})
                self._reply(200, {"label": int(probs.argmax()), "probs": probs.tolist()})

        class Server(ThreadingHTTPServer):
            request_queue_size = 128     # the listen backlog (default 5): room for every waiting client

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05),
                                        daemon=True, name="http")
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.batcher.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def post_json(url: str, body: dict, timeout: float = 10.0) -> dict:
    """One JSON POST with a timeout (``urllib``: no dependency)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def load_test(url: str, texts: list[str], clients: int = 16, timeout: float = 10.0) -> dict:
    """``clients`` threads send ``texts`` (request ``i`` by client ``i % clients``, one after another per
    client) to ``url/predict``. Returns ``responses`` (in the order of ``texts``), ``latency`` (seconds per
    request), ``errors`` and ``seconds`` (wall time of the whole test)."""
    responses: list = [None] * len(texts)
    latency = np.full(len(texts), np.nan)
    errors: list = []

    def client(c):
        for i in range(c, len(texts), clients):
            t = time.perf_counter()
            try:
                responses[i] = post_json(url + "/predict", {"text": texts[i]}, timeout)
            except Exception as e:   # noqa: BLE001 -- counted, so the chapter can assert there were none
                errors.append((i, repr(e)))
            latency[i] = time.perf_counter() - t

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout * (len(texts) // clients + 2))
    return dict(responses=responses, latency=latency, errors=errors, seconds=time.perf_counter() - t0)


# ============================================================================ views
class ServeMonitor(Replay):
    """The batches a :class:`Batcher` ran, one frame per forward pass: batch size and queued requests over
    time (left), requests answered against forward passes (right), one line per recorded run
    (``record(name, batcher)`` after each run). ``replay(max_frames=24, interval=400)``."""

    replay_hint = "serve some requests and call monitor.record(name, server.batcher) first"

    def __init__(self):
        self.runs: dict[str, np.ndarray] = {}
        self.fig = self.axes = None

    def record(self, name: str, batcher: Batcher):
        if not batcher.log:
            raise ValueError("this batcher ran no forward pass")
        self.runs[name] = np.array(batcher.log, dtype=float)

    def _frames(self) -> int:
        return max((len(r) for r in self.runs.values()), default=0)

    def _draw_frame(self, k: int):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(10, 3.2), dpi=80)
        ax1, ax2 = self.axes
        ax1.clear(), ax2.clear()
        for i, (name, log) in enumerate(self.runs.items()):
            part = log[:k + 1]
            ax1.plot(part[:, 0], part[:, 1], ".", ms=4, color=f"C{i}", label=f"{name}: batch size")
            ax1.plot(part[:, 0], part[:, 2], "-", lw=0.8, color=f"C{i}", alpha=0.5,
                     label=f"{name}: still queued")
            ax2.plot(np.arange(1, len(part) + 1), np.cumsum(part[:, 1]), "-", color=f"C{i}", label=name)
        top = max(len(r) for r in self.runs.values())
        ax2.plot([0, top], [0, top], "k:", lw=1, label="one request per pass")
        ax1.set(xlabel="seconds since the service started", ylabel="requests",
                title=f"forward pass {k + 1}: batch sizes and queue")
        ax2.set(xlabel="forward passes", ylabel="requests answered", title="requests per forward pass")
        ax1.legend(fontsize=7), ax2.legend(fontsize=7)
        self.fig.tight_layout()


class SCurveExplorer(Explorer):
    """LSH banding with ``rows`` rows per band and ``bands`` bands: the S-curve ``1 - (1 - s^r)^b`` (line)
    against the measured fraction of pairs that became candidates, in bins of exact Jaccard (dots).
    ``draw`` returns per bin the mean Jaccard, the measured rate, the predicted rate (the curve averaged
    over the bin's pairs) and the pair count."""

    defaults = dict(rows=4, bands=16)
    layout = dict(figsize=(6.5, 3.4))
    interval = 900

    def __init__(self, signatures: np.ndarray, pair_jaccard: dict, edges=None, **settings):
        self.signatures, self.pairs = signatures, pair_jaccard
        self.edges = np.linspace(0, 1, 11) if edges is None else np.asarray(edges)
        super().__init__(**settings)

    def _validate(self, s, changed):
        if s["rows"] < 1 or s["bands"] < 1:
            raise ValueError(f"rows and bands must be >= 1, got {s['rows']}, {s['bands']}")
        if s["rows"] * s["bands"] > self.signatures.shape[1]:
            raise ValueError(f"rows * bands = {s['rows'] * s['bands']} exceeds the signature length "
                             f"{self.signatures.shape[1]}")

    def _controls(self):
        import ipywidgets as w
        return {"rows": w.IntSlider(min=1, max=16, description="rows r"),
                "bands": w.IntSlider(min=1, max=64, description="bands b")}

    def measure(self, rows: int, bands: int) -> dict:
        cand = lsh_candidates(self.signatures, bands, rows)
        keys = list(self.pairs)
        j = np.array([self.pairs[p] for p in keys])
        hit = np.array([p in cand for p in keys])
        idx = np.clip(np.digitize(j, self.edges) - 1, 0, len(self.edges) - 2)
        n = np.bincount(idx, minlength=len(self.edges) - 1)
        rate = np.bincount(idx, weights=hit, minlength=len(n)) / np.maximum(n, 1)
        mean_j = np.bincount(idx, weights=j, minlength=len(n)) / np.maximum(n, 1)
        # the expected rate of a bin is the mean of the curve over its pairs (not the curve at their mean)
        predicted = np.bincount(idx, weights=s_curve(j, rows, bands), minlength=len(n)) / np.maximum(n, 1)
        return dict(mean_j=mean_j, measured=rate, predicted=predicted, count=n, candidates=len(cand))

    def draw(self, **override) -> dict:
        s = self.resolve(**override)
        self.figure()
        ax = self.axes
        ax.clear()
        m = self.measure(s["rows"], s["bands"])
        grid = np.linspace(0, 1, 201)
        ax.plot(grid, s_curve(grid, s["rows"], s["bands"]), "-", color="C0",
                label=f"1 - (1 - s^{s['rows']})^{s['bands']}")
        ok = m["count"] > 0
        ax.scatter(m["mean_j"][ok], m["measured"][ok], s=12 + 40 * np.log10(1 + m["count"][ok]),
                   color="C1", zorder=3, label="measured (dot size: pairs in the bin)")
        thr = (1 / s["bands"]) ** (1 / s["rows"])
        ax.axvline(thr, color="gray", ls=":", lw=1, label=f"(1/b)^(1/r) = {thr:.2f}")
        ax.set(xlabel="exact Jaccard similarity s", ylabel="P(candidate pair)", ylim=(-0.03, 1.03),
               title=f"r = {s['rows']}, b = {s['bands']}: {m['candidates']} candidate pairs")
        ax.legend(fontsize=7, loc="upper left")
        self.fig.tight_layout()
        return m
