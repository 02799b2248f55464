"""Benchmark: the survey page and the labelled-unit export, on PostgreSQL.

Run from the project root: ``.venv/bin/python bench/web.py [--requests 200] [--units 10000]``.
Uses ``DATABASE_URL`` if set, else PostgreSQL at 127.0.0.1 (database ``bench``); Django's test machinery
creates and drops a throw-away ``test_bench`` database, so nothing real is touched.

1. Survey page with 64 top patches, served in-process through the whole Django stack (middleware,
   session, template): p95 server time, target < 100 ms; SQL queries for 64 vs 8 patches must be equal.
   Baseline in the same run: the same page rendered from an N+1 queryset (no select_related), to show
   what the fixed query count buys.
2. Export of the labelled unit table (10k units x 3 experts, 16 top patches each): time to stream the
   CSV and the JSON, target < 3 s each; Python peak memory (tracemalloc) streaming 10k vs 1k units, target
   growth < 20%. Baseline in the same run: building the same CSV in memory before sending it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
os.environ.setdefault("DEEPMINER_VAR_DIR", str(ROOT / "var" / "bench"))

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from django.template.loader import render_to_string  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

TARGETS = {"survey_p95_ms": 100.0, "export_seconds": 3.0, "export_memory_growth": 0.20}
EXPERTS = ("ann", "bob", "cat")


def build_survey_units() -> tuple[object, object, object]:
    """Two units of one model: 64 and 8 top patches (real phantom crops on disk)."""
    from tests.factories import UserFactory, mined_unit

    large = mined_unit(n_top=64, n_images=6)
    small = mined_unit(model=large.model, n_top=8, n_images=2, seed=1, selection_rank=2)
    expert = UserFactory(username="bench-expert", groups=["expert"])
    return large, small, expert


def survey_timings(client: Client, unit, requests: int) -> tuple[list[float], int]:
    url = f"/units/{unit.pk}/"
    client.get(url)  # warm caches (templates, lexicon, session)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    query_count = len(queries)  # read now: the next request clears the connection's query log
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return times, query_count


def naive_survey_ms(unit, expert, requests: int) -> tuple[float, int]:
    """The same template fed an N+1 queryset: every tile reads its patch and image on its own."""
    from annotator.models import TopActivation
    from annotator.selectors.units import unit_survey

    factory = RequestFactory()
    request = factory.get(f"/units/{unit.pk}/")
    request.user = expert
    times, count = [], 0
    for _ in range(requests):
        start = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            context = unit_survey(unit=unit, user=expert)
            context["activations"] = list(TopActivation.objects.filter(unit=unit).order_by("rank"))
            render_to_string("annotator/unit_survey.html", {**context, "boot": {}}, request=request)
        times.append((time.perf_counter() - start) * 1000)
        count = len(queries)
    return statistics.median(times), count


def build_export_model(units: int, top: int = 16) -> object:
    """A model with `units` selected units, `top` top patches each, three experts' answers on every unit."""
    from annotator.models import Patch, TopActivation, Unit, UnitAnnotation
    from tests.factories import ImageFactory, TrainedModelFactory, UserFactory

    model = TrainedModelFactory()
    image = ImageFactory(dataset=model.dataset)
    patches = Patch.objects.bulk_create(
        [Patch(image=image, x0=0, y0=0, x1=16, y1=16, label="normal", tissue_fraction=1.0) for _ in range(500)]
    )
    classes = ["normal", "benign", "malignant"]
    rng = np.random.default_rng(0)
    created = Unit.objects.bulk_create(
        [
            Unit(
                model=model,
                layer="layer4",
                channel=c,
                selected_for=classes[c % 3],
                selection_rank=c // 3 + 1,
                frequency={name: int(v) for name, v in zip(classes, rng.integers(0, 90, 3), strict=True)},
            )
            for c in range(units)
        ],
        batch_size=2000,
    )
    TopActivation.objects.bulk_create(
        [
            TopActivation(
                unit=u, rank=r, score=1.0, patch=patches[(u.channel + r) % 500], image=image, box=[0, 0, 16, 16]
            )
            for u in created
            for r in range(1, top + 1)
        ],
        batch_size=5000,
    )
    experts = [UserFactory(username=f"{name}-{units}", groups=["expert"]) for name in EXPERTS]
    answer = [
        {"description": "circumscribed mass edge", "concept": "mass_margin.circumscribed", "association": "benign"}
    ]
    UnitAnnotation.objects.bulk_create(
        [
            UnitAnnotation(
                unit=u,
                expert=e,
                recognizable="yes" if (u.channel + i) % 4 else "no",
                phenomena=answer,
                confidence=3,
                notes="",
            )
            for u in created
            for i, e in enumerate(experts)
        ],
        batch_size=5000,
    )
    return model


def _consume(client: Client, model, fmt: str) -> int:
    response = client.get(f"/api/models/{model.pk}/units/export.{fmt}")
    assert response.status_code == 200
    return sum(chunk.count(b"\n") for chunk in response.streaming_content)


def stream_export(client: Client, model, fmt: str) -> tuple[float, int, int]:
    """Seconds to stream the whole export (median of 3), Python peak bytes while doing it (a separate
    pass: tracemalloc slows Python down), lines received."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        lines = _consume(client, model, fmt)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    _consume(client, model, fmt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak, lines


def naive_export(model) -> tuple[float, int]:
    """Build the whole CSV in memory first, as a plain HttpResponse would."""
    from annotator.selectors.units import export_csv_header, export_csv_rows, unit_export_rows

    def build() -> bytes:
        classes = list(model.classes)
        records = list(unit_export_rows(trained=model))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(export_csv_header(classes))
        writer.writerows(list(export_csv_rows(iter(records), classes)))
        return buffer.getvalue().encode()

    start = time.perf_counter()
    assert build()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--units", type=int, default=10_000)
    args = parser.parse_args()
    settings.MEDIA_ROOT = Path(os.environ["DEEPMINER_VAR_DIR"]) / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["*"]
    setup_test_environment()
    # Keep one connection across requests, as a long-lived server process does (CONN_MAX_AGE), and as
    # Django's own test client arranges; otherwise every request would pay a new PostgreSQL connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    vendor = connection.vendor
    try:
        from tests.factories import PASSWORD, UserFactory

        large, small, expert = build_survey_units()
        client = Client()
        assert client.login(username=expert.username, password=PASSWORD)
        times, queries_64 = survey_timings(client, large, args.requests)
        _, queries_8 = survey_timings(client, small, 5)
        naive_ms, naive_queries = naive_survey_ms(large, expert, 30)
        p95 = float(np.percentile(times, 95))
        median = statistics.median(times)
        print(f"database: {vendor}")
        print(f"survey page, 64 patches: median {median:.1f} ms, p95 {p95:.1f} ms over {args.requests} requests")
        print(f"  SQL queries: {queries_64} with 64 patches, {queries_8} with 8 patches")
        print(
            f"  baseline N+1 render: median {naive_ms:.1f} ms, {naive_queries} queries "
            f"({naive_ms / median:.1f}x slower)"
        )

        researcher = UserFactory(username="bench-researcher", groups=["researcher"])
        export_client = Client()
        assert export_client.login(username=researcher.username, password=PASSWORD)
        small_model = build_export_model(args.units // 10)
        big_model = build_export_model(args.units)
        csv_small_s, csv_small_peak, _ = stream_export(export_client, small_model, "csv")
        csv_s, csv_peak, csv_lines = stream_export(export_client, big_model, "csv")
        json_s, json_peak, _ = stream_export(export_client, big_model, "json")
        _, json_small_peak, _ = stream_export(export_client, small_model, "json")
        naive_s, naive_peak = naive_export(big_model)
        growth = csv_peak / csv_small_peak - 1
        json_growth = json_peak / json_small_peak - 1
        print(
            f"export, {args.units} units x {len(EXPERTS)} experts: CSV {csv_s:.2f} s ({csv_lines - 1} rows), "
            f"JSON {json_s:.2f} s"
        )
        print(
            f"  peak Python memory streaming CSV: {args.units // 10} units {csv_small_peak / 1e6:.1f} MB, "
            f"{args.units} units {csv_peak / 1e6:.1f} MB (growth {growth:+.0%}); JSON growth {json_growth:+.0%}"
        )
        print(
            f"  baseline, CSV built in memory: {naive_s:.2f} s, peak {naive_peak / 1e6:.1f} MB "
            f"({naive_peak / csv_peak:.1f}x the streamed peak)"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    figures = {
        "database": vendor,
        "survey_median_ms": round(median, 1),
        "survey_p95_ms": round(p95, 1),
        "survey_queries_64_patches": queries_64,
        "survey_queries_8_patches": queries_8,
        "survey_naive_n_plus_1_median_ms": round(naive_ms, 1),
        "survey_naive_queries": naive_queries,
        "export_units": args.units,
        "export_csv_seconds": round(csv_s, 2),
        "export_json_seconds": round(json_s, 2),
        "export_csv_seconds_1k": round(csv_small_s, 2),
        "export_peak_mb_1k": round(csv_small_peak / 1e6, 2),
        "export_peak_mb_10k": round(csv_peak / 1e6, 2),
        "export_memory_growth": round(growth, 3),
        "export_json_memory_growth": round(json_growth, 3),
        "export_naive_in_memory_peak_mb": round(naive_peak / 1e6, 2),
        "export_naive_seconds": round(naive_s, 2),
    }
    met = (
        vendor == "postgresql"
        and p95 < TARGETS["survey_p95_ms"]
        and queries_64 == queries_8
        and max(csv_s, json_s) < TARGETS["export_seconds"]
        and max(growth, json_growth) < TARGETS["export_memory_growth"]
    )
    targets = {
        "survey_p95_ms": "< 100",
        "survey_queries": "64 patches == 8 patches",
        "export_seconds": "< 3 (CSV and JSON, 10k units x 3 experts)",
        "export_memory_growth": "< 20% (10k vs 1k)",
    }
    print(json.dumps({"bench": "web", "figures": figures, "targets": targets, "met": bool(met)}))


if __name__ == "__main__":
    main()
