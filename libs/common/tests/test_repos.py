"""The one spelling of a repo every service compares."""

import pytest

from agentcom_common.repos import repo_key, repo_keys


@pytest.mark.parametrize(
    "typed",
    ["/srv/app", "/srv/app.git", "/srv/app.git/", " /srv/app/ ", "/srv/app//"],
)
def test_the_ways_of_typing_a_local_repo_have_one_key(typed: str) -> None:
    assert repo_key(typed) == "/srv/app"


def test_a_url_loses_its_dot_git_and_nothing_else() -> None:
    assert repo_key("https://git.example/team/app.git") == "https://git.example/team/app"
    assert repo_key("git@git.example:team/app.git") == "git@git.example:team/app"
    assert repo_key("https://git.example/app.github") == "https://git.example/app.github"


def test_keys_keep_order_once_each_and_never_shrink_to_any_repo() -> None:
    assert repo_keys(["/a.git", "/b", "/a/"]) == ["/a", "/b"]
    assert repo_keys(["/"]) == [""]  # matches no task; [] would mean every repo
