"""Members that SemiClipped inherits from scvi-tools but that do not apply to an adapter say so."""

from __future__ import annotations

import pytest
from conftest import make_weakly_paired

from scsemiclip.model import SemiClipped

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> SemiClipped:
    student, teacher, _ = make_weakly_paired()
    SemiClipped.setup_anndata(student, student_rep="X_emb")
    return SemiClipped(student, teacher, hidden_dims=(8,), pea_bank_size=2)


@pytest.mark.parametrize(
    ("member", "instead"),
    [
        ("differential_abundance", "tl.known_relationship_recall"),
        ("get_normalized_expression", "get_latent_representation"),
    ],
)
def test_inapplicable_scvi_members_raise_a_clear_error(model, member, instead):
    """Called as scvi-tools' own models are (any arguments), they name the member, the reason and the way out."""
    with pytest.raises(NotImplementedError, match=rf"SemiClipped\.{member} .*no generative model.*{instead}"):
        getattr(model, member)(model.adata, batch_size=8)
    with pytest.raises(NotImplementedError, match=member):
        getattr(model, member)()
