"""The `mine` job: one streaming pass of a trained model over a dataset's evaluation patches gives each
unit's influence frequency per class, its top-N patches with binarised masks, and its best-matching
concept; the results replace the model's previous units in one transaction."""

from __future__ import annotations

import gc
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from django.db import connection, models, transaction

from mining.influence import InfluenceTally, coverage, select_units_disjoint
from mining.masks import heat_tiles, to_image_box, unit_masks, unit_responses
from mining.networks import checkpoint_load, feature_extractor
from mining.pipeline import MiningResult, mask_sprite, patch_concept_masks, run_mining_pass, unit_concept_ious
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.topk import UnitTopK

from ..errors import ApplicationError
from ..files import delete_quietly, media_path, read_mask, unique_name, write_bytes_atomic, write_png_atomic
from ..models import Concept, Dataset, Finding, Image, Job, Patch, TopActivation, TrainedModel, Unit
from .job_state import JobReporter, Sharded
from .patch_data import PatchSplit, patch_split_load

__all__ = [
    "MINE_DEFAULTS",
    "mine_params_validate",
    "run_mine",
    "units_mine",
    "units_mine_merge",
    "units_mine_shard",
    "units_store",
]

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
    model_id = params.get("model")
    trained = TrainedModel.objects.filter(pk=model_id).first() if model_id is not None else None
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


@dataclass
class _KeptPatch:
    """What storing the units needs about one patch a unit kept (the crop is already written)."""

    patch_id: int
    image_id: int
    box: list[int]  # (x0, y0, x1, y1) in the image
    crop: str  # media name of the crop PNG
    concepts: dict[str, np.ndarray]  # concept code -> bool (S, S) mask inside the patch, at mask size S


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
    final_layer = info.model.get_submodule("fc")  # every supported network is a torchvision ResNet
    assert isinstance(final_layer, torch.nn.Linear)
    return _Loaded(trained, feature_extractor(info.model), final_layer.weight.detach().clone(), split)


def _torch_threads() -> None:
    torch.set_num_threads(int(os.environ.get("DEEPMINER_TORCH_THREADS", os.cpu_count() or 1)))


def _mine(loaded: _Loaded, params: dict[str, Any], progress: ProgressFn, cancelled: CancelFn) -> MiningResult:
    return run_mining_pass(
        loaded.extractor,
        loaded.split.crops,
        loaded.fc_weight,
        input_ids=loaded.split.rows,
        dataset_size=loaded.split.total,
        batch_size=params["batch_size"],
        top_n=params["top_n"],
        quantile=params["quantile"],
        progress=progress,
        cancelled=cancelled,
    )


def _mask_side(params: dict[str, Any], split: PatchSplit) -> int:
    # Masks at 64 px: a layer4 response map is 4x4 at 128 px input, so 64 px keeps its upsampled shape
    # while the upsampling, IoU and sprites of 512 units x 64 patches cost a quarter of full size.
    return min(int(params.get("mask_size", 64)), split.crops.shape[-1])


def _kept_rows(topk: UnitTopK) -> list[int]:
    """Rows (of the whole split) that some unit keeps among its top N, ascending."""
    return sorted(set(topk.ids[:, : topk.kept].ravel().tolist()))


def units_mine(*, job: Job, progress: ProgressFn, cancelled: CancelFn) -> dict[str, Any]:
    """Mine in this process (one shard)."""
    _torch_threads()
    progress(0, 1, "Loading the model and patches")
    loaded = _load(job)
    result = _mine(loaded, job.params, progress, cancelled)
    check_cancel(cancelled)
    progress(1, 1, "Matching units with concepts and writing masks")
    side = _mask_side(job.params, loaded.split)
    crops: list[str] = []
    try:
        patches = _kept_patches(loaded.split, _kept_rows(result.topk), side, crops)
        return units_store(
            trained=loaded.trained,
            result=result,
            patches=patches,
            side=side,
            total=loaded.split.total,
            params=job.params,
        )
    except BaseException:
        delete_quietly(crops)
        raise


def units_mine_shard(*, job: Job, shard: int, shards: int, progress: ProgressFn, cancelled: CancelFn) -> str:
    """Mine one shard of the images (balanced by patch count); returns the media name of the shard's state
    (per-unit top-N, quantile values, influence counts and its candidate patches), which the merge reads.

    Every patch the merge can keep is in some unit's top N of its shard, so the shards crop those
    candidates and match them with concepts, in parallel, and the merge only picks among them.
    """
    _torch_threads()
    loaded = _load(job, shard=(shard, shards))
    result = _mine(loaded, job.params, progress, cancelled)
    check_cancel(cancelled)
    progress(len(loaded.split), len(loaded.split), "cropping and matching candidate patches")
    side = _mask_side(job.params, loaded.split)
    crops: list[str] = []
    try:
        patches = _kept_patches(loaded.split, _kept_rows(result.topk), side, crops)
        state = {
            "topk": result.topk.state_dict(),
            "influence": result.influence.state_dict(),
            "patches": _patches_state(patches, side),
            "side": side,
            "total": loaded.split.total,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return write_bytes_atomic(unique_name("shards", f"job{job.pk}-shard{shard}", ".pt"), buffer.getvalue())
    except BaseException:
        delete_quietly(crops)
        raise


def units_mine_merge(*, job: Job, shard_files: list[str]) -> dict[str, Any]:
    """Merge the shards' states exactly (top-N of the shard top-Ns) and store the units; crops of
    candidate patches that no unit kept are deleted."""
    candidates: dict[int, _KeptPatch] = {}
    kept: dict[int, _KeptPatch] = {}
    try:
        states = [torch.load(media_path(name), map_location="cpu", weights_only=True) for name in shard_files]
        for state in states:
            candidates.update(_patches_from_state(state["patches"]))
        topk = UnitTopK.from_state_dict(states[0]["topk"])
        influence = InfluenceTally.from_state_dict(states[0]["influence"])
        for state in states[1:]:
            topk.merge(UnitTopK.from_state_dict(state["topk"]))
            influence.merge(InfluenceTally.from_state_dict(state["influence"]))
        trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
        kept = {row: candidates.pop(row) for row in _kept_rows(topk)}  # candidates keeps the others
        summary = units_store(
            trained=trained,
            result=MiningResult(topk, influence, np.zeros((0, 0))),
            patches=kept,
            side=int(states[0]["side"]),
            total=int(states[0]["total"]),
            params=job.params,
        )
    except BaseException:
        delete_quietly([patch.crop for patch in [*candidates.values(), *kept.values()]])
        raise
    finally:
        delete_quietly(shard_files)
    delete_quietly([patch.crop for patch in candidates.values()])
    return {**summary, "shards": len(shard_files)}


def _kept_patches(split: PatchSplit, rows: list[int], side: int, written: list[str]) -> dict[int, _KeptPatch]:
    """Write the crops of some rows (of the whole split) of `split` and cut their concept masks
    (side x side); each finding mask is read once. Crop names are appended to `written` as they go."""
    local = np.searchsorted(split.rows, rows)  # rows of a shard are ascending positions in the whole split
    image_ids = [split.image_ids[index] for index in split.table.image_index[local].tolist()]
    findings: dict[int, list[tuple[np.ndarray, list[str]]]] = {image_id: [] for image_id in image_ids}
    for finding in Finding.objects.filter(image_id__in=set(image_ids)).prefetch_related("concepts"):
        codes = [concept.code for concept in finding.concepts.all()]
        if codes:
            findings[finding.image_id].append((read_mask(finding.mask.name), codes))
    patches: dict[int, _KeptPatch] = {}
    for row, index, image_id in zip(rows, local.tolist(), image_ids, strict=True):
        patch_id, box = int(split.patch_ids[index]), split.table.boxes[index]
        # Derived files a re-run rebuilds: atomic, but no fsync and light compression (thousands of them).
        name = write_png_atomic(
            unique_name("patches", f"patch{patch_id}", ".png"),
            split.crops[index].numpy(),
            durable=False,
            compress_level=1,
        )
        written.append(name)
        concepts = patch_concept_masks(findings[image_id], box, side)
        patches[row] = _KeptPatch(patch_id, image_id, box.tolist(), name, concepts)
    return patches


def _patches_state(patches: dict[int, _KeptPatch], side: int) -> dict[str, Any]:
    """Kept patches as lists and one bool tensor, which ``torch.load(weights_only=True)`` reads back."""
    rows = sorted(patches)
    concept_rows: list[int] = []
    concept_codes: list[str] = []
    concept_masks: list[np.ndarray] = []
    for row in rows:
        for code, mask in patches[row].concepts.items():
            concept_rows.append(row)
            concept_codes.append(code)
            concept_masks.append(mask)
    stacked = np.stack(concept_masks) if concept_masks else np.zeros((0, side, side), dtype=bool)
    return {
        "rows": rows,
        "patch_ids": [patches[row].patch_id for row in rows],
        "image_ids": [patches[row].image_id for row in rows],
        "boxes": [patches[row].box for row in rows],
        "crops": [patches[row].crop for row in rows],
        "concept_rows": concept_rows,
        "concept_codes": concept_codes,
        "concept_masks": torch.from_numpy(stacked),
    }


def _patches_from_state(state: dict[str, Any]) -> dict[int, _KeptPatch]:
    patches = {
        row: _KeptPatch(patch_id, image_id, box, crop, {})
        for row, patch_id, image_id, box, crop in zip(
            state["rows"], state["patch_ids"], state["image_ids"], state["boxes"], state["crops"], strict=True
        )
    }
    masks = state["concept_masks"].numpy()
    for row, code, mask in zip(state["concept_rows"], state["concept_codes"], masks, strict=True):
        patches[row].concepts[code] = mask
    return patches


def units_store(
    *,
    trained: TrainedModel,
    result: MiningResult,
    patches: dict[int, _KeptPatch],
    side: int,
    total: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Turn a (merged) mining result into Unit and TopActivation rows plus mask sprites, replacing old ones.

    patches: every row (of the whole split, `total` patches) that some unit keeps, crop written;
    side: the masks' side in pixels.
    """
    frequency, influence_sum = result.influence.frequency, result.influence.influence_sum
    selected = select_units_disjoint(frequency, influence_sum, params["per_class"])  # 3 x 20 distinct units
    written: list[str] = []
    try:
        with _cyclic_gc_paused():
            units, tops = _units_build(trained, result, selected, patches, side, written)
            return _replace_units(
                trained, units, tops, list(patches.values()), total, coverage(frequency, selected), selected, params
            )
    except BaseException:
        delete_quietly(written)
        raise


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Storing units builds ~100k small containers that all live until the transaction ends; each
    full pass of the cyclic collector meanwhile walks the whole heap (~0.2 s here) and frees nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_Tops = list[list[tuple[_KeptPatch, float, list[int]]]]  # per unit: (patch, score, box in the image) by rank


def _units_build(
    trained: TrainedModel,
    result: MiningResult,
    selected: dict[int, list[int]],
    patches: dict[int, _KeptPatch],
    side: int,
    written: list[str],
) -> tuple[list[Unit], _Tops]:
    """One unsaved Unit per channel, with its concept match, mask sprite and (selected units) heat sprite
    written, and its top patches."""
    topk, classes = result.topk, trained.classes
    frequency, influence_sum = result.influence.frequency, result.influence.influence_sum
    rank_of = {unit: (classes[c], rank) for c, units in selected.items() for rank, unit in enumerate(units, 1)}
    threshold_tensor, locations = topk.thresholds(), topk.locations()
    thresholds = threshold_tensor.tolist()
    rows_kept = topk.ids[:, : topk.kept].tolist()  # (U, n) rows of the whole split
    codes = {c.code: c for c in Concept.objects.all()}
    units: list[Unit] = []
    tops: _Tops = []
    for u in range(topk.num_units):
        responses = unit_responses(topk, u, side)
        masks, inner = unit_masks(topk, u, side, thresholds=threshold_tensor, locations=locations, responses=responses)
        unit_patches = [patches[row] for row in rows_kept[u]]
        best, best_iou, top_ious = unit_concept_ious(masks, [patch.concepts for patch in unit_patches])
        # Derived files a re-run rebuilds: atomic, but no fsync and light compression (thousands of them).
        sprite = write_png_atomic(
            unique_name("masks", f"model{trained.pk}-unit{u}", ".png"),
            mask_sprite(masks),
            durable=False,
            compress_level=1,
        )
        written.append(sprite)
        heat = ""
        if u in rank_of:  # heat maps for the selected units, the ones experts survey (60 files, not 512)
            heat = write_png_atomic(
                unique_name("masks", f"model{trained.pk}-unit{u}-heat", ".png"),
                mask_sprite(heat_tiles(responses, float(topk.scores[u, 0]))),
                durable=False,
                compress_level=1,
            )
            written.append(heat)
        boxes = to_image_box(np.array([patch.box for patch in unit_patches]), inner, side).tolist()
        selected_for, rank = rank_of.get(u, ("", None))
        units.append(
            Unit(
                model=trained,
                layer=FEATURE_LAYER,
                channel=u,
                selected_for=selected_for,
                selection_rank=rank,
                frequency={name: int(frequency[c, u]) for c, name in enumerate(classes)},
                influence_sum={name: round(float(influence_sum[c, u]), 6) for c, name in enumerate(classes)},
                threshold=float(thresholds[u]),
                max_activation=float(topk.scores[u, 0]),
                suggested_concept=codes.get(best) if best else None,
                suggested_iou=round(best_iou, 6),
                concept_ious=top_ious,
                mask_sprite=sprite,
                heat_sprite=heat,
            )
        )
        tops.append([(patch, float(topk.scores[u, i]), boxes[i]) for i, patch in enumerate(unit_patches)])
    return units, tops


def _column(field: Any) -> str:
    """The database column of a concrete field (get_field's type also admits relations without one)."""
    assert isinstance(field, models.Field) and field.column
    return field.column


def _insert_rows(model: type[models.Model], fields: list[str], rows: list[tuple[Any, ...]]) -> None:
    """INSERT plain rows (values already as the database takes them) in one executemany: bulk_create's
    per-object model and field work was most of the time of storing ~33k TopActivation rows."""
    quote, meta = connection.ops.quote_name, model._meta
    columns = ", ".join(quote(_column(meta.get_field(name))) for name in fields)
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


@transaction.atomic
def _replace_units(
    trained: TrainedModel,
    units: list[Unit],
    tops: _Tops,
    patches: list[_KeptPatch],
    total: int,
    cover: dict[int, float],
    selected: dict[int, list[int]],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Replace, never duplicate: the old units disappear in the transaction the new ones appear in."""
    old_sprites = [
        name
        for pair in Unit.objects.filter(model=trained).values_list("mask_sprite", "heat_sprite")
        for name in pair
        if name
    ]
    Unit.objects.filter(model=trained).delete()
    created = Unit.objects.bulk_create(units, batch_size=500)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {quote(Patch._meta.db_table)} SET {quote(Patch._meta.get_field('crop').column)} = %s "
            f"WHERE {quote(Patch._meta.pk.column)} = %s",
            [(patch.crop, patch.patch_id) for patch in patches],
        )
    adapt_json = connection.ops.adapt_json_value  # what JSONField.get_db_prep_save does, minus its checks
    _insert_rows(
        TopActivation,
        ["unit", "rank", "score", "patch", "image", "box"],
        [
            (unit.pk, rank, score, patch.patch_id, patch.image_id, adapt_json(box, None))
            for unit, unit_tops in zip(created, tops, strict=True)
            for rank, (patch, score, box) in enumerate(unit_tops, 1)
        ],
    )
    classes = trained.classes
    matched = sum(1 for unit in units if unit.selected_for and unit.suggested_iou >= 0.04)
    trained.mining = {
        "patches": total,
        "splits": params["splits"],
        "top_n": params["top_n"],
        "quantile": params["quantile"],
        "units": len(units),
        "coverage": {classes[c]: round(v, 4) for c, v in cover.items()},
        "selected": {classes[c]: units_ for c, units_ in selected.items()},
        "selected_matched_iou_0_04": matched,
    }
    trained.save(update_fields=["mining"])
    transaction.on_commit(lambda: delete_quietly(old_sprites))
    return {"trained_model": trained.pk, **trained.mining}


def run_mine(job: Job, reporter: JobReporter) -> dict[str, Any] | Sharded:
    shards = int(job.params.get("shards", 1)) if job.dataset else 1
    if shards > 1:  # shards are whole images: no more shards than images with patches to mine
        mined = Patch.objects.filter(image__dataset=job.dataset, image__split__in=job.params["splits"])
        shards = min(shards, mined.values("image_id").distinct().count())
    if shards <= 1:
        return units_mine(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
    reporter.progress(0, shards, f"Mining in {shards} shards")
    return Sharded(shards=shards)
