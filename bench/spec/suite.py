"""Suite files: load and validate a TOML sweep, and expand it into cases.

A suite (docs/SUITES.md) has ``[suite]`` (name, description), ``[base]`` (settings of every case),
``[matrix]`` (axes to cross), ``exclude`` and ``include`` lists with GitHub Actions' matrix
semantics, and per-device overrides ``[device.cpu]`` / ``[device.cuda]`` (settings that replace
``[base]``), optional ``[device.<name>.matrix]`` axes (replacing ``[matrix]`` axes) and
``[[device.<name>.include]]`` / ``exclude`` entries (added to the suite's).
Everything is checked before anything runs; every error names the file, the section, the key, the
value and what is allowed.
"""

import itertools
import tomllib
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, UserError
from bench.names import NAME_RULE, is_path_name
from bench.spec.case import CONDITIONAL_KEYS, Case
from bench.spec.checks import unknown_key_help
from bench.spec.choices import DEVICES
from bench.spec.hf_source import is_hf
from bench.spec.hub_weights import TORCHVISION, missing_reason
from bench.spec.user_workload import is_user_spec

# Set by bench, not by suites: the device (bench run --device) and where a user's file is found.
CASE_KEYS = tuple(f.name for f in fields(Case) if f.name not in ("device", "workload_root"))
# ``workload_args.NAME``: one argument of a user's workload function, as an axis or a setting.
ARGS_PREFIX = "workload_args."
_TOP_KEYS = ("suite", "base", "matrix", "include", "exclude", "device")
_SUITE_KEYS = ("name", "description")
_DEVICE_TABLES = ("matrix", "include", "exclude")
# First bytes of what torch.load reads: a zip archive's local file header (PKZIP APPNOTE 4.3.7),
# or a pickle's PROTO opcode and protocol version (pickletools; torch's legacy format uses 2).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"
PICKLE_VERSIONS = (b"\x02", b"\x03", b"\x04", b"\x05")


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    base: dict[str, Any] = field(default_factory=dict)
    matrix: dict[str, list[Any]] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per device: settings replacing ``base``, and under ``matrix`` axes replacing ``matrix``."""


def resolve_path(name: str) -> Path:
    """``suites/x`` or ``suites/x.toml`` -> the file; a clear error when neither exists."""
    path = Path(name)
    if path.is_dir():
        raise UserError(f"{name}: a directory; give a suite file, e.g. suites/compile_vs_eager")
    candidates = [path] if path.suffix == ".toml" else [path.with_name(path.name + ".toml"), path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"{name}: no such suite file (looked for {', '.join(map(str, candidates))})")


def load(name: str) -> Suite:
    path = resolve_path(name)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}") from None

    def fail(where: str, key: str, value: object, allowed: str) -> UserError:
        return ConfigError(key, value, allowed).at(f"{path}: {where}")

    _check_keys(raw, _TOP_KEYS, path, "top level", fail)
    meta = _table(raw, "suite", path)
    _check_keys(meta, _SUITE_KEYS, path, "[suite]", fail)
    name_value = meta.get("name", path.stem)
    if not is_path_name(name_value):
        # It names the suite's folder of runs, results/<name>/: never a way out of it.
        given = "" if "name" in meta else " (the file's name: give [suite] name)"
        raise fail("[suite]", "name", name_value, f"use {NAME_RULE} characters{given}")
    base = _table(raw, "base", path)
    _check_keys(base, CASE_KEYS, path, "[base]", fail)
    base = _flat_args(base, path, "[base]", fail)
    matrix = _matrix(raw, "matrix", path, fail)
    devices: dict[str, dict[str, Any]] = {}
    for device, table in _table(raw, "device", path).items():
        if device not in DEVICES:
            raise fail("[device]", device, table, f"unknown device; allowed: {', '.join(DEVICES)}")
        if not isinstance(table, dict):
            raise fail("[device]", device, table, "must be a table")
        where = f"[device.{device}]"
        settings = {k: v for k, v in table.items() if k not in _DEVICE_TABLES}
        _check_keys(settings, CASE_KEYS, path, where, fail)
        settings = _flat_args(settings, path, where, fail)
        devices[device] = {
            **settings,
            "matrix": _matrix(table, "matrix", path, fail, where),
            **{key: _entries(table, key, path, fail, where) for key in ("include", "exclude")},
        }
    lists = {key: _entries(raw, key, path, fail) for key in ("include", "exclude")}
    # A list in [base] or [device.<d>] is an axis too (expand): exclude may name it.
    base_axes = set(matrix) | _list_keys(base)
    device_axes = {d: set(t["matrix"]) | _list_keys(t) for d, t in devices.items()}
    all_axes = base_axes.union(*device_axes.values())
    checks = [("[[exclude]]", lists["exclude"], all_axes)] + [
        (f"[[device.{d}.exclude]]", table["exclude"], base_axes | device_axes[d])
        for d, table in devices.items()
    ]
    for where, entries, axes in checks:
        for entry in entries:
            for key in entry:
                if key not in axes:
                    allowed = "exclude may only name axes (of [matrix], or lists in [base])"
                    raise fail(where, key, entry[key], allowed)
    return Suite(
        path, name_value, meta.get("description", ""), base, matrix, **lists, devices=devices
    )


def _list_keys(table: dict[str, Any]) -> set[str]:
    return {key for key, value in table.items() if isinstance(value, list) and key in CASE_KEYS}


def expand(suite: Suite, device: str, overrides: dict[str, Any] | None = None) -> list[Case]:
    """The suite's cases on ``device``, with ``overrides`` (from ``--set``) applied last.

    An override whose value is a list makes (or replaces) a matrix axis; a scalar one pins the key
    in every case.
    """
    overrides = overrides or {}
    device_table = suite.devices.get(device, {})
    settings = {k: v for k, v in device_table.items() if k not in _DEVICE_TABLES}
    base = {**suite.base, **settings}
    matrix = {**suite.matrix, **device_table.get("matrix", {})}
    exclude = suite.exclude + device_table.get("exclude", [])
    include = suite.include + device_table.get("include", [])
    where = {key: "[base]" for key in suite.base}
    where.update({key: f"[device.{device}]" for key in settings})
    where.update({key: "[matrix]" for key in suite.matrix})
    where.update({key: f"[device.{device}.matrix]" for key in device_table.get("matrix", {})})
    # A list in [base] or [device.<d>] is an axis too (batch_size = [32, 64, 128]).
    for key, value in list(base.items()):
        if isinstance(value, list):
            if not value:
                raise ConfigError(key, value, "an axis needs at least one value").at(
                    f"{suite.path}: {where[key]}"
                )
            matrix.setdefault(key, value)
            del base[key]
    # Keys that pick cases: an include entry that names another value of one describes cases the
    # user has ruled out with --set (see below). Other keys it sets are settings --set overrides.
    selectors = {*matrix, "workload"}
    pinned = {}
    for key, value in overrides.items():
        where[key] = "--set"
        if isinstance(value, list):
            if not value:
                raise UserError(f"--set {key}=[]: an axis needs at least one value")
            matrix[key] = value
        else:
            matrix.pop(key, None)
            pinned[key] = value

    # An include entry that contradicts a pinned value of a key that picks cases (--set
    # workload=mlp against an entry for the gpt) describes cases the user has ruled out: it
    # neither extends nor adds a case. One that only sets another value of a setting (--set
    # min_steps=10 against an entry's min_steps = 300) still applies, and the pinned value wins.
    include = [
        entry
        for entry in include
        if all(pinned.get(k, v) == v for k, v in entry.items() if k in selectors)
    ]
    combos = _combinations(matrix, exclude, include)
    if not combos:
        raise UserError(f"{suite.path}: the matrix expands to no cases (every one is excluded)")
    cases: dict[str, Case] = {}
    for combo in combos:
        values = _gather_args({**base, **combo, **pinned, "device": device})
        if is_user_spec(values.get("workload", "mlp")) or is_hf(values.get("workload")):
            values["workload_root"] = str(suite.path.resolve().parent)
        try:
            case = Case.from_dict(values)
        except ConfigError as error:
            source = where.get(error.key, "[[include]]" if error.key in combo else "defaults")
            raise error.at(f"{suite.path}: {source}") from None
        if case.data == "text" and not Path(str(case.data_path)).is_file():
            raise UserError(
                f"{suite.path}: {where.get('data_path', '[[include]]')} data_path = "
                f"{case.data_path!r}: no such file (data = 'text' trains on it)"
            )
        if case.checkpoint is not None and (problem := _checkpoint_problem(case)):
            raise UserError(
                f"{suite.path}: {where.get('checkpoint', '[[include]]')} checkpoint = "
                f"{case.checkpoint!r}: {problem}"
            )
        kept = cases.setdefault(case.id, case)
        if kept != case:
            warnings.warn(
                f"{suite.path}: two entries make case {case.id} with different run lengths; "
                "the first one's are kept",
                stacklevel=2,
            )
    _warn_no_effect(suite, list(cases.values()), {*base, *pinned, *matrix} & CONDITIONAL_KEYS)
    return list(cases.values())


def _checkpoint_problem(case: Case) -> str | None:
    """Why the case's ``checkpoint`` cannot be a torch checkpoint, from its first bytes
    (torch-free); None when it may be one. What it holds, and whether it fits the model, is found
    once it is read (bench/train/finetune.py: an error record with the reason)."""
    assert case.checkpoint is not None and case.model_size is not None, "unresolved case"
    if case.checkpoint == TORCHVISION:
        return missing_reason(case.workload, case.model_size)
    path = Path(case.checkpoint).expanduser()
    if not path.is_file():
        return "no such file (the weights to fine-tune)"
    try:
        with path.open("rb") as f:
            start = f.read(8)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    # torch.save writes a zip archive (torch 1.6 on); its legacy format, a pickle of protocol 2
    # (the magic number first), still loads.
    if start.startswith(ZIP_MAGIC) or start[:1] == PICKLE_PROTO and start[1:2] in PICKLE_VERSIONS:
        return None
    found = "this file is empty" if not start else f"this file starts with {start!r}"
    return (
        "not a torch checkpoint (torch.save writes a zip archive, or a pickle in its legacy "
        f"format; {found})"
    )


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with value read as a TOML value (``64``, ``"x"``, ``[1, 2]``, ``true``);
    a bare word that is not TOML is taken as a string (``compile=default``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set batch_size=128")
    if key == "device":
        raise UserError("--set device=...: the device is chosen with --device cpu|cuda")
    if key not in CASE_KEYS and not (key.startswith(ARGS_PREFIX) and key[len(ARGS_PREFIX) :]):
        raise UserError(f"--set {key}: {unknown_key_help(key, CASE_KEYS)}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key, parsed


def _combinations(
    matrix: dict[str, list[Any]], exclude: list[dict[str, Any]], include: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Cross the axes, drop excluded combinations, then apply ``include`` as GitHub Actions does:
    an entry extends every combination whose matrix values it does not contradict, and becomes a
    combination of its own when it extends none."""
    axes = list(matrix)
    combos = [dict(zip(axes, values)) for values in itertools.product(*matrix.values())]
    if not axes and include:
        combos = []  # no matrix: each include entry is a case of its own, as in GitHub Actions
    combos = [c for c in combos if not any(_matches(c, entry) for entry in exclude)]
    # Only the matrix's own combinations are extended, never one that an include entry added.
    originals = [dict(c) for c in combos]
    added = []
    for entry in include:
        extended = False
        for original, combo in zip(originals, combos):
            if all(original[k] == v for k, v in entry.items() if k in original):
                combo.update(entry)
                extended = True
        if not extended:
            added.append(dict(entry))
    return combos + added


def _matches(combo: dict[str, Any], entry: dict[str, Any]) -> bool:
    return all(combo.get(k) == v for k, v in entry.items())


def _entries(raw, key: str, path: Path, fail, where: str = "") -> list[dict[str, Any]]:
    label = f"[[{where[1:-1]}.{key}]]" if where else f"[[{key}]]"
    entries = raw.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise fail(
            where or "top level", key, entries, f"must be a list of tables ({label} entries)"
        )
    for entry in entries:
        _check_keys(entry, CASE_KEYS, path, label, fail)
    return [_flat_args(entry, path, label, fail) for entry in entries]


def _table(raw: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"{path}: {key} = {value!r}: must be a table ([{key}])")
    return value


def _matrix(raw, key, path, fail, where="") -> dict[str, list[Any]]:
    label = f"{where}.matrix" if where else "[matrix]"
    label = label.replace("].matrix", ".matrix]")
    if key not in raw:
        return {}
    matrix = _table(raw, key, path)
    if not matrix:
        raise UserError(
            f'{path}: {label} is empty: give at least one axis, e.g. compile = ["eager", '
            '"default"], or remove the table for a single case'
        )
    _check_keys(matrix, CASE_KEYS, path, label, fail)
    matrix = _flat_args(matrix, path, label, fail)
    for axis, values in matrix.items():
        if not isinstance(values, list):
            raise fail(label, axis, values, "a matrix axis is a list of values, e.g. [32, 64]")
        if not values:
            raise fail(label, axis, values, "an axis needs at least one value")
    return matrix


def _flat_args(table: dict[str, Any], path: Path, where: str, fail) -> dict[str, Any]:
    """``workload_args = {hidden = ...}`` (``[base.workload_args]``, ``workload_args.hidden =``)
    as one key per argument, ``workload_args.hidden``: each may be an axis, and an include or
    exclude entry may name it. :func:`expand` gathers them back into ``workload_args``."""
    if "workload_args" not in table:
        return table
    args = table["workload_args"]
    if not isinstance(args, dict):
        raise fail(where, "workload_args", args, "must be a table ([base.workload_args])")
    flat = {k: v for k, v in table.items() if k != "workload_args"}
    flat.update({f"{ARGS_PREFIX}{key}": value for key, value in args.items()})
    return flat


def _gather_args(values: dict[str, Any]) -> dict[str, Any]:
    """The ``workload_args.NAME`` keys of a case's settings back in one ``workload_args``."""
    args = {k[len(ARGS_PREFIX) :]: v for k, v in values.items() if k.startswith(ARGS_PREFIX)}
    gathered = {k: v for k, v in values.items() if not k.startswith(ARGS_PREFIX)}
    if args:
        gathered["workload_args"] = dict(sorted(args.items()))
    return gathered


def _check_keys(table: dict[str, Any], allowed, path: Path, where: str, fail) -> None:
    for key, value in table.items():
        if key == "device" and where != "top level":
            raise fail(where, key, value, "the device is chosen with bench run --device")
        if key not in allowed:
            raise fail(where, key, value, unknown_key_help(key, allowed))


def _warn_no_effect(suite: Suite, cases: list[Case], keys: set[str]) -> None:
    """A key the suite sets that applies to none of its cases (``seq_len`` with only MLPs,
    ``gamma`` without the focal loss, ...) changes nothing: say so rather than pretend."""
    for key in sorted(keys):
        if all(getattr(case, key) is None for case in cases):
            warnings.warn(
                f"{suite.path}: {key} has no effect: it applies to none of this suite's cases",
                stacklevel=3,
            )
