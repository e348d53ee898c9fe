"""The matcher's cache of idle agents: what a pass may reuse of the last read, and when not."""

from agentcom_scheduler.matching import IdleCache

GPU: tuple[list[str], list[str], list[str]] = (["gpu"], [], [])
PLAIN: tuple[list[str], list[str], list[str]] = ([], [], [])


def test_a_fresh_read_is_reused_without_the_agents_offered_a_task() -> None:
    cache = IdleCache(max_age=60)
    cache.keep([(PLAIN, ["a", "b", "c"]), (GPU, ["g"])])

    cache.drop({"a", "g"})

    assert cache.fresh() == [(PLAIN, ["b", "c"])]  # a profile with nobody left is gone


def test_nothing_is_reused_once_stale_old_or_used_up() -> None:
    cache = IdleCache(max_age=60)
    assert cache.fresh() is None  # never read

    cache.keep([(PLAIN, ["a"])])
    cache.stale()  # an agent came online: maybe a profile the read did not see
    assert cache.fresh() is None

    cache.keep([(PLAIN, ["a"])])
    cache.drop({"a"})
    assert cache.fresh() is None  # every cached agent got a task: read again

    old = IdleCache(max_age=0)
    old.keep([(PLAIN, ["a"])])
    assert old.fresh() is None


def test_the_caller_cannot_change_the_cache_through_what_it_got() -> None:
    cache = IdleCache(max_age=60)
    cache.keep([(PLAIN, ["a", "b"])])
    got = cache.fresh()
    assert got is not None
    got[0][1].clear()
    assert cache.fresh() == [(PLAIN, ["a", "b"])]
