"""Sharded mining: a mine job as a chord of 2 shards on 2 worker processes vs 1 shard on 1 worker,
every worker limited to one torch thread (this machine has 2 cores). Same dataset, same model, same
broker and database, measured in the same run, from job creation to the job's end (merge included).

Run: .venv/bin/python bench/mining_shards.py [--images 120] [--repeats 1]
Uses a throwaway var folder (SQLite + filesystem broker unless DATABASE_URL / CELERY_BROKER_URL are set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = Path(tempfile.mkdtemp(prefix="dm-bench-shards-"))
os.environ.update(DEEPMINER_VAR_DIR=str(VAR), DJANGO_SETTINGS_MODULE="config.settings")
TARGET = 1.7


def setup(images: int) -> int:
    """A demo dataset with patches and a random-weight ResNet-18 (mining speed does not depend on weights)."""
    import django

    django.setup()
    from django.core.management import call_command

    from annotator.demo import demo_dataset_create
    from annotator.files import media_path
    from annotator.models import Job, TrainedModel
    from annotator.services.job_runs import job_run
    from annotator.services.jobs import job_create
    from mining.networks import build_network, checkpoint_save

    call_command("migrate", verbosity=0)
    dataset, _ = demo_dataset_create(folder=VAR / "demo", n_images=images, seed=0, name="bench-shards")
    job_run(job_id=job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset).pk)
    info = build_network("resnet18", 3)
    checkpoint_save(
        media_path("checkpoints/bench.pt"),
        model=info.model,
        architecture="resnet18",
        classes=dataset.classes,
        patch_params={"input_size": 128},
        epoch=0,
        metrics={},
        history=[],
        config={},
    )
    train = Job.objects.create(kind=Job.Kind.TRAIN, status=Job.Status.SUCCEEDED, dataset=dataset)
    trained = TrainedModel.objects.create(
        job=train,
        dataset=dataset,
        name="bench",
        architecture="resnet18",
        classes=dataset.classes,
        initialisation="random",
        checkpoint="checkpoints/bench.pt",
        patch_params={"input_size": 128},
    )
    return trained.pk


def start_workers(count: int) -> list[subprocess.Popen]:
    from config.celery import worker_argv  # imported once the environment above is set, like setup's imports

    env = {**os.environ, "DEEPMINER_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    workers = []
    for index in range(count):
        log = (VAR / f"worker{index}.log").open("w")
        workers.append(
            subprocess.Popen(
                worker_argv(f"b{index}"),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if all("ready." in (VAR / f"worker{i}.log").read_text() for i in range(count)):
            return workers
        time.sleep(0.2)
    raise RuntimeError("workers did not start")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(timeout=60)


def mine_seconds(model_id: int, shards: int) -> tuple[float, dict]:
    from annotator.models import Job, TrainedModel
    from annotator.services.jobs import job_create

    trained = TrainedModel.objects.get(pk=model_id)
    workers = start_workers(shards)
    try:
        started = time.perf_counter()
        job = job_create(
            kind=Job.Kind.MINE,
            dataset=trained.dataset,
            params={"model": model_id, "splits": ["train"], "shards": shards},
        )
        while not Job.objects.filter(pk=job.pk, status__in=Job.FINISHED).exists():
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
    finally:
        stop_workers(workers)
    job.refresh_from_db()
    if job.status != Job.Status.SUCCEEDED:
        raise RuntimeError(job.error)
    return elapsed, job.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model_id = setup(args.images)
    one, two = [], []
    for _ in range(args.repeats):
        seconds, result = mine_seconds(model_id, 1)
        one.append(seconds)
        seconds, _ = mine_seconds(model_id, 2)
        two.append(seconds)
    patches = result["patches"]
    t1, t2 = statistics.median(one), statistics.median(two)
    ratio = t1 / t2
    print(
        f"sharded mining bench: {patches} patches (train split of {args.images} phantoms), resnet18, 1 torch thread per worker"
    )
    print(f"{'setup':<28}{'seconds':>10}{'patches/s':>12}")
    print(f"{'1 worker, 1 shard':<28}{t1:>10.1f}{patches / t1:>12.1f}")
    print(f"{'2 workers, 2 shards':<28}{t2:>10.1f}{patches / t2:>12.1f}")
    print(f"speedup 2 vs 1: {ratio:.2f}x (target >= {TARGET}x)")
    print(
        json.dumps(
            {
                "bench": "mining_shards",
                "figures": {
                    "patches": patches,
                    "seconds_1_worker": round(t1, 2),
                    "seconds_2_workers": round(t2, 2),
                    "speedup_2_vs_1_workers": round(ratio, 3),
                    "repeats": args.repeats,
                },
                "targets": {"speedup_2_vs_1_workers": TARGET},
                "met": ratio >= TARGET,
            }
        )
    )


if __name__ == "__main__":
    main()
