"""The scheduler's judgement of a finished job."""

from __future__ import annotations

from actorml.actors.scheduler import _audit_failure


def _slice(lost: int = 0, doubled: int = 0) -> dict[str, int]:
    return {"applied": 10, "acknowledged": 10, "lost": lost, "doubled": doubled, "unreported": 0}


class TestAudit:
    def test_a_clean_audit_is_no_failure(self) -> None:
        """Nothing lost, nothing doubled: the result carries no error."""
        assert _audit_failure({"0": _slice(), "1": _slice()}) == {}

    def test_lost_and_doubled_pushes_fail_the_job(self) -> None:
        """A lost or doubled acknowledged push makes the job's result an error naming it."""
        audit = {"0": _slice(lost=2), "1": _slice(lost=1, doubled=4), "2": _slice()}
        assert _audit_failure(audit) == {
            "error": "3 acknowledged pushes lost (slices 0, 1); "
            "4 acknowledged pushes applied twice (slices 1)"
        }
