"""Blinded reader studies (issue 11 item 7): creating one from real models (SmoothGrad pictures, generated
and expert-written sentences), the readers' blind view and ratings, the results (Table 3's mean and range,
reader means, Wilcoxon on the paired scores) and the exports."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from django.urls import reverse
from scipy.stats import wilcoxon

from annotator.errors import ApplicationError
from annotator.files import media_path, read_png, write_bytes_atomic
from annotator.models import Explanation, Image, ReaderStudy, StudyAssignment, StudyItem, StudyRating
from annotator.selectors.reader_studies import reader_view, study_assignment, study_results
from annotator.services.captioning import image_sentence
from annotator.services.reader_studies import StudyDesign, reader_study_create, study_images_choose, study_rating_save
from mining.sentence_parse import sentence_from_tokens
from tests.annotator.reader_study_world import LABELLED, hip_models, planted_study
from tests.factories import DatasetFactory, ImageFactory, TrainedModelFactory, UserFactory, client_for

pytestmark = pytest.mark.django_db
Arm = ReaderStudy.Arm


@pytest.fixture
def author():
    return UserFactory(username="label-author", groups=["expert"])


@pytest.fixture
def planted(expert_user, admin_user):
    dataset = DatasetFactory(kind="hip_fracture", classes=["no_fracture", "fracture"], annotation_blind=False)
    images = [ImageFactory(dataset=dataset, split="test") for _ in range(3)]
    classifier = TrainedModelFactory(dataset=dataset, job__dataset=dataset, classes=dataset.classes)
    other = UserFactory(username="second-reader", groups=["expert"])
    study = planted_study(dataset=dataset, classifier=classifier, readers=[expert_user, other], images=images)
    return study, other


def _create(*, split="", sample=None, image_ids=(), seed=0, **design):
    """reader_study_create with the design's fields and the image selection as keywords of one call."""
    return reader_study_create(design=StudyDesign(**design), split=split, sample=sample, image_ids=image_ids, seed=seed)


def _items_by(study, arm):
    return list(StudyItem.objects.filter(study=study, arm=arm).order_by("image_id"))


# -- creating a study from real models ---------------------------------------------------------------------


@pytest.mark.slow  # trains a sentence generator and makes SmoothGrad maps: ~40 s on two busy cores
def test_a_study_from_real_models_holds_every_arm_with_content_computed_once(tmp_path, expert_user, author):
    dataset, classifier, generator = hip_models(tmp_path / "hips", author=author)
    reader2 = UserFactory(username="reader-two", groups=["expert"])
    study = _create(
        name="Table 3",
        dataset=dataset,
        classifier=classifier,
        sentence_model=generator,
        arms=list(Arm.values),
        readers=[expert_user, reader2],
        created_by=None,
        image_ids=[image.pk for image in Image.objects.filter(dataset=dataset, split="train").order_by("pk")[:4]],
        seed=3,
    )
    images = list(Image.objects.filter(dataset=dataset, split="train").order_by("pk")[:4])
    assert study.arms == list(Arm.values)
    # The three explanation arms for every image; the comparison only where a non-reader wrote a label.
    for arm in (Arm.SALIENCY, Arm.SENTENCE, Arm.BOTH):
        assert [item.image_id for item in _items_by(study, arm)] == [image.pk for image in images]
    compared = _items_by(study, Arm.COMPARISON)
    assert [item.image_id for item in compared] == [image.pk for image in images[:LABELLED]]
    assert study.skipped == {"comparison": [image.pk for image in images[LABELLED:]]}
    # Every image's SmoothGrad explanation was made (and is cached) and its generator's sentence shown.
    for image in images:
        assert Explanation.objects.filter(model=classifier, image=image, method="smoothgrad").count() == 1
        generated = sentence_from_tokens(image_sentence(model=generator, image=image).tokens)
        sentence_item = StudyItem.objects.get(study=study, image=image, arm=Arm.SENTENCE)
        both_item = StudyItem.objects.get(study=study, image=image, arm=Arm.BOTH)
        saliency_item = StudyItem.objects.get(study=study, image=image, arm=Arm.SALIENCY)
        assert sentence_item.content["sentences"] == [generated] == both_item.content["sentences"]
        assert saliency_item.content["sentences"] == []
        # The saliency pictures are the image under its heat map: coloured, unlike the plain one.
        plain = read_png(sentence_item.content["picture"]).astype(int)
        heat = read_png(saliency_item.content["picture"]).astype(int)
        assert plain.shape == heat.shape and plain.shape[2] == 3
        assert np.all(plain[..., 0] == plain[..., 1]) and np.abs(heat - plain).max() > 20
        both_picture = read_png(both_item.content["picture"]).astype(int)
        assert np.array_equal(both_picture, heat)
        items = StudyItem.objects.filter(study=study, image=image)
        names = [item.content["picture"] for item in items]
        assert len(set(names)) == len(names) == items.count()  # no two items of an image share a URL
        for name in names:
            assert re.fullmatch(r"reader_studies/[0-9a-f]{32}\.png", name)
            assert media_path(name).is_file()
    # A pair shows the generated and the expert's template sentence.
    for item in compared:
        generated = StudyItem.objects.get(study=study, image=item.image, arm=Arm.SENTENCE).content["sentences"][0]
        by_source = dict(zip(item.sources, item.content["sentences"], strict=True))
        assert by_source == {"generated": generated, "expert": "No fracture was identified on this study."}
    assert study.assignments.count() == 2
    # A reader never rates their own sentence: with the author reading, the labelled images have no pair.
    with pytest.raises(ApplicationError, match="no image has what the chosen arms show"):
        _create(
            name="own",
            dataset=dataset,
            classifier=classifier,
            sentence_model=generator,
            arms=[Arm.COMPARISON],
            readers=[author],
            created_by=None,
            image_ids=[item.image_id for item in compared],
        )
    assert ReaderStudy.objects.count() == 1


def test_a_pairs_sides_are_seeded_and_both_occur(expert_user):
    dataset = DatasetFactory(kind="hip_fracture", classes=["no_fracture", "fracture"])
    images = [ImageFactory(dataset=dataset, split="test") for _ in range(10)]
    classifier = TrainedModelFactory(dataset=dataset, job__dataset=dataset, classes=dataset.classes)
    sides = []
    for name in ("a", "b"):
        study = planted_study(
            dataset=dataset, classifier=classifier, readers=[expert_user], images=images, name=name, arms=["comparison"]
        )
        sides.append([item.sources for item in study.items.order_by("image_id")])
        for item in study.items.all():
            expected = [f"alpha words {item.image_id}", f"omega words {item.image_id}"]
            assert item.content["sentences"] == (expected if item.sources[0] == "generated" else expected[::-1])
    assert sides[0] == sides[1]  # the same seed, the same sides
    assert {pair[0] for pair in sides[0]} == {"generated", "expert"}


def test_a_sample_is_seeded_and_sorted_and_at_most_the_split():
    dataset = DatasetFactory(kind="hip_fracture")
    images = [ImageFactory(dataset=dataset, split="test").pk for _ in range(6)]
    ImageFactory(dataset=dataset, split="train")
    first = [i.pk for i in study_images_choose(dataset=dataset, split="test", sample=3, seed=5)]
    assert first == [i.pk for i in study_images_choose(dataset=dataset, split="test", sample=3, seed=5)]
    assert len(first) == 3 and first == sorted(first) and set(first) <= set(images)
    others = {
        tuple(i.pk for i in study_images_choose(dataset=dataset, split="test", sample=3, seed=s)) for s in range(6)
    }
    assert len(others) > 1
    assert [i.pk for i in study_images_choose(dataset=dataset, split="test", sample=50)] == images
    assert [i.pk for i in study_images_choose(dataset=dataset, split="test")] == images


def test_bad_studies_are_refused_with_a_reason_and_store_nothing(expert_user, researcher_user):
    dataset = DatasetFactory(kind="hip_fracture", classes=["no_fracture", "fracture"])
    images = [ImageFactory(dataset=dataset, split="test") for _ in range(2)]
    classifier = TrainedModelFactory(dataset=dataset, job__dataset=dataset, classes=dataset.classes)
    base = {
        "name": "s",
        "dataset": dataset,
        "classifier": classifier,
        "sentence_model": None,
        "arms": [Arm.SALIENCY],
        "readers": [expert_user],
        "created_by": None,
        "split": "test",
    }
    cases = [
        ({"name": "  "}, "a study needs a name"),
        ({"arms": []}, "choose arms among"),
        ({"arms": ["saliency", "made-up"]}, "choose arms among"),
        ({"arms": [Arm.SENTENCE]}, "the sentence arms need a sentence generator"),
        ({"readers": []}, "assign at least one reader"),
        ({"readers": [researcher_user]}, "only experts and admins can read"),
        ({"split": "nope"}, "choose a split or images"),
        ({"split": "train"}, "the study would have no image"),
        ({"image_ids": [images[0].pk, 999_999]}, "images not in dataset"),
        ({"sample": 0}, "a sample needs at least one image"),
        ({"classifier": TrainedModelFactory()}, "was trained on another dataset"),
    ]
    for change, reason in cases:
        with pytest.raises(ApplicationError, match=reason):
            _create(**{**base, **change})
    # Blind labels cannot be shown to readers: the comparison needs the dataset opened.
    with pytest.raises(ApplicationError, match="open the dataset's labels first"):
        _create(**{**base, "arms": [Arm.COMPARISON], "sentence_model": _generator_of(classifier)})
    # A checkpoint that cannot be read is refused before anything is stored, its pictures removed.
    with pytest.raises(ApplicationError, match="checkpoint cannot be read"):
        _create(**base)
    assert not ReaderStudy.objects.exists()
    folder = media_path("reader_studies")
    assert not folder.exists() or not any(folder.iterdir())


def _generator_of(classifier):
    from annotator.models import SentenceModel
    from tests.factories import JobFactory

    return SentenceModel.objects.create(
        job=JobFactory(kind="caption", dataset=classifier.dataset),
        classifier=classifier,
        dataset=classifier.dataset,
        checkpoint="checkpoints/none.pt",
        source="labels",
    )


# -- ratings ----------------------------------------------------------------------------------------------


def test_ratings_are_on_the_arms_scale_and_one_per_reader(planted, expert_user, researcher_user):
    study, _ = planted
    saliency = _items_by(study, Arm.SALIENCY)[0]
    pair = _items_by(study, Arm.COMPARISON)[0]
    for score, second, reason in [(11, None, "from 1 to 10"), (0, None, "from 1 to 10"), (4, 5, "one score")]:
        with pytest.raises(ApplicationError, match=reason):
            study_rating_save(study=study, key=saliency.key, reader=expert_user, score=score, second_score=second)
    for score, second, reason in [(4, None, "two sentences"), (6, 2, "from 1 to 5"), (2, 6, "from 1 to 5")]:
        with pytest.raises(ApplicationError, match=reason):
            study_rating_save(study=study, key=pair.key, reader=expert_user, score=score, second_score=second)
    with pytest.raises(ApplicationError, match="not a reader") as refused:
        study_rating_save(study=study, key=saliency.key, reader=researcher_user, score=3)
    assert refused.value.status == 403
    with pytest.raises(ApplicationError, match="No such item") as missing:
        study_rating_save(study=study, key="nope", reader=expert_user, score=3)
    assert missing.value.status == 404
    assert not StudyRating.objects.exists()
    study_rating_save(study=study, key=saliency.key, reader=expert_user, score=3)
    study_rating_save(study=study, key=saliency.key, reader=expert_user, score=10)  # a new score replaces
    study_rating_save(study=study, key=pair.key, reader=expert_user, score=5, second_score=1)
    assert sorted(StudyRating.objects.values_list("score", "second_score")) == [(5, 1), (10, None)]


def test_each_reader_has_their_own_stable_order_and_resumes_at_the_first_unrated(planted, expert_user):
    study, other = planted
    mine = study_assignment(study=study, user=expert_user)
    theirs = study_assignment(study=study, user=other)
    first = reader_view(study=study, assignment=mine, media_url="/media/")
    keys = [item["key"] for item in first["items"]]
    assert sorted(keys) == sorted(study.items.values_list("key", flat=True)) and len(keys) == 12
    assert keys == [item["key"] for item in reader_view(study=study, assignment=mine, media_url="/m/")["items"]]
    assert keys != [item["key"] for item in reader_view(study=study, assignment=theirs, media_url="/m/")["items"]]
    assert (first["rated"], first["resume"]) == (0, 0)
    for key in keys[:3] + keys[4:5]:
        item = StudyItem.objects.get(key=key)
        study_rating_save(
            study=study, key=key, reader=expert_user, score=2, second_score=2 if item.arm == "comparison" else None
        )
    again = reader_view(study=study, assignment=mine, media_url="/media/")
    assert (again["rated"], again["resume"], again["total"]) == (4, 3, 12)


# -- blinding: what a reader's API and page carry ----------------------------------------------------------


def test_pairs_hide_from_readers_while_the_dataset_is_blind_again(planted, expert_user, admin_user):
    study, _ = planted
    pair = _items_by(study, Arm.COMPARISON)[0]
    study_rating_save(study=study, key=pair.key, reader=expert_user, score=3, second_score=4)
    mine = study_assignment(study=study, user=expert_user)
    assert reader_view(study=study, assignment=mine, media_url="/m/")["total"] == 12
    study.dataset.annotation_blind = True  # an admin closes the labels after the study was made
    study.dataset.save()
    view = reader_view(study=study, assignment=mine, media_url="/m/")
    assert (view["total"], view["rated"]) == (9, 0)
    assert pair.key not in {item["key"] for item in view["items"]}
    assert not any(len(item["sentences"]) == 2 for item in view["items"])
    with pytest.raises(ApplicationError, match="No such item"):
        study_rating_save(study=study, key=pair.key, reader=expert_user, score=1, second_score=1)
    # An admin reader still rates them (they see every label); the results keep the pair's scores.
    admin_reader = study.assignments.create(reader=admin_user, seed=2)
    assert reader_view(study=study, assignment=admin_reader, media_url="/m/")["total"] == 12
    assert study_results(study=study)["arms"][3]["n"] == 1


def test_a_readers_api_and_page_never_name_the_source_nor_show_another_readers_scores(planted, expert_user):
    study, other = planted
    dataset_images = list(study.items.values_list("image__source_name", flat=True))
    # The other reader rates everything 7 (pairs 4 and 3); the expert rates one item.
    for item in study.items.all():
        pair = item.arm == Arm.COMPARISON
        study_rating_save(
            study=study, key=item.key, reader=other, score=4 if pair else 7, second_score=3 if pair else None
        )
    mine = study.items.filter(arm=Arm.SALIENCY).first()
    study_rating_save(study=study, key=mine.key, reader=expert_user, score=2)
    client = client_for(expert_user)
    api = client.get(reverse("api:study-items", args=[study.pk]))
    page = client.get(reverse("study-rate", args=[study.pk]))
    saved = client.put(reverse("api:study-rating-save", args=[study.pk, mine.key]), {"score": 5}, format="json")
    assert api.status_code == page.status_code == saved.status_code == 200
    body = api.json()
    # Only the reader's own scores: the other reader's 7s (and the pairs' 4 / 3) are nowhere.
    scores = {item["key"]: (item["score"], item["second_score"]) for item in body["items"]}
    assert scores[mine.key] == (2, None)
    assert all(value == (None, None) for key, value in scores.items() if key != mine.key)
    assert saved.json() == {"key": mine.key, "score": 5, "second_score": None, "rated": 1, "total": 12}
    # Nothing but what is shown: the keys of an item are these, whatever the arm.
    assert {frozenset(item) for item in body["items"]} == {
        frozenset({"key", "picture", "sentences", "scale", "score", "second_score"})
    }
    for text in (api.content.decode(), page.content.decode(), saved.content.decode()):
        lowered = text.replace(expert_user.username, "").lower()  # the page names who is signed in
        for word in ("generated", "expert", "saliency", "comparison", "machine", "human", '"arm"', "sources"):
            assert word not in lowered, word
        for name in dataset_images:
            assert name not in text  # nor the images' file names
        assert f"/models/{study.classifier_id}/" not in text and '"model"' not in text
        assert '"score":7' not in text.replace(" ", "") and '"second_score":3' not in text.replace(" ", "")


def test_only_readers_rate_and_only_admins_and_researchers_see_results(
    planted, admin_user, researcher_user, expert_user
):
    study, _ = planted
    assert client_for(researcher_user).get(reverse("study-rate", args=[study.pk])).status_code == 403
    assert client_for(admin_user).get(reverse("api:study-items", args=[study.pk])).status_code == 403
    for url in (reverse("study-results", args=[study.pk]), reverse("api:study-results", args=[study.pk])):
        assert client_for(expert_user).get(url).status_code == 403
        assert client_for(researcher_user).get(url).status_code == 200
    for fmt in ("csv", "json"):
        assert client_for(expert_user).get(reverse("api:study-export", args=[study.pk, fmt])).status_code == 403


# -- results and exports ----------------------------------------------------------------------------------


def test_results_give_table_3s_mean_and_range_reader_means_and_wilcoxon_as_scipy(planted, expert_user, admin_user):
    study, other = planted
    planned = {  # (reader, arm) -> scores on the three images, in image order
        (expert_user, Arm.SALIENCY): [2, 5, 6],
        (expert_user, Arm.SENTENCE): [6, 7, 8],
        (expert_user, Arm.BOTH): [8, 9, 9],
        (other, Arm.SALIENCY): [4, 4, 5],
        (other, Arm.SENTENCE): [7, 8, 6],
        (other, Arm.BOTH): [9, 8, 9],
    }
    for (reader, arm), values in planned.items():
        for item, value in zip(_items_by(study, arm), values, strict=True):
            study_rating_save(study=study, key=item.key, reader=reader, score=value)
    pair_scores = {}  # (reader, image) -> {source: score}
    for reader, shown in ((expert_user, [(5, 3), (4, 4), (2, 5)]), (other, [(5, 2), (3, 3), (4, 1)])):
        for item, (left, right) in zip(_items_by(study, Arm.COMPARISON), shown, strict=True):
            study_rating_save(study=study, key=item.key, reader=reader, score=left, second_score=right)
            pair_scores[(reader.username, item.image_id)] = dict(zip(item.sources, (left, right), strict=True))
    results = study_results(study=study)
    arms = {row["arm"]: row for row in results["arms"]}
    saliency = [2, 5, 6, 4, 4, 5]
    assert (arms["saliency"]["mean"], arms["saliency"]["low"], arms["saliency"]["high"]) == (
        pytest.approx(np.mean(saliency)),
        2,
        6,
    )
    assert (arms["both"]["mean"], arms["both"]["low"], arms["both"]["high"]) == (pytest.approx(52 / 6), 8, 9)
    generated = [pair_scores[key]["generated"] for key in sorted(pair_scores)]
    expert = [pair_scores[key]["expert"] for key in sorted(pair_scores)]
    assert arms["generated_sentence"]["mean"] == pytest.approx(np.mean(generated))
    assert arms["expert_sentence"]["n"] == 6
    readers = {row["reader"]: row for row in results["readers"]}
    assert readers[expert_user.username]["means"]["saliency"] == pytest.approx(13 / 3)
    assert readers[other.username]["means"]["sentence"] == pytest.approx(7.0)
    assert readers[other.username]["rated"] == 12
    tests = {(t["first"], t["second"]): t for t in results["paired"]}
    assert set(tests) == {
        ("saliency", "sentence"),
        ("saliency", "both"),
        ("sentence", "both"),
        ("generated_sentence", "expert_sentence"),
    }
    both_vs_saliency = wilcoxon([2, 5, 6, 4, 4, 5], [8, 9, 9, 9, 8, 9])
    assert tests[("saliency", "both")]["pairs"] == 6
    assert tests[("saliency", "both")]["p_value"] == pytest.approx(float(both_vs_saliency.pvalue))
    assert tests[("saliency", "both")]["statistic"] == pytest.approx(float(both_vs_saliency.statistic))
    comparison = wilcoxon(generated, expert)
    assert tests[("generated_sentence", "expert_sentence")]["p_value"] == pytest.approx(float(comparison.pvalue))
    # The page and the API say the same.
    api = client_for(admin_user).get(reverse("api:study-results", args=[study.pk])).json()
    assert api["arms"][0]["mean"] == pytest.approx(np.mean(saliency))
    page = client_for(admin_user).get(reverse("study-results", args=[study.pk])).content.decode()
    assert f"{np.mean(saliency):.1f} (2\u20136)" in page and "8.7 (8\u20139)" in page


def test_exports_hold_every_score_with_its_source_and_neutralise_formulas(planted, expert_user, admin_user):
    study, _ = planted
    evil = UserFactory(username="=cmd|calc", groups=["expert"])
    study.assignments.create(reader=evil, seed=1)
    item = _items_by(study, Arm.BOTH)[0]
    pair = _items_by(study, Arm.COMPARISON)[0]
    study_rating_save(study=study, key=item.key, reader=evil, score=9)
    study_rating_save(study=study, key=pair.key, reader=expert_user, score=2, second_score=5)
    client = client_for(admin_user)
    rows = json.loads(b"".join(client.get(reverse("api:study-export", args=[study.pk, "json"])).streaming_content))
    assert len(rows) == 3
    pair_rows = {row["position"]: row for row in rows if row["arm"] == "comparison"}
    assert (pair_rows["left"]["sentence_source"], pair_rows["left"]["score"]) == (pair.sources[0], 2)
    assert (pair_rows["right"]["sentence_source"], pair_rows["right"]["score"], pair_rows["right"]["scale"]) == (
        pair.sources[1],
        5,
        5,
    )
    text = b"".join(client.get(reverse("api:study-export", args=[study.pk, "csv"])).streaming_content).decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 3
    assert [row["reader"] for row in table if row["arm"] == "both"] == ["'=cmd|calc"]
    assert client.get(reverse("api:study-export", args=[study.pk, "xml"])).status_code == 400


def test_the_new_study_page_shows_a_refusal_on_the_form_and_keeps_nothing(admin_user, expert_user):
    dataset = DatasetFactory(kind="hip_fracture", classes=["no_fracture", "fracture"])
    ImageFactory(dataset=dataset, split="test")
    classifier = TrainedModelFactory(dataset=dataset, job__dataset=dataset, classes=dataset.classes)
    generator = _generator_of(classifier)
    client = client_for(admin_user)
    page = client.get(reverse("study-new")).content.decode()
    assert 'name="arms" value="saliency"' in page and expert_user.username in page
    form = {
        "name": "blind pair",
        "dataset": dataset.pk,
        "classifier": classifier.pk,
        "sentence_model": generator.pk,
        "arms": ["comparison"],
        "split": "test",
        "seed": 0,
        "readers": [expert_user.pk],
    }
    response = client.post(reverse("study-new"), form)
    assert response.status_code == 200
    assert "open the dataset&#x27;s labels first" in response.content.decode()
    assert not ReaderStudy.objects.exists()
    bad_ids = client.post(reverse("study-new"), {**form, "images": "1, x"}).content.decode()
    assert "image ids are whole numbers" in bad_ids


def test_a_studys_pictures_are_served_to_its_readers_and_admins_only(planted, expert_user, admin_user, media_root):
    study, other_reader = planted
    item = study.items.first()
    name = write_bytes_atomic("reader_studies/" + "ab" * 16 + ".png", b"\x89PNG picture of the study")
    item.content = {**item.content, "picture": name}
    item.save(update_fields=["content"])
    url = reverse("media", args=[name])
    for user in (expert_user, other_reader, admin_user):  # its readers, and admins
        response = client_for(user).get(url)
        assert response.status_code == 200 and b"".join(response.streaming_content) == b"\x89PNG picture of the study"
    outsider = UserFactory(username="not-a-reader", groups=["expert"])
    for user in (outsider, UserFactory(groups=["researcher"])):  # anyone else: as if no such file
        assert client_for(user).get(url).status_code == 404
    StudyAssignment.objects.filter(study=study, reader=other_reader).delete()
    assert client_for(other_reader).get(url).status_code == 404
