"""Text tiles' Markdown: hostile input comes out as text, never as markup that runs or loads."""

from __future__ import annotations

import re

import pytest

from myapp.frontend.markdown import render_markdown

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=https://evil.example></iframe>",
    "<svg onload=alert(1)>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](java\tscript:alert(1))",
    "[x](  javascript:alert(1))",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](file:///etc/passwd)",
    "[x](//evil.example/path)",
    "[x]: javascript:alert(1)\n\n[x]",
    "![a](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![a](https://tracker.example/pixel.gif)",
    '![a" onerror="alert(1)](/x.png)',
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "`<script>`",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_is_inert(text):
    html = str(render_markdown(text))
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    allowed = {"p", "a", "img", "code", "pre", "strong", "em", "h1", "ul", "li", "br"}
    for tag in tags:
        name = re.match(r"<([a-zA-Z0-9]+)", tag).group(1).lower()
        assert name in allowed, html
        # Attribute values are quoted and escaped: look at what is outside them.
        bare = re.sub(r'"[^"]*"', '""', tag)
        assert not re.search(r"\son\w+\s*=", bare, re.I), html
        assert "style=" not in tag.lower(), html
        for url in re.findall(r'(?:href|src)="([^"]*)"', tag):
            assert url.startswith(("http://", "https://", "/")) and not url.startswith("//"), html
            if name == "img":
                assert url.startswith("/"), "images only from this site"


def test_ordinary_markdown_keeps_its_meaning():
    html = str(
        render_markdown(
            "# Title\n\n**bold** and [docs](https://example.com/a?b=1) and [home](/)"
            "\n\n- one\n- two"
        )
    )
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert '<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">docs</a>' in html
    assert '<a href="/" rel="noopener noreferrer nofollow">home</a>' in html
    assert "<li>one</li>" in html
    assert '<img src="/static/favicon.svg" alt="logo" />' in str(
        render_markdown("![logo](/static/favicon.svg)")
    )


def test_a_refused_link_keeps_its_text_and_a_refused_image_its_alt_text():
    assert str(render_markdown("[write to us](mailto:team@example.com)")) == (
        '<p><a data-refused-link="">write to us</a></p>\n'
    )
    # markdown-it refuses javascript: itself: the text stays as written, inert.
    assert "href" not in str(render_markdown("[click me](javascript:alert(1))"))
    assert str(render_markdown("![a cat](https://tracker.example/p.gif)")) == "<p>a cat</p>\n"


def test_html_in_text_and_code_is_shown_as_text():
    assert str(render_markdown("<b>bold</b>")) == "<p>&lt;b&gt;bold&lt;/b&gt;</p>\n"
    assert str(render_markdown("```\n<script>x</script>\n```")) == (
        "<pre><code>&lt;script&gt;x&lt;/script&gt;\n</code></pre>\n"
    )
    assert str(render_markdown("")) == "" and str(render_markdown(None)) == ""
