"""The hf-gpt2 workload: Hugging Face transformers' GPT-2 built from a config, nothing downloaded.

``GPT2LMHeadModel(GPT2Config(...))`` in the shape of a ``gpt`` size (``catalog.GPT_SIZES``), with
a byte-level vocabulary of 256, ``seq_len`` positions, dropout off (a benchmark measures the
deterministic step) and the head tied to the token embedding unless ``tie_embeddings = false``:
randomly initialised by transformers' own init, trained on the same byte-level text and windows as
``gpt`` (``gpt.load``, ``gpt.windows``). Its parameter count equals ``gpt``'s: GPT-2's layout is
the one ``gpt`` copies. What differs is the implementation: transformers' modules and attention
dispatch against ``gpt.py``'s plain ones, which is what comparing the two measures.

transformers is an optional dependency (``pip install bench[hf]``); without it the case is
``skipped`` with that reason.
"""

import torch
from torch import nn

from bench.errors import NotApplicable
from bench.spec.case import Case
from bench.spec.catalog import GPT_VOCAB, HF_INSTALL_HINT, HF_MISSING, GPTSize, size_of
from bench.workloads import gpt
from bench.workloads.interface import Workload

INSTALL_HINT = HF_INSTALL_HINT


def transformers_module():
    """The transformers package, or NotApplicable (a skipped record) naming the install."""
    try:
        import transformers
    except ImportError as error:
        raise NotApplicable(HF_MISSING) from error
    return transformers


class CausalLM(nn.Module):
    """Token ids (B, T) -> logits (B, T, 256) through a transformers causal language model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.hf = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits  # (B, T, V)


def gpt2(shape: GPTSize, seq_len: int, tie_embeddings: bool) -> CausalLM:
    transformers = transformers_module()
    config = transformers.GPT2Config(
        vocab_size=GPT_VOCAB,
        n_positions=seq_len,
        n_embd=shape.d_model,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=tie_embeddings,
        bos_token_id=None,  # bytes have no special tokens (GPT-2's 50256 is out of range)
        eos_token_id=None,
    )
    return CausalLM(transformers.GPT2LMHeadModel(config))


def build(case: Case, device: torch.device, dtype: torch.dtype) -> Workload:
    assert case.model_size is not None and case.batch_size is not None, "unresolved case"
    assert case.seq_len is not None and case.eval_batches is not None, "unresolved case"
    assert case.tie_embeddings is not None, "unresolved case"
    if case.activation_checkpointing:
        raise NotApplicable("activation_checkpointing is implemented for gpt, not for hf-gpt2")
    shape = size_of("hf-gpt2", case.model_size)
    assert isinstance(shape, GPTSize)
    seq_len, batch_size = case.seq_len, case.batch_size
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = gpt2(shape, seq_len, case.tie_embeddings).to(device=device, dtype=dtype)
    splits = gpt.load(case)
    gpt.check_fits(splits, seq_len)  # the same corpora, the same limit
    # The same batches and fixed evaluation windows as gpt's: the two implementations compare
    # directly.
    next_batch, evaluate = gpt.token_batches(case, splits, device)
    return Workload(
        model=model,
        loss_fn=gpt.loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=batch_size,
        tokens_per_step=batch_size * seq_len,
        data=splits.info,
    )
