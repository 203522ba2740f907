"""Check the built HTML documentation for what a reader should never see.

Run after the Sphinx build::

    python docs/check_html.py docs/_build/html

It scans every page (except the highlighted source pages of ``_modules/``, the search and index pages) and reports:

- notebook cells whose stored output is an error (a traceback);
- API entries (autosummary rows, documented functions, classes, attributes) without a description,
  autosummary descriptions cut short (unbalanced brackets, as when a summary is cut at "Fig.") and return types
  that read as prose (a *Returns* sentence taken for a type);
- the word "SPEC" (an internal document readers do not have) in the text;
- private names (``_name``, ``module._name``; dunders excepted) in the text or the code shown;
- tables with an empty column header;
- code lines (not notebook outputs) longer than the article column shows;
- scripts and style sheets loaded from the network (an offline reader loses them: MathJax from a CDN leaves the
  maths as raw LaTeX), and maths on a page that loads no MathJax of its own;
- a p-value printed as "nan" (``p=nan``: a test that could not run, which the page should say in words).

Each finding is printed as ``page: finding``; the exit status is 1 when there is any. The contributors' page and the
change log may name private modules (they are exempt from the private-name check), and the contributors' page
has a diagram wider than the column (exempt from the code-width check).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

#: Folders and pages that are not documentation text.
SKIPPED = ("_modules/", "_sources/", "_static/", "_images/", "genindex.html", "search.html", "py-modindex.html")
#: Pages for contributors (the private layout of the package) and the change log (which records internal changes).
PRIVATE_NAMES_ALLOWED = ("contributing.html", "changelog.html")
#: The contributors' page, whose diagram of the package's layers is wider than the column (it scrolls).
WIDE_CODE_ALLOWED = ("contributing.html",)
#: Elements that are not shown to the reader (or are the page chrome rather than its content).
HIDDEN = ("script", "style", "head", "template", "noscript")
#: Classes of elements whose text is not prose: LaTeX maths (``C_b`` is a subscript, not a private name).
NOT_PROSE = ("math",)
#: Longest code line that the article column shows whole (``_static/scsemiclip.css``: 90 characters at 1280 pixels).
MAX_CODE_LINE = 90
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

_SPEC = re.compile(r"\bSPEC\b")
_REMOTE = re.compile(r"^(?:[a-z]+:)?//", re.I)
_P_NAN = re.compile(r"\bp\s*=\s*nan\b", re.I)
# A private name: an identifier starting with one underscore, at a word start or after a dot (``_common.X``,
# ``module._helper``); dunders (``__init__``) and a lone ``_`` are not private names.
_PRIVATE = re.compile(r"(?<![\w/\\\-*}\"'+>])(?:\w+\.)*_(?!_)[A-Za-z]\w*(?:\.\w+)*")


@dataclass
class Node:
    """An element of the parsed page: tag, attributes, children (nodes and text)."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        """The element's CSS classes."""
        return set(self.attrs.get("class", "").split())

    def text(self, *, skip: tuple[str, ...] = ()) -> str:
        """The text content, without hidden elements and without the elements whose tag is in ``skip``."""
        parts = []
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag not in HIDDEN and child.tag not in skip and not child.classes & set(NOT_PROSE):
                parts.append(child.text(skip=skip))
        return "".join(parts)

    def iter(self, tag: str | None = None):
        """This element and its descendants, depth first, optionally only those with tag ``tag``."""
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter(tag)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        # Close up to the matching open element (HTML allows omitted end tags such as </p> and </li>).
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    """Parse an HTML page into a :class:`Node` tree."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def _content(root: Node) -> Node:
    """The article of a Sphinx page (``<main>`` or ``role="main"``), or the whole page when there is none."""
    for node in root.iter():
        if node.tag == "main" or node.attrs.get("role") == "main":
            return node
    return root


def _code_lines(node: Node):
    """The lines of the code blocks (``<pre>``) under ``node``, not those of notebook outputs."""
    if "cell_output" in node.classes:
        return
    if node.tag == "pre":
        yield from node.text().splitlines()
        return
    for child in node.children:
        if isinstance(child, Node):
            yield from _code_lines(child)


_PROSE = re.compile(r"\b(the|of|and|with|is|are|per|one|an?)\b")


def _prose_return_types(fields: Node) -> list[str]:
    """A "Return type" that reads as a sentence: a prose *Returns* section that numpydoc took for a type."""
    items = [c for c in fields.children if isinstance(c, Node) and c.tag in ("dt", "dd")]
    return [
        f"return type that reads as prose: {_short(dd.text())}"
        for dt, dd in zip(items, items[1:], strict=False)
        if dt.tag == "dt" and dt.text().strip().startswith("Return type") and _reads_as_prose(dd.text())
    ]


def _reads_as_prose(text: str) -> bool:
    """Common English words, or a comma outside brackets (``dict[str, int]``, ``TypeVar(A, bound=B)``)."""
    while (flat := re.sub(r"[\[(][^\[\]()]*[\])]", "", text)) != text:
        text = flat
    return bool(_PROSE.search(text)) or "," in text


def _balanced(text: str) -> bool:
    """Whether every bracket of ``text`` is closed in order (a summary cut at "Fig." or a colon is not)."""
    stack = []
    for char in text:
        if char in "([{":
            stack.append(")]}"["([{".index(char)])
        elif char in ")]}" and (not stack or stack.pop() != char):
            return False
    return not stack


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _unnamed_columns(table: Node) -> list[int]:
    """Columns (0-based) that no header row names; a pandas frame's index column is named by its index, not here.

    Header rows are the rows of ``<thead>`` (or, without one, a first row made only of ``<th>``); ``colspan``
    cells name every column they span.
    """
    rows = [tr for thead in table.iter("thead") for tr in thead.iter("tr")]
    if not rows:
        first = next(table.iter("tr"), None)
        cells = [c for c in first.children if isinstance(c, Node)] if first is not None else []
        rows = [first] if cells and all(c.tag == "th" for c in cells) else []
    named: dict[int, bool] = {}
    for tr in rows:
        col = 0
        for cell in (c for c in tr.children if isinstance(c, Node) and c.tag in ("th", "td")):
            span = int(cell.attrs.get("colspan", "1") or 1)
            for j in range(col, col + span):
                named[j] = named.get(j, False) or bool(cell.text().strip())
            col += span
    exempt = {0} if "dataframe" in table.classes else set()
    return [j for j, ok in sorted(named.items()) if not ok and j not in exempt]


def _offline_findings(root: Node, main: Node) -> list[str]:
    """Scripts and style sheets from the network, and maths without a MathJax script shipped with the docs."""
    findings, mathjax = [], False
    for node in root.iter():
        if node.tag == "script":
            url = node.attrs.get("src", "")
        elif node.tag == "link" and "stylesheet" in node.attrs.get("rel", "").split():
            url = node.attrs.get("href", "")
        else:
            continue
        if _REMOTE.match(url):
            findings.append(f"loaded from the network (missing offline): {url}")
        elif node.tag == "script" and "mathjax" in url.lower():
            mathjax = True
    if not mathjax and any("math" in node.classes for node in main.iter()):
        findings.append("maths, but no MathJax script shipped with the docs (it shows as raw LaTeX)")
    return findings


def check_page(html: str, *, private_names: bool = True, code_width: bool = True) -> list[str]:
    """The findings of one page (empty when it is clean).

    Parameters
    ----------
    html
        The page's HTML.
    private_names
        Also report private names.
    code_width
        Also report code lines longer than :data:`MAX_CODE_LINE`.

    Returns
    -------
    One line per finding.
    """
    root = parse(html)
    main = _content(root)
    findings = _offline_findings(root, main)
    for node in main.iter():
        cls = node.classes
        # myst-nb renders an error output as ``<div class="output traceback ...">``.
        if node.tag == "div" and {"output", "traceback"} <= cls:
            findings.append(f"notebook error output: {_short(node.text())}")
    for table in main.iter("table"):
        if "autosummary" in table.classes:
            for row in table.iter("tr"):
                cells = [c for c in row.children if isinstance(c, Node) and c.tag == "td"]
                summary = cells[-1].text().strip() if len(cells) >= 2 else None
                if summary == "":
                    findings.append(f"API summary without description: {_short(cells[0].text())}")
                elif summary and not _balanced(summary):
                    findings.append(f"API summary cut short: {_short(cells[0].text())}: {_short(summary)}")
        unnamed = _unnamed_columns(table)
        if unnamed:
            header = " | ".join(_short(th.text(), 20) for th in table.iter("th"))[:200]
            findings.append(f"table with {len(unnamed)} column(s) without a header: [{header}]")
    for dl in main.iter("dl"):
        if "field-list" in dl.classes:
            findings += _prose_return_types(dl)
        if "py" not in dl.classes:
            continue
        terms = [c for c in dl.children if isinstance(c, Node) and c.tag in ("dt", "dd")]
        for dt, dd in zip(terms, terms[1:], strict=False):
            if dt.tag == "dt" and dd.tag == "dd" and not dd.text(skip=("dl",)).strip():
                findings.append(f"API entry without description: {dt.attrs.get('id') or _short(dt.text())}")
    for line in _code_lines(main) if code_width else ():
        if len(line) > MAX_CODE_LINE:
            findings.append(f"code line over {MAX_CODE_LINE} characters (cut off on the page): {_short(line, 60)}")
    text = main.text()
    for match in sorted(set(_SPEC.findall(text))):
        line = next(ln for ln in text.splitlines() if match in ln)
        findings.append(f"'SPEC' in the text: {_short(line)}")
    for match in sorted(set(_P_NAN.findall(text))):
        line = next(ln for ln in text.splitlines() if match in ln)
        findings.append(f"p-value shown as nan: {_short(line)}")
    if private_names:
        for name in sorted(set(_PRIVATE.findall(text))):
            findings.append(f"private name in the text: {name}")
    return findings


def check_site(root: Path) -> list[str]:
    """The findings of every page under ``root``, as ``page: finding`` lines."""
    lines = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root).as_posix()
        if any(rel.startswith(s) or rel == s for s in SKIPPED):
            continue
        findings = check_page(
            page.read_text(encoding="utf-8"),
            private_names=rel not in PRIVATE_NAMES_ALLOWED,
            code_width=rel not in WIDE_CODE_ALLOWED,
        )
        lines.extend(f"{rel}: {f}" for f in findings)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: check a built site, print the findings, return 1 when there is any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", nargs="?", default=str(Path(__file__).parent / "_build" / "html"))
    args = parser.parse_args(argv)
    root = Path(args.html_dir)
    if not (root / "index.html").is_file():
        print(f"{root} is not a built HTML site (no index.html); run sphinx-build first.", file=sys.stderr)
        return 2
    findings = check_site(root)
    for line in findings:
        print(line)
    print(f"docs check: {len(findings)} finding(s) in {root}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
