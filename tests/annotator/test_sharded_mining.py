"""Sharded mining: a chord of shards on two real worker processes gives exactly the single-pass result."""

from __future__ import annotations

import pytest

from annotator.demo import demo_dataset_create
from annotator.models import Job, Patch, TopActivation, TrainedModel, Unit
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from tests.annotator.test_worker_integration import wait_for
from tests.conftest import WorkerProcess, _purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _snapshot(trained: TrainedModel) -> dict[int, tuple]:
    tops: dict[int, list[int]] = {}
    for unit_id, patch_id in (
        TopActivation.objects.filter(unit__model=trained).order_by("unit_id", "rank").values_list("unit_id", "patch_id")
    ):
        tops.setdefault(unit_id, []).append(patch_id)
    return {
        unit.channel: (
            unit.frequency,
            unit.threshold,
            unit.selected_for,
            unit.selections,
            unit.suggested_concept_id,
            round(unit.suggested_iou, 6),
            unit.concept_ious,
            tops[unit.pk],
        )
        for unit in Unit.objects.filter(model=trained)
    }


def _close(ours: object, theirs: object, rel: float = 1e-5) -> bool:
    """Equal structures whose floats agree to ``rel`` (ints, strings and None exactly)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(_close(ours[k], theirs[k], rel) for k in ours)
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(_close(a, b, rel) for a, b in zip(ours, theirs, strict=True))
    if isinstance(ours, float) and isinstance(theirs, float):
        return ours == pytest.approx(theirs, rel=rel, abs=1e-9)
    return ours == theirs


def test_two_workers_sharded_result_equals_single_pass(media_root, tmp_path):
    dataset, _ = demo_dataset_create(folder=tmp_path / "phantoms", n_images=24, seed=5, name="sharding")
    job_run(job_id=job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset).pk)
    train = job_create(kind=Job.Kind.TRAIN, dataset=dataset, params={"epochs": 1, "patch_size": 64})
    assert job_run(job_id=train.pk) == Job.Status.SUCCEEDED
    trained = TrainedModel.objects.get(job=train)
    params = {"model": trained.pk, "top_n": 10, "splits": ["train"]}  # the biggest split: several images per shard
    single = job_create(kind=Job.Kind.MINE, dataset=dataset, params=params)
    assert job_run(job_id=single.pk) == Job.Status.SUCCEEDED
    expected = _snapshot(trained)
    trained.refresh_from_db()
    expected_mining = {key: value for key, value in trained.mining.items() if key != "shards"}

    _purge_broker()
    workers = [WorkerProcess(media_root, tmp_path / f"w{i}.log", name=f"w{i}") for i in (1, 2)]
    try:
        sharded = job_create(kind=Job.Kind.MINE, dataset=dataset, params={**params, "shards": 2})
        job = wait_for(lambda: Job.objects.filter(pk=sharded.pk, status__in=Job.FINISHED).first(), timeout=300)
    finally:
        for worker in workers:
            worker.stop()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["shards"] == 2
    # Both processes took a shard.
    assert all("deepminer.mine_shard" in worker.log() for worker in workers), [w.log()[-2000:] for w in workers]
    assert _snapshot(trained) == expected
    # Both passes ran as chords on the two workers; coverage, IoU counts and the causal check are the same.
    assert all("deepminer.dissect_shard" in worker.log() for worker in workers), [w.log()[-2000:] for w in workers]
    trained.refresh_from_db()
    mining = {key: value for key, value in trained.mining.items() if key != "shards"}
    # The causal check's drops are float32 sums over other batches in the shards (a CPU's kernels may
    # round a batch of another size differently): equal to 1e-5, everything else exactly.
    assert _close(mining.pop("causal"), expected_mining.pop("causal"))
    assert mining == expected_mining
    # The shards wrote crops of all their candidates; the merge kept those of the patches units show.
    shown = Patch.objects.filter(top_activations__unit__model=trained).distinct()
    assert shown.exists() and all((media_root / patch.crop.name).is_file() for patch in shown)
