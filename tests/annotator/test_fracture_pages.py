"""The fracture pages through Django's test client: the queue entry, the labelling page, read-only
researchers, links from the dashboard and the dataset page, and login."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator.models import Dataset
from annotator.services.fractures import fracture_descriptor_save
from tests.factories import DatasetFactory, ImageFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def hip_dataset():
    return DatasetFactory(name="Hips", kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])


@pytest.fixture
def images(hip_dataset):
    return [ImageFactory(dataset=hip_dataset, source_name=f"hip-{n}.png") for n in range(3)]


def page_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="fx-data" type="application/json">') + len(
        '<script id="fx-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_pages_need_login(client, hip_dataset, images):
    for url in (f"/datasets/{hip_dataset.pk}/fractures/", f"/datasets/{hip_dataset.pk}/fractures/{images[0].pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_queue_redirects_to_my_next_unlabelled_image(client, hip_dataset, images, expert_user):
    fracture_descriptor_save(image=images[0], expert=expert_user, version=0, fracture=False)
    client.force_login(expert_user)
    response = client.get(f"/datasets/{hip_dataset.pk}/fractures/")
    assert response.status_code == 302
    assert response["Location"] == f"/datasets/{hip_dataset.pk}/fractures/{images[1].pk}/"


def test_queue_says_all_done_with_the_counts(client, hip_dataset, images, expert_user):
    for image in images:
        fracture_descriptor_save(image=image, expert=expert_user, version=0, fracture=False)
    client.force_login(expert_user)
    response = client.get(f"/datasets/{hip_dataset.pk}/fractures/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "All done" in html
    assert "mine 3 / 3, all experts 3 / 3" in html


def test_labelling_page_hands_the_script_my_label_version_and_urls(client, hip_dataset, images, expert_user):
    fracture_descriptor_save(
        image=images[1],
        expert=expert_user,
        version=0,
        fracture=True,
        displacement="severely displaced",
        location="subtrochanteric",
    )
    client.force_login(expert_user)
    response = client.get(f"/datasets/{hip_dataset.pk}/fractures/{images[1].pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'mine <span data-field="mine">1</span> / <span data-field="total">3</span>' in html
    assert 'name="displacement" value="moderately displaced"' in html and "<kbd>r</kbd>" in html
    data = page_data(response)
    assert data["canLabel"] is True and data["version"] == 1
    assert data["label"]["location"] == "subtrochanteric"
    assert (
        data["label"]["sentence"]
        == "There is a severely displaced fracture of the subtrochanteric region of the femur."
    )
    base = f"/datasets/{hip_dataset.pk}/fractures"
    assert data["urls"] == {
        "save": f"/api/images/{images[1].pk}/fractures/save/",
        "queue": f"/api/datasets/{hip_dataset.pk}/fractures/queue/",
        "queuePage": f"{base}/",
        "previous": f"{base}/{images[0].pk}/",
        "next": f"{base}/{images[2].pk}/",
        "nextUnlabelled": f"{base}/{images[2].pk}/",
    }
    assert data["progress"] == {"total": 3, "mine": 1, "everyone": 1}
    # The next image's deep zoom descriptor, never its original file.
    assert data["prefetch"] == [f"/images/{images[2].pk}/deepzoom.dzi"]
    # The image's class label is the ground truth: the labelling page never shows it.
    assert "badge label-fracture" not in html


def test_researchers_see_the_page_read_only_and_the_queue_sends_them_to_the_first_image(
    client, hip_dataset, images, researcher_user, expert_user
):
    fracture_descriptor_save(image=images[0], expert=expert_user, version=0, fracture=False)
    client.force_login(researcher_user)
    response = client.get(f"/datasets/{hip_dataset.pk}/fractures/")
    assert response["Location"] == f"/datasets/{hip_dataset.pk}/fractures/{images[0].pk}/"
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page_data(page)["canLabel"] is False
    assert "You can view labels but not change them" in html
    assert html.count('<fieldset class="fx-group" disabled>') == 4
    assert 'id="fx-save"' not in html
    assert "No fracture was identified on this study." in html  # eve's label, researchers see everyone's


def test_blind_expert_does_not_see_other_labels_on_the_page(client, hip_dataset, images, expert_user):
    other = UserFactory(username="olga-expert", groups=["expert"])
    fracture_descriptor_save(
        image=images[0], expert=other, version=0, fracture=True, displacement="undisplaced", location="basicervical"
    )
    client.force_login(expert_user)
    html = client.get(f"/datasets/{hip_dataset.pk}/fractures/{images[0].pk}/").content.decode()
    assert "olga-expert" not in html and "basicervical neck" not in html
    assert "Blind labelling" in html


def test_image_of_another_dataset_or_a_mammogram_dataset_is_404(client, hip_dataset, images, expert_user):
    client.force_login(expert_user)
    mammogram = ImageFactory()
    assert client.get(f"/datasets/{hip_dataset.pk}/fractures/{mammogram.pk}/").status_code == 404
    assert client.get(f"/datasets/{mammogram.dataset_id}/fractures/").status_code == 404
    assert client.get(f"/datasets/{mammogram.dataset_id}/fractures/{mammogram.pk}/").status_code == 404


def test_dashboard_and_dataset_page_link_to_the_queue(client, hip_dataset, images, expert_user):
    mammograms = DatasetFactory(name="Mammos")
    client.force_login(expert_user)
    queue = f'href="/datasets/{hip_dataset.pk}/fractures/"'
    dashboard = client.get("/").content.decode()
    assert dashboard.count("Label fractures") == 1 and queue in dashboard
    assert queue in client.get(f"/datasets/{hip_dataset.pk}/").content.decode()
    assert "Label fractures" not in client.get(f"/datasets/{mammograms.pk}/").content.decode()


def test_labelling_page_queries_do_not_grow_with_the_dataset(client, hip_dataset, images, expert_user, admin_user):
    def queries_for_page() -> int:
        client.force_login(admin_user)  # admins see every expert's label: the widest page
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/datasets/{hip_dataset.pk}/fractures/{images[1].pk}/").status_code == 200
        return len(captured)

    small = queries_for_page()
    experts = [UserFactory(username=f"x{n}", groups=["expert"]) for n in range(5)]
    more = [ImageFactory(dataset=hip_dataset) for _ in range(30)]
    for expert in [*experts, expert_user]:
        for image in [images[1], *more[:10]]:
            fracture_descriptor_save(image=image, expert=expert, version=0, fracture=False)
    assert queries_for_page() == small


def test_hip_thumbnails_do_not_show_experts_the_class_label(client, expert_user, admin_user):
    from django.urls import reverse

    from annotator.models import Dataset
    from tests.factories import DatasetFactory, ImageFactory

    dataset = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    ImageFactory(dataset=dataset, label="fracture")
    url = reverse("dataset-detail", args=[dataset.pk])
    client.force_login(expert_user)
    badge = '<span class="badge label-fracture">fracture</span>'  # the per-image badge (the summary counts differ)
    assert badge not in client.get(url).content.decode()
    client.force_login(admin_user)
    assert badge in client.get(url).content.decode()


def test_hip_dataset_page_offers_experts_no_label_filter_or_counts(client, expert_user, admin_user):
    from django.urls import reverse

    from annotator.models import Dataset
    from tests.factories import DatasetFactory, ImageFactory

    dataset = DatasetFactory(kind=Dataset.Kind.HIP_FRACTURE, classes=["no_fracture", "fracture"])
    ImageFactory(dataset=dataset, label="fracture", source_name="broken.png")
    ImageFactory(dataset=dataset, label="no_fracture", source_name="whole.png")
    url = reverse("dataset-detail", args=[dataset.pk]) + "?label=fracture"
    client.force_login(expert_user)
    html = client.get(url).content.decode()
    assert 'name="label"' not in html and "fracture 1" not in html
    assert html.count("<figure") == 2  # the filter is ignored: it would tell which images are fractures
    client.force_login(admin_user)
    html = client.get(url).content.decode()
    assert 'name="label"' in html and html.count("<figure") == 1
