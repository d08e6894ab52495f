"""``checkpoint = "torchvision"``: torchvision's ImageNet weights from the local torch hub cache,
never downloaded; their head dropped for the workload's, the rest loaded bit for bit."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import torchvision

from bench.errors import CaseError, ConfigError, UserError
from bench.spec import hub_weights
from bench.spec import suite as suites
from bench.spec.case import Case
from bench.spec.hub_weights import WEIGHTS
from bench.spec.vision_shapes import CNN_SIZES, VIT_SIZES
from bench.train import checkpoint
from bench.worker.prepare import prepare
from bench.workloads import vit
from tests.conftest import write_suite

CPU = torch.device("cpu")
RESNET18_FILE = "resnet18-f37072fd.pth"  # basename of ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache of this test's own (and a cache of pretrained weights)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "torch-home"


def _case(**values: object) -> Case:
    base = {
        "workload": "cnn",
        "model_size": "resnet18",
        "image_size": 32,
        "data": "digits",
        "batch_size": 8,
        "finetune": "frozen",
        "checkpoint": "torchvision",
        "threads": 1,
    }
    return Case.from_dict({**base, **values})


def _save_imagenet_resnet18(torch_home: Path) -> dict[str, torch.Tensor]:
    """A real torchvision resnet18 (1000 classes, seeded, no weights downloaded) saved where
    torchvision would keep ResNet18_Weights.DEFAULT."""
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_the_table_is_torchvisions_default_weights_for_every_torchvision_built_size() -> None:
    built = {("cnn", n): s.builder for n, s in CNN_SIZES.items() if s.builder} | {
        ("vit", n): s.builder for n, s in VIT_SIZES.items() if s.builder
    }
    assert WEIGHTS.keys() == built.keys()
    for key, builder in built.items():
        default = torchvision.models.get_model_weights(builder).DEFAULT
        assert WEIGHTS[key].enum == str(default)
        assert WEIGHTS[key].url == default.url
        assert WEIGHTS[key].filename == Path(default.url).name
        assert default.meta["num_params"] > 0 and len(default.meta["categories"]) == 1000
    assert WEIGHTS["cnn", "resnet18"].filename == RESNET18_FILE


def test_hub_dir_is_torchs_with_and_without_torch_home(tmp_path, monkeypatch) -> None:
    assert hub_weights.hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "torch-home" / "hub"
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_weights.hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "xdg" / "torch" / "hub"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"model_size": "tiny"},
            "checkpoint = 'torchvision': torchvision publishes no weights for cnn tiny; it does "
            "for cnn resnet18, resnet34, resnet50; vit vit_b_16, vit_l_16 (a file named "
            "torchvision: ./torchvision)",
        ),
        (
            {"workload": "vit", "model_size": "vit_b_16", "image_size": 32},
            "image_size = 32: ViT_B_16_Weights.IMAGENET1K_V1 takes 224x224 images only",
        ),
    ],
)
def test_sizes_without_weights_and_vit_at_another_side_are_config_errors(values, message):
    with pytest.raises(ConfigError) as error:
        _case(**values)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_torchvision_weights_resolve_like_a_checkpoint() -> None:
    case = _case()
    assert case.checkpoint == "torchvision" and case.pretrain_steps is None
    assert case.id != _case(checkpoint=None).id
    # ViT at its weights' side (the default of vit_b_16) is a case.
    assert _case(workload="vit", model_size="vit_b_16", image_size=None).image_size == 224


def test_backbone_is_the_files_bit_for_bit_and_the_head_is_the_workloads(torch_home) -> None:
    saved = _save_imagenet_resnet18(torch_home)
    torch.set_num_threads(1)
    training = prepare(_case(), CPU)
    model = training.workload.model
    loaded = model.state_dict()
    backbone = [k for k in saved if not k.startswith("fc.")]
    assert len(backbone) == 120 and set(loaded) == set(saved)
    for key in backbone:
        assert torch.equal(loaded[key], saved[key]), key
    # The head is the workload's: ten classes, not the first ten of ImageNet's 1000 rows.
    assert loaded["fc.weight"].shape == (10, 512) and saved["fc.weight"].shape == (1000, 512)
    assert not torch.equal(loaded["fc.weight"], saved["fc.weight"][:10])
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    for _ in range(2):  # frozen: real steps move the head only
        training.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != name.startswith("fc."), name
    info = training.finetuned.info
    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    assert info["weights"] == "torchvision" and info["checkpoint"] == str(path)
    assert info["torchvision_weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert info["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["new_head"] is True and info["pretrain_steps"] is None


def test_missing_or_mismatched_hub_files_are_one_line_reasons(torch_home) -> None:
    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    case = _case(finetune="full")
    with pytest.raises(CaseError) as error:
        checkpoint.hub_weights(case)
    assert str(error.value) == (
        f"checkpoint = 'torchvision': no {path} (torchvision's ResNet18_Weights.IMAGENET1K_V1; "
        f"bench never downloads: fetch {url} to that path)"
    )
    saved = _save_imagenet_resnet18(torch_home)
    del saved["layer1.0.conv1.weight"]
    saved["layer4.1.bn2.bias"] = torch.zeros(3)
    torch.save(saved, path)
    with pytest.raises(CaseError) as error:
        prepare(case, CPU)
    assert str(error.value) == (
        f"checkpoint {path} does not fit cnn model_size = 'resnet18': 1 missing "
        "(layer1.0.conv1.weight); layer4.1.bn2.bias is (3,) there, (512,) here"
    )


def test_suite_validation_names_the_missing_file_and_the_run_records_torchvision(
    bench, bench_env, tmp_path, torch_home
) -> None:
    bench_env["TORCH_HOME"] = str(torch_home)
    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    write_suite(
        tmp_path,
        "hub",
        """
        [suite]
        name = "hub"
        [base]
        workload = "cnn"
        model_size = "resnet18"
        image_size = 32
        data = "digits"
        batch_size = 8
        finetune = "frozen"
        checkpoint = "torchvision"
        threads = 1
        repeats = 1
        warmup_steps = 0
        min_steps = 2
        max_steps = 2
        min_time_s = 0.0
        """,
    )
    with pytest.raises(UserError, match=re.escape(f"checkpoint = 'torchvision': no {path} (")):
        suites.expand(suites.load(str(tmp_path / "hub.toml")), "cpu", {})
    missing = bench("run", "hub", "--device", "cpu")
    assert missing.returncode == 2 and not (tmp_path / "results").exists()
    assert missing.stderr.strip().splitlines() == [
        f"bench: error: hub.toml: [base] checkpoint = 'torchvision': no {path} (torchvision's "
        "ResNet18_Weights.IMAGENET1K_V1; bench never downloads: fetch "
        "https://download.pytorch.org/models/resnet18-f37072fd.pth to that path, or run "
        "torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict() on a machine with "
        "network and copy the file)"
    ]
    _save_imagenet_resnet18(torch_home)
    done = bench("run", "hub", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    (records,) = tmp_path.glob("results/hub/*/records.jsonl")
    (record,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert record["status"] == "ok" and record["config"]["checkpoint"] == "torchvision"
    source = record["runtime"]["finetune"]
    assert source["weights"] == "torchvision" and source["checkpoint"] == str(path)
    assert source["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # frozen resnet18: the 10-class head only, 512 * 10 + 10.
    assert record["metrics"]["trainable_params"] == 5130


def test_vit_b_16_weights_map_onto_the_workloads_model_but_the_head() -> None:
    """Key names and shapes only (meta tensors): torchvision's vit_b_16 with its 1000-class head
    against the workload's model at 224 with its 10-class head."""
    with torch.device("meta"):
        imagenet = torchvision.models.vit_b_16(weights=None).state_dict()
        model = vit.make_model(VIT_SIZES["vit_b_16"], 224)
    assert imagenet["heads.head.weight"].shape == (1000, 768)
    state = checkpoint.own_head(imagenet, model, "heads.head")
    own = model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in own.items()}
    assert state["heads.head.weight"].shape == (10, 768)
    assert state["encoder.pos_embedding"].shape == (1, 14 * 14 + 1, 768)
