"""A real headless Chromium on the image page (a unit's map replaces the class map over the image, aligned
with it; keyboard shortcuts), the upload form end to end, and the printed report (one image per page)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from annotator.models import Concept, Explanation, Unit, UnitConsensus
from annotator.services.explanations import explanation_get
from mining.phantoms import generate_mammogram_phantoms
from tests.annotator.test_browser_dashboard import sign_in
from tests.annotator.test_explanations import CLASSES
from tests.factories import DatasetFactory, ImageFactory, random_model

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))


def ends_with(text: str) -> re.Pattern[str]:
    """An attribute value ending in ``text``, for expect's retrying attribute check."""
    return re.compile(re.escape(text) + "$")


@pytest.fixture
def model_and_images(media_root: Path):
    dataset = DatasetFactory(classes=CLASSES, name="Explained phantoms")
    trained = random_model(dataset=dataset)
    Unit.objects.bulk_create(Unit(model=trained, layer="layer4", channel=c) for c in range(512))
    images = [
        ImageFactory(dataset=dataset, pixels=p.pixels, label=p.label, split="holdout", source_name=f"phantom-{i}.png")
        for i, p in enumerate(generate_mammogram_phantoms(3, seed=5))
    ]
    return trained, images


def _box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def test_image_page_switches_maps_and_keeps_them_on_the_image(live_server, browser_page, admin_user, model_and_images):
    trained, images = model_and_images
    first = explanation_get(trained=trained, image=images[0])
    top = Unit.objects.get(model=trained, channel=first.units[0]["channel"])
    UnitConsensus.objects.create(
        unit=top, recognizable="yes", concept=Concept.objects.get(code="mass_margin.spiculated")
    )
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/images/{images[0].pk}/")
    page.wait_for_function("() => DeepMinerZoom.all.length && DeepMinerZoom.all[0].loaded()", timeout=20_000)
    assert f"unit layer4:{top.channel} — spiculated (mass margin)" in page.inner_text("#explanation-text")
    assert page.locator(".unit-card").count() == 8
    layer = page.locator("#map-layer")
    assert layer.get_attribute("src").endswith(first.class_map.name)
    assert page.evaluate("document.getElementById('map-layer').naturalWidth") == first.map_size[1]
    # The overlay covers exactly the image as the deep zoom viewer shows it.
    full = f"DeepMinerZoom.all[0].pageRect(0, 0, {images[0].width}, {images[0].height})"
    base, heat = page.evaluate(full), _box(page, "#map-layer")
    assert all(abs(base[k] - heat[k]) < 0.5 for k in ("x", "y", "width", "height")), (base, heat)
    home_width = base["width"]
    # Zoomed in (keys) it still does, however far the image now reaches past the viewer.
    page.keyboard.press("+")
    page.keyboard.press("+")
    page.wait_for_timeout(600)
    base, heat = page.evaluate(full), _box(page, "#map-layer")
    assert base["width"] > 2 * home_width
    assert all(abs(base[k] - heat[k]) < 0.5 for k in ("x", "y", "width", "height")), (base, heat)
    page.keyboard.press("0")
    page.locator(".unit-card").nth(1).click()
    expect(layer).to_have_attribute("src", ends_with(first.units[1]["map"]))
    expect(page.locator("#overlay-name")).to_contain_text("layer4:", use_inner_text=True)
    # After a key, wait for the page to act on it (expect retries) rather than read the DOM at once.
    page.keyboard.press("1")
    expect(layer).to_have_attribute("src", ends_with(first.units[0]["map"]))
    page.keyboard.press("c")
    expect(layer).to_have_attribute("src", ends_with(first.class_map.name))
    page.keyboard.press("m")
    expect(layer).to_be_hidden()
    page.keyboard.press("m")
    page.keyboard.press("[")
    expect(page.locator("#map-opacity")).to_have_value("70")
    # Another method, chosen on the page.
    page.click("button[name=method][value=gradcam]")
    page.wait_for_url("**method=gradcam**")
    assert Explanation.objects.filter(image=images[0], method="gradcam").count() == 1
    page.keyboard.press("c")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{live_server.url}/images/{images[0].pk}/")
    page.wait_for_selector("#map-layer")
    page.wait_for_load_state("networkidle")
    # The viewer sizes itself from its column and never pushes the page wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    viewer = _box(page, "#viewer")
    assert viewer["x"] + viewer["width"] <= _box(page, ".decision-card")["x"]
    page.screenshot(path=str(ARTIFACTS / "image_page.png"), full_page=True)


def test_an_upload_in_the_browser_is_explained(live_server, browser_page, admin_user, model_and_images, tmp_path):
    pixels = next(iter(generate_mammogram_phantoms(1, seed=11))).pixels
    path = tmp_path / "new-scan.png"
    PILImage.fromarray(pixels).save(path)
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/explain/")
    page.set_input_files("#id_file", str(path))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#explanation-text")
    assert "/explain/" in page.url and "new-scan.png" in page.inner_text("h1")
    assert page.locator(".unit-card").count() == 8
    # A file that is no image is refused on the form, with the reason.
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.goto(f"{live_server.url}/explain/")
    page.set_input_files("#id_file", str(bad))
    page.click("#upload-form button[type=submit]")
    assert "not an image this product can read" in page.inner_text("[role=alert]")


def test_the_printed_report_has_one_page_per_image(live_server, browser_page, admin_user, model_and_images):
    from pypdf import PdfReader

    trained, images = model_and_images
    for image in images:
        explanation_get(trained=trained, image=image)
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/models/{trained.pk}/explanations/report/?split=holdout")
    page.wait_for_selector(".report-page")
    page.wait_for_load_state("networkidle")
    pdf = page.pdf(format="A4", print_background=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "explanation_report.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == len(images)
    for number, image in enumerate(images):
        assert image.source_name in reader.pages[number].extract_text()
    assert np.all([p.mediabox.width > 500 for p in reader.pages])
