"""GPU check, timing step (benchmarks/gpu_check.py): on one long-step case, bench's CUDA-event
step times against host-synchronised ones over the same training, and the host syncs inside the
measured window counted with ``torch.cuda.set_sync_debug_mode``. Writes OUT/timing.json.

    python3 benchmarks/gpu_timing.py --out DIR
"""

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import torch

from bench.measure.timing import CudaEventTimer, synchronize, time_call
from bench.measure.window import WindowPolicy, block_steps, run_window
from bench.spec.case import Case
from bench.worker.prepare import prepare

ROUNDS = 5
STEPS = 20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    out = parser.parse_args().out
    device = torch.device("cuda")
    # Long steps (a few ms and more): launch overhead is not what is compared.
    case = Case.from_dict(
        {"workload": "gpt", "model_size": "small", "batch_size": 16, "device": "cuda"}
    )
    training = prepare(case, device)
    for _ in range(5):
        training.step()
    events, host = [], []
    for _ in range(ROUNDS):  # interleaved, so drift lands on both
        timer = CudaEventTimer()
        timer.start_block()
        for _ in range(STEPS):
            training.step()
            timer.mark()
        events += timer.finish()
        for _ in range(STEPS):
            _, seconds = time_call(training.step, device)  # synchronize before and after
            host.append(seconds)
    ratio = statistics.median(events) / statistics.median(host)

    # Syncs inside a window: set_sync_debug_mode("warn") warns at every synchronising call.
    step_s = statistics.median(host)
    per_block = block_steps(step_s)
    policy = WindowPolicy(4 * per_block, 4 * per_block, 0.0, 60.0, 0.01)
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            window = run_window(
                training.train,
                CudaEventTimer(),
                policy,
                per_block,
                device,
                fetch=training.workload.next_batch,
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    blocks = -(-len(window.step_times_s) // per_block)
    result = {
        "event_over_host_median": ratio,
        "event_median_s": statistics.median(events),
        "host_median_s": step_s,
        "steps_each": len(events),
        "window_steps": len(window.step_times_s),
        "window_blocks": blocks,
        "syncs_in_window": syncs,
        "syncs_per_block": syncs / blocks,
        "agree_within_5pct": abs(ratio - 1) <= 0.05,
        "at_most_one_sync_per_block": syncs <= blocks,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["agree_within_5pct"] and result["at_most_one_sync_per_block"] else 1


if __name__ == "__main__":
    sys.exit(main())
