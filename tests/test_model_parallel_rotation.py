"""Matrix factorisation and LDA as model-parallel jobs, under the rotation schedule.

The examples run as written (in-process clusters over the codec) and end where
independent implementations do: MF's held-out RMSE within 1% of ALS (written in
tests/test_mf.py from the textbook update), LDA's per-token log-likelihood within 2% of
the ``lda`` package's sampler after the same sweeps. A worker that crashes mid-round
costs its block a re-schedule, and LDA's counts still match its topics at the end: the
restarted worker rebuilt its documents from the ``z`` table.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs
import lda
import numpy as np
import pytest

from actorml.actors.mp_worker import MpWorker
from actorml.models.lda import reuters_counts
from actorml.models.mf import load_ratings, rmse
from actorml.topology import Topology

from .test_mf import als
from .test_model_parallel import check_audit
from .test_training import train

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def example(
    name: str,
    crash: str | None = None,
    kind: str = "tests.test_model_parallel:CrashOnce",
    **model: Any,
) -> Topology:
    """examples/NAME.toml as written (``model`` overrides; ``crash``: a worker of kind
    ``kind``, by default one that crashes as its first round with a block begins)."""
    path = EXAMPLES / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    data["job"]["progress"] = False
    data["model"].update(model)
    if crash:
        data["node"] = [{"name": crash, "actor": [{
            "name": crash, "kind": kind,
            "restart": "transient", "args": {}}]}]  # fmt: skip
    topology = Topology.from_dict(data, source=str(path))
    topology.check()
    return topology


def package_per_token(sweeps: int, topics: int, alpha: float, eta: float) -> float:
    counts = reuters_counts()
    model = lda.LDA(n_topics=topics, n_iter=sweeps, alpha=alpha, eta=eta, random_state=1)
    return float(model.fit(counts).loglikelihood() / counts.sum())


class TestMatrixFactorisation:
    async def test_example_matches_als(self, tmp_path: Path) -> None:
        """examples/mf.toml (InstEval): held-out RMSE within 1% of ALS-WR with the same
        rank and lambda, on the same split; nothing lost or doubled."""
        topology = example("mf")
        model = tomllib.loads((EXAMPLES / "mf.toml").read_text())["model"]
        result = await train(topology, tmp_path)
        train_set, test_set, _ = load_ratings(model["data"], seed=0, holdout=model["holdout"])
        W, H = als(train_set, model["rank"], model["lam"])
        reference = rmse(W, H, test_set)
        assert abs(result["test_rmse"] - reference) <= 0.01 * reference, (result, reference)
        assert result["epochs"] == model["epochs"]
        assert result["updates"] == model["epochs"] * train_set.n_ratings
        check_audit(result)


class TestLda:
    async def test_example_matches_the_lda_package(self, tmp_path: Path) -> None:
        """examples/lda.toml (Reuters, K = 20, 100 sweeps): per-token log-likelihood
        within 2% of the lda package's; counts consistent with the topics."""
        model = tomllib.loads((EXAMPLES / "lda.toml").read_text())["model"]
        result = await train(example("lda"), tmp_path)
        theirs = package_per_token(model["sweeps"], model["topics"], model["alpha"], model["eta"])
        ours = result["per_token_log_likelihood"]
        assert abs(ours - theirs) <= 0.02 * abs(theirs), (ours, theirs)
        assert result["consistent"] and result["sweeps"] == model["sweeps"]
        assert result["updates"] == model["sweeps"] * result["tokens"]
        check_audit(result)

    async def test_a_crashed_worker_rebuilds_its_documents_from_the_shards(
        self, tmp_path: Path
    ) -> None:
        """worker-1 crashes in its first round: the block is planned again (every token
        is still sampled 30 times), the restarted worker reads its documents' topics back
        from z, and at the end nwk and nk still equal the counts of z, with the
        log-likelihood where the package's is."""
        result = await train(example("lda", crash="worker-1", sweeps=30), tmp_path)
        assert result["rescheduled"] == 1, result
        assert result["consistent"], result
        assert result["updates"] == 30 * result["tokens"]  # the lost block was sampled again
        theirs = package_per_token(30, 20, 0.1, 0.01)
        ours = result["per_token_log_likelihood"]
        assert abs(ours - theirs) <= 0.02 * abs(theirs), (ours, theirs)
        check_audit(result)

    async def test_a_worker_dying_between_its_pushes_leaves_the_counts_repaired(
        self, tmp_path: Path
    ) -> None:
        """worker-3 pushes its first round's changes to shard 0 only and dies: nk (and
        maybe some nwk rows) moved while its tokens' z did not. The scheduler repairs
        the word block's nwk rows and nk from z before the next round: the counts equal
        the counts of z at the end. (Without the repair: consistent is false.)"""
        topology = example(
            "lda", crash="worker-3", kind="tests.test_model_parallel_rotation:HalfPushOnce",
            sweeps=30,
        )  # fmt: skip
        result = await train(topology, tmp_path)
        assert result["rescheduled"] == 1, result
        assert result["consistent"], result
        assert result["updates"] == 30 * result["tokens"]
        theirs = package_per_token(30, 20, 0.1, 0.01)
        ours = result["per_token_log_likelihood"]
        assert abs(ours - theirs) <= 0.02 * abs(theirs), (ours, theirs)
        check_audit(result)


@attrs.define(eq=False)
class HalfPushOnce(MpWorker):
    """A worker whose first incarnation pushes its first round's changes to slice 0 only,
    then crashes: as if killed between its pushes to two shards."""

    async def _push(
        self, clock: int, rows: dict[str, Any], grads: dict[str, Any], *args: Any
    ) -> None:
        if self.ctx.ref.incarnation % (1 << 20) != 1:
            return await MpWorker._push(self, clock, rows, grads, *args)
        assert self._map is not None
        first: dict[str, Any] = {}
        rest = 0
        for name, ids in rows.items():
            for shard, part in self._map.split(name, ids):
                if shard == 0:
                    first[name] = (part, grads[name][np.searchsorted(ids, part)])
                else:
                    rest += len(part)
        assert first and rest, "the block's changes must lie on both slices"
        await MpWorker._push(
            self, clock, {n: r for n, (r, _) in first.items()},
            {n: g for n, (_, g) in first.items()}, *args,
        )  # fmt: skip
        raise RuntimeError("killed between its pushes to two shards")
