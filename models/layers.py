"""The dense layers of a multilayer perceptron, run forward and backward a run at a time.

An MLP of widths ``(n_features, h1, ..., hk, n_classes)`` has ``k + 1`` affine layers;
layer ``i`` (0-based) owns the tables ``W{i+1}`` and ``b{i+1}``. Hidden layers apply the
activation (ReLU or tanh); the last layer gives the class scores. A `LayerRun` is a run
of consecutive layers: the whole network (``MLP.gradient``) or one pipeline stage, so
the same code computes both, and a stage's gradients are the whole network's.

``balanced_cut`` chooses where to cut the layers into stages of nearly equal compute.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import attrs
import numpy as np

from .base import Features
from .linear import scores, xt_dot

__all__ = ["ACTIVATIONS", "LayerRun", "balanced_cut", "check_cut", "layer_costs"]

ACTIVATIONS = ("relu", "tanh")


@attrs.frozen
class LayerRun:
    """Layers ``first .. stop - 1`` of the network of widths ``sizes``.

    Attributes:
        sizes: every width, input first and classes last (``len(sizes) - 1`` layers).
        first: the run's first layer.
        stop: one past the run's last layer.
        activation: ``"relu"`` or ``"tanh"``, applied after every layer but the network's last.
    """

    sizes: tuple[int, ...]
    first: int
    stop: int
    activation: str = "relu"

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.first < self.stop <= len(self.sizes) - 1:
            raise ValueError(
                f"layers {self.first}..{self.stop - 1} outside the network's"
                f" {len(self.sizes) - 1} layers"
            )

    @property
    def ends_network(self) -> bool:
        """Whether the run's output is the class scores."""
        return self.stop == len(self.sizes) - 1

    def weights(self) -> tuple[str, ...]:
        return tuple(f"W{i + 1}" for i in range(self.first, self.stop))

    def tables(self) -> tuple[str, ...]:
        """The tables of the run, ``W`` then ``b`` of each layer in order."""
        return tuple(t for i in range(self.first, self.stop) for t in (f"W{i + 1}", f"b{i + 1}"))

    def forward(self, params: Mapping[str, np.ndarray], A: Features) -> list[np.ndarray]:
        """The output of every layer of the run, given the run's input ``A``.

        Hidden layers' outputs are activations; the network's last layer gives scores.
        """
        hidden = len(self.sizes) - 2
        outputs = []
        for i in range(self.first, self.stop):
            Z = scores(A, params[f"W{i + 1}"], params[f"b{i + 1}"])
            if i < hidden:
                if self.activation == "relu":
                    np.maximum(Z, 0.0, out=Z)
                else:
                    np.tanh(Z, out=Z)
            outputs.append(Z)
            A = Z
        return outputs

    def backward(
        self,
        params: Mapping[str, np.ndarray],
        A: Features,
        outputs: Sequence[np.ndarray],
        d_out: np.ndarray,
        grads: MutableMapping[str, np.ndarray],
    ) -> np.ndarray | None:
        """Back-propagate ``d_out`` (d loss / d the run's output) through the run.

        Adds each table's gradient into ``grads`` (a table met first is stored as is), so
        calling it once per micro-batch accumulates the mini-batch's gradient.
        ``d_out`` is never written to (it may be a read-only view of a received frame).

        Returns:
            d loss / d ``A``, or None when the run starts at the network's input.
        """
        hidden = len(self.sizes) - 2
        d = d_out
        for i in reversed(range(self.first, self.stop)):
            k = i - self.first
            if i < hidden:
                out = outputs[k]
                d = d * (out > 0.0) if self.activation == "relu" else d * (1.0 - out * out)
            inp = A if k == 0 else outputs[k - 1]
            _add(grads, f"W{i + 1}", xt_dot(inp, d))
            _add(grads, f"b{i + 1}", d.sum(axis=0, keepdims=True))
            if i > 0:
                d = d @ params[f"W{i + 1}"].T
        return d if self.first > 0 else None

    def penalty(self, params: Mapping[str, np.ndarray], l2: float) -> float:
        """``l2 / 2`` times the squared norm of the run's weights (biases are not penalised)."""
        return 0.5 * l2 * float(sum(np.vdot(params[w], params[w]) for w in self.weights()))

    def add_l2(
        self, params: Mapping[str, np.ndarray], grads: MutableMapping[str, np.ndarray], l2: float
    ) -> None:
        """Add the L2 term's gradient to the weights' gradients, once per mini-batch."""
        if l2:
            for w in self.weights():
                grads[w] += l2 * params[w]


def _add(grads: MutableMapping[str, np.ndarray], name: str, value: np.ndarray) -> None:
    if name in grads:
        grads[name] += value
    else:
        grads[name] = value


def layer_costs(sizes: Sequence[int]) -> list[int]:
    """Multiply-adds per row of each layer, forward and backward.

    Three products a layer (forward, weight gradient, input gradient); the first layer
    has no input gradient to compute.
    """
    return [sizes[i] * sizes[i + 1] * (2 if i == 0 else 3) for i in range(len(sizes) - 1)]


def balanced_cut(sizes: Sequence[int], n_stages: int) -> list[list[int]]:
    """Cut the layers into ``n_stages`` runs that minimise the costliest stage.

    Raises:
        ValueError: more stages than layers.
    """
    costs = layer_costs(sizes)
    n = len(costs)
    if not 1 <= n_stages <= n:
        raise ValueError(f"cannot cut {n} layers into {n_stages} stages (at most {n})")
    prefix = np.concatenate([[0], np.cumsum(costs)])
    inf = float("inf")
    # best[s][j]: the least possible costliest stage when layers 0..j-1 form s stages.
    best = [[inf] * (n + 1) for _ in range(n_stages + 1)]
    split = [[0] * (n + 1) for _ in range(n_stages + 1)]
    best[0][0] = 0.0
    for s in range(1, n_stages + 1):
        for j in range(s, n + 1):
            for i in range(s - 1, j):
                value = max(best[s - 1][i], float(prefix[j] - prefix[i]))
                if value < best[s][j]:
                    best[s][j], split[s][j] = value, i
    cut, j = [], n
    for s in range(n_stages, 0, -1):
        i = split[s][j]
        cut.append(list(range(i, j)))
        j = i
    return cut[::-1]


def check_cut(cut: object, n_layers: int) -> list[list[int]]:
    """``cut`` as lists of layer ids if it cuts layers ``0..n_layers-1`` in order.

    Raises:
        ValueError: naming what is wrong and what a valid cut looks like.
    """
    example = [[i] for i in range(n_layers)]
    if (
        not isinstance(cut, list | tuple)
        or not cut
        or not all(isinstance(s, list | tuple) and s for s in cut)
        or not all(isinstance(i, int) and not isinstance(i, bool) for s in cut for i in s)
    ):
        raise ValueError(f"expected a list of non-empty lists of layer ids, e.g. {example}")
    flat = [i for s in cut for i in s]
    if flat != list(range(n_layers)):
        raise ValueError(
            f"stages must list the layers 0..{n_layers - 1} once each, in order "
            f"(got {[list(s) for s in cut]}; e.g. {example})"
        )
    return [list(s) for s in cut]
