"""The deep zoom viewer in a real headless Chromium, on the survey's context image: a synthetic 16-bit image
with one bright square whose top patch is exactly that square. At several zoom levels the red patch box
lies on the square as the tiles draw it (found in a screenshot), to the pixel; window / level and invert
change what the canvas shows and nothing else; no page breaks the Content-Security-Policy."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect

from annotator.models import Patch, TopActivation
from tests.annotator.test_browser_dashboard import ARTIFACTS, sign_in
from tests.factories import ImageFactory, TrainedModelFactory, UnitFactory

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HEIGHT, WIDTH = 1800, 1200  # several pyramid levels above the panel's size
SQUARE = (700, 900, 812, 1012)  # x0, y0, x1, y1 of the bright square = the top patch


def _synthetic_pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = np.full((HEIGHT, WIDTH), 1000, dtype=np.uint16)
    pixels[100:-100, 100:-200] = 9000 + rng.integers(0, 400, size=(HEIGHT - 200, WIDTH - 300), dtype=np.uint16)
    x0, y0, x1, y1 = SQUARE
    pixels[y0:y1, x0:x1] = 60000
    return pixels


@pytest.fixture
def square_unit():
    trained = TrainedModelFactory()
    image = ImageFactory(dataset=trained.dataset, pixels=_synthetic_pixels(), split="test", label="malignant")
    x0, y0, x1, y1 = SQUARE
    crop = io.BytesIO()
    PILImage.fromarray(np.full((64, 64), 255, dtype=np.uint8)).save(crop, format="PNG")
    patch = Patch.objects.create(image=image, x0=x0, y0=y0, x1=x1, y1=y1, label="malignant", tissue_fraction=1.0)
    unit = UnitFactory(model=trained, selected_for="malignant", selection_rank=1)
    TopActivation.objects.create(unit=unit, rank=1, score=5.0, patch=patch, image=image, box=[x0, y0, x1, y1])
    return unit, image


def _bright_box(png: bytes, clip: dict) -> tuple[float, float, float, float]:
    """Page box (x0, y0, x1, y1) of the pixels brighter than the tissue inside ``clip`` of a screenshot."""
    shot = np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)
    bright = (shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] > 200)  # white, not the red box
    bright[:3], bright[-3:], bright[:, :3], bright[:, -3:] = False, False, False, False  # the panel's rounded edge
    ys, xs = np.nonzero(bright)
    return clip["x"] + xs.min(), clip["y"] + ys.min(), clip["x"] + xs.max() + 1, clip["y"] + ys.max() + 1


def test_red_patch_box_stays_on_the_patch_at_every_zoom_and_window_level_works(
    live_server, browser_page, expert_user, square_unit
):
    unit, _image = square_unit
    page = browser_page
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    sign_in(page, live_server.url, expert_user.username)
    page.goto(f"{live_server.url}/units/{unit.pk}/")
    loaded = "() => DeepMinerZoom.all[0] && DeepMinerZoom.all[0].loaded()"
    page.wait_for_function(loaded, timeout=20_000)
    box = page.locator("#context-box")
    assert box.is_visible()
    # Red border off, so only the tiles' own white square is white in the screenshots.
    page.evaluate("document.getElementById('context-box').style.borderColor = 'transparent'")
    zooms = []
    for step in range(4):
        if step:
            # Zoom about the square's centre so it stays in view, then wait for the sharper tiles.
            page.evaluate(
                "(f) => { const z = DeepMinerZoom.all[0]; const vp = z.osd.viewport;"
                " vp.zoomBy(f, vp.imageToViewportCoordinates(756, 956), true); vp.applyConstraints(true); }",
                2.2,
            )
            page.wait_for_timeout(300)
            page.wait_for_function(loaded, timeout=20_000)
        zooms.append(page.evaluate("DeepMinerZoom.all[0].imageZoom()"))
        stage = page.locator("#context-stack .dz-stage").bounding_box()
        shot = page.screenshot(clip=stage)
        (ARTIFACTS / f"deepzoom-step{step}.png").write_bytes(shot)
        seen = _bright_box(shot, stage)
        placed = box.bounding_box()
        expected = page.evaluate("(s) => DeepMinerZoom.all[0].pageRect(...s)", list(SQUARE))
        for got, want in zip(
            seen, (placed["x"], placed["y"], placed["x"] + placed["width"], placed["y"] + placed["height"]), strict=True
        ):
            assert abs(got - want) <= 1.5, (step, seen, placed)
        assert abs(placed["x"] - expected["x"]) < 0.5 and abs(placed["width"] - expected["width"]) < 0.5
    assert zooms[-1] > 4 * zooms[0] and zooms[-1] >= 1.0  # up to full resolution and beyond
    page.screenshot(path=str(ARTIFACTS / "deepzoom-survey.png"))

    # Window / level: Shift + drag and the keys move the window; the filter acts on the canvas only.
    page.evaluate("document.getElementById('context-box').style.borderColor = ''")
    stage = page.locator("#context-stack .dz-stage").bounding_box()
    cx, cy = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    page.keyboard.down("Shift")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 120, cy - 80, steps=6)
    page.mouse.up()
    page.keyboard.up("Shift")
    level, width, invert = (float(v) for v in page.get_attribute("#context-stack", "data-window").split(","))
    assert level > 0.5 and width < 1.0 and invert == 0
    assert page.evaluate("DeepMinerZoom.all[0].osd.drawer.canvas.style.filter").startswith("url(")
    assert page.evaluate("getComputedStyle(document.getElementById('context-box')).filter") == "none"
    page.keyboard.press("\\")
    expect(page.locator("#context-stack")).to_have_attribute("data-window", re.compile(r",1$"))  # waits for it
    page.keyboard.press("0")
    page.wait_for_timeout(400)
    assert page.get_attribute("#context-stack", "data-window") == "0.500,1.000,0"
    assert page.evaluate("DeepMinerZoom.all[0].imageZoom()") == pytest.approx(zooms[0], rel=0.05)
    assert violations == []
