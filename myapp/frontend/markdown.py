"""Markdown of dashboard text tiles, rendered to HTML that cannot run anything.

markdown-it-py in its CommonMark preset with raw HTML turned off: `<script>` or `<img onerror>`
written in the text come out as escaped text. Links and images pass its own URL check (which
refuses javascript:, vbscript:, file: and most data: URLs) and then ours, which is stricter:
only http(s) and relative addresses. A refused link keeps its text and loses the link;
a refused image keeps its alt text. Images are only allowed from this site (relative addresses):
a picture from elsewhere would tell another server who opened the dashboard.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

LINK_SCHEMES = frozenset({"http", "https"})


def _allowed(url: str, schemes: frozenset[str]) -> bool:
    # Browsers drop tabs and newlines inside a URL and ignore leading spaces and controls, so
    # the check must look at what the browser will see.
    cleaned = "".join(ch for ch in url if ch not in "\t\n\r").strip("\x00 \x0b\x0c")
    if cleaned.startswith(("//", "\\\\", "/\\", "\\/")):
        return False  # a scheme-relative address leaves this site
    try:
        parts = urlsplit(cleaned)
    except ValueError:
        return False
    if not parts.scheme:
        return ":" not in cleaned.split("/", 1)[0]
    return parts.scheme.lower() in schemes


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("html_inline")
    md.disable("html_block")
    default_link = md.renderer.rules.get("link_open")
    default_image = md.renderer.rules.get("image")

    def link_open(self, tokens, idx, options, env):
        token = tokens[idx]
        href = str(token.attrGet("href") or "")
        if not _allowed(href, LINK_SCHEMES):
            token.attrs.pop("href", None)
            token.attrSet("data-refused-link", "")
        else:
            token.attrSet("rel", "noopener noreferrer nofollow")
        if default_link is not None:
            return default_link(tokens, idx, options, env)
        return self.renderToken(tokens, idx, options, env)

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        alt = self.renderInlineAsText(token.children or [], options, env)
        if not _allowed(src, frozenset()):
            return str(escape(alt))
        if default_image is not None:
            return default_image(tokens, idx, options, env)
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


_MD = _renderer()


def render_markdown(text: str) -> Markup:
    """Safe HTML for `text`: markdown-it escapes everything it does not itself produce."""
    return Markup(_MD.render(text or ""))  # noqa: S704 - the renderer's output, HTML disabled
