"""Which shard holds which rows of which table.

Dense tables are split by row range (shard ``k`` holds one contiguous block); tables
declared sparse (one row per input feature, touched a few rows at a time) are split by
hash (row ``r`` lives on shard ``r % n``), which spreads hot features across shards.
"""

from __future__ import annotations

import functools

import attrs
import numpy as np

from actorml.models.base import TableSpec

__all__ = ["TableMap"]


@attrs.frozen
class TableMap:
    """The table -> shard map of one job."""

    specs: tuple[TableSpec, ...]
    shards: tuple[str, ...]

    def spec(self, table: str) -> TableSpec:
        for spec in self.specs:
            if spec.name == table:
                return spec
        raise KeyError(f"no table {table!r} (tables: {', '.join(s.name for s in self.specs)})")

    def owned(self, table: str, shard: int) -> np.ndarray:
        """Global ids of the rows shard ``shard`` holds, in its local order."""
        spec, n = self.spec(table), len(self.shards)
        if spec.sparse:
            return np.arange(shard, spec.rows, n, dtype=np.int64)
        bounds = self._bounds(spec.rows)
        return np.arange(bounds[shard], bounds[shard + 1], dtype=np.int64)

    def local(self, table: str, shard: int, rows: np.ndarray) -> np.ndarray:
        """Local positions on shard ``shard`` of global ``rows`` it owns."""
        spec, n = self.spec(table), len(self.shards)
        if spec.sparse:
            return rows if n == 1 else rows // n  # read-only use: no copy for one shard
        return rows - self._bounds(spec.rows)[shard]

    def holds(self, table: str, shard: int, rows: np.ndarray) -> bool:
        """Whether shard ``shard`` owns every one of global ``rows``: arithmetic on the
        ids alone, never a gather from the table-sized ``owned`` array."""
        spec, n = self.spec(table), len(self.shards)
        if not rows.size:
            return True
        if spec.sparse:
            in_table = rows.min() >= 0 and rows.max() < spec.rows
            return bool(in_table and (n == 1 or np.all(rows % n == shard)))
        bounds = self._bounds(spec.rows)
        return bool(rows.min() >= bounds[shard] and rows.max() < bounds[shard + 1])

    def split(self, table: str, rows: np.ndarray | None) -> list[tuple[int, np.ndarray | None]]:
        """``rows`` (None: all) grouped by owning shard, as (shard, global rows or None)."""
        return [(k, part) for k, part, _ in self._parts(table, rows)]

    def _parts(
        self, table: str, rows: np.ndarray | None
    ) -> list[tuple[int, np.ndarray | None, np.ndarray | None]]:
        """:meth:`split` with, per shard, the mask of ``rows`` it owns (None: all)."""
        n = len(self.shards)
        if rows is None:
            return [(k, None, None) for k in range(n)]
        if n == 1:
            return [(0, rows, None)] if rows.size else []
        spec = self.spec(table)
        owner = (
            rows % n if spec.sparse else np.searchsorted(self._bounds(spec.rows), rows, "right") - 1
        )
        masks = [(k, owner == k) for k in range(n)]
        return [(k, rows[mask], mask) for k, mask in masks if mask.any()]

    def block(self, table: str, shard: int) -> slice:
        """The rows of a dense ``table`` that ``shard`` owns, as one slice."""
        owned = self.owned(table, shard)
        return slice(int(owned[0]), int(owned[-1]) + 1) if owned.size else slice(0, 0)

    def split_changes(
        self, rows: dict[str, np.ndarray | None], grads: dict[str, np.ndarray]
    ) -> dict[int, tuple[list[str], list[np.ndarray | None], list[np.ndarray]]]:
        """A push's rows (per table: sorted ids, or None for the whole table) and their
        gradients grouped by owning shard: ``{shard: (tables, rows, gradients)}``, the
        fields of one `Push` each."""
        out: dict[int, tuple[list[str], list[np.ndarray | None], list[np.ndarray]]] = {}
        for name, ids in rows.items():
            grad = grads[name]
            for shard, part, mask in self._parts(name, ids):
                if part is None:
                    sparse = self.spec(name).sparse
                    piece = grad[self.owned(name, shard) if sparse else self.block(name, shard)]
                else:
                    piece = grad if mask is None else grad[mask]
                tables, parts, pieces = out.setdefault(shard, ([], [], []))
                tables.append(name)
                parts.append(part)
                pieces.append(piece)
        return out

    def _bounds(self, rows: int) -> np.ndarray:
        return _row_bounds(rows, len(self.shards))


@functools.cache
def _row_bounds(rows: int, shards: int) -> np.ndarray:
    """Where each shard's block of a dense table of ``rows`` rows begins (and the end):
    asked several times per message, so made once (read-only, shared)."""
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    bounds.flags.writeable = False
    return bounds
