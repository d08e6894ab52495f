"""``hf:NAME_OR_PATH``: a Hugging Face causal language model through transformers, from local
files only (bench/spec/hf_source.py finds them; nothing is downloaded).

- Files found (a directory or the local Hugging Face cache): the model of their ``config.json``,
  with their weights (``AutoModelForCausalLM.from_pretrained``) unless
  ``workload_args.pretrained = false`` (then ``from_config``: random weights by transformers'
  own init); their tokenizer where they hold one, else byte-level tokens (ids 0-255), the
  embeddings and head resized to 256 rows.
- No files: ``NAME`` is a model type (``gpt2``, ``llama``, ``mistral``, ...), built from its
  config class in the shape of a ``gpt`` size (``catalog.GPT_SIZES``): ``model_size`` gives
  layers, heads and width (the MLP 4x wide), ``seq_len`` the positions, a byte-level vocabulary
  of 256, dropout off (a benchmark measures the deterministic step), the head tied unless
  ``tie_embeddings = false``. ``hf:gpt2`` (alias ``hf-gpt2``) then has exactly ``gpt``'s
  parameter count: GPT-2's layout is the one ``gpt`` copies; what differs is the implementation.

It trains on the same text and windows as ``gpt`` (``gpt.load``, ``gpt.token_batches``): bytes,
or the byte text decoded and run through the model's tokenizer. ``runtime.workload`` of the
record says which model, weights and tokenizer a case used. transformers is an optional
dependency (``pip install 'bench[hf]'``); without it the case is ``skipped`` with that reason.
"""

import os
from typing import Any

import torch
from torch import nn

from bench.errors import CaseError, NotApplicable
from bench.spec.case import Case
from bench.spec.catalog import GPT_VOCAB, GPTSize, hf_missing, size_of
from bench.spec.hf_source import HFSource, locate, model_name, pretrained
from bench.workloads import data, gpt
from bench.workloads.interface import DataInfo, Workload

# The data as gpt reads it (bytes); a fine-tuning task cuts its parts from it.
load = gpt.load


def transformers_module(workload: str = "hf:gpt2"):
    """The transformers package, offline, or NotApplicable (a skipped record) naming the
    install."""
    # Never the network: files come from the directory or the cache, or there are none.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError as error:
        raise NotApplicable(hf_missing(workload)) from error
    transformers.logging.set_verbosity_error()  # its advice on generation is not ours to print
    transformers.logging.disable_progress_bar()  # nor a bar for loading a few weights
    return transformers


class CausalLM(nn.Module):
    """Token ids (B, T) -> logits (B, T, V) through a transformers causal language model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.hf = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits  # (B, T, V)


def from_size(model_type: str, shape: GPTSize, seq_len: int, tie_embeddings: bool):
    """transformers' config of ``model_type`` in a ``gpt`` shape, byte vocabulary, no dropout.

    Set through the generic names every causal-LM config maps (``hidden_size``,
    ``num_hidden_layers``, ... ; GPT-2's ``attribute_map`` turns them into ``n_embd``, ...), and
    the grouped-query and MLP widths where the config has them (one key-value head per query
    head; an MLP 4x wide, GPT-2's ratio)."""
    transformers = transformers_module(f"hf:{model_type}")
    config = transformers.AutoConfig.for_model(model_type)
    d, heads = shape.d_model, shape.n_head
    sizes: dict[str, Any] = {
        "vocab_size": GPT_VOCAB,
        "hidden_size": d,
        "num_hidden_layers": shape.n_layer,
        "num_attention_heads": heads,
        "max_position_embeddings": seq_len,
        "tie_word_embeddings": tie_embeddings,
        # Bytes have no special tokens (GPT-2's 50256 is out of range).
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    for key, value in (
        ("intermediate_size", 4 * d),
        ("num_key_value_heads", heads),
        ("head_dim", d // heads),
        ("n_inner", None),
    ):
        if hasattr(config, key):
            sizes[key] = value
    for key, value in sizes.items():
        setattr(config, key, value)
    for key, value in config.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)
    return config


def gpt2(shape: GPTSize, seq_len: int, tie_embeddings: bool) -> CausalLM:
    """hf:gpt2 from a config: GPT2LMHeadModel in a gpt shape."""
    transformers = transformers_module()
    return CausalLM(transformers.GPT2LMHeadModel(from_size("gpt2", shape, seq_len, tie_embeddings)))


def build(
    case: Case, device: torch.device, dtype: torch.dtype, splits: data.TokenSplits | None = None
) -> Workload:
    assert case.batch_size is not None and case.seq_len is not None, "unresolved case"
    transformers = transformers_module(case.workload)
    source = locate(case.workload, case.workload_root)
    seq_len, batch_size = case.seq_len, case.batch_size
    torch.manual_seed(case.seed)
    tokenizer = None
    # Built on the CPU in fp32, then moved and cast: the same seed gives the same weights on
    # every device.
    if source.kind == "config":
        assert case.model_size is not None and case.tie_embeddings is not None, "unresolved case"
        shape = size_of(case.workload, case.model_size)
        assert isinstance(shape, GPTSize)
        config = from_size(model_name(case.workload), shape, seq_len, case.tie_embeddings)
        hf_model = transformers.AutoModelForCausalLM.from_config(config)
        weights = "random"
    else:
        assert source.path is not None
        longest = source.max_positions()
        if longest is not None and seq_len > longest:
            raise CaseError(
                f"seq_len = {seq_len}: {case.workload} takes at most {longest} positions "
                f"({source.path}/config.json)"
            )
        if pretrained(source, case.workload_args):
            hf_model = transformers.AutoModelForCausalLM.from_pretrained(
                source.path, local_files_only=True, dtype=torch.float32
            )
            weights = "pretrained"
        else:
            config = transformers.AutoConfig.from_pretrained(source.path, local_files_only=True)
            hf_model = transformers.AutoModelForCausalLM.from_config(config)
            weights = "random"
        if source.has_tokenizer:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                source.path, local_files_only=True
            )
        else:
            hf_model.resize_token_embeddings(GPT_VOCAB)  # byte-level ids 0-255
    vocab = hf_model.get_input_embeddings().num_embeddings
    if tokenizer is not None and len(tokenizer) > vocab:
        raise CaseError(
            f"{case.workload}: its tokenizer has {len(tokenizer)} tokens, its embedding "
            f"{vocab} rows"
        )
    if case.activation_checkpointing:
        if not hf_model.supports_gradient_checkpointing:
            raise NotApplicable(
                f"{type(hf_model).__name__} does not support gradient checkpointing"
            )
        # Non-reentrant: torch's recommended form, which works with frozen inputs (LoRA).
        hf_model.gradient_checkpointing_enable({"use_reentrant": False})
    model = CausalLM(hf_model).to(device=device, dtype=dtype)
    splits = splits if splits is not None else load(case)
    if tokenizer is not None:
        splits = tokenized(splits, tokenizer, source.path)
    gpt.check_fits(splits, seq_len)  # the same corpora, the same limit
    # The same batches and fixed evaluation windows as gpt's: the implementations compare
    # directly (on bytes; a tokenizer makes other windows of the same text).
    next_batch, evaluate = gpt.token_batches(case, splits, device)
    output = hf_model.get_output_embeddings()
    head = next(f"hf.{n}" for n, m in hf_model.named_modules() if m is output)
    return Workload(
        model=model,
        loss_fn=gpt.loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=batch_size,
        tokens_per_step=batch_size * seq_len,
        data=splits.info,
        head=head,
        fsdp_unit=_block_class(hf_model),
        source=describe(case, source, hf_model, weights, tokenizer, transformers.__version__),
    )


def describe(
    case: Case, source: HFSource, model: nn.Module, weights: str, tokenizer: Any, version: str
) -> dict[str, Any]:
    """``runtime.workload`` of an hf: record: where the model came from, with which weights and
    tokenizer (a change of its files changes the record, not the case id)."""
    return {
        "spec": case.workload,
        "args": case.workload_args or {},
        "source": source.kind,
        "path": source.path,
        "config_sha256": source.config_sha256(),
        "model_type": model.config.model_type,
        "model_class": type(model).__name__,
        "weights": weights,
        # "own": the tokenizer of the model's files; "byte": ids 0-255, one per byte.
        "tokenizer": "own" if tokenizer is not None else "byte",
        "tokenizer_class": type(tokenizer).__name__ if tokenizer is not None else None,
        "vocab_size": model.get_input_embeddings().num_embeddings,
        "transformers": version,
    }


def _block_class(model: nn.Module) -> type[nn.Module] | None:
    """The transformer block class, FSDP's unit: the first of the model's ``_no_split_modules``
    (transformers' own list of what must not be split across devices)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    return next((type(m) for m in model.modules() if type(m).__name__ in names), None)


# Encoded splits per (text's sha256, tokenizer's directory) in this process: a fine-tuning case
# encodes its source and target once each.
_ENCODED: dict[tuple[str, str | None], data.TokenSplits] = {}


def tokenized(splits: data.TokenSplits, tokenizer: Any, path: str | None) -> data.TokenSplits:
    """The byte splits decoded as UTF-8 and encoded by ``tokenizer``: ids (N,) int32."""
    key = (splits.info.sha256, path)
    if key not in _ENCODED:
        tokenizer.model_max_length = int(1e12)  # a corpus, not one model input: no warning
        train, val = (
            torch.tensor(
                tokenizer.encode(
                    bytes(part.numpy()).decode("utf-8", errors="replace"),
                    add_special_tokens=False,
                ),
                dtype=torch.int32,
            )
            for part in (splits.train, splits.val)
        )
        info = DataInfo(
            splits.info.name,
            num_train=len(train),
            num_val=len(val),
            sha256=data.sha256_of(train, val),
            path=splits.info.path,
        )
        _ENCODED[key] = data.TokenSplits(train, val, info)
    return _ENCODED[key]


def model_type_problem(request: dict[str, list[str]]) -> str | None:
    """The first ``hf:NAME`` of ``request`` (name -> where its files were looked for) that is
    not a model type transformers builds a causal LM for from a config alone."""
    import difflib

    transformers = transformers_module()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    types = sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    for workload, looked in request.items():
        name = model_name(workload)
        if name in types:
            continue
        close = difflib.get_close_matches(name, types, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"workload = {workload!r}: no model {name!r} here (looked in {' and '.join(looked)}; "
            f"bench never downloads), and {name!r} is not a causal-LM model type transformers "
            f"{transformers.__version__} builds from a config ({len(types)} types: gpt2, llama, "
            f"mistral, ...){hint}"
        )
    return None


def main() -> None:
    """``python -m bench.workloads.hf '{"hf:gpt2": [...]}'``: the check bench runs before a sweep
    (bench/spec/user_workload.py) in a child Python. Exit 1 with the problem as the last line
    of stdout."""
    import json
    import sys

    problem = model_type_problem(json.loads(sys.argv[1]))
    if problem:
        print(problem)
        sys.exit(1)


if __name__ == "__main__":
    main()
