"""The diffusion workload: a small UNet trained on DDPM's noise-prediction objective.

DDPM (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", algorithm 1): draw an image x0,
a time step t uniform in 0..T-1 and noise eps ~ N(0, I); the model sees the noised image
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and t, and is trained on MSE(eps_pred, eps). The
schedule is theirs: T = 1000 steps, beta linear from 1e-4 to 0.02,
abar_t = prod_{s<=t} (1 - beta_s).

The UNet follows their layout (section 4 and appendix B) at small scale: a sinusoidal time
embedding through a two-layer MLP; residual blocks (GroupNorm, SiLU, 3x3 conv, the time embedding
added per channel, GroupNorm, SiLU, 3x3 conv); per resolution level ``blocks`` residual blocks, a
stride-2 conv down, and on the way up a skip connection from the same level concatenated, residual
blocks and nearest upsampling with a conv. No attention and no dropout: convolution-heavy work
(``app_shapes.UNET_SIZES`` scales channels and depth). The parameter count equals
``catalog.num_params``.

Data: the handwritten digits (MNIST when present, else scikit-learn's digits, as ``mlp``), pixels
mapped to [-1, 1] and padded from 28x28 to 32x32 with the background value, so that three halvings
stay exact. ``synthetic``: uniform pixels in [-1, 1]. The noising happens in ``next_batch`` on the
device, as a training pipeline does it.
"""

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.spec.app_shapes import UNET_GROUPS, UNET_SIDE, UNetSize
from bench.spec.case import Case
from bench.spec.catalog import size_of
from bench.workloads import data
from bench.workloads.batches import shuffled_batches
from bench.workloads.interface import DataInfo, Workload

NUM_TIMESTEPS = 1000
BETA_START = 1e-4
BETA_END = 0.02
# Evaluation: the same images, time steps and noise in every case, so that held-out losses
# compare across cases. From nearly clean (t = 10) to nearly pure noise (t = 900).
EVAL_TIMESTEPS = (10, 100, 300, 600, 900)
EVAL_SEED = 0
EVAL_MAX_IMAGES = 256
EVAL_BATCH_SIZE = 128
SYNTHETIC_NUM_TRAIN = 60_000
SYNTHETIC_NUM_VAL = 10_000
PAD = (UNET_SIDE - data.IMAGE_SIDE) // 2


def alpha_bars() -> torch.Tensor:
    """abar_t for t = 0..T-1, float64 on the CPU (Ho et al. 2020's linear schedule)."""
    betas = torch.linspace(BETA_START, BETA_END, NUM_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)  # (T,)


def noised(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, abar: torch.Tensor):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, per image: (B, 1, H, W)."""
    a = abar[t].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return (a.sqrt() * x0 + (1 - a).sqrt() * eps).to(x0.dtype)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of time steps (B,) -> (B, dim), as the Transformer's positions
    (Vaswani et al. 2017, section 3.5): sines then cosines at frequencies 10000^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)  # (dim/2,)
    angles = t.float().unsqueeze(1) * freqs  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # (B, dim)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, temb: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(UNET_GROUPS, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb, c_out)
        self.norm2 = nn.GroupNorm(UNET_GROUPS, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.temb(F.silu(emb))[:, :, None, None]  # time step, per channel
        h = self.conv2(F.silu(self.norm2(h)))  # (B, C_out, H, W)
        return self.skip(x) + h


class UNet(nn.Module):
    """(noisy images (B, 1, 32, 32), time steps (B,)) -> predicted noise (B, 1, 32, 32)."""

    def __init__(self, shape: UNetSize):
        super().__init__()
        c = shape.channels
        temb = 4 * c
        self.channels = c
        self.time_mlp = nn.Sequential(nn.Linear(c, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(1, c, 3, padding=1)
        widths = [c * m for m in shape.mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = c
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(shape.blocks):
                blocks.append(ResBlock(ch, width, temb))
                ch = width
            self.down.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(ch, ch, temb), ResBlock(ch, ch, temb)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            blocks = nn.ModuleList([ResBlock(ch + width, width, temb)])
            blocks.extend(ResBlock(width, width, temb) for _ in range(shape.blocks - 1))
            self.up.append(blocks)
            ch = width
            if level > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.norm_out = nn.GroupNorm(UNET_GROUPS, c)
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, t = batch  # (B, 1, H, W), (B,)
        emb = self.time_mlp(timestep_embedding(t, self.channels).to(x.dtype))  # (B, 4c)
        h = self.inp(x)  # (B, c, H, W)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)  # (B, c_level, H / 2^level, W / 2^level)
            if level < len(self.downsample):
                h = self.downsample[level](h)  # halves H and W
        for block in self.mid:
            h = block(h, emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)  # the same level's skip joins
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.norm_out(h)))  # (B, 1, H, W)


def loss_fn(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """DDPM's simplified objective: mean squared error of the predicted noise, in float32."""
    return F.mse_loss(eps_pred.float(), eps.float())


def to_unet_images(images: torch.Tensor) -> torch.Tensor:
    """MNIST-normalised (N, 1, 28, 28) -> pixels in [-1, 1], padded to (N, 1, 32, 32) with -1."""
    pixels = images * data.MNIST_STD + data.MNIST_MEAN  # back to [0, 1]
    return F.pad(pixels * 2 - 1, (PAD, PAD, PAD, PAD), value=-1.0)


def load(case: Case) -> tuple[torch.Tensor, torch.Tensor, DataInfo]:
    """Training and held-out images (N, 1, 32, 32) in [-1, 1] on the CPU, and what they are."""
    root = data.data_root(case.data_path)
    if case.data == "mnist" or (case.data == "auto" and data.mnist_present(root)):
        splits = data.mnist(root)
    elif case.data in ("auto", "digits"):
        splits = data.digits()
    else:
        assert case.data == "synthetic", f"unvalidated data {case.data!r}"
        return synthetic(case.seed)
    return to_unet_images(splits.x_train), to_unet_images(splits.x_val), splits.info


def synthetic(seed: int) -> tuple[torch.Tensor, torch.Tensor, DataInfo]:
    """Uniform pixels in [-1, 1]: no structure to learn beyond the noise itself."""
    generator = torch.Generator().manual_seed(seed)
    num = SYNTHETIC_NUM_TRAIN + SYNTHETIC_NUM_VAL
    images = torch.rand(num, 1, UNET_SIDE, UNET_SIDE, generator=generator) * 2 - 1
    recipe = f"synthetic-diffusion-seed{seed}-rand-cpu-{SYNTHETIC_NUM_TRAIN}+{SYNTHETIC_NUM_VAL}"
    info = DataInfo(
        "synthetic",
        num_train=SYNTHETIC_NUM_TRAIN,
        num_val=SYNTHETIC_NUM_VAL,
        sha256=hashlib.sha256(recipe.encode()).hexdigest(),
    )
    return images[:SYNTHETIC_NUM_TRAIN], images[SYNTHETIC_NUM_TRAIN:], info


def build(case: Case, device: torch.device, dtype: torch.dtype) -> Workload:
    assert case.model_size is not None and case.batch_size is not None, "unresolved case"
    x_train, x_val, info = load(case)
    torch.manual_seed(case.seed)
    shape = size_of("diffusion", case.model_size)
    assert isinstance(shape, UNetSize)
    # Built on the CPU, then moved: the same seed gives the same weights on every device.
    model = UNet(shape).to(device=device, dtype=dtype)

    train = x_train.to(device=device, dtype=dtype)  # (N, 1, 32, 32)
    abar = alpha_bars().to(device=device, dtype=torch.float32)  # (T,)
    what = f"training images of {info.name}"
    indices = shuffled_batches(len(train), case.batch_size, device, case.seed, what)
    # A generator on the device: time steps and noise are drawn there without a host copy.
    generator = torch.Generator(device=device).manual_seed(case.seed)

    def next_batch() -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        x0 = train[indices()]  # (B, 1, 32, 32)
        t = torch.randint(NUM_TIMESTEPS, (len(x0),), generator=generator, device=device)  # (B,)
        eps = torch.randn(x0.shape, generator=generator, device=device, dtype=dtype)
        return (noised(x0, t, eps, abar), t), eps

    # Fixed evaluation: the first held-out images, each at every EVAL_TIMESTEPS, with noise
    # from a CPU generator of a fixed seed (the same values on every device).
    val = x_val[:EVAL_MAX_IMAGES]
    eval_eps = torch.randn(
        (len(EVAL_TIMESTEPS), *val.shape), generator=torch.Generator().manual_seed(EVAL_SEED)
    )  # (timesteps, N, 1, 32, 32)
    val, eval_eps = val.to(device=device, dtype=dtype), eval_eps.to(device=device, dtype=dtype)

    def evaluate(model: nn.Module) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=device)
        with torch.no_grad():
            for k, step in enumerate(EVAL_TIMESTEPS):
                for start in range(0, len(val), EVAL_BATCH_SIZE):
                    x0 = val[start : start + EVAL_BATCH_SIZE]
                    eps = eval_eps[k, start : start + EVAL_BATCH_SIZE]
                    t = torch.full((len(x0),), step, device=device)
                    pred = model((noised(x0, t, eps, abar), t))
                    total += F.mse_loss(pred.float(), eps.float(), reduction="sum")
        model.train(was_training)
        # One host read at the end, outside the timed window: the mean per pixel over all.
        return {"loss": total.item() / (len(EVAL_TIMESTEPS) * val.numel())}

    return Workload(
        model=model,
        loss_fn=loss_fn,
        next_batch=next_batch,
        evaluate=evaluate,
        samples_per_step=case.batch_size,
        tokens_per_step=None,
        data=info,
    )
