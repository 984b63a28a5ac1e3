"""HTML to readable plain text with the standard library's html.parser (no dependency, and it
never raises on broken markup).

Paragraphs and headings become blank-line separated blocks, ``<br>`` a line break, list
items ``- item`` / ``1. item`` (indented when nested), blockquotes ``> `` lines, table rows
lines with cells separated by `` | ``, links ``text <url>`` (the URL alone when it is the
text), images their alt text as ``[alt]``. Script, style, head and template contents are
dropped; whitespace is collapsed except inside ``<pre>``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "svg",
                     "object", "iframe"})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl",
                        "pre", "blockquote", "figure", "hr"})
_LINE = frozenset({"div", "section", "article", "header", "footer", "nav", "aside", "main",
                   "address", "li", "tr", "dt", "dd", "caption", "form", "fieldset",
                   "center", "details", "summary", "body", "html"})
_VOID_HIDDEN = frozenset({"meta", "link", "base"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")


class _TextWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.prefix = ""  # what each new line starts with (quotes and list indentation)
        self.hidden = 0
        self.pre = 0
        self.quote = 0
        self.lists: list[int] = []  # per open list: 0 for <ul>, the next number for <ol>
        self.links: list[str | None] = []
        self.link_text: list[str] = []
        self.cell = False
        self.pending_blank = False  # a blank line to write before more text

    # --- output -------------------------------------------------------------------------

    def _line_prefix(self) -> str:
        indent = "  " * max(0, len(self.lists) - 1) if self.lists else ""
        return "> " * self.quote + indent

    def newline(self, blank: bool = False) -> None:
        if self.line.strip():
            self.lines.append(self.line.rstrip())
        self.line = ""
        if blank and self.lines and self.lines[-1].strip(" >"):
            self.pending_blank = True

    def write(self, text: str) -> None:
        if not text:
            return
        if not self.line:
            if self.pending_blank:  # inside a quote, the blank line is quoted too
                quote = self._line_prefix().rstrip()
                self.lines.append(quote if quote and self.lines[-1].startswith(quote) else "")
                self.pending_blank = False
            self.line = self._line_prefix()
            text = text.lstrip(" ") if self.pre == 0 else text
            if not text:
                return
        elif self.pre == 0 and self.line.endswith(" ") and text.startswith(" "):
            text = text[1:]
        self.line += text
        if self.link_text:
            self.link_text[-1] += text

    # --- parser events --------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_HIDDEN:
            return
        if tag in _HIDDEN:
            self.hidden += 1
            return
        if self.hidden:
            return
        if tag in _PARAGRAPH and not (tag in ("ul", "ol") and self.lists):
            self.newline(blank=True)
        elif tag in _LINE or tag in _PARAGRAPH:
            self.newline()
        if tag == "br":
            if self.line.strip():
                self.newline()
            else:
                self.lines.append(self.line.rstrip())
                self.line = ""
        elif tag == "hr":
            self.write("-" * 20)
            self.newline(blank=True)
        elif tag == "pre":
            self.pre += 1
        elif tag == "blockquote":
            self.quote += 1
        elif tag in ("ul", "ol"):
            self.lists.append(1 if tag == "ol" else 0)
        elif tag == "li":
            if self.lists and self.lists[-1]:
                self.write(f"{self.lists[-1]}. ")
                self.lists[-1] += 1
            else:
                self.write("- ")
        elif tag in ("td", "th"):
            if self.cell and self.line.strip():
                self.write(" | ")
            self.cell = True
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
            self.link_text.append("")
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.write(f"[{_SPACES.sub(' ', alt)}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
            return
        if self.hidden:
            return
        if tag == "a" and self.links:
            href, text = self.links.pop(), self.link_text.pop().strip()
            if self.link_text:
                self.link_text[-1] += text
            url = (href or "").strip()
            if url and not url.startswith(("#", "javascript:")):
                shown = url.removeprefix("mailto:")
                if not text:
                    self.write(url)
                elif shown not in text:
                    self.write(f" <{url}>")
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag == "blockquote":
            self.newline(blank=True)
            self.quote = max(0, self.quote - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "tr":
            self.cell = False
        if tag in _PARAGRAPH and not (tag in ("ul", "ol") and self.lists):
            self.newline(blank=True)
        elif tag in _LINE:
            self.newline()

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.pre:
            first, *rest = data.split("\n")
            self.write(first)
            for line in rest:
                self.newline()
                self.write(line if line else "")
                if not line:
                    self.lines.append(self._line_prefix().rstrip())
            return
        self.write(_SPACES.sub(" ", data))

    def text(self) -> str:
        self.close()
        self.newline()
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document, lines separated by LF."""
    writer = _TextWriter()
    try:
        writer.feed(html)
        return writer.text()
    except (AssertionError, ValueError):  # html.parser on pathological input
        return _SPACES.sub(" ", re.sub(r"<[^>]*>", " ", html)).strip()
