"""Plumbing of the retrieval chapter: the generated corpus of invented people (documents, two kinds of
questions, train/validation/test split by person), the dual encoder's training loop and live view
(:class:`RetrievalMonitor`), the search view (:class:`SearchExplorer`), the extractive reader and the RAG
evaluation. The from-scratch pieces (TF-IDF, BM25, InfoNCE, metrics) are in :mod:`book.nn.retrieval`.

The corpus is generated from a seed (no file is shipped): ``python -m book.lab.retrieval`` prints a sample.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from book.nn.retrieval import (
    DualEncoder,
    bm25_scores,
    count_matrix,
    gold_ranks,
    info_nce,
    mean_reciprocal_rank,
    recall_at_k,
    tokenize,
)
from book.ui import Explorer, Replay

# Each attribute value: the word the documents use, and a paraphrase (used only by paraphrase questions)
# that shares no token with it.
PROFESSIONS = {"baker": "makes bread", "sailor": "works on ships", "farmer": "grows crops",
               "tailor": "sews garments", "blacksmith": "forges iron", "potter": "shapes clay",
               "doctor": "heals patients", "teacher": "instructs pupils", "miner": "digs ore",
               "fisher": "catches fish", "carpenter": "builds furniture", "poet": "writes verses",
               "cook": "prepares meals", "guard": "keeps watch", "weaver": "spins yarn",
               "courier": "delivers letters"}
ANIMALS = {"dog": "hound", "cat": "feline", "horse": "stallion", "rabbit": "bunny", "parrot": "macaw",
           "snake": "serpent", "owl": "night bird", "mouse": "rodent", "pig": "hog", "goose": "gander",
           "turtle": "tortoise", "donkey": "mule"}
COLOURS = {"red": "crimson", "blue": "azure", "green": "emerald", "yellow": "golden", "black": "ebony",
           "white": "ivory", "purple": "violet", "orange": "amber", "grey": "ashen", "brown": "chestnut",
           "pink": "rose", "teal": "turquoise"}
TOWNS = ["Ardmere", "Belloc", "Corvan", "Dunharrow", "Elsby", "Fennick", "Galloway", "Hethra", "Istmar",
         "Jorvale", "Kestwick", "Lunmoor", "Marrow", "Northam", "Oxley", "Pellith", "Quarrin", "Rothwell",
         "Stanmere", "Tolworth"]
SLOTS = ("profession", "town", "animal", "colour")
_SYL = ["ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo", "za", "sh",
        "th", "ri", "lo", "we", "xe", "qu", "ny", "jo"]
_DOC = ["{n} works as a {profession} in {town}. {n} keeps a {animal} and loves the colour {colour}.",
        "In {town} lives {n}, a {profession}. Their favourite colour is {colour}, and they own a {animal}.",
        "{n} the {profession} owns a {animal}. Home is {town}; the colour they love most is {colour}."]
_NEIGHBOUR = "The neighbour of {n} is a {profession} with a {animal}. "
_NAME_Q = {"profession": ["What does {n} do for a living?", "What is the job of {n}?"],
           "town": ["Where does {n} live?", "Which town is home to {n}?"],
           "animal": ["What pet does {n} keep?", "Which animal does {n} own?"],
           "colour": ["Which colour does {n} love?", "What is the favourite colour of {n}?"]}
_PARA_Q = ["Where does the person who {profession}, has a {animal} and likes {colour} live?",
           "Which town is home to someone who {profession} and adores {colour}, with a {animal}?"]


@dataclass
class Corpus:
    """The generated corpus. ``docs[i]`` is person ``i``'s passage, ``facts[i]`` their slot values;
    ``queries[split]`` is a list of ``(text, gold document, kind, slot, answer)`` with kind ``"name"``
    (the person's rare name in the question) or ``"paraphrase"`` (described with other words)."""
    docs: list[str]
    names: list[str]
    facts: list[dict]
    split_of: list[str]
    queries: dict = field(default_factory=dict)
    index: tuple | None = field(default=None, repr=False)     # see lexical_index
    encoded: tuple | None = field(default=None, repr=False)   # see dense_inputs

    def questions(self, split: str, kind: str | None = None):
        """``(texts, gold tensor, slots, answers)`` of one split, of one kind or both."""
        rows = [q for q in self.queries[split] if kind is None or q[2] == kind]
        return ([r[0] for r in rows], torch.tensor([r[1] for r in rows]), [r[3] for r in rows],
                [r[4] for r in rows])


def _names(n: int, rng: random.Random) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        name = "".join(rng.choice(_SYL) for _ in range(rng.choice((2, 3)))).capitalize()
        if name not in seen and name.lower() not in {t.lower() for t in TOWNS}:
            seen.add(name)
            out.append(name)
    return out


def make_corpus(n_people: int = 240, seed: int = 0, neighbour: float = 0.25,
                fractions: tuple[float, float] = (0.6, 0.2)) -> Corpus:
    """``n_people`` invented people, each with a unique (profession, animal, colour) and a town; the people
    (so their documents and questions) are split train / validation / test by ``fractions``. A fraction
    ``neighbour`` of the passages first mention a neighbour's job and pet (a trap for a careless reader).
    Train people get every question of both kinds; validation and test people one name question and one
    paraphrase question each."""
    combos = len(PROFESSIONS) * len(ANIMALS) * len(COLOURS)
    if n_people > combos:
        raise ValueError(f"at most {combos} people have distinct (profession, animal, colour)")
    rng = random.Random(seed)
    names = _names(n_people, rng)
    triples = rng.sample([(p, a, c) for p in PROFESSIONS for a in ANIMALS for c in COLOURS], n_people)
    docs, facts = [], []
    for name, (p, a, c) in zip(names, triples):
        f = dict(profession=p, animal=a, colour=c, town=rng.choice(TOWNS))
        text = rng.choice(_DOC).format(n=name, **f)
        if rng.random() < neighbour:
            text = _NEIGHBOUR.format(n=name, profession=rng.choice([q for q in PROFESSIONS if q != p]),
                                     animal=rng.choice([q for q in ANIMALS if q != a])) + text
        docs.append(text)
        facts.append(f)
    order = list(range(n_people))
    rng.shuffle(order)
    n_tr, n_va = int(fractions[0] * n_people), int(fractions[1] * n_people)
    split_of = [""] * n_people
    for j, i in enumerate(order):
        split_of[i] = "train" if j < n_tr else "val" if j < n_tr + n_va else "test"
    corpus = Corpus(docs, names, facts, split_of, {"train": [], "val": [], "test": []})
    for i, (name, f) in enumerate(zip(names, facts)):
        split = split_of[i]
        para = dict(profession=PROFESSIONS[f["profession"]], animal=ANIMALS[f["animal"]],
                    colour=COLOURS[f["colour"]])
        if split == "train":
            for slot, templates in _NAME_Q.items():
                corpus.queries[split] += [(t.format(n=name), i, "name", slot, f[slot]) for t in templates]
            corpus.queries[split] += [(t.format(**para), i, "paraphrase", "town", f["town"])
                                      for t in _PARA_Q]
        else:
            slot = rng.choice(SLOTS)
            corpus.queries[split].append((rng.choice(_NAME_Q[slot]).format(n=name), i, "name", slot,
                                          f[slot]))
            corpus.queries[split].append((rng.choice(_PARA_Q).format(**para), i, "paraphrase", "town",
                                          f["town"]))
    return corpus


def build_vocab(texts: list[str]) -> dict[str, int]:
    """Token -> id for every token of ``texts``, ids from 2 (0: padding, 1: an unknown token)."""
    vocab = {"<pad>": 0, "<unk>": 1}
    for text in texts:
        for tok in tokenize(text):
            vocab.setdefault(tok, len(vocab))
    return vocab


def encode_ids(texts: list[str], vocab: dict[str, int]) -> torch.Tensor:
    """``(len(texts), longest)`` token ids, unknown tokens as 1, padded with 0."""
    rows = [[vocab.get(t, 1) for t in tokenize(x)] or [1] for x in texts]
    out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
    return out


def lexical_vocab(corpus: Corpus) -> dict[str, int]:
    """Every token of the documents (a lexical index knows its whole collection)."""
    return lexical_index(corpus)[0]


def lexical_index(corpus: Corpus) -> tuple[dict[str, int], torch.Tensor]:
    """``(vocabulary, document count matrix)`` of the collection, built once per corpus."""
    if corpus.index is None:
        vocab = build_vocab(corpus.docs)
        corpus.index = (vocab, count_matrix(corpus.docs, vocab))
    return corpus.index


def dense_vocab(corpus: Corpus) -> dict[str, int]:
    """The tokens the dual encoder can learn: those of the training questions and the training people's
    documents. A validation or test person's name is not among them."""
    train_docs = [d for d, s in zip(corpus.docs, corpus.split_of) if s == "train"]
    return build_vocab([q[0] for q in corpus.queries["train"]] + train_docs)


def bm25_search(corpus: Corpus, queries: list[str], k1: float = 1.2, b: float = 0.75) -> torch.Tensor:
    """BM25 scores ``(queries, documents)`` over the whole collection."""
    vocab, doc_counts = lexical_index(corpus)
    return bm25_scores(count_matrix(queries, vocab), doc_counts, k1, b)


def metrics(scores: torch.Tensor, gold: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """``{"R@k": recall at k for each k, "MRR": mean reciprocal rank}``."""
    ranks = gold_ranks(scores, gold)
    return {**{f"R@{k}": recall_at_k(ranks, k) for k in ks}, "MRR": mean_reciprocal_rank(ranks)}


class DenseRetriever:
    """A trained :class:`~book.nn.retrieval.DualEncoder` with its vocabulary; ``scores(queries)`` against
    every document of the corpus."""

    def __init__(self, model: DualEncoder, vocab: dict[str, int], corpus: Corpus):
        self.model, self.vocab, self.corpus = model.eval(), vocab, corpus
        with torch.no_grad():
            self.doc_vecs = model.docs(encode_ids(corpus.docs, vocab))

    def scores(self, queries: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return (self.model.queries(encode_ids(queries, self.vocab)) @ self.doc_vecs.T).double()


class RetrievalMonitor(Replay):
    """Live view of dual-encoder training runs (one curve per run, e.g. per temperature): the InfoNCE loss
    of the training batch and validation recall@k, beside BM25's validation recall@k;
    ``replay(max_frames=24, interval=400)`` replays the recorded runs."""

    replay_hint = "pass the monitor to train_dual_encoder first"

    def __init__(self, k: int, baseline: float | None = None):
        self.k, self.baseline = k, baseline
        self.records: list[tuple[str, int, float, float]] = []
        self.fig = self.live = None

    def record(self, label: str, step: int, loss: float, recall: float, redraw: bool = True):
        self.records.append((label, step, loss, recall))
        if redraw:
            self.draw(len(self.records) - 1)
            self.show_live()

    def draw(self, k: int):
        """Every run's curves as recorded up to record ``k``."""
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(8, 2.8), dpi=80)
        last = max(r[1] for r in self.records)
        a, b = self.axes
        a.clear(), b.clear()
        labels = list(dict.fromkeys(r[0] for r in self.records))
        for j, label in enumerate(labels):
            rows = [r for r in self.records[:k + 1] if r[0] == label]
            if rows:
                _, steps, losses, recalls = zip(*rows)
                a.plot(steps, losses, "o-", ms=3, color=f"C{j}", label=label)
                b.plot(steps, recalls, "o-", ms=3, color=f"C{j}", label=label)
        if self.baseline is not None:
            b.axhline(self.baseline, ls="--", color="0.4", label="BM25")
        a.set(xlabel="step", ylabel="InfoNCE loss (train batch)", xlim=(0, last), yscale="log",
              title=f"{self.records[k][0]}, step {self.records[k][1]}")
        b.set(xlabel="step", ylabel=f"validation recall@{self.k}", ylim=(0, 1.02), xlim=(0, last))
        a.legend(fontsize=7, loc="upper right")
        b.legend(fontsize=7, loc="lower right")
        self.fig.tight_layout()

    def _frames(self) -> int:
        return len(self.records)

    def _draw_frame(self, k: int):
        self.draw(k)


def dense_inputs(corpus: Corpus):
    """``(vocabulary, training question ids, their gold documents, document ids, validation question ids,
    their gold documents)`` for the dual encoder, encoded once per corpus."""
    if corpus.encoded is None:
        vocab = dense_vocab(corpus)
        texts, gold, _, _ = corpus.questions("train")
        val_q, val_gold, _, _ = corpus.questions("val")
        corpus.encoded = (vocab, encode_ids(texts, vocab), gold, encode_ids(corpus.docs, vocab),
                          encode_ids(val_q, vocab), val_gold)
    return corpus.encoded


def train_dual_encoder(corpus: Corpus, steps: int, batch: int = 64, lr: float = 3e-3, tau: float = 0.05,
                       embed: int = 64, dim: int = 64, seed: int = 0, k: int = 5, monitor=None,
                       log_every: int = 50):
    """Train a :class:`~book.nn.retrieval.DualEncoder` with InfoNCE over in-batch negatives on the training
    questions only (batches hold distinct people, so no in-batch negative is a positive). Returns the
    :class:`DenseRetriever`; the monitor, if given, records loss and validation recall@``k`` at the first
    step (the loss at initialisation), every ``log_every`` steps and the last."""
    vocab, q_ids, gold, d_ids, val_ids, val_gold = dense_inputs(corpus)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DualEncoder(len(vocab), embed, dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(1, steps + 1):
        pick = torch.randperm(len(gold), generator=g)
        _, first = np.unique(gold[pick].numpy(), return_index=True)      # one question per person
        pick = pick[torch.from_numpy(np.sort(first))][:batch]
        loss = info_nce(model(q_ids[pick], d_ids[gold[pick]]), tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if monitor is not None and (step == 1 or step % log_every == 0 or step == steps):
            with torch.no_grad():
                sims = model.queries(val_ids) @ model.docs(d_ids).T
            monitor.record(f"tau={tau}", step, loss.item(), recall_at_k(gold_ranks(sims, val_gold), k))
    return DenseRetriever(model, vocab, corpus)


# ------------------------------------------------------------------------------------------- the reader
def make_prompt(question: str, passage: str | None) -> str:
    """The reader's input: the retrieved passage (if any) above the question."""
    return (f"context: {passage}\n" if passage else "") + f"question: {question}\nanswer:"


_ASKS = [("town", ("live", "town")), ("profession", ("living", "job")), ("animal", ("pet", "animal")),
         ("colour", ("colour",))]
_VALUES = {"profession": list(PROFESSIONS), "animal": list(ANIMALS), "colour": list(COLOURS),
           "town": [t.lower() for t in TOWNS]}


def read(prompt: str, fallback: dict[str, str]) -> str:
    """A rule-based extractive reader: find which slot the question asks for (its key words), answer with
    the first word of the context that is a value of that slot; without one, ``fallback[slot]`` (the most
    common training answer: what a reader with no knowledge of these people can do)."""
    context, _, question = prompt.partition("question:")
    q = tokenize(question)
    slot = next((s for s, keys in _ASKS if any(k in q for k in keys)), "town")
    values = set(_VALUES[slot])
    return next((t for t in tokenize(context.replace("context:", "")) if t in values), fallback[slot])


def majority_answers(corpus: Corpus) -> dict[str, str]:
    """The most common training answer of each slot."""
    out = {}
    for slot in SLOTS:
        answers = [q[4].lower() for q in corpus.queries["train"] if q[3] == slot]
        out[slot] = max(sorted(set(answers)), key=answers.count)
    return out


def answer_accuracy(corpus: Corpus, split: str, passages: list[int] | None, kind: str | None = None) -> float:
    """Reader accuracy on one split's questions given one passage per question (document ids; ``None``:
    no passage, closed book)."""
    texts, _, _, answers = corpus.questions(split, kind)
    fallback = majority_answers(corpus)
    right = [read(make_prompt(t, None if passages is None else corpus.docs[p]), fallback) == a.lower()
             for t, p, a in zip(texts, passages if passages is not None else [None] * len(texts), answers)]
    return float(np.mean(right))


# ------------------------------------------------------------------------------------------ the explorer
class SearchExplorer(Explorer):
    """Type a question; see the top ``k`` documents with their scores under BM25 and the dual encoder
    (the gold document, when the question is one of the corpus's, in green)."""

    defaults = dict(query="Where does the person who makes bread, has a feline and likes crimson live?", k=5)
    layout = dict(nrows=1, ncols=2, figsize=(9, 3.2))
    per_row = 2

    def __init__(self, corpus: Corpus, dense: DenseRetriever, k1: float = 1.2, b: float = 0.75, **settings):
        self.corpus, self.dense, self.k1, self.b = corpus, dense, k1, b
        self.gold = {q[0]: q[1] for split in corpus.queries.values() for q in split}
        super().__init__(**settings)

    def _validate(self, s, changed):
        if not 1 <= int(s["k"]) <= 10:
            raise ValueError(f"k must be between 1 and 10, got {s['k']}")

    def _controls(self):
        import ipywidgets as widgets
        return {"query": widgets.Text(description="question", layout=widgets.Layout(width="560px")),
                "k": widgets.IntSlider(min=1, max=10, description="top k")}

    def draw(self, **override):
        s = self.resolve(**override)
        self.figure()
        found = {}
        for ax, (name, scores) in zip(self.axes, [
                ("BM25", bm25_search(self.corpus, [s["query"]], self.k1, self.b)[0]),
                ("dual encoder", self.dense.scores([s["query"]])[0])]):
            top = scores.topk(int(s["k"]))
            ids = top.indices.tolist()
            gold = self.gold.get(s["query"])
            ax.clear()
            ax.barh(range(len(ids))[::-1], top.values.numpy(),
                    color=["C2" if i == gold else "C0" for i in ids])
            ax.set_yticks(range(len(ids))[::-1], [f"{self.corpus.names[i]} ({self.corpus.facts[i]['profession']})"
                                                 for i in ids], fontsize=7)
            ax.set(title=name, xlabel="score")
            found[name] = ids
        self.fig.suptitle(s["query"][:90], fontsize=8)
        self.fig.tight_layout()
        return found


def fusion_weights() -> list[float]:
    """The hybrid's candidate BM25 weights, chosen among on validation."""
    return [round(0.1 * i, 1) for i in range(1, 10)]


def experiment(seed: int, steps: int, taus=(0.05, 0.1, 0.2), n_people: int = 240, batch: int = 64,
               lr: float = 3e-3, embed: int = 64, dim: int = 64, k1s=(0.9, 1.2, 2.0),
               bs=(0.5, 0.75, 1.0)) -> dict:
    """The chapter's whole measurement for one seed (corpus and training): BM25's ``k1`` and ``b``, the
    temperature and the fusion weight chosen on validation by MRR, then test metrics by question kind for
    BM25, TF-IDF, the dual encoder and the hybrid, and the reader's accuracy closed-book, with each
    retriever's top passage and with the gold passage. ``python -m book.lab.retrieval --sweep`` runs it
    for seeds 0-4."""
    from book.nn.retrieval import tfidf_scores, zscore_fusion
    c = make_corpus(n_people, seed=seed)
    vq, vg, _, _ = c.questions("val")
    bm_mrr = {(k1, b): metrics(bm25_search(c, vq, k1, b), vg)["MRR"] for k1 in k1s for b in bs}
    k1, b = max(bm_mrr, key=bm_mrr.get)
    runs = {tau: train_dual_encoder(c, steps, batch, lr, tau, embed, dim, seed=seed) for tau in taus}
    val_mrr = {tau: metrics(r.scores(vq), vg)["MRR"] for tau, r in runs.items()}
    tau = max(val_mrr, key=val_mrr.get)
    dense = runs[tau]
    bm_v = bm25_search(c, vq, k1, b)
    w_mrr = {w: metrics(zscore_fusion(bm_v, dense.scores(vq), w), vg)["MRR"] for w in fusion_weights()}
    w = max(w_mrr, key=w_mrr.get)
    vocab = lexical_vocab(c)
    out = {"k1, b": (k1, b), "tau": tau, "weight": w}
    for kind in ("name", "paraphrase", None):
        tq, tg, _, _ = c.questions("test", kind)
        bm = bm25_search(c, tq, k1, b)
        ds = dense.scores(tq)
        scores = {"bm25": bm, "tfidf": tfidf_scores(count_matrix(tq, vocab), count_matrix(c.docs, vocab)),
                  "dense": ds, "hybrid": zscore_fusion(bm, ds, w)}
        key = kind or "all"
        for name, s in scores.items():
            out[f"{key}/{name}"] = metrics(s, tg)
        for name in ("bm25", "dense", "hybrid"):
            out[f"{key}/rag_{name}"] = answer_accuracy(c, "test", scores[name].argmax(1).tolist(), kind)
        out[f"{key}/rag_oracle"] = answer_accuracy(c, "test", tg.tolist(), kind)
        out[f"{key}/rag_none"] = answer_accuracy(c, "test", None, kind)
    return out


if __name__ == "__main__":     # python -m book.lab.retrieval [--sweep]: a sample of the corpus, or the sweep
    import sys
    if "--sweep" in sys.argv:
        torch.set_num_threads(1)
        res = [experiment(s, steps=1500) for s in range(5)]
        for key in res[0]:
            vals = [r[key] for r in res]
            if isinstance(vals[0], dict):
                print(key, {m: (round(min(v[m] for v in vals), 3), round(max(v[m] for v in vals), 3))
                            for m in vals[0]})
            else:
                print(key, vals)
        sys.exit()
    c = make_corpus()
    for i in range(3):
        print(c.split_of[i], "|", c.docs[i])
    for split in ("train", "val", "test"):
        print(split, len(c.queries[split]), "questions; e.g.", c.queries[split][-1])
