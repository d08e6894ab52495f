"""Combinations of settings that do not apply: a case that cannot run is a ``skipped`` record
with the reason, known before any process starts, never a crash mid-sweep nor a silent
substitution (STYLE.md, principle 9). Torch-free.
"""

import importlib.util
from typing import TYPE_CHECKING

from bench.spec.catalog import TIMM_INSTALL, zoo_of
from bench.spec.choices import CUDAGRAPH_MODES, FSDP_UNSUPPORTED_OPTIMIZERS, OPTIMIZER_IMPLS
from bench.spec.lora_layers import adapted_layers

if TYPE_CHECKING:
    from bench.spec.case import Case


def skip_reason(case: "Case") -> str | None:
    """Why this case cannot run, known before any process starts (a combination that does
    not apply, never silently run as another)."""
    if zoo_of(case.workload) == "timm" and importlib.util.find_spec("timm") is None:
        return f"{case.workload} needs timm, which is not installed: {TIMM_INSTALL}"
    if case.device == "cpu" and case.compile in CUDAGRAPH_MODES:
        return (
            f"compile mode {case.compile!r} uses CUDA graphs, which need a CUDA device "
            "(on CPU: 'max-autotune-no-cudagraphs')"
        )
    if case.device == "cpu" and case.precision == "tf32":
        return "tf32 is a CUDA tensor-core format (matmul and cuDNN); a CPU has no TF32 mode"
    if case.impl is not None and case.impl not in OPTIMIZER_IMPLS[case.optimizer]:
        offered = ", ".join(OPTIMIZER_IMPLS[case.optimizer])
        return f"torch.optim offers {case.optimizer} as {offered}, not {case.impl!r}"
    if case.compile_scope == "step" and case.optimizer == "lbfgs":
        return (
            "lbfgs re-evaluates the model inside step() through its closure; compile it with "
            "compile_scope = 'model'"
        )
    if case.optimizer == "lbfgs" and case.precision == "amp-fp16":
        return "amp-fp16's GradScaler cannot drive lbfgs, which steps through a closure"
    if case.strategy == "fsdp" and case.optimizer in FSDP_UNSUPPORTED_OPTIMIZERS:
        return (
            f"fsdp shards parameters, and {case.optimizer} steps through a closure over one "
            "flat vector of every parameter; use strategy = 'ddp'"
        )
    if case.world_size > 1 and case.finetune is not None:
        return (
            "fine-tuning runs in one process: its pretraining phase and weight cache are "
            "per process (give nproc = 1)"
        )
    if case.strategy == "fsdp" and case.precision == "amp-fp16":
        return (
            "amp-fp16's GradScaler would check for inf/NaN in one rank's shard of the "
            "gradients only (ranks could skip different steps); use amp-bf16 with fsdp"
        )
    if case.world_size > 1 and case.compile_scope == "step":
        return (
            f"bench compiles the model under {case.strategy} (compile_scope = 'model'); "
            "a compiled whole step around distributed gradients is not supported"
        )
    if case.compile_scope == "step" and case.fullgraph:
        return (
            "compile_scope = 'step' breaks the graph at loss.backward(); fullgraph = true "
            "cannot hold the whole step in one graph"
        )
    if case.finetune == "lora" and case.model_size is not None and ":" not in case.workload:
        if not adapted_layers(case.workload, case.model_size):
            # The message bench/train/finetune.py gave once the model was built.
            return (
                f"{case.workload} {case.model_size} has no linear layer or attention projection "
                "outside its head: LoRA would train the head only, which is finetune = 'frozen'"
            )
    return None
