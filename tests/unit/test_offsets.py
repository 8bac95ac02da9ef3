"""OffsetTracker: the committable offset never passes a command whose work is unfinished."""

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from worker.consumer import OffsetTracker

P0 = TopicPartition("jobmanager.commands", 0)
P1 = TopicPartition("jobmanager.commands", 1)


def test_nothing_seen_nothing_to_commit() -> None:
    """A fresh tracker has no committable offsets."""
    assert OffsetTracker().committable() == {}


def test_unfinished_offset_holds_the_commit_back() -> None:
    """While offset 5 is unfinished the committable offset stays at 5."""
    tracker = OffsetTracker()
    tracker.begin(P0, 5, "job-a")
    assert tracker.committable() == {P0: 5}
    tracker.finish(P0, 5)
    assert tracker.committable() == {P0: 6}


def test_finishing_out_of_order() -> None:
    """Later offsets finishing first do not move the commit past an earlier unfinished one."""
    tracker = OffsetTracker()
    for offset, job in enumerate(["a", "b", "c"]):
        tracker.begin(P0, offset, job)
    tracker.finish(P0, 2)
    assert tracker.committable() == {P0: 0}
    tracker.finish(P0, 1)
    assert tracker.committable() == {P0: 0}
    tracker.finish(P0, 0)
    assert tracker.committable() == {P0: 3}


def test_partitions_are_independent() -> None:
    """An unfinished command in one partition does not hold back another partition."""
    tracker = OffsetTracker()
    tracker.begin(P0, 10, "a")
    tracker.begin(P1, 3, "b")
    tracker.finish(P1, 3)
    assert tracker.committable() == {P0: 10, P1: 4}


def test_gaps_between_offsets_are_skipped() -> None:
    """Offsets never begun (e.g. compacted or dead-lettered) between finished ones are passed."""
    tracker = OffsetTracker()
    tracker.begin(P0, 2, "a")
    tracker.begin(P0, 7, "b")
    tracker.finish(P0, 2)
    assert tracker.committable() == {P0: 7}
    tracker.finish(P0, 7)
    assert tracker.committable() == {P0: 8}


def test_finishing_twice_or_unknown_offsets_is_harmless() -> None:
    """Finishing an offset again, or one never begun, changes nothing."""
    tracker = OffsetTracker()
    tracker.begin(P0, 0, "a")
    tracker.begin(P0, 1, "b")
    tracker.finish(P0, 1)
    tracker.finish(P0, 1)
    tracker.finish(P0, 42)
    tracker.finish(P1, 0)
    assert tracker.committable() == {P0: 0}


def test_job_ids_of_unfinished_commands() -> None:
    """job_ids names the jobs whose commands are unfinished in the given partitions only."""
    tracker = OffsetTracker()
    tracker.begin(P0, 0, "a")
    tracker.begin(P0, 1, "b")
    tracker.begin(P1, 0, "c")
    tracker.finish(P0, 1)
    assert tracker.job_ids(frozenset({P0})) == {"a"}
    assert tracker.job_ids(frozenset({P0, P1})) == {"a", "c"}
    assert tracker.job_ids(frozenset({TopicPartition("other", 0)})) == set()


def test_forget_drops_revoked_partitions_only() -> None:
    """Forgotten partitions lose their offsets and jobs; others are untouched."""
    tracker = OffsetTracker()
    tracker.begin(P0, 4, "a")
    tracker.begin(P1, 9, "b")
    tracker.forget(frozenset({P0}))
    assert tracker.committable() == {P1: 9}
    assert tracker.job_ids(frozenset({P0, P1})) == {"b"}


def test_forgotten_partition_starts_afresh_when_reassigned() -> None:
    """After forget, a reassigned partition tracks from the offsets it sees again."""
    tracker = OffsetTracker()
    tracker.begin(P0, 4, "a")
    tracker.begin(P0, 5, "b")
    tracker.forget(frozenset({P0}))
    tracker.begin(P0, 4, "a")
    assert tracker.committable() == {P0: 4}
    tracker.finish(P0, 4)
    assert tracker.committable() == {P0: 5}


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=30, unique=True),
    st.data(),
)
def test_committable_never_passes_an_unfinished_offset(
    offsets: list[int], data: st.DataObject
) -> None:
    """For any begin order and any finished subset, the commit is the first unfinished offset."""
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.begin(P0, offset, f"job-{offset}")
    assert tracker.committable() == {P0: min(offsets)}
    finished = data.draw(st.lists(st.sampled_from(offsets), unique=True))
    for offset in finished:
        tracker.finish(P0, offset)
        unfinished = set(offsets) - set(finished[: finished.index(offset) + 1])
        committable = tracker.committable()[P0]
        assert all(committable <= o for o in unfinished)
        expected = min(unfinished, default=max(offsets) + 1)
        assert committable == expected
