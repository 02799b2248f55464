"""The `caption` job: the hip-fracture paper's sentence generator (``mining.captioner``) trained on the
frozen final activation map of a whole-image classifier, evaluated on the test split, stored as a
SentenceModel; and a sentence for one image from it.

Training sentences (``source``):
  * labels: the experts' fracture labels through the template grammar: the sentence more than half of the
    image's labels give, else the image's only label (images whose experts disagree are left out);
  * import: the descriptor columns the dataset was imported with (the demo phantoms carry them);
  * report: a free-text report column (``metadata["report"]``), as the chest X-ray paper trains on reports;
  * auto (the default): labels when the dataset has any, else import when its images carry descriptors,
    else report.
Evaluation, as the paper's: BLEU-1..4 of the beam-search sentences against the truth sentence on the test
split's fracture cases, and the content read back by the grammar (location and character correct).
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch
from django.db import transaction

from mining.caption_decoding import Caption, beam_search
from mining.caption_training import CaptionTrainConfig, caption_features, train_captioner
from mining.captioner import (
    Captioner,
    CaptionerConfig,
    Vocabulary,
    build_vocabulary,
    captioner_load,
    captioner_save,
    encode_captions,
    region_features_grid,
)
from mining.heatmap import heat_rgba
from mining.networks import checkpoint_load
from mining.progress import CancelFn, ProgressFn, check_cancel
from mining.sentence_parse import content_accuracy
from mining.sentences import FractureDescriptors, fracture_sentence
from mining.splits import carve_validation
from mining.textmetrics import bleu_scores, tokenize_caption

from ..errors import ApplicationError
from ..files import delete_quietly, media_local_file, unique_name, write_local_file_atomic
from ..models import Dataset, FractureDescriptor, Image, Job, SentenceModel, TrainedModel, UploadedImage
from .compute import worker_device
from .explanations import network_for
from .image_data import image_input, image_split_load
from .job_state import JobReporter, job_finish_succeeded
from .network_input import model_window, network_pixels

__all__ = [
    "CAPTION_DEFAULTS",
    "ImageSentence",
    "caption_params_validate",
    "image_sentence",
    "image_sentence_attention",
    "run_caption",
    "sentence_models_train",
]

SOURCES = ("auto", "labels", "import", "report")
CAPTION_DEFAULTS: dict[str, Any] = {"source": "auto", "epochs": 30, "copies": 2, "beam_width": 3, "seed": 0}
VALIDATION_FRACTION = 0.1


def caption_params_validate(params: dict[str, Any], dataset: Dataset | None) -> dict[str, Any]:
    model_id = str(params.get("model") or "")
    classifier = TrainedModel.objects.filter(pk=int(model_id)).first() if model_id.isdigit() else None
    if classifier is None or not classifier.patch_params.get("whole_image"):
        raise ApplicationError("a sentence generator needs a whole-image classifier (params.model)")
    if dataset is not None and classifier.dataset_id != dataset.pk:
        raise ApplicationError(f"model #{classifier.pk} was trained on another dataset")
    cleaned = {**CAPTION_DEFAULTS, **{k: v for k, v in params.items() if v not in (None, "")}, "model": classifier.pk}
    if cleaned["source"] not in SOURCES:
        raise ApplicationError(f"source must be one of {', '.join(SOURCES)}")
    try:
        for key in ("epochs", "copies", "beam_width", "seed"):
            cleaned[key] = int(cleaned[key])
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"bad sentence-generator parameter: {exc}") from exc
    if not (1 <= cleaned["epochs"] <= 500 and 1 <= cleaned["copies"] <= 16 and 1 <= cleaned["beam_width"] <= 10):
        raise ApplicationError("need 1 <= epochs <= 500, 1 <= copies <= 16 and 1 <= beam_width <= 10")
    return {key: cleaned[key] for key in ("model", *CAPTION_DEFAULTS)}


def _truth(image: Image) -> FractureDescriptors | None:
    try:
        return FractureDescriptors.from_dict(image.metadata or {})
    except (KeyError, TypeError, ValueError):
        return None


def _label_sentences(dataset: Dataset) -> dict[int, str]:
    by_image: dict[int, list[str]] = {}
    for image_id, sentence in FractureDescriptor.objects.filter(image__dataset=dataset).values_list(
        "image_id", "sentence"
    ):
        by_image.setdefault(image_id, []).append(sentence)
    chosen = {}
    for image_id, sentences in by_image.items():
        sentence, votes = Counter(sentences).most_common(1)[0]
        if votes * 2 > len(sentences) or len(sentences) == 1:
            chosen[image_id] = sentence
    return chosen


def _source(dataset: Dataset, images: list[Image], wanted: str) -> str:
    if wanted != "auto":
        return wanted
    if FractureDescriptor.objects.filter(image__dataset=dataset).exists():
        return "labels"
    return "import" if any(_truth(image) is not None for image in images) else "report"


def _sentences(dataset: Dataset, images: list[Image], source: str) -> dict[int, str]:
    if source == "labels":
        return _label_sentences(dataset)
    if source == "import":
        return {image.pk: fracture_sentence(truth) for image in images if (truth := _truth(image)) is not None}
    return {image.pk: str(image.metadata["report"]) for image in images if (image.metadata or {}).get("report")}


def _features(
    classifier: torch.nn.Module, trained: TrainedModel, split: str, ids: set[int], **kw: Any
) -> tuple[list[int], torch.Tensor]:
    """The images of ``split`` among ``ids`` as the classifier ``trained`` sees them, and their region features."""
    patients: dict[str, Any] = {key: kw.pop(key) for key in ("patients", "exclude_patients") if key in kw}
    part = image_split_load(
        dataset=trained.dataset,
        splits=[split],
        classes=trained.dataset.classes,
        size=int(trained.patch_params["input_size"]),
        window=model_window(trained),
        **patients,
    )
    keep = [row for row, image_id in enumerate(part.image_ids) if image_id in ids]
    crops = part.crops[torch.tensor(keep, dtype=torch.int64)]
    return [part.image_ids[row] for row in keep], caption_features(classifier, crops, **kw)


def sentence_models_train(*, job: Job, progress: ProgressFn, cancelled: CancelFn) -> dict[str, Any]:
    params = job.params
    trained = TrainedModel.objects.select_related("dataset").get(pk=params["model"])
    dataset = trained.dataset
    info, _ = checkpoint_load(media_local_file(trained.checkpoint.name))
    classifier = info.model.to(worker_device()).eval()
    images = list(Image.objects.filter(dataset=dataset))
    source = _source(dataset, images, params["source"])
    sentences = _sentences(dataset, images, source)
    if not sentences:
        raise ApplicationError(f"no training sentences from {source} in dataset {dataset.name!r}")
    with_sentence = set(sentences)
    patients = sorted({i.patient_id for i in images if i.split == "train" and i.pk in with_sentence})
    if len(patients) < 2:
        raise ApplicationError("at least 2 training patients with a sentence are needed")
    validation = carve_validation(patients, VALIDATION_FRACTION, seed=params["seed"])
    progress(0, 1, "Computing the classifier's region features")
    train_ids, train_x = _features(
        classifier,
        trained,
        "train",
        with_sentence,
        exclude_patients=validation,
        copies=params["copies"],
        seed=params["seed"],
        cancelled=cancelled,
    )
    val_ids, val_x = _features(classifier, trained, "train", with_sentence, patients=validation)
    test_ids, test_x = _features(classifier, trained, "test", with_sentence)
    tokens = {image_id: tokenize_caption(sentences[image_id]) for image_id in with_sentence}
    vocabulary = build_vocabulary(tokens[i] for i in train_ids)
    config = CaptionerConfig(vocab_size=len(vocabulary), feature_dim=int(train_x.shape[-1]))
    torch.manual_seed(params["seed"])
    captioner = Captioner(config)
    train_config = CaptionTrainConfig(epochs=params["epochs"], seed=params["seed"])
    result = train_captioner(
        captioner,
        train_x,
        encode_captions(vocabulary, [tokens[i] for i in train_ids]),
        val_x[:, 0],
        encode_captions(vocabulary, [tokens[i] for i in val_ids]),
        train_config,
        progress=progress,
        cancelled=cancelled,
    )
    captioner.load_state_dict(result.best_state)
    check_cancel(cancelled)
    progress(1, 1, "Evaluating on the test split")
    decoded = beam_search(captioner.eval(), test_x[:, 0], vocabulary, width=params["beam_width"])
    constant = _constant_sentence(Image.objects.in_bulk(train_ids), train_ids, tokens)
    metrics = _evaluate(Image.objects.in_bulk(test_ids), test_ids, decoded, tokens, source, constant)
    name = unique_name("checkpoints", f"job{job.pk}-captioner", ".pt")
    with write_local_file_atomic(name) as checkpoint_file:
        captioner_save(checkpoint_file, captioner, vocabulary, config=asdict(config), source=source)
    try:
        with transaction.atomic():  # the generator and its job's success commit together (see training)
            SentenceModel.objects.filter(job=job).delete()
            model = SentenceModel.objects.create(
                job=job,
                classifier=trained,
                dataset=dataset,
                checkpoint=name,
                source=source,
                vocabulary=list(vocabulary.words),
                config={**asdict(config), **asdict(train_config), "beam_width": params["beam_width"]},
                history=result.history,
                best_epoch=result.best_epoch,
                metrics=metrics,
            )
            summary = {
                "sentence_model": model.pk,
                "source": source,
                "bleu": metrics["bleu"],
                "content": metrics["content"],
            }
            job_finish_succeeded(job_id=job.pk, result=summary)
    except BaseException:
        delete_quietly([name])
        raise
    return summary


def _constant_sentence(images: dict[int, Image], ids: list[int], tokens: dict[int, list[str]]) -> list[str]:
    """The training images' most common sentence among their fracture cases (among all of them where none
    has a known fracture; the earliest on a tie): the baseline said for every test case, which needs no
    image, so the model page can show what the generator learned beyond the grammar's usual sentence."""
    fractured = [i for i in ids if (truth := _truth(images[i])) is not None and truth.fracture]
    counts = Counter(tuple(tokens[i]) for i in (fractured or ids))
    return list(counts.most_common(1)[0][0]) if counts else []


def _text_scores(
    sentences: list[list[str]], ids: list[int], rows: list[int], truths: list[Any], tokens: dict[int, list[str]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """BLEU-1..4 (x 100) of ``sentences`` (one per test image) on ``rows``, and content on the judged images."""
    bleu = bleu_scores([sentences[r] for r in rows], [[tokens[ids[r]]] for r in rows]) if rows else []
    judged = [(" ".join(sentences[r]), truths[r]) for r in range(len(ids)) if truths[r] is not None]
    content = content_accuracy([s for s, _ in judged], [t for _, t in judged]) if judged else {}
    return {f"bleu{n}": round(100 * value, 2) for n, value in enumerate(bleu, start=1)}, content


def _evaluate(
    images: dict[int, Image],
    ids: list[int],
    decoded: list[Caption],
    tokens: dict[int, list[str]],
    source: str,
    constant: list[str],
) -> dict[str, Any]:
    """BLEU-1..4 on the fracture cases (the paper's), and the grammar's content correctness; the same for
    ``constant``, the most common training sentence said for every image (not the paper's: a baseline)."""
    truths = [_truth(images[i]) for i in ids]
    fractured = [row for row, truth in enumerate(truths) if truth is not None and truth.fracture]
    rows = fractured if fractured else list(range(len(ids)))
    bleu, content = _text_scores([c.tokens for c in decoded], ids, rows, truths, tokens)
    constant_bleu, constant_content = _text_scores([constant] * len(ids), ids, rows, truths, tokens)
    return {
        "split": "test",
        "images": len(ids),
        "bleu_images": len(rows),
        "bleu_on": "fracture cases" if fractured else "all test images",
        "bleu": bleu,
        "content": content,
        "constant": {"sentence": " ".join(constant), "bleu": constant_bleu, "content": constant_content},
        "examples": [
            {"image": ids[r], "generated": " ".join(decoded[r].tokens), "truth": " ".join(tokens[ids[r]])}
            for r in range(min(8, len(ids)))
        ],
        "source": source,
    }


@dataclass(frozen=True)
class ImageSentence:
    """A generated sentence and the (h, w) grid of the classifier's regions its words attend to."""

    caption: Caption
    grid: tuple[int, int]

    def word_heats(self) -> list[list[int]]:
        """Per generated token, its attention as an RGBA heat image of the grid (``mining.heatmap``, each
        scaled to its own peak), flattened row-major: what the page paints over the image on hover."""
        maps = self.caption.attention_maps(self.grid)
        return [heat_rgba(word).ravel().tolist() for word in maps]


def image_sentence(*, model: SentenceModel, image: Image | UploadedImage) -> Caption:
    """A sentence for one image or upload from ``model`` (beam search with its width), with each word's
    attention over the classifier's regions."""
    return image_sentence_attention(model=model, image=image).caption


def image_sentence_attention(*, model: SentenceModel, image: Image | UploadedImage) -> ImageSentence:
    """``image_sentence`` with the grid its attention lies on (the whole image: a whole-image classifier
    sees the image squeezed to its square input, so the grid spans it)."""
    classifier = network_for(model.classifier)  # loaded once per process, as the image page's explanation
    captioner, vocabulary = _generator(model.pk, model.checkpoint.name)
    x = image_input(network_pixels(image, classifier.window), classifier.input_size)
    with classifier.lock:
        features, grid = region_features_grid(classifier.model, x)
    caption = beam_search(captioner, features, vocabulary, width=int(model.config.get("beam_width", 3)))[0]
    return ImageSentence(caption, grid)


@functools.lru_cache(maxsize=2)
def _generator(pk: int, checkpoint: str) -> tuple[Captioner, Vocabulary]:
    """A stored sentence generator, loaded once per process (keyed by its checkpoint: a retrained one reloads)."""
    captioner, vocabulary, _extra = captioner_load(media_local_file(checkpoint))
    return captioner.eval(), vocabulary


def run_caption(job: Job, reporter: JobReporter) -> dict[str, Any]:
    return sentence_models_train(job=job, progress=reporter.progress, cancelled=reporter.cancelled)
