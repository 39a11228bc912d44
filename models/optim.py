"""Server-side optimisers, applied row by row where a shard holds the rows.

A shard keeps, for each table it holds, the rows, one state array per name in
``state_shapes(cols)`` (same number of rows, that many columns) and a per-row int64
step count. An optimiser updates them in place, either on a block of rows::

    opt.apply(rows, grad, state, steps)                 # rows: (k, cols) view, grad aligned

or on scattered rows of a whole table, without gathering them first::

    opt.apply_at(table, ids, grad, state, steps)        # grad[i] belongs to table[ids[i]]

Each update increments the step count of every row it touches, and Adam's bias
correction uses that per-row count, so a row touched 3 times is corrected as step 3
however often the rest of the table moved ("lazy" Adam, the right thing for sparse rows).
Repeated ids in ``apply_at`` are applied one after the other.

All updates *descend*: ``grad`` is the gradient of the loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs
import numba
import numpy as np

from actorml import registry
from actorml.errors import UnknownKind

_NO_STATE = np.zeros((0, 0))


@numba.njit(nogil=True, cache=True)
def _sgd(table, ids, grad, velocity, steps, lr, momentum):
    use_momentum = momentum != 0.0
    for i in range(ids.shape[0]):
        r = ids[i]
        steps[r] += 1
        for c in range(table.shape[1]):
            g = grad[i, c]
            if use_momentum:
                g = momentum * velocity[r, c] + g
                velocity[r, c] = g
            table[r, c] -= lr * g


@numba.njit(nogil=True, cache=True)
def _adagrad(table, ids, grad, sum_sq, steps, lr, eps):
    for i in range(ids.shape[0]):
        r = ids[i]
        steps[r] += 1
        for c in range(table.shape[1]):
            g = grad[i, c]
            sum_sq[r, c] += g * g
            table[r, c] -= lr * g / (math.sqrt(sum_sq[r, c]) + eps)


@numba.njit(nogil=True, cache=True)
def _rmsprop(table, ids, grad, mean_sq, steps, lr, rho, eps):
    for i in range(ids.shape[0]):
        r = ids[i]
        steps[r] += 1
        for c in range(table.shape[1]):
            g = grad[i, c]
            mean_sq[r, c] = rho * mean_sq[r, c] + (1.0 - rho) * g * g
            table[r, c] -= lr * g / (math.sqrt(mean_sq[r, c]) + eps)


@numba.njit(nogil=True, cache=True)
def _adam(table, ids, grad, m, v, steps, lr, beta1, beta2, eps):
    for i in range(ids.shape[0]):
        r = ids[i]
        steps[r] += 1
        correction1 = 1.0 - beta1 ** steps[r]
        correction2 = 1.0 - beta2 ** steps[r]
        for c in range(table.shape[1]):
            g = grad[i, c]
            m[r, c] = beta1 * m[r, c] + (1.0 - beta1) * g
            v[r, c] = beta2 * v[r, c] + (1.0 - beta2) * g * g
            m_hat = m[r, c] / correction1
            v_hat = v[r, c] / correction2
            table[r, c] -= lr * m_hat / (math.sqrt(v_hat) + eps)


@runtime_checkable
class Optimizer(Protocol):
    """A per-row optimiser a shard applies to pushed gradients."""

    @property
    def name(self) -> str:
        """The registry name (``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``)."""
        ...

    def state_shapes(self, cols: int) -> dict[str, int]:
        """Per-row state arrays this optimiser keeps: name -> number of columns."""
        ...

    def apply(
        self,
        rows: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        """Update ``rows`` (and ``state``, ``steps``) in place from ``grad``."""
        ...

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        """Update rows ``ids`` of ``table`` (and of ``state``, ``steps``) in place."""
        ...


def init_state(optimizer: Optimizer, rows: int, cols: int) -> dict[str, np.ndarray]:
    """Zeroed optimiser state for ``rows`` rows of ``cols`` columns."""
    return {name: np.zeros((rows, width)) for name, width in optimizer.state_shapes(cols).items()}


def _in_range(low: float, high: float, *, closed_high: bool = False) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
        ok = low <= value <= high if closed_high else low <= value < high
        if not (ok and math.isfinite(value)):
            bracket = "]" if closed_high else ")"
            raise ValueError(f"{attribute.name} must lie in [{low}, {high}{bracket}, got {value!r}")

    return check


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _checked(
    table: np.ndarray,
    ids: np.ndarray,
    grad: np.ndarray,
    state: dict[str, np.ndarray],
    steps: np.ndarray,
    names: tuple[str, ...],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validate shapes and dtypes once, so the kernels can trust their indices."""
    if table.dtype != np.float64 or table.ndim != 2:
        raise TypeError(f"table must be a 2-D float64 array, got {table.dtype} {table.shape}")
    ids = np.asarray(ids, dtype=np.int64)
    grad = np.ascontiguousarray(grad, dtype=np.float64)
    if grad.shape != (ids.size, table.shape[1]):
        raise ValueError(f"grad must have shape {(ids.size, table.shape[1])}, got {grad.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(
            f"row ids must lie in [0, {table.shape[0]}), got [{ids.min()}, {ids.max()}]"
        )
    if steps.dtype != np.int64 or steps.shape != (table.shape[0],):
        raise ValueError(f"steps must be int64 of shape ({table.shape[0]},)")
    arrays = []
    for name in names:
        array = state.get(name)
        if array is None or array.shape != table.shape or array.dtype != np.float64:
            raise ValueError(f"state[{name!r}] must be float64 of shape {table.shape}")
        arrays.append(array)
    return ids, grad, arrays


class _RowOptimizer:
    """Shared ``apply``: a block of rows is ``apply_at`` with ids ``0..k-1``."""

    __slots__ = ()

    def apply(
        self,
        rows: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        """Update ``rows`` (and ``state``, ``steps``) in place from ``grad``."""
        self.apply_at(rows, np.arange(rows.shape[0], dtype=np.int64), grad, state, steps)

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        raise NotImplementedError


@attrs.frozen
class SGD(_RowOptimizer):
    """``v = momentum * v + g; x -= lr * v`` (plain SGD when ``momentum == 0``)."""

    name: ClassVar[str] = "sgd"

    lr: float = attrs.field(converter=float, validator=_positive)
    momentum: float = attrs.field(default=0.0, converter=float, validator=_in_range(0.0, 1.0))

    def state_shapes(self, cols: int) -> dict[str, int]:
        return {"velocity": cols} if self.momentum else {}

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        names = ("velocity",) if self.momentum else ()
        ids, grad, arrays = _checked(table, ids, grad, state, steps, names)
        velocity = arrays[0] if arrays else _NO_STATE
        _sgd(table, ids, grad, velocity, steps, self.lr, self.momentum)


@attrs.frozen
class AdaGrad(_RowOptimizer):
    """``G += g^2; x -= lr * g / (sqrt(G) + eps)``."""

    name: ClassVar[str] = "adagrad"

    lr: float = attrs.field(converter=float, validator=_positive)
    eps: float = attrs.field(default=1e-8, converter=float, validator=_positive)

    def state_shapes(self, cols: int) -> dict[str, int]:
        return {"sum_sq": cols}

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        ids, grad, (sum_sq,) = _checked(table, ids, grad, state, steps, ("sum_sq",))
        _adagrad(table, ids, grad, sum_sq, steps, self.lr, self.eps)


@attrs.frozen
class RMSProp(_RowOptimizer):
    """``E = rho * E + (1 - rho) * g^2; x -= lr * g / (sqrt(E) + eps)``."""

    name: ClassVar[str] = "rmsprop"

    lr: float = attrs.field(converter=float, validator=_positive)
    rho: float = attrs.field(default=0.9, converter=float, validator=_in_range(0.0, 1.0))
    eps: float = attrs.field(default=1e-8, converter=float, validator=_positive)

    def state_shapes(self, cols: int) -> dict[str, int]:
        return {"mean_sq": cols}

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        ids, grad, (mean_sq,) = _checked(table, ids, grad, state, steps, ("mean_sq",))
        _rmsprop(table, ids, grad, mean_sq, steps, self.lr, self.rho, self.eps)


@attrs.frozen
class Adam(_RowOptimizer):
    """Adam (Kingma & Ba) with bias correction from each row's own step count."""

    name: ClassVar[str] = "adam"

    lr: float = attrs.field(converter=float, validator=_positive)
    beta1: float = attrs.field(default=0.9, converter=float, validator=_in_range(0.0, 1.0))
    beta2: float = attrs.field(default=0.999, converter=float, validator=_in_range(0.0, 1.0))
    eps: float = attrs.field(default=1e-8, converter=float, validator=_positive)

    def state_shapes(self, cols: int) -> dict[str, int]:
        return {"m": cols, "v": cols}

    def apply_at(
        self,
        table: np.ndarray,
        ids: np.ndarray,
        grad: np.ndarray,
        state: dict[str, np.ndarray],
        steps: np.ndarray,
    ) -> None:
        ids, grad, (m, v) = _checked(table, ids, grad, state, steps, ("m", "v"))
        _adam(table, ids, grad, m, v, steps, self.lr, self.beta1, self.beta2, self.eps)


OPTIMIZERS: Mapping[str, type] = registry.kinds("optimizer")
"""The registered optimiser kinds, name -> class (a live view of the registry's group)."""


def optimizer_class(kind: str) -> type:
    """The class of optimiser ``kind``: a registered name or a dotted path.

    Raises:
        ValueError: unknown kind (naming the valid ones), or a path that cannot be imported.
    """
    if ":" not in kind and kind not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {kind!r} (expected one of: {', '.join(sorted(OPTIMIZERS))})"
        )
    try:
        return registry.resolve("optimizer", kind)
    except UnknownKind as exc:
        raise ValueError(str(exc)) from exc


def make_optimizer(kind: str, lr: float, **options: Any) -> Optimizer:
    """Build an optimiser by kind.

    Args:
        kind: ``"sgd"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"`` (the registry's
            ``"optimizer"`` group) or a dotted path ``"pkg.mod:Class"``.
        lr: learning rate, > 0.
        **options: ``momentum`` (sgd), ``eps`` (adagrad, rmsprop, adam), ``rho``
            (rmsprop), ``beta1`` and ``beta2`` (adam).

    Raises:
        ValueError: unknown kind or option, or a value out of range.
    """
    cls = optimizer_class(kind)
    if attrs.has(cls):  # a user's class that is not an attrs class judges its own options
        valid = sorted(field.name for field in attrs.fields(cls) if field.name != "lr")
        for option in options:
            if option not in valid:
                raise ValueError(
                    f"unknown option {option!r} for optimizer {kind!r}"
                    f" (expected one of: {', '.join(valid)})"
                )
    optimizer: Optimizer = cls(lr=lr, **options)
    return optimizer
