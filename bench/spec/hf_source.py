"""Where a ``workload = "hf:NAME_OR_PATH"`` model comes from, worked out without transformers.

Torch-free, and network-free: bench reads Hugging Face models from local files only.
:func:`locate` looks, in this order, for

1. a directory ``NAME_OR_PATH`` holding a ``config.json`` (relative to the suite file's
   directory, as a ``FILE.py`` workload is; or absolute, or ``~/...``): what ``save_pretrained``
   writes;
2. the model ``NAME_OR_PATH`` (a Hub id such as ``gpt2`` or ``org/name``) in the local Hugging
   Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), in
   the layout ``huggingface_hub`` writes: ``models--ORG--NAME/snapshots/COMMIT/config.json``,
   the commit that ``refs/main`` names;
3. else ``NAME_OR_PATH`` is taken as a model type that transformers builds from a config alone
   (``gpt2``, ``llama``, ``mistral``, ...; checked in a child process before any case runs,
   bench/workloads/hf_check.py), in the shape of the case's ``model_size``, with random weights
   and byte-level tokens.

Found files give the model's shape (its ``config.json``), so ``model_size`` does not apply to
them; their weights are loaded unless ``workload_args.pretrained = false``.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.spec.case import Case

PREFIX = "hf:"
# The name the first Hugging Face workload had: the same model as hf:gpt2 (docs/WORKLOADS.md).
ALIASES = {"hf-gpt2": "hf:gpt2"}
# Files save_pretrained writes for the weights (safetensors by default; the older pickle form;
# the index of a sharded checkpoint).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a tokenizer saved with save_pretrained leaves, one of which is enough to load it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
# The workload_args an hf: model takes.
ARGS = ("pretrained",)

# seq_len of a model read from files, where the suite gives none (its config may allow less).
FILES_SEQ_LEN = 128

Kind = Literal["directory", "cache", "config", "missing"]


@dataclass(frozen=True)
class HFSource:
    """Where an ``hf:`` model's files are, or that there are none (``kind = "config"``)."""

    name: str
    """NAME_OR_PATH as the suite wrote it."""
    kind: Kind
    path: str | None
    """The directory holding ``config.json`` (None for ``config`` and ``missing``: a path, as
    ``./model`` or ``/models/x``, that holds none)."""
    looked: tuple[str, ...]
    """Where files were looked for, for the error that names them."""

    @property
    def config(self) -> dict[str, Any] | None:
        if self.path is None:
            return None
        return json.loads((Path(self.path) / "config.json").read_text())

    @property
    def has_weights(self) -> bool:
        return self.path is not None and any((Path(self.path) / f).is_file() for f in WEIGHT_FILES)

    @property
    def has_tokenizer(self) -> bool:
        return self.path is not None and any(
            (Path(self.path) / f).is_file() for f in TOKENIZER_FILES
        )

    def config_sha256(self) -> str | None:
        if self.path is None:
            return None
        return hashlib.sha256((Path(self.path) / "config.json").read_bytes()).hexdigest()

    def max_positions(self) -> int | None:
        """The longest context the model's config allows, where it says."""
        config = self.config or {}
        for key in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
            if isinstance(config.get(key), int):
                return config[key]
        return None


def is_hf(workload: object) -> bool:
    return isinstance(workload, str) and workload.startswith(PREFIX) and len(workload) > 3


def model_name(workload: str) -> str:
    return workload[len(PREFIX) :]


def hub_cache() -> Path:
    """The local Hugging Face cache, where huggingface_hub looks (its constants.HF_HUB_CACHE)."""
    if cache := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(cache).expanduser()
    if home := os.environ.get("HF_HOME"):
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def _cached_snapshot(name: str) -> tuple[Path | None, Path]:
    """The snapshot of Hub model ``name`` in the cache holding a config.json, and the folder."""
    folder = hub_cache() / f"models--{name.replace('/', '--')}"
    ref = folder / "refs" / "main"
    snapshots = folder / "snapshots"
    candidates: list[Path] = []
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip())
    if snapshots.is_dir():
        candidates += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for snapshot in candidates:
        if (snapshot / "config.json").is_file():
            return snapshot, folder
    return None, folder


def locate(workload: str, root: str | None) -> HFSource:
    """The model's directory (the suite's ``root`` first), its cached snapshot, or none."""
    name = model_name(workload)
    path = Path(name).expanduser()
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    looked = [str(path)]
    if (path / "config.json").is_file():
        return HFSource(name, "directory", str(path.resolve()), tuple(looked))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return HFSource(name, "missing", None, tuple(looked))  # a path, not a Hub id
    snapshot, folder = _cached_snapshot(name)
    looked.append(str(folder))
    if snapshot is not None:
        return HFSource(name, "cache", str(snapshot), tuple(looked))
    return HFSource(name, "config", None, tuple(looked))


def pretrained(source: HFSource, args: dict[str, Any] | None) -> bool:
    """Whether the case loads the files' weights: where there are any, unless the suite says
    ``workload_args.pretrained = false``."""
    wanted = (args or {}).get("pretrained")
    return source.has_weights if wanted is None else bool(wanted)


def workload_args_problem(source: HFSource, args: dict[str, Any] | None) -> str | None:
    """Why the suite's ``workload_args`` cannot apply to ``source``, or None."""
    args = args or {}
    for key, value in args.items():
        if key not in ARGS:
            return f"workload_args.{key}: hf: models take {', '.join(ARGS)} only"
        if not isinstance(value, bool):
            return f"workload_args.{key} = {value!r}: true or false"
    if args.get("pretrained") and source.kind == "config":
        return (
            f"workload_args.pretrained = true, but no files of {source.name!r} are here (looked "
            f"in {' and '.join(source.looked)}; bench never downloads): put the model there, or "
            "leave pretrained out to train it from random weights"
        )
    if args.get("pretrained") and not source.has_weights:
        return (
            f"workload_args.pretrained = true, but {source.path} has no weights "
            f"({', '.join(WEIGHT_FILES)}); set pretrained = false to train its config from "
            "random weights"
        )
    return None


def files_for(case: "Case", values: dict[str, Any]) -> HFSource | None:
    """The files of an ``hf:`` case's model (bench/spec/hf_source.py), or None where it is built
    from a config alone; a :class:`ConfigError` where the suite asks what its files cannot give."""
    source = locate(case.workload, case.workload_root)
    if source.kind == "missing":
        raise ConfigError(
            "workload",
            case.workload,
            f"no model directory {source.looked[0]} (a path is relative to the suite file; "
            "bench never downloads)",
        )
    if problem := workload_args_problem(source, case.workload_args):
        raise ConfigError("workload_args", case.workload_args, problem)
    weights = pretrained(source, case.workload_args)
    if case.finetune_task == "own" and not weights:
        raise ConfigError(
            "finetune_task",
            "own",
            f"tunes the weights as loaded, and {case.workload} has random ones "
            f"({'built from a config' if source.kind == 'config' else 'pretrained = false'}): "
            "use finetune_task = 'corpus'",
        )
    if source.kind == "config":
        return None
    for key in ("model_size", "tie_embeddings"):
        if values.get(key) is not None:
            raise ConfigError(
                key,
                values[key],
                f"{case.workload} is read from {source.path}: its config.json gives the shape; "
                f"leave {key} out",
            )
    return source


def file_defaults(case: "Case", source: HFSource) -> dict[str, Any]:
    """The defaults of a case whose model is read from files: no ``model_size``, ``seq_len``
    within the config's positions, the head tied as the config says (``tie_embeddings`` None)."""
    longest = source.max_positions() or FILES_SEQ_LEN
    return {
        "model_size": None,
        "seq_len": case.seq_len or min(FILES_SEQ_LEN, longest),
        "eval_batches": case.eval_batches or 20,
        "activation_checkpointing": bool(case.activation_checkpointing),
    }
