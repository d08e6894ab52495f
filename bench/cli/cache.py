"""``bench cache``: what bench keeps in its cache directory (bench/machine/cache.py), and clearing
it: fine-tuning's pretrained weights, the CPU's measured matmul peak."""

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.cli.arguments import Parser


def add_commands(commands: Any) -> None:
    cache = commands.add_parser("cache", help="list or clear bench's cache (pretrained weights)")
    cache.set_defaults(handler=cmd_cache)
    actions = cache.add_subparsers(dest="action", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="every entry of the cache with its size")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    actions.add_parser("clear", help="remove every entry (runs train or measure them again)")


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from bench.machine import cache

    root = cache.cache_dir()
    if args.action == "clear":
        removed = cache.clear(root)
        freed = sum(entry["bytes"] for entry in removed)
        console.print(f"removed {len(removed)} entries from {root} ({size_text(freed)})")
        return 0
    found = cache.entries(root)
    if args.json:
        print(json.dumps({"dir": str(root), "entries": found}, indent=2))
        return 0
    total = size_text(sum(entry["bytes"] for entry in found))
    table = Table(title=f"cache {root}: {len(found)} entries, {total}")
    for column in ("kind", "name", "what", "size"):
        table.add_column(column)
    for entry in found:
        table.add_row(entry["kind"], entry["name"], entry["what"], size_text(entry["bytes"]))
    console.print(table)
    return 0


def size_text(num_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"
