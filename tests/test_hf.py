"""Hugging Face causal LMs by name or path, ``workload = "hf:NAME_OR_PATH"`` (bench/workloads/hf.py,
bench/spec/hf_source.py): local files only, a model type from a config alone, PEFT's LoRA."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.spec.case import Case
from tests.conftest import write_suite

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_PEFT = importlib.util.find_spec("peft") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="needs bench[hf]")

SUITE = """
[suite]
name = "hf"
[base]
seq_len = 32
batch_size = 4
data = "docs"
threads = 1
repeats = 1
warmup_steps = 1
min_steps = 3
max_steps = 3
min_time_s = 0.0
"""

# The tiny GPT-2 the tests save: d = 32, one block, 64 positions, the head tied.
D, POSITIONS, TOKENIZER_VOCAB = 32, 64, 300


def gpt2_params(vocab: int, d: int = D, layers: int = 1, positions: int = POSITIONS) -> int:
    """GPT-2's count by hand: per block two LayerNorms (4d), qkv (3d^2 + 3d), projection
    (d^2 + d), MLP (8d^2 + 5d); token and position embeddings; the final LayerNorm (2d)."""
    per_block = 4 * d + 3 * d * d + 3 * d + d * d + d + 8 * d * d + 5 * d
    return layers * per_block + vocab * d + positions * d + 2 * d


def save_tiny_gpt2(directory: Path, tokenizer: bool) -> None:
    """save_pretrained of a tiny GPT-2 with random weights, and (``tokenizer``) a byte-level BPE
    of 300 tokens trained here on Python's language reference (nothing downloaded)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    vocab = 256
    if tokenizer:
        from pydoc_data.topics import topics

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=TOKENIZER_VOCAB,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator([topics[k] for k in sorted(topics)[:10]], trainer=trainer)
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe)
        fast.save_pretrained(directory)
        vocab = len(fast)
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=POSITIONS,
        n_embd=D,
        n_layer=1,
        n_head=2,
        bos_token_id=None,
        eos_token_id=None,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)


def records(tmp_path: Path) -> list[dict]:
    (path,) = tmp_path.glob("results/hf/*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hf_names_resolve_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    # hf-gpt2 is the first name of hf:gpt2; with no files it is built from a config in a size.
    case = Case.from_dict({"workload": "hf-gpt2", "model_size": "tiny"})
    assert (case.workload, case.model_size, case.seq_len, case.tie_embeddings) == (
        "hf:gpt2",
        "tiny",
        64,
        True,
    )
    # A directory's config.json gives the shape: no model_size, seq_len within its positions.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "gpt2", "n_positions": 64}')
    root = {"workload": "hf:model", "workload_root": str(tmp_path)}
    case = Case.from_dict(root)
    assert (case.model_size, case.seq_len, case.tie_embeddings) == (None, 64, None)
    with pytest.raises(ConfigError, match="its config.json gives the shape; leave model_size"):
        Case.from_dict({**root, "model_size": "tiny"})
    with pytest.raises(ConfigError, match=r"has no weights \(model.safetensors"):
        Case.from_dict({**root, "workload_args": {"pretrained": True}})
    with pytest.raises(ConfigError, match="hf: models take pretrained only"):
        Case.from_dict({**root, "workload_args": {"hidden": 3}})
    # The same files in the Hugging Face cache's layout are found by the model's id.
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tmp_path / "model", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    assert Case.from_dict({"workload": "hf:org/tiny"}).model_size is None
    # A path that holds no model is an error naming where it looked; so is pretrained weights
    # for a model with no files at all.
    with pytest.raises(ConfigError, match=f"no model directory {tmp_path}/missing"):
        Case.from_dict({"workload": "hf:./missing", "workload_root": str(tmp_path)})
    with pytest.raises(ConfigError, match="bench never downloads"):
        Case.from_dict({"workload": "hf:gpt2", "workload_args": {"pretrained": True}})


def test_a_name_that_is_no_model_anywhere_is_one_line_before_running(bench, bench_env, tmp_path):
    bench_env["HF_HUB_CACHE"] = str(tmp_path / "hub")
    suite = write_suite(tmp_path, "hf", SUITE + 'workload = "hf:gtp2"\n')
    done = bench("run", str(suite))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    if HAS_TRANSFORMERS:
        assert f"no model 'gtp2' here (looked in {tmp_path}/gtp2 and {tmp_path}/hub/" in line
        assert "did you mean gpt2" in line
    assert not (tmp_path / "results").exists()


@needs_transformers
def test_builtin_lora_adapts_gpt2s_conv1d_layers_as_peft_does():
    import torch

    from bench.train.lora import add_adapters
    from bench.workloads.registry import build

    case = Case.from_dict({"workload": "hf:gpt2", "model_size": "tiny", "seq_len": 32})
    work = build(case, torch.device("cpu"), torch.float32)
    x, _ = work.next_batch()
    before = work.model(x)
    head = work.model.get_submodule(work.head)
    # Per block c_attn (d -> 3d), attn.c_proj (d -> d), c_fc (d -> 4d), mlp.c_proj (4d -> d):
    # r (4d + 2d + 5d + 5d) = 16 r d; tiny: d = 128, two blocks, rank 8.
    assert add_adapters(work.model, 8, 16.0, skip=head) == 2 * 16 * 8 * 128
    assert torch.equal(work.model(x), before)  # B = 0: the adapted model starts as the base


LORA_CASE = """
[[include]]
workload = "hf:gpt2"
model_size = "tiny"
finetune = "lora"
pretrain_steps = 2
[[include]]
workload = "hf:tok"
finetune = "full"
finetune_task = "own"
"""


@needs_transformers
def test_saved_models_and_lora_on_a_config_model(bench, bench_env, tmp_path):
    """One sweep (one bench process, for the suite's time): a saved model with its tokenizer,
    one on bytes with random weights, hf:gpt2 from a config fine-tuned with LoRA, and the saved
    model's own weights fine-tuned (task own)."""
    bench_env["HF_HUB_CACHE"] = str(tmp_path / "hub")
    save_tiny_gpt2(tmp_path / "tok", tokenizer=True)
    save_tiny_gpt2(tmp_path / "bytes", tokenizer=False)
    suite = write_suite(
        tmp_path,
        "hf",
        SUITE
        + '[[include]]\nworkload = "hf:tok"\n'
        + '[[include]]\nworkload = "hf:bytes"\nworkload_args.pretrained = false\n'
        + LORA_CASE,
    )
    done = bench("run", str(suite), timeout=600)
    assert done.returncode == 0, done.stderr
    tok, raw, lora, own = records(tmp_path)
    assert tok["status"] == raw["status"] == "ok", (tok["reason"], raw["reason"])
    assert tok["runtime"]["workload"]["tokenizer"] == "own"
    assert tok["runtime"]["workload"]["weights"] == "pretrained"
    assert tok["runtime"]["workload"]["source"] == "directory"
    assert tok["metrics"]["num_params"] == gpt2_params(TOKENIZER_VOCAB)
    # Without a tokenizer: bytes, the embedding resized to 256 rows; random weights asked for.
    assert raw["runtime"]["workload"]["tokenizer"] == "byte"
    assert raw["runtime"]["workload"]["weights"] == "random"
    assert raw["metrics"]["num_params"] == gpt2_params(256)
    for record in (tok, raw):
        assert record["config"]["model_size"] is None and record["metrics"]["flops"]["per_step"]
        assert set(record["metrics"]["eval"]) == {"loss", "perplexity"}
    # The same text, fewer tokens: the BPE merges bytes (the docs corpus, its 90% training part).
    assert tok["runtime"]["data"]["num_train"] < raw["runtime"]["data"]["num_train"]
    # LoRA: PEFT's where it is installed, named on the record; its all-linear targets are the
    # built-in's (the test above): the same 2 * 16 * 8 * 128 parameters train.
    assert lora["status"] == "ok", lora["reason"]
    finetune = lora["runtime"]["finetune"]
    assert finetune["lora_impl"] == ("peft" if HAS_PEFT else "builtin")
    assert finetune["adapter_params"] == lora["metrics"]["trainable_params"] == 32768
    assert lora["runtime"]["workload"]["model_class"] == "GPT2LMHeadModel"
    # Task own: the saved weights as loaded, tuned on the case's data; no pretraining phase.
    assert own["status"] == "ok", own["reason"]
    assert own["config"]["pretrain_steps"] is None
    assert own["runtime"]["finetune"]["task"] == "own"
    assert own["runtime"]["finetune"]["weights"] == "pretrained"
    # The weights start as saved (random, GPT-2's init N(0, 0.02)): nearly uniform next-token
    # scores over the 300 tokens before tuning, a loss near ln 300 = 5.70.
    assert own["metrics"]["eval_before"]["loss"] == pytest.approx(math.log(300), abs=0.1)


@needs_transformers
def test_other_model_types_build_from_a_config_in_a_gpt_size():
    import torch

    from bench.spec.catalog import GPT_SIZES
    from bench.workloads import hf

    # Llama's layout in gpt's tiny shape (d = 128, 2 layers, 4 heads, bytes), by hand: the token
    # embedding 256 d; per layer q, k, v, o without bias (4 d^2), the gated MLP d -> 4d twice
    # and 4d -> d (12 d^2), two RMSNorms (2 d); the final RMSNorm (d); the head tied.
    d = 128
    by_hand = 256 * d + 2 * (4 * d * d + 12 * d * d + 2 * d) + d
    for model_type in ("llama", "mistral"):
        config = hf.from_size(model_type, GPT_SIZES["tiny"], 32, tie_embeddings=True)
        with torch.device("meta"):
            model = hf.transformers_module().AutoModelForCausalLM.from_config(config)
        assert sum(p.numel() for p in model.parameters()) == by_hand == 557_696
