"""What each workload offers: named sizes, data sources, defaults and parameter counts.

Torch-free on purpose: suite validation, ``bench list`` and ``--dry-run`` read this without paying
for ``import torch``. The models themselves live in ``mlp.py``, ``gpt.py``, ``cnn.py``,
``vit.py`` (shapes of these two in ``vision_shapes.py``), ``recsys.py``, ``diffusion.py`` (shapes
of these two in ``app_shapes.py``) and ``hf.py``; a test checks that :func:`num_params` here
equals the parameter count of the built model for every size.
"""

import math
from dataclasses import dataclass, replace

from bench.errors import ConfigError
from bench.spec.app_shapes import (  # the names catalog had stay importable from it
    RECSYS_DENSE,  # noqa: F401
    RECSYS_SIZES,
    UNET_GROUPS,  # noqa: F401
    UNET_SIDE,  # noqa: F401
    UNET_SIZES,
    RecsysSize,
    UNetSize,
    linear_stack_params,
    recsys_interactions,  # noqa: F401
    recsys_params,
    unet_params,
)
from bench.spec.hf_source import ALIASES, is_hf
from bench.spec.user_workload import is_user_spec
from bench.spec.vision_shapes import (
    CNN_SIZES,
    VIT_SIZES,
    CNNSize,
    ViTSize,
    cnn_for_target,
    cnn_params,
    vit_for_target,
    vit_params,
)


@dataclass(frozen=True)
class MLPSize:
    """Widths of the hidden layers of the MLP; input 784 (28x28), output 10 classes."""

    hidden: tuple[int, ...]


@dataclass(frozen=True)
class GPTSize:
    """Shape of the decoder-only transformer (byte-level vocabulary of 256)."""

    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    """Default context length (tokens per sequence) for this size; a suite may set ``seq_len``."""


Shape = MLPSize | GPTSize | CNNSize | ViTSize | RecsysSize | UNetSize


MLP_IN = 28 * 28
MLP_OUT = 10
GPT_VOCAB = 256  # byte-level tokens

# The tutorial's network is 784 -> 512 -> 256 -> 10: that is `base`, exactly. Other sizes scale the
# width (x1/8 ... x4) and, from `xl` on, the depth.
MLP_SIZES: dict[str, MLPSize] = {
    "tiny": MLPSize(hidden=(64, 32)),
    "small": MLPSize(hidden=(256, 128)),
    "base": MLPSize(hidden=(512, 256)),
    "large": MLPSize(hidden=(1024, 512)),
    "xl": MLPSize(hidden=(2048, 1024, 512)),
    "xxl": MLPSize(hidden=(4096, 4096, 2048, 1024)),
}

# Shapes follow GPT-2 (small 12x768, medium 24x1024, large 36x1280, xl 48x1600) with a byte-level
# vocabulary, so `xl` has about 1.5B parameters; `tiny`, `mini` and `small` are nanoGPT-style toys.
GPT_SIZES: dict[str, GPTSize] = {
    "tiny": GPTSize(n_layer=2, n_head=4, d_model=128, seq_len=64),
    "mini": GPTSize(n_layer=4, n_head=4, d_model=256, seq_len=128),
    "small": GPTSize(n_layer=6, n_head=6, d_model=384, seq_len=256),
    "base": GPTSize(n_layer=12, n_head=12, d_model=768, seq_len=1024),
    "medium": GPTSize(n_layer=24, n_head=16, d_model=1024, seq_len=1024),
    "large": GPTSize(n_layer=36, n_head=20, d_model=1280, seq_len=1024),
    "xl": GPTSize(n_layer=48, n_head=25, d_model=1600, seq_len=1024),
}


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    description: str
    sizes: dict[str, Shape]
    default_size: str | None
    """None: no named sizes (a user's workload reads ``model_size`` as it likes, if at all)."""
    default_batch_size: int
    data: tuple[str, ...]
    """Allowed values of the ``data`` key; the first is the default."""
    language: bool
    """A language model: throughput is also reported in tokens/s; ``seq_len`` applies."""
    eval_metrics: tuple[str, ...] = ("loss",)
    """Keys of the held-out evaluation (``metrics.eval``): what a ``target_metric`` may name."""
    finetune_tasks: tuple[str, ...] = ()
    """Fine-tuning tasks the workload offers (bench/train/finetune.py); the first is the default.
    None: the ``finetune`` key does not apply to it."""
    image_pipeline: bool = False
    """Reads images through the data pipeline (bench/workloads/pipeline.py): ``image_size``,
    ``augment``, ``num_workers`` and ``pin_memory`` apply."""
    classifier: bool = True
    """Trained on class labels, so that the ``loss`` key (cross-entropy, mse, focal) applies;
    False for a workload with its own objective (click BCE, noise-prediction MSE)."""
    zoo: bool = False
    """A model zoo's model by name (``torchvision:NAME``, ``timm:NAME``; bench/workloads/zoo.py):
    the workload names the model, so ``model_size`` does not apply."""
    user: bool = False
    """The user's own code (bench/spec/user_workload.py): sizes, metrics and whether it is a
    classifier are known only once its function has built it, in the case's process."""
    hub: bool = False
    """A Hugging Face causal LM by name or path (``hf:NAME_OR_PATH``; bench/spec/hf_source.py):
    ``model_size`` applies where it is built from a config alone, not to a model's own files."""


VISION_DATA = ("auto", "cifar10", "mnist", "digits", "synthetic")

# hf: models' optional dependency, and the reason their cases are skipped without it.
HF_INSTALL_HINT = "pip install 'bench[hf]'"
PEFT_INSTALL_HINT = "pip install 'bench[peft]'"


def hf_missing(workload: str) -> str:
    return f"{workload} needs Hugging Face transformers, which is not installed: {HF_INSTALL_HINT}"


WORKLOADS: dict[str, WorkloadInfo] = {
    "mlp": WorkloadInfo(
        name="mlp",
        description="the tutorial's MLP (784-512-256-10, ReLU, log-softmax) on handwritten digits",
        sizes=MLP_SIZES,
        default_size="base",
        default_batch_size=64,
        # auto: MNIST when present under the data root, else scikit-learn's bundled digits.
        data=("auto", "mnist", "digits", "synthetic"),
        language=False,
        eval_metrics=("accuracy", "loss"),
        # new-classes: pretrain on digits 0-4, fine-tune a new head on 5-9; rotated: pretrain on
        # upright digits, fine-tune on the same digits turned by 90 degrees.
        finetune_tasks=("new-classes", "rotated"),
    ),
    "gpt": WorkloadInfo(
        name="gpt",
        description="decoder-only transformer (pre-LayerNorm, SDPA) on byte-level text",
        sizes=GPT_SIZES,
        default_size="mini",
        default_batch_size=16,
        # auto = stdlib: the Python standard library's own source files (docs when fine-tuning);
        # docs: Python's language reference (pydoc's topics); text: a file you name.
        data=("auto", "stdlib", "docs", "text", "synthetic"),
        language=True,
        eval_metrics=("loss", "perplexity"),
        # corpus: pretrain on the stdlib's source code, continue on the case's data.
        finetune_tasks=("corpus",),
    ),
    "cnn": WorkloadInfo(
        name="cnn",
        description="ResNets: CIFAR-style (3x3 stem, 3 stages) and torchvision's ResNet-18/34/50",
        sizes=CNN_SIZES,
        default_size="resnet20",
        default_batch_size=128,
        # auto: CIFAR-10 when present under the data root, else MNIST when present, else
        # scikit-learn's bundled digits; all three resized to the model's input side.
        data=VISION_DATA,
        language=False,
        eval_metrics=("accuracy", "loss"),
        finetune_tasks=("new-classes", "rotated"),
        image_pipeline=True,
    ),
    "vit": WorkloadInfo(
        name="vit",
        description="torchvision's VisionTransformer: vit_b_16, vit_l_16, DeiT shapes and toys",
        sizes=VIT_SIZES,
        default_size="tiny",
        default_batch_size=128,
        data=VISION_DATA,
        language=False,
        eval_metrics=("accuracy", "loss"),
        finetune_tasks=("new-classes", "rotated"),
        image_pipeline=True,
    ),
    "recsys": WorkloadInfo(
        name="recsys",
        description="DLRM-style recommender (EmbeddingBag tables, dot interaction) on click logs",
        sizes=RECSYS_SIZES,
        default_size="small",
        default_batch_size=1024,
        # auto = clicks: the seeded click-log generator (Zipf items, a hidden model to learn);
        # synthetic: uniform items and coin-flip clicks, nothing to learn.
        data=("auto", "clicks", "synthetic"),
        language=False,
        eval_metrics=("loss", "accuracy", "auc"),
        classifier=False,
    ),
    "diffusion": WorkloadInfo(
        name="diffusion",
        description="DDPM noise prediction with a small UNet on handwritten digits (32x32)",
        sizes=UNET_SIZES,
        default_size="small",
        default_batch_size=64,
        data=("auto", "mnist", "digits", "synthetic"),
        language=False,
        eval_metrics=("loss",),
        classifier=False,
    ),
}


# A user's workload (``FILE.py:FUNCTION``), as far as it is known before its function runs: any
# ``model_size`` string, its own data (``data_path`` is its data root), any metric its evaluation
# names. Whether the suite's ``loss`` applies (a classifier) is the built workload's to say: a
# case whose ``loss`` does not apply is a skipped record (bench/workloads/user.py).
USER_INFO = WorkloadInfo(
    name="user",
    description="your own training code: workload = 'FILE.py:FUNCTION' (docs/WORKLOADS.md)",
    sizes={},
    default_size=None,
    default_batch_size=64,
    data=("auto",),
    language=False,
    eval_metrics=(),
    # own: fine-tune the model the function builds (its weights as it loads them, or from
    # ``checkpoint``) on its own data; no pretraining phase.
    finetune_tasks=("own",),
    classifier=True,
    user=True,
)


def _zoo_info(zoo: str, description: str) -> WorkloadInfo:
    """A zoo's classifiers, built untrained for the data's classes, on the image pipeline of
    ``cnn`` and ``vit`` (data, ``image_size``, ``augment``, ``num_workers``)."""
    return WorkloadInfo(
        name=zoo,
        description=description,
        sizes={},
        default_size=None,
        default_batch_size=32,
        data=VISION_DATA,
        language=False,
        eval_metrics=("accuracy", "loss"),
        finetune_tasks=("new-classes", "rotated"),
        image_pipeline=True,
        zoo=True,
    )


# hf:NAME_OR_PATH (bench/spec/hf_source.py, bench/workloads/hf.py): transformers' causal LMs on
# gpt's text; the sizes are gpt's, for the models built from a config alone (hf:gpt2, hf:llama).
HF_INFO = replace(
    WORKLOADS["gpt"],
    name="hf",
    description=(
        "Hugging Face causal LMs: hf:DIR, hf:HUB_ID (local cache), hf:gpt2 / hf:llama / ... "
        "from a config (random init); nothing downloaded"
    ),
    # corpus: pretrain on the stdlib's source, continue on the case's data (as gpt); own: tune
    # the weights the model's files hold on the case's data, no pretraining phase.
    finetune_tasks=("corpus", "own"),
    hub=True,
)

TIMM_INSTALL = "pip install 'bench[timm]'"
# Default side of a zoo model's images: ImageNet's 224, as the zoos' own recipes train them.
ZOO_IMAGE_SIZE = 224
ZOOS = {
    "torchvision": _zoo_info(
        "torchvision",
        "torchvision.models' classifiers by name: torchvision:convnext_tiny, ... (untrained)",
    ),
    "timm": _zoo_info("timm", "timm.create_model(NAME) (untrained; pip install 'bench[timm]')"),
}


def zoo_of(name: str) -> str | None:
    """``torchvision`` for ``torchvision:NAME``, ``timm`` for ``timm:NAME``, else None."""
    zoo, sep, model = name.partition(":") if isinstance(name, str) else ("", "", "")
    return zoo if sep and model and zoo in ZOOS else None


def workload_info(name: str) -> WorkloadInfo:
    if (zoo := zoo_of(name)) is not None:
        return ZOOS[zoo]
    if is_hf(name) or name in ALIASES:
        return HF_INFO
    if is_user_spec(name):
        return USER_INFO
    if name not in WORKLOADS:
        raise ConfigError(
            "workload",
            name,
            f"allowed: {', '.join(WORKLOADS)}, torchvision:NAME, timm:NAME, hf:NAME_OR_PATH, "
            "or 'FILE.py:FUNCTION' (your own)",
        )
    return WORKLOADS[name]


_SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9}
TARGET_FORMAT = 'a parameter count such as "25M", "1.5B", "500K" or 2000000'


def parse_target(size: str | int) -> int | None:
    """The parameter count a ``model_size`` asks for, or None when it is not a count."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size if size > 0 else None
    if not isinstance(size, str) or not size:
        return None
    text = size.strip().upper()
    scale = _SUFFIXES.get(text[-1], 1)
    number = text[:-1] if text[-1] in _SUFFIXES else text
    try:
        count = float(number) * scale
    except ValueError:
        return None
    return round(count) if count >= 1 else None


def size_of(workload: str, size: str | int) -> Shape:
    """The shape of a named size, or the shape chosen for a target parameter count."""
    sizes = workload_info(workload).sizes
    if isinstance(size, str) and size in sizes:
        return sizes[size]
    target = parse_target(size)
    for_target = {
        "mlp": mlp_for_target,
        "gpt": gpt_for_target,
        "cnn": cnn_for_target,
        "vit": vit_for_target,
    }
    if workload_info(workload).hub:
        workload = "gpt"  # the same shapes (catalog GPT_SIZES, gpt_for_target)
    if workload not in for_target:  # named sizes only
        raise ConfigError("model_size", size, f"allowed for {workload}: {', '.join(sizes)}")
    if target is None:
        raise ConfigError(
            "model_size", size, f"allowed for {workload}: {', '.join(sizes)}, or {TARGET_FORMAT}"
        )
    return for_target[workload](target)


def mlp_for_target(target: int) -> MLPSize:
    """The tutorial's shape, two hidden layers of widths (w, w/2), with w solving

        P(w) = 784 w + w + (w/2) w + w/2 + 10 (w/2) + 10 = w^2/2 + 790.5 w + 10 = target

    rounded to a multiple of 16 (at least 16). The count built is exact on the record; it is
    within a few percent of the target from about 50K parameters on.
    """
    w = (-790.5 + math.sqrt(790.5**2 + 2 * (target - 10))) if target > 10 else 0.0
    width = max(16, 16 * round(w / 16))
    return MLPSize(hidden=(width, width // 2))


def gpt_for_target(target: int, seq_len: int = 256) -> GPTSize:
    """Depth and width grow together, about 64 model dimensions per layer (GPT-2 small has
    768 / 12 = 64; loss depends little on this aspect ratio, Kaplan et al. 2020, figure 5):

        n_layer ~= (target / (12 * 64^2)) ** (1/3),  from P ~= 12 n_layer d^2 with d = 64 n_layer

    then, among n_layer - 1, n_layer, n_layer + 1 and the two multiples of 64 around
    sqrt(target / (12 n_layer)) for d_model (heads of 64 dimensions), the shape whose exact
    count (embeddings included) is closest to the target. The record has the exact count.
    """
    layers = max(1, round((target / (12 * 64**2)) ** (1 / 3)))
    candidates = []
    for n_layer in range(max(1, layers - 1), layers + 2):
        width = math.sqrt(target / (12 * n_layer)) / 64
        for d_model in {64 * max(1, math.floor(width)), 64 * max(1, math.ceil(width))}:
            shape = GPTSize(n_layer, d_model // 64, d_model, seq_len)
            candidates.append((abs(_gpt_params(shape, seq_len, True) - target), n_layer, shape))
    return min(candidates)[2]


def num_params(
    workload: str,
    size: str | int,
    seq_len: int | None = None,
    tied: bool = True,
    image_size: int | None = None,
) -> int:
    """Exact parameter count of the model the worker builds (checked against torch in tests).
    ``image_size`` matters to ``vit`` only (one position embedding per patch)."""
    shape = size_of(workload, size)
    if isinstance(shape, CNNSize):
        return cnn_params(shape)
    if isinstance(shape, ViTSize):
        return vit_params(shape, image_size)
    if isinstance(shape, MLPSize):
        return linear_stack_params((MLP_IN, *shape.hidden, MLP_OUT))
    if isinstance(shape, RecsysSize):
        return recsys_params(shape)
    if isinstance(shape, UNetSize):
        return unet_params(shape)
    # hf:gpt2 built from a config has GPT-2's layout, the same count as ours: biases on every
    # linear but the head, learned positions, two LayerNorms per block and one at the end, the
    # head tied.
    return _gpt_params(shape, seq_len or shape.seq_len, tied)


def _gpt_params(shape: GPTSize, ctx: int, tied: bool) -> int:
    d, n_layer = shape.d_model, shape.n_layer
    # Per block: two LayerNorms (2d each), attention qkv (3d^2 + 3d) and projection (d^2 + d),
    # MLP d -> 4d -> d (8d^2 + 5d). Plus token and position embeddings, final LayerNorm, and the
    # output head (shares the token embedding when tied; it has no bias).
    per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (8 * d * d + 5 * d)
    embeddings = GPT_VOCAB * d + ctx * d
    head = 0 if tied else GPT_VOCAB * d
    return n_layer * per_block + embeddings + 2 * d + head
