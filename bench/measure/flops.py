"""FLOPs of one training step: counted once on the eager model, and for ``gpt`` also by formula.

The count runs ``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward of the
loss on one real batch of the case, on the eager model, before the first (compiling) step: never
under ``torch.compile``, whose fused kernels are not the aten ops the counter sees. It counts the
matrix products (mm, addmm, bmm, convolution, attention) at 2 FLOPs per multiply-add; elementwise
work (activations, norms, the optimizer's update) is not counted, the convention of model FLOPs
utilisation (Chowdhery et al. 2022, PaLM, appendix B). No optimizer step runs, so the weights are
unchanged, and the gradients are set to None afterwards: the first step starts as it would have.
The batch is drawn from the case's data stream, so the steps after it see the batches after it.
"""

from contextlib import AbstractContextManager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bench.spec.catalog import GPT_VOCAB, GPTSize, num_params, size_of


def _cpu_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch's counter has formulas for the CUDA attention kernels (flash, efficient, cuDNN) but not for
# the fused CPU kernel that scaled_dot_product_attention runs on a CPU; without these, a CPU count
# of the transformer would miss its attention. Same formulas as torch's own for the CUDA kernels.
_CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


def count_step_flops(
    loss_module: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    autocast: AbstractContextManager,
) -> int:
    """FLOPs of one training step: forward (under ``autocast``) and backward of ``loss_module(x,
    y)``, the eager model with the case's loss. Its gradients are None afterwards.

    Model FLOPs, not hardware FLOPs: activation checkpointing's recomputation is not counted (PaLM
    appendix B defines MFU without it). The count runs in eval mode, where the ``gpt`` blocks are
    not checkpointed; dropout and batch norm change no matrix product, so eval mode computes the
    same products as training (and leaves BatchNorm's running statistics untouched).
    """
    x, y = batch
    was_training = loss_module.training
    loss_module.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
            with autocast:
                loss = loss_module(x, y)
            loss.backward()
    finally:
        loss_module.train(was_training)
        loss_module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gpt_flops_per_token(size: str | int, seq_len: int, tied: bool) -> int:
    """Training FLOPs per token of the ``gpt`` workload: 6N + 12·L·H·Q·T.

    The formula of PaLM (Chowdhery et al. 2022, appendix B), as nanoGPT's ``estimate_mfu`` uses it:
    - N: parameters that take part in a matrix product for each token: all of them but the
      position embedding, and but the token embedding when it is not tied to the output head (a
      lookup costs no FLOPs; tied, the matrix is counted once, as the head).
    - 6N: a multiply-add (2 FLOPs) per parameter per token in the forward pass, and twice that in
      the backward (gradients with respect to the inputs and to the weights).
    - L: layers; H: attention heads; Q: head size (d_model / H); T: tokens attended, the
      sequence length. 12·L·H·Q·T: the scores Q·K^T and the weighted sum of V, 2·2·T·H·Q FLOPs per
      token and layer forward, three times that with the backward. The causal mask's skipped
      half is not subtracted, as in PaLM and as torch's counter also counts it.
    """
    shape = size_of("gpt", size)
    assert isinstance(shape, GPTSize), "a gpt size"
    d = shape.d_model
    n = num_params("gpt", size, seq_len, tied) - seq_len * d
    if not tied:
        n -= GPT_VOCAB * d
    L, H, Q, T = shape.n_layer, shape.n_head, d // shape.n_head, seq_len
    return 6 * n + 12 * L * H * Q * T
