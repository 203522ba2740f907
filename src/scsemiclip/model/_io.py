"""Reading the model file written by :meth:`SemiClipped.save <scsemiclip.model.SemiClipped.save>`."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

#: File written by :meth:`SemiClipped.save`.
MODEL_FILE = "model.pt"
#: Format of the model file written by :meth:`SemiClipped.save` (files without the field are format 1).
FORMAT_VERSION = 1
#: Entries every model file has.
_SAVED_KEYS = ("state_dict", "init_params", "setup_args", "n_input", "pair_counts")


def model_file(dir_path: str | Path) -> Path:
    """The model file of a directory written by :meth:`SemiClipped.save`; the errors name the path."""
    if not isinstance(dir_path, str | Path):
        raise TypeError(f"`dir_path` must be a path, got {type(dir_path).__name__}.")
    path = Path(dir_path)
    if not path.exists():
        raise FileNotFoundError(f"No model directory {str(path)!r}.")
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file; give the directory written by `SemiClipped.save`.")
    file = path / MODEL_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{str(path)!r} has no {MODEL_FILE}: it is not a directory written by `save`.")
    return file


def read_model_file(file: Path, model_name: str) -> dict:
    """The checked contents of a model file (see :meth:`SemiClipped.load` for what is checked)."""
    with file.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(f"{str(file)!r} is not a model file (not a torch archive written by `SemiClipped.save`).")
    try:
        saved = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{str(file)!r} holds objects other than tensors and plain values; it was not written by "
            "`SemiClipped.save` and is not loaded (no code from a model file is run)."
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ValueError(
            f"{str(file)!r} is corrupt or truncated ({type(err).__name__}); save the model again."
        ) from err
    if not isinstance(saved, dict) or "model" not in saved:
        raise ValueError(f"{str(file)!r} is not a model file written by `SemiClipped.save`.")
    if saved["model"] != model_name:
        raise ValueError(f"{str(file)!r} holds a {saved['model']!r} model, not {model_name}.")
    fmt = saved.get("format_version", 1)
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise ValueError(
            f"{str(file)!r} has model format {fmt!r} (scsemiclip {saved.get('version', '?')}); this scsemiclip "
            f"reads formats up to {FORMAT_VERSION}: upgrade scsemiclip."
        )
    missing = [key for key in _SAVED_KEYS if key not in saved]
    if missing:
        raise ValueError(f"{str(file)!r} lacks {missing}; the file is damaged or not written by `save`.")
    if not isinstance(saved["state_dict"], dict) or not all(
        isinstance(t, torch.Tensor) for t in saved["state_dict"].values()
    ):
        raise ValueError(f"{str(file)!r} has no tensors under 'state_dict'; the file is damaged.")
    return saved
