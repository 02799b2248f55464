"""Training the sentence generator on cached region features, in the style of ``mining.training``.

Features are computed once (:func:`caption_features`) and the classifier stays frozen, so each epoch costs
only the LSTMs. Augmentation of the input image (the paper regularises with it) therefore happens when the
features are computed: each image gets ``copies`` feature sets, copy 0 from the image as it is and copies
1.. from random draws of :class:`Augmentation` (rotation, shift, zoom, brightness, contrast; a left-right
flip only if asked, though the sentences name no side), and every time an epoch draws the image it uses one
of its copies, uniformly at random. Memory: C x D float32 per copy (49 x 512: 100 KB).

``train_captioner`` runs ``train_caption_epoch`` then the validation loss for every epoch and keeps the
epoch with the lowest validation loss. Batches come from a seeded ``DataLoader`` (a ``RandomSampler`` with
its own generator, batched by a ``BatchSampler``, so a whole batch is one indexing of the cached tensors) and
are trimmed to their longest sentence. The optimiser is Adam (lr 5e-4, the chest X-ray paper's rate for its
LSTM; the hip paper gives none) with gradient-norm clipping at 5. Progress and cancellation work as in
``mining.training``: ``progress(step, total_steps, message)`` every ``progress_every`` batches and a cancel
check before each batch (raising ``Cancelled``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from .captioner import PAD, Captioner, caption_loss, region_features
from .data import PIXEL_STD, batches, to_input
from .networks import eval_mode, model_device
from .progress import CancelFn, ProgressFn, check_cancel, never_cancelled, no_progress

__all__ = [
    "Augmentation",
    "CaptionBatches",
    "CaptionRun",
    "CaptionTrainConfig",
    "CaptionTrainResult",
    "augment_inputs",
    "caption_features",
    "caption_loader",
    "caption_validation_loss",
    "train_caption_epoch",
    "train_captioner",
]


# ------------------------------------------------------------------------------------ augmentation


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random changes to an input image; each is drawn uniformly per image."""

    rotation: float = 10.0  # degrees, either way
    shift: float = 0.05  # share of each side, either way
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    brightness: float = 0.1  # added, as a share of the 8-bit range, either way
    contrast: float = 0.1  # factor in [1 - contrast, 1 + contrast] about the image's mean
    flip: bool = False  # left-right, with probability 1/2


def augment_inputs(x: torch.Tensor, generator: torch.Generator, augmentation: Augmentation) -> torch.Tensor:
    """Randomly changed copies of network input x (B, 3, H, W) (standardised as ``data.to_input``): same shape.

    One affine resampling (bilinear, edges repeated) rotates about the centre, zooms and shifts each image;
    then contrast scales it about its mean and brightness shifts it (in input units: share / PIXEL_STD).
    """
    count, _, height, width = x.shape
    a = augmentation

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = uniform(-a.rotation, a.rotation) * (math.pi / 180)
    scale = 1.0 / uniform(1 - a.zoom, 1 + a.zoom)  # the grid maps output to input: zooming in shrinks it
    flip = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0) if a.flip else torch.ones(count)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.zeros(count, 2, 3)
    # A rotation in pixel space, written in the grid's [-1, 1] coordinates of a non-square image.
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height * flip, cos
    theta[:, 0, 2], theta[:, 1, 2] = uniform(-2 * a.shift, 2 * a.shift), uniform(-2 * a.shift, 2 * a.shift)
    grid = F.affine_grid(theta.to(x.device, x.dtype), [count, 3, height, width], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = uniform(1 - a.contrast, 1 + a.contrast).view(-1, 1, 1, 1).to(x)
    brightness = (uniform(-a.brightness, a.brightness) / PIXEL_STD).view(-1, 1, 1, 1).to(x)
    return (out - mean) * contrast + mean + brightness


def caption_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    copies: int = 1,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    batch_size: int = 32,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
) -> torch.Tensor:
    """Cached region features of every image: float32 (N, copies, C, D) on the CPU.

    images: uint8 (N, H, W) grayscale (standardised by ``data.to_input``) or float (N, 3, H, W) network
    input. Copy 0 is the image as it is; copies 1.. are drawn with ``augmentation`` (default
    :class:`Augmentation`) from a generator seeded with ``seed``. The classifier runs frozen
    (``region_features``). Progress counts images; the cancel check runs before each batch.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    augmentation = augmentation or Augmentation()
    generator = torch.Generator().manual_seed(seed)
    out: torch.Tensor | None = None
    for rows in batches(len(images), batch_size):
        check_cancel(cancelled)
        part = images[rows]
        x = to_input(part) if part.dtype == torch.uint8 else part.to(torch.float32)
        for copy in range(copies):
            view = x if copy == 0 else augment_inputs(x, generator, augmentation)
            features = region_features(model, view)
            if out is None:
                out = torch.empty((len(images), copies, *features.shape[1:]), dtype=torch.float32)
            out[rows, copy] = features
        progress(rows.stop, len(images), f"features of {rows.stop}/{len(images)} images")
    if out is None:
        raise ValueError("no images")
    return out


# ----------------------------------------------------------------------------------------- batches


class CaptionBatches(Dataset):
    """Cached features and encoded sentences, indexed by a whole batch of rows at once.

    features: float (N, K, C, D) (K copies per image, one drawn per use) or (N, C, D); ids: int64 (N, L) from
    ``captioner.encode_captions``. ``self[rows]`` is (features (b, C, D), ids (b, T)), T the batch's longest.
    """

    def __init__(self, features: torch.Tensor, ids: torch.Tensor, generator: torch.Generator) -> None:
        if features.ndim == 3:
            features = features.unsqueeze(1)
        if features.ndim != 4 or len(features) != len(ids):
            raise ValueError(
                f"features (N, K, C, D) and ids (N, L) disagree: {tuple(features.shape)}, {tuple(ids.shape)}"
            )
        self.features, self.ids, self.generator = features, ids, generator
        self.lengths = (ids != PAD).sum(dim=1)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(rows)
        copies = torch.randint(self.features.shape[1], (len(index),), generator=self.generator)
        width = int(self.lengths[index].max())
        return self.features[index, copies], self.ids[index, :width]


def caption_loader(
    features: torch.Tensor, ids: torch.Tensor, batch_size: int, generator: torch.Generator
) -> DataLoader:
    """A seeded DataLoader of shuffled (features, ids) batches over :class:`CaptionBatches` (in-process)."""
    dataset = CaptionBatches(features, ids, generator)
    sampler = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None)


# ---------------------------------------------------------------------------------------- training


@dataclass
class CaptionTrainConfig:
    """Every training setting; ``dataclasses.asdict`` gives its JSON form."""

    lr: float = 5e-4
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 20
    grad_clip: float = 5.0  # max gradient norm
    seed: int = 0
    progress_every: int = 10  # batches between progress calls
    eval_batch_size: int = 256


@dataclass
class CaptionTrainResult:
    """best_state: the epoch with the lowest validation loss (CPU copies). history: one dict per epoch:
    epoch, train_loss, val_loss, seconds, tokens_per_s, plus what ``evaluate_epoch`` returned."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)


@dataclass
class CaptionRun:
    """What one training run carries from batch to batch (build it with ``start``)."""

    model: Captioner
    config: CaptionTrainConfig
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    progress: ProgressFn
    cancelled: CancelFn
    device: torch.device
    step: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @classmethod
    def start(
        cls,
        model: Captioner,
        features: torch.Tensor,
        ids: torch.Tensor,
        config: CaptionTrainConfig,
        *,
        progress: ProgressFn = no_progress,
        cancelled: CancelFn = never_cancelled,
    ) -> CaptionRun:
        """A run at step 0: Adam over the model's parameters and a loader seeded with ``config.seed``."""
        if config.epochs < 1 or config.batch_size < 1 or config.progress_every < 1:
            raise ValueError("epochs, batch_size and progress_every must be at least 1")
        params = list(model.parameters())
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
        loader = caption_loader(features, ids, config.batch_size, torch.Generator().manual_seed(config.seed))
        return cls(model, config, optimizer, loader, progress, cancelled, model_device(model))


def train_caption_epoch(run: CaptionRun, epoch: int) -> float:
    """One pass over the training sentences; returns the mean loss per sentence. Training mode (dropout on).

    ``epoch`` (1-based) is for progress messages. Raises Cancelled when ``run.cancelled()`` turns true.
    """
    model, config = run.model, run.config
    model.train()
    total, count = torch.zeros((), dtype=torch.float64), 0
    for batch, (features, ids) in enumerate(run.loader):
        check_cancel(run.cancelled)
        features, ids = features.to(run.device, non_blocking=True), ids.to(run.device, non_blocking=True)
        logits, _ = model(features, ids[:, :-1])
        loss = caption_loss(logits, ids[:, 1:])
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
        run.optimizer.step()
        run.step += 1
        total += loss.detach().cpu() * len(ids)
        count += len(ids)
        if (batch + 1) % config.progress_every == 0 or batch + 1 == run.steps_per_epoch:
            message = (
                f"epoch {epoch}/{config.epochs} · batch {batch + 1}/{run.steps_per_epoch} · loss {loss.item():.3f}"
            )
            run.progress(run.step, run.total_steps, message)
    return float(total) / max(1, count)


def caption_validation_loss(
    model: Captioner, features: torch.Tensor, ids: torch.Tensor, batch_size: int = 256
) -> float:
    """The mean length-normalised loss per sentence in eval mode. features: (N, C, D) or (N, K, C, D) (copy
    0, the image as it is, is used); ids: int64 (N, L)."""
    features = features[:, 0] if features.ndim == 4 else features
    device = model_device(model)
    total = 0.0
    with eval_mode(model), torch.inference_mode():
        for rows in batches(len(ids), batch_size):
            part = ids[rows]
            part = part[:, : int((part != PAD).sum(dim=1).max())].to(device)
            logits, _ = model(features[rows].to(device), part[:, :-1])
            total += float(caption_loss(logits, part[:, 1:])) * len(part)
    return total / max(1, len(ids))


def train_captioner(
    model: Captioner,
    train_features: torch.Tensor,
    train_ids: torch.Tensor,
    val_features: torch.Tensor,
    val_ids: torch.Tensor,
    config: CaptionTrainConfig | None = None,
    *,
    evaluate_epoch: Callable[[Captioner], dict] | None = None,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
) -> CaptionTrainResult:
    """Train ``model`` in place; return its best epoch by validation loss (the model keeps the last epoch's
    weights: load ``best_state`` for the best).

    train_features: float (N, K, C, D) or (N, C, D) from :func:`caption_features`; train_ids: int64 (N, L);
    likewise the validation set (M, ...). ``evaluate_epoch(model)``, called after each epoch in eval mode,
    may add figures to the history (e.g. validation BLEU from a beam search). Raises Cancelled.
    """
    config = config or CaptionTrainConfig()
    torch.manual_seed(config.seed)  # dropout masks
    run = CaptionRun.start(model, train_features, train_ids, config, progress=progress, cancelled=cancelled)
    tokens = int((train_ids[:, 1:] != PAD).sum())
    history: list[dict] = []
    best: CaptionTrainResult | None = None
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        train_loss = train_caption_epoch(run, epoch)
        seconds = time.perf_counter() - started
        progress(run.step, run.total_steps, f"epoch {epoch}/{config.epochs} · validating")
        check_cancel(cancelled)
        val_loss = caption_validation_loss(model, val_features, val_ids, config.eval_batch_size)
        record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds,
                  "tokens_per_s": tokens / seconds}  # fmt: skip
        if evaluate_epoch is not None:
            with eval_mode(model):
                record.update(evaluate_epoch(model))
        history.append(record)
        if best is None or val_loss < best.best_val_loss:
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best = CaptionTrainResult(state, epoch, val_loss)
    assert best is not None
    best.history = history
    return best
