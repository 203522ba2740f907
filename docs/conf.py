"""Sphinx configuration of the scsemiclip documentation.

The build is offline (no intersphinx inventories are downloaded) and does not execute notebooks: the
tutorials are executed by the test suite and rendered here as they are stored. Build with warnings as
errors::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
import tomllib
import warnings
from datetime import date
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.domains import Domain
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
    "sphinx.ext.viewcode",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}  # .rst first: autosummary stubs
master_doc = "index"
default_role = "literal"
pygments_style = "default"
nitpicky = False  # no inventories offline: references to anndata, torch, ... stay plain text

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
}
html_show_sourcelink = False

# -- Tutorials: a single source of truth in ../tutorials ----------------------------------------------------------

TUTORIALS_SRC = ROOT / "tutorials"
TUTORIALS_DST = HERE / "tutorials"


def link_tutorials() -> list[str]:
    """Mirror ``../tutorials/*.ipynb`` into ``docs/tutorials/`` as symlinks (copies where links fail).

    ``docs/tutorials/`` is generated (git-ignored); stale entries of removed notebooks are deleted.
    Returns the notebook names.
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
    return [nb.stem for nb in notebooks]


TUTORIALS = link_tutorials()

_TOCTREE_RE = re.compile(r"```\{toctree\}.*?\n```\n", re.DOTALL)


def _tutorials_page(app: Sphinx, docname: str, source: list[str]) -> None:
    """With no notebook yet, replace the (then empty) glob toctree of ``tutorials.md`` by a note."""
    if docname == "tutorials" and not TUTORIALS:
        note = "```{note}\nNo tutorial notebook is in `tutorials/` yet.\n```\n"
        source[0] = _TOCTREE_RE.sub(note, source[0], count=1)


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
    if what not in ("data", "attribute") or isinstance(obj, type) or not type(obj).__doc__:
        return
    if type(obj).__module__.startswith("scsemiclip"):
        return
    type_doc = [ln.strip() for ln in type(obj).__doc__.splitlines() if ln.strip()]
    if [ln.strip() for ln in lines if ln.strip()] == type_doc:
        lines.clear()


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
    app.connect("source-read", _tutorials_page)
    app.connect("builder-inited", check_api_page)
