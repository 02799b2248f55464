"""Explaining images with a trained model (DeepMiner section 2.3): one at a time for the image page and
the API, cached per (image, model, method), or a whole split in a batch job (``explain_batch``).

An explanation is computed by ``mining.explain.explain_image`` at the training scale, with the units'
names as they are at that moment (``selectors.explanations.unit_names``), and stored as one row plus its
map files (RGBA heat PNGs at the page's display size): the decided class's map and each influential
unit's activation map. Files are written first and the row last, in one transaction; if the row cannot
be written the files go (a row never names a missing file).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from django.db import IntegrityError, transaction

from mining.explain import Explanation as Explained
from mining.explain import explain_image
from mining.heatmap import heat_rgba
from mining.networks import checkpoint_load
from mining.patches import PatchParams, tissue_mask

from ..errors import ApplicationError
from ..files import delete_quietly, media_local_file, read_png, unique_name, write_png_atomic
from ..models import Explanation, Image, TrainedModel, Unit, UploadedImage
from ..selectors.explanations import UnitName, unit_names
from .compute import worker_device, worker_precision
from .network_input import model_window, windowed
from .patches import patch_params_from
from .renditions import display_size

__all__ = [
    "NORMAL_CLASSES",
    "explanation_files",
    "explanation_get",
    "explanation_make",
    "network_for",
]

NORMAL_CLASSES = ("normal", "no_fracture")  # the class an image has when nothing is found
_CACHED_NETWORKS = 2


@dataclass
class Network:
    """A trained model loaded for explaining, with what explain_image needs to know about it."""

    model: torch.nn.Module
    classes: list[str]
    input_size: int
    params: PatchParams
    normal_class: int
    pooling: str  # "global" for a whole-image classifier (its own output), "local" for a patch model
    window: str  # the grey-level window of its inputs (network_input.model_window)
    lock: threading.Lock  # one explanation at a time per network (Grad-CAM and SmoothGrad run backward)


# (result with its layer4 features, the units' names, the tissue mask) -> an evaluation record
Evaluate = Callable[[Explained, dict[int, UnitName], np.ndarray], dict[str, Any]]

_networks: OrderedDict[tuple[int, str], Network] = OrderedDict()
_networks_lock = threading.Lock()


def network_for(trained: TrainedModel) -> Network:
    """The model behind ``trained``, loaded once per process (the last few are kept)."""
    key = (trained.pk, trained.checkpoint.name)
    with _networks_lock:
        if key in _networks:
            _networks.move_to_end(key)
            return _networks[key]
    try:
        info, _ = checkpoint_load(media_local_file(trained.checkpoint.name))
    except (OSError, ValueError) as exc:
        raise ApplicationError(f"model #{trained.pk}'s checkpoint cannot be read: {exc}", status=409) from exc
    classes = list(trained.classes)
    normal = next((i for i, name in enumerate(classes) if name in NORMAL_CLASSES), 0)
    input_size = int(trained.patch_params.get("input_size") or 224)
    pooling = "global" if trained.patch_params.get("whole_image") else "local"
    network = Network(
        info.model.to(worker_device()).eval(),
        classes,
        input_size,
        patch_params_from(trained.patch_params),
        normal,
        pooling,
        model_window(trained),
        threading.Lock(),
    )
    with _networks_lock:
        _networks[key] = network
        while len(_networks) > _CACHED_NETWORKS:
            _networks.popitem(last=False)
    return network


def _target(image: Image | None, upload: UploadedImage | None) -> dict[str, Any]:
    if (image is None) == (upload is None):
        raise ValueError("explain exactly one of an image or an upload")
    return {"image": image} if image is not None else {"upload": upload}


def explanation_get(
    *, trained: TrainedModel, image: Image | None = None, upload: UploadedImage | None = None, method: str = "cam"
) -> Explanation:
    """The cached explanation of an image or upload by ``trained`` with ``method``, computed if there is none."""
    target = _target(image, upload)
    if method not in Explanation.Method.values:
        raise ApplicationError(f"method must be one of {', '.join(Explanation.Method.values)}")
    cached = Explanation.objects.filter(model=trained, method=method, **target).first()
    if cached is not None:
        return cached
    return explanation_make(trained=trained, method=method, **target)


def _explain(
    network: Network, source: Image | UploadedImage, trained: TrainedModel, method: str
) -> tuple[Explained, dict[int, UnitName], np.ndarray]:
    names = unit_names(trained=trained)
    stored = read_png(source.file.name)
    tissue = tissue_mask(stored)  # found on the stored pixels, as the patches were
    pixels = windowed(stored, source, network.window)  # one read of a large image, not two
    size = display_size(int(pixels.shape[0]), int(pixels.shape[1]))
    with network.lock:
        result = explain_image(
            network.model,
            pixels,
            classes=network.classes,
            input_size=network.input_size,
            unit_names={channel: (name.label, name.source) for channel, name in names.items()},
            params=network.params,
            method=method,
            size=size,
            normal_class=network.normal_class,
            tissue=tissue,  # the background outside the body never decides
            pooling=network.pooling,
            precision=worker_precision(),
        )
    return result, names, tissue


def _write_maps(result: Explained, stem: str, written: list[str]) -> tuple[str, list[str]]:
    def write(suffix: str, values: np.ndarray) -> str:
        name = unique_name("explanations", stem, suffix)
        written.append(name)
        return write_png_atomic(name, heat_rgba(values), durable=False)  # derived: a re-run rebuilds it

    class_map = write(f"-{result.method}.png", result.class_map)
    # One scale for all unit maps: the strongest unit's peak, so the row shows their relative strength.
    peak = max((float(u.activation_map.max()) for u in result.units), default=0.0)
    unit_maps = [
        write(f"-u{u.unit}.png", np.clip(u.activation_map, 0, None) / peak if peak > 0 else u.activation_map)
        for u in result.units
    ]
    return class_map, unit_maps


def explanation_make(
    *,
    trained: TrainedModel,
    image: Image | None = None,
    upload: UploadedImage | None = None,
    method: str = "cam",
    job_id: int | None = None,
    replace: bool = False,
    evaluate: Evaluate | None = None,
) -> Explanation:
    """Compute and store the explanation of an image or upload; ``replace`` swaps an existing one (a batch
    re-run), otherwise a concurrent first computation of the same one wins and is returned. ``evaluate``
    (result, names, tissue) -> the row's evaluation record, while the result still holds its features."""
    target = _target(image, upload)
    source = image if image is not None else upload
    assert source is not None
    network = network_for(trained)
    started = time.perf_counter()
    result, names, tissue = _explain(network, source, trained, method)
    evaluation = evaluate(result, names, tissue) if evaluate is not None else {}
    written: list[str] = []
    try:
        class_map, unit_maps = _write_maps(result, f"m{trained.pk}-{'i' if image else 'u'}{source.pk}", written)
        channels = [u.unit for u in result.units]
        unit_ids = dict(Unit.objects.filter(model=trained, channel__in=channels).values_list("channel", "pk"))
        units = [
            {
                "unit": unit_ids.get(u.unit),
                "channel": u.unit,
                "influence": round(u.influence, 6),
                "max_activation": round(u.max_activation, 6),
                "label": u.label,
                "source": u.source,
                "concept": names[u.unit].concept if u.unit in names else "",
                "map": unit_maps[i],
            }
            for i, u in enumerate(result.units)
        ]
        row = Explanation(
            model=trained,
            method=method,
            job_id=job_id,
            decided=result.classes[result.decided],
            scores={name: round(float(p), 6) for name, p in zip(result.classes, result.scores, strict=True)},
            units=units,
            text=result.text,
            class_map=class_map,
            map_size=list(result.class_map.shape),
            evaluation=evaluation,
            seconds=round(time.perf_counter() - started, 4),
            **target,
        )
        old_files: list[str] = []
        with transaction.atomic():
            if replace:
                for old in Explanation.objects.select_for_update().filter(model=trained, method=method, **target):
                    old_files += explanation_files(old)
                    old.delete()
            row.save()
    except IntegrityError:
        delete_quietly(written)  # a concurrent request stored the same explanation first: use it
        existing = Explanation.objects.filter(model=trained, method=method, **target).first()
        if existing is None:
            raise
        return existing
    except BaseException:
        delete_quietly(written)
        raise
    transaction.on_commit(lambda: delete_quietly(old_files))
    return row


def explanation_files(explanation: Explanation) -> list[str]:
    """The media names an explanation row points at."""
    return [explanation.class_map.name, *(u.get("map", "") for u in explanation.units)]
