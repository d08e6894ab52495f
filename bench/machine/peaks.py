"""Peak compute of GPUs by device name and dtype, from NVIDIA's datasheets. Torch-free.

Dense peaks (without 2:4 structured sparsity, which the datasheets mark with an asterisk and
which doubles the figure): a training step's matrices are dense. The name is matched as NVML and
``nvidia-smi`` print it ("NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "Tesla
V100-SXM2-16GB", "NVIDIA GeForce RTX 4090"); rules are tried in order and the first match wins.
A device that is not in the table has no peak, and its record says so: no guess.

dtypes: ``bf16`` and ``fp16`` are tensor-core rates with FP32 accumulation (what cuBLAS uses for
torch's half-precision matmuls); ``tf32`` the tensor-core rate for FP32 matmuls when torch allows
TF32; ``fp32`` the CUDA-core rate. A device without TF32 (Volta, Turing) runs FP32 matmuls on its
CUDA cores, so ``tf32`` falls back to ``fp32`` there.
"""

import re
from dataclasses import dataclass

TFLOPS = 1e12
# The compute dtypes the table gives a peak for (bench estimate --dtype).
DTYPES = ("bf16", "fp16", "tf32", "fp32")


@dataclass(frozen=True)
class Peak:
    flops_per_s: float
    dtype: str
    device: str
    """The table's entry (or the CPU model, for a measured peak)."""
    source: str
    """Where the figure comes from: a datasheet, or the measurement that produced it."""


@dataclass(frozen=True)
class _Entry:
    device: str
    pattern: str
    """Regular expression searched (case-insensitive) in the device's name."""
    tflops: dict[str, float]
    source: str


V100_DATASHEET = (
    "NVIDIA V100 Tensor Core GPU datasheet, https://images.nvidia.com/content/technologies/volta/"
    "pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"
)
A100_DATASHEET = (
    "NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/"
    "Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
H100_DATASHEET = (
    "NVIDIA H100 Tensor Core GPU datasheet (sparse figures halved), "
    "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
)
H200_DATASHEET = (
    "NVIDIA H200 Tensor Core GPU datasheet (sparse figures halved), "
    "https://www.nvidia.com/en-us/data-center/h200/"
)

# TFLOP/s, dense. Order matters: specific names before the general ones they contain.
_TABLE = (
    # Hopper. The H200 has the H100's GH100 compute at the same clocks: same peaks per form factor.
    _Entry(
        "H200 NVL",
        r"\bH200 NVL\b",
        {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
        H200_DATASHEET,
    ),
    _Entry(
        "H200 SXM",
        r"\bH200\b",
        {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
        H200_DATASHEET,
    ),
    _Entry(
        "H100 NVL",
        r"\bH100 NVL\b",
        {"fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
        H100_DATASHEET,
    ),
    _Entry(
        "H100 PCIe",
        r"\bH100 PCIe\b",
        {"fp32": 51, "tf32": 378, "bf16": 756.5, "fp16": 756.5},
        H100_DATASHEET,
    ),
    # The SXM5 board reports itself by its memory: "NVIDIA H100 80GB HBM3".
    _Entry(
        "H100 SXM",
        r"\bH100\b.*\b(HBM3|SXM)",
        {"fp32": 67, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
        H100_DATASHEET,
    ),
    # Ada.
    _Entry(
        "L40S",
        r"\bL40S$",
        {"fp32": 91.6, "tf32": 183, "bf16": 362.05, "fp16": 362.05},
        "NVIDIA L40S GPU datasheet, https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413",
    ),
    _Entry(
        "L4",
        r"\bL4$",
        {"fp32": 30.3, "tf32": 60, "bf16": 121, "fp16": 121},
        "NVIDIA L4 Tensor Core GPU datasheet (sparse figures halved), "
        "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet",
    ),
    _Entry(
        "RTX 4090",
        r"\bRTX 4090$",
        {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
        "NVIDIA Ada GPU Architecture whitepaper, appendix A (RTX 4090; FP32 accumulate), "
        "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf",
    ),
    # Ampere.
    _Entry(
        "A100", r"\bA100\b", {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}, A100_DATASHEET
    ),
    # The A10G is AWS's variant of the A10 (80 SMs at 1.71 GHz, tensor cores at GA102's GeForce
    # rate); NVIDIA publishes no datasheet for it. Figures as tabulated, with the A10's, in
    # https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/ ; they agree with
    # 80 SMs x 1.71 GHz x 512 dense BF16 FLOPs per clock per SM (GA102 whitepaper, RTX 3090 rate).
    _Entry(
        "A10G",
        r"\bA10G$",
        {"fp32": 35, "tf32": 35, "bf16": 70, "fp16": 70},
        "A10G (AWS): https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/",
    ),
    _Entry(
        "A10",
        r"\bA10$",
        {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125},
        "NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/"
        "Solutions/Data-Center/a10/pdf/a10-datasheet.pdf",
    ),
    _Entry(
        "RTX 3090",
        r"\bRTX 3090$",
        {"fp32": 35.6, "tf32": 35.6, "bf16": 71, "fp16": 71},
        "NVIDIA Ampere GA102 GPU Architecture whitepaper, appendix A, table 9 (RTX 3090; FP32 "
        "accumulate), https://images.nvidia.com/aem-dam/en-zz/Solutions/geforce/ampere/pdf/"
        "NVIDIA-ampere-GA102-GPU-Architecture-Whitepaper-V1.pdf",
    ),
    # Turing and Volta: FP16 tensor cores only (no BF16, no TF32).
    _Entry(
        "T4",
        r"\bT4$",
        {"fp32": 8.1, "fp16": 65},
        "NVIDIA T4 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/"
        "Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf",
    ),
    _Entry("V100S PCIe", r"\bV100S-PCIE", {"fp32": 16.4, "fp16": 130}, V100_DATASHEET),
    _Entry("V100 PCIe", r"\bV100-PCIE", {"fp32": 14, "fp16": 112}, V100_DATASHEET),
    _Entry("V100 SXM2", r"\bV100-SXM2", {"fp32": 15.7, "fp16": 125}, V100_DATASHEET),
)


def gpu_peak(name: str, dtype: str) -> tuple[Peak | None, str | None]:
    """The dense peak of the GPU called ``name`` in ``dtype``, or None and the reason."""
    for entry in _TABLE:
        if re.search(entry.pattern, name.strip(), flags=re.IGNORECASE):
            return gpu_peak_of(entry, dtype)
    return None, f"no peak for {name!r} in the table (bench/machine/peaks.py)"


def known_gpus() -> list[str]:
    """The table's device names, in its order (for messages that list what is allowed)."""
    return [entry.device for entry in _TABLE]


def peak_by_name(name: str, dtype: str) -> tuple[Peak | None, str | None]:
    """Like :func:`gpu_peak`, but ``name`` may also be a table entry's own name ("H100 SXM",
    "V100 SXM2"), as a person types it rather than as NVML prints it."""
    typed = " ".join(name.split()).lower()
    if not typed:  # "" would be a prefix of every name
        return None, f"no peak for {name!r} in the table (bench/machine/peaks.py)"
    for entry in _TABLE:
        if entry.device.lower() == typed:
            return gpu_peak_of(entry, dtype)
    # A prefix of table names ("H200"): one match is that GPU, several are ambiguous, before the
    # names NVML prints are tried ("H200" would read as NVML's "NVIDIA H200", the SXM, while a
    # person typing it may mean the NVL).
    matches = [entry for entry in _TABLE if entry.device.lower().startswith(typed)]
    if len(matches) == 1:
        return gpu_peak_of(matches[0], dtype)
    if len(matches) > 1:
        names = ", ".join(entry.device for entry in matches)
        return None, f"no peak for {name!r}: ambiguous, it names {names}; say which"
    return gpu_peak(name, dtype)  # as NVML names it: "NVIDIA H200" is the SXM


def gpu_peak_of(entry: _Entry, dtype: str) -> tuple[Peak | None, str | None]:
    key = "fp32" if dtype == "tf32" and "tf32" not in entry.tflops else dtype
    if key not in entry.tflops:
        return None, f"{entry.device} has no {dtype} tensor cores in the peak table"
    return Peak(entry.tflops[key] * TFLOPS, key, entry.device, entry.source), None


def compute_dtype(
    param_dtype: str, autocast_dtype: str | None, matmul_precision: str, device_type: str
) -> str:
    """The dtype the step's matrix products run in, as ``fp32``, ``tf32``, ``bf16`` or ``fp16``.

    ``param_dtype`` etc. as ``PrecisionPolicy.describe()`` records them. FP32 matmuls on CUDA use
    TF32 tensor cores unless ``torch.get_float32_matmul_precision()`` is ``highest`` (torch's
    default); on a CPU the precision setting does not make them faster.
    """
    dtype = autocast_dtype or param_dtype
    if dtype == "bfloat16":
        return "bf16"
    if dtype == "float16":
        return "fp16"
    assert dtype == "float32", f"unexpected compute dtype {dtype!r}"
    return "tf32" if device_type == "cuda" and matmul_precision != "highest" else "fp32"
