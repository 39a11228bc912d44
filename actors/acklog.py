"""The pushes each slice acknowledged, as the workers report them, kept across a
scheduler restart in an append-only journal.

The scheduler audits a finished job against this record (``lost``: acknowledged but not
applied; ``doubled``: applied twice), so it must survive the scheduler's node being
killed. Rewriting the whole record at each save cost time proportional to the job's
history (every push ever acknowledged: 160 ms and 16 MB per save at two million
pushes, twice a second); the journal appends only what was reported since the last
save, so a save costs what the last half second brought.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["AckLog"]

Acked = dict[int, dict[str, set[int]]]
"""Per slice, per ``"worker#incarnation"``, the push sequence numbers acknowledged."""


@attrs.define(eq=False)
class AckLog:
    """The acknowledged pushes (``acked``) and the journal at ``path`` that keeps them
    (None: kept in memory only).

    One JSON line per :meth:`flush`: ``{"slice": {"worker#incarnation": [seq, ...]}}``.
    A line cut short by a crash is skipped when the journal is read back; what it held
    was reported since the save before, as the scheduler's other state is.
    """

    path: Path | None
    acked: Acked = attrs.field(factory=dict)
    _pending: Acked = attrs.field(init=False, factory=dict)

    def record(self, worker: str, acked: Mapping[Any, Iterable[int]]) -> None:
        """Note the pushes ``worker`` (``"name#incarnation"``) saw acknowledged, per
        slice (keyed by its index, an int or its decimal string as a message has it)."""
        for shard, seqs in acked.items():
            seqs = set(seqs)
            _add(self.acked, shard, worker, seqs)
            _add(self._pending, shard, worker, seqs)

    def flush(self) -> None:
        """Append what was recorded since the last flush (nothing to append: no write)."""
        if not self._pending or self.path is None:
            self._pending = {}
            return
        line = _line(self._pending)
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(line)
        self._pending = {}

    def rewrite(self, acked: Mapping[Any, Mapping[str, Iterable[int]]] | None = None) -> None:
        """Start the journal afresh holding ``acked`` (default: what is recorded now; a
        snapshot's record as :meth:`as_json` wrote it, or ``{}``): a new job in a used
        run directory, or one resumed from a snapshot."""
        if acked is not None:
            self.acked = {}
            _merge(self.acked, acked)
        self._pending = {}
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(_line(self.acked) if self.acked else "", encoding="utf-8")
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> AckLog:
        """The record the journal at ``path`` holds (empty if there is none)."""
        log = cls(path)
        if not path.exists():
            return log
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(text)
            except ValueError:
                continue  # cut short by a crash
            _merge(log.acked, entry)
        return log

    def as_json(self) -> dict[str, dict[str, list[int]]]:
        """The whole record, for a snapshot."""
        return _plain(self.acked)


def _add(acked: Acked, shard: Any, worker: str, seqs: Iterable[int]) -> None:
    acked.setdefault(int(shard), {}).setdefault(worker, set()).update(seqs)


def _merge(acked: Acked, record: Mapping[Any, Mapping[str, Iterable[int]]]) -> None:
    for shard, workers in record.items():
        for worker, seqs in workers.items():
            _add(acked, shard, worker, seqs)


def _plain(acked: Acked) -> dict[str, dict[str, list[int]]]:
    return {str(k): {w: sorted(v) for w, v in m.items()} for k, m in acked.items()}


def _line(acked: Acked) -> str:
    return json.dumps(_plain(acked)) + "\n"
