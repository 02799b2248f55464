"""The `mine` job: one streaming pass of a trained model over a dataset's evaluation patches gives each
unit's influence frequency per class, its top-N patches with binarised masks, and its best-matching
concept; the results replace the model's previous units in one transaction."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from django.db import transaction

from mining.influence import InfluenceTally, coverage, select_units_disjoint
from mining.networks import checkpoint_load, feature_extractor
from mining.pipeline import mask_sprite, patch_concept_masks, unit_concept_ious
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.topk import MiningResult, UnitTopK, run_mining_pass, to_image_box, unit_masks

from ..errors import ApplicationError
from ..files import delete_quietly, media_path, read_mask, unique_name, write_bytes_atomic, write_png_atomic
from ..models import Concept, Dataset, Finding, Image, Job, Patch, TopActivation, TrainedModel, Unit
from .jobs import DEFERRED, JobReporter, register_runner
from .patch_data import PatchSplit, patch_split_load

__all__ = ["MINE_DEFAULTS", "mine_params_validate", "units_mine", "units_mine_merge", "units_mine_shard", "units_store"]

MINE_DEFAULTS: dict[str, Any] = {
    "splits": ["test", "holdout"],  # never the training split: units are judged on unseen patches
    "top_n": 64,
    "per_class": 20,
    "quantile": 0.005,
    "batch_size": 64,
    "shards": 1,  # > 1: a Celery chord of shards, merged exactly
}
FEATURE_LAYER = "layer4"


def mine_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    trained = TrainedModel.objects.filter(pk=params.get("model")).first()
    if trained is None:
        raise ApplicationError("a mining job needs a trained model (params.model)")
    if dataset is not None and trained.dataset_id != dataset.pk:
        raise ApplicationError(f"model #{trained.pk} was trained on another dataset")
    cleaned = {**MINE_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}, "model": trained.pk}
    try:
        cleaned["top_n"], cleaned["per_class"] = int(cleaned["top_n"]), int(cleaned["per_class"])
        cleaned["batch_size"], cleaned["quantile"] = int(cleaned["batch_size"]), float(cleaned["quantile"])
        cleaned["shards"] = int(cleaned["shards"])
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"bad mining parameter: {exc}") from exc
    if isinstance(cleaned["splits"], str):
        cleaned["splits"] = [s.strip() for s in cleaned["splits"].split(",") if s.strip()]
    if not set(cleaned["splits"]) <= set(Image.Split.values) or not cleaned["splits"]:
        raise ApplicationError(f"splits must be among {', '.join(Image.Split.values)}")
    if not (1 <= cleaned["top_n"] <= 1024 and cleaned["per_class"] >= 1 and 0 < cleaned["quantile"] < 1):
        raise ApplicationError("need 1 <= top_n <= 1024, per_class >= 1 and 0 < quantile < 1")
    if not 1 <= cleaned["shards"] <= 64:
        raise ApplicationError("shards must be between 1 and 64")
    return cleaned


@dataclass
class _Loaded:
    trained: TrainedModel
    extractor: torch.nn.Module
    fc_weight: torch.Tensor
    split: PatchSplit


def _load(job: Job, shard: tuple[int, int] | None = None) -> _Loaded:
    trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
    try:
        info, _ = checkpoint_load(trained.checkpoint.path)
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc
    size = int(trained.patch_params.get("input_size") or 0) or None
    split = patch_split_load(
        dataset=trained.dataset, splits=job.params["splits"], classes=trained.classes, size=size, shard=shard
    )
    return _Loaded(trained, feature_extractor(info.model), info.model.fc.weight.detach().clone(), split)


def _torch_threads() -> None:
    torch.set_num_threads(int(os.environ.get("DEEPMINER_TORCH_THREADS", os.cpu_count() or 1)))


def _mine(loaded: _Loaded, params: dict[str, Any], progress: ProgressFn, cancelled: CancelFn) -> MiningResult:
    return run_mining_pass(
        loaded.extractor, loaded.split.crops, loaded.fc_weight, input_ids=loaded.split.rows,
        dataset_size=loaded.split.total, batch_size=params["batch_size"], top_n=params["top_n"],
        quantile=params["quantile"], progress=progress, cancelled=cancelled,
    )  # fmt: skip


def units_mine(*, job: Job, progress: ProgressFn, cancelled: CancelFn) -> dict[str, Any]:
    """Mine in this process (one shard)."""
    _torch_threads()
    progress(0, 1, "Loading the model and patches")
    loaded = _load(job)
    result = _mine(loaded, job.params, progress, cancelled)
    check_cancel(cancelled)
    progress(1, 1, "Matching units with concepts and writing masks")
    return units_store(trained=loaded.trained, split=loaded.split, result=result, params=job.params)


def units_mine_shard(*, job: Job, shard: int, shards: int, progress: ProgressFn, cancelled: CancelFn) -> str:
    """Mine every `shards`-th image starting at `shard`; returns the media name of the shard's state
    (per-unit top-N, quantile values and influence counts), which the merge step reads."""
    _torch_threads()
    loaded = _load(job, shard=(shard, shards))
    result = _mine(loaded, job.params, progress, cancelled)
    buffer = io.BytesIO()
    torch.save({"topk": result.topk.state_dict(), "influence": result.influence.state_dict()}, buffer)
    return write_bytes_atomic(unique_name("shards", f"job{job.pk}-shard{shard}", ".pt"), buffer.getvalue())


def units_mine_merge(*, job: Job, shard_files: list[str]) -> dict[str, Any]:
    """Merge the shards' states exactly (top-N of the shard top-Ns) and store the units."""
    try:
        states = [torch.load(media_path(name), map_location="cpu", weights_only=True) for name in shard_files]
        topk = UnitTopK.from_state_dict(states[0]["topk"])
        influence = InfluenceTally.from_state_dict(states[0]["influence"])
        for state in states[1:]:
            topk.merge(UnitTopK.from_state_dict(state["topk"]))
            influence.merge(InfluenceTally.from_state_dict(state["influence"]))
        trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
        size = int(trained.patch_params.get("input_size") or 0) or None
        split = patch_split_load(
            dataset=trained.dataset, splits=job.params["splits"], classes=trained.classes, size=size
        )
        summary = units_store(
            trained=trained, split=split, result=MiningResult(topk, influence, np.zeros((0, 0))), params=job.params
        )
    finally:
        delete_quietly(shard_files)
    return {**summary, "shards": len(shard_files)}


def _patch_concepts(split: PatchSplit, patch_rows: set[int], side: int) -> dict[int, dict[str, np.ndarray]]:
    """Concept masks (side x side) of every patch row a unit kept; each finding mask read once."""
    images = sorted({split.image_ids[split.table.image_index[row]] for row in patch_rows})
    findings: dict[int, list[tuple[np.ndarray, list[str]]]] = {image_id: [] for image_id in images}
    for finding in Finding.objects.filter(image_id__in=images).prefetch_related("concepts"):
        codes = [concept.code for concept in finding.concepts.all()]
        if codes:
            findings[finding.image_id].append((read_mask(finding.mask.name), codes))
    return {
        row: patch_concept_masks(findings[split.image_ids[split.table.image_index[row]]], split.table.boxes[row], side)
        for row in patch_rows
    }


def units_store(
    *, trained: TrainedModel, split: PatchSplit, result: MiningResult, params: dict[str, Any]
) -> dict[str, Any]:
    """Turn a (merged) mining result into Unit and TopActivation rows plus files, replacing old ones."""
    topk, tally = result.topk, result.influence
    # Masks at 64 px: a layer4 response map is 4x4 at 128 px input, so 64 px keeps its upsampled shape
    # while the upsampling, IoU and sprites of 512 units x 64 patches cost a quarter of full size.
    classes, side = trained.classes, min(int(params.get("mask_size", 64)), split.crops.shape[-1])
    frequency, influence_sum = tally.frequency, tally.influence_sum
    selected = select_units_disjoint(frequency, influence_sum, params["per_class"])  # 3 x 20 distinct units
    cover = coverage(frequency, selected)
    rank_of = {unit: (classes[c], rank) for c, units in selected.items() for rank, unit in enumerate(units, 1)}
    kept, threshold_tensor, locations = topk.kept, topk.thresholds(), topk.locations()
    thresholds = threshold_tensor.tolist()
    rows_kept = topk.ids[:, :kept].numpy()  # (U, n) rows of `split`
    concepts = _patch_concepts(split, set(rows_kept.ravel().tolist()), side)
    codes = {c.code: c for c in Concept.objects.all()}

    written: list[str] = []
    units: list[Unit] = []
    tops: list[list[tuple[int, float, list[int]]]] = []
    try:
        for u in range(topk.num_units):
            masks, inner = unit_masks(topk, u, side, thresholds=threshold_tensor, locations=locations)
            patch_rows = rows_kept[u].tolist()
            best, best_iou, top_ious = unit_concept_ious(masks, [concepts[r] for r in patch_rows])
            # Derived files a re-run rebuilds: atomic, but no fsync and light compression (thousands of them).
            sprite = write_png_atomic(unique_name("masks", f"model{trained.pk}-unit{u}", ".png"), mask_sprite(masks),
                                      durable=False, compress_level=1)  # fmt: skip
            written.append(sprite)
            boxes = to_image_box(split.table.boxes[patch_rows], inner, side)
            selected_for, rank = rank_of.get(u, ("", None))
            units.append(Unit(
                model=trained, layer=FEATURE_LAYER, channel=u, selected_for=selected_for, selection_rank=rank,
                frequency={name: int(frequency[c, u]) for c, name in enumerate(classes)},
                influence_sum={name: round(float(influence_sum[c, u]), 6) for c, name in enumerate(classes)},
                threshold=float(thresholds[u]), max_activation=float(topk.scores[u, 0]),
                suggested_concept=codes.get(best) if best else None, suggested_iou=round(best_iou, 6),
                concept_ious=top_ious, mask_sprite=sprite,
            ))  # fmt: skip
            tops.append([(r, float(topk.scores[u, i]), boxes[i].tolist()) for i, r in enumerate(patch_rows)])
        crop_names = _write_crops(split, {r for unit_rows in rows_kept.tolist() for r in unit_rows}, trained, written)
        summary = _replace_units(trained, split, units, tops, crop_names, cover, selected, params)
    except BaseException:
        delete_quietly(written)
        raise
    return summary


def _write_crops(split: PatchSplit, rows: set[int], trained: TrainedModel, written: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    for row in sorted(rows):
        name = unique_name("patches", f"patch{int(split.patch_ids[row])}", ".png")
        names[row] = write_png_atomic(name, split.crops[row].numpy(), durable=False, compress_level=1)
        written.append(name)
    return names


@transaction.atomic
def _replace_units(trained: TrainedModel, split: PatchSplit, units: list[Unit], tops: list[list[tuple[int, float, list[int]]]],
                   crop_names: dict[int, str], cover: dict[int, float], selected: dict[int, list[int]],
                   params: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Replace, never duplicate: the old units disappear in the transaction the new ones appear in."""
    old_sprites = list(Unit.objects.filter(model=trained).values_list("mask_sprite", flat=True))
    Unit.objects.filter(model=trained).delete()
    created = Unit.objects.bulk_create(units, batch_size=500)
    patches = Patch.objects.in_bulk([int(split.patch_ids[row]) for row in crop_names])
    for row, name in crop_names.items():
        patches[int(split.patch_ids[row])].crop = name
    Patch.objects.bulk_update(list(patches.values()), ["crop"], batch_size=1000)
    image_of = {int(split.patch_ids[row]): split.image_ids[split.table.image_index[row]] for row in crop_names}
    activations = [
        TopActivation(
            unit=unit,
            rank=rank,
            score=score,
            patch_id=int(split.patch_ids[row]),
            image_id=image_of[int(split.patch_ids[row])],
            box=box,
        )
        for unit, unit_tops in zip(created, tops, strict=True)
        for rank, (row, score, box) in enumerate(unit_tops, 1)
    ]
    TopActivation.objects.bulk_create(activations, batch_size=2000)
    classes = trained.classes
    matched = sum(1 for unit in units if unit.selected_for and unit.suggested_iou >= 0.04)
    trained.mining = {
        "patches": len(split), "splits": params["splits"], "top_n": params["top_n"], "quantile": params["quantile"],
        "units": len(units), "coverage": {classes[c]: round(v, 4) for c, v in cover.items()},
        "selected": {classes[c]: units_ for c, units_ in selected.items()},
        "selected_matched_iou_0_04": matched,
    }  # fmt: skip
    trained.save(update_fields=["mining"])
    transaction.on_commit(lambda: delete_quietly(old_sprites))
    return {"trained_model": trained.pk, **trained.mining}


@register_runner(Job.Kind.MINE, validate=mine_params_validate)
def run_mine(job: Job, reporter: JobReporter) -> dict[str, Any]:
    shards = min(
        int(job.params.get("shards", 1)),
        job.dataset.images.filter(split__in=job.params["splits"]).count() if job.dataset else 1,
    )
    if shards <= 1:
        return units_mine(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
    from mining.tasks import mine_chord  # the Celery side; imported late (tasks import services)

    mine_chord(job_id=job.pk, shards=shards)
    reporter.progress(0, shards, f"Mining in {shards} shards")
    return DEFERRED
