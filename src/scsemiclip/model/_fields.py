"""scvi-tools ``AnnDataManager`` fields that read ``obs`` / ``obsm`` as they are.

scvi-tools' categorical fields write private ``_scvi_*`` columns into ``obs``; the model only needs to validate
and remember which columns to read (batch codes are recomputed per dataset, because input corrections are fitted
on each dataset's own batches and controls), so these fields leave ``obs`` untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from anndata import AnnData
from scvi.data.fields import BaseAnnDataField, ObsmField

from scsemiclip._utils import batch_codes, check_obs_keys, control_mask, get_rep

#: Registry keys of the model's fields.
STUDENT_KEY = "student"
PAIR_KEYS_KEY = "pair_keys"
BATCH_KEY = "batch"
CONTROL_KEY = "control"


class EmbeddingField(ObsmField):
    """An ``obsm`` embedding, validated as a dense, finite, numeric matrix (not rewritten)."""

    def __init__(self, registry_key: str, attr_key: str) -> None:
        super().__init__(registry_key, attr_key, correct_data_format=False)

    def validate_field(self, adata: AnnData) -> None:
        """Check that the embedding exists and is dense, numeric and finite."""
        get_rep(adata, self.attr_key)

    def register_field(self, adata: AnnData) -> dict:
        """Validate the embedding and record its column names (``0 .. d - 1``), without logging."""
        self.validate_field(adata)
        return {self.COLUMN_NAMES_KEY: np.arange(get_rep(adata, self.attr_key).shape[1])}


class ObsColumnsField(BaseAnnDataField):
    """Some columns of ``obs``, validated and read as they are (nothing is written into ``obs``).

    Parameters
    ----------
    registry_key
        Key of the field in the registry.
    columns
        Column names; ``None`` or empty makes the field empty (optional fields such as ``control_key=None``).
    validate
        Called as ``validate(adata, columns)`` after the columns were found; raises on bad content.
    required
        Whether the columns must exist when the field is registered (if not, whoever reads them checks).
    """

    COLUMNS_KEY = "columns"

    def __init__(
        self,
        registry_key: str,
        columns: str | Sequence[str] | None,
        *,
        validate: Callable[[AnnData, list[str]], object] | None = None,
        required: bool = True,
    ) -> None:
        super().__init__()
        self._registry_key = registry_key
        self.columns = [columns] if isinstance(columns, str) else list(columns or [])
        self._validate = validate
        self.required = required

    @property
    def registry_key(self) -> str:
        return self._registry_key

    @property
    def attr_name(self) -> str:
        return "obs"

    @property
    def attr_key(self) -> None:
        return None

    @property
    def is_empty(self) -> bool:
        return not self.columns

    def validate_field(self, adata: AnnData) -> None:
        """Check that the columns exist (if required) and pass the field's validator."""
        if self.required:
            check_obs_keys(adata, self.columns)
        if self._validate is not None:
            self._validate(adata, self.columns)

    def register_field(self, adata: AnnData) -> dict:
        """Validate; the state registry records the column names."""
        self.validate_field(adata)
        return {self.COLUMNS_KEY: list(self.columns)}

    def transfer_field(self, state_registry: dict, adata_target: AnnData, **kwargs: object) -> dict:
        """Validate the same columns on another AnnData."""
        return self.register_field(adata_target)

    def get_summary_stats(self, state_registry: dict) -> dict:
        """No summary statistics."""
        return {}

    def view_state_registry(self, state_registry: dict) -> None:
        """Nothing to show."""
        return None


def validate_batch(adata: AnnData, columns: list[str]) -> None:
    """A batch column has no missing values."""
    batch_codes(adata, columns[0])


def validate_control(adata: AnnData, columns: list[str]) -> None:
    """A control column is boolean without missing values."""
    control_mask(adata, columns[0])
