"""A real headless Chromium on a hip radiograph's image page: pointing at (or tabbing to) a word of the
generated sentence paints that word's attention over the whole image in place of the class map, and
leaving it brings the class map back (issue "Sentences", item 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from annotator.demo import demo_fracture_dataset_create
from annotator.models import Image, Job, SentenceModel
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from tests.annotator.test_browser_dashboard import sign_in
from tests.factories import random_model

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "var" / "test-artifacts"))
WHOLE = {"input_size": 96, "side_fraction": 1.0, "whole_image": True}  # a 3 x 3 region grid


@pytest.fixture
def generator(tmp_path: Path, media_root: Path) -> SentenceModel:
    dataset, _ = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=20, seed=2, name="attention-hips")
    classifier = random_model(dataset=dataset, patch_params=dict(WHOLE), metrics={})
    job = job_create(kind=Job.Kind.CAPTION, dataset=dataset, params={"model": classifier.pk, "epochs": 1})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    return SentenceModel.objects.get(job=job)


def _canvas_pixels(page) -> list[int]:
    return page.evaluate(
        """() => { const c = document.getElementById('attention-layer');
                   return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
    )


def _painted(page, heat: list[int]) -> bool:
    """The canvas holds ``heat``: alpha exactly, colours within the rounding of its premultiplied storage."""
    shown = _canvas_pixels(page)
    return len(shown) == len(heat) and all(
        a == b if i % 4 == 3 else abs(a - b) <= 3 for i, (a, b) in enumerate(zip(shown, heat, strict=True))
    )


def test_hovering_a_generated_word_shows_its_attention_over_the_image(live_server, browser_page, admin_user, generator):
    image = Image.objects.filter(dataset=generator.classifier.dataset, split="test").first()
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/images/{image.pk}/")
    page.wait_for_function("() => DeepMinerZoom.all.length && DeepMinerZoom.all[0].loaded()", timeout=20_000)
    attention = json.loads(page.locator("#word-attention").text_content())
    assert attention["grid"] == [3, 3]
    words = page.locator("#generated-sentence .word")
    assert words.count() == len(attention["tokens"]) and len(attention["heats"]) == len(attention["tokens"])
    layer, heat = page.locator("#attention-layer"), page.locator("#map-layer")
    expect(layer).to_be_hidden()

    last = words.count() - 1
    words.nth(last).hover()
    expect(layer).to_be_visible()
    expect(heat).to_be_hidden()
    expect(page.locator("#overlay-name")).to_contain_text("Attention of the generated word")
    token = int(words.nth(last).get_attribute("data-token"))
    assert _painted(page, attention["heats"][token])  # the page paints the server's heat, as is
    assert attention["heats"][token] != attention["heats"][int(words.nth(0).get_attribute("data-token"))]
    # Over exactly the image as the deep zoom viewer shows it.
    full = f"DeepMinerZoom.all[0].pageRect(0, 0, {image.width}, {image.height})"
    base, box = page.evaluate(full), layer.bounding_box()
    assert all(abs(base[k] - box[k]) < 0.5 for k in ("x", "y", "width", "height")), (base, box)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "image-page-word-attention.png"), full_page=True)

    page.keyboard.press("[")  # the opacity keys and slider act on the attention too
    expect(layer).to_have_css("opacity", "0.7")
    page.mouse.move(1, 1)  # off the word: the class map is back
    expect(layer).to_be_hidden()
    expect(heat).to_be_visible()
    expect(page.locator("#overlay-name")).not_to_contain_text("Attention")

    words.nth(0).focus()  # keyboard: tabbing to a word shows it too
    expect(layer).to_be_visible()
    assert _painted(page, attention["heats"][int(words.nth(0).get_attribute("data-token"))])
    page.keyboard.press("Tab")
    expect(words.nth(1)).to_be_focused()
    assert _painted(page, attention["heats"][int(words.nth(1).get_attribute("data-token"))])
