"""Sphinx configuration of the scsemiclip documentation.

The build is offline (no intersphinx inventories are downloaded) and does not execute notebooks: the
tutorials are executed by the test suite and rendered here as they are stored. Build with warnings as
errors, then check what readers see (``check_html.py``, also run by ``.ci/run``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    python docs/check_html.py docs/_build/html
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import sys
import tomllib
import warnings
from datetime import date
from pathlib import Path

from bs4 import BeautifulSoup
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.domains import Domain
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the source tree even when the package is not installed.
sys.path.insert(0, str(ROOT / "src"))

logger = logging.getLogger(__name__)

_project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# -- Project information ------------------------------------------------------------------------------------------

project = "scsemiclip"
author = "scsemiclip developers"
copyright = f"{date.today().year}, {author}"
release = version = _project["version"]
repository_url = _project["urls"]["Source"]

# -- General configuration ----------------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 shipped in _static/mathjax: the maths renders offline (no CDN)
    "sphinx.ext.viewcode",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}  # .rst first: autosummary stubs
master_doc = "index"
default_role = "literal"
pygments_style = "default"
# Every reference must resolve, so a broken link to our own API fails the build. There are no intersphinx
# inventories offline: references to third-party types in signatures and inherited docstrings stay plain text.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(anndata|mudata|numpy|np|pandas|pd|scipy|scanpy|torch|lightning|matplotlib|scvi|sklearn)(\..*)?"),
    (
        r"py:.*",
        r"(AnnData|MuData|DataFrame|Series|ndarray|Generator|Axes|Figure|Tensor|Module|Path|Callable|ArrayLike)",
    ),
    # The standard library, and the typing names in the signatures and docstrings scvi-tools' members inherit.
    (r"py:.*", r"(abc|pathlib|os|logging|types|typing|collections)(\..*)?"),
    (r"py:.*", r"(AnnOrMuData|Number|Literal|Iterable|Sequence|Mapping|Any|Self|Ellipsis|EllipsisType)"),
]

# No sphinx.ext.intersphinx on purpose: it downloads inventories, and the build must work without network.

# -- autodoc / autosummary / napoleon -----------------------------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Params", "Parameters")]
typehints_defaults = "braces"
typehints_document_rtype = True
always_document_param_types = False
typehints_fully_qualified = False
# The class pages (docs/_templates/autosummary/class.rst) list a class's own members and, of the members inherited
# from scvi-tools' BaseModelClass, only those that apply to an adapter. Left out: the overrides that only raise
# (members of scvi-tools that do not apply) and torch.nn.Module's ``training`` flag.
autosummary_context = {
    "inherited_shown": ("adata", "adata_manager", "device", "history", "is_trained", "to_device", "view_anndata_setup"),
    "not_applicable": ("differential_abundance", "get_normalized_expression", "training"),
    # Registries whose value (classes, by their private module path) says less than their description.
    "no_value": ("AUGMENTATIONS",),
}
# sphinx-autodoc-typehints 3.6 calls an API that Sphinx 9 deprecates; upstream's to fix, not ours to print.
warnings.filterwarnings("ignore", message=r".*_RstSnippetParser\.set_application' is deprecated", category=Warning)

# -- MyST / myst-nb -----------------------------------------------------------------------------------------------

myst_enable_extensions = [
    "amsmath",
    "colon_fence",
    "deflist",
    "dollarmath",
    "html_admonition",
    "html_image",
]
myst_heading_anchors = 3
myst_dmath_double_inline = True
nb_execution_mode = "off"  # notebooks are executed by the tests, not by the docs build
nb_merge_streams = True
nb_output_stderr = "remove"
# Widget outputs (progress bars) have no static rendering; they are not errors.
suppress_warnings = ["mystnb.unknown_mime_type"]

# -- HTML ---------------------------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "repository_url": repository_url,
    "repository_branch": "main",
    "path_to_docs": "docs",
    "use_repository_button": True,
    "use_issues_button": True,
    "use_edit_page_button": False,
    "navigation_with_keys": False,
    # sphinx-book-theme 1.4 on pydata-sphinx-theme 0.20 would add the header's search button to the sidebar's:
    # one search field (in the sidebar) is enough.
    "navbar_persistent": [],
    # "On this page" lists the sections and their subsections (a page with one section would show one entry).
    "show_toc_level": 2,
}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["scsemiclip.css"]

# -- Tutorials: a single source of truth in ../tutorials ----------------------------------------------------------

TUTORIALS_SRC = ROOT / "tutorials"
TUTORIALS_DST = HERE / "tutorials"


def link_tutorials() -> None:
    """Mirror ``../tutorials/*.ipynb`` into ``docs/tutorials/`` as symlinks (copies where links fail).

    ``docs/tutorials/`` is generated (git-ignored); stale entries of removed notebooks are deleted.
    """
    notebooks = sorted(TUTORIALS_SRC.glob("*.ipynb"))
    TUTORIALS_DST.mkdir(exist_ok=True)
    wanted = {nb.name for nb in notebooks}
    for entry in TUTORIALS_DST.iterdir():
        if entry.name not in wanted and (entry.is_symlink() or entry.suffix == ".ipynb"):
            entry.unlink()
    for nb in notebooks:
        dst = TUTORIALS_DST / nb.name
        if dst.is_symlink() and dst.resolve() == nb.resolve():
            continue
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        try:
            dst.symlink_to(os.path.relpath(nb, TUTORIALS_DST))
        except OSError:  # e.g. Windows without symlink rights
            shutil.copy2(nb, dst)


link_tutorials()

# -- API completeness: every name of a subpackage's __all__ is on the API page -------------------------------------

API_SUBPACKAGES = ("pp", "tl", "pl", "datasets", "model")


def check_api_page(app: Sphinx) -> None:
    """Warn (an error with ``-W``) for public names missing from ``api.md`` or listed there but not public."""
    text = (HERE / "api.md").read_text()
    subs = "|".join(API_SUBPACKAGES)
    listed = set(re.findall(rf"^\s+~?(?:scsemiclip\.)?((?:{subs})\.\w+)\s*$", text, re.M))
    public = set()
    for sub in API_SUBPACKAGES:
        try:
            mod = importlib.import_module(f"scsemiclip.{sub}")
        except ImportError:
            continue
        public.update(f"{sub}.{name}" for name in getattr(mod, "__all__", ()))
    for name in sorted(public - listed):
        logger.warning("docs/api.md does not list the public name scsemiclip.%s; add it to the autosummary.", name)
    for name in sorted(listed - public):
        logger.warning("docs/api.md lists scsemiclip.%s, which is not in its subpackage's __all__.", name)


def _drop_type_docstrings(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """Module constants without a ``#:`` comment would show their type's docstring (e.g. ``tuple``'s): drop it.

    Instances of scsemiclip's own classes (``scsemiclip.settings``) keep their class's docstring: it documents them.
    """
    doc = type(obj).__doc__  # not always a string: a slot descriptor for classes with a ``__doc__`` slot
    if what not in ("data", "attribute") or isinstance(obj, type) or not isinstance(doc, str) or not doc:
        return
    if type(obj).__module__.startswith("scsemiclip"):
        return
    type_doc = [ln.strip() for ln in doc.splitlines() if ln.strip()]
    if [ln.strip() for ln in lines if ln.strip()] == type_doc:
        lines.clear()


def _reexported_constant_doc(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """A constant that a subpackage re-exports (``datasets.SOURCES``) gets the ``#:`` comment of its private module.

    autodoc reads ``#:`` comments from the module a name is documented in, which only imports it.
    """
    if what != "data" or any(line.strip() for line in lines):
        return
    package, _, attr = name.rpartition(".")
    module = sys.modules.get(package)
    for sub in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{package}."):
        if sub.name.rpartition(".")[2].startswith("_"):
            doc = ModuleAnalyzer.for_module(sub.name).find_attr_docs().get(("", attr))
            if doc:
                lines[:] = list(doc)
                return


_RETURNS_HEADER = ("Returns", "-------")


def _prose_returns(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """A numpy *Returns* section written as one paragraph of prose becomes the description of an unnamed entry.

    napoleon reads the first line of such a section as a type (a colon in it splits a "name : type"), so it would
    render the sentence, or its second half, as the return type; the entry ``:`` has neither name nor type, and
    the return type comes from the annotation.
    Runs before napoleon. Sections with ``name`` / ``type`` entries (indented descriptions) or with more than one
    paragraph are left alone.
    """
    for i in range(len(lines) - 2):
        if (lines[i].strip(), lines[i + 1].strip()) != _RETURNS_HEADER:
            continue
        end = i + 2
        while end < len(lines) and lines[end].strip():
            end += 1
        body = lines[i + 2 : end]
        after = next((k for k in range(end, len(lines)) if lines[k].strip()), None)
        last = after is None or (after + 1 < len(lines) and set(lines[after + 1].strip()) == {"-"})
        if body and last and not any(line[:1].isspace() for line in body):
            lines[i + 2 : end] = [":", *(f"    {line}" for line in body)]
        return


_API_LINK_RE = re.compile(r'(<a [^>]*href="[^"]*generated/[^"]*"[^>]*>)([^<]+)(</a>)')
# The code names of the page contents ("On this page": a class page's ``SemiClipped.get_latent_representation()``).
_TOC_CODE_RE = re.compile(r'(<span class="pre">)([^<]+)(</span>)')


def _breakable_api_names(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    """Let the sidebars wrap dotted names after a dot or an underscore, not in mid-word and not cut off.

    Wraps the theme's sidebar functions (pydata-sphinx-theme's ``generate_toctree_html`` for the navigation, the
    link texts of the generated API pages; ``generate_toc_html`` for the page contents, their code names) to add
    ``<wbr>`` break opportunities (``_static/scsemiclip.css`` lets those names wrap). Runs after the theme's own
    page-context handler.
    """
    generate = context.get("generate_toctree_html")
    if generate is None:
        return

    def breakable(m: re.Match) -> str:
        return m[1] + re.sub(r"([._])", r"\1<wbr>", m[2]) + m[3]

    def generate_breakable(*args: object, **kwargs: object) -> str:
        return _API_LINK_RE.sub(breakable, str(generate(*args, **kwargs)))  # the theme returns HTML or its soup

    context["generate_toctree_html"] = generate_breakable

    generate_toc = context.get("generate_toc_html")
    if generate_toc is None:
        return

    def generate_toc_breakable(*args: object, **kwargs: object) -> BeautifulSoup:
        html = _TOC_CODE_RE.sub(breakable, str(generate_toc(*args, **kwargs)))
        return BeautifulSoup(html, "html.parser")  # the template takes its length: keep the theme's type

    context["generate_toc_html"] = generate_toc_breakable


def _plain_citation(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:cite:p:`key``` in docstrings inherited from scvi-tools (sphinxcontrib-bibtex there), shown as ``[key]``."""
    return [nodes.Text(f"[{text}]")], []


class PlainCitations(Domain):
    """A ``cite`` domain whose roles print the citation key: scvi-tools' inherited docstrings build without bibtex."""

    name = "cite"
    label = "citations (plain text)"
    roles = dict.fromkeys(("p", "t", "ps", "ts"), _plain_citation)


def setup(app: Sphinx) -> None:
    """Register the build-time helpers."""
    app.add_domain(PlainCitations)
    app.add_role("cite", _plain_citation)
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
    app.connect("autodoc-process-docstring", _reexported_constant_doc)  # after _drop_type_docstrings
    app.connect("autodoc-process-docstring", _prose_returns, priority=400)  # before napoleon (500)
    app.connect("html-page-context", _breakable_api_names, priority=900)  # after the theme's (500)
    app.connect("builder-inited", check_api_page)
