"""docs/compatibility.md is exactly what compat_doc.render() makes from the alias table, the refusals and the walk
test's list, so the page cannot drift from what `fulgor run` does."""

from __future__ import annotations

from compat_doc import PAGE, render

from fulgor.lightning_paths import FABRIC, PYTORCH
from fulgor.unavailable import REFUSED


def test_the_page_is_generated_from_the_table() -> None:
    assert PAGE.read_text() == render(), "run `python tests/compat/compat_doc.py` and keep docs/compatibility.md"


def test_the_page_names_every_path_and_refusal() -> None:
    text = PAGE.read_text()
    for path in PYTORCH:
        assert f"| `pytorch_lightning{'.' + path if path else ''}` |" in text
    for path in FABRIC:
        assert f"| `lightning_fabric{'.' + path if path else ''}` |" in text
    for name in REFUSED:
        assert f"| `{name}` |" in text
    assert "```python" not in text  # nothing for tests/test_docs.py to run
