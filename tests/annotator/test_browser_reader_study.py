"""Headless Chromium on the reader-study rating page: an expert rates a small study with the keyboard only
(digits, 0 for 10, a pair's two scores, p / n / arrows), reloads, resumes at the first unrated item and finishes;
the database holds exactly the scores typed."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from annotator.models import StudyItem, StudyRating
from tests.annotator.reader_study_world import planted_study
from tests.annotator.test_browser_fractures import artifacts, sign_in
from tests.factories import DatasetFactory, ImageFactory, TrainedModelFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def study(expert_user):
    dataset = DatasetFactory(kind="hip_fracture", classes=["no_fracture", "fracture"], annotation_blind=False)
    images = [ImageFactory(dataset=dataset, split="test") for _ in range(2)]
    classifier = TrainedModelFactory(dataset=dataset, job__dataset=dataset, classes=dataset.classes)
    return planted_study(dataset=dataset, classifier=classifier, readers=[expert_user], images=images, name="Tiny")


def _current_key(page) -> str:
    index = int(page.locator("#rs-position").inner_text().split()[1]) - 1
    return page.evaluate(f"JSON.parse(document.getElementById('rs-data').textContent).items[{index}].key")


def _is_pair(page) -> bool:
    return page.locator("#rs-scores .rs-row").count() == 2


def _rate_current(page, typed: dict[str, tuple[int, int | None]], n: int) -> None:
    """Rate the item on screen with digits only: a single score n (0 for 10 where it fits), or a pair's n and
    6 - n; wait for the page to move on."""
    key, position = _current_key(page), page.locator("#rs-position").inner_text()
    if _is_pair(page):
        page.keyboard.press(str(n))
        expect(page.locator(".rs-sentence.rs-active")).to_have_text(f"B: {_sentences(page)[1]}")
        page.keyboard.press(str(6 - n))
        typed[key] = (n, 6 - n)
    else:
        page.keyboard.press("0" if n == 10 else str(n))
        typed[key] = (n, None)
    expect(page.locator("#rs-message")).to_contain_text("Saved")
    if typed and len(typed) < 8:
        expect(page.locator("#rs-position")).not_to_have_text(position)


def _sentences(page) -> list[str]:
    return [text.split(": ", 1)[1] for text in page.locator(".rs-sentence").all_inner_texts()]


def test_an_expert_rates_a_study_with_the_keyboard_reloads_and_resumes(live_server, browser_page, study, expert_user):
    page = browser_page
    sign_in(page, live_server.url, expert_user.username, "/")
    link = page.locator("#reader-studies").get_by_role("link", name="rate (0 / 8 done)")
    expect(link).to_be_visible()
    page.goto(f"{live_server.url}{link.get_attribute('href')}")
    expect(page.locator("#rs-count")).to_have_text("0 / 8 rated")
    expect(page.locator("#rs-position")).to_have_text("Item 1 of 8")

    typed: dict[str, tuple[int, int | None]] = {}
    # A digit off a pair's 1-5 scale is refused in the page; find a pair first to try it.
    for step, n in enumerate([10, 3, 4, 2, 5]):
        if _is_pair(page) and step == 0:
            page.keyboard.press("9")
            expect(page.locator("#rs-message")).to_have_text("Scores go from 1 to 5 here.")
            n = 4
        _rate_current(page, typed, n)
    expect(page.locator("#rs-count")).to_have_text("5 / 8 rated")
    page.screenshot(path=str(artifacts() / "reader-study.png"))

    # Reload: the page resumes at the first item not rated, the 6th of this reader's order.
    page.reload()
    expect(page.locator("#rs-position")).to_have_text("Item 6 of 8")
    expect(page.locator("#rs-count")).to_have_text("5 / 8 rated")
    # Back one (p) shows the fifth item rated, its score chosen; forward again with the arrow.
    page.keyboard.press("p")
    expect(page.locator("#rs-position")).to_have_text("Item 5 of 8 · rated")
    fifth = typed[_current_key(page)]
    expect(page.locator("#rs-scores .rs-row").first.locator("button.rs-chosen")).to_have_text(str(fifth[0]))
    page.keyboard.press("ArrowRight")
    expect(page.locator("#rs-position")).to_have_text("Item 6 of 8")
    for n in (1, 2, 3):
        _rate_current(page, typed, n)
    expect(page.locator("#rs-count")).to_have_text("8 / 8 rated")
    expect(page.locator("#rs-done")).to_be_visible()

    stored = {
        rating.item.key: (rating.score, rating.second_score)
        for rating in StudyRating.objects.filter(reader=expert_user).select_related("item")
    }
    assert stored == typed and len(stored) == StudyItem.objects.filter(study=study).count() == 8
