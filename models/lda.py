"""LDA by collapsed Gibbs sampling: the problem, its corpora and its numba kernel.

Every token ``t`` of document ``d``, word ``w`` holds a topic ``z[t]``; the sampler keeps
three count tables consistent with ``z`` and resamples one token at a time from::

    p(k) ∝ (ndk[d, k] + alpha) (nwk[w, k] + eta) / (nk[k] + n_words * eta)

with the token itself removed from the counts. STRADS runs it model-parallel by
rotation: the documents are split into ``blocks`` contiguous ranges, the vocabulary into
``blocks`` contiguous ranges, and in round ``r`` of a sweep the holder of document block
``a`` samples the tokens of the pair ``(a, (a + r) % blocks)`` (`rotation`). No two pairs
of a round share a document or a word, so ``ndk`` and ``nwk`` rows are never written by
two workers at once; only ``nk`` (one row) is shared, and is a little stale within a
round.

A worker holding document block ``a`` (tokens ``t0..t1``, `TokenIndex.doc_tokens`) and
the rows ``w0..w1`` of ``nwk`` for word block ``b`` runs::

    tokens = index.tokens(a, b)
    before = nwk_rows.copy(), nk.copy()
    gibbs_block(tokens, corpus.docs, corpus.words, z_local, ndk_local, nwk_rows, nk,
                alpha, eta, corpus.n_words, seed, word_offset=w0, doc_offset=d0,
                token_offset=t0)
    push nwk_rows - before[0] and nk - before[1]; push z_local where it changed

The parameter-server tables (`Lda.tables`) are ``nwk``, ``nk`` and ``z`` (float64);
``ndk`` is rebuilt from ``z`` (`counts`) by whoever needs it.

Corpora that install here (``data`` in ``[model]``):

- ``lda:reuters``: the 395 x 4258 Reuters document-term counts the ``lda`` package ships
  (about 84 000 tokens);
- ``generated:lda``: ``docs`` documents of about ``doc_length`` tokens over ``vocab``
  words, drawn from the LDA generative process with ``topics`` topics and priors
  ``alpha`` (document-topic) and ``eta`` (topic-word).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numba
import numpy as np
from scipy.special import gammaln

from actorml.topology.fields import checked, choice, integer, number_in

from .base import TableSpec
from .rounds import Changes, SweepCoordinator, changed_rows, group_pairs, rotation

__all__ = [
    "DATA",
    "Blocks",
    "Corpus",
    "Lda",
    "LdaCoordinator",
    "LdaWorker",
    "Sweep",
    "TokenIndex",
    "block_seed",
    "counts",
    "gibbs_block",
    "gibbs_single",
    "init_topics",
    "load_corpus",
    "log_likelihood",
    "make_blocks",
    "per_token_log_likelihood",
    "reuters_counts",
    "rotation",
]

DATA = ("lda:reuters", "generated:lda")
"""The corpora an LDA job can name in ``[model] data``."""


@attrs.frozen(eq=False)
class Corpus:
    """Every token's document and word (int64, tokens sorted by document).

    Attributes:
        docs: the document of each token, non-decreasing.
        words: the word (vocabulary id) of each token.
        n_docs: the number of documents.
        n_words: the vocabulary size (a word may occur nowhere).
    """

    docs: np.ndarray
    words: np.ndarray
    n_docs: int
    n_words: int

    @property
    def n_tokens(self) -> int:
        return int(self.docs.size)

    def token_range(self, d0: int, d1: int) -> tuple[int, int]:
        """The tokens ``t0..t1`` (half-open) of documents ``d0..d1`` (half-open)."""
        t0, t1 = np.searchsorted(self.docs, [d0, d1])
        return int(t0), int(t1)


def _from_counts(matrix: np.ndarray) -> Corpus:
    """Expand a document-term count matrix into tokens, by document then word."""
    matrix = np.asarray(matrix)
    d, w = np.nonzero(matrix)
    n = matrix[d, w].astype(np.int64)
    docs = np.repeat(d.astype(np.int64), n)
    words = np.repeat(w.astype(np.int64), n)
    return Corpus(docs, words, int(matrix.shape[0]), int(matrix.shape[1]))


def reuters_counts() -> np.ndarray:
    """The 395 x 4258 Reuters document-term counts the ``lda`` package ships.

    ``lda.datasets.load_reuters()`` reads the same file but leaves it open (a
    ``ResourceWarning``), so the file is read here.
    """
    from importlib.resources import files

    import lda.utils

    with (files("lda") / "tests" / "reuters.ldac").open(encoding="utf-8") as stream:
        return np.asarray(lda.utils.ldac2dtm(stream, offset=0))


def _reuters() -> Corpus:
    return _from_counts(reuters_counts())


def _generated(
    docs: int, vocab: int, topics: int, doc_length: int, alpha: float, eta: float, seed: int
) -> Corpus:
    """Draw a corpus from LDA's generative process (vectorised over documents and topics)."""
    rng = np.random.default_rng(seed)
    phi = rng.dirichlet(np.full(vocab, eta), size=topics)  # topic -> word
    theta = rng.dirichlet(np.full(topics, alpha), size=docs)  # document -> topic
    lengths = np.maximum(rng.poisson(doc_length, size=docs), 1)
    per_topic = rng.multinomial(lengths, theta)  # (docs, topics) token counts
    doc_ids, word_ids = [], []
    for k in range(topics):
        m = int(per_topic[:, k].sum())
        doc_ids.append(np.repeat(np.arange(docs, dtype=np.int64), per_topic[:, k]))
        # Inverse-CDF draws: the tokens of one topic are exchangeable within a document.
        cdf = np.cumsum(phi[k])
        drawn = np.searchsorted(cdf, rng.random(m) * cdf[-1], side="right")
        word_ids.append(np.minimum(drawn, vocab - 1).astype(np.int64))
    d = np.concatenate(doc_ids)
    w = np.concatenate(word_ids)
    order = np.lexsort((w, d))  # by document, then word, as `_from_counts`
    return Corpus(d[order], w[order], docs, vocab)


def load_corpus(
    data: str,
    *,
    docs: int = 10_000,
    vocab: int = 10_000,
    topics: int = 100,
    doc_length: int = 200,
    alpha: float = 0.1,
    eta: float = 0.01,
    seed: int = 0,
) -> Corpus:
    """Load one of `DATA` (the keywords shape ``generated:lda``; the rest ignore them).

    Raises:
        ValueError: an unknown ``data``.
    """
    if data == "lda:reuters":
        return _reuters()
    if data == "generated:lda":
        return _generated(docs, vocab, topics, doc_length, alpha, eta, seed)
    raise ValueError(f"unknown lda data {data!r} (expected one of: {', '.join(DATA)})")


def _balanced(weights: np.ndarray, parts: int) -> np.ndarray:
    """``parts + 1`` bounds of contiguous, non-empty ranges holding about equal weight."""
    n = int(weights.size)
    if not 1 <= parts <= n:
        raise ValueError(f"cannot split {n} ids into {parts} blocks")
    cum = np.cumsum(weights, dtype=np.float64)
    targets = cum[-1] * np.arange(1, parts) / parts
    bounds = np.concatenate([[0], np.searchsorted(cum, targets, side="right"), [n]])
    bounds = bounds.astype(np.int64)
    for i in range(1, parts):  # every range keeps at least one id
        bounds[i] = max(bounds[i], bounds[i - 1] + 1)
    for i in range(parts - 1, 0, -1):
        bounds[i] = min(bounds[i], bounds[i + 1] - 1)
    return bounds


@attrs.frozen(eq=False)
class Blocks:
    """Documents and vocabulary each cut into ``blocks`` contiguous ranges.

    Attributes:
        doc_bounds: ``blocks + 1`` increasing document ids; block ``a`` is
            ``doc_bounds[a]..doc_bounds[a + 1]`` (half-open).
        word_bounds: the same for word ids.
    """

    doc_bounds: np.ndarray
    word_bounds: np.ndarray

    @property
    def blocks(self) -> int:
        return int(self.doc_bounds.size - 1)

    def docs(self, a: int) -> tuple[int, int]:
        """Document block ``a`` as ``(d0, d1)``."""
        return int(self.doc_bounds[a]), int(self.doc_bounds[a + 1])

    def words(self, b: int) -> tuple[int, int]:
        """Word block ``b`` as ``(w0, w1)``: the rows of ``nwk`` it needs."""
        return int(self.word_bounds[b]), int(self.word_bounds[b + 1])


def make_blocks(corpus: Corpus, blocks: int) -> Blocks:
    """Cut documents and vocabulary into ``blocks`` ranges of about equal token counts.

    Raises:
        ValueError: more blocks than documents or words.
    """
    doc_weight = np.bincount(corpus.docs, minlength=corpus.n_docs)
    word_weight = np.bincount(corpus.words, minlength=corpus.n_words)
    return Blocks(_balanced(doc_weight, blocks), _balanced(word_weight, blocks))


@attrs.frozen(eq=False)
class TokenIndex:
    """The tokens of every pair (doc block, word block), sorted once.

    Attributes:
        blocks: the cut the index was built for.
        order: token ids grouped by pair (pair ``a * blocks + b``), in token order within.
        offsets: ``blocks ** 2 + 1`` starts of each pair's group in ``order``.
    """

    blocks: Blocks
    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, corpus: Corpus, blocks: Blocks) -> TokenIndex:
        """Index ``corpus`` under ``blocks`` (one linear pass over the tokens)."""
        order, offsets = group_pairs(
            corpus.docs, corpus.words, blocks.doc_bounds, blocks.word_bounds
        )
        return cls(blocks, order, offsets)

    def tokens(self, a: int, b: int) -> np.ndarray:
        """The token ids of documents in block ``a`` with words in block ``b`` (a view)."""
        i = a * self.blocks.blocks + b
        return self.order[self.offsets[i] : self.offsets[i + 1]]

    def doc_tokens(self, a: int) -> tuple[int, int]:
        """Document block ``a``'s tokens as ``(t0, t1)``: its rows of the ``z`` table."""
        B = self.blocks.blocks
        return int(self.offsets[a * B]), int(self.offsets[(a + 1) * B])


def block_seed(seed: int, sweep: int, a: int, b: int) -> int:
    """The kernel seed for pair ``(a, b)`` in ``sweep`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, sweep, a, b]).generate_state(1)[0])


@numba.njit(cache=True, nogil=True)
def gibbs_block(
    tokens: np.ndarray,
    docs: np.ndarray,
    words: np.ndarray,
    z: np.ndarray,
    ndk: np.ndarray,
    nwk: np.ndarray,
    nk: np.ndarray,
    alpha: float,
    eta: float,
    n_words: int,
    seed: int,
    word_offset: int = 0,
    doc_offset: int = 0,
    token_offset: int = 0,
) -> int:
    """One collapsed-Gibbs pass over ``tokens`` in order, updating ``z`` and the counts
    in place; returns how many tokens changed topic.

    Args:
        tokens: global token ids (int64).
        docs, words: every token's document and word (`Corpus`).
        z: int64 topics; token ``t`` is ``z[t - token_offset]``.
        ndk: float64 document-topic counts; document ``d`` is row ``d - doc_offset``.
        nwk: float64 word-topic counts; word ``w`` is row ``w - word_offset`` (a local
            copy of rows ``w0..`` passes ``word_offset=w0``).
        nk: float64 topic totals (``nwk`` summed over the whole vocabulary).
        alpha, eta: the document-topic and topic-word priors.
        n_words: the whole vocabulary's size (not the local rows').
        seed: seeds numba's generator (per thread), so a call is reproducible.
    """
    np.random.seed(seed)
    n_topics = nk.shape[0]
    eta_sum = n_words * eta
    cum = np.empty(n_topics)
    moved = 0
    for i in range(tokens.shape[0]):
        t = tokens[i]
        d = docs[t] - doc_offset
        w = words[t] - word_offset
        old = z[t - token_offset]
        ndk[d, old] -= 1.0
        nwk[w, old] -= 1.0
        nk[old] -= 1.0
        total = 0.0
        for k in range(n_topics):
            total += (ndk[d, k] + alpha) * (nwk[w, k] + eta) / (nk[k] + eta_sum)
            cum[k] = total
        u = np.random.random() * total
        new = 0
        while new < n_topics - 1 and cum[new] <= u:
            new += 1
        z[t - token_offset] = new
        ndk[d, new] += 1.0
        nwk[w, new] += 1.0
        nk[new] += 1.0
        if new != old:
            moved += 1
    return moved


def init_topics(corpus: Corpus, n_topics: int, seed: int) -> np.ndarray:
    """Topics drawn uniformly for every token (int64)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_topics, size=corpus.n_tokens, dtype=np.int64)


def counts(
    corpus: Corpus, z: np.ndarray, n_topics: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float64 counts of topics ``z``: ``ndk`` ``(n_docs, K)``, ``nwk`` ``(n_words, K)``
    and ``nk`` ``(K,)``."""
    z = np.asarray(z, dtype=np.int64)
    K = n_topics
    ndk = np.bincount(corpus.docs * K + z, minlength=corpus.n_docs * K)
    nwk = np.bincount(corpus.words * K + z, minlength=corpus.n_words * K)
    nk = np.bincount(z, minlength=K)
    return (
        ndk.reshape(corpus.n_docs, K).astype(np.float64),
        nwk.reshape(corpus.n_words, K).astype(np.float64),
        nk.astype(np.float64),
    )


def log_likelihood(nwk: np.ndarray, ndk: np.ndarray, alpha: float, eta: float) -> float:
    """The complete log-likelihood ``log p(w, z) = log p(w | z) + log p(z)``.

    The formula of the ``lda`` package's ``LDA.loglikelihood()`` (its ``_loglikelihood``),
    from whole tables: ``nwk`` is ``(n_words, K)``, ``ndk`` is ``(n_docs, K)``; the topic
    totals are ``nwk``'s column sums and the document lengths ``ndk``'s row sums.
    """
    nwk = np.asarray(nwk, dtype=np.float64)
    ndk = np.asarray(ndk, dtype=np.float64)
    n_words, n_topics = nwk.shape
    n_docs = ndk.shape[0]
    nk = nwk.sum(axis=0)
    nd = ndk.sum(axis=1)
    word_counts = nwk[nwk > 0]
    doc_counts = ndk[ndk > 0]
    # log p(w | z): one Dirichlet-multinomial per topic over the vocabulary.
    ll = n_topics * gammaln(eta * n_words) - gammaln(eta * n_words + nk).sum()
    ll += (gammaln(eta + word_counts) - gammaln(eta)).sum()
    # log p(z): one Dirichlet-multinomial per document over the topics.
    ll += n_docs * gammaln(alpha * n_topics) - gammaln(alpha * n_topics + nd).sum()
    ll += (gammaln(alpha + doc_counts) - gammaln(alpha)).sum()
    return float(ll)


def per_token_log_likelihood(nwk: np.ndarray, ndk: np.ndarray, alpha: float, eta: float) -> float:
    """`log_likelihood` divided by the number of tokens (``ndk.sum()``)."""
    return log_likelihood(nwk, ndk, alpha, eta) / float(np.asarray(ndk).sum())


@attrs.frozen
class Sweep:
    """One point of a sampler's history.

    Attributes:
        sweep: sweeps done (0: the initial topics).
        seconds: sampling time so far (evaluation excluded).
        per_token: `per_token_log_likelihood` after that sweep.
    """

    sweep: int
    seconds: float
    per_token: float


def gibbs_single(
    corpus: Corpus,
    *,
    n_topics: int,
    alpha: float,
    eta: float,
    sweeps: int,
    blocks: int = 1,
    seed: int = 0,
) -> tuple[np.ndarray, list[Sweep]]:
    """The single-process sampler: each sweep visits every pair in `rotation` order with
    `gibbs_block` (pair ``(a, b)`` of sweep ``s`` seeded ``block_seed(seed, s, a, b)``).

    Returns:
        The final topics and the history, one `Sweep` before sampling and one per sweep.
    """
    z = init_topics(corpus, n_topics, seed)
    ndk, nwk, nk = counts(corpus, z, n_topics)
    index = TokenIndex.build(corpus, make_blocks(corpus, blocks))
    history = [Sweep(0, 0.0, per_token_log_likelihood(nwk, ndk, alpha, eta))]
    seconds = 0.0
    for s in range(1, sweeps + 1):
        start = time.perf_counter()
        for step in range(blocks):
            for a, b in rotation(blocks, step):
                gibbs_block(
                    index.tokens(a, b), corpus.docs, corpus.words, z, ndk, nwk, nk,
                    alpha, eta, corpus.n_words, block_seed(seed, s, a, b),
                )  # fmt: skip
        seconds += time.perf_counter() - start
        history.append(Sweep(s, seconds, per_token_log_likelihood(nwk, ndk, alpha, eta)))
    return z, history


@attrs.frozen
class Lda:
    """An LDA problem whose state lives in three tables: ``nwk`` (one row per word),
    ``nk`` (one row) and ``z`` (one row per token, so a restarted worker rebuilds its
    documents' ``ndk`` from the shards).

    Args:
        n_features: the vocabulary size, the rows of ``nwk`` (the scheduler learns it
            from the corpus, as for Lasso; `sized` sets it and ``n_tokens``).
        n_tokens: the rows of ``z``.
        data: one of `DATA`.
        topics: the number of topics K.
        alpha, eta: the document-topic and topic-word priors.
        sweeps: how many passes over every token.
        blocks: document and word blocks of the rotation (0: as many as workers).
        seed: the seed of the initial topics, the kernels and ``generated:lda``.
        evaluate_every: sweeps between the job's evaluations (per-token log-likelihood
            in ``metrics.jsonl``); 0: only after the last.
        docs, vocab, doc_length: the shape of ``generated:lda`` (drawn with ``topics``,
            ``alpha`` and ``eta``).
    """

    name: ClassVar[str] = "lda"
    schedule: ClassVar[str] = "rotation"
    OPTIONS: ClassVar[tuple[str, ...]] = (
        "data", "topics", "alpha", "eta", "sweeps", "blocks", "seed", "evaluate_every",
        "docs", "vocab", "doc_length",
    )  # fmt: skip

    n_features: int = 1
    n_classes: int = 1
    n_tokens: int = 1
    data: str = attrs.field(default="lda:reuters", validator=checked(choice("data", DATA)))
    topics: int = attrs.field(default=20, validator=checked(integer(1, 100_000)))
    alpha: float = attrs.field(default=0.1, validator=checked(number_in(1e-12)))
    eta: float = attrs.field(default=0.01, validator=checked(number_in(1e-12)))
    sweeps: int = attrs.field(default=100, validator=checked(integer(1, 1_000_000)))
    blocks: int = attrs.field(default=0, validator=checked(integer(0, 100_000)))
    seed: int = attrs.field(default=0, validator=checked(integer(0)))
    evaluate_every: int = attrs.field(default=1, validator=checked(integer(0)))
    docs: int = attrs.field(default=10_000, validator=checked(integer(1, 100_000_000)))
    vocab: int = attrs.field(default=10_000, validator=checked(integer(1, 100_000_000)))
    doc_length: int = attrs.field(default=200, validator=checked(integer(1, 1_000_000)))

    def tables(self) -> tuple[TableSpec, ...]:
        return (
            TableSpec("nwk", self.n_features, self.topics),
            TableSpec("nk", 1, self.topics),
            TableSpec("z", self.n_tokens, 1),
        )

    def load(self) -> Corpus:
        return load_corpus(
            self.data, docs=self.docs, vocab=self.vocab, topics=self.topics,
            doc_length=self.doc_length, alpha=self.alpha, eta=self.eta, seed=self.seed,
        )  # fmt: skip

    def sizes(self, data: Corpus, workers: int) -> dict[str, int]:
        """``n_features`` (the vocabulary), ``n_tokens`` and ``blocks`` (the workers'
        count when left at 0, at most the documents or words there are)."""
        blocks = self.blocks or max(1, min(workers, data.n_docs, data.n_words))
        return {"n_features": data.n_words, "n_tokens": data.n_tokens, "blocks": blocks}

    def worker(self, data: Corpus) -> LdaWorker:
        index = TokenIndex.build(data, make_blocks(data, max(1, self.blocks)))
        return LdaWorker(data, index, self.topics, self.alpha, self.eta, self.seed)

    def coordinator(self, data: Corpus, settings: Mapping[str, Any]) -> LdaCoordinator:
        return LdaCoordinator(
            self.sweeps, max(1, self.blocks), self.evaluate_every, corpus=data,
            topics=self.topics, alpha=self.alpha, eta=self.eta,
        )  # fmt: skip


def _doc_topics(corpus: Corpus, z: np.ndarray, d0: int, d1: int, t0: int, k: int) -> np.ndarray:
    """``ndk`` of documents ``d0..d1`` from the topics ``z`` of their tokens ``t0..``
    (a token without a topic yet, -1, counts nowhere)."""
    has = z >= 0
    docs = corpus.docs[t0 : t0 + z.size][has] - d0
    return (
        np.bincount(docs * k + z[has], minlength=(d1 - d0) * k)
        .reshape(d1 - d0, k)
        .astype(np.float64)
    )


@attrs.define(eq=False)
class LdaWorker:
    """A worker's side of an LDA job: a block ``[a, b, sweep]`` samples the tokens of
    document block ``a`` whose words are in word block ``b``.

    It reads the ``z`` rows of block ``a``'s documents (their ``ndk`` is rebuilt from
    them), the ``nwk`` rows of block ``b``'s words and ``nk``; pushes the change of the
    ``nwk`` rows and of ``nk`` (added to the other workers' by the shards: ``nk`` is
    consistent again at the round's end) and of every ``z`` row whose topic moved.

    The ``z`` table holds topic + 1: 0 is a token not drawn yet (the shards start every
    table at zero). The first visit of a token draws its topic uniformly and counts it,
    then samples it like the others, so the first sweep initialises as it goes.
    """

    corpus: Corpus
    index: TokenIndex
    topics: int
    alpha: float
    eta: float
    seed: int

    def _ranges(self, block: np.ndarray) -> tuple[int, int, int, int, int, int]:
        a, b = int(block[0]), int(block[1])
        (d0, d1), (w0, w1) = self.index.blocks.docs(a), self.index.blocks.words(b)
        t0, t1 = self.index.doc_tokens(a)
        return d0, d1, w0, w1, t0, t1

    def needs(self, block: np.ndarray) -> dict[str, np.ndarray | None]:
        _, _, w0, w1, t0, t1 = self._ranges(block)
        return {
            "nwk": np.arange(w0, w1, dtype=np.int64),
            "nk": np.zeros(1, dtype=np.int64),
            "z": np.arange(t0, t1, dtype=np.int64),
        }

    def owns(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Its word block's nwk rows and its documents' z rows: no other pair of the
        round shares a word block or a document block (nk is everyone's)."""
        needs = self.needs(block)
        return {"nwk": needs["nwk"], "z": needs["z"]}

    def size(self, block: np.ndarray) -> int:
        return int(self.index.tokens(int(block[0]), int(block[1])).size)

    def cost(self, block: np.ndarray) -> int:
        return self.size(block) * self.topics * 4

    def compute(self, block: np.ndarray, tables: dict[str, np.ndarray], round: int) -> Changes:
        a, b, sweep = (int(x) for x in block[:3])
        d0, d1, w0, w1, t0, t1 = self._ranges(block)
        corpus, k = self.corpus, self.topics
        before = tables["z"][t0:t1, 0].astype(np.int64) - 1
        z = before.copy()
        ndk = _doc_topics(corpus, z, d0, d1, t0, k)
        nwk_before, nk_before = tables["nwk"][w0:w1], tables["nk"][0]
        nwk, nk = nwk_before.copy(), nk_before.copy()
        tokens = self.index.tokens(a, b)
        seed = block_seed(self.seed, sweep, a, b)
        fresh = tokens[z[tokens - t0] < 0]
        if fresh.size:  # first visit: a uniform topic, counted, before sampling
            drawn = np.random.default_rng([seed, 1]).integers(0, k, size=fresh.size)
            z[fresh - t0] = drawn
            np.add.at(ndk, (corpus.docs[fresh] - d0, drawn), 1.0)
            np.add.at(nwk, (corpus.words[fresh] - w0, drawn), 1.0)
            np.add.at(nk, drawn, 1.0)
        gibbs_block(
            tokens, corpus.docs, corpus.words, z, ndk, nwk, nk, self.alpha, self.eta,
            corpus.n_words, seed, word_offset=w0, doc_offset=d0, token_offset=t0,
        )  # fmt: skip
        moved = np.flatnonzero(z != before)
        return {
            **changed_rows("nwk", np.arange(w0, w1, dtype=np.int64), nwk - nwk_before),
            **changed_rows("nk", np.zeros(1, dtype=np.int64), (nk - nk_before)[None, :]),
            "z": (t0 + moved, (z[moved] - before[moved]).astype(np.float64)[:, None]),
        }


@attrs.define(eq=False)
class LdaCoordinator(SweepCoordinator):
    """The scheduler's side of an LDA job: after every sweep it reads ``nwk`` and ``z``
    and writes the per-token log-likelihood (`per_token_log_likelihood`, ``ndk`` rebuilt
    from ``z``); done after ``sweeps`` sweeps. It `Repairs` the counts after a worker
    died mid-round."""

    TABLES = ("nwk", "z")

    corpus: Corpus = attrs.field(kw_only=True)
    topics: int = attrs.field(kw_only=True)
    alpha: float = attrs.field(kw_only=True)
    eta: float = attrs.field(kw_only=True)

    def evaluate(self, tables: dict[str, np.ndarray]) -> dict[str, float]:
        return {"per_token_log_likelihood": self.per_token(tables)}

    def per_token(self, tables: dict[str, np.ndarray]) -> float:
        """The per-token log-likelihood of the state the tables hold (tokens without a
        topic yet count nowhere)."""
        z = tables["z"][:, 0].astype(np.int64) - 1
        ndk = _doc_topics(self.corpus, z, 0, self.corpus.n_docs, 0, self.topics)
        if not ndk.sum():
            return float("nan")
        return per_token_log_likelihood(tables["nwk"], ndk, self.alpha, self.eta)

    def result(self, tables: dict[str, np.ndarray]) -> dict[str, Any]:
        z = tables["z"][:, 0].astype(np.int64) - 1
        _, nwk, nk = counts(self.corpus, np.maximum(z, 0), self.topics)
        consistent = bool(
            (z >= 0).all()
            and np.array_equal(nwk, tables["nwk"])
            and np.array_equal(nk, tables["nk"][0])
        )
        return {
            "per_token_log_likelihood": self.per_token(tables),
            "sweeps": self.evaluated,
            "tokens": self.corpus.n_tokens,
            "consistent": consistent,
            **({} if consistent else {"error": "the counts do not match the topics z"}),
        }

    def repair_reads(self, block: np.ndarray) -> tuple[str, ...]:
        return ("z", "nwk", "nk")

    def repair(self, block: np.ndarray, tables: dict[str, np.ndarray]) -> Changes:
        """After a worker died holding ``block``: its word block's ``nwk`` rows and ``nk``
        as the counts of ``z`` (the truth: a token's topic is one row, pushed whole or
        not at all), whichever of its pushes had landed."""
        w0, w1 = make_blocks(self.corpus, self.blocks).words(int(block[1]))
        z = tables["z"][:, 0].astype(np.int64) - 1
        k, words = self.topics, self.corpus.words
        inside = (z >= 0) & (words >= w0) & (words < w1)
        rows = np.bincount((words[inside] - w0) * k + z[inside], minlength=(w1 - w0) * k)
        nwk = rows.reshape(w1 - w0, k).astype(np.float64)
        nk = np.bincount(z[z >= 0], minlength=k).astype(np.float64)
        return {
            **changed_rows("nwk", np.arange(w0, w1, dtype=np.int64), nwk - tables["nwk"][w0:w1]),
            **changed_rows("nk", np.zeros(1, dtype=np.int64), (nk - tables["nk"][0])[None, :]),
        }
