"""LDA by collapsed Gibbs sampling: corpora, blocks, the kernel, and the ``lda`` package."""

from __future__ import annotations

import warnings

import attrs
import lda
import lda._lda
import lda.datasets
import numpy as np
import pytest

from actorml.models.lda import (
    Corpus,
    Lda,
    TokenIndex,
    block_seed,
    counts,
    gibbs_block,
    gibbs_single,
    init_topics,
    load_corpus,
    log_likelihood,
    make_blocks,
    per_token_log_likelihood,
    reuters_counts,
    rotation,
)
from actorml.topology.fields import FieldValueError

K, ALPHA, ETA, SWEEPS = 20, 0.1, 0.01, 100


@pytest.fixture(name="reuters", scope="module")
def _reuters() -> Corpus:
    return load_corpus("lda:reuters")


@pytest.fixture(name="package", scope="module")
def _package() -> lda.LDA:
    """The ``lda`` package's sampler fitted on the Reuters counts."""
    model = lda.LDA(n_topics=K, n_iter=SWEEPS, alpha=ALPHA, eta=ETA, random_state=1)
    return model.fit(reuters_counts())


@pytest.fixture(name="small")
def _small() -> Corpus:
    return load_corpus("generated:lda", docs=60, vocab=300, topics=5, doc_length=40, seed=3)


def package_log_likelihood(ndk: np.ndarray, nwk: np.ndarray) -> float:
    """The ``lda`` package's own ``_loglikelihood`` on our counts (its layouts and ints)."""
    nzw = np.asfortranarray(nwk.T.astype(np.intc))
    ndz = np.ascontiguousarray(ndk.astype(np.intc))
    nz = nzw.sum(axis=1).astype(np.intc)
    nd = ndz.sum(axis=1).astype(np.intc)
    return float(lda._lda._loglikelihood(nzw, ndz, nz, nd, ALPHA, ETA))


class TestReuters:
    def test_corpus_is_the_package_matrix(self, reuters: Corpus) -> None:
        """The tokens, counted back per (document, word), give the package's matrix."""
        with warnings.catch_warnings():  # the package's loader leaves its file open
            warnings.simplefilter("ignore", ResourceWarning)
            X = lda.datasets.load_reuters()
        np.testing.assert_array_equal(reuters_counts(), X)
        assert (reuters.n_docs, reuters.n_words) == X.shape == (395, 4258)
        assert reuters.docs.dtype == reuters.words.dtype == np.int64
        assert np.all(np.diff(reuters.docs) >= 0)
        back = np.bincount(reuters.docs * reuters.n_words + reuters.words, minlength=X.size)
        np.testing.assert_array_equal(back.reshape(X.shape), X)

    def test_sampler_matches_package(self, reuters: Corpus, package: lda.LDA) -> None:
        """After the same sweeps the per-token log-likelihood is the package's within 2%."""
        _, history = gibbs_single(
            reuters, n_topics=K, alpha=ALPHA, eta=ETA, sweeps=SWEEPS, blocks=3, seed=0
        )
        ours = history[-1].per_token
        theirs = package.loglikelihood() / reuters.n_tokens
        print(f"per-token log-likelihood after {SWEEPS} sweeps: ours {ours:.4f}, lda {theirs:.4f}")
        assert [h.sweep for h in history] == list(range(SWEEPS + 1))
        assert history[0].per_token < ours - 3.0  # it did learn from its random start
        assert abs(ours - theirs) <= 0.02 * abs(theirs)

    def test_log_likelihood_is_the_package_formula(self, reuters: Corpus, package: lda.LDA) -> None:
        """`log_likelihood` equals the package's on its fitted counts and on ours."""
        ours = log_likelihood(package.nzw_.T, package.ndz_, ALPHA, ETA)
        assert ours == pytest.approx(package.loglikelihood(), rel=1e-9, abs=0)
        z, _ = gibbs_single(reuters, n_topics=K, alpha=ALPHA, eta=ETA, sweeps=3, seed=5)
        ndk, nwk, _ = counts(reuters, z, K)
        expected = package_log_likelihood(ndk, nwk)
        assert log_likelihood(nwk, ndk, ALPHA, ETA) == pytest.approx(expected, rel=1e-9, abs=0)
        per_token = per_token_log_likelihood(nwk, ndk, ALPHA, ETA)
        assert per_token == pytest.approx(expected / reuters.n_tokens, rel=1e-9, abs=0)


class TestKernel:
    def test_counts_stay_consistent(self, small: Corpus) -> None:
        """After a pass the in-place counts are the counts of the new topics."""
        z = init_topics(small, 5, seed=0)
        before = z.copy()
        ndk, nwk, nk = counts(small, z, 5)
        tokens = np.arange(small.n_tokens, dtype=np.int64)
        moved = gibbs_block(tokens, small.docs, small.words, z, ndk, nwk, nk,
                            ALPHA, ETA, small.n_words, 7)  # fmt: skip
        assert moved == np.count_nonzero(z != before) > 0
        for got, want in zip((ndk, nwk, nk), counts(small, z, 5), strict=True):
            np.testing.assert_array_equal(got, want)

    def test_local_rows_match_whole_tables(self, small: Corpus) -> None:
        """A pass on local copies of a pair's rows (with offsets) is the pass on the whole
        tables: same topics, and the rows' deltas added back give the recomputed counts."""
        blocks = make_blocks(small, 3)
        index = TokenIndex.build(small, blocks)
        z = init_topics(small, 5, seed=1)
        ndk, nwk, nk = counts(small, z, 5)
        (d0, d1), (w0, w1) = blocks.docs(1), blocks.words(2)
        t0, t1 = index.doc_tokens(1)
        tokens = index.tokens(1, 2)
        args = (ALPHA, ETA, small.n_words, block_seed(0, 1, 1, 2))

        z_local, ndk_local = z[t0:t1].copy(), ndk[d0:d1].copy()
        nwk_local, nk_local = nwk[w0:w1].copy(), nk.copy()
        gibbs_block(tokens, small.docs, small.words, z_local, ndk_local, nwk_local, nk_local,
                    *args, word_offset=w0, doc_offset=d0, token_offset=t0)  # fmt: skip

        whole = [z.copy(), ndk.copy(), nwk.copy(), nk.copy()]
        gibbs_block(tokens, small.docs, small.words, *whole, *args)
        np.testing.assert_array_equal(z_local, whole[0][t0:t1])
        np.testing.assert_array_equal(nwk_local, whole[2][w0:w1])

        z[t0:t1] = z_local
        ndk[d0:d1] = ndk_local
        nwk[w0:w1] += nwk_local - nwk[w0:w1]  # a shard adds the pushed change
        nk += nk_local - nk
        assert np.count_nonzero(z != init_topics(small, 5, seed=1)) > 0
        for got, want in zip((ndk, nwk, nk), counts(small, z, 5), strict=True):
            np.testing.assert_array_equal(got, want)

    def test_seeded_passes_repeat(self, small: Corpus) -> None:
        """The same seed gives the same topics; another seed gives others."""

        def run(seed: int) -> np.ndarray:
            z = init_topics(small, 5, seed=0)
            tokens = np.arange(small.n_tokens, dtype=np.int64)
            gibbs_block(tokens, small.docs, small.words, z, *counts(small, z, 5),
                        ALPHA, ETA, small.n_words, seed)  # fmt: skip
            return z

        np.testing.assert_array_equal(run(11), run(11))
        assert np.any(run(11) != run(12))

    def test_draws_follow_the_conditional(self) -> None:
        """One token's topic is drawn from the collapsed conditional, denominator included."""
        corpus = Corpus(np.array([0]), np.array([1]), 1, 3)
        ndk = np.array([[1.0, 0.0, 3.0, 2.0]])
        nwk = np.array([[0.0, 2.0, 0.0, 1.0], [1.0, 1.0, 0.0, 4.0], [0.0, 0.0, 2.0, 0.0]])
        nk = nwk.sum(axis=0)
        alpha, eta = 0.5, 0.3
        # The token (word 1, topic 0) removed, then the formula by hand.
        d, w, nk_ = ndk[0] - [1, 0, 0, 0], nwk[1] - [1, 0, 0, 0], nk - [1, 0, 0, 0]
        p = (d + alpha) * (w + eta) / (nk_ + 3 * eta)
        p /= p.sum()
        draws = 20_000
        seen = np.zeros(4)
        tokens = np.array([0])
        for seed in range(draws):
            z = np.array([0])
            gibbs_block(tokens, corpus.docs, corpus.words, z, ndk.copy(), nwk.copy(),
                        nk.copy(), alpha, eta, corpus.n_words, seed)  # fmt: skip
            seen[z[0]] += 1
        np.testing.assert_allclose(seen / draws, p, atol=0.015)


class TestBlocks:
    def test_index_covers_every_token_once(self, small: Corpus) -> None:
        """The pairs' tokens partition the corpus, each pair holding its own docs and words."""
        blocks = make_blocks(small, 4)
        index = TokenIndex.build(small, blocks)
        seen = []
        for a in range(4):
            (d0, d1), (t0, t1) = blocks.docs(a), index.doc_tokens(a)
            assert (t0, t1) == small.token_range(d0, d1)
            for b in range(4):
                w0, w1 = blocks.words(b)
                tokens = index.tokens(a, b)
                assert np.all(np.diff(tokens) > 0)
                assert np.all((small.docs[tokens] >= d0) & (small.docs[tokens] < d1))
                assert np.all((small.words[tokens] >= w0) & (small.words[tokens] < w1))
                assert np.all((tokens >= t0) & (tokens < t1))
                seen.append(tokens)
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(small.n_tokens))

    def test_blocks_are_contiguous_and_balanced(self, small: Corpus) -> None:
        """Ranges cover every id, none empty, and hold about equal numbers of tokens."""
        blocks = make_blocks(small, 4)
        for bounds, n, ids in ((blocks.doc_bounds, small.n_docs, small.docs),
                               (blocks.word_bounds, small.n_words, small.words)):  # fmt: skip
            assert bounds[0] == 0 and bounds[-1] == n and np.all(np.diff(bounds) > 0)
            sizes = np.diff(np.searchsorted(ids, bounds, sorter=np.argsort(ids)))
            assert sizes.max() < 1.5 * small.n_tokens / 4
        with pytest.raises(ValueError, match=r"^cannot split 60 ids into 61 blocks$"):
            make_blocks(small, 61)

    def test_rotation_covers_every_pair_once_per_sweep(self) -> None:
        """A round never repeats a doc or word block; a sweep visits every pair once."""
        pairs = [p for step in range(5) for p in rotation(5, step)]
        assert sorted(pairs) == [(a, b) for a in range(5) for b in range(5)]
        for step in range(5):
            docs, words = zip(*rotation(5, step), strict=True)
            assert sorted(docs) == sorted(words) == list(range(5))


class TestGenerated:
    def test_shapes(self) -> None:
        """Documents and words in range, sorted by document, about ``doc_length`` each."""
        corpus = load_corpus("generated:lda", docs=200, vocab=500, topics=10, doc_length=50)
        assert (corpus.n_docs, corpus.n_words) == (200, 500)
        assert corpus.docs.dtype == corpus.words.dtype == np.int64
        assert np.all(np.diff(corpus.docs) >= 0)
        assert corpus.docs.min() == 0 and corpus.docs.max() == 199
        assert corpus.words.min() >= 0 and corpus.words.max() < 500
        assert 0.9 * 200 * 50 < corpus.n_tokens < 1.1 * 200 * 50

    def test_seed_decides_the_corpus(self) -> None:
        """The same seed draws the same corpus; another seed another one."""
        sizes = {"docs": 50, "vocab": 100, "topics": 4, "doc_length": 30}
        one, again = (load_corpus("generated:lda", **sizes, seed=4) for _ in range(2))
        other = load_corpus("generated:lda", **sizes, seed=5)
        np.testing.assert_array_equal(one.docs, again.docs)
        np.testing.assert_array_equal(one.words, again.words)
        assert one.n_tokens != other.n_tokens or np.any(one.words != other.words)

    def test_topics_are_learnable(self) -> None:
        """Sampling with the generating K beats one topic: the data carry topic structure."""
        corpus = load_corpus("generated:lda", docs=100, vocab=400, topics=8, doc_length=60)
        runs = {k: gibbs_single(corpus, n_topics=k, alpha=ALPHA, eta=ETA, sweeps=30, blocks=2)
                for k in (1, 8)}  # fmt: skip
        assert runs[8][1][-1].per_token > runs[1][1][-1].per_token + 0.3

    def test_single_sampler_repeats_by_seed(self, small: Corpus) -> None:
        """`gibbs_single` with the same seed gives the same topics and history."""
        one = gibbs_single(small, n_topics=5, alpha=ALPHA, eta=ETA, sweeps=3, blocks=2, seed=2)
        two = gibbs_single(small, n_topics=5, alpha=ALPHA, eta=ETA, sweeps=3, blocks=2, seed=2)
        np.testing.assert_array_equal(one[0], two[0])
        assert [h.per_token for h in one[1]] == [h.per_token for h in two[1]]


class TestProblem:
    def test_tables_follow_the_corpus(self, reuters: Corpus) -> None:
        """``nwk`` has a row per word, ``nk`` one row, ``z`` a row per token."""
        problem = attrs.evolve(Lda(topics=7), **Lda(topics=7).sizes(reuters, 4))
        assert [(t.name, t.rows, t.cols) for t in problem.tables()] == [
            ("nwk", 4258, 7), ("nk", 1, 7), ("z", reuters.n_tokens, 1)
        ]  # fmt: skip
        loaded = attrs.evolve(problem, data="generated:lda", docs=20, vocab=50).load()
        assert (loaded.n_docs, loaded.n_words) == (20, 50)

    def test_options_are_validated(self) -> None:
        """A bad option fails naming the field and the fix."""
        with pytest.raises(FieldValueError, match=r"unknown data 'lda:nips'"):
            Lda(data="lda:nips")
        with pytest.raises(FieldValueError, match=r"topics"):
            Lda(topics=0)
