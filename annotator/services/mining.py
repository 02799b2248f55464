"""The `mine` job: two streaming passes of a trained model over a dataset's mining split (test by default).

The first gives each unit's influence frequency per class (over the images), its top-N patches and its
exact top-quantile threshold; the second, with those thresholds, each unit's Network Dissection IoU with
every concept over all the split's patches. The results replace the model's previous units in one
transaction. Sharded, each pass is a chord of shards of whole images: the first's states are merged
into the thresholds the second's shards read, and the second's IoU sums are merged with them at the end.
"""

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

from mining.causal import ClassDrops, causal_drops, causal_summary
from mining.dissection import INTERPRETABLE_IOU, ConceptIoUTally, best_concept
from mining.influence import InfluenceTally, coverage, select_units
from mining.masks import heat_tiles, to_image_box, unit_masks, unit_responses
from mining.networks import checkpoint_load, feature_extractor
from mining.pipeline import MiningResult, mask_sprite, patch_concept_masks, run_dissection_pass, run_mining_pass
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.topk import UnitTopK

from ..errors import ApplicationError
from ..files import (
    delete_quietly,
    media_local_file,
    media_read_bytes,
    media_storage,
    read_mask,
    storage_file_names,
    unique_name,
    write_bytes_atomic,
    write_png_atomic,
)
from ..models import Concept, Dataset, Finding, Image, Job, Patch, TopActivation, TrainedModel, Unit
from .compute import worker_device, worker_precision
from .job_state import JobReporter, Sharded
from .network_input import model_window
from .patch_data import PatchSplit, patch_split_load

__all__ = [
    "MINE_DEFAULTS",
    "mine_params_validate",
    "run_mine",
    "units_dissect_shard",
    "units_mine",
    "units_mine_discard",
    "units_mine_merge",
    "units_mine_reduce",
    "units_mine_shard",
    "units_select",
    "units_store",
]

MINE_DEFAULTS: dict[str, Any] = {
    "splits": ["test"],  # units are mined on test only: never train, and hold-out is kept to evaluate explanations
    "top_n": 64,
    "per_class": 20,
    "quantile": 0.005,
    "batch_size": 64,
    "shards": 1,  # > 1: a Celery chord of shards, merged exactly
}
FEATURE_LAYER = "layer4"
# The causal check: each class's inputs are sampled to bound its cost (1 + 1 + draws forwards a class).
CAUSAL_INPUTS_PER_CLASS = 256
CAUSAL_DRAWS = 5
CAUSAL_SEED = 0


def mine_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    model_id = params.get("model")
    trained = TrainedModel.objects.filter(pk=model_id).first() if model_id is not None else None
    if trained is None:
        raise ApplicationError("a mining job needs a trained model (params.model)")
    if dataset is not None and trained.dataset_id != dataset.pk:
        raise ApplicationError(f"model #{trained.pk} was trained on another dataset")
    if trained.patch_params.get("whole_image"):
        raise ApplicationError(f"model #{trained.pk} is a whole-image classifier: mining reads a patch model's units")
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
    model: torch.nn.Module  # the plain ResNet (the causal check hooks its layer4)
    extractor: torch.nn.Module  # the same weights, returning {"features", "logits"}
    fc_weight: torch.Tensor
    split: PatchSplit


@dataclass
class _KeptPatch:
    """What storing the units needs about one patch a unit kept (the crop is already written)."""

    patch_id: int
    image_id: int
    box: list[int]  # (x0, y0, x1, y1) in the image
    crop: str  # media name of the crop PNG


def _load(job: Job, shard: tuple[int, int] | None = None) -> _Loaded:
    trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
    try:
        info, _ = checkpoint_load(media_local_file(trained.checkpoint.name))
    except ValueError as exc:
        raise ApplicationError(str(exc)) from exc
    size = int(trained.patch_params.get("input_size") or 0) or None
    split = patch_split_load(
        dataset=trained.dataset,
        splits=job.params["splits"],
        classes=trained.classes,
        window=model_window(trained),
        size=size,
        shard=shard,
    )
    final_layer = info.model.get_submodule("fc")  # every supported network is a torchvision ResNet
    assert isinstance(final_layer, torch.nn.Linear)
    model = info.model.to(worker_device())  # the passes run on its device and tally on the CPU
    weight = final_layer.weight.detach().cpu().clone()
    return _Loaded(trained, model, feature_extractor(model), weight, split)


def _torch_threads() -> None:
    torch.set_num_threads(int(os.environ.get("DEEPMINER_TORCH_THREADS", os.cpu_count() or 1)))


def _first_half(progress: ProgressFn) -> ProgressFn:
    """The first of the two passes reports the first half of the job's progress."""

    def report(done: int, total: int, message: str = "") -> None:
        progress(done, 2 * total, message)

    return report


def _second_half(progress: ProgressFn) -> ProgressFn:
    def report(done: int, total: int, message: str = "") -> None:
        progress(total + done, 2 * total, message)

    return report


def _mine(loaded: _Loaded, params: dict[str, Any], progress: ProgressFn, cancelled: CancelFn) -> MiningResult:
    """The first pass: top patches, thresholds and influence counts."""
    return run_mining_pass(
        loaded.extractor,
        loaded.split.crops,
        loaded.fc_weight,
        input_ids=loaded.split.rows,
        image_index=loaded.split.table.image_index,
        dataset_size=loaded.split.total,
        batch_size=params["batch_size"],
        top_n=params["top_n"],
        quantile=params["quantile"],
        progress=_first_half(progress),
        cancelled=cancelled,
        precision=worker_precision(),
    )


def _dissect(
    loaded: _Loaded,
    thresholds: torch.Tensor,
    side: int,
    params: dict[str, Any],
    progress: ProgressFn,
    cancelled: CancelFn,
) -> ConceptIoUTally:
    """The second pass: every unit's IoU sums with every concept over all of this split's patches."""
    return run_dissection_pass(
        loaded.extractor,
        loaded.split.crops,
        thresholds,
        _SplitConcepts(loaded.split, side),
        side,
        batch_size=params["batch_size"],
        progress=_second_half(progress),
        cancelled=cancelled,
        precision=worker_precision(),
    )


class _SplitConcepts:
    """The concept masks (side x side) of a split's patches by position, for the second pass.

    One query finds the findings; an image's finding masks are read when its first patch is asked for
    and dropped when the next image starts (patches come grouped by image), so at most one image's
    masks are held.
    """

    def __init__(self, split: PatchSplit, side: int) -> None:
        self.split, self.side = split, side
        self._findings: dict[int, list[tuple[str, list[str]]]] = {}
        for finding in Finding.objects.filter(image_id__in=split.image_ids).prefetch_related("concepts"):
            codes = [concept.code for concept in finding.concepts.all()]
            if codes:
                self._findings.setdefault(finding.image_id, []).append((finding.mask.name, codes))
        self._image: int | None = None
        self._masks: list[tuple[np.ndarray, list[str]]] = []

    def __call__(self, start: int, stop: int) -> list[dict[str, np.ndarray]]:
        table = self.split.table
        result: list[dict[str, np.ndarray]] = []
        for index in range(start, stop):
            image_id = self.split.image_ids[int(table.image_index[index])]
            if image_id != self._image:
                self._image = image_id
                self._masks = [(read_mask(name), codes) for name, codes in self._findings.get(image_id, [])]
            result.append(patch_concept_masks(self._masks, table.boxes[index], self.side) if self._masks else {})
        return result


def units_select(influence: InfluenceTally, params: dict[str, Any]) -> dict[int, list[int]]:
    """The per-class lists of the reference code: a unit frequent for two classes is in both."""
    return select_units(influence.frequency, influence.influence_sum, params["per_class"])


def _causal_rows(labels: np.ndarray, selected: dict[int, list[int]]) -> dict[int, np.ndarray]:
    """The causal check's inputs: up to CAUSAL_INPUTS_PER_CLASS of each class's patches of the mined
    split (a seeded sample), as positions in the whole split, ascending; labels: the whole split's."""
    rng = np.random.default_rng(CAUSAL_SEED)
    chosen: dict[int, np.ndarray] = {}
    for c in selected:
        rows = np.flatnonzero(labels == c)
        if len(rows) > CAUSAL_INPUTS_PER_CLASS:
            rows = np.sort(rng.choice(rows, CAUSAL_INPUTS_PER_CLASS, replace=False))
        chosen[c] = rows.astype(np.int64)
    return chosen


def _causal_drops(
    loaded: _Loaded, selected: dict[int, list[int]], causal_rows: dict[int, np.ndarray], params: dict[str, Any]
) -> dict[int, ClassDrops]:
    """Zero each class's selected units, and as many random ones (seeded draws), on the sampled inputs
    that lie in this (whole or shard) split: each input's drop of its class's probability."""
    here = loaded.split.rows  # ascending positions in the whole split
    inputs = {}
    for c, positions in causal_rows.items():
        rows = np.asarray(positions, dtype=np.int64)
        mine = rows[np.isin(rows, here)]
        inputs[c] = (mine, loaded.split.crops[torch.from_numpy(np.searchsorted(here, mine))])
    return causal_drops(
        loaded.model,
        inputs,
        {c: units for c, units in selected.items() if units},
        int(loaded.fc_weight.shape[1]),
        draws=CAUSAL_DRAWS,
        seed=CAUSAL_SEED,
        batch_size=params["batch_size"],
    )


def _causal_figures(
    drops: dict[int, ClassDrops], selected: dict[int, list[int]], classes: list[str], num_units: int
) -> dict[str, Any]:
    """The causal check's figures for the model page: each class's mean drops with bootstrap 95%
    intervals over its inputs (the selected units zeroed, and as many random ones)."""
    check = causal_summary(
        drops, {c: units for c, units in selected.items() if units}, num_units, draws=CAUSAL_DRAWS, seed=CAUSAL_SEED
    )
    per_class = {classes[c]: {k: v for k, v in entry.items() if k != "random_units"} for c, entry in check.items()}
    return {
        "per_class": per_class,
        "inputs_per_class_at_most": CAUSAL_INPUTS_PER_CLASS,
        "draws": CAUSAL_DRAWS,
        "seed": CAUSAL_SEED,
    }


_DROP_FIELDS = ("rows", "selected", "random")


def _drops_state(drops: dict[int, ClassDrops]) -> dict[int, dict[str, torch.Tensor]]:
    """As tensors (float64 kept exactly), which ``torch.load(weights_only=True)`` reads back."""
    return {c: {key: torch.from_numpy(getattr(d, key)) for key in _DROP_FIELDS} for c, d in drops.items()}


def _drops_from_states(states: list[dict[int, dict[str, torch.Tensor]]]) -> dict[int, ClassDrops]:
    """The shards' drops joined per class, in the order of the whole split."""
    classes = sorted({c for state in states for c in state})
    joined = {}
    for c in classes:
        parts = [ClassDrops(*(state[c][key].numpy() for key in _DROP_FIELDS)) for state in states if c in state]
        joined[c] = ClassDrops.concatenate(parts)
    return joined


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
    side = _mask_side(job.params, loaded.split)
    ious = _dissect(loaded, result.topk.thresholds(), side, job.params, progress, cancelled)
    check_cancel(cancelled)
    progress(1, 1, "Checking the selected units by zeroing them")
    selected = units_select(result.influence, job.params)
    drops = _causal_drops(loaded, selected, _causal_rows(loaded.split.labels, selected), job.params)
    causal = _causal_figures(drops, selected, loaded.trained.classes, int(loaded.fc_weight.shape[1]))
    check_cancel(cancelled)
    progress(1, 1, "Writing the units and their masks")
    crops: list[str] = []
    try:
        patches = _kept_patches(loaded.split, _kept_rows(result.topk), crops)
        return units_store(
            trained=loaded.trained,
            result=result,
            ious=ious,
            selected=selected,
            causal=causal,
            patches=patches,
            side=side,
            total=loaded.split.total,
            params=job.params,
        )
    except BaseException:
        delete_quietly(crops)
        raise


def units_mine_shard(*, job: Job, shard: int, shards: int, progress: ProgressFn, cancelled: CancelFn) -> str:
    """First pass over one shard of the images (balanced by patch count); returns the media name of the
    shard's state (per-unit top-N, quantile values, influence counts and its candidate patches).

    Every patch the merge can keep is in some unit's top N of its shard, so the shards crop those
    candidates in parallel, and the merge only picks among them.
    """
    _torch_threads()
    loaded = _load(job, shard=(shard, shards))
    result = _mine(loaded, job.params, progress, cancelled)
    check_cancel(cancelled)
    crops: list[str] = []
    try:
        patches = _kept_patches(loaded.split, _kept_rows(result.topk), crops)
        state = {
            "topk": result.topk.state_dict(),
            "influence": result.influence.state_dict(),
            "patches": _patches_state(patches),
            "side": _mask_side(job.params, loaded.split),
            "total": loaded.split.total,
            "labels": torch.from_numpy(loaded.split.labels),  # the causal check samples the whole split
            "units": int(loaded.fc_weight.shape[1]),
        }
        return _save_state(state, f"job{job.pk}-shard{shard}")
    except BaseException:
        delete_quietly(crops)
        raise


def units_mine_reduce(*, job: Job, shard_files: list[str]) -> str:
    """Merge the first pass's shard states exactly (top-N of the shard top-Ns, quantile levels, counts);
    returns the media name of the merged state, whose thresholds the second pass's shards read. Crops of
    candidates no unit kept are deleted; the shard files too."""
    candidates: dict[int, _KeptPatch] = {}
    try:
        states = [_load_state(name) for name in shard_files]
        for state in states:
            candidates.update(_patches_from_state(state["patches"]))
        topk = UnitTopK.from_state_dict(states[0]["topk"])
        influence = InfluenceTally.from_state_dict(states[0]["influence"])
        for state in states[1:]:
            topk.merge(UnitTopK.from_state_dict(state["topk"]))
            influence.merge(InfluenceTally.from_state_dict(state["influence"]))
        kept = {row: candidates.pop(row) for row in _kept_rows(topk)}  # candidates keeps the others
        # The selection is known once the counts are merged, so the second pass's shards run the
        # causal check on their own share of its inputs (in parallel, instead of in the merge).
        selected = units_select(influence, job.params)
        labels = np.concatenate([np.asarray(state["labels"]) for state in states])  # shards are in order
        merged = {
            "topk": topk.state_dict(),
            "influence": influence.state_dict(),
            "patches": _patches_state(kept),
            "side": int(states[0]["side"]),
            "total": int(states[0]["total"]),
            "units": int(states[0]["units"]),
            "selected": selected,
            "causal_rows": {c: torch.from_numpy(rows) for c, rows in _causal_rows(labels, selected).items()},
        }
        name = _save_state(merged, f"job{job.pk}-merged")
    except BaseException:
        delete_quietly([patch.crop for patch in candidates.values()])
        raise
    finally:
        delete_quietly(shard_files)
    delete_quietly([patch.crop for patch in candidates.values()])
    return name


def units_dissect_shard(
    *, job: Job, shard: int, shards: int, merged_file: str, progress: ProgressFn, cancelled: CancelFn
) -> str:
    """Second pass over one shard, at the merged thresholds, and the causal check on the shard's share of
    its inputs; returns the media name of its IoU sums and drops."""
    _torch_threads()
    merged = _load_state(merged_file)
    loaded = _load(job, shard=(shard, shards))
    thresholds = UnitTopK.from_state_dict(merged["topk"]).thresholds()
    tally = _dissect(loaded, thresholds, int(merged["side"]), job.params, progress, cancelled)
    check_cancel(cancelled)
    drops = _causal_drops(loaded, merged["selected"], merged["causal_rows"], job.params)
    state = {"iou": tally.state_dict(), "drops": _drops_state(drops)}
    return _save_state(state, f"job{job.pk}-iou{shard}")


def units_mine_merge(*, job: Job, merged_file: str, iou_files: list[str]) -> dict[str, Any]:
    """Add the second pass's IoU sums and store the units of the merged first pass."""
    merged: dict[str, Any] = {}
    try:
        merged = _load_state(merged_file)
        states = [_load_state(name) for name in iou_files]
        tallies = [ConceptIoUTally.from_state_dict(state["iou"]) for state in states]
        for tally in tallies[1:]:
            tallies[0].merge(tally)
        influence = InfluenceTally.from_state_dict(merged["influence"])
        selected = merged["selected"]
        trained = TrainedModel.objects.select_related("dataset").get(pk=job.params["model"])
        drops = _drops_from_states([state["drops"] for state in states])
        causal = _causal_figures(drops, selected, trained.classes, int(merged["units"]))
        summary = units_store(
            trained=trained,
            result=MiningResult(UnitTopK.from_state_dict(merged["topk"]), influence, np.zeros((0, 0))),
            ious=tallies[0],
            selected=selected,
            causal=causal,
            patches=_patches_from_state(merged["patches"]),
            side=int(merged["side"]),
            total=int(merged["total"]),
            params=job.params,
        )
    except BaseException:
        if merged:
            delete_quietly(merged["patches"]["crops"])
        raise
    finally:
        delete_quietly([merged_file, *iou_files])
    return {**summary, "shards": len(iou_files)}


def _save_state(state: dict[str, Any], stem: str) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_bytes_atomic(unique_name("shards", stem, ".pt"), buffer.getvalue())


def _load_state(name: str) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(io.BytesIO(media_read_bytes(name)), map_location="cpu", weights_only=True)
    return state


def units_mine_discard(*, job_id: int) -> None:
    """Delete what the shards of a job that ended before its merge left behind: every state file of its
    passes (``shards/job<id>-…``, written by any worker) and the crops those states list.

    A shard calls it when it ends the job or finds the job ended after its own work: the one whose file
    lands last sees the job ended, or its file is there when the ender looks, so no file is missed.
    """
    prefix = f"shards/job{job_id}-"
    states = (n for n in storage_file_names(media_storage(), "shards") if n.startswith(prefix) and n.endswith(".pt"))
    for name in sorted(states):
        try:
            patches = _load_state(name).get("patches") or {}
        except (OSError, RuntimeError):  # deleted meanwhile by another shard's cleanup
            patches = {}
        delete_quietly([*patches.get("crops", []), name])


def _kept_patches(split: PatchSplit, rows: list[int], written: list[str]) -> dict[int, _KeptPatch]:
    """Write the crops of some rows (of the whole split) of `split`; crop names are appended to `written`
    as they go."""
    local = np.searchsorted(split.rows, rows)  # rows of a shard are ascending positions in the whole split
    image_ids = [split.image_ids[index] for index in split.table.image_index[local].tolist()]
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
        patches[row] = _KeptPatch(patch_id, image_id, box.tolist(), name)
    return patches


def _patches_state(patches: dict[int, _KeptPatch]) -> dict[str, Any]:
    """Kept patches as lists, which ``torch.load(weights_only=True)`` reads back."""
    rows = sorted(patches)
    return {
        "rows": rows,
        "patch_ids": [patches[row].patch_id for row in rows],
        "image_ids": [patches[row].image_id for row in rows],
        "boxes": [patches[row].box for row in rows],
        "crops": [patches[row].crop for row in rows],
    }


def _patches_from_state(state: dict[str, Any]) -> dict[int, _KeptPatch]:
    return {
        row: _KeptPatch(patch_id, image_id, box, crop)
        for row, patch_id, image_id, box, crop in zip(
            state["rows"], state["patch_ids"], state["image_ids"], state["boxes"], state["crops"], strict=True
        )
    }


def units_store(
    *,
    trained: TrainedModel,
    result: MiningResult,
    ious: ConceptIoUTally,
    selected: dict[int, list[int]],
    causal: dict[str, Any],
    patches: dict[int, _KeptPatch],
    side: int,
    total: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Turn a (merged) mining result into Unit and TopActivation rows plus mask sprites, replacing old ones.

    ious: the second pass's IoU sums over the whole split; selected: `units_select`'s lists; causal:
    `_causal`'s figures; patches: every row (of the whole split,
    `total` patches) that some unit keeps, crop written; side: the masks' side in pixels.
    """
    frequency = result.influence.frequency
    written: list[str] = []
    try:
        with _cyclic_gc_paused():
            units, tops = _units_build(trained, result, ious, selected, patches, side, written)
            summary = {
                "patches": total,
                "images": result.influence.images,
                "coverage": coverage(frequency, selected),
                "causal": causal,
            }
            return _replace_units(trained, units, tops, list(patches.values()), summary, selected, params)
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
    ious: ConceptIoUTally,
    selected: dict[int, list[int]],
    patches: dict[int, _KeptPatch],
    side: int,
    written: list[str],
) -> tuple[list[Unit], _Tops]:
    """One unsaved Unit per channel, with its concept match, mask sprite and (selected units) heat sprite
    written, and its top patches."""
    topk, classes = result.topk, trained.classes
    frequency, influence_sum = result.influence.frequency, result.influence.influence_sum
    ranks: dict[int, dict[str, int]] = {}  # unit -> class -> rank in that class's list
    for c, class_units in selected.items():
        for rank, unit in enumerate(class_units, 1):
            ranks.setdefault(unit, {})[classes[c]] = rank
    iou_by_code = ious.ious()  # code -> float (U,), over the whole split
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
        unit_ious = {code: float(values[u]) for code, values in iou_by_code.items()}
        found = best_concept(unit_ious)  # (code or None, IoU)
        best, best_iou = found
        top_ious = sorted(((code, iou) for code, iou in unit_ious.items() if iou > 0), key=lambda kv: (-kv[1], kv[0]))
        # Derived files a re-run rebuilds: atomic, but no fsync and light compression (thousands of them).
        sprite = write_png_atomic(
            unique_name("masks", f"model{trained.pk}-unit{u}", ".png"),
            mask_sprite(masks),
            durable=False,
            compress_level=1,
        )
        written.append(sprite)
        heat = ""
        if u in ranks:  # heat maps for the selected units, the ones experts survey (60 files, not 512)
            heat = write_png_atomic(
                unique_name("masks", f"model{trained.pk}-unit{u}-heat", ".png"),
                mask_sprite(heat_tiles(responses, float(topk.scores[u, 0]))),
                durable=False,
                compress_level=1,
            )
            written.append(heat)
        boxes = to_image_box(np.array([patch.box for patch in unit_patches]), inner, side).tolist()
        # The unit's own class for badges and order: where it ranks best (ties: the earlier class).
        unit_ranks = ranks.get(u, {})
        selected_for = min(unit_ranks, key=lambda name: (unit_ranks[name], _order(classes, name)), default="")
        units.append(
            Unit(
                model=trained,
                layer=FEATURE_LAYER,
                channel=u,
                selected_for=selected_for,
                selection_rank=unit_ranks.get(selected_for),
                selections=unit_ranks,
                frequency={name: int(frequency[c, u]) for c, name in enumerate(classes)},
                influence_sum={name: round(float(influence_sum[c, u]), 6) for c, name in enumerate(classes)},
                threshold=float(thresholds[u]),
                max_activation=float(topk.scores[u, 0]),
                suggested_concept=codes.get(best) if best else None,
                suggested_iou=round(best_iou, 6),
                concept_ious={code: round(iou, 4) for code, iou in top_ious[:5]},
                mask_sprite=sprite,
                heat_sprite=heat,
            )
        )
        tops.append([(patch, float(topk.scores[u, i]), boxes[i]) for i, patch in enumerate(unit_patches)])
    return units, tops


def _order(classes: list[str], name: str) -> int:
    return classes.index(name) if name in classes else len(classes)


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
    summary: dict[str, Any],
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
    iou_of = {unit.channel: unit.suggested_iou for unit in units}
    matched = sum(1 for class_units in selected.values() for u in class_units if iou_of[u] > INTERPRETABLE_IOU)
    trained.mining = {
        "patches": summary["patches"],
        "images": summary["images"],
        "splits": params["splits"],
        "top_n": params["top_n"],
        "quantile": params["quantile"],
        "units": len(units),
        "coverage": {classes[c]: round(v, 4) for c, v in summary["coverage"].items()},
        "selected": {classes[c]: units_ for c, units_ in selected.items()},
        "selections": sum(len(class_units) for class_units in selected.values()),
        "selected_matched_iou_0_04": matched,  # (class, unit) selections with dataset-wide IoU > 0.04
        "iou": "Network Dissection: summed over every patch of the mined splits",
        "causal": summary["causal"],
        "precision": worker_precision().name,  # the forward passes' (statistics are float32 whatever it is)
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
