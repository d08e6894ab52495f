"""Reading pretrained weights: a checkpoint file (weights only: no code from the file runs),
torchvision's weights in the local torch hub cache, and copying a state dict into a model with
one line saying how a checkpoint of another model does not fit."""

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import CaseError
from bench.spec.case import Case
from bench.spec.hub_weights import WEIGHTS

# torch.load's UnpicklingError puts the weights-only unpickler's own reason after this
# (torch/serialization.py, torch 2.6 on); the text around it is advice.
WEIGHTS_UNPICKLER_MARKER = "WeightsUnpickler error:"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def hub_weights(case: Case) -> tuple[Path, dict[str, torch.Tensor], Any]:
    """torchvision's DEFAULT weights of the case's size, as torchvision would have saved them in
    ``torch.hub.get_dir()/checkpoints``; never downloaded (``load_state_dict_from_url`` would)."""
    assert case.model_size is not None, "unresolved case"
    weights = WEIGHTS[case.workload, case.model_size]  # validation allows no other size
    path = Path(torch.hub.get_dir()) / "checkpoints" / weights.filename
    if not path.is_file():
        raise CaseError(
            f"checkpoint = 'torchvision': no {path} (torchvision's {weights.enum}; bench never "
            f"downloads: fetch {weights.url} to that path)"
        )
    return path, read_checkpoint(str(path)), weights


def own_head(state: dict[str, torch.Tensor], model: nn.Module, head: str) -> dict:
    """``state`` with the tensors of module ``head`` (``fc``, ``heads.head``) replaced by the
    model's own: another model's head is dropped, whatever its shape."""
    prefix = f"{head}."
    kept = {k: v for k, v in state.items() if not k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    return {**kept, **own}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (or the one under ``model`` in a training checkpoint), read
    with ``weights_only=True``: tensors and plain containers only, no code from the file."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message goes on to advise loading with weights_only=False, which runs code
        # from the file: the one thing a checkpoint from elsewhere must not do. Bench's own words,
        # with the unpickler's reason only.
        raise CaseError(
            f"checkpoint {path}: not a weights-only torch checkpoint "
            f"(torch.load(weights_only=True) refused it: {_unpickler_reason(error)})"
        ) from None
    except Exception as error:  # noqa: BLE001 - zip, I/O, end of file: each is a corrupt file here
        raise CaseError(
            f"checkpoint {path}: not a readable torch checkpoint "
            f"({type(error).__name__}: {_first_sentence(str(error))})"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CaseError(
            f"checkpoint {path}: holds a {type(loaded).__name__}, not a state dict (names to "
            "tensors, as torch.save(model.state_dict(), path) writes)"
        )
    return loaded


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str, case: Case) -> None:
    """Copy ``state`` into ``model``; a checkpoint of another model is one line saying how."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_names(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
        for k in shapes[:2]:
            parts.append(f"{k} is {tuple(state[k].shape)} there, {tuple(own[k].shape)} here")
        raise CaseError(
            f"checkpoint {path} does not fit {case.workload} model_size = {case.model_size!r}: "
            + "; ".join(parts)
        )
    model.load_state_dict(state)


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler objected to (``Unsupported operand 103``, ``Unsupported
    global: GLOBAL argparse.Namespace was not an allowed global by default``), without the advice
    around it."""
    text = str(error)
    _, marker, reason = text.partition(WEIGHTS_UNPICKLER_MARKER)
    return _first_sentence(reason if marker else text)


def _first_sentence(text: str) -> str:
    """The first sentence of the first non-empty line, terminal escapes removed, at most 200
    characters; "no message" for none."""
    lines = [line.strip() for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    if not lines:
        return "no message"
    sentence = lines[0].split(". ")[0].removesuffix(".")
    return sentence[:200]
