"""The GPT workload: a decoder-only transformer on byte-level text, shaped like nanoGPT's model.py.

Token and learned position embeddings, ``n_layer`` pre-LayerNorm blocks (causal self-attention
through ``F.scaled_dot_product_attention``, then an MLP d -> 4d -> d with GELU), a final LayerNorm
and a bias-free head onto the 256 byte values, tied to the token embedding by default. No dropout:
a benchmark measures the deterministic step. The parameter count equals ``catalog.num_params``.

Data: ``auto``/``stdlib`` train on the Python standard library's source, ``docs`` on Python's
language reference (English prose), ``text`` on a file you name, ``synthetic`` on uniform random
bytes. A step's batch is ``batch_size`` windows at random
offsets of the training split; the evaluation reads the same fixed windows of the validation split
in every case with the same ``seq_len``, whatever its batch size.
"""

import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bench.spec.case import Case
from bench.spec.catalog import GPT_VOCAB, GPTSize, size_of
from bench.workloads import data
from bench.workloads.interface import DataInfo, Workload

# nanoGPT's init (model.py, _init_weights): weights N(0, 0.02), biases zero, and the projections
# that add into the residual stream scaled by 1/sqrt(2 * n_layer), as in GPT-2 (Radford et al.
# 2019, section 2.3), so that the residual's variance does not grow with depth.
INIT_STD = 0.02
# Windows per evaluation batch: fixed (the workload's default batch size), so that cases that
# differ in batch size evaluate exactly the same windows.
EVAL_BATCH_SIZE = 16
EVAL_SEED = 0
SYNTHETIC_NUM_TRAIN = 900_000
SYNTHETIC_NUM_VAL = 100_000


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        assert d_model % n_head == 0, "catalog sizes divide evenly"
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model)  # q, k, v of all heads at once
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y)


class FeedForward(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class GPT(nn.Module):
    """Token ids (B, T) with T <= seq_len -> logits (B, T, 256)."""

    def __init__(
        self, shape: GPTSize, seq_len: int, tie_embeddings: bool, checkpointing: bool = False
    ):
        super().__init__()
        d = shape.d_model
        self.seq_len = seq_len
        self.checkpointing = checkpointing
        self.wte = nn.Embedding(GPT_VOCAB, d)
        self.wpe = nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(Block(d, shape.n_head) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, GPT_VOCAB, bias=False)
        if tie_embeddings:
            # One matrix reads tokens in and scores them out (Press & Wolf 2017), as GPT-2 does.
            self.lm_head.weight = self.wte.weight
        self.apply(_init_weights)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=INIT_STD / math.sqrt(2 * shape.n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)  # idx: (B, T)
        assert T <= self.seq_len, f"sequence of {T} tokens, position table has {self.seq_len}"
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C) + (T, C)
        for block in self.blocks:
            if self.checkpointing and self.training:
                # Keep only each block's input; recompute its activations in the backward pass:
                # memory for compute (Chen et al. 2016). Non-reentrant, as torch recommends.
                x = checkpoint(block, x, use_reentrant=False)  # (B, T, C)
            else:
                x = block(x)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of next-token logits (B, T, V) against targets (B, T) -> scalar.

    Computed in float32, as autocast runs ``cross_entropy`` (torch.amp autocast op reference, ops
    that autocast to float32), so a bf16 case's loss is as precise as an amp case's.
    """
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def load(case: Case) -> data.TokenSplits:
    """The case's byte tokens on the CPU, as ``case.data`` asks. ``auto`` is the stdlib's source,
    or, for a fine-tuning case (pretrained on that source, bench/train/finetune.py), the docs."""
    if case.data == "docs" or (case.data == "auto" and case.finetune is not None):
        return data.docs_corpus()
    if case.data in ("auto", "stdlib"):
        return data.stdlib_corpus()
    if case.data == "text":
        assert case.data_path is not None, "Case requires data_path for text"
        return data.text_file(case.data_path)
    assert case.data == "synthetic", f"unvalidated data {case.data!r}"
    return synthetic(case.seed)


def synthetic(seed: int) -> data.TokenSplits:
    """Uniform random bytes: nothing to learn, the loss stays near ln(256) = 5.55.

    Drawn on the CPU from a generator seeded by ``seed``, so that every device trains on the same
    tokens and the recipe in ``sha256`` names them exactly (CPU and CUDA generators differ).
    """
    generator = torch.Generator().manual_seed(seed)
    num = SYNTHETIC_NUM_TRAIN + SYNTHETIC_NUM_VAL
    tokens = torch.randint(GPT_VOCAB, (num,), generator=generator, dtype=torch.uint8)  # (N,)
    recipe = f"synthetic-gpt-seed{seed}-randint-cpu-{SYNTHETIC_NUM_TRAIN}+{SYNTHETIC_NUM_VAL}"
    info = DataInfo(
        "synthetic",
        num_train=SYNTHETIC_NUM_TRAIN,
        num_val=SYNTHETIC_NUM_VAL,
        sha256=hashlib.sha256(recipe.encode()).hexdigest(),
    )
    return data.TokenSplits(tokens[:SYNTHETIC_NUM_TRAIN], tokens[SYNTHETIC_NUM_TRAIN:], info)


def windows(
    tokens: torch.Tensor, starts: torch.Tensor, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of the windows at ``starts``: (B,) -> (B, T), (B, T) long."""
    chunk = tokens[starts.unsqueeze(1) + offsets].long()  # (B, T + 1)
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


def build(
    case: Case, device: torch.device, dtype: torch.dtype, splits: data.TokenSplits | None = None
) -> Workload:
    assert case.model_size is not None and case.batch_size is not None, "unresolved case"
    assert case.seq_len is not None and case.eval_batches is not None, "unresolved case"
    assert case.tie_embeddings is not None, "unresolved case"
    seq_len, batch_size = case.seq_len, case.batch_size
    splits = splits if splits is not None else load(case)
    check_fits(splits, seq_len)
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    shape = size_of("gpt", case.model_size)
    assert isinstance(shape, GPTSize)
    model = GPT(shape, seq_len, case.tie_embeddings, bool(case.activation_checkpointing))
    model = model.to(device=device, dtype=dtype)  # token ids stay long

    next_batch, evaluate = token_batches(case, splits, device)
    return Workload(
        model=model,
        loss_fn=loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=batch_size,
        tokens_per_step=batch_size * seq_len,
        data=splits.info,
        head="lm_head",  # tied to the token embedding by default: one matrix
    )


def check_fits(splits: data.TokenSplits, seq_len: int) -> None:
    """Both splits must hold a window of ``seq_len + 1`` tokens (inputs plus the next token)."""
    info = splits.info
    need = seq_len + 1
    if min(info.num_train, info.num_val) < need:
        where = f" ({info.path})" if info.path else ""
        raise RuntimeError(
            f"{info.name} data{where} is too short for seq_len = {seq_len}: its splits hold "
            f"{info.num_train} training and {info.num_val} validation tokens (the last 10%) and "
            f"each needs at least {need}; use a text of at least {10 * need} bytes or a "
            "shorter seq_len"
        )


NextBatch = Callable[[], tuple[torch.Tensor, torch.Tensor]]
Evaluate = Callable[[nn.Module], dict[str, float]]


def token_batches(
    case: Case, splits: data.TokenSplits, device: torch.device
) -> tuple[NextBatch, Evaluate]:
    """Random training windows of ``case.seq_len`` tokens and the held-out evaluation on fixed
    windows (loss and perplexity) of ``splits``: shared by gpt and hf-gpt2, so that the two
    implementations compare directly."""
    assert case.seq_len is not None and case.batch_size is not None, "unresolved case"
    assert case.eval_batches is not None, "unresolved case"
    seq_len, batch_size = case.seq_len, case.batch_size
    # The corpus stays uint8 on the device (a quarter of int32's memory); windows widen to long.
    train = splits.train.to(device)  # (N_train,)
    val = splits.val.to(device)  # (N_val,)
    offsets = torch.arange(seq_len + 1, device=device)  # (T + 1,)
    # A generator on the device: drawing offsets there needs no copy from the host.
    generator = torch.Generator(device=device).manual_seed(case.seed)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(
            len(train) - seq_len, (batch_size,), generator=generator, device=device
        )  # (B,)
        return windows(train, starts, offsets)  # (B, T), (B, T)

    # Fixed windows: a CPU generator with a fixed seed gives the same ones on every device.
    eval_starts = torch.randint(
        len(val) - seq_len,
        (case.eval_batches, EVAL_BATCH_SIZE),
        generator=torch.Generator().manual_seed(EVAL_SEED),
    ).to(device)  # (eval_batches, EVAL_BATCH_SIZE)

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total_loss = torch.zeros((), device=device)
        with torch.no_grad():
            for starts in eval_starts:
                x, y = windows(val, starts, offsets)  # (B, T), (B, T)
                total_loss += loss_fn(model(x), y)
        model.train(was_training)
        loss = total_loss.item() / len(eval_starts)  # one read, outside the timed window
        return {"loss": loss, "perplexity": math.exp(loss)}

    return next_batch, evaluate
