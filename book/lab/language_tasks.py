"""Three language tasks on generated data, each scored with its standard metric from scratch.

Chapter: ``language_tasks``. It reuses the book's models rather than copying them: the shipped pretrained
GPT of :mod:`book.lab.pretraining` (through :class:`~book.lab.pretraining.GPTClassifier`) and the
encoder-decoder of :mod:`book.lab.seq2seq`.

* **Extractive question answering** (SQuAD, Rajpurkar et al. 2016): a question and a short passage of
  three facts; the answer is a span of the passage. :class:`SpanQA` puts a start/end head on the
  pretrained body; :func:`squad_em` and :func:`squad_f1` are SQuAD's exact match and token F1 (answers
  normalised: lower case, no punctuation, no articles). Baselines: the first span of the right type,
  the fact sharing the most words with the question, and a verb lookup table counted on the training
  examples (:func:`verb_lookup_baseline`), which solves this generated task outright.
* **Text classification with a BERT-style tokenizer**: short reviews whose label flips under "not"
  (:func:`make_reviews`); the tokens, padding and attention mask a BERT model receives; and what happens
  when the padding is not masked (:func:`logits_alone`, :func:`logits_beside`).
* **Machine translation** into a generated toy language with another word order and case endings
  (:func:`make_translation`); :func:`chrf` (Popović 2015) and :func:`bleu` (Papineni et al. 2002) from
  scratch; baselines: copy the source, or translate word by word with a dictionary.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from book.lab.pretraining import GPTClassifier, fit_logistic_lbfgs
from book.lab.seq2seq import BOS, EOS, PAD, Pairs, Seq2Seq
from book.train import Callback, State
from book.ui.explorer import Explorer, Replay

# ============================================================================ SQuAD's metrics
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation removed, the articles a/an/the removed,
    white space collapsed (the official evaluation script of SQuAD v1.1 does exactly these four steps)."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", s).split())


def squad_em(prediction: str, truths) -> float:
    """Exact match: 1.0 if the normalised prediction equals a normalised true answer (the best of several)."""
    truths = [truths] if isinstance(truths, str) else list(truths)
    if not truths:
        raise ValueError("give at least one true answer")
    return float(max(normalize_answer(prediction) == normalize_answer(t) for t in truths))


def _f1(pred_tokens: list, true_tokens: list) -> float:
    common = Counter(pred_tokens) & Counter(true_tokens)
    same = sum(common.values())
    if not pred_tokens or not true_tokens:      # SQuAD v2.0's rule: both empty is a match
        return float(pred_tokens == true_tokens)
    if same == 0:
        return 0.0
    p, r = same / len(pred_tokens), same / len(true_tokens)
    return 2 * p * r / (p + r)


def squad_f1(prediction: str, truths) -> float:
    """Token F1: precision and recall of the normalised answer's words (as a multiset) against each true
    answer's; the best over the true answers."""
    truths = [truths] if isinstance(truths, str) else list(truths)
    if not truths:
        raise ValueError("give at least one true answer")
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(t).split()) for t in truths)


# ============================================================================ the QA data
NAMES = ("tom", "ann", "hal", "ned", "meg", "kit")
ANIMALS = ("hen", "pig", "cat", "dog", "fox", "cow")
COLOURS = ("red", "fat", "big", "tame")     # half of the objects get one: "a red hen"
# verb in the passage -> (the same sense in other words: past, base form) for paraphrased questions
VERBS = {"saw": ("eyed", "eye"), "hit": ("smote", "smite"), "fed": ("nursed", "nurse"),
         "met": ("greeted", "greet")}
BASE = {"saw": "see", "hit": "hit", "fed": "feed", "met": "meet"}   # for literal questions


@dataclass
class QAExample:
    question: str
    passage: str
    answer: str          # the true span, as it appears in the passage
    start: int           # character offsets of the span in ``text`` (question + " " + passage)
    end: int             # inclusive
    paraphrased: bool    # the question's verb is a synonym, not the passage's word

    @property
    def text(self) -> str:
        return f"{self.question} {self.passage}"

    @property
    def context_start(self) -> int:
        return len(self.question) + 1


def make_qa(n: int, seed: int, paraphrase: float = 0.5) -> list[QAExample]:
    """``n`` generated two-fact passages ("tom fed a red hen. tom met a pig.") with a question about one
    fact ("what did tom feed?"); the answer is that fact's object, a span of the passage ("a red hen").

    The other fact is a *distractor*: same subject, another verb, so only the verb tells which fact
    answers. A share ``paraphrase`` of the questions uses a synonym of the passage's verb ("what did tom
    nurse?"), the others its base form ("feed"). The answer comes after its fact's subject and verb, so
    a left-to-right model can find it."""
    if not 0 <= paraphrase <= 1:
        raise ValueError(f"paraphrase must be a share in [0, 1], got {paraphrase}")
    g = torch.Generator().manual_seed(seed)
    verbs = list(VERBS)

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    out = []
    for _ in range(n):
        v_ans, v_dis = [verbs[i] for i in torch.randperm(len(verbs), generator=g)[:2].tolist()]
        subj = pick(NAMES)
        animals = [ANIMALS[i] for i in torch.randperm(len(ANIMALS), generator=g)[:2].tolist()]
        objs = [" ".join(["a"] + ([pick(COLOURS)] if torch.rand((), generator=g) < 0.5 else []) + [a])
                for a in animals]
        facts = [(v_ans, objs[0]), (v_dis, objs[1])]
        k = int(torch.randint(2, (1,), generator=g))      # where the answering fact goes
        if k == 1:
            facts.reverse()
        para = bool(torch.rand((), generator=g) < paraphrase)
        question = f"what did {subj} {VERBS[v_ans][1] if para else BASE[v_ans]}?"
        sentences = [f"{subj} {v} {o}." for v, o in facts]
        start = len(question) + 1 + sum(len(s) + 1 for s in sentences[:k]) + len(subj) + len(v_ans) + 2
        ex = QAExample(question, " ".join(sentences), objs[0], start, start + len(objs[0]) - 1, para)
        assert ex.text[ex.start:ex.end + 1] == objs[0]
        out.append(ex)
    return out


def encode_qa(examples: list[QAExample], vocab, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (n, T) character ids, right-padded with spaces to the longest text (T <= ``block``, the
    body's context); ``y`` (n, 2) the start and end positions of the answers."""
    texts = [e.text for e in examples]
    long = max(len(t) for t in texts)
    if long > block:
        raise ValueError(f"a question + passage has {long} characters, more than the block of {block}")
    x = torch.stack([vocab.encode(t.ljust(long)) for t in texts])
    y = torch.tensor([[e.start, e.end] for e in examples])
    return x, y


# ---------------------------------------------------------------------------- the model
class SpanQA(GPTClassifier):
    """Extractive QA on the pretrained GPT body: a linear **start/end head** maps each position's final
    hidden state to two scores, "the answer starts here" and "ends here" (BERT's SQuAD head, Devlin et al.
    2019). The body is causal, so the question comes first: every passage position can read it."""

    def __init__(self, body):
        super().__init__(body, n_classes=2)
        self.head = nn.Linear(body.cfg.n_embd, 2)      # replaces the classifier's head

    def forward(self, idx):
        return self.head(self.hidden(idx))             # (B, T, 2): start and end scores


def span_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of the cross-entropies of the start and the end position (each a softmax over positions)."""
    return (F.cross_entropy(out[..., 0], y[:, 0]) + F.cross_entropy(out[..., 1], y[:, 1])) / 2


def best_spans(out: torch.Tensor, context_start: torch.Tensor, context_end: torch.Tensor,
               max_len: int = 12) -> torch.Tensor:
    """(B, 2): the span ``start <= end < start + max_len`` inside the passage with the largest sum of
    start and end score (BERT's decoding rule)."""
    B, T, _ = out.shape
    pos = torch.arange(T, device=out.device)
    inside = (pos >= context_start[:, None]) & (pos < context_end[:, None])       # (B, T)
    s = out[..., 0].masked_fill(~inside, -math.inf)
    e = out[..., 1].masked_fill(~inside, -math.inf)
    score = s[:, :, None] + e[:, None, :]                                          # (B, start, end)
    ok = (pos[None, :] >= pos[:, None]) & (pos[None, :] < pos[:, None] + max_len)
    score = score.masked_fill(~ok, -math.inf).flatten(1)
    k = score.argmax(1)
    return torch.stack([k // T, k % T], 1)


@torch.no_grad()
def qa_predict(model: SpanQA, examples: list[QAExample], vocab, batch_size: int = 256) -> list[str]:
    """The predicted answer strings (spans of the passages), in eval mode."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x, _ = encode_qa(examples, vocab, model.body.cfg.block_size)
    c0 = torch.tensor([e.context_start for e in examples])
    c1 = torch.tensor([len(e.text) for e in examples])
    spans = torch.cat([best_spans(model(x[i:i + batch_size].to(dev)).cpu(), c0[i:i + batch_size],
                                  c1[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    return [e.text[a:b + 1] for e, (a, b) in zip(examples, spans.tolist())]


def qa_scores(predictions: list[str], examples: list[QAExample]) -> dict:
    """Mean exact match and F1, overall and for literal / paraphrased questions."""
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    em = torch.tensor([squad_em(p, e.answer) for p, e in zip(predictions, examples)])
    f1 = torch.tensor([squad_f1(p, e.answer) for p, e in zip(predictions, examples)])
    para = torch.tensor([e.paraphrased for e in examples])
    out = dict(em=em.mean().item(), f1=f1.mean().item())
    for name, m in (("literal", ~para), ("paraphrased", para)):
        out[f"em_{name}"] = em[m].mean().item() if m.any() else math.nan
    return out


# ---------------------------------------------------------------------------- QA baselines
def _facts(passage: str) -> list[list[str]]:
    return [f.split() for f in passage.rstrip(".").split(". ")]


def first_span_baseline(examples: list[QAExample]) -> list[str]:
    """The first span of the right type: the object of the passage's first fact."""
    return [" ".join(_facts(e.passage)[0][2:]) for e in examples]


def overlap_baseline(examples: list[QAExample]) -> list[str]:
    """The fact that shares the most words with the question (the first of equals) answers it with its
    object. Words are compared after SQuAD's normalisation."""
    out = []
    for e in examples:
        q = set(normalize_answer(e.question).split())
        facts = _facts(e.passage)
        overlap = [len(q & set(normalize_answer(" ".join(f)).split())) for f in facts]
        out.append(" ".join(facts[overlap.index(max(overlap))][2:]))
    return out


def _question_verb(question: str) -> str:
    return normalize_answer(question).split()[-1]          # "what did tom nurse?" -> "nurse"


def verb_lookup_baseline(train: list[QAExample], examples: list[QAExample]) -> list[str]:
    """A lookup table, no model: over the ``train`` examples, count which passage verb answered each
    question verb ("nurse" -> "fed"); answer each of ``examples`` with the object of the fact whose
    verb was counted most often with its question verb (the first of equals). It reads neither the
    names nor the objects: only which verb goes with which."""
    table: dict[str, Counter] = {}
    for e in train:
        for f in _facts(e.passage):
            if " ".join(f[2:]) == e.answer:
                table.setdefault(_question_verb(e.question), Counter())[f[1]] += 1
                break
    out = []
    for e in examples:
        counts = table.get(_question_verb(e.question), Counter())
        facts = _facts(e.passage)
        score = [counts[f[1]] for f in facts]
        out.append(" ".join(facts[score.index(max(score))][2:]))
    return out


# ---------------------------------------------------------------------------- the live view
class SpanMonitor(Callback, Replay):
    """Live view while :class:`SpanQA` fine-tunes (a :class:`~book.train.Callback` for ``fit``): left,
    validation exact match and F1 at every log point; right, the start and end probabilities the model
    gives each character of one validation example. ``replay()`` plays the run back."""

    replay_hint = "pass callbacks=[monitor] to fit first"

    def __init__(self, example: QAExample, val: list[QAExample], vocab, title: str = "fine-tuning"):
        self.example, self.val, self.vocab, self.title = example, val, vocab, title
        self.frames: list[tuple[int, float, float, torch.Tensor]] = []
        self.fig = self.live = None

    def on_log(self, state: State):
        model = state.model
        s = qa_scores(qa_predict(model, self.val, self.vocab), self.val)
        was = model.training
        model.eval()
        with torch.no_grad():
            x, _ = encode_qa([self.example], self.vocab, model.body.cfg.block_size)
            p = model(x.to(next(model.parameters()).device))[0].softmax(0).cpu()    # (T, 2)
        model.train(was)
        self.frames.append((state.step, s["em"], s["f1"], p[:len(self.example.text)]))
        self._draw_frame(len(self.frames) - 1)
        self.show_live()

    def _frames(self) -> int:
        return len(self.frames)

    def _draw_frame(self, k: int):
        import matplotlib.pyplot as plt

        if self.fig is None:
            self.fig, (self.ax_curve, self.ax_span) = plt.subplots(
                2, 1, figsize=(9, 5), dpi=80, gridspec_kw={"height_ratios": [1, 1.2]})
        steps = [f[0] for f in self.frames[:k + 1]]
        ax = self.ax_curve
        ax.clear()
        ax.plot(steps, [f[1] for f in self.frames[:k + 1]], "o-", label="exact match")
        ax.plot(steps, [f[2] for f in self.frames[:k + 1]], "s--", label="F1")
        ax.set(xlabel="training step", ylabel="validation score", ylim=(-0.02, 1.02),
               xlim=(0, max(f[0] for f in self.frames) * 1.05), title=self.title)
        ax.legend(loc="lower right", fontsize=8)
        ax = self.ax_span
        ax.clear()
        p = self.frames[k][3].numpy()
        T = len(p)
        pos = list(range(T))
        ax.bar([i - 0.2 for i in pos], p[:, 0], width=0.4, label="start")
        ax.bar([i + 0.2 for i in pos], p[:, 1], width=0.4, label="end")
        ax.axvspan(self.example.start - 0.5, self.example.end + 0.5, color="tab:green", alpha=0.15,
                   label="true answer")
        ax.set_xticks(range(T), list(self.example.text), fontsize=7)
        ax.set(ylim=(0, 1), ylabel="probability", xlim=(-0.7, T - 0.3))
        ax.set_title(f"step {self.frames[k][0]}: where does the answer start and end?", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
        self.fig.tight_layout()


# ============================================================================ text classification
SUBJECTS = ("film", "play", "book", "song", "show")
GOOD = ("good", "great", "fine", "fun")
BAD = ("bad", "dull", "awful", "poor")
REVIEW_LABELS = ("negative", "positive")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]     # BERT's special tokens, ids 0-4


def review_vocab() -> list[str]:
    """The word list of the tiny BERT tokenizer: BERT's special tokens first, then every review word."""
    words = ["i", "think", "the", "was", "not", "very", "really", "at", "all", "to", "me", "."]
    return SPECIAL + words + list(SUBJECTS) + list(GOOD) + list(BAD)


def make_reviews(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """``n`` generated one-line reviews and their labels (1 = positive): "the film was not good." is
    negative, "i think the play was not bad to me." positive. Half contain "not"; the fillers ("i think",
    "very", "to me") make their lengths vary from 5 to 11 words."""
    g = torch.Generator().manual_seed(seed)

    def coin(p=0.5):
        return bool(torch.rand((), generator=g) < p)

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    texts, labels = [], []
    for _ in range(n):
        good, neg = coin(), coin()
        words = (["i", "think"] if coin(0.3) else []) + ["the", pick(SUBJECTS), "was"]
        words += (["not"] if neg else []) + ([pick(("very", "really"))] if coin(0.4) else [])
        words += [pick(GOOD if good else BAD)] + (["to", "me"] if coin(0.3) else []) + ["."]
        texts.append(" ".join(words))
        labels.append(int(good != neg))
    return texts, torch.tensor(labels)


class MaskedClassifier(nn.Module):
    """Wraps a Hugging Face sequence classifier for :func:`book.train.fit`: its one input is the stacked
    ``(input_ids, attention_mask)`` of shape (B, 2, T); it returns the logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        ids, mask = batch.unbind(1)
        return self.model(input_ids=ids, attention_mask=mask).logits


def tokenize(tokenizer, texts: list[str], length: int | None = None) -> torch.Tensor:
    """(N, 2, T): ids and attention mask, padded to the longest text (or to ``length``)."""
    pad = dict(padding="max_length", max_length=length) if length else dict(padding=True)
    enc = tokenizer(texts, return_tensors="pt", **pad)
    return torch.stack([enc["input_ids"], enc["attention_mask"]], 1)


@torch.no_grad()
def logits_alone(clf: MaskedClassifier, tokenizer, texts: list[str]) -> torch.Tensor:
    """(N, classes): each text classified on its own, with no padding at all (texts of equal token
    length share a batch, which needs no padding)."""
    clf.eval()
    x = tokenize(tokenizer, texts)
    lengths = x[:, 1].sum(1)
    out = torch.empty(len(texts), clf.model.config.num_labels)
    for L in lengths.unique().tolist():
        rows = (lengths == L).nonzero().flatten()
        out[rows] = clf(x[rows, :, :L])
    return out


@torch.no_grad()
def logits_beside(clf: MaskedClassifier, tokenizer, texts: list[str], partner: str,
                  mask: bool = True) -> torch.Tensor:
    """(N, classes): the texts classified in one batch with ``partner``, all padded to the longest.
    ``mask=False`` passes an attention mask of all ones: the padding is attended to. (The texts of a
    batch do not interact, so this equals classifying each text in a batch of two with the partner.)"""
    clf.eval()
    x = tokenize(tokenizer, list(texts) + [partner])
    if not mask:
        x[:, 1] = 1
    return clf(x)[:-1]


def bag_of_words_baseline(train: tuple[torch.Tensor, torch.Tensor], vocab_size: int, pairs: bool = True,
                          weight_decay: float = 1e-3):
    """Logistic regression on counts of words (and, with ``pairs``, of neighbouring word pairs) of
    ``train = (x (N, 2, T), y)``, special tokens dropped, fitted with L-BFGS. Returns
    ``predict(x) -> labels``. Beyond neighbouring pairs, word order is invisible to it."""
    x, y = train
    V = vocab_size
    n_special = len(SPECIAL)

    def counts(x):
        ids = x[:, 0]
        c = torch.zeros(len(ids), V + V * V if pairs else V)
        c.scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.float))
        if pairs:
            both = (ids[:, :-1] >= n_special) & (ids[:, 1:] >= n_special)
            codes = V + ids[:, :-1] * V + ids[:, 1:]
            c.scatter_add_(1, codes, both.float())
        c[:, :n_special] = 0
        return c

    W, b = fit_logistic_lbfgs(counts(x), y, 2, weight_decay, max_iter=200)
    return lambda x: (counts(x) @ W + b).argmax(1)


# ============================================================================ translation
# A generated language pair. The source is English-like; the target ("Toyish") puts the verb last and the
# adjective after its noun, and marks nouns for their role: -o on the subject, -an on the object.
DET = {"the": "de", "a": "en"}
ADJ = {"big": "gros", "small": "kli", "red": "rud", "tall": "lang"}
NOUN = {"dog": "hund", "cat": "katz", "bird": "vogel", "horse": "perd"}
VERB = {"sees": "sihta", "likes": "maga", "chases": "jagta"}
SUBJ, OBJ = "o", "an"       # case endings


def _toyish_words() -> list[str]:
    nouns = [n + c for n in NOUN.values() for c in (SUBJ, OBJ)]
    return list(DET.values()) + list(ADJ.values()) + nouns + list(VERB.values())


MT_TOKENS = ["_", "<", ">"] + list(DET) + list(ADJ) + list(NOUN) + list(VERB) + _toyish_words()
MT_VOCAB = len(MT_TOKENS)
_MT_ID = {w: i for i, w in enumerate(MT_TOKENS)}
assert (_MT_ID["_"], _MT_ID["<"], _MT_ID[">"]) == (PAD, BOS, EOS)
MT_WIDTH = 7           # the longest source: det adj noun verb det adj noun


def translate_rule(words: list[str]) -> list[str]:
    """The grammar's own translation of a source sentence (the reference)."""
    verb_at = next(i for i, w in enumerate(words) if w in VERB)

    def phrase(ws, case):
        det, *adj, noun = ws
        return [DET[det], NOUN[noun] + case] + [ADJ[a] for a in adj]
    return phrase(words[:verb_at], SUBJ) + phrase(words[verb_at + 1:], OBJ) + [VERB[words[verb_at]]]


def dictionary_baseline(words: list[str]) -> list[str]:
    """Word by word with a bilingual dictionary, in the source's order; a noun gets its dictionary form
    (the subject form), since a dictionary does not know the noun's role in this sentence."""
    table = {**DET, **ADJ, **{n: t + SUBJ for n, t in NOUN.items()}, **VERB}
    return [table[w] for w in words]


def make_translation(n: int, seed: int, exclude: set | None = None) -> tuple[Pairs, list[tuple[str, str]]]:
    """``n`` random distinct source sentences ("the big dog chases a cat", 5 to 7 words) and their Toyish
    translations, as :class:`~book.lab.seq2seq.Pairs` of word ids (src (n, 7), tgt (n, 8) ending in the end
    token) and as ``(source, reference)`` strings. Sentences in ``exclude`` (source strings) are skipped."""
    g = torch.Generator().manual_seed(seed)

    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    def np_():
        return [pick(list(DET))] + ([pick(list(ADJ))] if torch.rand((), generator=g) < 0.5 else []) \
            + [pick(list(NOUN))]

    exclude = set() if exclude is None else exclude
    seen, src, tgt, strings = set(), [], [], []
    tries = 0
    while len(strings) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"could not draw {n} new sentences (the grammar has 4,800)")
        words = np_() + [pick(list(VERB))] + np_()
        s = " ".join(words)
        if s in seen or s in exclude:
            continue
        seen.add(s)
        ref = translate_rule(words)
        src.append([_MT_ID[w] for w in words] + [PAD] * (MT_WIDTH - len(words)))
        tgt.append([_MT_ID[w] for w in ref] + [EOS] + [PAD] * (MT_WIDTH - len(ref)))
        strings.append((s, " ".join(ref)))
    return Pairs(torch.tensor(src), torch.tensor(tgt)), strings


def mt_decode(ids) -> str:
    """Word ids to a sentence, stopping at the end token; padding and the start token are dropped."""
    out = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if i == EOS:
            break
        if i not in (PAD, BOS):
            out.append(MT_TOKENS[i])
    return " ".join(out)


class TeacherForced(nn.Module):
    """A :class:`~book.lab.seq2seq.Seq2Seq` for :func:`book.train.fit`: its input is the pair
    ``(src, tgt)``, its output the teacher-forced logits; :func:`seq2seq_batches` makes such batches."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, pair):
        return self.model(*pair)


def seq2seq_batches(data: Pairs, batch: int, generator: torch.Generator, device="cpu"):
    """``get_batch(step) -> ((src, tgt), tgt)``: random batches for :func:`book.train.fit`
    (use ``loss_fn=book.lab.seq2seq.seq_loss``)."""
    def get_batch(step):
        i = torch.randint(len(data), (batch,), generator=generator)
        src, tgt = data.src[i].to(device), data.tgt[i].to(device)
        return (src, tgt), tgt
    return get_batch


@torch.no_grad()
def translate(model: Seq2Seq, data: Pairs, batch_size: int = 512) -> list[str]:
    """Greedy translations of ``data.src`` as strings."""
    dev = next(model.parameters()).device
    ids = torch.cat([model.greedy(data.src[i:i + batch_size].to(dev), MT_WIDTH + 1)[0].cpu()
                     for i in range(0, len(data), batch_size)])
    return [mt_decode(r) for r in ids]


# ---------------------------------------------------------------------------- chrF and BLEU
def char_ngrams(s: str, n: int) -> Counter:
    """The character n-grams of ``s`` with its spaces removed (as chrF and sacreBLEU count them)."""
    s = s.replace(" ", "")
    return Counter(s[i:i + n] for i in range(len(s) - n + 1))


def chrf(hypotheses, references, max_n: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF (Popović 2015), in [0, 1]: for each n = 1..max_n, the character n-gram precision and
    recall over the whole corpus (matches clipped by counts); both averaged over n; then
    F_beta = (1 + beta²) P R / (beta² P + R). beta = 2 weighs recall twice as much as precision
    (sacreBLEU's default; Popović 2015 proposed beta = 3). Orders that no hypothesis or reference is long
    enough to have are left out of the averages."""
    hyps, refs = ([hypotheses], [references]) if isinstance(hypotheses, str) else (hypotheses, references)
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need as many hypotheses as references (and some), got {len(hyps)}, {len(refs)}")
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        match = n_hyp = n_ref = 0
        for h, r in zip(hyps, refs):
            ch, cr = char_ngrams(h, n), char_ngrams(r, n)
            match += sum((ch & cr).values())
            n_hyp += sum(ch.values())
            n_ref += sum(cr.values())
        if n_hyp and n_ref:
            precisions.append(match / n_hyp)
            recalls.append(match / n_ref)
    if not precisions:
        return 0.0
    P, R = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if P + R == 0:
        return 0.0
    return (1 + beta ** 2) * P * R / (beta ** 2 * P + R)


def bleu(hypotheses, references, max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002), in [0, 1], one reference per sentence: the geometric mean of the
    clipped word n-gram precisions (n = 1..max_n, counts summed over the corpus) times the brevity penalty
    exp(1 - r / c) when the hypotheses are shorter in total (c words) than the references (r words). No
    smoothing: a corpus without a single matching 4-gram scores 0."""
    hyps, refs = ([hypotheses], [references]) if isinstance(hypotheses, str) else (hypotheses, references)
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need as many hypotheses as references (and some), got {len(hyps)}, {len(refs)}")
    log_p = 0.0
    for n in range(1, max_n + 1):
        match = total = 0
        for h, r in zip(hyps, refs):
            hw, rw = h.split(), r.split()
            ch = Counter(tuple(hw[i:i + n]) for i in range(len(hw) - n + 1))
            cr = Counter(tuple(rw[i:i + n]) for i in range(len(rw) - n + 1))
            match += sum((ch & cr).values())
            total += sum(ch.values())
        if match == 0:
            return 0.0
        log_p += math.log(match / total) / max_n
    c = sum(len(h.split()) for h in hyps)
    r = sum(len(r.split()) for r in refs)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(log_p)


def exact_match(hypotheses: list[str], references: list[str]) -> float:
    """The share of hypotheses equal to their reference, word for word."""
    return sum(h == r for h, r in zip(hypotheses, references)) / len(references)


# ============================================================================ the explorer
class MetricExplorer(Explorer):
    """How chrF and BLEU score one reference translation against hypotheses with a chosen kind of error:
    ``errors`` words of the reference get the wrong case ending, are swapped with their neighbour
    (word order), or are dropped. Left: the two scores for 0..max errors; right: the hypothesis now."""

    defaults = {"kind": "case ending", "errors": 1}
    layout = {"ncols": 1, "figsize": (7, 3.2)}
    KINDS = ("case ending", "word order", "dropped word")
    reference = "de hundo gros en katzan kli jagta"

    def _controls(self):
        import ipywidgets as w
        return {"kind": w.Dropdown(options=self.KINDS, description="error"),
                "errors": w.IntSlider(min=0, max=3, description="how many")}

    def _validate(self, s, changed):
        if s["kind"] not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {s['kind']!r}")
        if not 0 <= s["errors"] <= 3:
            raise ValueError(f"errors must be 0..3, got {s['errors']}")

    def hypothesis(self, kind: str, errors: int) -> str:
        words = self.reference.split()
        if kind == "case ending":        # the two nouns, then the verb's final letter
            for i in (1, 4, 6)[:errors]:
                w = words[i]
                words[i] = (w[:-1] + "an" if w.endswith("o") else w[:-2] + "o" if w.endswith("an")
                            else w[:-1] + "e")
        elif kind == "word order":
            for i in (5, 1, 3)[:errors]:
                words[i], words[i + 1] = words[i + 1], words[i]
        else:
            for i in (2, 5, 3)[:errors]:
                words[i] = ""
        return " ".join(w for w in words if w)

    def draw(self, **override):
        s = self.resolve(**override)
        ax = self.figure() and self.axes
        ax.clear()
        xs = range(4)
        c = [chrf(self.hypothesis(s["kind"], k), self.reference) for k in xs]
        b = [bleu(self.hypothesis(s["kind"], k), self.reference) for k in xs]
        ax.plot(xs, c, "o-", label="chrF")
        ax.plot(xs, b, "s--", label="BLEU")
        ax.axvline(s["errors"], color="0.6", lw=1)
        hyp = self.hypothesis(s["kind"], s["errors"])
        ax.set(xlabel=f"number of errors: {s['kind']}", ylabel="score", ylim=(-0.02, 1.02), xticks=list(xs))
        ax.set_title(f"reference: {self.reference}\nhypothesis: {hyp}", fontsize=9)
        ax.legend(fontsize=8)
        self.fig.tight_layout()
        return {"chrf": c[s["errors"]], "bleu": b[s["errors"]], "hypothesis": hyp}
