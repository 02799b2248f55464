"""Decoding sentences from cached region features: greedy and beam search, batched over images.

Both run the :class:`~mining.captioner.Captioner` in eval mode (no dropout) and inference mode, in chunks of
``batch_size`` images, and never emit <pad>, <start> or <unk> (their log-probabilities are set to -inf; the
others keep the model's own values, so a sentence's score is its log-probability under the model). A
sentence ends at <end> or after ``max_length`` tokens (<end> included), whichever comes first.

Beam search keeps the ``width`` best partial sentences of each image (by summed log-probability). A beam that
has ended stays in the beam with its score unchanged (it extends only by <pad>, at no cost), so the result
is the best *complete* sentence among those kept, and with a width no smaller than the number of possible
prefixes it is the exact most probable sentence. With the paper's model (``feed_word=False``) the recurrence
does not depend on the words, so the beams of one image share a single LSTM state and only the output layer
runs per beam: width 3 costs barely more than greedy decoding.

Each result carries the attention (the C region weights, summing to 1) that produced each of its words:
``Caption.attention[i]`` belongs to ``Caption.tokens[i]``; ``attention_maps`` lays them on the h x w grid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .captioner import END, PAD, START, UNK, Captioner, DecodeState, Vocabulary
from .data import batches
from .networks import eval_mode, model_device

__all__ = ["BEAM_WIDTH", "DECODE_BATCH", "MAX_LENGTH", "Caption", "beam_search", "greedy_decode"]

BEAM_WIDTH = 3
MAX_LENGTH = 30  # tokens, <end> included; the longest template sentence has 21
DECODE_BATCH = 256
_BANNED = (PAD, START, UNK)
# Rows whose sentences ended are dropped from the state only once they are a quarter of it: each drop copies
# the state (regions and attention keys included), which costs more than a few steps of rows that idle.
_SHRINK = 0.75


@dataclass
class Caption:
    """One decoded sentence: its words (ids and strings), log-probability (words and <end>), whether it
    ended with <end> (False: cut at ``max_length``), and the attention behind each word, float32 (T, C)."""

    tokens: list[str]
    ids: list[int]
    log_prob: float
    finished: bool
    attention: np.ndarray

    def attention_maps(self, grid: tuple[int, int]) -> np.ndarray:
        """float32 (T, h, w): each word's attention on the classifier's h x w map (regions are row-major)."""
        return self.attention.reshape(len(self.tokens), *grid)


def _token_mask(vocab_size: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(vocab_size, device=device)
    mask[list(_BANNED)] = -torch.inf
    return mask


def _captions(
    vocabulary: Vocabulary, ids: torch.Tensor, attention: torch.Tensor, log_probs: torch.Tensor
) -> list[Caption]:
    """Captions from per-image token ids (B, T), attention (B, T, C) and scores (B,), cut at <end>."""
    out = []
    for row, alphas, score in zip(ids.tolist(), attention.cpu().numpy(), log_probs.tolist(), strict=True):
        length = row.index(END) if END in row else len(row)
        words = row[:length]
        out.append(Caption(vocabulary.decode(words), words, float(score), END in row, alphas[:length].copy()))
    return out


def _decode(
    model: Captioner,
    features: torch.Tensor,
    vocabulary: Vocabulary,
    batch_size: int,
    chunk: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> list[Caption]:
    """Run ``chunk`` (features (b, C, D) -> ids (b, T), attention (b, T, C), scores (b,)) over the batches."""
    if features.ndim != 3 or features.shape[2] != model.config.feature_dim:
        raise ValueError(f"features must be (B, C, {model.config.feature_dim}), got {tuple(features.shape)}")
    device = model_device(model)
    out: list[Caption] = []
    with eval_mode(model), torch.inference_mode():
        for rows in batches(len(features), batch_size):
            out += _captions(vocabulary, *chunk(features[rows].to(device, torch.float32)))
    return out


def greedy_decode(
    model: Captioner,
    features: torch.Tensor,
    vocabulary: Vocabulary,
    *,
    max_length: int = MAX_LENGTH,
    batch_size: int = DECODE_BATCH,
) -> list[Caption]:
    """The most probable next token at every step, for region features (B, C, D): B captions."""

    def chunk(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = _token_mask(model.config.vocab_size, part.device)
        state = model.decode_start(part)
        words = torch.full((len(part), 1), START, dtype=torch.int64, device=part.device)
        total = torch.zeros(len(part), device=part.device)
        active = torch.arange(len(part), device=part.device)  # the rows the state holds
        ended = torch.zeros(len(part), dtype=torch.bool, device=part.device)  # of the active rows
        tokens, alphas = [], []
        for _ in range(max_length):
            state, log_probs, part_alpha = model.decode_step(state, words)
            best, choice = (log_probs[:, 0] + mask).max(dim=1)
            choice = torch.where(ended, PAD, choice)
            token = torch.full((len(part),), PAD, dtype=torch.int64, device=part.device)
            token[active] = choice
            alpha = torch.zeros((len(part), part.shape[1]), device=part.device)
            alpha[active] = torch.where(ended.unsqueeze(1), 0.0, part_alpha)
            total[active] += torch.where(ended, 0.0, best)
            tokens.append(token)
            alphas.append(alpha)
            ended |= choice == END
            if bool(ended.all()):
                break
            keep = (~ended).nonzero().squeeze(1)
            if len(keep) <= _SHRINK * len(active):
                state, active, choice, ended = state.select(keep), active[keep], choice[keep], ended[keep]
            words = choice.unsqueeze(1)
        return torch.stack(tokens, 1), torch.stack(alphas, 1), total

    return _decode(model, features, vocabulary, batch_size, chunk)


def beam_search(
    model: Captioner,
    features: torch.Tensor,
    vocabulary: Vocabulary,
    *,
    width: int = BEAM_WIDTH,
    max_length: int = MAX_LENGTH,
    batch_size: int = DECODE_BATCH,
) -> list[Caption]:
    """The best complete sentence of a ``width``-wide beam search per image of features (B, C, D)."""
    if width < 1 or max_length < 1:
        raise ValueError(f"width and max_length must be at least 1, got {width} and {max_length}")
    return _decode(model, features, vocabulary, batch_size, lambda part: _beam_chunk(model, part, width, max_length))


def _beam_chunk(
    model: Captioner, features: torch.Tensor, width: int, max_length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Beam search over one chunk: best token ids (B, T), their attention (B, T, C), scores (B,)."""
    count, regions = features.shape[:2]
    vocab, device = model.config.vocab_size, features.device
    shared = not model.config.feed_word  # one state per image, shared by its beams
    state: DecodeState = model.decode_start(features if shared else features.repeat_interleave(width, 0))
    mask = _token_mask(vocab, device)
    pad_only = torch.full((vocab,), -torch.inf, device=device)
    pad_only[PAD] = 0.0
    words = torch.full((count, width), START, dtype=torch.int64, device=device)
    scores = torch.full((count, width), -torch.inf, device=device)
    scores[:, 0] = 0.0  # one live beam to start with, so the first step does not pick one word K times
    finished = torch.zeros((count, width), dtype=torch.bool, device=device)
    offsets = torch.arange(count, device=device).unsqueeze(1) * width
    active = torch.arange(count, device=device)  # images with a live beam; only their states run
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (token, origin, attention) per step
    for _ in range(max_length):
        log_probs = pad_only.expand(count, width, vocab).clone()
        alpha = torch.zeros((count, width, regions), device=device)
        if shared:
            state, part, part_alpha = model.decode_step(state, words[active])  # (A, K, V), (A, C)
            part_alpha = part_alpha.unsqueeze(1).expand(-1, width, -1)
        else:
            state, part, part_alpha = model.decode_step(state, words[active].view(-1, 1))
            part, part_alpha = part.view(-1, width, vocab), part_alpha.view(-1, width, regions)
        log_probs[active] = torch.where(finished[active].unsqueeze(2), pad_only, part + mask)
        alpha[active] = part_alpha
        scores, flat = (scores.unsqueeze(2) + log_probs).view(count, -1).topk(width, dim=1)
        origin, words = flat // vocab, flat % vocab
        finished = finished.gather(1, origin) | (words == END)
        history.append((words, origin, alpha.gather(1, origin.unsqueeze(2).expand(-1, -1, regions))))
        live = ~finished[active].all(dim=1)  # over the active images, in their order
        if not bool(live.any()):
            break
        if shared:
            if int(live.sum()) > _SHRINK * len(active):
                continue  # finished images stay active (their beams only take <pad>) until enough have ended
            state = state.select(live.nonzero().squeeze(1))
        else:  # one state row per beam: follow each kept beam to its origin, among the live images
            kept = active[live]
            rows = (offsets[kept] + origin[kept]).view(-1)
            position = torch.empty(count * width, dtype=torch.int64, device=device)
            position[(offsets[active] + torch.arange(width, device=device)).view(-1)] = torch.arange(
                len(active) * width, device=device
            )
            state = state.select(position[rows])
        active = active[live]
    return (*_backtrack(history, count), scores[:, 0])


def _backtrack(
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, T) and attention (B, T, C) of each image's best beam (column 0: topk sorts)."""
    rows = torch.arange(count, device=history[0][0].device)
    beam = torch.zeros(count, dtype=torch.int64, device=rows.device)
    tokens, alphas = [], []
    for words, origin, alpha in reversed(history):
        tokens.append(words[rows, beam])
        alphas.append(alpha[rows, beam])
        beam = origin[rows, beam]
    return torch.stack(tokens[::-1], 1), torch.stack(alphas[::-1], 1)
