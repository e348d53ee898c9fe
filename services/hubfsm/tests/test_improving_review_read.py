"""Reading a model's review reply (`improving.review.read`): findings with the hub's own
category and fingerprint, files outside the diff and past the cap dropped with why, and
replies without a document or with hostile XML refused."""

import pytest

from agentcom_common.contracts.scan import fingerprint
from agentcom_hubfsm.improving.review import UnreadableReviewError, read, touched

PATCHES = """commit 1
Add the cart

diff --git a/src/cart.py b/src/cart.py
+def average(p): return sum(p) / len(p)
diff --git a/README.md b/README.md
+# Shop
"""


def finding(file: str, title: str = "Fix the division by zero", severity: str = "high") -> str:
    return (
        f'<finding severity="{severity}"><title>{title}</title><subject>cart.average</subject>'
        f"<files><file>{file}</file></files><evidence><line>sum(p) / len(p)</line></evidence>"
        "</finding>"
    )


def test_findings_get_the_review_category_and_a_line_free_fingerprint() -> None:
    files = touched(PATCHES)
    assert files == {"src/cart.py", "README.md"}
    reply = f"<think>{finding('x.py')}</think>Here:<review>{finding('./src/cart.py')}</review>"
    [found], dropped = read(reply, files, limit=10)
    assert (found.category, found.severity, found.files) == ("review", "high", ["src/cart.py"])
    assert found.fingerprint == fingerprint("review", ["src/cart.py"], "cart.average")
    assert found.evidence == ["sum(p) / len(p)"]
    assert dropped == []


def test_outside_the_diff_past_the_cap_and_misfits_are_dropped_with_why() -> None:
    reply = (
        "<review>"
        + finding("src/pay.py")
        + finding("src/cart.py")
        + finding("README.md", "Add a usage section")
        + finding("src/cart.py", " ")
        + "</review>"
    )
    found, dropped = read(reply, touched(PATCHES), limit=2)
    assert [f.files for f in found] == [["src/cart.py"], ["README.md"]]
    assert dropped == [
        "finding 1: names no file or one the diff does not touch",
        "finding 4: past the review's 2",
    ]
    found, dropped = read(
        "<review>" + finding("src/cart.py", " ") + "</review>", touched(PATCHES), limit=5
    )
    assert found == []
    assert dropped[0].startswith("finding 1: title:"), dropped
    assert read("<review/>", touched(PATCHES), limit=5) == ([], [])


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("no document here", "no <review> document"),
        ('<!DOCTYPE r [<!ENTITY e "x">]><review>&e;</review>', "not well-formed"),
        (
            '<review><finding severity="urgent"><title>t</title><subject>s</subject></finding>'
            "</review>",
            "severity",
        ),
    ],
)
def test_a_reply_without_a_readable_review_is_refused(reply: str, why: str) -> None:
    with pytest.raises(UnreadableReviewError, match=why):
        read(reply, touched(PATCHES), limit=5)
