"""Headless Chromium: an expert answers a unit's survey with the keyboard only, sees "Saved", reloads and finds
the answers; a second tab that saved first makes the first one show the conflict instead of overwriting; an
admin's consensus save shows a refused body and a conflict the same way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import AnnotationChange, UnitAnnotation, UnitConsensus
from annotator.services.annotations import unit_consensus_save
from tests.annotator.test_browser_dashboard import ARTIFACTS, sign_in
from tests.factories import UserFactory, mined_unit

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _wait_saved(page) -> None:
    page.wait_for_function("() => document.getElementById('save-state').dataset.state === 'saved'", timeout=15_000)


def test_expert_annotates_a_unit_with_the_keyboard_only(live_server, browser_page, expert_user):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    unit = mined_unit(n_top=64)
    following = mined_unit(model=unit.model, n_top=8, n_images=2, seed=3, selection_rank=2)
    page = browser_page
    sign_in(page, live_server.url, expert_user.username)
    page.goto(f"{live_server.url}/units/{unit.pk}/")
    page.wait_for_function("() => [...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth)")
    assert page.locator(".tile").count() == 64

    # Hovering a patch shows its full image with the patch outlined in red.
    page.locator(".tile").nth(4).hover()
    page.wait_for_function("() => document.getElementById('context-caption').textContent.startsWith('#5 ')")
    assert page.locator("#context-caption").inner_text().startswith("#5 ")
    page.wait_for_selector("#context-box", state="visible")  # placed once the image's pyramid opens
    page.keyboard.press("v")  # mask overlay
    page.wait_for_function("() => document.getElementById('patch-grid').dataset.view === 'mask'")

    page.keyboard.press("y")
    page.keyboard.press("a")  # a new phenomenon, its description focused
    page.keyboard.type("spiculated margin of a mass")
    page.keyboard.press("Tab")
    page.keyboard.type("spicul")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.keyboard.press("4")
    _wait_saved(page)
    assert page.locator("#save-state").inner_text().startswith("Saved")
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()  # waits for the key to be handled
    page.screenshot(path=str(ARTIFACTS / "survey-help.png"))
    page.keyboard.press("?")
    page.locator(".tile").nth(9).hover()
    page.screenshot(path=str(ARTIFACTS / "survey.png"), full_page=True)

    saved = UnitAnnotation.objects.get(unit=unit, expert=expert_user)
    assert (saved.recognizable, saved.confidence, saved.version >= 1) == ("yes", 4, True)
    assert saved.phenomena == [
        {"description": "spiculated margin of a mass", "concept": "mass_margin.spiculated", "association": "malignant"}
    ]

    page.reload()
    page.wait_for_selector(".phenomenon")
    assert page.locator("input[name=recognizable][value=yes]").is_checked()
    assert page.locator("input[name=confidence][value='4']").is_checked()
    assert page.locator(".phenomenon .description").input_value() == "spiculated margin of a mass"
    assert page.locator(".phenomenon .concept-input").input_value() == "Mass — margin: Spiculated"

    page.keyboard.press("j")  # next unit
    page.wait_for_url(f"{live_server.url}/units/{following.pk}/")
    page.keyboard.press("k")
    page.wait_for_url(f"{live_server.url}/units/{unit.pk}/")

    page.goto(f"{live_server.url}/models/{unit.model_id}/units/")
    assert page.locator("#unit-table tbody tr").count() == 2
    assert "1 / 2" in page.locator(".progress-table tr.total").inner_text()
    page.screenshot(path=str(ARTIFACTS / "unit-list.png"), full_page=True)
    page.locator("#next-unannotated").click()
    page.wait_for_url(f"{live_server.url}/units/{following.pk}/")


def test_a_stale_tab_shows_the_conflict_and_overwrites_nothing(live_server, browser_page, expert_user):
    unit = mined_unit(n_top=8, n_images=2)
    first = browser_page
    sign_in(first, live_server.url, expert_user.username)
    first.goto(f"{live_server.url}/units/{unit.pk}/")
    other_tab = first.context.browser.new_context()
    other_tab.add_cookies(first.context.cookies())  # the same signed-in expert
    second = other_tab.new_page()
    second.goto(f"{live_server.url}/units/{unit.pk}/")
    second.keyboard.press("n")
    _wait_saved(second)

    first.keyboard.press("y")  # this tab still holds version 0
    first.wait_for_function("() => document.getElementById('save-state').dataset.state === 'conflict'")
    assert "changed" in first.locator("#save-state").inner_text()
    assert first.locator("#conflict-actions").is_visible()
    first.screenshot(path=str(ARTIFACTS / "survey-conflict.png"))
    assert UnitAnnotation.objects.get().recognizable == "no"
    assert AnnotationChange.objects.count() == 1


def test_consensus_save_shows_a_refusal_and_a_conflict_and_overwrites_nothing(live_server, browser_page, admin_user):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    unit = mined_unit(n_top=8, n_images=2)
    page = browser_page
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/units/{unit.pk}/")
    state = page.locator("#consensus-state")

    # A 400: a concept the lexicon does not hold (the picker offers none, so put one in).
    page.evaluate("""() => {
        const select = document.querySelector('#consensus-form select[name=concept]');
        select.add(new Option('not a concept', 'nope.nothing'));
        select.value = 'nope.nothing';
    }""")
    page.click("#consensus-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('consensus-state').dataset.state === 'error'")
    assert "unknown BI-RADS concept" in state.inner_text()
    assert not UnitConsensus.objects.exists()

    page.select_option("#consensus-form select[name=concept]", "mass_margin.spiculated")
    page.click("#consensus-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('consensus-state').dataset.state === 'saved'")
    assert UnitConsensus.objects.get(unit=unit).version == 1

    # Another admin sets it meanwhile: this page still holds version 1, so its next save is refused.
    other = UserFactory(username="adam-admin", groups=["admin"])
    unit_consensus_save(unit=unit, admin=other, version=1, recognizable="no")
    page.select_option("#consensus-form select[name=recognizable]", "unsure")
    page.click("#consensus-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('consensus-state').dataset.state === 'conflict'")
    assert "changed" in state.inner_text()
    assert page.locator("#consensus-conflict-actions").is_visible()
    assert page.locator("#consensus-form select[name=recognizable]").input_value() == "unsure"  # kept in the form
    page.screenshot(path=str(ARTIFACTS / "survey-consensus-conflict.png"), full_page=True)
    consensus = UnitConsensus.objects.get(unit=unit)
    assert (consensus.recognizable, consensus.version, consensus.set_by_id) == ("no", 2, other.pk)
