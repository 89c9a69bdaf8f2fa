"""MkDocs hook for the fulgor docs site: links from docs pages to repository files outside docs/ (the runnable
`examples/`) have no page in the site, so they are shown as their text; every other link is checked strictly."""

from __future__ import annotations

import re
from typing import Any

# [`examples/s1.py`](../examples/s1.py) -> `examples/s1.py`: the repository path stays visible and greppable.
_OUTSIDE_DOCS = re.compile(r"\[([^\]]+)\]\(\.\./(?:examples|benchmarks|tests|src|tools)(?:/[^)]*)?\)")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace links into the repository outside docs/ by their text."""
    return _OUTSIDE_DOCS.sub(r"\1", markdown)
