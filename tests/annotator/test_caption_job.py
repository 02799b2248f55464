"""The caption job (issue "Sentences", items 3-4): the hip-fracture paper's sentence generator trained on a
whole-image classifier's frozen features, from the sentences the import's descriptor columns give (the demo
phantoms carry them), evaluated with BLEU and the grammar's content check, and a sentence for one image."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotator.demo import demo_fracture_dataset_create
from annotator.errors import ApplicationError
from annotator.models import FractureDescriptor, Image, Job, SentenceModel
from annotator.services.captioning import image_sentence, image_sentence_attention
from annotator.services.job_runs import job_run
from annotator.services.jobs import job_create
from mining.heatmap import heat_rgba
from mining.sentences import FractureDescriptors, fracture_sentence
from mining.textmetrics import bleu_scores, tokenize_caption
from tests.factories import TrainedModelFactory, UserFactory, client_for, random_model

pytestmark = pytest.mark.django_db
CLASSES = ["no_fracture", "fracture"]


@pytest.fixture
def classifier(tmp_path, media_root):
    dataset, _ = demo_fracture_dataset_create(folder=tmp_path / "hips", n_images=30, seed=2, name="caption-hips")
    patch_params = {"input_size": 64, "side_fraction": 1.0, "whole_image": True}
    return random_model(dataset=dataset, patch_params=patch_params, metrics={})


def test_a_caption_job_trains_evaluates_and_stores_a_sentence_generator(classifier, django_capture_on_commit_callbacks):
    dataset = classifier.dataset
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.CAPTION, dataset=dataset, params={"model": classifier.pk, "epochs": 3})
    assert job.params["source"] == "auto" and job.params["beam_width"] == 3
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    model = SentenceModel.objects.get(job=job)
    assert model.source == "import"  # no expert labels: the import's descriptor columns
    assert [row["epoch"] for row in model.history] == [1, 2, 3] and 1 <= model.best_epoch <= 3
    words = set(model.vocabulary)
    assert {"fracture", "no", "identified"} <= words
    metrics = model.metrics
    assert set(metrics["bleu"]) == {"bleu1", "bleu2", "bleu3", "bleu4"}
    assert all(0 <= value <= 100 for value in metrics["bleu"].values())
    n_test = Image.objects.filter(dataset=dataset, split="test").count()
    assert metrics["images"] == n_test and metrics["bleu_on"] in ("fracture cases", "all test images")
    # The baseline row: the most common training fracture sentence said for every test fracture case,
    # scored by the same BLEU, recomputed here from the images' own descriptors.
    truths = {
        image.pk: FractureDescriptors.from_dict(image.metadata) for image in Image.objects.filter(dataset=dataset)
    }
    train_sentences = {
        tuple(tokenize_caption(fracture_sentence(t)))
        for pk, t in truths.items()
        if t.fracture and Image.objects.get(pk=pk).split == "train"
    }
    constant = metrics["constant"]["sentence"].split()
    assert tuple(constant) in train_sentences
    test_refs = [
        [tokenize_caption(fracture_sentence(t))]
        for pk, t in sorted(truths.items())
        if t.fracture and Image.objects.get(pk=pk).split == "test"
    ]
    expected = bleu_scores([constant] * len(test_refs), test_refs)
    assert metrics["constant"]["bleu"] == {f"bleu{n}": round(100 * v, 2) for n, v in enumerate(expected, start=1)}
    assert metrics["constant"]["content"]["count"] == len(test_refs) == metrics["bleu_images"]
    test_image = Image.objects.get(pk=metrics["examples"][0]["image"])
    assert (
        metrics["examples"][0]["truth"].split()[:1]
        == fracture_sentence(FractureDescriptors.from_dict(test_image.metadata))
        .lower()
        .replace(".", "")
        .replace(",", "")
        .split()[:1]
    )

    admin = UserFactory(groups=["admin"])
    page = client_for(admin).get(reverse("model-detail", args=[classifier.pk])).content.decode()
    assert "Sentence generators" in page and f"#{model.pk}" in page and "BLEU-4" in page
    quoted = f"&quot;{metrics['constant']['sentence']}&quot;"  # in the baseline row's title
    assert "baseline: the most common training sentence" in page and quoted in page
    blind = UserFactory(groups=["expert"])  # labels blind: no sentence that comes from the truth
    blind_page = client_for(blind).get(reverse("model-detail", args=[classifier.pk])).content.decode()
    assert "baseline: the most common training sentence" in blind_page
    assert quoted not in blind_page
    image_page = client_for(admin).get(reverse("image-detail", args=[test_image.pk])).content.decode()
    assert 'id="generated-sentence"' in image_page and "A whole-image classifier" in image_page

    caption = image_sentence(model=model, image=test_image)
    assert caption.tokens and set(caption.tokens) <= words
    assert caption.attention.shape[0] == len(caption.tokens)
    assert caption.attention.sum(axis=1) == pytest.approx(1.0, abs=1e-4)
    # The page carries every word's attention, as a heat image of the 2 x 2 region grid (64-px input).
    with_grid = image_sentence_attention(model=model, image=test_image)
    assert with_grid.caption.tokens == caption.tokens and with_grid.grid == (2, 2)
    heats = with_grid.word_heats()
    maps = caption.attention.reshape(len(caption.tokens), 2, 2)
    assert heats == [heat_rgba(m).ravel().tolist() for m in maps]
    assert 'id="word-attention"' in image_page and 0 < image_page.count('class="word"') <= len(caption.tokens)


def test_expert_labels_are_the_sentences_when_a_dataset_has_them(classifier, django_capture_on_commit_callbacks):
    dataset = classifier.dataset
    expert = UserFactory(groups=["expert"])
    for image in Image.objects.filter(dataset=dataset):
        FractureDescriptor.objects.create(
            image=image, expert=expert, fracture=False, sentence="No fracture was identified on this study."
        )
    with django_capture_on_commit_callbacks(execute=False):
        job = job_create(kind=Job.Kind.CAPTION, dataset=dataset, params={"model": classifier.pk, "epochs": 1})
    assert job_run(job_id=job.pk) == Job.Status.SUCCEEDED, Job.objects.get(pk=job.pk).error
    model = SentenceModel.objects.get(job=job)
    assert model.source == "labels" and "displaced" not in model.vocabulary


def test_bad_caption_requests_are_refused(classifier):
    patch_model = TrainedModelFactory(dataset=classifier.dataset, job__dataset=classifier.dataset)
    for params, message in (
        ({}, "whole-image classifier"),
        ({"model": patch_model.pk}, "whole-image classifier"),
        ({"model": classifier.pk, "source": "dreams"}, "source must be"),
        ({"model": classifier.pk, "epochs": 0}, "need 1 <= epochs"),
    ):
        with pytest.raises(ApplicationError, match=message):
            job_create(kind=Job.Kind.CAPTION, dataset=classifier.dataset, params=params)
