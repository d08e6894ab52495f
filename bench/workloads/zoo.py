"""Models of the zoos the field already uses, by name: ``torchvision:NAME`` (any classifier of
``torchvision.models.list_models(module=torchvision.models)``) and ``timm:NAME``
(``timm.create_model``; the optional extra ``bench[timm]``), built untrained with the data's ten
classes and trained on the image pipeline of ``cnn`` and ``vit`` (bench/workloads/pipeline.py).
"""

import torch
from torch import nn

from bench.errors import CaseError, NotApplicable
from bench.spec.case import Case
from bench.spec.catalog import TIMM_INSTALL, zoo_of
from bench.workloads import data, pipeline, preprocess
from bench.workloads.interface import Workload

NUM_CLASSES = 10

# The data as stored, before the pipeline (a fine-tuning task splits it: bench/train/finetune.py).
load = preprocess.load


def make_model(workload: str) -> nn.Module:
    """The zoo's model, untrained, with a head of NUM_CLASSES outputs."""
    zoo, name = zoo_of(workload), workload.split(":", 1)[1]
    if zoo == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if name not in names:
            raise CaseError(
                f"{workload}: torchvision {torchvision.__version__} has no classifier {name!r} "
                f"(torchvision.models.list_models(module=torchvision.models): {len(names)} names)"
            )
        return torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES)
    assert zoo == "timm", f"unvalidated workload {workload!r}"
    try:
        import timm
    except ImportError:
        raise NotApplicable(
            f"{workload} needs timm, which is not installed: {TIMM_INSTALL}"
        ) from None
    if not timm.list_models(name):
        raise CaseError(f"{workload}: timm {timm.__version__} has no model {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)


def head_name(model: nn.Module) -> str | None:
    """The output layer: the last ``nn.Linear`` of the model (every zoo classifier ends in one)."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def build(
    case: Case,
    device: torch.device,
    dtype: torch.dtype,
    stored: data.StoredImages | None = None,
) -> Workload:
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = make_model(case.workload).to(device=device, dtype=dtype)
    workload = pipeline.build(case, model, device, dtype, stored)
    workload.head = head_name(model)
    return workload


def zoo_problem(sides: dict[str, int]) -> str | None:
    """The first model of ``sides`` (name -> the smallest image side a case gives it) that is
    not a classifier of the installed torchvision, or that cannot take that side: smaller than
    the ``min_size`` its weights' metadata give (torchvision's own statement of the smallest
    input each architecture takes: 32 for convnext, 224 for vit and swin)."""
    import difflib

    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    for name, side in sides.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            return (
                f"workload = 'torchvision:{name}': not a classifier of torchvision "
                f"{torchvision.__version__} (torchvision.models.list_models){hint}"
            )
        smallest = min_side(name)
        if smallest is not None and side < smallest:
            return (
                f"workload = 'torchvision:{name}' takes images of at least {smallest}x{smallest} "
                f"(its weights' min_size), not image_size = {side}"
            )
    return None


def min_side(name: str) -> int | None:
    """The smallest square side torchvision says model ``name`` takes, where it says."""
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(name))
    except (KeyError, ValueError):
        return None  # a model without published weights has no metadata
    sides = [max(w.meta["min_size"]) for w in weights if "min_size" in w.meta]
    return min(sides) if sides else None


def main() -> None:
    """``python -m bench.workloads.zoo '{"convnext_tiny": 32}'``: the check bench runs before a
    sweep (bench/spec/user_workload.py), in a child Python, as the bench process never imports
    torch. Exit 1 with the problem as the last line of stdout."""
    import json
    import sys

    problem = zoo_problem(json.loads(sys.argv[1]))
    if problem:
        print(problem)
        sys.exit(1)


if __name__ == "__main__":
    main()
