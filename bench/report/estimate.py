"""``bench estimate``: what training a model of N parameters on D tokens costs, from this
machine's measurements or from figures given.

Torch- and pandas-free (it answers at once). The method:
- FLOPs = 6·N·D (a multiply-add per parameter and token forward, twice that backward; Kaplan et
  al. 2020, section 2.1), plus the attention term 12·L·d·T·D when the shape is given, with d =
  H·Q, the same per-token formula as bench/measure/flops.py's ``gpt_flops_per_token`` (PaLM
  appendix B).
  D defaults to 20 tokens per parameter, the compute-optimal ratio of Hoffmann et al. 2022
  (Chinchilla).
- time = FLOPs / (GPUs x peak x MFU). The MFU is measured here by default (the
  ``metrics.flops.mfu`` of the case with the highest achieved FLOP/s in the latest runs), or
  ``--mfu``; the peak is the measured device's, or ``--gpu NAME`` from bench/machine/peaks.py.
- energy = FLOPs x joules per FLOP measured here (NVML energy per step / FLOPs per step), or
  ``--watts`` x GPUs x time; times ``--pue`` (the facility's overhead).
- memory to train, per replica, unsharded: bytes per parameter for weights, gradients and
  optimizer state (16 for mixed-precision Adam, the reference of Rajbhandari et al. 2020, ZeRO,
  section 3.1: 2 + 2 + 12), and for each optimizer and precision measured here its own (weights
  and gradients in the precision's parameter dtype, plus ``metrics.optimizer.state_bytes`` per
  parameter the optimizer updates: ``metrics.trainable_params`` where a record has it, as a
  frozen or LoRA fine-tune keeps state for those only); plus activations when the shape is
  given: 34·T·b·d bytes per layer (Korthikanti et al. 2022, equation 1, 16-bit activations
  without recomputation; the 5·H·T²·b term of the attention scores is left out, as fused
  attention kernels do not store them).
"""

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.machine.peaks import Peak, known_gpus, peak_by_name
from bench.results.store import PROBE_FLAG, find_latest_runs, read_records
from bench.spec.choices import PRECISION_DTYPES, param_bytes

TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022 (Chinchilla): compute-optimal tokens per parameter
REFERENCE_BYTES_PER_PARAM = 16  # mixed-precision Adam: fp16 weights + grads, fp32 master/m/v
ACTIVATION_BYTES_PER_TOKEN_WIDTH_LAYER = 34  # Korthikanti et al. 2022, eq. 1, without 5as/h
SECONDS_PER_HOUR = 3600.0


@dataclass
class Measured:
    """What the latest runs measured that an estimate can use."""

    mfu: float | None = None
    mfu_case: str | None = None
    peak_per_s: float | None = None
    peak_device: str | None = None
    peak_dtype: str | None = None
    joules_per_flop: float | None = None
    state_bytes_per_param: dict[tuple[str, str], float] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    num_mfu_above_one: int = 0
    """Records whose MFU exceeds 1, left out (their peak does not bound their rate)."""


def measured_from_records(records: list[dict[str, Any]]) -> Measured:
    """The MFU (median over its repeats) and peak of the case with the highest achieved FLOP/s,
    the median joules per FLOP, and the optimizer state per parameter of each (optimizer,
    precision)."""
    ok = [
        r for r in records if r.get("status") == "ok" and PROBE_FLAG not in (r.get("flags") or [])
    ]
    measured = Measured(runs=sorted({f"{r.get('suite')}/{r.get('run_id')}" for r in ok}))
    mfus: dict[str, list[float]] = {}
    by_case: dict[str, dict[str, Any]] = {}
    joules, state = [], {}
    for r in ok:
        metrics = r.get("metrics") or {}
        flops = metrics.get("flops") or {}
        if flops.get("mfu") and flops["mfu"] > 1:
            # Above the peak: the peak is wrong for this step (a CPU's measured bf16 matmul
            # rate, slower than the step's own small products), not a utilisation to scale.
            measured.num_mfu_above_one += 1
        elif flops.get("mfu"):
            mfus.setdefault(r["case_id"], []).append(float(flops["mfu"]))
            by_case[r["case_id"]] = r
        energy = (metrics.get("gpu") or {}).get("energy_per_step_j")
        if energy and flops.get("per_step"):
            joules.append(energy / flops["per_step"])
        # Optimizer state per parameter it updates: a frozen or LoRA fine-tune holds state for
        # its trainable parameters only, and training a model from scratch updates them all.
        state_bytes = (metrics.get("optimizer") or {}).get("state_bytes")
        trained = metrics.get("trainable_params") or metrics.get("num_params")
        if state_bytes is not None and trained:
            config = r.get("config") or {}
            key = (str(config.get("optimizer")), str(config.get("precision")))
            state.setdefault(key, []).append(state_bytes / trained)
    if mfus:
        # The case that trained fastest here (highest achieved FLOP/s = MFU x its peak): not the
        # highest MFU, which a low peak (a CPU's emulated bf16) can make high on a slow step.
        def achieved(case_id: str) -> float:
            peak = (by_case[case_id]["metrics"]["flops"].get("peak_per_s")) or 0.0
            return statistics.median(mfus[case_id]) * peak

        case_id = max(mfus, key=achieved)
        record = by_case[case_id]
        flops = record["metrics"]["flops"]
        config = record.get("config") or {}
        measured.mfu = statistics.median(mfus[case_id])
        label = ", ".join(
            f"{k}={config[k]}"
            for k in ("workload", "model_size", "batch_size", "precision")
            if config.get(k) is not None
        )
        measured.mfu_case = f"{record.get('suite')}/{record.get('run_id')} case {case_id} ({label})"
        measured.peak_per_s = flops.get("peak_per_s")
        measured.peak_device = flops.get("peak_device")
        measured.peak_dtype = flops.get("peak_dtype")
    if joules:
        measured.joules_per_flop = statistics.median(joules)
    measured.state_bytes_per_param = {k: statistics.median(v) for k, v in state.items()}
    return measured


def measured_here(results: Path) -> Measured:
    """From the latest run of each suite under ``results`` (nothing when there is none)."""
    if not results.is_dir():
        return Measured()
    return measured_from_records(
        [record for run in find_latest_runs(results) for record in read_records(run)]
    )


@dataclass(frozen=True)
class Inputs:
    params: float
    tokens: float | None = None
    seq_len: int | None = None
    layers: int | None = None
    d_model: int | None = None
    micro_batch: int = 1
    mfu: float | None = None
    gpu: str | None = None
    dtype: str = "bf16"
    gpus: int = 1
    watts: float | None = None
    pue: float = 1.0
    price_per_gpu_hour: float | None = None


def estimate(inputs: Inputs, measured: Measured) -> dict[str, Any]:
    """Every figure of the estimate, as JSON-ready data (``bench estimate --json`` prints it)."""
    shape = (inputs.seq_len, inputs.layers, inputs.d_model)
    if any(v is not None for v in shape) and not all(v is not None for v in shape):
        raise UserError("--seq-len, --layers and --d-model go together (the attention term)")
    n = inputs.params
    d = inputs.tokens if inputs.tokens is not None else TOKENS_PER_PARAM * n
    dense = 6 * n * d
    attention = None
    if inputs.seq_len is not None:
        # 12·L·H·Q·T per token, H·Q = d_model (bench/measure/flops.py, gpt_flops_per_token).
        attention = 12 * inputs.layers * inputs.d_model * inputs.seq_len * d
    total = dense + (attention or 0)
    compute = _compute(inputs, measured, total)
    return {
        "params": n,
        "tokens": d,
        "tokens_source": "--tokens" if inputs.tokens is not None else "20 tokens per parameter",
        "flops": {"total": total, "dense_6nd": dense, "attention": attention},
        "compute": compute,
        "energy": _energy(inputs, measured, total, compute),
        "cost": _cost(inputs, compute),
        "memory": _memory(inputs, measured),
    }


def _compute(inputs: Inputs, measured: Measured, total: float) -> dict[str, Any]:
    # The GPU first: a misspelt name is the error to report even when the MFU is missing too.
    peak = _named_peak(inputs.gpu, inputs.dtype) if inputs.gpu is not None else None
    if inputs.mfu is not None:
        mfu, mfu_source = inputs.mfu, "--mfu"
    elif measured.mfu is not None:
        mfu, mfu_source = measured.mfu, f"measured: {measured.mfu_case}"
    else:
        raise UserError(
            "no measured MFU (no record with metrics.flops.mfu under the results directory): "
            "pass --mfu (e.g. --mfu 0.4 --gpu 'H100 SXM') or run a suite first "
            "(bench run suites/model_size)"
        )
    if peak is not None:
        peak_per_s, device, dtype = peak.flops_per_s, peak.device, peak.dtype
        peak_source = peak.source
    elif measured.peak_per_s:
        peak_per_s, device, dtype = measured.peak_per_s, measured.peak_device, measured.peak_dtype
        peak_source = "the measured case's peak (metrics.flops.peak_per_s)"
    else:
        raise UserError(
            f"--mfu {inputs.mfu:g} needs a peak: pass --gpu NAME (one of {', '.join(known_gpus())})"
            " or run a suite on this machine"
        )
    rate = inputs.gpus * peak_per_s * mfu
    time_s = total / rate
    return {
        "mfu": mfu,
        "mfu_source": mfu_source,
        "peak_per_s": peak_per_s,
        "peak_device": device,
        "peak_dtype": dtype,
        "peak_source": peak_source,
        "gpus": inputs.gpus,
        "achieved_per_s": rate,
        "time_s": time_s,
        "time_days": time_s / 86400,
        "gpu_hours": time_s * inputs.gpus / SECONDS_PER_HOUR,
    }


def _energy(
    inputs: Inputs, measured: Measured, total: float, compute: dict[str, Any]
) -> dict[str, Any]:
    if inputs.watts is not None:
        joules = inputs.watts * inputs.gpus * compute["time_s"]
        source = f"--watts {inputs.watts:g} x {inputs.gpus} GPU(s) x time"
    elif measured.joules_per_flop is not None:
        joules = measured.joules_per_flop * total
        source = f"measured: {measured.joules_per_flop:.3g} J/FLOP (NVML energy / FLOPs per step)"
    else:
        return {
            "joules": None,
            "kwh": None,
            "reason": "no energy measured here (NVML energy needs a GPU run) and no --watts",
        }
    joules *= inputs.pue
    return {"joules": joules, "kwh": joules / 3.6e6, "pue": inputs.pue, "source": source}


def _cost(inputs: Inputs, compute: dict[str, Any]) -> dict[str, Any] | None:
    if inputs.price_per_gpu_hour is None:
        return None
    return {
        "price_per_gpu_hour": inputs.price_per_gpu_hour,
        "total": compute["gpu_hours"] * inputs.price_per_gpu_hour,
    }


def _memory(inputs: Inputs, measured: Measured) -> dict[str, Any]:
    n = inputs.params
    rows = [
        {
            "what": "mixed-precision Adam (reference: ZeRO, 2 + 2 + 12)",
            "bytes_per_param": REFERENCE_BYTES_PER_PARAM,
            "bytes": REFERENCE_BYTES_PER_PARAM * n,
        }
    ]
    for (optimizer, precision), state in sorted(measured.state_bytes_per_param.items()):
        if precision not in PRECISION_DTYPES:
            continue
        # Weights and gradients in the parameter dtype: autocast keeps fp32 parameters, bf16
        # stores both in bf16.
        weights = param_bytes(precision)
        per_param = 2 * weights + state
        rows.append(
            {
                "what": f"{optimizer}, {precision} (measured here: {weights} + {weights} + "
                f"{state:.1f} state)",
                "bytes_per_param": per_param,
                "bytes": per_param * n,
            }
        )
    activations = None
    if inputs.seq_len is not None:
        activations = (
            ACTIVATION_BYTES_PER_TOKEN_WIDTH_LAYER
            * inputs.seq_len
            * inputs.micro_batch
            * inputs.d_model
            * inputs.layers
        )
    return {
        "per_replica": rows,
        "activations_bytes": activations,
        "micro_batch": inputs.micro_batch,
    }


def _named_peak(gpu: str, dtype: str) -> Peak:
    """The peak of ``--gpu``, or a one-line error naming what is allowed."""
    peak, reason = peak_by_name(gpu, dtype)
    if peak is not None:
        return peak
    if reason and "ambiguous" in reason:
        reason = reason.split(": ", 1)[1]
    elif reason and reason.startswith("no peak"):
        reason = f"unknown GPU; allowed: {', '.join(known_gpus())}"
    else:
        reason = f"{reason}; pick another --dtype (fp16, fp32)"
    raise UserError(f"--gpu {gpu!r}: {reason}")
