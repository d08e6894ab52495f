"""The recsys workload: a DLRM-style click-through-rate model on generated click logs.

The model follows DLRM (Naumov et al. 2019, "Deep Learning Recommendation Model for
Personalization and Recommendation Systems", section 2): a bottom MLP turns the dense features
into a vector of the embedding dimension; each sparse feature is a multi-hot bag of item ids
pooled by an ``nn.EmbeddingBag`` (``pooling``: sum or mean); the dot products of every pair of
these vectors (the bottom MLP's output included) and the bottom MLP's output feed a top MLP that
ends in one click logit, trained with binary cross-entropy on logits. Sizes scale the tables
(``app_shapes.RECSYS_SIZES``): nearly all parameters are embedding rows, a step reads a few of them
and (with dense gradients) the optimizer writes all of them: memory-bound work.

Gradients of the tables are dense (``EmbeddingBag(sparse=False)``): every torch.optim optimizer
and every precision works with them, and the optimizer's step touches every row, which is what a
dense-gradient trainer costs. Sparse gradients would need SparseAdam or sparse SGD/Adagrad.

Data (``data = "auto"`` or ``"clicks"``): click logs from :func:`generate_clicks`, a seeded
generator whose clicks depend on the features through a hidden ground-truth model, so that there
is something to learn; item ids follow a Zipf law, as item popularity does in real logs.
``synthetic`` draws uniform ids and coin-flip clicks: the same shapes, nothing to learn, and no
hot rows for the caches. Either way ``DataInfo.sha256`` hashes the generated tensors themselves
(dense features, ids, labels: their bytes in that order), not a recipe.
"""

import functools
import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.spec.app_shapes import RECSYS_DENSE, RecsysSize, recsys_interactions
from bench.spec.case import Case
from bench.spec.catalog import size_of
from bench.workloads.batches import shuffled_batches
from bench.workloads.interface import DataInfo, Workload

CLICKS_NUM_TRAIN = 65_536
CLICKS_NUM_VAL = 8_192
# The click log must not move with the case seed: every case trains on the same log, as every
# mlp case trains on the same digits split.
CLICKS_SEED = 0
# Zipf exponent of item popularity: P(rank k) proportional to k^-s. Real catalogues measure
# around 1 (Breslau et al. 1999 find 0.64-0.83 for web requests; Celma 2010 about 1 for music
# plays); 1.05 keeps the head heavy and the tail long.
ZIPF_EXPONENT = 1.05
# The hidden model: items of a table fall into clusters (``id mod NUM_CLUSTERS``) that share a
# click bias and a latent vector; a sample's dense features map to a latent vector too, and the
# click logit is linear in the dense features plus the pooled biases plus the dot product of the
# two latents. Scales chosen so that the hidden model's own AUC is about 0.8 (0.80 on `small`'s
# log; the dense features alone give 0.70) and about a third of the samples click.
NUM_CLUSTERS = 32
LATENT_DIM = 4
DENSE_SCALE = 0.5
BIAS_SCALE = 1.0
LATENT_SCALE = 1.0
LOGIT_OFFSET = -1.0
EVAL_BATCH_SIZE = 4096


@dataclass(frozen=True)
class Clicks:
    """A click log on the CPU: dense features (N, 13) float32, item ids (N, tables, hotness)
    int64, clicks (N,) float32 in {0, 1}; the first ``info.num_train`` rows train."""

    dense: torch.Tensor
    ids: torch.Tensor
    labels: torch.Tensor
    info: DataInfo


def zipf_ids(
    rows: int, shape: tuple[int, ...], s: float, generator: torch.Generator
) -> torch.Tensor:
    """Ids in 0..rows-1 with P(id = k) = (k + 1)^-s / H(rows, s): id 0 is the most popular.

    Inverse-CDF sampling: a uniform draw u falls in exactly one interval (cdf[k-1], cdf[k]],
    whose width is P(id = k). float64 keeps the tail's tiny probabilities.
    """
    weights = torch.arange(1, rows + 1, dtype=torch.float64) ** -s  # (rows,)
    cdf = weights.cumsum(0) / weights.sum()
    cdf[-1] = 1.0  # no draw may fall past the last row through rounding
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.searchsorted(cdf, u)  # (*shape,) int64


@functools.cache  # read-only tensors: one generation per process serves every case in it
def generate_clicks(
    shape: RecsysSize, seed: int, num_train: int = CLICKS_NUM_TRAIN, num_val: int = CLICKS_NUM_VAL
) -> Clicks:
    """A click log with Zipf-distributed items and clicks drawn from a hidden model.

    All on a CPU generator seeded by ``seed``, in this order: the hidden model (dense weights
    (13,), dense-to-latent map (13, 4), per table and cluster a bias and a latent vector), then
    per sample the dense features N(0, 1), the ids (Zipf, per table and bag slot), and the click,
    Bernoulli(sigmoid(logit)) with

        logit = w . dense + sum over tables of the bag's mean cluster bias / sqrt(tables)
                + (dense P) . (sum over tables of the bag's mean cluster latent / sqrt(tables))
                + offset.
    """
    generator = torch.Generator().manual_seed(seed)
    tables, num = shape.num_tables, num_train + num_val

    def normal(*size: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(size, generator=generator) * scale

    w_dense = normal(RECSYS_DENSE, scale=DENSE_SCALE * RECSYS_DENSE**-0.5)  # (13,)
    to_latent = normal(RECSYS_DENSE, LATENT_DIM, scale=RECSYS_DENSE**-0.5)  # (13, K)
    bias = normal(tables, NUM_CLUSTERS, scale=BIAS_SCALE)  # (tables, C)
    latent = normal(tables, NUM_CLUSTERS, LATENT_DIM, scale=LATENT_SCALE)  # (tables, C, K)

    dense = normal(num, RECSYS_DENSE)  # (N, 13)
    ids = zipf_ids(shape.rows, (num, tables, shape.hotness), ZIPF_EXPONENT, generator)
    cluster = ids % NUM_CLUSTERS  # (N, tables, L)
    table = torch.arange(tables).view(1, tables, 1)  # (1, tables, 1)
    # Each bag's mean, summed over tables with 1/sqrt(tables): the item terms keep their scale
    # whatever the number of tables.
    item_bias = bias[table, cluster].mean(dim=2).sum(dim=1) / tables**0.5  # (N,)
    item_latent = latent[table, cluster].mean(dim=2).sum(dim=1) / tables**0.5  # (N, K)
    user_latent = dense @ to_latent  # (N, K)
    logit = dense @ w_dense + item_bias + (user_latent * item_latent).sum(1) + LOGIT_OFFSET
    labels = (torch.rand(num, generator=generator) < torch.sigmoid(logit)).float()  # (N,)
    return Clicks(dense, ids, labels, _info("clicks", dense, ids, labels, num_train))


@functools.cache
def synthetic_clicks(
    shape: RecsysSize, seed: int, num_train: int = CLICKS_NUM_TRAIN, num_val: int = CLICKS_NUM_VAL
) -> Clicks:
    """Uniform ids, N(0, 1) dense features and coin-flip clicks: nothing to learn."""
    generator = torch.Generator().manual_seed(seed)
    num = num_train + num_val
    dense = torch.randn(num, RECSYS_DENSE, generator=generator)
    ids = torch.randint(shape.rows, (num, shape.num_tables, shape.hotness), generator=generator)
    labels = torch.randint(2, (num,), generator=generator).float()
    return Clicks(dense, ids, labels, _info("synthetic", dense, ids, labels, num_train))


def _info(
    name: str, dense: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor, num_train: int
) -> DataInfo:
    """Names the log; its SHA-256 is of the tensors' bytes: dense, ids, labels in that order."""
    digest = hashlib.sha256()
    for tensor in (dense, ids, labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return DataInfo(name, num_train, len(labels) - num_train, digest.hexdigest())


class DLRM(nn.Module):
    """(dense (B, 13), ids (B, tables, hotness)) -> click logits (B,)."""

    def __init__(self, shape: RecsysSize, pooling: str):
        super().__init__()
        self.bottom = _mlp((RECSYS_DENSE, *shape.bottom, shape.dim), last_relu=True)
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(shape.rows, shape.dim, mode=pooling, sparse=False)
            for _ in range(shape.num_tables)
        )
        self.top = _mlp((recsys_interactions(shape), *shape.top, 1), last_relu=False)
        # DLRM's reference initialises each table uniformly in +-sqrt(1 / rows) (dlrm_s_pytorch).
        for table in self.tables:
            nn.init.uniform_(table.weight, -(shape.rows**-0.5), shape.rows**-0.5)
        features = shape.num_tables + 1
        rows, cols = torch.tril_indices(features, features, offset=-1)  # pairs i > j
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        dense, ids = batch  # (B, 13), (B, tables, L)
        z = self.bottom(dense)  # (B, D)
        pooled = [table(ids[:, i]) for i, table in enumerate(self.tables)]  # tables x (B, D)
        features = torch.stack([z, *pooled], dim=1)  # (B, F, D)
        dots = torch.bmm(features, features.transpose(1, 2))  # (B, F, F)
        pairs = dots[:, self.pair_rows, self.pair_cols]  # (B, F (F - 1) / 2)
        return self.top(torch.cat([z, pairs], dim=1)).squeeze(1)  # (B,)


def _mlp(widths: tuple[int, ...], last_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*(layers if last_relu else layers[:-1]))


def loss_fn(logits: torch.Tensor, clicks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of click logits (B,) against clicks (B,) in {0, 1}, in float32."""
    return F.binary_cross_entropy_with_logits(logits.float(), clicks.float())


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve by the rank-sum formula (Mann-Whitney U over n_pos n_neg):

        AUC = (sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg),

    ranks 1..n in ascending score, tied scores sharing their average rank (a tie counts 1/2).
    NaN when one class is absent.
    """
    scores, labels = scores.double().flatten(), labels.flatten().bool()
    sorted_scores, order = scores.sort()
    _, group, counts = torch.unique_consecutive(
        sorted_scores, return_inverse=True, return_counts=True
    )
    last = counts.cumsum(0).double()  # rank of each tie group's last member
    ranks = (last - (counts - 1) / 2)[group]  # the group's average rank, per sorted score
    positive = labels[order]
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return (float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def load(case: Case, shape: RecsysSize) -> Clicks:
    if case.data in ("auto", "clicks"):
        return generate_clicks(shape, CLICKS_SEED)
    assert case.data == "synthetic", f"unvalidated data {case.data!r}"
    return synthetic_clicks(shape, case.seed)


def build(case: Case, device: torch.device, dtype: torch.dtype) -> Workload:
    assert case.model_size is not None and case.batch_size is not None, "unresolved case"
    assert case.pooling is not None, "unresolved case"
    shape = size_of("recsys", case.model_size)
    assert isinstance(shape, RecsysSize)
    log = load(case, shape)
    torch.manual_seed(case.seed)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = DLRM(shape, case.pooling).to(device=device, dtype=dtype)  # index buffers stay long

    n = log.info.num_train
    dense = log.dense.to(device=device, dtype=dtype)  # (N, 13)
    ids = log.ids.to(device)  # (N, tables, L)
    labels = log.labels.to(device)  # (N,) float32 whatever the precision: the loss is float32
    what = f"training samples of {log.info.name}"
    indices = shuffled_batches(n, case.batch_size, device, case.seed, what)

    def next_batch() -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        batch = indices()  # (B,)
        return (dense[batch], ids[batch]), labels[batch]

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        logits = []
        with torch.no_grad():
            for start in range(n, len(labels), EVAL_BATCH_SIZE):
                stop = min(start + EVAL_BATCH_SIZE, len(labels))
                logits.append(model((dense[start:stop], ids[start:stop])).float())
        model.train(was_training)
        scores, clicks = torch.cat(logits), labels[n:]  # (N_val,), (N_val,)
        log_loss = F.binary_cross_entropy_with_logits(scores, clicks)
        accuracy = ((scores > 0).float() == clicks).float().mean()
        # Host reads once each, at the end, outside the timed window.
        return {"loss": log_loss.item(), "accuracy": accuracy.item(), "auc": auc(scores, clicks)}

    return Workload(
        model=model,
        loss_fn=loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=case.batch_size,
        tokens_per_step=None,
        data=log.info,
    )
