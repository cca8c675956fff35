"""The repository stands on its own: every Markdown link of its documentation (README.md, docs/,
tests/README.md, the chart's README) to a path names a file or folder of the repository, none
leaves it (`../` above the root, or an absolute path), and no page sends the reader to
`../shared`, which only some checkouts have beside them. Links to the web (`https:` and the
like) and to anchors of the same page are not checked here."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "tests" / "README.md"]
    found += sorted(p for p in (ROOT / "charts").rglob("README*") if p.is_file())
    return [p for p in found if p.is_file()]


#: [text](target "title"), ![alt](target), and reference definitions `[label]: target`
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def links(text: str) -> list[str]:
    """Link targets outside code blocks and code spans (where `[a](b)` is code, not a link)."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    return [m.group(1) for m in INLINE.finditer(prose)] + [m.group(1) for m in REFERENCE.finditer(prose)]


def problem(page: Path, target: str) -> str | None:
    """Why this link target is wrong, or None."""
    if not target or target.startswith("#") or SCHEME.match(target):
        return None  # an anchor of this page, or the web
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if path.startswith("/"):
        return "an absolute path: link relative to the page"
    resolved = (page.parent / path).resolve()
    if not resolved.is_relative_to(ROOT):
        return "leaves the repository"
    if not resolved.exists():
        return "no such file in the repository"
    return None


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    wrong = [f"{target}: {why}" for target in links(text) if (why := problem(page, target))]
    assert not wrong, f"{page.relative_to(ROOT)}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_at_shared_beside_the_checkout(page: Path) -> None:
    lines = [f"{n}: {line.strip()}" for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             if "../shared" in line]
    assert not lines, f"{page.relative_to(ROOT)} mentions ../shared:\n" + "\n".join(lines)


def test_the_pages_are_found() -> None:
    found = {str(p.relative_to(ROOT)) for p in pages()}
    assert {"README.md", "docs/architecture.md", "tests/README.md"} <= found


@pytest.mark.parametrize(("target", "why"), [
    ("docs/chart.md", None),
    ("docs/chart.md#values", None),
    ("https://example.org/x", None),
    ("#layout", None),
    ("docs/no-such-page.md", "no such file in the repository"),
    ("../shared/k8s/README.md", "leaves the repository"),
    ("/etc/passwd", "an absolute path: link relative to the page"),
])
def test_the_check_itself(target: str, why: str | None) -> None:
    assert problem(ROOT / "README.md", target) == why


def test_links_are_found_in_prose_not_in_code() -> None:
    text = ("see [a](docs/a.md) and [b] and ![img](x.png \"t\")\n\n[b]: docs/b.md\n"
            "`[c](c.md)`\n```\n[d](d.md)\n```\n")
    assert sorted(links(text)) == ["docs/a.md", "docs/b.md", "x.png"]
