"""docs/check_html.py, the check of the built documentation, on small HTML pages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "docs" / "check_html.py"
_spec = importlib.util.spec_from_file_location("check_html", _PATH)
check_html = sys.modules.setdefault("check_html", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(check_html)


def _page(body: str) -> str:
    """A page shaped like a Sphinx one: chrome around a ``<main>`` with the content."""
    return (
        "<html><head><title>_private title</title><script>var _x = 'SPEC';</script>"
        '<script defer="defer" src="_static/mathjax/tex-chtml.js"></script></head><body>'
        f"<nav>_sidebar_name</nav><main><article>{body}</article></main></body></html>"
    )


def _check(body: str, **kwargs) -> list[str]:
    return check_html.check_page(_page(body), **kwargs)


CLEAN = """
<h1>pp.tvn</h1><p>Typical variation normalization of <code>obsm[use_rep]</code>; writes <code>X_pca_tvn</code>,
keys such as <code>*_key</code> and <code>use_rep + "_tvn"</code>, and <code>__init__</code>.</p>
<span class="math notranslate nohighlight">\\(x_b = W_{ij}\\)</span>
<table class="autosummary"><tr><td><a>pp.tvn</a></td><td><p>Typical variation normalization.</p></td></tr></table>
<table><thead><tr><th>method</th><th>recall</th></tr></thead><tbody><tr><td>a</td><td>1</td></tr></tbody></table>
<table class="dataframe"><thead><tr><th></th><th>recall</th></tr></thead><tr><th>A</th><td>1</td></tr></table>
<dl class="py function"><dt id="scsemiclip.pp.tvn">tvn()</dt><dd><p>Correct.</p>
<dl class="field-list"><dt>Return type:</dt><dd><p><code>AnnData</code> | <code>None</code></p></dd></dl></dd></dl>
<div class="cell_output docutils container"><div class="output text_plain"><pre>0.5 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx</pre></div></div>
"""


def test_a_clean_page_has_no_findings():
    assert _check(CLEAN) == []


@pytest.mark.parametrize(
    ("body", "finding"),
    [
        (
            '<div class="cell_output"><div class="output traceback highlight-ipythontb"><pre>KeyError: x</pre></div>'
            "</div>",
            "notebook error output: KeyError: x",
        ),
        (
            '<table class="autosummary"><tr><td><a>datasets.SOURCES</a></td><td></td></tr></table>',
            "API summary without description: datasets.SOURCES",
        ),
        (
            '<table class="autosummary"><tr><td><a>tl.retrieved_relationships</a></td><td>The relationships (paper Fig.</td>'
            "</tr></table>",
            "API summary cut short: tl.retrieved_relationships: The relationships (paper Fig.",
        ),
        (
            '<dl class="field-list"><dt class="field-even">Return type<span>:</span></dt>'
            "<dd><p>undirected, de-duplicated, no self-pairs.</p></dd></dl>",
            "return type that reads as prose: undirected, de-duplicated, no self-pairs.",
        ),
        (
            '<dl class="py data"><dt id="scsemiclip.datasets.SOURCES">SOURCES</dt><dd></dd></dl>',
            "API entry without description: scsemiclip.datasets.SOURCES",
        ),
        (
            "<p>Recall of known relationships (SPEC §6).</p>",
            "'SPEC' in the text: Recall of known relationships (SPEC §6).",
        ),
        ("<p>see <code>_common.PAPER_FALLBACKS</code></p>", "private name in the text: _common.PAPER_FALLBACKS"),
        ("<td>46.10 ± 2.67 (+0 %, p=nan)</td>", "p-value shown as nan: 46.10 ± 2.67 (+0 %, p=nan)"),
        (
            "<pre>from scsemiclip.tl._interpretability import decoder</pre>",
            "private name in the text: scsemiclip.tl._interpretability",
        ),
        (
            "<table><thead><tr><th></th><th>time</th><th></th></tr></thead><tr><td>a</td><td>1</td><td>2</td></tr></table>",
            "table with 2 column(s) without a header: [ | time | ]",
        ),
        (
            '<table class="dataframe"><thead><tr><th></th><th>a</th><th></th></tr></thead></table>',
            "table with 1 column(s) without a header: [ | a | ]",
        ),
        (
            "<pre>python benchmarks/bench_recall.py   # 5,000 genes compared, 13,000 genes (genome scale) alone here</pre>",
            "code line over 90 characters (cut off on the page): python benchmarks/bench_recall.py # 5,000 genes compared,...",
        ),
    ],
)
def test_each_defect_is_found(body, finding):
    assert _check(CLEAN + body) == [finding]


def test_network_assets_and_maths_without_mathjax_are_found():
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    page = _page(CLEAN).replace("_static/mathjax/tex-chtml.js", cdn)
    assert check_html.check_page(page) == [
        f"loaded from the network (missing offline): {cdn}",
        "maths, but no MathJax script shipped with the docs (it shows as raw LaTeX)",
    ]
    sheet = '<link rel="stylesheet" href="//fonts.example.org/a.css">'
    assert check_html.check_page(_page(CLEAN).replace("<title>", sheet + "<title>")) == [
        "loaded from the network (missing offline): //fonts.example.org/a.css"
    ]
    no_maths = "<p>No formula here.</p>"
    assert check_html.check_page(_page(no_maths).replace("_static/mathjax/tex-chtml.js", "_static/x.js")) == []


def test_a_column_named_by_any_header_row_or_a_spanning_cell_is_named():
    two_rows = '<table class="dataframe"><thead><tr><th></th><th colspan="2">recall</th></tr>'
    two_rows += "<tr><th>set</th><th></th><th>b</th></tr></thead></table>"
    assert _check(two_rows) == []


def test_private_names_and_wide_code_can_be_allowed():
    assert _check("<p>the private core <code>scsemiclip._core</code></p>", private_names=False) == []
    assert _check(f"<pre>{'x' * 100}</pre>", code_width=False) == []


def test_site_reports_page_and_finding(tmp_path, capsys):
    (tmp_path / "index.html").write_text(_page(CLEAN))
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "x.html").write_text(_page("<p>SPEC</p>"))
    (tmp_path / "_modules").mkdir()
    (tmp_path / "_modules" / "y.html").write_text(_page("<pre>def _helper(): SPEC</pre>"))  # source pages: skipped
    (tmp_path / "contributing.html").write_text(_page("<p><code>_core/</code> is private</p>"))
    assert check_html.main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.splitlines() == ["generated/x.html: 'SPEC' in the text: SPEC"]
    (tmp_path / "generated" / "x.html").write_text(_page(CLEAN))
    assert check_html.main([str(tmp_path)]) == 0
    assert check_html.main([str(tmp_path / "generated")]) == 2  # not a built site
