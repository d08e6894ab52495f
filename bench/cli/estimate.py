"""``bench estimate``: FLOPs, time, energy, cost and memory to train N parameters on D tokens.

The options as typed are parsed and checked here, and the figures shown as a table; the cost
model itself is bench/report/estimate.py.
"""

import argparse
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.errors import UserError
from bench.machine.peaks import DTYPES

if TYPE_CHECKING:
    from bench.report.estimate import Inputs


def add_commands(commands: Any) -> None:
    estimate = commands.add_parser(
        "estimate", help="FLOPs, time, energy, cost and memory to train N parameters on D tokens"
    )
    estimate.set_defaults(handler=cmd_estimate)
    estimate.add_argument("--params", required=True, help="parameters N: 7B, 350M, 1e9")
    estimate.add_argument("--tokens", help="training tokens D (default: 20 per parameter)")
    estimate.add_argument("--seq-len", help="sequence length T (with --layers, --d-model)")
    estimate.add_argument("--layers", help="transformer layers L")
    estimate.add_argument("--d-model", help="model width d (heads x head size)")
    estimate.add_argument("--micro-batch", help="sequences per GPU step, for activations (1)")
    estimate.add_argument("--mfu", help="model FLOPs utilisation, 0-1 (default: measured here)")
    estimate.add_argument("--gpu", help="GPU name for the peak FLOP/s (default: measured device)")
    estimate.add_argument(
        "--dtype", choices=DTYPES, default="bf16", help="compute dtype, for the peak FLOP/s"
    )
    estimate.add_argument("--gpus", help="number of GPUs (default 1)")
    estimate.add_argument("--watts", help="power per GPU, W (default: energy measured here)")
    estimate.add_argument("--pue", help="power usage effectiveness, >= 1 (default 1)")
    estimate.add_argument("--price-per-gpu-hour", help="price of one GPU-hour, for the cost")
    estimate.add_argument(
        "--results",
        type=Path,
        default=Path("results"),
        help="where runs are, for the MFU and energy measured here",
    )
    estimate.add_argument("--json", action="store_true", help="print the figures as JSON")


SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parse_count(text: str, option: str) -> float:
    """A positive count as people write them: 7B, 1.4T, 350M, 1e9, 7000000."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*", text)
    value = float(match.group(1)) * SUFFIXES[match.group(2).upper()] if match else math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{option} {text!r}: not a positive number (e.g. 7B, 1.4T, 350M, 1e9)")
    return value


def positive(text: str, option: str, integer: bool = False, at_least: float = 0.0) -> float:
    """A number > 0 (or >= ``at_least`` when given), an integer where ``integer``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    bad = not math.isfinite(value) or (value < at_least if at_least else value <= 0)
    if integer and not bad and not value.is_integer():
        bad = True
    if bad:
        kind = "an integer" if integer else "a number"
        bound = f">= {at_least:g}" if at_least else "> 0"
        raise UserError(f"{option} {text!r}: must be {kind} {bound}")
    return value


def parse_inputs(args: Any) -> "Inputs":
    """The command's options (strings as typed) as validated :class:`Inputs`."""
    from bench.report.estimate import Inputs

    def opt(name: str, **kw: Any) -> float | None:
        text = getattr(args, name.replace("-", "_"))
        return None if text is None else positive(text, f"--{name}", **kw)

    mfu = opt("mfu")
    if mfu is not None and mfu > 1:
        raise UserError(f"--mfu {args.mfu}: a fraction of the peak, in (0, 1] (e.g. 0.4)")
    shape = {name: opt(name, integer=True) for name in ("seq-len", "layers", "d-model")}
    return Inputs(
        params=parse_count(args.params, "--params"),
        tokens=parse_count(args.tokens, "--tokens") if args.tokens is not None else None,
        seq_len=_int(shape["seq-len"]),
        layers=_int(shape["layers"]),
        d_model=_int(shape["d-model"]),
        micro_batch=_int(opt("micro-batch", integer=True)) or 1,
        mfu=mfu,
        gpu=args.gpu,
        dtype=args.dtype,
        gpus=_int(opt("gpus", integer=True)) or 1,
        watts=opt("watts"),
        pue=opt("pue", at_least=1.0) or 1.0,
        price_per_gpu_hour=opt("price-per-gpu-hour"),
    )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def render(result: dict[str, Any], console: Any) -> None:
    """The estimate as a table: each figure, its value, and where it comes from."""

    flops, compute, energy = result["flops"], result["compute"], result["energy"]
    table = Table(title="training estimate", show_header=True)
    for column in ("figure", "value", "from"):
        table.add_column(column)
    rows = [
        ("parameters N", f"{result['params']:.4g}", "--params"),
        ("tokens D", f"{result['tokens']:.4g}", result["tokens_source"]),
        ("FLOPs 6·N·D", f"{flops['dense_6nd']:.4g}", "Kaplan et al. 2020"),
    ]
    if flops["attention"] is not None:
        rows.append(("FLOPs attention", f"{flops['attention']:.4g}", "12·L·d·T·D (PaLM app. B)"))
    rows += [
        ("FLOPs total", f"{flops['total']:.4g}", ""),
        ("MFU", f"{compute['mfu']:.3f}", compute["mfu_source"]),
        (
            "peak per GPU",
            f"{compute['peak_per_s'] / 1e12:.4g} TFLOP/s",
            f"{compute['peak_device']} {compute['peak_dtype']}: {compute['peak_source']}",
        ),
        ("GPUs", str(compute["gpus"]), "--gpus"),
        ("time", f"{compute['time_s'] / 3600:,.1f} h ({compute['time_days']:,.2f} days)", ""),
        ("GPU-hours", f"{compute['gpu_hours']:,.1f}", ""),
    ]
    if energy["joules"] is not None:
        rows.append(
            ("energy", f"{energy['kwh']:,.1f} kWh", f"{energy['source']}, PUE {energy['pue']:g}")
        )
    else:
        rows.append(("energy", "—", energy["reason"]))
    if result["cost"] is not None:
        cost = result["cost"]
        rows.append(("cost", f"{cost['total']:,.0f}", f"at {cost['price_per_gpu_hour']:g}/GPU-h"))
    for row in result["memory"]["per_replica"]:
        rows.append(
            (
                f"memory: {row['bytes_per_param']:.1f} B/param",
                f"{row['bytes'] / 2**30:,.1f} GiB",
                row["what"],
            )
        )
    activations = result["memory"]["activations_bytes"]
    if activations is not None:
        rows.append(
            (
                "memory: activations",
                f"{activations / 2**30:,.2f} GiB",
                f"34·T·b·d·L, micro-batch {result['memory']['micro_batch']} (Korthikanti 2022)",
            )
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def cmd_estimate(args: argparse.Namespace, console: Console) -> int:
    from bench.report import estimate

    inputs = parse_inputs(args)
    result = estimate.estimate(inputs, estimate.measured_here(args.results))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render(result, console)
    return 0
