"""The recsys_rl chapter: recommendation with embeddings, then reinforcement learning with a policy gradient.

**Recommendation.** Everything is small enough to read in one sitting:

* :func:`make_clicks` **generates** the data (nothing is downloaded). Users have hidden genre tastes,
  items have a hidden genre and a hidden popularity, and each user clicks items sampled without
  replacement from a softmax over a known affinity. Seeded and deterministic, so the chapter can compare
  what a model learns with the truth.
* :class:`MatrixFactorization` scores a (user, item) pair as ``<p_u, q_i> + b_u + b_i + mu``;
  :func:`train_mf` fits it to implicit feedback (clicks) with BPR or a full softmax over items.
* :func:`hit_rate_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k` (one user) and :func:`topk_metrics`
  (all users at once, vectorised) are written from scratch and tested on hand-computed examples.
* **Click-through rate.** :func:`make_impressions` generates ad impressions with a known click
  probability; :class:`LogisticCTR` (logistic regression on one-hot fields) is compared with the overall
  click rate and with :func:`ad_ctr_scores`, each ad's smoothed past click rate.

**Reinforcement learning.** :class:`Catch` (a tiny generated game), :class:`PolicyNet`, :func:`reinforce`
(REINFORCE with a baseline) and :func:`evaluate_policy`, comparing the trained (greedy) policy with the
random one and the hand-written :func:`follow_ball_policy`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from book.train import running_mean
from book.ui import Explorer

GENRE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                "tab:gray", "tab:olive", "tab:cyan")


# ============================================================================ the generated data set
@dataclass
class ClickData:
    """Clicks of ``n_users`` users on ``n_items`` items, split into train and held-out test clicks.

    Hidden truth (what a real data set never shows you): ``taste`` (U, G) rows sum to 1, ``genre`` (I,),
    ``item_factors`` (I, G) and ``popularity`` (I,). ``train`` and ``test`` are (N, 2) tensors of
    ``[user, item]`` rows; no pair is in both.
    """

    taste: torch.Tensor
    genre: torch.Tensor
    item_factors: torch.Tensor
    popularity: torch.Tensor
    sharpness: float
    train: torch.Tensor
    test: torch.Tensor

    @property
    def n_users(self) -> int:
        return self.taste.shape[0]

    @property
    def n_items(self) -> int:
        return self.genre.shape[0]

    @property
    def n_genres(self) -> int:
        return self.taste.shape[1]

    def matrix(self, split: str = "train") -> torch.Tensor:
        """A (U, I) boolean matrix, True where the user clicked the item in ``split`` ('train' or 'test')."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        pairs = self.train if split == "train" else self.test
        m = torch.zeros(self.n_users, self.n_items, dtype=torch.bool)
        m[pairs[:, 0], pairs[:, 1]] = True
        return m

    def true_scores(self) -> torch.Tensor:
        """The affinity the clicks were sampled from, (U, I): the best any recommender could know."""
        return self.sharpness * self.taste @ self.item_factors.T + self.popularity

    def to(self, device) -> "ClickData":
        return ClickData(*(v.to(device) if isinstance(v, torch.Tensor) else v for v in
                           (self.taste, self.genre, self.item_factors, self.popularity, self.sharpness,
                            self.train, self.test)))


def make_clicks(n_users: int = 400, n_items: int = 200, n_genres: int = 5, clicks_per_user: int = 20,
                test_per_user: int = 5, taste_scale: float = 2.0, sharpness: float = 4.0,
                pop_scale: float = 1.0, item_noise: float = 0.3, seed: int = 0) -> ClickData:
    """Generate implicit feedback from a known model (the chapter's data set; nothing is downloaded).

    * item i has a genre ``g_i`` (balanced), a hidden vector ``v_i = onehot(g_i) + item_noise * N(0, I)``
      and a log-popularity ``pop_i ~ pop_scale * N(0, 1)``;
    * user u has a taste ``t_u = softmax(taste_scale * N(0, I))`` over the G genres (mostly one or two);
    * the affinity is ``s_ui = sharpness * t_u . v_i + pop_i`` and the user clicks ``clicks_per_user``
      distinct items drawn one after another with probabilities ``softmax(s_u)`` (Gumbel top-k);
    * ``test_per_user`` of each user's clicks, chosen at random, are held out as the test set.
    """
    if not 0 < test_per_user < clicks_per_user <= n_items:
        raise ValueError(f"need 0 < test_per_user < clicks_per_user <= n_items, got {test_per_user}, "
                         f"{clicks_per_user}, {n_items}")
    if n_genres > len(GENRE_COLORS) or n_genres < 2:
        raise ValueError(f"n_genres must be in 2..{len(GENRE_COLORS)}, got {n_genres}")
    g = torch.Generator().manual_seed(seed)
    genre = torch.randperm(n_items, generator=g) % n_genres                               # (I,) balanced
    item_factors = F.one_hot(genre, n_genres).float() + item_noise * torch.randn(n_items, n_genres, generator=g)
    popularity = pop_scale * torch.randn(n_items, generator=g)
    taste = torch.softmax(taste_scale * torch.randn(n_users, n_genres, generator=g), dim=1)   # (U, G)
    scores = sharpness * taste @ item_factors.T + popularity                              # (U, I)
    gumbel = -torch.log(-torch.log(torch.rand(n_users, n_items, generator=g).clamp_min(1e-20)))
    clicked = (scores + gumbel).topk(clicks_per_user, dim=1).indices                      # (U, clicks)
    order = torch.rand(n_users, clicks_per_user, generator=g).argsort(dim=1)              # random split
    clicked = clicked.gather(1, order)
    users = torch.arange(n_users).unsqueeze(1)                                            # (U, 1)
    test = torch.stack([users.expand(-1, test_per_user), clicked[:, :test_per_user]], -1).reshape(-1, 2)
    train = torch.stack([users.expand(-1, clicks_per_user - test_per_user), clicked[:, test_per_user:]],
                        -1).reshape(-1, 2)
    return ClickData(taste, genre, item_factors, popularity, sharpness, train, test)


# ============================================================================ the model
class MatrixFactorization(nn.Module):
    """score(u, i) = <p_u, q_i> + b_u + b_i + mu, with ``dim``-dimensional user and item embeddings.

    (For ranking one user's items, b_u and mu change nothing; they matter for explicit ratings.)
    """

    def __init__(self, n_users: int, n_items: int, dim: int = 16, init_std: float = 0.1):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.mu = nn.Parameter(torch.zeros(()))
        for emb in (self.user, self.item):
            nn.init.normal_(emb.weight, std=init_std)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)

    def _check(self, idx: torch.Tensor, table: nn.Embedding, what: str) -> None:
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{what} must be an integer tensor of ids (torch.long), got "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= table.num_embeddings):
            raise IndexError(f"{what} ids must be in 0..{table.num_embeddings - 1}, got "
                             f"{int(idx.min())}..{int(idx.max())}")

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of matching pairs: users (B,), items (B,) -> (B,)."""
        self._check(users, self.user, "users")
        self._check(items, self.item, "items")
        if users.shape != items.shape:
            raise ValueError(f"users {tuple(users.shape)} and items {tuple(items.shape)} must have the same shape")
        dot = (self.user(users) * self.item(items)).sum(-1)                              # (B,)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + self.mu

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user: users (B,) -> (B, I)."""
        self._check(users, self.user, "users")
        return (self.user(users) @ self.item.weight.T + self.item_bias.weight.T      # (B, I)
                + self.user_bias(users) + self.mu)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking: mean of -log sigmoid(s_pos - s_neg) (Rendle et al., 2009)."""
    if pos.shape != neg.shape:
        raise ValueError(f"pos {tuple(pos.shape)} and neg {tuple(neg.shape)} scores must have the same shape")
    return -F.logsigmoid(pos - neg).mean()


def train_mf(model: MatrixFactorization, data: ClickData, epochs: int = 30, lr: float = 0.02,
             batch_size: int = 256, loss: str = "softmax", weight_decay: float = 1e-4,
             generator: torch.Generator | None = None, callback=None) -> list[float]:
    """Fit ``model`` to ``data.train`` clicks with Adam; return the mean loss of every epoch.

    ``loss="softmax"``: cross-entropy of the clicked item among *all* items (cheap for a few thousand
    items). ``loss="bpr"``: the clicked item should outscore one item drawn uniformly at random.
    ``weight_decay`` is an L2 penalty on the embeddings of the batch. ``callback(epoch, losses)`` is
    called after each epoch (for a live plot).
    """
    if loss not in ("softmax", "bpr"):
        raise ValueError(f"loss must be 'softmax' or 'bpr', got {loss!r}")
    if model.user.num_embeddings != data.n_users or model.item.num_embeddings != data.n_items:
        raise ValueError(f"model is for {model.user.num_embeddings} users x {model.item.num_embeddings} items, "
                         f"data has {data.n_users} x {data.n_items}")
    device = model.user.weight.device
    pairs = data.train.to(device)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        perm = torch.randperm(len(pairs), generator=g).to(device)      # drawn on the CPU: same on every device
        total = torch.zeros((), device=device)
        for start in range(0, len(pairs), batch_size):
            u, i = pairs[perm[start:start + batch_size]].unbind(1)     # (B,), (B,)
            if loss == "softmax":
                value = F.cross_entropy(model.score_all(u), i)
            else:
                j = torch.randint(data.n_items, u.shape, generator=g).to(device)
                value = bpr_loss(model(u, i), model(u, j))
            reg = weight_decay * (model.user(u).pow(2).sum(-1) + model.item(i).pow(2).sum(-1)).mean()
            opt.zero_grad(set_to_none=True)
            (value + reg).backward()
            opt.step()
            total += value.detach() * len(u)
        losses.append(float(total) / len(pairs))
        if callback is not None:
            callback(epoch, losses)
    return losses


# ============================================================================ baselines
def popularity_scores(data: ClickData) -> torch.Tensor:
    """(U, I): every user gets the items ranked by how often they were clicked in the training set."""
    counts = torch.bincount(data.train[:, 1].cpu(), minlength=data.n_items).float()
    return counts.expand(data.n_users, -1).clone()


def random_scores(n_users: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """(U, I) random scores: a recommender that knows nothing."""
    return torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def model_scores(model: MatrixFactorization) -> torch.Tensor:
    """(U, I) scores of every user for every item, on the CPU."""
    model.eval()
    users = torch.arange(model.user.num_embeddings, device=model.user.weight.device)
    return model.score_all(users).float().cpu()


# ============================================================================ top-k metrics
def _as_list(ranked) -> list:
    return ranked.tolist() if isinstance(ranked, torch.Tensor) else list(ranked)


def hit_rate_at_k(ranked, relevant, k: int) -> float:
    """1.0 if any of the first ``k`` ranked items is relevant, else 0.0 (one user)."""
    return float(any(i in set(_as_list(relevant)) for i in _as_list(ranked)[:k]))


def recall_at_k(ranked, relevant, k: int) -> float:
    """Fraction of the relevant items found among the first ``k`` ranked items (one user)."""
    rel = set(_as_list(relevant))
    if not rel:
        raise ValueError("recall is undefined for a user with no relevant items")
    return sum(i in rel for i in _as_list(ranked)[:k]) / len(rel)


def ndcg_at_k(ranked, relevant, k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance (one user).

    DCG@k = sum over ranks r = 1..k of rel_r / log2(r + 1); divided by the DCG of a perfect ranking,
    which puts all ``min(k, |relevant|)`` relevant items first. Between 0 and 1.
    """
    rel = set(_as_list(relevant))
    if not rel:
        raise ValueError("NDCG is undefined for a user with no relevant items")
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(_as_list(ranked)[:k]) if i in rel)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
    return dcg / ideal


def recommend(scores: torch.Tensor, exclude: torch.Tensor | None, k: int) -> torch.Tensor:
    """Top-``k`` item ids per user, (U, k), best first; items where ``exclude`` (U, I) is True are skipped
    (a recommender should not re-suggest what the user already clicked)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be (users, items), got shape {tuple(scores.shape)}")
    if exclude is not None:
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(f"exclude must be a bool tensor of shape {tuple(scores.shape)}, got "
                             f"{exclude.dtype} {tuple(exclude.shape)}")
        scores = scores.masked_fill(exclude.to(scores.device), float("-inf"))
    return scores.topk(k, dim=1).indices


def topk_metrics(ranked: torch.Tensor, relevant: torch.Tensor) -> dict:
    """Mean hit rate, recall and NDCG over users, vectorised.

    ranked (U, k) item ids best first; relevant (U, I) bool. Users without relevant items are skipped.
    Agrees with :func:`hit_rate_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k` user by user.
    """
    if ranked.dim() != 2 or relevant.dim() != 2 or ranked.shape[0] != relevant.shape[0]:
        raise ValueError(f"need ranked (U, k) and relevant (U, I) with the same U, got {tuple(ranked.shape)} "
                         f"and {tuple(relevant.shape)}")
    relevant = relevant.to(ranked.device)
    k = ranked.shape[1]
    n_rel = relevant.sum(1)                                                 # (U,)
    keep = n_rel > 0
    hits = relevant.gather(1, ranked).float()[keep]                         # (U', k) 1 where rank r is relevant
    n_rel = n_rel[keep].float()
    discount = 1 / torch.log2(torch.arange(k, device=ranked.device, dtype=torch.float32) + 2)   # (k,)
    dcg = (hits * discount).sum(1)
    ideal_len = n_rel.clamp(max=k).long()                                   # (U',)
    idcg = torch.cat([torch.zeros(1, device=ranked.device), discount.cumsum(0)])[ideal_len]
    return {"hit_rate": float((hits.sum(1) > 0).float().mean()), "recall": float((hits.sum(1) / n_rel).mean()),
            "ndcg": float((dcg / idcg).mean())}


def evaluate_scores(scores: torch.Tensor, data: ClickData, k: int = 10) -> dict:
    """Rank all unseen items for every user by ``scores`` (U, I); top-k metrics on the held-out clicks."""
    return topk_metrics(recommend(scores.cpu(), data.matrix("train"), k), data.matrix("test"))


# ============================================================================ looking at embeddings
def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of ``x`` (N, D) on their two principal components: returns (N, 2) coordinates and the
    fraction of variance each component explains (2,)."""
    if x.dim() != 2 or x.shape[1] < 2:
        raise ValueError(f"pca_2d needs an (N, D) matrix with D >= 2, got shape {tuple(x.shape)}")
    xc = x.double() - x.double().mean(0)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    var = s.pow(2)
    return (xc @ vh[:2].T).float(), (var[:2] / var.sum()).float()


def knn_genre_accuracy(emb: torch.Tensor, genre: torch.Tensor) -> float:
    """Leave-one-out 1-nearest-neighbour (cosine) accuracy of predicting an item's genre from its embedding.
    Chance is about 1 / n_genres; near 1 means the embedding space is organised by genre."""
    z = F.normalize(emb.detach().float().cpu(), dim=1)
    sim = z @ z.T                                                           # (I, I)
    sim.fill_diagonal_(float("-inf"))
    return float((genre.cpu()[sim.argmax(1)] == genre.cpu()).float().mean())


# ============================================================================ the per-user view
def draw_user(axes, data: ClickData, scores: torch.Tensor, user: int, k: int = 10) -> dict:
    """Left: the user's hidden taste vs the genre mix of their top-k recommendations. Right: the top-k items
    as tiles coloured by genre, a tick on those the user really clicked in the held-out set."""
    if not 0 <= user < data.n_users:
        raise ValueError(f"user must be in 0..{data.n_users - 1}, got {user}")
    ax1, ax2 = axes
    ax1.clear(), ax2.clear()
    ranked = recommend(scores[user:user + 1].cpu(), data.matrix("train")[user:user + 1], k)[0]
    test = data.matrix("test")[user]
    G = data.n_genres
    rec_share = torch.bincount(data.genre[ranked].cpu(), minlength=G).float() / k
    x = np.arange(G)
    colors = GENRE_COLORS[:G]
    ax1.bar(x - 0.2, data.taste[user].cpu().numpy(), 0.4, color=colors, label="hidden taste")
    ax1.bar(x + 0.2, rec_share.numpy(), 0.4, color=colors, alpha=0.45, hatch="//", label=f"share of top-{k}")
    ax1.set(xticks=x, xticklabels=[f"genre {i}" for i in range(G)], ylim=(0, 1.05),
            title=f"user {user}: hidden taste (solid) vs recommendations (hatched)")
    hits = 0
    for r, item in enumerate(ranked.tolist()):
        hit = bool(test[item])
        hits += hit
        ax2.add_patch(plt.Rectangle((r, 0), 0.9, 0.9, color=GENRE_COLORS[int(data.genre[item])]))
        ax2.text(r + 0.45, 0.45, str(item), ha="center", va="center", color="white", fontsize=8)
        if hit:
            ax2.text(r + 0.45, 1.05, "✓", ha="center", va="bottom", fontsize=12)
    ax2.set(xlim=(-0.1, k), ylim=(0, 1.5), title=f"top-{k} items (colour = genre); ✓ = held-out click: "
            f"{hits} of {int(test.sum())}")
    ax2.axis("off")
    return {"ranked": ranked, "hits": hits}


class UserExplorer(Explorer):
    """Pick a user (slider) and compare their hidden taste with what the model recommends.

    Settings ``user`` and ``k`` (how many recommendations); ``show()`` gives the live slider,
    ``player("user", users)`` precomputed frames for the static site (the :class:`~book.ui.explorer.Explorer` contract).
    """

    defaults = dict(user=0, k=10)
    layout = dict(ncols=2, figsize=(11, 3), gridspec_kw=dict(width_ratios=[1, 1.3]))
    interval = 1200

    def __init__(self, data: ClickData, scores: torch.Tensor, **settings):
        if scores.shape != (data.n_users, data.n_items):
            raise ValueError(f"scores must be (n_users, n_items) = {(data.n_users, data.n_items)}, "
                             f"got {tuple(scores.shape)}")
        self.data, self.scores = data, scores.cpu()
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 0 <= s["user"] < self.data.n_users:
            raise ValueError(f"user must be in 0..{self.data.n_users - 1}, got {s['user']}")

    def _controls(self):
        import ipywidgets as w
        return {"user": w.IntSlider(min=0, max=self.data.n_users - 1, description="user")}

    def draw(self, **override) -> dict:
        """Draw the settings (plus ``override``); returns the ranked items and the number of hits."""
        s = self.resolve(**override)
        self.figure()
        out = draw_user(self.axes, self.data, self.scores, s["user"], s["k"])
        self.fig.tight_layout()
        return out


# ============================================================================ click-through rate
@dataclass
class Impressions:
    """Ads shown to users: the user's segment, the ad, the slot on the page (0 = top), whether the user
    clicked, and the true click probability (known, because the impressions are generated)."""
    segment: torch.Tensor
    ad: torch.Tensor
    slot: torch.Tensor
    click: torch.Tensor
    p: torch.Tensor
    n_segments: int
    n_ads: int
    n_slots: int

    def __len__(self) -> int:
        return len(self.click)

    def __getitem__(self, idx) -> Impressions:
        return Impressions(self.segment[idx], self.ad[idx], self.slot[idx], self.click[idx], self.p[idx],
                           self.n_segments, self.n_ads, self.n_slots)

    def one_hot(self) -> torch.Tensor:
        """(N, segments + ads + slots) float features: one one-hot block per field."""
        return torch.cat([F.one_hot(self.segment, self.n_segments), F.one_hot(self.ad, self.n_ads),
                          F.one_hot(self.slot, self.n_slots)], 1).float()


def make_impressions(n: int, n_segments: int = 20, n_ads: int = 50, n_slots: int = 4, base_logit: float = -3.0,
                     spread: float = 0.8, slot_drop: float = 0.5, seed: int = 0) -> Impressions:
    """``n`` generated ad impressions. The click log-odds are ``base_logit + s[segment] + a[ad] - slot_drop *
    slot``, with segment and ad effects drawn from N(0, spread²) once per seed: a logistic model with one
    weight per segment, ad and slot is the right model, so the oracle shows how close it can get."""
    if n < 1 or min(n_segments, n_ads, n_slots) < 1:
        raise ValueError("n and every count of segments, ads and slots must be at least 1")
    g = torch.Generator().manual_seed(seed)
    seg_effect = spread * torch.randn(n_segments, generator=g)
    ad_effect = spread * torch.randn(n_ads, generator=g)
    segment = torch.randint(0, n_segments, (n,), generator=g)
    ad = torch.randint(0, n_ads, (n,), generator=g)
    slot = torch.randint(0, n_slots, (n,), generator=g)
    p = torch.sigmoid(base_logit + seg_effect[segment] + ad_effect[ad] - slot_drop * slot.float())
    click = torch.bernoulli(p, generator=g)
    return Impressions(segment, ad, slot, click, p, n_segments, n_ads, n_slots)


def ad_ctr_scores(train: Impressions, test: Impressions, prior: float = 10.0) -> torch.Tensor:
    """The counting baseline: each test impression gets its ad's click rate on the training impressions,
    smoothed towards the overall rate as if every ad had ``prior`` more impressions at that rate."""
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    rate = train.click.mean()
    clicks = torch.bincount(train.ad, weights=train.click, minlength=train.n_ads)
    shown = torch.bincount(train.ad, minlength=train.n_ads).float()
    return ((clicks + prior * rate) / (shown + prior))[test.ad]


class LogisticCTR(nn.Module):
    """Logistic regression on one-hot fields: one weight per segment, ad and slot, plus a bias. Returns
    the click logits (N,)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


ACTIONS = ("left", "stay", "right")


class Catch:
    """A batch of ``n_envs`` independent Catch games on a ``height`` x ``width`` grid (see the module doc)."""

    def __init__(self, width: int = 7, height: int = 8, n_balls: int = 2, n_envs: int = 1,
                 device="cpu", seed: int = 0):
        if width < 3 or height < 3:
            raise ValueError(f"the grid must be at least 3 x 3, got height {height}, width {width}")
        if n_balls < 1 or n_envs < 1:
            raise ValueError(f"need n_balls >= 1 and n_envs >= 1, got {n_balls}, {n_envs}")
        self.width, self.height, self.n_balls, self.n_envs = width, height, n_balls, n_envs
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.t = None  # not reset yet

    @property
    def horizon(self) -> int:
        """Steps per game: each ball takes height - 1 steps to reach the paddle row."""
        return self.n_balls * (self.height - 1)

    @property
    def obs_shape(self) -> tuple:
        return (2, self.height, self.width)

    def _new_ball_col(self) -> torch.Tensor:
        return torch.randint(self.width, (self.n_envs,), generator=self.generator, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start new games (reseeding first if ``seed`` is given); return the first observation."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.t = 0
        self.ball_row = torch.zeros(self.n_envs, dtype=torch.long, device=self.device)
        self.ball_col = self._new_ball_col()
        self.paddle = torch.full((self.n_envs,), self.width // 2, dtype=torch.long, device=self.device)
        return self.observe()

    def observe(self) -> torch.Tensor:
        """(n_envs, 2, height, width) float: channel 0 has a 1 where the ball is, channel 1 where the paddle is."""
        obs = torch.zeros(self.n_envs, 2, self.height, self.width, device=self.device)
        idx = torch.arange(self.n_envs, device=self.device)
        obs[idx, 0, self.ball_row, self.ball_col] = 1.0
        obs[idx, 1, self.height - 1, self.paddle] = 1.0
        return obs

    def step(self, actions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move every paddle (0 left, 1 stay, 2 right), let every ball fall one row.

        Returns ``(obs, reward, done)``: (n_envs, 2, H, W), (n_envs,) float in {-1, 0, +1}, (n_envs,) bool.
        """
        if self.t is None:
            raise RuntimeError("call env.reset() before env.step()")
        if self.t >= self.horizon:
            raise RuntimeError(f"the games are over (they last {self.horizon} steps); call env.reset()")
        if isinstance(actions, int) and self.n_envs == 1:
            actions = torch.tensor([actions])
        if not isinstance(actions, torch.Tensor) or actions.shape != (self.n_envs,) or actions.is_floating_point():
            raise ValueError(f"actions must be an integer tensor of shape ({self.n_envs},) with values in "
                             f"{{0, 1, 2}} = {ACTIONS}, got {getattr(actions, 'shape', type(actions).__name__)}")
        actions = actions.to(self.device)
        if actions.min() < 0 or actions.max() > 2:
            raise ValueError(f"actions must be 0 (left), 1 (stay) or 2 (right), got {actions.unique().tolist()}")
        self.paddle = (self.paddle + actions - 1).clamp(0, self.width - 1)
        self.ball_row = self.ball_row + 1
        self.t += 1
        landed = self.ball_row == self.height - 1                       # the same for every game
        reward = torch.zeros(self.n_envs, device=self.device)
        if bool(landed[0]):
            reward = (self.ball_col == self.paddle).float() * 2 - 1     # +1 caught, -1 missed
        obs = self.observe()                                            # shows the ball in the paddle row
        done = self.t >= self.horizon
        if bool(landed[0]) and not done:                                 # next ball appears at the top
            self.ball_row = torch.zeros_like(self.ball_row)
            self.ball_col = self._new_ball_col()
        return obs, reward, torch.full((self.n_envs,), done, device=self.device)


# ============================================================================ returns and policies
def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} along the last axis: rewards (..., T) -> returns (..., T)."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    out = torch.zeros_like(rewards, dtype=torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    running = torch.zeros_like(out[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


class PolicyNet(nn.Module):
    """An MLP from the flattened screen (2·H·W) to 3 action logits."""

    def __init__(self, obs_shape: tuple, hidden: int = 64, n_out: int = 3):
        super().__init__()
        self.obs_shape = tuple(obs_shape)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(obs_shape)), hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_out))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"expected observations of shape (B, {', '.join(map(str, self.obs_shape))}), "
                             f"got {tuple(obs.shape)}; build the net with PolicyNet(env.obs_shape)")
        return self.net(obs)                                            # (B, n_out)


def greedy_policy(policy: nn.Module):
    """obs -> the most probable action of ``policy`` (for evaluation)."""
    @torch.no_grad()
    def act(obs):
        return policy(obs).argmax(-1)
    return act


def random_policy(env: Catch, seed: int = 0):
    """obs -> uniformly random actions (the baseline every agent must beat)."""
    g = torch.Generator(device=env.device).manual_seed(seed)

    def act(obs):
        return torch.randint(3, (obs.shape[0],), generator=g, device=obs.device)
    return act


def follow_ball_policy():
    """obs -> move the paddle towards the ball's column (stay when below it): the hand-written heuristic.

    It catches every ball when the paddle can always get there in time -- ``width - 1 <= height - 2`` (after a
    catch the next ball is seen one step late), as on the chapter's 7 x 8 and 9 x 10 boards -- and is then
    the ceiling a learned policy is measured against, next to the random floor.
    """
    @torch.no_grad()
    def act(obs):
        ball_col = obs[:, 0].sum(1).argmax(-1)                          # (N,) the ball's column
        paddle_col = obs[:, 1, -1].argmax(-1)                           # (N,) the paddle's column
        return torch.sign(ball_col - paddle_col).long() + 1             # 0 left, 1 stay, 2 right
    return act


@torch.no_grad()
def evaluate_policy(act, env: Catch, episodes: int = 1000, seed: int = 12345) -> tuple[float, float]:
    """Mean and standard error of the (undiscounted) return of ``act`` over ``episodes`` games."""
    returns = []
    done_eps = 0
    while done_eps < episodes:
        obs = env.reset(seed=seed + done_eps)
        total = torch.zeros(env.n_envs, device=env.device)
        for _ in range(env.horizon):
            obs, r, _ = env.step(act(obs))
            total += r
        returns.append(total.cpu())
        done_eps += env.n_envs
    rets = torch.cat(returns)[:episodes]
    return float(rets.mean()), float(rets.std() / len(rets) ** 0.5)


# ============================================================================ REINFORCE with a baseline
def reinforce(env: Catch, policy: nn.Module, value: nn.Module, updates: int = 300, lr: float = 3e-3,
              gamma: float = 0.99, entropy_coef: float = 0.01, generator: torch.Generator | None = None,
              callback=None, every: int = 20) -> dict:
    """Train ``policy`` with REINFORCE and a learned baseline ``value`` (both on ``env.device``).

    Each update plays ``env.n_envs`` games to the end, computes the returns G_t, and takes one Adam step on

        loss = mean[-(G_t - V(s_t)) log pi(a_t|s_t)] + 0.5 mean[(G_t - V(s_t))^2] - entropy_coef * mean[H(pi(.|s_t))]

    (the advantage G_t - V(s_t) is treated as a constant in the first term). ``callback(history)`` runs
    every ``every`` updates and after the last. Returns the history: update index, mean return, seconds.
    """
    device = env.device
    g = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    if g.device.type != device.type:
        raise ValueError(f"generator is on {g.device} but the environment on {device}: create it with "
                         f"torch.Generator(device=env.device)")
    opt = torch.optim.Adam(list(policy.parameters()) + list(value.parameters()), lr=lr)
    history = {"update": [], "mean_return": [], "seconds": []}
    start = time.perf_counter()
    for u in range(updates):
        obs = env.reset(seed=int(torch.randint(2**31 - 1, (1,), generator=g, device=device)))
        logps, rewards, values, entropies = [], [], [], []
        for _ in range(env.horizon):
            logits = policy(obs)                                          # (N, 3)
            logp_all = F.log_softmax(logits, -1)
            a = torch.multinomial(logp_all.exp(), 1, generator=g).squeeze(1)   # (N,)
            logps.append(logp_all.gather(1, a[:, None]).squeeze(1))
            entropies.append(-(logp_all.exp() * logp_all).sum(-1))
            values.append(value(obs).squeeze(-1))
            obs, r, _ = env.step(a)
            rewards.append(r)
        R = torch.stack(rewards, 1)                                       # (N, T)
        G = discounted_returns(R, gamma)                                  # (N, T)
        V = torch.stack(values, 1)                                        # (N, T)
        advantage = (G - V).detach()
        loss = (-(advantage * torch.stack(logps, 1)).mean() + 0.5 * (G - V).pow(2).mean()
                - entropy_coef * torch.stack(entropies, 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["update"].append(u)
        history["mean_return"].append(float(R.sum(1).mean()))
        history["seconds"].append(time.perf_counter() - start)
        if callback is not None and ((u + 1) % every == 0 or u == updates - 1):
            callback(history)
    return history


def plot_returns(ax, history: dict, random_return: float | None = None, best: float | None = None,
                 window: int = 10):
    """The training curve: mean return per update (faint) and its moving average, with reference lines."""
    ax.clear()
    y = np.asarray(history["mean_return"])
    x = np.asarray(history["update"])
    ax.plot(x, y, color="tab:blue", alpha=0.3, lw=0.8)
    ax.plot(x, running_mean(list(y), window), color="tab:blue", label=f"mean return (running mean of {window})")
    if random_return is not None:
        ax.axhline(random_return, color="tab:red", ls="--", lw=1, label="random policy")
    if best is not None:
        ax.axhline(best, color="tab:green", ls=":", lw=1, label="catch every ball")
    ax.set(xlabel="update (one batch of games each)", ylabel="return per game")
    ax.legend(loc="lower right", fontsize=8)


# ============================================================================ watching a game
@torch.no_grad()
def record_episode(act, width: int = 7, height: int = 8, n_balls: int = 2, seed: int = 0) -> list[dict]:
    """Play one game with ``act`` and return its frames: ball, paddle, reward so far, at every step."""
    env = Catch(width, height, n_balls, n_envs=1, seed=seed)
    obs = env.reset(seed=seed)
    frames = [dict(ball=(int(env.ball_row), int(env.ball_col)), paddle=int(env.paddle), total=0.0, reward=0.0)]
    total = 0.0
    for _ in range(env.horizon):
        ball = (int(env.ball_row) + 1, int(env.ball_col))                 # where the ball is drawn after the step
        obs, r, _ = env.step(act(obs).cpu())
        total += float(r)
        frames.append(dict(ball=ball, paddle=int(env.paddle), total=total, reward=float(r)))
    return frames


def draw_catch(ax, frame: dict, width: int = 7, height: int = 8, title: str = ""):
    """Draw one frame of Catch: grid, ball (circle), paddle (bar), score in the title."""
    ax.clear()
    ax.set(xlim=(-0.5, width - 0.5), ylim=(height - 0.5, -0.5), xticks=[], yticks=[], aspect="equal")
    for x in range(width + 1):
        ax.axvline(x - 0.5, color="0.9", lw=0.5)
    for y in range(height + 1):
        ax.axhline(y - 0.5, color="0.9", lw=0.5)
    r, c = frame["ball"]
    color = {1.0: "tab:green", -1.0: "tab:red"}.get(frame["reward"], "tab:orange")
    ax.add_patch(plt.Circle((c, r), 0.35, color=color))
    ax.add_patch(plt.Rectangle((frame["paddle"] - 0.45, height - 0.75), 0.9, 0.5, color="tab:blue"))
    event = {1.0: " — caught!", -1.0: " — missed"}.get(frame["reward"], "")
    ax.set_title(f"{title}\nscore {frame['total']:+g}{event}", fontsize=9)
