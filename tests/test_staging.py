"""A dataset staged once in the run directory and memory-mapped by every role."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
import scipy.sparse as sp

from actorml import registry
from actorml.models import load_dataset
from actorml.models.dataset import partition
from actorml.models.fastload import backing_file
from actorml.models.staging import (
    NotStaged,
    load_and_stage,
    open_staged,
    stage,
    staged_path,
    staged_rows,
    staged_size,
)


def _same(a, b) -> bool:
    """Bit-identical features (dense or CSR)."""
    if sp.issparse(a) or sp.issparse(b):
        return (
            sp.issparse(a)
            and sp.issparse(b)
            and a.shape == b.shape
            and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices)
            and a.data.tobytes() == b.data.tobytes()
        )
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.fixture(
    params=[
        {"source": "sklearn:breast_cancer"},
        {"source": "generated:sparse", "n_samples": 3000, "n_features": 500},
    ],
    ids=["dense", "sparse"],
)
def data(request):
    return request.param


class TestStaging:
    def test_staged_copy_is_bit_identical(self, tmp_path, data):
        """What every role maps equals what the scheduler loaded, byte for byte."""
        dataset = load_dataset(**data)
        where = staged_path(tmp_path, data)
        assert stage(dataset, where) > 0
        mapped = open_staged(where)
        assert mapped is not None
        for part in ("X_train", "X_test", "y_train", "y_test"):
            assert _same(getattr(mapped, part), getattr(dataset, part)), part
        assert (mapped.n_features, mapped.n_classes) == (dataset.n_features, dataset.n_classes)
        assert np.array_equal(mapped.meta["classes"], dataset.meta["classes"])

    def test_a_partition_maps_the_same_rows_each_time(self, tmp_path, data):
        """A worker (and its restarted incarnation) maps exactly its block of rows."""
        dataset = load_dataset(**data)
        where = staged_path(tmp_path, data)
        stage(dataset, where)
        n = staged_size(where)
        assert n == dataset.y_train.shape[0]
        for part in range(3):
            block = partition(n, 3, part)
            X, y = staged_rows(where, block)
            again_X, again_y = staged_rows(where, block)
            want_X, want_y = dataset.partition(3, part)
            assert _same(X, want_X) and _same(again_X, want_X)
            assert np.array_equal(y, want_y) and np.array_equal(again_y, want_y)

    def test_mapped_not_copied(self, tmp_path):
        """A worker's rows are a view of the file: only the pages it touches are read."""
        data = {"source": "sklearn:digits"}
        where = staged_path(tmp_path, data)
        stage(load_dataset(**data), where)
        X, _ = staged_rows(where, partition(staged_size(where), 2, 1))
        base = X
        while getattr(base, "base", None) is not None:
            base = base.base
        assert isinstance(base, np.memmap) or type(base).__name__ == "mmap"
        X[0, 0] = 123.0  # copy-on-write: a write changes this process's page only
        X_again, _ = staged_rows(where, partition(staged_size(where), 2, 1))
        assert X_again[0, 0] != 123.0

    def test_staging_twice_keeps_the_first_copy(self, tmp_path):
        data = {"source": "sklearn:iris"}
        where = staged_path(tmp_path, data)
        dataset = load_dataset(**data)
        stage(dataset, where)
        before = (where / "X_train.npy").stat().st_mtime_ns
        assert stage(dataset, where) == 0
        assert (where / "X_train.npy").stat().st_mtime_ns == before

    def test_a_half_written_copy_is_not_staged(self, tmp_path):
        """Without its manifest (written last) a directory is not a staged dataset."""
        data = {"source": "sklearn:iris"}
        where = staged_path(tmp_path, data)
        stage(load_dataset(**data), where)
        (where / "dataset.json").unlink()
        assert open_staged(where) is None
        with pytest.raises(FileNotFoundError, match="no staged dataset"):
            staged_rows(where, slice(0, 1))
        stage(load_dataset(**data), where)  # the half-written copy is replaced
        assert open_staged(where) is not None

    def test_different_data_options_stage_apart(self, tmp_path):
        a = staged_path(tmp_path, {"source": "sklearn:iris"})
        b = staged_path(tmp_path, {"source": "sklearn:iris", "test_size": 0.5})
        assert a != b and a.parent == b.parent == tmp_path / "data"


class TestLoadAndStage:
    def test_an_npz_is_loaded_straight_into_the_staged_files(self, tmp_path, monkeypatch):
        """The features are gathered into the staged .npy files themselves: staging
        copies nothing, and what is staged equals what load_dataset returns."""
        rng = np.random.default_rng(0)
        X = rng.normal(size=(300, 7)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        np.savez(tmp_path / "d.npz", X_train=X[:240], y_train=y[:240], X_test=X[240:],
                 y_test=y[240:])  # fmt: skip
        data = {"source": f"npz:{tmp_path / 'd.npz'}"}
        where = staged_path(tmp_path, data)
        saved: list[str] = []
        save = np.save
        monkeypatch.setattr(np, "save", lambda path, *a, **k: (saved.append(Path(path).name),
                                                               save(path, *a, **k)))  # fmt: skip
        staged = load_and_stage(data, where)
        monkeypatch.undo()
        assert saved and "X_train.npy" not in saved and "X_test.npy" not in saved
        reference = load_dataset(**data)
        for part in ("X_train", "X_test", "y_train", "y_test"):
            assert _same(getattr(staged, part), getattr(reference, part)), part
        assert backing_file(staged.X_train) == (where / "X_train.npy").resolve()
        assert load_and_stage(data, where).X_train.tobytes() == staged.X_train.tobytes()

    @pytest.mark.usefixtures("registry_copy")
    def test_a_dataset_that_cannot_be_staged_is_kept_in_memory(self, tmp_path):
        """Metadata that is not JSON cannot be staged: the loaded copy comes back with
        the error, and no half-written directory is left."""

        class OddMeta:
            @classmethod
            def load(cls, source, spec, options):
                iris = load_dataset("sklearn:iris")
                return attrs.evolve(iris, meta={**iris.meta, "model": object()})

        registry.register("source", "oddmeta", OddMeta)
        where = staged_path(tmp_path, {"source": "oddmeta:x"})
        with pytest.raises(NotStaged, match="cannot stage metadata") as caught:
            load_and_stage({"source": "oddmeta:x"}, where)
        assert caught.value.dataset.y_train.size == 112
        assert not where.parent.exists() or list(where.parent.iterdir()) == []


def test_a_worker_on_another_host_without_the_copy_loads_it(tmp_path):
    """A layout naming a staged copy this host does not have (another host staged it)
    makes the worker load the data itself, the same rows."""
    from actorml.actors.messages import Layout
    from actorml.actors.worker import _training_rows

    data = {"source": "sklearn:breast_cancer"}
    where = staged_path(tmp_path, data)
    stage(load_dataset(**data), where)
    args = ({}, {}, data, 30, 2, ["shard-0"], 0, 16)
    here, mapped = _training_rows(Layout(*args, staged=str(where)))
    elsewhere, loaded = _training_rows(Layout(*args, staged=str(tmp_path / "not-here")))
    assert (mapped, loaded) == (True, False)
    assert all(_same(a, b) for a, b in zip(here(3, 1), elsewhere(3, 1), strict=True))
