"""Model FLOPs utilisation: the step's FLOPs at the median step time, against the device's peak.

MFU = FLOPs per step / median step time / peak FLOP/s of the device in the step's compute dtype
(Chowdhery et al. 2022, PaLM, appendix B). On a GPU the peak is the datasheet's
(bench/machine/peaks.py); on a CPU, the matmul rate measured on this machine
(bench/measure/cpu_peak.py). The record names the peak and its source; where there is none, MFU
is null with the reason.
"""

from typing import Any

import torch

from bench.machine.peaks import Peak, compute_dtype, gpu_peak
from bench.measure.cpu_peak import SUSPECT_MFU, cpu_peak
from bench.measure.flops import gpt_flops_per_token
from bench.spec.case import Case
from bench.spec.choices import PRECISION_DTYPES


def flops_metrics(
    case: Case,
    device: torch.device,
    flops_per_evaluation: int,
    median_step_s: float,
    tokens_per_step: int | None,
    evaluations_per_step: float = 1.0,
) -> dict[str, Any]:
    """``metrics.flops`` of the record (docs/RESULTS.md).

    ``flops_per_evaluation``: the counted forward and backward; a step runs it once, except with
    ``lbfgs``, whose step evaluates loss and gradient ``evaluations_per_step`` times on average.
    """
    per_step = flops_per_evaluation * evaluations_per_step
    analytic = None
    # The formula assumes every weight gets a gradient: not so for a frozen backbone or adapters.
    # hf:gpt2 built from a config (model_size set) has gpt's architecture: the same formula
    # cross-checks transformers' count. Other hf: models have no formula here.
    gpt_shaped = case.workload == "gpt" or (case.workload == "hf:gpt2" and case.model_size)
    if gpt_shaped and case.finetune in (None, "full"):
        assert case.model_size is not None and case.seq_len and tokens_per_step, "unresolved"
        per_token = gpt_flops_per_token(case.model_size, case.seq_len, bool(case.tie_embeddings))
        analytic = per_token * tokens_per_step
    achieved = per_step / median_step_s
    peak, reason = device_peak(case, device)
    if peak is not None and device.type == "cpu" and achieved > SUSPECT_MFU * peak.flops_per_s:
        # Too close to (or past) a measured peak: measure it again, keeping the better one.
        peak = cpu_peak(peak.dtype, torch.get_num_threads(), remeasure=True)
    mfu = achieved / peak.flops_per_s if peak else None
    above = None
    if mfu is not None and mfu > 1:
        above = (
            f"MFU {mfu:.2f} > 1: the step ran its counted FLOPs faster than the peak "
            f"{peak.source.split(' (')[0]} (on a CPU without native {peak.dtype} matmuls the "
            "peak is an emulation's and kernels in the step may use other paths); not a "
            "utilisation of the hardware"
        )
    return {
        "per_step": per_step,
        "evaluations_per_step": evaluations_per_step,
        "analytic_per_step": analytic,
        "counted_over_analytic": flops_per_evaluation / analytic if analytic else None,
        "achieved_per_s": achieved,
        "mfu": mfu,
        "above_peak": above,
        "peak_per_s": peak.flops_per_s if peak else None,
        "peak_dtype": peak.dtype if peak else None,
        "peak_device": peak.device if peak else None,
        "peak_source": peak.source if peak else None,
        "reason": reason,
    }


def device_peak(case: Case, device: torch.device) -> tuple[Peak | None, str | None]:
    """The peak for this case's device and compute dtype (the policy is applied by now)."""
    dtypes = PRECISION_DTYPES[case.precision]
    matmul_precision = torch.get_float32_matmul_precision()
    dtype = compute_dtype(dtypes.param, dtypes.autocast, matmul_precision, device.type)
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device), dtype)
    return cpu_peak(dtype, torch.get_num_threads()), None
