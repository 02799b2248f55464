"""mining.captioner, caption_decoding and caption_training on tiny vocabularies and tiny models.

Exact checks: the length-normalised loss on hand-made logits and on a model whose only non-zero weight is
the output bias (so every step predicts softmax(bias)); beam search against an exhaustive enumeration of
every sentence up to the maximum length (scored by the teacher-forced forward, a separate code path); greedy
decoding against beam width 1; a handful of sentences learned exactly. Both LSTM input variants (the
paper's, and feed_word=True) are checked where decoding differs.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from mining.caption_decoding import beam_search, greedy_decode
from mining.caption_training import (
    Augmentation,
    CaptionTrainConfig,
    augment_inputs,
    caption_features,
    caption_loader,
    caption_validation_loss,
    train_captioner,
)
from mining.captioner import (
    END,
    PAD,
    SPECIALS,
    START,
    Captioner,
    CaptionerConfig,
    Vocabulary,
    build_vocabulary,
    caption_loss,
    captioner_load,
    captioner_save,
    encode_captions,
    region_features,
)
from mining.data import to_input
from mining.progress import Cancelled

# These models are tiny: on a shared 2-core machine OpenMP's waiting threads cost far more than they give.
pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = Vocabulary((*SPECIALS, "a", "b"))  # 6 tokens; a, b and <end> can be generated
TINY = {"hidden_size": 8, "embedding_size": 4, "attention_size": 5}


def tiny_model(feed_word: bool = False, seed: int = 0, feature_dim: int = 6) -> Captioner:
    torch.manual_seed(seed)
    model = Captioner(CaptionerConfig(len(VOCAB), feature_dim, feed_word=feed_word, **TINY))
    with torch.no_grad():  # big enough weights that sentences differ in probability
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


def test_vocabulary_and_encoding() -> None:
    vocab = build_vocabulary([["b", "a", "c"], ["a", "c"], ["a"]])
    assert vocab.tokens == (*SPECIALS, "a", "c", "b")  # by count, ties alphabetical
    ids = encode_captions(vocab, [["a", "c"], ["b", "zebra", "a", "c"], []])
    assert ids.tolist() == [[START, 4, 5, END, PAD, PAD], [START, 6, 3, 4, 5, END], [START, END, PAD, PAD, PAD, PAD]]
    assert vocab.decode([4, 3, END, 5]) == ["a", "<unk>"]
    with pytest.raises(ValueError):
        Vocabulary(("a", *SPECIALS))


@pytest.mark.parametrize("feed_word", [False, True])
def test_forward_shapes_attention_and_causal_masking(feed_word: bool) -> None:
    model = tiny_model(feed_word)
    features = torch.randn(3, 4, 6)
    ids = encode_captions(VOCAB, [["a", "b", "a"], ["b"], []])  # (3, 5)
    logits, attention = model(features, ids[:, :-1])
    assert logits.shape == (3, 4, len(VOCAB)) and attention.shape == (3, 4, 4)
    torch.testing.assert_close(attention.sum(dim=2), torch.ones(3, 4))
    assert (attention >= 0).all()
    # What follows a sentence's <end> (pads, or anything else) changes nothing before it.
    changed = ids.clone()
    changed[1, 3:] = 4
    logits2, _ = model(features, changed[:, :-1])
    torch.testing.assert_close(logits2[1, :2], logits[1, :2])
    assert caption_loss(logits, ids[:, 1:]) == caption_loss(logits2, ids[:, 1:])
    assert torch.count_nonzero(model.embedding.weight[PAD]) == 0


def test_length_normalised_loss_on_hand_made_logits() -> None:
    # Sentence 1: 3 real targets, sentence 2: 1 target then pads whose logits are arbitrary.
    log_p = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125]))
    logits = log_p.repeat(2, 3, 1).clone()
    logits[1, 1:] = torch.tensor([9.0, -3.0, 2.0, 0.0])
    targets = torch.tensor([[1, 2, 3], [0 + 2, PAD, PAD]])
    expected = ((-math.log(0.25) - math.log(0.125) - math.log(0.125)) / 3 + (-math.log(0.125))) / 2
    assert caption_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_length_normalised_loss_of_a_bias_only_model() -> None:
    model = tiny_model()
    probs = torch.tensor([0.05, 0.05, 0.3, 0.1, 0.4, 0.1])  # <pad> <start> <end> <unk> a b
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.output.bias.copy_(probs.log())
    ids = encode_captions(VOCAB, [["a", "b", "a"], ["b"]])
    logits, _ = model(torch.randn(2, 4, 6), ids[:, :-1])
    expected = (-(2 * math.log(0.4) + math.log(0.1) + math.log(0.3)) / 4 - (math.log(0.1) + math.log(0.3)) / 2) / 2
    assert caption_loss(logits, ids[:, 1:]).item() == pytest.approx(expected, rel=1e-6)


def _exhaustive_best(model: Captioner, features: torch.Tensor, max_length: int) -> tuple[list[int], float]:
    """Every sentence over {a, b} that ends with <end> within max_length tokens, or runs to it without."""
    words = [4, 5]
    candidates = [[*w, END] for k in range(max_length) for w in itertools.product(words, repeat=k)]
    candidates += [list(w) for w in itertools.product(words, repeat=max_length)]
    best: tuple[list[int], float] = ([], -math.inf)
    with torch.no_grad():
        for sentence in candidates:
            inputs = torch.tensor([[START, *sentence[:-1]]])
            log_p = torch.log_softmax(model(features[None], inputs)[0][0], dim=1)
            score = float(log_p[torch.arange(len(sentence)), torch.tensor(sentence)].sum())
            if score > best[1]:
                best = ([t for t in sentence if t != END], score)
    return best


@pytest.mark.parametrize("feed_word", [False, True])
def test_beam_search_equals_exhaustive_search(feed_word: bool) -> None:
    model, max_length = tiny_model(feed_word, seed=1), 4
    features = torch.randn(5, 4, 6)
    # 32 beams never prune here: 2**4 sentences cut at 4 tokens + 15 that end earlier = 31 in all.
    captions = beam_search(model, features, VOCAB, width=32, max_length=max_length)
    narrow = beam_search(model, features, VOCAB, width=2, max_length=max_length)
    for image, (caption, rough) in enumerate(zip(captions, narrow, strict=True)):
        ids, score = _exhaustive_best(model, features[image], max_length)
        assert caption.ids == ids
        assert caption.log_prob == pytest.approx(score, abs=1e-5)
        assert caption.finished == (len(ids) < max_length or caption.finished)
        assert rough.log_prob <= score + 1e-5
    assert len({tuple(c.ids) for c in captions}) > 1  # the images do get different sentences


@pytest.mark.parametrize("feed_word", [False, True])
def test_greedy_equals_beam_width_one(feed_word: bool) -> None:
    model = tiny_model(feed_word, seed=2)
    features = torch.randn(9, 4, 6)
    greedy = greedy_decode(model, features, VOCAB, max_length=7)
    beam = beam_search(model, features, VOCAB, width=1, max_length=7)
    for g, b in zip(greedy, beam, strict=True):
        assert g.ids == b.ids and g.finished == b.finished
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5)
        np.testing.assert_allclose(g.attention, b.attention, atol=1e-6)


@pytest.mark.parametrize("feed_word", [False, True])
def test_decoding_attention_and_batching(feed_word: bool) -> None:
    model = tiny_model(feed_word, seed=3)
    features = torch.randn(7, 4, 6)
    captions = beam_search(model, features, VOCAB, width=3, max_length=6)
    one_by_one = [beam_search(model, features[i : i + 1], VOCAB, max_length=6)[0] for i in range(7)]
    chunked = beam_search(model, features, VOCAB, max_length=6, batch_size=2)
    for caption, single, chunk in zip(captions, one_by_one, chunked, strict=True):
        assert caption.tokens == VOCAB.decode(caption.ids) and len(caption.ids) <= 6
        assert caption.attention.shape == (len(caption.ids), 4)
        np.testing.assert_allclose(caption.attention.sum(axis=1), 1.0, atol=1e-6)
        assert caption.attention_maps((2, 2)).shape == (len(caption.ids), 2, 2)
        assert single.ids == caption.ids == chunk.ids
        assert single.log_prob == pytest.approx(caption.log_prob, abs=1e-5)


def test_overfits_a_handful_of_sentences() -> None:
    sentences = [
        "there is an undisplaced fracture of the subcapital neck of femur",
        "there is a severely displaced comminuted fracture of the basicervical neck of femur",
        "there is a mildly displaced impacted fracture of the intertrochanteric region of the femur",
        "no fracture was identified on this study",
    ]
    tokens = [s.split() for s in sentences]
    vocab = build_vocabulary(tokens)
    ids = encode_captions(vocab, tokens)
    torch.manual_seed(0)
    features = torch.randn(4, 9, 16).relu()
    model = Captioner(CaptionerConfig(len(vocab), 16, hidden_size=32, embedding_size=16, attention_size=16))
    config = CaptionTrainConfig(lr=2e-2, batch_size=4, epochs=40, progress_every=1000)
    result = train_captioner(model, features, ids, features[:1], ids[:1], config)
    assert result.history[-1]["train_loss"] < 0.1
    assert [c.tokens for c in beam_search(model, features, vocab)] == tokens
    assert [c.tokens for c in greedy_decode(model, features, vocab)] == tokens


def test_training_is_seeded_reports_progress_and_cancels() -> None:
    vocab = VOCAB
    ids = encode_captions(vocab, [["a"], ["b", "a"], ["a", "b", "b"], []] * 3)
    features = torch.randn(12, 2, 4, 6)  # two cached copies per image

    def run(seed: int, **kwargs: object) -> list[float]:
        model = tiny_model(seed=0)
        config = CaptionTrainConfig(batch_size=5, epochs=2, seed=seed, progress_every=1)
        result = train_captioner(model, features, ids, features[:, 0], ids, config, **kwargs)  # type: ignore[arg-type]
        return [h["train_loss"] for h in result.history]

    calls: list[tuple[int, int, str]] = []
    losses = run(0, progress=lambda done, total, message: calls.append((done, total, message)))
    assert losses == run(0) != run(1)
    assert calls[0][:2] == (1, 6) and calls[-1][0] == 6 and "epoch 2/2" in calls[-1][2]
    with pytest.raises(Cancelled):
        run(0, cancelled=lambda: True)


def test_loader_trims_batches_and_draws_copies() -> None:
    ids = encode_captions(VOCAB, [["a"], ["a", "b", "a", "b"], ["b"]])
    features = torch.stack([torch.full((3, 2, 6), float(copy)) for copy in range(3)], dim=1)  # (3, 3 copies, 2, 6)
    loader = caption_loader(features, ids, batch_size=2, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == 2 and sum(len(b[1]) for b in batches) == 3
    for feats, part in batches:
        assert part.shape[1] == int((part != PAD).sum(dim=1).max())
        assert feats.shape[1:] == (2, 6)
    drawn = {float(f[0, 0, 0]) for _ in range(10) for f, _ in loader}
    assert drawn == {0.0, 1.0, 2.0}


def test_validation_loss_uses_copy_zero_and_eval_mode() -> None:
    model = tiny_model()
    ids = encode_captions(VOCAB, [["a", "b"], ["b"]])
    features = torch.randn(2, 3, 4, 6)
    model.train()
    loss = caption_validation_loss(model, features, ids)
    assert model.training
    with torch.no_grad():
        logits, _ = tiny_model()(features[:, 0], ids[:, :-1])
    assert loss == pytest.approx(float(caption_loss(logits, ids[:, 1:])), rel=1e-6)


class GridNet(nn.Module):
    """DenseNet-shaped: ``features`` is the identity, so the regions are the input's pixels (ReLU'd)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()


def test_region_features_of_a_resnet_and_a_densenet_shape() -> None:
    resnet = torchvision.models.resnet18(weights=None)
    x = torch.randn(2, 3, 64, 96)
    regions = region_features(resnet, x)
    assert regions.shape == (2, 2 * 3, 512) and regions.dtype == torch.float32
    assert resnet.training  # mode restored
    pixels = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2) - 10
    regions = region_features(GridNet(), pixels)
    torch.testing.assert_close(regions[1, 2], pixels[1, :, 1, 0].relu())  # region c = (c // w, c % w)


def test_caption_features_copy_zero_is_the_image_and_copies_are_seeded() -> None:
    images = torch.randint(0, 256, (5, 8, 8), dtype=torch.uint8)
    bank = caption_features(GridNet(), images, copies=3, batch_size=2, seed=4)
    assert bank.shape == (5, 3, 64, 3)
    torch.testing.assert_close(bank[:, 0], region_features(GridNet(), to_input(images)))
    assert not torch.equal(bank[:, 1], bank[:, 0]) and not torch.equal(bank[:, 1], bank[:, 2])
    torch.testing.assert_close(caption_features(GridNet(), images, copies=3, batch_size=2, seed=4), bank)
    with pytest.raises(Cancelled):
        caption_features(GridNet(), images, cancelled=lambda: True)


def test_augmentation_with_zero_ranges_is_the_identity() -> None:
    x = torch.randn(3, 3, 10, 14)
    still = Augmentation(rotation=0, shift=0, zoom=0, brightness=0, contrast=0)
    torch.testing.assert_close(augment_inputs(x, torch.Generator().manual_seed(0), still), x, atol=1e-5, rtol=0)
    flipped = augment_inputs(x, torch.Generator().manual_seed(0), Augmentation(0, 0, 0, 0, 0, flip=True))
    for image, out in zip(x, flipped, strict=True):
        assert torch.allclose(out, image, atol=1e-5) or torch.allclose(out, image.flip(-1), atol=1e-5)


def test_checkpoint_round_trip_with_the_vocabulary() -> None:
    model = tiny_model(feed_word=True)
    buffer = io.BytesIO()
    captioner_save(buffer, model, VOCAB, epoch=3)
    buffer.seek(0)
    loaded, vocab, extra = captioner_load(buffer)
    assert vocab == VOCAB and extra == {"epoch": 3} and loaded.config == model.config and not loaded.training
    features = torch.randn(4, 4, 6)
    assert [c.ids for c in beam_search(loaded, features, vocab)] == [c.ids for c in beam_search(model, features, VOCAB)]
    with pytest.raises(ValueError):
        captioner_save(io.BytesIO(), model, build_vocabulary([["a"]]))
