"""Fine-tuning: what trains and what stays bit-identical, parameter counts by hand, checkpoints,
the pretraining cache, and real runs in which the tuned model beats the untuned one."""

import argparse
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.errors import CaseError, ConfigError, NotApplicable, UserError
from bench.spec import suite as suites
from bench.spec.case import Case
from bench.spec.lora_layers import adapted_layers
from bench.train import checkpoint, finetune
from bench.train.lora import LoRALinear, add_adapters
from bench.worker.prepare import prepare
from bench.workloads import data
from bench.workloads.registry import build
from tests.conftest import write_suite

CPU = torch.device("cpu")


def _case(**values: object) -> Case:
    base = {"model_size": "tiny", "threads": 1, "pretrain_steps": 20}
    if values.get("workload") == "gpt":
        base.update(seq_len=32, batch_size=8)
    else:
        base.update(data="digits")
    return Case.from_dict({**base, **values})


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of pretrained weights of this test's own."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train(case: Case, steps: int):
    """``steps`` real training steps of the case (worker.prepare); returns the model before
    (copies of its parameters) and the Training."""
    torch.set_num_threads(1)
    training = prepare(case, CPU)
    before = _snapshot(training.workload.model)
    for _ in range(steps):
        training.step()
    return before, training


# --- what trains ---------------------------------------------------------------------------------


def test_frozen_mlp_trains_only_the_head_and_leaves_the_backbone_bit_identical() -> None:
    before, training = _train(_case(finetune="frozen"), steps=15)
    model = training.workload.model
    # tiny: 784 -> 64 -> 32 -> 10; the head (module "5") is Linear(32, 10): 32 * 10 + 10 = 330.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"5.weight", "5.bias"}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 330
    for name, param in model.named_parameters():
        if name in trainable:
            assert not torch.equal(param, before[name]), f"{name} did not train"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def test_lora_mlp_adds_r_times_in_plus_out_per_linear_and_freezes_the_base() -> None:
    rank = 4
    case = _case(finetune="lora", lora_rank=rank, lora_alpha=8.0)
    before, training = _train(case, steps=15)
    model = training.workload.model
    # Adapters on 784->64 and 64->32: r (784 + 64) + r (64 + 32) = 3392 + 384 = 3776; the new
    # head (new-classes) trains in full: 330. The base weights: 784*64+64 + 64*32+32 = 52,320.
    adapters = rank * (784 + 64) + rank * (64 + 32)
    assert training.finetuned.info["adapter_params"] == adapters == 3776
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == adapters + 330
    assert sum(p.numel() for p in model.parameters()) == 52_650 + adapters
    assert isinstance(model[1], LoRALinear) and model[1].scale == 2.0  # alpha / r = 8 / 4
    for name, param in model.named_parameters():
        if ".base." in name:
            assert not param.requires_grad and torch.equal(param, before[name]), name
        if name.endswith("lora_B") or name.startswith("5."):
            assert not torch.equal(param, before[name]), f"{name} did not train"


def test_lora_gpt_adapts_qkv_out_and_mlp_projections_and_keeps_the_rest() -> None:
    rank = 4
    before, training = _train(_case(workload="gpt", finetune="lora", lora_rank=rank), steps=5)
    model = training.workload.model
    d = 128  # tiny: 2 blocks of width 128
    per_block = rank * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))  # qkv, out, fc, proj
    assert per_block == 8192
    adapted = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    assert adapted == [
        f"blocks.{i}.{part}"
        for i in (0, 1)
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * per_block  # the head is the embedding (tied): not new, stays frozen
    for name, param in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, before[name]), f"frozen {name} changed"


def test_lora_on_multihead_attention_reaches_every_projection_and_counts_by_hand() -> None:
    """nn.MultiheadAttention reads its weights as tensors: a module wrapper would be bypassed.
    Each adapter must change the output once its B is non-zero."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    frozen = _snapshot(layer)
    added = add_adapters(layer, rank=2, alpha=2.0)
    # in_proj (48, 16): 2 (16 + 48); out_proj (16, 16): 2 (16 + 16); linear1 16 -> 32 and
    # linear2 32 -> 16: 2 (16 + 32) each.
    assert added == 2 * (16 + 48) + 2 * (16 + 16) + 2 * 48 + 2 * 48 == 384
    x = torch.randn(3, 5, 16)
    reference = layer(x)
    deltas = [m for m in layer.modules() if hasattr(m, "lora_B")]
    assert len(deltas) == 4
    for delta in deltas:
        with torch.no_grad():
            delta.lora_B.fill_(0.1)
        assert not torch.allclose(layer(x), reference), f"{type(delta).__name__} is bypassed"
        with torch.no_grad():
            delta.lora_B.zero_()
    optimizer = torch.optim.SGD([p for p in layer.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        layer(x).square().mean().backward()
        optimizer.step()
    originals = {
        n.replace("parametrizations.", "").replace(".original", ""): p
        for n, p in layer.named_parameters()
        if "lora_" not in n
    }
    originals = {n.replace(".base", ""): p for n, p in originals.items()}
    assert originals.keys() == frozen.keys()
    for name, param in originals.items():
        assert torch.equal(param, frozen[name]), f"frozen {name} changed"


def test_lora_vit_reaches_attention_and_mlp_and_a_cnn_without_linears_is_skipped() -> None:
    case = _case(workload="vit", data="digits", finetune="lora", batch_size=16)
    before, training = _train(case, steps=3)
    model = training.workload.model
    # tiny: 2 layers of width 64, MLP 128; rank 8 on in_proj (192, 64), out_proj (64, 64) and
    # the MLP's 64 -> 128 and 128 -> 64; the new head Linear(64, 10) trains in full: 650.
    per_layer = 8 * (64 + 192) + 8 * (64 + 64) + 8 * (64 + 128) + 8 * (128 + 64)
    assert training.finetuned.info["adapter_params"] == 2 * per_layer == 12_288
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 12_288 + 650
    for name, param in model.named_parameters():
        if "lora_" not in name and not name.startswith("heads."):
            assert torch.equal(param, before[name]), f"frozen {name} changed"
    with pytest.raises(NotApplicable, match="cnn tiny has no linear layer .* outside its head"):
        prepare(_case(workload="cnn", data="digits", finetune="lora"), CPU)


# --- tasks, checkpoints and the cache -------------------------------------------------------------


def test_new_classes_task_splits_digits_0_4_from_5_9() -> None:
    task = finetune.make_task(_case(finetune="full"))
    splits = data.digits()
    assert set(task.source.y_train.tolist()) == {0, 1, 2, 3, 4}
    assert set(task.target.y_val.tolist()) == {5, 6, 7, 8, 9}
    assert len(task.source.y_train) + len(task.target.y_train) == len(splits.y_train) == 1437
    assert task.target.info.num_val == int((splits.y_val >= 5).sum())
    assert task.new_head


def test_rotated_task_turns_the_images_a_quarter_and_keeps_the_labels() -> None:
    task = finetune.make_task(_case(finetune="full", finetune_task="rotated"))
    source, target = task.source, task.target
    assert torch.equal(target.x_val[7, 0], torch.rot90(source.x_val[7, 0]))  # (28, 28)
    assert torch.equal(target.y_train, source.y_train) and not task.new_head
    assert target.info.sha256 != source.info.sha256


def test_pretrained_weights_are_cached_and_reused(cache: Path) -> None:
    case = _case(finetune="frozen")
    first = finetune.prepare(case, CPU, torch.float32)
    second = finetune.prepare(
        Case.from_dict({**case.to_dict(), "finetune": "lora"}), CPU, torch.float32
    )
    assert (first.info["weights"], second.info["weights"]) == ("trained", "cache")
    assert first.info["checkpoint"] == second.info["checkpoint"]
    assert Path(first.info["checkpoint"]).parent == cache / "pretrained"
    assert second.info["pretrain_train_s"] == first.info["pretrain_train_s"]
    # Both start from the same backbone: the frozen layer 1 of one is the LoRA base of the other.
    assert torch.equal(first.workload.model[1].weight, second.workload.model[1].base.weight)
    # A damaged entry is a miss: trained again.
    Path(first.info["checkpoint"]).write_bytes(b"not a checkpoint")
    assert finetune.prepare(case, CPU, torch.float32).info["weights"] == "trained"


def test_read_checkpoint_rejects_a_corrupt_file_and_a_file_of_another_model(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")  # 'g' is a pickle opcode the weights-only unpickler refuses
    with pytest.raises(CaseError) as error:
        checkpoint.read_checkpoint(str(corrupt))
    assert str(error.value) == (
        f"checkpoint {corrupt}: not a weights-only torch checkpoint "
        "(torch.load(weights_only=True) refused it: Unsupported operand 103)"
    )
    # A pickled object of a class: refused, and never with torch's advice to load it unsafely.
    torch.save({"weight": torch.zeros(2), "config": argparse.Namespace(lr=1)}, corrupt)
    with pytest.raises(CaseError) as error:
        checkpoint.read_checkpoint(str(corrupt))
    message = str(error.value)
    assert "\n" not in message and "False" not in message and "\x1b" not in message
    assert message.startswith(
        f"checkpoint {corrupt}: not a weights-only torch checkpoint (torch.load(weights_only=True) "
        "refused it: Unsupported global: GLOBAL argparse.Namespace was not an allowed global"
    )
    corrupt.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CaseError, match=r"corrupt.pt: not a readable torch checkpoint \(Runtime"):
        checkpoint.read_checkpoint(str(corrupt))
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listing)
    with pytest.raises(CaseError, match="holds a list, not a state dict"):
        checkpoint.read_checkpoint(str(listing))
    case = _case(finetune="full")
    small = build(_case(model_size="small"), CPU, torch.float32).model
    tiny = build(case, CPU, torch.float32).model
    with pytest.raises(CaseError) as error:
        checkpoint.load_state(tiny, small.state_dict(), "small.pt", case)
    message = str(error.value)
    assert "\n" not in message
    assert "1.weight is (256, 784) there, (64, 784) here" in message


def test_suite_validation_tells_a_torch_checkpoint_by_its_first_bytes(tmp_path) -> None:
    """torch.save's two formats pass (read for real later, weights-only); anything else is no
    checkpoint, found without importing torch."""
    state = {"w": torch.zeros(2)}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("PK is not enough")
    suite = tmp_path / "s.toml"
    suite.write_text('[base]\nmodel_size = "tiny"\ndata = "digits"\nfinetune = "full"\n')
    for name in ("zip.pt", "legacy.pt"):
        path = str(tmp_path / name)
        (case,) = suites.expand(suites.load(str(suite)), "cpu", {"checkpoint": path})
        assert case.checkpoint == path and checkpoint.read_checkpoint(path).keys() == {"w"}
    for name, end in (
        ("empty.pt", "this file is empty)"),
        ("text.pt", "this file starts with b'PK is no')"),
    ):
        with pytest.raises(UserError, match=re.escape(f"; {end}")):
            suites.expand(suites.load(str(suite)), "cpu", {"checkpoint": str(tmp_path / name)})


# --- configuration --------------------------------------------------------------------------------


def test_finetune_keys_resolve_defaults_and_drop_what_does_not_apply() -> None:
    lora = _case(finetune="lora")
    assert (lora.lora_rank, lora.lora_alpha, lora.finetune_task) == (8, 16.0, "new-classes")
    frozen = _case(finetune="frozen", lora_rank=4)
    assert frozen.lora_rank is None and frozen.id == _case(finetune="frozen").id
    plain = _case(pretrain_steps=50)
    assert plain.pretrain_steps is None and plain.finetune_task is None
    from_file = _case(finetune="full", checkpoint="w.pt")
    assert from_file.pretrain_steps is None
    assert _case(workload="gpt", finetune="full").finetune_task == "corpus"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"finetune": "partial"}, "finetune = 'partial': allowed: full, frozen, lora"),
        ({"finetune": "full", "finetune_task": "corpus"}, "allowed for mlp: new-classes, rotated"),
        ({"finetune": "lora", "lora_rank": 0}, "lora_rank = 0: must be a positive integer"),
        ({"finetune": "full", "data": "synthetic"}, "data = 'synthetic': fine-tuning needs real"),
        # The corpus task pretrains on the stdlib: tuning on it again transfers nothing.
        ({"workload": "gpt", "finetune": "full", "data": "stdlib"},
         "data = 'stdlib': the corpus task pretrains on stdlib; tune on another: docs, text"),
        # tiny: 784 -> 64 -> 32 -> 10; adapters on 1 (784 -> 64) and 3 (64 -> 32).
        ({"finetune": "lora", "lora_rank": 32},
         "lora_rank = 32: must be below 32, the narrowest layer LoRA adapts in mlp tiny "
         "(3.weight, 64 -> 32): a rank >= min(in, out) is not low-rank"),
        ({"workload": "gpt", "finetune": "lora", "lora_rank": 128},
         "must be below 128, the narrowest layer LoRA adapts in gpt tiny (blocks.0.attn.c_attn"),
    ],
)  # fmt: skip
def test_bad_finetune_settings_name_what_is_allowed(values, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _case(**values)


def test_a_rank_just_below_the_narrowest_adapted_layer_is_allowed() -> None:
    assert _case(finetune="lora", lora_rank=31).lora_rank == 31
    # base (the tutorial's 784 -> 512 -> 256 -> 10): the narrowest adapted layer is 256 wide.
    assert _case(finetune="lora", model_size="base", lora_rank=255).lora_rank == 255
    with pytest.raises(ConfigError, match=r"lora_rank = 300: must be below 256, .* mlp base "):
        _case(finetune="lora", model_size="base", lora_rank=300)


@pytest.mark.parametrize(
    "values",
    [
        {"finetune": "lora"},
        {"finetune": "lora", "model_size": "base"},
        {"workload": "gpt", "finetune": "lora"},
        {"workload": "vit", "data": "digits", "finetune": "lora"},
        {"workload": "cnn", "data": "digits", "finetune": "lora"},
    ],
)
def test_the_catalog_names_the_layers_lora_adapts_in_the_built_model(values) -> None:
    """The torch-free list that validation checks ranks against is the list of weights
    add_adapters really adapts (read back from the adapters' own shapes)."""
    case = _case(**values)
    workload = build(case, CPU, torch.float32)
    model = workload.model
    add_adapters(model, 2, 4.0, skip=model.get_submodule(workload.head))
    adapted = []  # (weight's name in the model before adapters, in, out)
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):  # in place of the Linear it wraps
            adapted.append((f"{name}.weight", module.lora_A.shape[1], module.lora_B.shape[0]))
        for param, deltas in getattr(module, "parametrizations", {}).items():
            (delta,) = deltas
            adapted.append((f"{name}.{param}", delta.lora_A.shape[1], delta.lora_B.shape[0]))
    expected = adapted_layers(case.workload, case.model_size)
    assert sorted(adapted) == sorted(expected)
    assert bool(expected) == (case.workload != "cnn")  # a ResNet's only linear is its head


# --- real runs through the CLI ------------------------------------------------------------------


def _records(tmp_path: Path, name: str) -> list[dict]:
    (path,) = tmp_path.glob(f"results/{name}/*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fine_tuned_models_beat_the_untuned_one_on_the_target_task(bench, tmp_path) -> None:
    write_suite(
        tmp_path,
        "ft",
        """
        [suite]
        name = "ft"
        [base]
        model_size = "tiny"
        threads = 1
        repeats = 1
        warmup_steps = 2
        min_steps = 60
        max_steps = 60
        min_time_s = 0.0
        pretrain_steps = 150
        [matrix]
        workload = ["mlp", "gpt"]
        finetune = ["full", "frozen", "lora"]
        [[exclude]]
        workload = "gpt"
        finetune = "full"
        [[exclude]]
        workload = "gpt"
        finetune = "frozen"
        [[include]]
        workload = "mlp"
        data = "digits"
        [[include]]
        workload = "gpt"
        seq_len = 32
        batch_size = 8
        pretrain_steps = 60
        min_steps = 30
        max_steps = 30
        """,
    )
    done = bench("run", "ft", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    records = _records(tmp_path, "ft")
    assert len(records) == 4
    by_case = {(r["config"]["workload"], r["config"]["finetune"]): r for r in records}
    for (workload, strategy), record in by_case.items():
        metrics, tuned = record["metrics"], record["runtime"]["finetune"]
        assert record["status"] == "ok", record["reason"]
        before, after = metrics["eval_before"], metrics["eval"]
        if workload == "mlp":
            assert after["accuracy"] > before["accuracy"] + 0.1, (strategy, before, after)
        else:
            assert after["loss"] < before["loss"], (before, after)
            assert record["runtime"]["data"]["name"] == "docs"  # auto = docs when fine-tuning
            assert tuned["source_data"]["name"] == "stdlib"
        assert tuned["strategy"] == strategy and record["timing"]["pretrain_s"] > 0
        assert metrics["trainable_params"] < metrics["num_params"] or strategy == "full"
    # mlp: the first case pretrained, the others reused its weights; all untuned alike.
    mlp = [by_case[("mlp", s)] for s in ("full", "frozen", "lora")]
    assert [r["runtime"]["finetune"]["weights"] for r in mlp] == ["trained", "cache", "cache"]
    assert len({json.dumps(r["metrics"]["eval_before"]) for r in mlp}) == 1
    assert mlp[0]["metrics"]["trainable_params"] == 52_650  # full: every weight
    assert mlp[1]["metrics"]["trainable_params"] == 330  # frozen: the head
    assert mlp[2]["metrics"]["trainable_params"] == 8 * (784 + 64 + 64 + 32) + 330


def test_checkpoint_files_missing_corrupt_or_mismatched_are_one_line_errors(
    bench, tmp_path
) -> None:
    torch.manual_seed(1)
    good = build(_case(), CPU, torch.float32).model
    torch.save({"model": good.state_dict(), "step": 7}, tmp_path / "good.pt")
    torch.save(
        build(_case(model_size="small"), CPU, torch.float32).model.state_dict(),
        tmp_path / "small.pt",
    )
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip")
    suite = """
        [suite]
        name = "ck"
        [base]
        model_size = "tiny"
        data = "digits"
        finetune = "full"
        finetune_task = "rotated"
        threads = 1
        repeats = 1
        warmup_steps = 0
        min_steps = 5
        max_steps = 5
        min_time_s = 0.0
        [matrix]
        checkpoint = [CHECKPOINTS]
        """
    write_suite(tmp_path, "missing", suite.replace("CHECKPOINTS", '"nowhere.pt"'))
    missing = bench("run", "missing", "--device", "cpu")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "bench: error: missing.toml: [matrix] checkpoint = 'nowhere.pt': no such file "
        "(the weights to fine-tune)"
    ]
    # A file that is neither a zip archive nor a pickle is no checkpoint: known before running.
    (tmp_path / "notes.pt").write_text("weights are on the shared drive\n")
    write_suite(tmp_path, "notes", suite.replace("CHECKPOINTS", '"good.pt", "notes.pt"'))
    notes = bench("run", "notes", "--device", "cpu")
    assert notes.returncode == 2 and not (tmp_path / "results").exists()
    assert notes.stderr.strip().splitlines() == [
        "bench: error: notes.toml: [matrix] checkpoint = 'notes.pt': not a torch checkpoint "
        "(torch.save writes a zip archive, or a pickle in its legacy format; this file starts "
        "with b'weights ')"
    ]
    write_suite(tmp_path, "ck", suite.replace("CHECKPOINTS", '"good.pt", "corrupt.pt", "small.pt"'))
    done = bench("run", "ck", "--device", "cpu")
    assert done.returncode == 1  # two cases failed; the sweep ran every case
    assert "Traceback" not in done.stdout + done.stderr
    records = {Path(r["config"]["checkpoint"]).name: r for r in _records(tmp_path, "ck")}
    corrupt, small = records["corrupt.pt"], records["small.pt"]
    assert corrupt["status"] == small["status"] == "error"
    assert corrupt["reason"].startswith("checkpoint corrupt.pt: not a readable torch checkpoint (")
    assert small["reason"].startswith("checkpoint small.pt does not fit mlp model_size = 'tiny'")
    assert "\n" not in corrupt["reason"] + small["reason"]
    ok = records["good.pt"]
    assert ok["status"] == "ok" and ok["runtime"]["finetune"]["weights"] == "checkpoint"
    # The untuned accuracy is that of the saved model on rotated digits, evaluated independently.
    splits = data.digits()
    x_val = torch.rot90(splits.x_val, k=1, dims=(2, 3))
    with torch.no_grad():
        correct = (good(x_val).argmax(dim=1) == splits.y_val).sum().item()
    assert ok["metrics"]["eval_before"]["accuracy"] == correct / 360


def test_docs_corpus_is_pydocs_language_reference_split_90_10() -> None:
    from pydoc_data.topics import topics

    corpus = data.docs_corpus()
    text = "\n\n".join(topics[name] for name in sorted(topics)).encode()
    assert corpus.info.name == "docs" and corpus.info.num_train == int(len(text) * 0.9)
    assert bytes(corpus.train.tolist()) + bytes(corpus.val.tolist()) == text
    assert corpus.info.sha256 == hashlib.sha256(text).hexdigest()
    assert b'The "if" statement is used for conditional execution' in text
