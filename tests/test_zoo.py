"""Model zoos by name: torchvision:NAME and timm:NAME on the image pipeline (workloads/zoo.py)."""

import importlib.util
import json
import re
import sys

import pytest

from bench.errors import ConfigError
from bench.spec.case import Case
from tests.conftest import write_suite

SUITE = """
[suite]
name = "zoo"
[base]
workload = "torchvision:mobilenet_v3_small"
data = "digits"
image_size = 32
batch_size = 16
threads = 1
repeats = 1
warmup_steps = 1
min_steps = 3
max_steps = 3
min_time_s = 0.0
"""


def records(tmp_path) -> list[dict]:
    (path,) = tmp_path.glob("results/zoo/*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_zoo_cases_name_their_model_and_take_imagenet_images_by_default():
    case = Case.from_dict({"workload": "torchvision:convnext_tiny"})
    assert (case.model_size, case.image_size, case.loss) == (None, 224, "cross-entropy")
    with pytest.raises(ConfigError, match="names its model"):
        Case.from_dict({"workload": "torchvision:convnext_tiny", "model_size": "small"})


def test_torchvision_model_trains_and_fine_tunes(bench, tmp_path):
    import torchvision

    suite = write_suite(
        tmp_path, "zoo", SUITE + 'pretrain_steps = 3\n[matrix]\nfinetune = ["frozen", "lora"]\n'
    )
    done = bench("run", str(suite), timeout=900)
    assert done.returncode == 0, done.stderr
    frozen, lora = records(tmp_path)
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=10)
    assert frozen["metrics"]["num_params"] == sum(p.numel() for p in model.parameters())
    # The head is classifier.3, Linear(1024, 10): alone trained when frozen. LoRA (rank 8)
    # adapts the one other Linear, classifier.0 (576 -> 1024): 8 * (576 + 1024) parameters.
    assert frozen["runtime"]["finetune"]["head"] == "classifier.3"
    assert frozen["metrics"]["trainable_params"] == 1024 * 10 + 10
    assert lora["runtime"]["finetune"]["adapter_params"] == 8 * (576 + 1024)


def test_unknown_torchvision_model_is_one_line_before_running(bench, tmp_path):
    suite = write_suite(tmp_path, "zoo", SUITE.replace("mobilenet_v3_small", "mobilenet_v9"))
    done = bench("run", str(suite))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "'torchvision:mobilenet_v9': not a classifier of torchvision" in line
    assert "did you mean" in line and not (tmp_path / "results").exists()


def test_a_torchvision_model_too_small_for_its_images_is_one_line_before_running(bench, tmp_path):
    # torchvision's weights metadata: vit_b_16 takes at least 224x224 (min_size), the suite 32.
    suite = write_suite(tmp_path, "zoo", SUITE.replace("mobilenet_v3_small", "vit_b_16"))
    done = bench("run", str(suite))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert (
        "workload = 'torchvision:vit_b_16' takes images of at least 224x224 (its weights' "
        "min_size), not image_size = 32"
    ) in line
    assert not (tmp_path / "results").exists()


def test_timm_without_timm_is_skipped_with_the_install_command(monkeypatch):
    from bench.errors import NotApplicable
    from bench.workloads.zoo import make_model

    # How Python blocks an import: find_spec then finds nothing and `import timm` raises.
    monkeypatch.setitem(sys.modules, "timm", None)
    reason = "timm:resnet18 needs timm, which is not installed: pip install 'bench[timm]'"
    # Known before any process starts (the dry run and the sweep's skipped record) ...
    assert Case.from_dict({"workload": "timm:resnet18"}).skip_reason() == reason
    # ... and in the case's process, where timm is installed for bench but does not import.
    with pytest.raises(NotApplicable, match=re.escape(reason)):
        make_model("timm:resnet18")


@pytest.mark.skipif(
    importlib.util.find_spec("timm") is None, reason="needs timm: pip install 'bench[timm]'"
)
def test_timm_model_trains(bench, tmp_path):
    import timm

    # timm's test_resnet: a ResNet of a few thousand parameters, made for timm's own tests.
    suite = write_suite(
        tmp_path, "zoo", SUITE.replace("torchvision:mobilenet_v3_small", "timm:test_resnet")
    )
    done = bench("run", str(suite), timeout=900)
    assert done.returncode == 0, done.stderr
    (record,) = records(tmp_path)
    assert record["status"] == "ok" and record["runtime"]["finetune"] is None
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10)
    assert record["metrics"]["num_params"] == sum(p.numel() for p in model.parameters())
    assert set(record["metrics"]["eval"]) == {"accuracy", "loss"}
    assert record["metrics"]["flops"]["per_step"] > 0
