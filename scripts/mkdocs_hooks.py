"""MkDocs hook: the site's home page is the README itself, its links rewritten from the repository root to
the docs folder, so the front page is written once."""

from __future__ import annotations

from typing import Any

README_LINKS = {"](docs/": "](", "](benchmarks/RESULTS.md)": "](results.md)"}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    for link, rewritten in README_LINKS.items():
        markdown = markdown.replace(link, rewritten)
    return markdown
