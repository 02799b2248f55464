"""Benchmark: what the pages that show real-size mammograms send to the browser, renditions and deep zoom
against the originals the pages sent before (issue 14).

Run from the project root: ``.venv/bin/python bench/pages.py [--images 64] [--hovers 8]``.

Data (in a throw-away var folder: its own SQLite database and media). Mammogram phantoms generated at
real size (4,500 x 2,800) and made 16-bit with film-like grain: four phantoms, each image a different
flip and grain of one of them, so ``--images`` images are ``--images`` different files. Each is stored as
the importer stores it (lossless 16-bit PNG, and the display rendition ``rendition_write`` makes at
import). One unit whose 64 top patches come from 64 different images (128-px crops, as mining stores
them). A hip dataset of three 16-bit phantoms at 2,800 x 2,800 for the fracture page.

Measure. The app runs under ``manage.py runserver`` (threaded, whitenoise for static files); Debian's
headless Chromium (Playwright) signs in as an expert and each page is measured in a fresh browser
context (empty cache) with the Chrome DevTools network log: the sum of ``encodedDataLength`` of every
finished request (headers included), until the network has been idle for 500 ms and the viewer has
drawn its tiles.
  * survey, before any hover: the page, its scripts and styles, the 64 crops and the first context
    image (the survey shows the first patch's image on load);
  * survey, per hover: ``--hovers`` patches of different images hovered one after the other;
  * fracture page: the page, the image, and the next image's prefetch.
Baseline, the same pages as they behaved before renditions and deep zoom (commit af9f8ca), in the same
run: the same page with the viewer's requests blocked, plus what the old scripts loaded, the original
file of each shown image as an ``<img>`` (survey.js set ``src`` to the original; fracture.js showed the
original and prefetched the next image's original).

Targets: survey < 5 MB before any hover, < 500 KB per hovered context image, fracture page < 2 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from anywhere

MAMMOGRAM = (4500, 2800)
HIP = (2800, 2800)  # (3,000 px trips a rounding bug in the hip phantoms' bowel gas)
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-pages-password"
TARGET_SURVEY_BYTES = 5_000_000
TARGET_HOVER_BYTES = 500_000
TARGET_FRACTURE_BYTES = 2_000_000
BLOCK_VIEWER = ("**/vendor/openseadragon/**", "**/annotator/deepzoom.js", "**/deepzoom.dzi*", "**/deepzoom_files/**")


def _sixteen_bit(pixels: np.ndarray, seed: int, flip: bool) -> np.ndarray:
    """uint8 phantom -> uint16 with grain (a film scan's noise fills the low bits)."""
    rng = np.random.default_rng(seed)
    grain = rng.normal(0.0, 6.0, size=pixels.shape).astype(np.float32)  # PNGs of ~15 MB (CBIS-DDSM's: ~7.5)
    values = pixels.astype(np.float32) * 257.0 + grain
    out = np.clip(values, 0, 65535).astype(np.uint16)
    return np.ascontiguousarray(out[:, ::-1]) if flip else out


def build(n_images: int) -> dict[str, Any]:
    """The bench's rows and files; returns what the browser part needs."""
    from django.contrib.auth.models import Group, User

    from annotator.files import unique_name, write_png_atomic
    from annotator.models import Dataset, Image, Patch, TopActivation, TrainedModel, Unit
    from annotator.services.renditions import rendition_write
    from mining.phantoms import generate_hip_phantoms, generate_mammogram_phantoms
    from tests.factories import DatasetFactory, TrainedModelFactory, UnitFactory

    user = User.objects.create_user("bench-expert", password=PASSWORD)
    user.groups.add(Group.objects.get(name="expert"))
    started = time.perf_counter()
    height, width = MAMMOGRAM
    bases = [p.pixels for p in generate_mammogram_phantoms(4, seed=14, width=width, height=height)]
    print(f"  4 mammogram phantoms at {width}x{height}: {time.perf_counter() - started:.0f} s", flush=True)

    def store(dataset: Dataset, pixels: np.ndarray, stem: str) -> Image:
        name = write_png_atomic(unique_name("images", stem, ".png"), pixels)
        display = rendition_write(stem=stem, pixels=pixels, voi=None, written=[])  # what the import does
        return Image.objects.create(
            dataset=dataset, file=name, display=display, source_name=f"{stem}.png", sha256="0" * 64,
            width=pixels.shape[1], height=pixels.shape[0], bit_depth=16, patient_id=stem, split="test",
            label="malignant",
        )  # fmt: skip

    trained = cast(TrainedModel, TrainedModelFactory())
    dataset = trained.dataset
    started = time.perf_counter()

    def one(index: int) -> tuple[Image, np.ndarray]:
        pixels = _sixteen_bit(bases[index % 4], seed=index, flip=bool((index // 4) % 2))
        return store(dataset, pixels, f"mammo{index:03d}"), pixels

    with ThreadPoolExecutor(2) as pool:  # zlib and numpy release the GIL
        stored = list(pool.map(one, range(n_images)))
    print(f"  {n_images} 16-bit images + renditions stored: {time.perf_counter() - started:.0f} s", flush=True)
    unit = cast(Unit, UnitFactory(model=trained, selected_for="malignant", selection_rank=1))
    side = width // 4  # DeepMiner's patch side: 25% of the image width
    for rank, (image, pixels) in enumerate(stored, start=1):
        x0, y0 = (rank * 97) % (width - side), 600 + (rank * 131) % (height - side - 1200)
        crop = pixels[y0 : y0 + side, x0 : x0 + side][:: side // 128, :: side // 128][:128, :128]
        patch = Patch.objects.create(
            image=image, x0=x0, y0=y0, x1=x0 + side, y1=y0 + side, label="malignant", tissue_fraction=1.0,
            crop=write_png_atomic(unique_name("patches", f"p{rank}", ".png"), (crop >> 8).astype(np.uint8),
                                  durable=False, compress_level=1),
        )  # fmt: skip
        box = [x0 + side // 4, y0 + side // 4, x0 + side // 2, y0 + side // 2]
        TopActivation.objects.create(unit=unit, rank=rank, score=10.0 - rank / 10, patch=patch, image=image, box=box)
    hips = cast(
        Dataset, DatasetFactory(name="Bench hips", kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    )
    hip_base = next(iter(generate_hip_phantoms(1, seed=14, width=HIP[1], height=HIP[0]))).pixels
    hip_images = [store(hips, _sixteen_bit(hip_base, seed=100 + i, flip=bool(i % 2)), f"hip{i}") for i in range(3)]
    return {
        "unit": unit.pk,
        "originals": [f"/media/{image.file.name}" for image, _ in stored],
        "original_bytes": [image.file.size for image, _ in stored],
        "hips": hips.pk,
        "hip_images": [image.pk for image in hip_images],
        "hip_originals": [f"/media/{image.file.name}" for image in hip_images],
    }


# ------------------------------------------------------------------ the browser


class NetworkLog:
    """Bytes on the wire per finished request, from the DevTools protocol's network events."""

    def __init__(self, page: Any) -> None:
        self.urls: dict[str, str] = {}
        self.finished: list[tuple[str, int]] = []
        session = page.context.new_cdp_session(page)
        session.on("Network.responseReceived", lambda e: self.urls.__setitem__(e["requestId"], e["response"]["url"]))
        session.on("Network.loadingFinished", self._finished)
        session.send("Network.enable")

    def _finished(self, event: dict[str, Any]) -> None:
        self.finished.append((self.urls.get(event["requestId"], "?"), int(event["encodedDataLength"])))

    def take(self) -> list[tuple[str, int]]:
        taken, self.finished = self.finished, []
        return taken


def settle(page: Any, viewer: bool) -> None:
    page.wait_for_load_state("networkidle")
    if viewer:
        page.wait_for_function("() => DeepMinerZoom.all.length && DeepMinerZoom.all[0].loaded()", timeout=60_000)
    page.wait_for_timeout(300)
    page.wait_for_load_state("networkidle")


def signed_in_page(browser: Any, base: str, baseline: bool) -> tuple[Any, Any, NetworkLog]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "bench-expert")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    if baseline:
        for pattern in BLOCK_VIEWER:
            page.route(pattern, lambda route: route.abort())
    return context, page, NetworkLog(page)


def show_original(page: Any, url: str) -> None:
    """What the old scripts did: an <img> whose src is the original file."""
    page.evaluate(
        "(url) => new Promise((done) => { const i = new Image(); i.onload = i.onerror = done; i.src = url; })", url
    )


def measure(base: str, data: dict[str, Any], hovers: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, Any] = {}
    survey, fracture = (
        f"{base}/units/{data['unit']}/",
        f"{base}/datasets/{data['hips']}/fractures/{data['hip_images'][0]}/",
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"],
        )
        try:
            # --- survey, renditions and deep zoom
            context, page, log = signed_in_page(browser, base, baseline=False)
            page.goto(survey)
            settle(page, viewer=True)
            before = log.take()
            per_hover, hover_seconds = [], []
            for index in range(1, hovers + 1):
                tile = page.locator(".tile").nth(index)
                dzi = tile.get_attribute("data-dzi")
                started = time.perf_counter()
                tile.hover()
                page.wait_for_function(
                    "(d) => DeepMinerZoom.all[0].dzi === d && DeepMinerZoom.all[0].loaded()", arg=dzi, timeout=60_000
                )
                hover_seconds.append(time.perf_counter() - started)
                settle(page, viewer=True)
                per_hover.append(sum(n for _, n in log.take()))
            context.close()
            # --- survey, as before: the originals
            context, page, log = signed_in_page(browser, base, baseline=True)
            page.goto(survey)
            page.wait_for_load_state("networkidle")
            show_original(page, data["originals"][0])
            settle(page, viewer=False)
            old_before = log.take()
            old_hover = []
            for index in range(1, hovers + 1):
                show_original(page, data["originals"][index])
                settle(page, viewer=False)
                old_hover.append(sum(n for _, n in log.take()))
            context.close()
            # --- fracture page, new and as before (the image and the next image's original)
            context, page, log = signed_in_page(browser, base, baseline=False)
            page.goto(fracture)
            settle(page, viewer=True)
            new_fracture = log.take()
            context.close()
            context, page, log = signed_in_page(browser, base, baseline=True)
            page.goto(fracture)
            page.wait_for_load_state("networkidle")
            show_original(page, data["hip_originals"][0])
            show_original(page, data["hip_originals"][1])
            settle(page, viewer=False)
            old_fracture = log.take()
            context.close()
        finally:
            browser.close()

    def total(log: list[tuple[str, int]]) -> int:
        return sum(n for _, n in log)

    def share(log: list[tuple[str, int]], part: str) -> int:
        return sum(n for url, n in log if part in url)

    figures["survey_before_hover_bytes"] = total(before)
    figures["survey_before_hover_requests"] = len(before)
    figures["survey_before_hover_crops_bytes"] = share(before, "/media/patches/")
    figures["survey_before_hover_viewer_tiles_bytes"] = share(before, "deepzoom_files")
    figures["survey_before_hover_openseadragon_bytes"] = share(before, "openseadragon")
    figures["survey_hover_bytes_max"] = max(per_hover)
    figures["survey_hover_bytes_median"] = statistics.median(per_hover)
    figures["survey_hover_seconds_median"] = round(statistics.median(hover_seconds), 2)
    figures["survey_hover_seconds_max"] = round(max(hover_seconds), 2)
    figures["baseline_survey_before_hover_bytes"] = total(old_before)
    figures["baseline_survey_hover_bytes_median"] = statistics.median(old_hover)
    figures["baseline_survey_all_hovers_bytes_estimate"] = sum(data["original_bytes"])
    figures["fracture_page_bytes"] = total(new_fracture)
    figures["fracture_page_requests"] = len(new_fracture)
    figures["baseline_fracture_page_bytes"] = total(old_fracture)
    figures["survey_before_hover_vs_baseline"] = round(figures["survey_before_hover_bytes"] / total(old_before), 4)
    figures["survey_hover_vs_baseline"] = round(
        figures["survey_hover_bytes_median"] / figures["baseline_survey_hover_bytes_median"], 4
    )
    figures["fracture_vs_baseline"] = round(figures["fracture_page_bytes"] / figures["baseline_fracture_page_bytes"], 4)
    return figures


# ------------------------------------------------------------------ running it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_healthy(server, base)
    return server, base


def wait_healthy(server: subprocess.Popen[bytes], base: str, seconds: float = 60) -> None:
    """Wait until the server at ``base`` answers /healthz; kill it and raise if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="images behind the survey's top patches")
    parser.add_argument("--hovers", type=int, default=8, help="patches hovered (each a different image)")
    parser.add_argument("--keep", action="store_true", help="keep the var folder (printed)")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    env = {**os.environ, "DEEPMINER_VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.update(ALLOWED_HOSTS="127.0.0.1,localhost", MEDIA_ROOT=str(var / "media"))
    env.pop("DATABASE_URL", None)
    os.environ.update(
        {k: env[k] for k in ("DEEPMINER_VAR_DIR", "DJANGO_SETTINGS_MODULE", "ALLOWED_HOSTS", "MEDIA_ROOT")}
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"building the data in {var}", flush=True)
    data = build(args.images)
    server, base = serve(env)
    try:
        figures = measure(base, data, args.hovers)
    finally:
        server.terminate()
        server.wait(timeout=20)
        if not args.keep:
            shutil.rmtree(var, ignore_errors=True)

    def mb(n: float) -> str:
        return f"{n / 1e6:8.2f} MB"

    print()
    print(f"{'page':<34}{'now':>12}{'before':>12}{'target':>12}")
    rows = (
        ("survey, before any hover", "survey_before_hover_bytes", "baseline_survey_before_hover_bytes", TARGET_SURVEY_BYTES),
        ("survey, per hovered image (median)", "survey_hover_bytes_median", "baseline_survey_hover_bytes_median", TARGET_HOVER_BYTES),
        ("fracture page", "fracture_page_bytes", "baseline_fracture_page_bytes", TARGET_FRACTURE_BYTES),
    )  # fmt: skip
    for label, now, before, target in rows:
        print(f"{label:<34}{mb(figures[now]):>12}{mb(figures[before]):>12}{'< ' + mb(target).strip():>12}")
    print(f"{'survey, per hover (max)':<34}{mb(figures['survey_hover_bytes_max']):>12}")
    print(
        f"survey before hover: {figures['survey_before_hover_requests']} requests, crops "
        f"{mb(figures['survey_before_hover_crops_bytes']).strip()}, OpenSeadragon "
        f"{mb(figures['survey_before_hover_openseadragon_bytes']).strip()}, tiles "
        f"{mb(figures['survey_before_hover_viewer_tiles_bytes']).strip()}; hover to drawn: median "
        f"{figures['survey_hover_seconds_median']} s, max {figures['survey_hover_seconds_max']} s "
        "(the first view of an image makes its pyramid)"
    )
    every = mb(figures["baseline_survey_all_hovers_bytes_estimate"]).strip()
    print(f"the {args.images} originals, what hovering every patch used to send: {every}")
    met = (
        figures["survey_before_hover_bytes"] < TARGET_SURVEY_BYTES
        and figures["survey_hover_bytes_max"] < TARGET_HOVER_BYTES
        and figures["fracture_page_bytes"] < TARGET_FRACTURE_BYTES
    )
    targets = {
        "survey_before_hover_bytes": TARGET_SURVEY_BYTES,
        "survey_hover_bytes_max": TARGET_HOVER_BYTES,
        "fracture_page_bytes": TARGET_FRACTURE_BYTES,
    }
    print(json.dumps({"bench": "pages", "figures": figures, "targets": targets, "met": met}))


if __name__ == "__main__":
    main()
