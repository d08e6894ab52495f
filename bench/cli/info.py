"""``bench list`` (suites, workloads and the choices of each axis) and ``bench env``."""

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.errors import UserError
from bench.spec import suite as suites
from bench.spec.catalog import HF_INFO, USER_INFO, WORKLOADS, ZOOS, num_params
from bench.spec.choices import COMPILE_MODES, FINETUNE_STRATEGIES, OPTIMIZERS, PRECISIONS


def add_commands(commands: Any) -> None:
    listing = commands.add_parser("list", help="suites, workloads, optimizers, precisions, modes")
    listing.set_defaults(handler=cmd_list)
    listing.add_argument("--json", action="store_true", help="print the listing as JSON")
    listing.add_argument("--suites", type=Path, default=Path("suites"), help="where suites are")

    env = commands.add_parser("env", help="the machine and software as a run records them")
    env.set_defaults(handler=cmd_env)
    env.add_argument("--json", action="store_true", help="print it as JSON")


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    listing = catalog_listing(args.suites)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    table = Table(title="workloads")
    for column in ("workload", "size", "parameters", "default", "data"):
        table.add_column(column)
    for workload in listing["workloads"]:
        for size in workload["sizes"]:
            default = "default" if size["name"] == workload["default_size"] else ""
            data = ", ".join(workload["data"])
            table.add_row(workload["name"], size["name"], f"{size['num_params']:,}", default, data)
    console.print(table)
    for name, description in listing["by_name"].items():
        console.print(escape(f"{name}: {description}"))  # [timm] is text, not rich markup
    for key in ("optimizers", "precisions", "compile_modes", "finetune_strategies"):
        console.print(f"{key.replace('_', ' ')}: {', '.join(listing[key])}")
    for workload in listing["workloads"]:
        tasks = ", ".join(workload["finetune_tasks"]) or "none"
        metrics = ", ".join(workload["eval_metrics"])
        console.print(f"{workload['name']}: fine-tuning tasks {tasks}; target metrics {metrics}")
    suites_table = Table(title=f"suites in {args.suites}")
    for column in ("suite", "file", "description"):
        suites_table.add_column(column)
    for entry in listing["suites"]:
        suites_table.add_row(entry["name"], entry["path"], entry["description"])
    console.print(suites_table)
    return 0


def catalog_listing(suites_dir: Path) -> dict[str, Any]:
    workloads = [
        {
            "name": info.name,
            "description": info.description,
            "default_size": info.default_size,
            "default_batch_size": info.default_batch_size,
            "data": list(info.data),
            "eval_metrics": list(info.eval_metrics),
            "finetune_tasks": list(info.finetune_tasks),
            "sizes": [
                {"name": size, "num_params": num_params(info.name, size)} for size in info.sizes
            ],
        }
        for info in [*WORKLOADS.values(), dataclasses.replace(HF_INFO, name="hf:gpt2")]
    ]
    # Models by name: no sizes of bench's own (hf: types other than gpt2 and models read from
    # files count their parameters when built; the record has the count).
    zoos = {
        "hf:NAME_OR_PATH": HF_INFO.description,
        **{f"{zoo}:NAME": info.description for zoo, info in ZOOS.items()},
        "FILE.py:FUNCTION": USER_INFO.description,
    }
    found = []
    for path in sorted(suites_dir.glob("*.toml")):
        try:
            suite = suites.load(str(path))
            found.append({"name": suite.name, "path": str(path), "description": suite.description})
        except UserError as error:
            found.append({"name": path.stem, "path": str(path), "description": f"invalid: {error}"})
    return {
        "workloads": workloads,
        "by_name": zoos,
        "optimizers": list(OPTIMIZERS),
        "precisions": list(PRECISIONS),
        "compile_modes": list(COMPILE_MODES),
        "finetune_strategies": list(FINETUNE_STRATEGIES),
        "suites": found,
    }


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    from bench.machine import cache
    from bench.machine.env import collect_in_child
    from bench.machine.paths import PROJECT_ROOT

    info = collect_in_child(PROJECT_ROOT)
    info["cache"] = cache.summary()  # bench cache list shows the entries
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    table = Table(title="environment", show_header=False)
    for key, value in info.items():
        if key != "nvml":
            text = value if isinstance(value, str) else json.dumps(value)
            table.add_row(key, text)
    console.print(table)
    # NVML on its own: its state, and every device it sees with the telemetry each one offers.
    nvml = info["nvml"]
    title = nvml["reason"]  # why NVML is unavailable
    if nvml["state"] == "ok":
        title = f"NVML {nvml['nvml_version']}, driver {nvml['driver_version']}: "
        title += f"{len(nvml['devices'])} device(s)"
    devices = Table(title=title)
    for column in ("index", "name", "uuid", "memory", "power limit", "telemetry", "unsupported"):
        devices.add_column(column)
    for d in nvml["devices"]:
        memory = d["memory_total_bytes"]
        devices.add_row(
            str(d["index"]),
            d["name"],
            d["uuid"],
            f"{memory / 2**30:.1f} GiB" if memory is not None else "-",
            f"{d['power_limit_w']:.0f} W" if d["power_limit_w"] is not None else "-",
            ", ".join(f"{k}: {v}" for k, v in d["telemetry"].items()),
            ", ".join(d["unsupported"]) or "-",
        )
    console.print(devices)
    return 0
