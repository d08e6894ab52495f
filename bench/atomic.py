"""Whole-file writes that no reader, and no crash, sees half done: each writes a temporary file
in the target's directory and renames it over the target (``rename`` replaces a file atomically
within one file system: POSIX rename(2)). The one home of this pattern for records' results,
manifests, reports, verdicts and caches; a leaf: it imports nothing of bench.
"""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary file, then put it at ``path`` in one rename. The temporary
    name is unique (mkstemp), so two processes writing the same file never share one."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, data: Any, **dumps: Any) -> Path:
    """``data`` as JSON (``dumps``: json.dumps's options, e.g. indent, sort_keys, allow_nan)."""
    return write_text(path, json.dumps(data, **dumps))
