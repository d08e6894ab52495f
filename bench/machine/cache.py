"""bench's cache directory on this machine: what it holds, its size, clearing it. Torch-free.

``$BENCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/bench``, else ``~/.cache/bench``) holds the CPU's
measured matmul peak (``cpu_peak.json``, bench/measure/cpu_peak.py) and fine-tuning's pretrained
weights (``pretrained/<workload>-<key>.pt`` with their notes ``.json``, bench/train/finetune.py),
which one process trains at a time (``pretrained/.lock``). ``bench cache list`` shows them,
``bench cache clear`` removes them, ``bench env`` gives their size.
"""

import json
import os
from pathlib import Path
from typing import Any

PRETRAINED = "pretrained"
LOCK = ".lock"


def cache_dir() -> Path:
    if "BENCH_CACHE_DIR" in os.environ:
        return Path(os.environ["BENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bench"


def entries(root: Path | None = None) -> list[dict[str, Any]]:
    """One entry per thing cached: pretrained weights (with what their notes say they are) and
    every other file, each with its size in bytes."""
    root = root or cache_dir()
    if not root.is_dir():
        return []
    found = []
    weights = sorted((root / PRETRAINED).glob("*.pt"))
    for path in weights:
        notes_path = path.with_suffix(".json")
        try:
            key = json.loads(notes_path.read_text()).get("key", {})
        except (OSError, ValueError, AttributeError):
            key = {}  # notes missing or damaged: an entry a run treats as a miss
        size = path.stat().st_size + (notes_path.stat().st_size if notes_path.is_file() else 0)
        what = " ".join(
            f"{k}={key[k]}" for k in ("model_size", "task", "pretrain_steps", "device") if k in key
        )
        found.append(
            {
                "kind": "pretrained",
                "name": path.stem,
                "what": what,
                "bytes": size,
                "path": str(path),
            }
        )
    counted = {p for path in weights for p in (path, path.with_suffix(".json"))}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path not in counted and path.name != LOCK:
            found.append(
                {
                    "kind": "file",
                    "name": str(path.relative_to(root)),
                    "what": "",
                    "bytes": path.stat().st_size,
                    "path": str(path),
                }
            )
    return found


def summary(root: Path | None = None) -> dict[str, Any]:
    """Where the cache is, how many entries it holds and their bytes (``bench env``)."""
    root = root or cache_dir()
    found = entries(root)
    return {
        "dir": str(root),
        "num_entries": len(found),
        "bytes": sum(entry["bytes"] for entry in found),
    }


def clear(root: Path | None = None) -> list[dict[str, Any]]:
    """Remove every entry; returns what was removed."""
    root = root or cache_dir()
    found = entries(root)
    for entry in found:
        Path(entry["path"]).unlink(missing_ok=True)
        if entry["kind"] == "pretrained":
            Path(entry["path"]).with_suffix(".json").unlink(missing_ok=True)
    if (root / PRETRAINED).is_dir():
        for leftover in (root / PRETRAINED).glob("*.tmp*"):  # a write cut off
            leftover.unlink(missing_ok=True)
    return found
