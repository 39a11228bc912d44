"""The record of acknowledged pushes and its journal."""

from __future__ import annotations

from pathlib import Path

from actorml.actors.acklog import AckLog


class TestAckLog:
    def test_a_save_writes_only_what_was_reported_since(self, tmp_path: Path) -> None:
        """After 200,000 acknowledged pushes, saving two more appends a line of a few
        dozen bytes, not the job's history; saving nothing writes nothing."""
        path = tmp_path / "acked.jsonl"
        log = AckLog(path)
        log.record("w0#1", {"0": range(0, 200_000, 2), "1": range(1, 200_000, 2)})
        log.flush()
        size = path.stat().st_size
        log.record("w0#1", {"0": [200_000], "1": [200_001]})
        log.flush()
        assert 0 < path.stat().st_size - size < 60
        size = path.stat().st_size
        log.flush()
        assert path.stat().st_size == size

    def test_the_journal_reads_back_what_was_recorded(self, tmp_path: Path) -> None:
        """A restarted scheduler reads back every flushed report (int or string slice
        keys, several incarnations), and skips a last line a crash cut short."""
        path = tmp_path / "acked.jsonl"
        log = AckLog(path)
        log.record("w0#1", {"0": [1, 2], "1": [3]})
        log.flush()
        log.record("w1#1", {0: [1]})
        log.record("w0#2", {"1": [1, 2]})
        log.flush()
        with path.open("a") as journal:
            journal.write('{"0": {"w1#1": [2, 3')  # the crash
        assert AckLog.load(path).acked == {
            0: {"w0#1": {1, 2}, "w1#1": {1}},
            1: {"w0#1": {3}, "w0#2": {1, 2}},
        }
        assert AckLog.load(tmp_path / "none.jsonl").acked == {}

    def test_rewrite_starts_afresh(self, tmp_path: Path) -> None:
        """A new job in a used run directory keeps no old record; a resumed one keeps
        exactly its snapshot's."""
        path = tmp_path / "acked.jsonl"
        old = AckLog(path)
        old.record("w0#1", {"0": [1, 2, 3]})
        old.flush()
        AckLog(path).rewrite({})
        assert AckLog.load(path).acked == {}
        AckLog(path).rewrite({1: {"w1#1": {7}}})
        assert AckLog.load(path).acked == {1: {"w1#1": {7}}}

    def test_kept_in_memory_without_a_path(self) -> None:
        """Without a journal (a pipeline's record) flushing and rewriting touch no file."""
        log = AckLog(None)
        log.record("s0#1", {"0": [1]})
        log.flush()
        log.rewrite()
        assert log.acked == {0: {"s0#1": {1}}}
        assert log.as_json() == {"0": {"s0#1": [1]}}
