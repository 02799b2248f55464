"""Training a patch classifier: pure functions in the style of torchvision's reference scripts.

``train`` runs ``train_one_epoch`` then ``evaluate`` (on the validation patches) for every epoch and
keeps the best epoch. Patches come in as one uint8 tensor (N, S, S) (see ``mining.data``); each step
gathers a batch of it, applies a random dihedral symmetry (mammograms have no preferred orientation:
left and right breasts are mirror images, and CC and MLO views are rotated), standardises it with
``to_input`` and takes one optimiser step.

Two presets (:class:`TrainConfig`):

* ``from_scratch`` (the default: no pretrained weights can be had offline) -- AdamW, warm-up then
  cosine decay, class-balanced sampling. Mammogram patches are ~90% normal; without balancing the
  network first learns to say "normal" everywhere.
* ``fine_tune`` -- the DeepMiner paper's SGD settings, meant for a network loaded from a weights
  file. From random weights they learn far too slowly.

A trial on 500 demo phantoms (ResNet-18, 128-px patches, 11,412 training patches, 2 CPU threads,
about 2.7 min an epoch on an idle machine): ``from_scratch`` with ``epochs=1`` reached a malignant AUC
of 0.973 on the hold-out split and 0.998 on the test split; ``fine_tune`` from random weights for
one epoch, 0.78 and 0.87.

The best epoch is the one with the highest validation AUC of the *malignant* class against the rest
(class index 2) when there are three classes -- detecting cancer is what matters, and benign and
normal patches trade places harmlessly -- else the macro (mean one-vs-rest) AUC. Ties, and epochs
whose AUC cannot be computed (a class absent from validation), fall back to the lower validation loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from .data import batches, to_input
from .devices import to_device
from .patch_store import Crops, gather
from .patches import CLASSES
from .precision import FP32, Precision
from .progress import CancelFn, ProgressFn, check_cancel, never_cancelled, no_progress
from .training_state import TrainingState

__all__ = [
    "MALIGNANT",
    "SYMMETRIES",
    "EpochFn",
    "TrainConfig",
    "TrainResult",
    "TrainingRun",
    "Validation",
    "balanced_order",
    "dihedral",
    "evaluate",
    "learning_rate",
    "predict",
    "random_dihedral",
    "random_shift",
    "train",
    "train_one_epoch",
    "validation_aucs",
]

MALIGNANT = CLASSES.index("malignant")
SYMMETRIES = ("dihedral", "flip")

# Called after every finished epoch with what resuming after it needs (its last history record included).
EpochFn = Callable[[TrainingState], None]


@dataclass
class TrainConfig:
    """Every training setting; ``dataclasses.asdict`` gives its JSON form."""

    optimizer: str = "adamw"  # "adamw" | "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # "cosine" (after warm-up) | "constant"
    warmup_fraction: float = 0.05  # share of all steps with a linear warm-up
    batch_size: int = 64
    epochs: int = 12
    balanced: bool = True  # draw classes equally often (with replacement)
    augment: bool = True  # random symmetries of each image, drawn from ``symmetries``
    # "dihedral": flips and transposes, the 8 symmetries of a square (mammogram patches have no preferred
    # orientation); "flip": left-right only (radiographs of one kind share an orientation: a transposed
    # hip is no hip, and left hips are stored mirrored anyway).
    symmetries: str = "dihedral"
    # Then a random cyclic shift of the whole batch by up to this share of the side on each axis (one
    # draw per batch; 0: none). A whole radiograph's anatomy sits a little differently in every image.
    shift_fraction: float = 0.0
    channels_last: bool = True
    seed: int = 0
    eval_batch_size: int = 128
    progress_every: int = 5  # batches between progress calls

    @classmethod
    def from_scratch(cls, **changes: Any) -> TrainConfig:
        """AdamW lr 1e-3, weight decay 0.05, 5% warm-up + cosine, batch 64, balanced, augmented."""
        return replace(cls(), **changes)

    @classmethod
    def fine_tune(cls, **changes: Any) -> TrainConfig:
        """The DeepMiner paper: SGD lr 1e-4, momentum 0.9, weight decay 1e-4, batch 32, constant lr."""
        paper = cls(
            optimizer="sgd",
            lr=1e-4,
            momentum=0.9,
            weight_decay=1e-4,
            batch_size=32,
            schedule="constant",
            warmup_fraction=0.0,
        )
        return replace(paper, **changes)


@dataclass
class TrainResult:
    """best_state: the best epoch's state dict (CPU copies); val_probs: float (N_val, C) of that epoch.

    history: one dict per epoch: epoch, train_loss, val_loss, val_auc ({class name: AUC or None}),
    val_macro_auc, lr (at the epoch's last step), seconds.
    """

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_auc: float | None
    history: list[dict] = field(default_factory=list)
    val_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


# ------------------------------------------------------------------------------ pieces


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """The learning rate of optimiser step ``step`` (0-based) out of ``total_steps``.

    Warm-up: ``lr * (step + 1) / W`` for the first W = round(warmup_fraction * total) steps, so the
    first step already moves; then cosine from lr at step W down towards 0 at step ``total_steps``.
    """
    warmup = round(config.warmup_fraction * total_steps)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    if config.schedule != "cosine":
        raise ValueError(f"unknown schedule {config.schedule!r}")
    progress = (step - warmup) / max(1, total_steps - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def balanced_order(labels: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """int64 (count,) sample indices, each class equally likely (with replacement).

    labels: int64 (N,). Classes absent from ``labels`` are simply never drawn.
    """
    class_counts = torch.bincount(labels)
    weights = 1.0 / class_counts[labels].to(torch.float64)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def dihedral(batch: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply symmetry ``codes[i]`` (0..7) to square image ``batch[i]``: (B, S, S) -> (B, S, S), any dtype.

    Bit 0 flips left-right, bit 1 flips up-down, bit 2 transposes; together the 8 symmetries of a
    square. Three masked selects over the whole batch: cheaper than grouping by code on uint8.
    """
    for bit, change in ((1, lambda x: x.flip(-1)), (2, lambda x: x.flip(-2)), (4, lambda x: x.transpose(-1, -2))):
        mask = (codes & bit).bool().view(-1, 1, 1)
        if mask.any():
            batch = torch.where(mask, change(batch), batch)
    return batch


def random_dihedral(batch: torch.Tensor, generator: torch.Generator, symmetries: str = "dihedral") -> torch.Tensor:
    """A uniformly random symmetry per image of (B, S, S): one of the 8 dihedral ones, or ("flip") the
    identity or the left-right flip."""
    if symmetries not in SYMMETRIES:
        raise ValueError(f"symmetries must be one of {SYMMETRIES}, got {symmetries!r}")
    codes = torch.randint(0, 8 if symmetries == "dihedral" else 2, (len(batch),), generator=generator)
    return dihedral(batch, codes)


def random_shift(batch: torch.Tensor, generator: torch.Generator, fraction: float) -> torch.Tensor:
    """The batch (B, S, S) rolled by one random (dy, dx), each in [-k, k] with k = round(fraction * S);
    unchanged, and no random draw made, when k is 0."""
    k = round(fraction * batch.shape[-1])
    if k <= 0:
        return batch
    dy, dx = torch.randint(-k, k + 1, (2,), generator=generator).tolist()
    return torch.roll(batch, shifts=(dy, dx), dims=(-2, -1))


def _logits(
    model: nn.Module,
    patches: Crops,
    batch_size: int,
    cancelled: CancelFn = never_cancelled,
    precision: Precision = FP32,
) -> torch.Tensor:
    """float32 (N, C) logits of uint8 patches (N, S, S), in eval mode, on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode():
        for batch in gather(patches, list(batches(len(patches), batch_size))):
            check_cancel(cancelled)
            with precision.autocast():
                logits = model(to_input(to_device(batch, device)))
            out.append(logits.float().cpu())
    return torch.cat(out) if out else torch.zeros((0, 0))


def predict(model: nn.Module, patches: Crops, batch_size: int = 128) -> np.ndarray:
    """Softmax probabilities, float32 (N, C), of uint8 patches (N, S, S) (eval mode, no gradients).

    The model is switched to eval mode and channels_last (the faster layout for CPU convolutions).
    """
    model.to(memory_format=torch.channels_last)
    return torch.softmax(_logits(model, patches, batch_size), dim=1).numpy()


def validation_aucs(labels: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    """One-vs-rest ROC AUC per class; None for a class that is absent from, or is all of, ``labels``.

    labels: int (N,); probs: float (N, C); names: C class names, the keys of the result.
    """
    aucs: dict[str, float | None] = {}
    for index, name in enumerate(names):
        positive = labels == index
        defined = 0 < positive.sum() < len(labels)
        aucs[name] = float(roc_auc_score(positive, probs[:, index])) if defined else None
    return aucs


def _selection_auc(aucs: dict[str, float | None], names: Sequence[str]) -> float | None:
    """The AUC that picks the best epoch: malignant vs rest with 3 classes, else the macro AUC."""
    if len(names) == len(CLASSES):
        return aucs[names[MALIGNANT]]
    return _macro(aucs)


def _macro(aucs: dict[str, float | None]) -> float | None:
    defined = [auc for auc in aucs.values() if auc is not None]
    return float(np.mean(defined)) if defined else None


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    # The fused kernels update all parameters in one pass: an AdamW step on a ResNet-18 takes
    # ~6 ms instead of ~40 ms on 2 CPU cores (the default per-tensor loop), ~4% of a 128-px step.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'adamw' or 'sgd'")


# ------------------------------------------------------------------------------ loop


@dataclass
class TrainingRun:
    """What one training run carries from step to step and epoch to epoch (build it with ``start``).

    ``generator`` makes every random draw of the loop (sampling order, augmentation); ``step`` counts
    the optimiser steps taken, which set the learning rate (``learning_rate``).
    """

    model: nn.Module
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    steps_per_epoch: int
    batch_size: int
    progress: ProgressFn
    cancelled: CancelFn
    device: torch.device
    step: int = 0
    precision: Precision = FP32  # the forward's autocast; ``scaler`` scales fp16's loss (else a pass-through)
    scaler: torch.amp.GradScaler = field(default_factory=FP32.grad_scaler)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    @classmethod
    def start(
        cls,
        model: nn.Module,
        config: TrainConfig,
        num_samples: int,
        *,
        progress: ProgressFn = no_progress,
        cancelled: CancelFn = never_cancelled,
        precision: Precision = FP32,
    ) -> TrainingRun:
        """A run at step 0 over ``num_samples`` training patches: puts ``model`` in the configured memory
        format and builds its optimiser, the generator (seeded with ``config.seed``) and ``precision``'s scaler."""
        batch_size = min(config.batch_size, num_samples)
        model.to(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
        return cls(
            model,
            config,
            _optimizer(model, config),
            torch.Generator().manual_seed(config.seed),
            max(1, num_samples // batch_size),
            batch_size,
            progress,
            cancelled,
            next(model.parameters()).device,
            precision=precision,
            scaler=precision.grad_scaler(),
        )


@dataclass
class Validation:
    """What ``evaluate`` measured: ``loss``, the mean cross-entropy; ``aucs``, {class name: one-vs-rest AUC,
    or None where undefined}; ``macro_auc``, their mean (None if none is defined); ``probs``, float32 (M, C)."""

    loss: float
    aucs: dict[str, float | None]
    macro_auc: float | None
    probs: np.ndarray


def train(
    model: nn.Module,
    train_patches: Crops,
    train_labels: torch.Tensor,
    val_patches: Crops,
    val_labels: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    progress: ProgressFn = no_progress,
    cancelled: CancelFn = never_cancelled,
    num_classes: int = 3,
    class_names: Sequence[str] | None = None,
    precision: Precision = FP32,
    on_epoch: EpochFn | None = None,
    resume: TrainingState | None = None,
) -> TrainResult:
    """Train ``model`` in place and return its best epoch (by validation AUC; see the module doc).

    The model is left with the last epoch's weights; load ``result.best_state`` for the best.

    train_patches: uint8 (N, S, S); train_labels: int64 (N,) in [0, num_classes);
    val_patches: uint8 (M, S, S); val_labels: int64 (M,). An epoch is N samples (balanced or a
    shuffle), in ``N // batch_size`` full batches (a partial batch would upset BatchNorm).
    ``class_names`` keys the per-class AUCs; default CLASSES for 3 classes, else "0", "1", ....
    ``precision``: the forward passes' autocast (``mining.precision``; losses and AUCs stay float32).
    ``on_epoch`` gets a TrainingState after every epoch; ``resume`` (one of those, of the same config and
    data) goes on at the epoch after its own, giving what the uninterrupted run gives.
    Raises Cancelled when ``cancelled()`` turns true (checked between batches); ValueError for a ``resume``
    of another configuration or data size.
    """
    config = config or TrainConfig.from_scratch()
    names = _class_names(num_classes, class_names)
    _check_inputs(train_patches, train_labels, val_patches, val_labels, num_classes, config)
    torch.manual_seed(config.seed)
    run = TrainingRun.start(
        model, config, len(train_patches), progress=progress, cancelled=cancelled, precision=precision
    )
    best: TrainResult | None = None
    history: list[dict] = []
    if resume is not None:
        best, history = _restore(run, resume)
    for epoch in range(len(history) + 1, config.epochs + 1):
        started = time.perf_counter()
        train_loss = train_one_epoch(run, train_patches, train_labels, epoch)
        progress(run.step, run.total_steps, f"epoch {epoch}/{config.epochs} · validating")
        validation = evaluate(
            model,
            val_patches,
            val_labels,
            names,
            batch_size=config.eval_batch_size,
            cancelled=cancelled,
            precision=precision,
        )
        record = _epoch_record(epoch, train_loss, validation, run)
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if best is None or _better(record, history[best.best_epoch - 1], names):
            best = TrainResult(_cpu_copy(model.state_dict()), epoch, _selection_auc(record["val_auc"], names))
            best.val_probs = validation.probs
        if on_epoch is not None:
            on_epoch(_capture(run, history, best))
    assert best is not None  # epochs >= 1 is checked in _check_inputs, a resumed state has one
    best.history = history
    return best


def _capture(run: TrainingRun, history: list[dict], best: TrainResult) -> TrainingState:
    """The run's state after its last epoch (``history[-1]``), as CPU copies."""
    epoch = len(history)
    return TrainingState(
        config=asdict(run.config),
        epoch=epoch,
        step=run.step,
        steps_per_epoch=run.steps_per_epoch,
        model=_cpu_copy(run.model.state_dict()),
        optimizer=run.optimizer.state_dict(),
        generator=run.generator.get_state(),
        torch_rng=torch.get_rng_state(),
        history=[dict(record) for record in history],
        best_epoch=best.best_epoch,
        best_val_auc=best.best_val_auc,
        best_state=None if best.best_epoch == epoch else best.best_state,
        best_val_probs=best.val_probs,
        scaler=run.scaler.state_dict(),
    )


def _restore(run: TrainingRun, state: TrainingState) -> tuple[TrainResult, list[dict]]:
    """Put ``run`` where ``state`` left its run; returns the best epoch and the history so far."""
    config = asdict(run.config)
    if state.config != config:
        changed = sorted(key for key in state.config.keys() | config.keys() if state.config.get(key) != config.get(key))
        raise ValueError(f"the training state is of another configuration (differs in {', '.join(changed)})")
    if state.steps_per_epoch != run.steps_per_epoch or not 1 <= state.epoch == len(state.history):
        raise ValueError(
            f"the training state is of other data: {state.steps_per_epoch} steps an epoch, now {run.steps_per_epoch}"
        )
    run.model.load_state_dict(state.model)
    run.optimizer.load_state_dict(state.optimizer)
    run.generator.set_state(state.generator)
    torch.set_rng_state(state.torch_rng)
    run.step = state.step
    if state.scaler:  # fp16: the loss scale reached so far (an fp32 or bf16 scaler has none)
        run.scaler.load_state_dict(state.scaler)
    best = TrainResult(_cpu_copy(state.best_weights()), state.best_epoch, state.best_val_auc)
    best.val_probs = state.best_val_probs
    return best, [dict(record) for record in state.history]


def train_one_epoch(run: TrainingRun, patches: Crops, labels: torch.Tensor, epoch: int) -> float:
    """One epoch (``run.steps_per_epoch`` optimiser steps) on uint8 ``patches`` (N, S, S) with int64
    ``labels`` (N,); returns the mean training loss. ``epoch`` (1-based) is only for progress messages.

    The model is put in training mode. Raises Cancelled when ``run.cancelled()`` turns true (checked
    before each batch).
    """
    config, model = run.config, run.model
    model.train()
    order = _epoch_order(labels, run.steps_per_epoch * run.batch_size, config, run.generator)
    total_loss = torch.zeros((), dtype=torch.float64)
    # The order is drawn before any batch, so a store's loader workers may read ahead of the steps.
    row_sets = [order[b * run.batch_size : (b + 1) * run.batch_size] for b in range(run.steps_per_epoch)]
    for batch, (rows, images) in enumerate(zip(row_sets, gather(patches, row_sets), strict=True)):
        check_cancel(run.cancelled)
        loss = _step(run, images, labels[rows])
        total_loss += loss
        if (batch + 1) % config.progress_every == 0 or batch + 1 == run.steps_per_epoch:
            message = (
                f"epoch {epoch}/{config.epochs} · batch {batch + 1}/{run.steps_per_epoch} · loss {loss.item():.3f}"
            )
            run.progress(run.step, run.total_steps, message)
    return float(total_loss) / run.steps_per_epoch


def _step(run: TrainingRun, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimiser step on uint8 images (B, S, S) with int64 targets (B,); returns the detached loss."""
    lr = learning_rate(run.step, run.total_steps, run.config)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    if run.config.augment:
        images = random_dihedral(images, run.generator, run.config.symmetries)
        images = random_shift(images, run.generator, run.config.shift_fraction)
    # uint8 crosses to the device (a quarter of the float bytes) and is standardised there.
    inputs = to_input(to_device(images, run.device))
    if not run.config.channels_last:
        inputs = inputs.contiguous()
    with run.precision.autocast():
        logits = run.model(inputs)
    loss = F.cross_entropy(logits.float(), to_device(targets, run.device))
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)  # skips the step whose fp16 gradients overflowed
    run.scaler.update()
    run.step += 1
    return loss.detach().cpu()


def _epoch_order(labels: torch.Tensor, count: int, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """int64 (count,) training sample indices for one epoch."""
    if config.balanced:
        return balanced_order(labels, count, generator)
    return torch.randperm(len(labels), generator=generator)[:count]


def evaluate(
    model: nn.Module,
    patches: Crops,
    labels: torch.Tensor,
    class_names: Sequence[str],
    *,
    batch_size: int = 128,
    cancelled: CancelFn = never_cancelled,
    precision: Precision = FP32,
) -> Validation:
    """Validation loss and per-class AUCs of ``model`` on uint8 ``patches`` (M, S, S) with int64 ``labels``
    (M,): what ``train`` measures after every epoch. ``class_names``: the C names keying the AUCs.

    The model is put in eval mode and run without gradients. (For the clinical report on a test split,
    with CIs, operating points and breakdowns, see ``mining.metrics.evaluate``.)
    """
    logits = _logits(model, patches, batch_size, cancelled, precision)  # (M, C)
    probs = torch.softmax(logits, dim=1).numpy()
    aucs = validation_aucs(labels.numpy(), probs, class_names)
    return Validation(float(F.cross_entropy(logits, labels)), aucs, _macro(aucs), probs)


def _epoch_record(epoch: int, train_loss: float, validation: Validation, run: TrainingRun) -> dict:
    """The epoch's history entry (see ``TrainResult``), less its ``seconds``."""
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": validation.loss,
        "val_auc": validation.aucs,
        "val_macro_auc": validation.macro_auc,
        "lr": learning_rate(run.step - 1, run.total_steps, run.config),
    }


def _better(record: dict, best: dict, names: Sequence[str]) -> bool:
    """Higher selection AUC wins; an undefined AUC loses to any defined one; ties go to lower val loss."""
    new, old = _selection_auc(record["val_auc"], names), _selection_auc(best["val_auc"], names)
    new_key = (-math.inf if new is None else new, -record["val_loss"])
    old_key = (-math.inf if old is None else old, -best["val_loss"])
    return new_key > old_key


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        return list(class_names)
    return list(CLASSES) if num_classes == len(CLASSES) else [str(i) for i in range(num_classes)]


def _check_inputs(
    train_patches: Crops,
    train_labels: torch.Tensor,
    val_patches: Crops,
    val_labels: torch.Tensor,
    num_classes: int,
    config: TrainConfig,
) -> None:
    if config.epochs < 1 or config.batch_size < 1 or config.progress_every < 1:
        raise ValueError("epochs, batch_size and progress_every must be at least 1")
    for name, patches, labels in (("train", train_patches, train_labels), ("val", val_patches, val_labels)):
        if patches.dtype != torch.uint8 or patches.ndim != 3:
            raise ValueError(f"{name} patches must be uint8 (N, S, S), got {patches.dtype} {tuple(patches.shape)}")
        if len(labels) != len(patches) or len(patches) == 0:
            raise ValueError(f"{name}: {len(patches)} patches and {len(labels)} labels (need as many, at least 1)")
        if labels.dtype != torch.int64 or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name} labels must be int64 in [0, {num_classes})")
