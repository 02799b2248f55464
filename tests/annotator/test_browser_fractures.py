"""Headless Chromium on the fracture-labelling page: a keyboard-only round trip, a conflict with another
tab, and the live sentence in the browser against mining.sentences for every descriptor combination."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from annotator.demo import demo_fracture_dataset_create
from annotator.models import FractureDescriptor
from annotator.services.fractures import fracture_descriptor_save
from mining.sentences import all_descriptor_combinations, fracture_sentence
from tests.annotator.test_browser_dashboard import ARTIFACTS
from tests.factories import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SENTENCE = "There is a moderately displaced, comminuted fracture of the subcapital neck of femur."


def artifacts() -> Path:
    """Screenshots go where the other browser tests keep theirs (var/test-artifacts unless TEST_ARTIFACTS)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def hips(tmp_path):
    """A small phantom hip dataset imported through the demo's manifest path (real PNGs, real thumbnails)."""
    # Seed 358: the first hip has a moderately displaced, comminuted, impacted subcapital fracture.
    dataset, _ = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=6, seed=358, name="Browser hips")
    return dataset


def sign_in(page, base_url: str, username: str, then: str) -> None:
    page.goto(f"{base_url}{then}")
    assert "/accounts/login/" in page.url  # everything requires login
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def wait_image(page) -> None:
    page.wait_for_function("() => DeepMinerZoom.all.length && DeepMinerZoom.all[0].loaded()", timeout=20_000)


def test_keyboard_only_labelling_round_trip(live_server, browser_page, hips, expert_user):
    page = browser_page
    images = list(hips.images.order_by("id").values_list("id", flat=True))
    sign_in(page, live_server.url, expert_user.username, f"/datasets/{hips.pk}/fractures/")
    # The queue sends the expert to their first unlabelled image.
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/{images[0]}/")
    wait_image(page)
    assert (
        page.locator("#fx-progress .fx-progress-line").inner_text()
        == f"mine 0 / {len(images)}, all experts 0 / {len(images)}"
    )
    assert page.locator("#fx-status").inner_text() == "Not labelled yet"
    # The next image is already being fetched while this one is read.
    page.wait_for_function(
        "() => { const next = JSON.parse(document.getElementById('fx-data').textContent).prefetch[0];"
        " return performance.getEntriesByType('resource').some((e) => e.name.endsWith(next)); }"
    )

    # After a key, wait for the page to act on it (expect retries) rather than read the DOM at once.
    page.keyboard.press("?")
    expect(page.locator("#fx-help")).to_be_visible()
    page.screenshot(path=str(artifacts() / "fracture-shortcuts.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#fx-help")).to_be_hidden()

    page.keyboard.press("f")
    hint = "To save, choose a displacement (1\u20134) and a location (s t b r u)."
    expect(page.locator("#fx-hint")).to_have_text(hint, use_inner_text=True)
    page.keyboard.press("Enter")  # incomplete: refused in the page, nothing sent
    expect(page.locator("#fx-message")).to_contain_text("Not saved: choose a displacement", use_inner_text=True)
    for key in ("3", "c", "s"):
        page.keyboard.press(key)
    expect(page.locator("#fx-sentence")).to_have_text(SENTENCE, use_inner_text=True)
    expect(page.locator("#fx-status")).to_have_text("Unsaved changes", use_inner_text=True)
    page.screenshot(path=str(artifacts() / "fracture-labelling.png"))

    page.keyboard.press("Enter")  # save and go to the next unlabelled image
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/{images[1]}/")
    wait_image(page)
    saved = FractureDescriptor.objects.get(image_id=images[0], expert=expert_user)
    assert (saved.fracture, saved.displacement, saved.comminuted, saved.impacted, saved.location, saved.sentence) == (
        True,
        "moderately displaced",
        True,
        False,
        "subcapital",
        SENTENCE,
    )
    assert (
        page.locator("#fx-progress .fx-progress-line").inner_text()
        == f"mine 1 / {len(images)}, all experts 1 / {len(images)}"
    )

    page.keyboard.press("n")  # no fracture: saved, and on to the next one at once
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/{images[2]}/")
    assert FractureDescriptor.objects.get(image_id=images[1]).sentence == "No fracture was identified on this study."

    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/{images[1]}/")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/{images[0]}/")
    page.reload()
    wait_image(page)
    assert page.locator("#fx-sentence").inner_text() == SENTENCE
    assert page.locator("#fx-status").inner_text() == "Saved · version 1"
    assert page.locator('input[name="fracture"][value="yes"]').is_checked()
    assert page.locator('input[name="displacement"][value="moderately displaced"]').is_checked()
    assert page.locator('input[name="comminuted"]').is_checked()
    assert not page.locator('input[name="impacted"]').is_checked()
    assert page.locator('input[name="location"][value="subcapital"]').is_checked()
    page.screenshot(path=str(artifacts() / "fracture-saved.png"))

    # Change it with the keyboard and save in place (Ctrl+S): version 2, with its history.
    page.keyboard.press("i")
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.getElementById('fx-status').textContent === 'Saved · version 2'")
    assert page.locator("#fx-sentence").inner_text() == (
        "There is a moderately displaced, comminuted, impacted fracture of the subcapital neck of femur."
    )
    saved.refresh_from_db()
    assert (saved.version, saved.impacted) == (2, True)
    page.screenshot(path=str(artifacts() / "fracture-saved-v2.png"))
    # This picture is the README's docs/screenshots/fracture.png: a finished label matching the phantom's truth.
    assert hips.images.order_by("id").first().metadata["report"] == saved.sentence


def test_conflict_with_another_tab_is_shown_and_nothing_is_overwritten(live_server, browser_page, hips, expert_user):
    page = browser_page
    image = hips.images.order_by("id").first()
    sign_in(page, live_server.url, expert_user.username, f"/datasets/{hips.pk}/fractures/{image.pk}/")
    wait_image(page)
    # Another tab saves first, while this page still holds version 0.
    fracture_descriptor_save(image=image, expert=expert_user, version=0, fracture=False)

    for key in ("f", "1", "t"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('fx-status').dataset.state === 'conflict'")
    assert page.locator("#fx-status").inner_text() == "Conflict: not saved"
    message = page.locator("#fx-message").inner_text()
    assert (
        "changed in another tab or window since you opened it" in message and "Your changes were not saved" in message
    )
    assert page.url.endswith(f"/fractures/{image.pk}/")  # stayed: no silent move on
    assert page.locator("#fx-save-next").is_disabled()
    # The page keeps what the expert typed, and the database keeps the other tab's label.
    assert (
        page.locator("#fx-sentence").inner_text()
        == "There is an undisplaced fracture of the transcervical neck of femur."
    )
    label = FractureDescriptor.objects.get(image=image)
    assert (label.version, label.fracture) == (1, False)
    page.screenshot(path=str(artifacts() / "fracture-conflict.png"))

    page.get_by_role("button", name="Load the saved label").click()
    assert page.locator("#fx-sentence").inner_text() == "No fracture was identified on this study."
    assert page.locator("#fx-status").inner_text() == "Saved · version 1"
    assert page.locator("#fx-message").is_hidden()
    assert page.locator("#fx-save-next").is_enabled()
    # Changing it now saves on top of the version just loaded.
    for key in ("f", "2", "b"):
        page.keyboard.press(key)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.getElementById('fx-status').textContent === 'Saved · version 2'")
    label.refresh_from_db()
    assert (label.version, label.location) == (2, "basicervical")


def test_researcher_sees_a_disabled_form(live_server, browser_page, hips, researcher_user):
    page = browser_page
    sign_in(page, live_server.url, researcher_user.username, f"/datasets/{hips.pk}/fractures/")
    wait_image(page)
    assert page.locator("#fx-save").count() == 0
    assert page.locator('input[name="fracture"][value="no"]').is_disabled()
    page.keyboard.press("n")
    assert page.url.endswith(f"/fractures/{hips.images.order_by('id').first().pk}/")
    assert not FractureDescriptor.objects.exists()
    assert "You can view labels but not change them" in page.locator(".fx-readonly-note").inner_text()


def test_live_sentence_matches_python_for_every_combination(live_server, browser_page, hips, expert_user):
    """sentences.js as the page loads it, against mining.sentences, over every combination (partial forms too)."""
    page = browser_page
    image = hips.images.order_by("id").first()
    sign_in(page, live_server.url, expert_user.username, f"/datasets/{hips.pk}/fractures/{image.pk}/")
    combos = list(all_descriptor_combinations(partial=True))
    assert len(combos) == 241
    got = page.evaluate(
        "(combos) => combos.map((d) => window.DeepMinerSentences.fractureSentence(d))",
        [d.as_dict() for d in combos],
    )
    expected = [fracture_sentence(d) for d in combos]
    mismatches = [(d.as_dict(), js, py) for d, js, py in zip(combos, got, expected, strict=True) if js != py]
    assert not mismatches, json.dumps(mismatches[:5], indent=1)

    # And the page itself: every complete label typed with the keyboard shows Python's sentence.
    keys = {
        "undisplaced": "1",
        "mildly displaced": "2",
        "moderately displaced": "3",
        "severely displaced": "4",
        "subcapital": "s",
        "transcervical": "t",
        "basicervical": "b",
        "intertrochanteric": "r",
        "subtrochanteric": "u",
        "comminuted": "c",
        "impacted": "i",
        "avulsed_fragment": "a",
    }
    sentence = page.locator("#fx-sentence")
    for d in all_descriptor_combinations():
        if not d.fracture:
            continue  # "n" saves and moves on; the no-fracture sentence is covered above
        page.keyboard.press("Escape")  # back to the saved (empty) label
        typed = [keys[d.displacement], keys[d.location]]
        typed += [keys[name] for name in ("comminuted", "impacted", "avulsed_fragment") if getattr(d, name)]
        for key in typed:
            page.keyboard.press(key)
        expect(sentence, f"typed {typed}").to_have_text(fracture_sentence(d), use_inner_text=True)
    assert not FractureDescriptor.objects.exists()  # typing alone never saves


def test_dataset_page_links_to_the_queue_and_a_finished_queue_says_so(live_server, browser_page, hips, expert_user):
    page = browser_page
    for image in hips.images.all():
        fracture_descriptor_save(image=image, expert=expert_user, version=0, fracture=False)
    sign_in(page, live_server.url, expert_user.username, f"/datasets/{hips.pk}/")
    page.wait_for_selector(".thumbs figure img")
    page.screenshot(path=str(artifacts() / "fracture-dataset.png"))
    page.get_by_role("link", name="Label fractures").click()
    page.wait_for_url(f"{live_server.url}/datasets/{hips.pk}/fractures/")
    assert page.locator("h1").inner_text() == "All done"
    total = hips.images.count()
    assert page.locator("#fx-done-progress").inner_text() == f"mine {total} / {total}, all experts {total} / {total}"
    page.screenshot(path=str(artifacts() / "fracture-done.png"))
