"""The user guide (docs/index.md) is one path through the seed notes: every section of the notes has a section in it,
every question the notes ask is listed in its question table with an answer section that exists, and every docs page
is linked from it. Anchors are computed as MkDocs (Python-Markdown's toc) computes them."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SEED = ROOT.parent / "shared" / "seed"
GUIDE = DOCS / "index.md"
# The sections of the seed notes (../shared/seed), in order; checked against the notes themselves when present.
NOTES_SECTIONS = ["1", "2.1", "2.2", "2.3", "3", "4", "5.1", "6.2", "7.1", "7.3", "10.1"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def slugify(heading: str) -> str:
    """Python-Markdown's default toc slug (what MkDocs uses): code spans keep their text, other punctuation goes."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    """The heading anchors of a page (headings inside code blocks are not headings)."""
    text = CODE.sub("", page.read_text())
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE):
        slug = slugify(heading)
        unique, n = slug, 0
        while unique in found:  # MkDocs numbers repeated headings: slug, slug_1, slug_2...
            n += 1
            unique = f"{slug}_{n}"
        found.add(unique)
    return found


def guide_links() -> list[str]:
    return LINK.findall(CODE.sub("", GUIDE.read_text()))


def question_rows() -> list[tuple[str, str, str]]:
    """(notes section, question, answer link) of each row of the guide's question table."""
    table = GUIDE.read_text().split("## The notes' questions and where they are answered", 1)[1]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("notes section", "---"):
            (link,) = LINK.findall(cells[2])
            rows.append((cells[0], cells[1], link))
    return rows


def resolve(link: str, base: Path) -> tuple[Path, str]:
    target, _, anchor = link.partition("#")
    page = (base.parent / target).resolve() if target else base
    return page, anchor


def seed_notes() -> str:
    files = sorted(SEED.glob("*.txt")) if SEED.is_dir() else []
    if not files:
        pytest.skip("the seed notes (../shared/seed) are not in this checkout")
    return "\n".join(f.read_text() for f in files)


def test_slugify_matches_mkdocs() -> None:
    assert slugify("2.1 Validate and test a model") == "21-validate-and-test-a-model"
    assert (
        slugify("Can `test_step` return other things than a loss?") == "can-test_step-return-other-things-than-a-loss"
    )
    assert (
        slugify("1. The 1.x argparse helpers (seed notes, section 4)")
        == "1-the-1x-argparse-helpers-seed-notes-section-4"
    )


def test_every_section_of_the_notes_has_a_guide_section() -> None:
    headings = re.findall(r"^## (\d+(?:\.\d+)?)\.? ", GUIDE.read_text(), re.MULTILINE)
    assert headings == NOTES_SECTIONS


def test_the_section_list_is_the_notes() -> None:
    notes = seed_notes()
    assert re.findall(r"^### (\d+(?:\.\d+)?) ", notes, re.MULTILINE) == NOTES_SECTIONS


def test_every_question_of_the_notes_is_in_the_table() -> None:
    """Each coloured remark of the notes (and the commented `best_model_path` question) has a row per section."""
    notes = seed_notes()
    asked: dict[str, int] = {}
    for section, body in re.findall(r"^### (\d+(?:\.\d+)?) .*?\n(.*?)(?=^### |\Z)", notes, re.MULTILINE | re.DOTALL):
        asked[section] = len(re.findall(r"<font color", body)) + body.count("没看懂")
    answered: dict[str, int] = {}
    for section, _, _ in question_rows():
        answered[section] = answered.get(section, 0) + 1
    missing = {s: n for s, n in asked.items() if n and answered.get(s, 0) < n}
    assert missing == {}, f"notes sections with more questions than table rows: {missing}"


def test_every_answer_section_exists() -> None:
    rows = question_rows()
    assert len(rows) >= 11
    broken = []
    for section, question, link in rows:
        page, anchor = resolve(link, GUIDE)
        if not page.is_file() or (anchor and anchor not in anchors(page)):
            broken.append(f"{section} {question!r} -> {link}")
    assert broken == []


def test_the_wrong_example_question_is_answered_with_a_run() -> None:
    """The notes' "NOT like this" example: the answer says why and shows it with a block that runs."""
    page, anchor = resolve(next(link for _, q, link in question_rows() if "wrong example" in q), GUIDE)
    assert (page.name, anchor) == ("cli.md", slugify("Why the explicit Trainer(...) call is the wrong example"))
    text = page.read_text()
    answer = text.split("### Why the explicit Trainer(...) call is the wrong example", 1)[1].split("\n## ", 1)[0]
    assert "from_argparse_args" in answer
    assert "silently dropped" in answer
    assert "```python" in answer
    assert "<!-- no-run -->" not in answer


def test_the_guide_links_every_page() -> None:
    linked = {resolve(link, GUIDE)[0] for link in guide_links() if "://" not in link}
    pages = {p.resolve() for p in [*DOCS.glob("*.md"), *DOCS.glob("api/*.md")]} - {GUIDE.resolve()}
    assert sorted(p.name for p in pages - linked) == []


def test_every_link_of_every_page_resolves() -> None:
    """Links between pages and to anchors (also checked by the strict site build when mkdocs is installed)."""
    broken = []
    for page in [*DOCS.glob("*.md"), *DOCS.glob("api/*.md")]:
        for link in LINK.findall(CODE.sub("", page.read_text())):
            if "://" in link or link.startswith("mailto:"):
                continue
            target, anchor = resolve(link, page)
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                broken.append(f"{page.name}: {link} (no such section)")
    assert broken == []


def test_every_example_the_docs_name_exists() -> None:
    named = set()
    for page in DOCS.glob("*.md"):
        named |= set(re.findall(r"examples/[\w/]+\.py", page.read_text()))
    assert named, "the docs name no example"
    assert sorted(n for n in named if not (ROOT / n).is_file()) == []
