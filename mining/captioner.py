"""The hip-fracture paper's sentence generator (section 2.2): two stacked LSTMs with soft attention over a
frozen classifier's final activation map.

Regions. The classifier's final activation map (the layer before global pooling: ResNet ``layer4``,
DenseNet ``features`` + ReLU) of one image is (D, h, w); :func:`region_features` returns it as C = h x w
region vectors a(1..C) in R^D, row-major (region c is cell (c // w, c % w)), computed once per image under
``torch.inference_mode`` so the caller can cache them; the classifier is never trained here. resnet18 on a
224-px input gives D = 512, C = 7 x 7 = 49 (the paper's DenseNet gave C = 8 x 8 regions, D as printed 412).

Model (:class:`Captioner`), for t = 1..T with y(0) = <start>, zero initial states h0,0 = h1,0 = 0 (cells too)::

    alpha_t = softmax_c( w . tanh(W_a a(c) + U_a h1,t-1) )          soft attention from layer 1's previous state
    ahat_t  = sum_c alpha_t,c a(c)                                  the attended features (D)
    h0,t    = LSTM0(dropout(ahat_t), h0,t-1)                        512-d
    h1,t    = LSTM1(dropout(h0,t), h1,t-1)                          512-d
    p(y_t)  = softmax(W [h1,t ; E y_t-1 ; ahat_t] + b)              the output layer; E: 256-d embedding

Dropout keeps 80% (p = 0.2) on the attended features and between the layers. The paper writes the LSTM0
input as ``dropout(alpha_t (.) a)``, each alpha_t,c scaling region a(c); it is read here as Xu et al.'s
(2015) deterministic soft attention, the alpha-weighted sum of the regions, which the paper builds on. As
its equation (1) says, the previous word enters the output layer only, not the LSTMs (``feed_word=False``,
the default): the recurrence then depends on the image alone, which decoding exploits (all beams of an image
share one state). ``feed_word=True`` also feeds E y_t-1 to LSTM0 (Xu et al.), for free-text reports where the
next words depend on the words chosen.

Loss (:func:`caption_loss`): the paper's length-normalised cross-entropy, per sentence
``-(1/L) sum_{t<=L} log p(y_t)`` over its L real target tokens (the words and <end>; pads masked), averaged
over the batch.

Vocabulary (:class:`Vocabulary`): <pad> = 0, <start> = 1, <end> = 2, <unk> = 3, then the words of the
training sentences (``textmetrics.tokenize_caption``) by descending count, ties alphabetical. The paper's
has 26 words + the four specials; the template grammar's full set is 31 words (32 with partial forms).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.nn import functional as F

from .cam import feature_map
from .networks import eval_mode, model_device

__all__ = [
    "CAPTIONER_FORMAT",
    "END",
    "PAD",
    "SPECIALS",
    "START",
    "UNK",
    "Captioner",
    "CaptionerConfig",
    "DecodeState",
    "Vocabulary",
    "build_vocabulary",
    "caption_loss",
    "captioner_checkpoint",
    "captioner_from_checkpoint",
    "captioner_load",
    "captioner_save",
    "encode_captions",
    "final_activation_map",
    "region_features",
    "region_features_grid",
]

PAD, START, END, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")
CAPTIONER_FORMAT = "deepminer-captioner/1"


# ------------------------------------------------------------------------------------------ vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by index: ``tokens[:4]`` are :data:`SPECIALS`, then the words."""

    tokens: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokens[: len(SPECIALS)] != SPECIALS or len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary starts with <pad>, <start>, <end>, <unk> and holds no repeats")
        object.__setattr__(self, "_index", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def words(self) -> tuple[str, ...]:
        return self.tokens[len(SPECIALS) :]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Word indices; an unknown word is <unk>."""
        return [self._index.get(token, UNK) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to (not including) the first <end>; <pad> and <start> skipped."""
        out = []
        for i in ids:
            if i == END:
                break
            if i not in (PAD, START):
                out.append(self.tokens[i])
        return out


def build_vocabulary(sentences: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
    """The vocabulary of tokenised training ``sentences``: words seen at least ``min_count`` times."""
    counts = Counter(token for tokens in sentences for token in tokens)
    words = sorted(
        (w for w, n in counts.items() if n >= min_count and w not in SPECIALS), key=lambda w: (-counts[w], w)
    )
    return Vocabulary((*SPECIALS, *words))


def encode_captions(
    vocabulary: Vocabulary, sentences: Sequence[Sequence[str]], max_words: int | None = None
) -> torch.Tensor:
    """int64 (N, L + 2): per sentence <start>, its word ids (at most ``max_words``), <end>, then <pad>s up to
    the longest. Teacher forcing reads inputs ``ids[:, :-1]`` and targets ``ids[:, 1:]``."""
    rows = [vocabulary.encode(tokens[:max_words] if max_words is not None else tokens) for tokens in sentences]
    width = max((len(row) for row in rows), default=0) + 2
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        out[i, : len(row) + 2] = torch.tensor([START, *row, END])
    return out


# ----------------------------------------------------------------------------------------- regions


def final_activation_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's map before global pooling for network input x (B, 3, H, W): float (B, D, h, w).

    A torchvision ResNet (or any module with its child names): layer4's output; a torchvision DenseNet:
    ``relu(features(x))``, as its forward computes before pooling (``cam.feature_map``). Grad mode is the
    caller's.
    """
    return feature_map(model, x)


def region_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Region vectors of network input x (B, 3, H, W): float32 (B, C, D) on the CPU, C = h * w row-major.

    Eval mode (restored after) and inference mode, on the model's device: the classifier stays frozen.
    """
    return region_features_grid(model, x)[0]


def region_features_grid(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``region_features`` and the (h, w) grid of its regions (where each word's attention lies)."""
    with eval_mode(model), torch.inference_mode():
        maps = final_activation_map(model, x.to(model_device(model)))
        grid = (int(maps.shape[2]), int(maps.shape[3]))
        return maps.flatten(2).transpose(1, 2).to("cpu", torch.float32).contiguous(), grid


# ------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class CaptionerConfig:
    """The architecture; the defaults are the paper's (``dataclasses.asdict`` gives its JSON form)."""

    vocab_size: int
    feature_dim: int
    hidden_size: int = 512
    embedding_size: int = 256
    attention_size: int = 512
    dropout: float = 0.2  # keep rate 0.8
    feed_word: bool = False  # the paper: the previous word reaches the output layer only


@dataclass
class DecodeState:
    """The recurrence during decoding, ``R`` rows: one per image (``feed_word=False``) or per beam.

    features (R, C, D), keys = W_a a + b (R, C, A); h0, c0, h1, c1 (R, H); word_logits (V, V): the output
    layer's term of each previous word (row = previous word), for ``feed_word=False``.
    """

    features: torch.Tensor
    keys: torch.Tensor
    h0: torch.Tensor
    c0: torch.Tensor
    h1: torch.Tensor
    c1: torch.Tensor
    word_logits: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> DecodeState:
        """The state of ``rows`` (int64 (R',)), e.g. the beams kept, or the images still decoding."""
        f, k, h0, c0, h1, c1 = (
            t.index_select(0, rows) for t in (self.features, self.keys, self.h0, self.c0, self.h1, self.c1)
        )
        return DecodeState(f, k, h0, c0, h1, c1, self.word_logits)


class Captioner(nn.Module):
    """Two stacked LSTMs with soft attention over C region vectors (module docstring)."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size, padding_idx=PAD)
        self.attend_regions = nn.Linear(c.feature_dim, c.attention_size)
        self.attend_state = nn.Linear(c.hidden_size, c.attention_size, bias=False)
        self.attend_score = nn.Linear(c.attention_size, 1, bias=False)  # a bias would cancel in the softmax
        self.lstm0 = nn.LSTMCell(c.feature_dim + (c.embedding_size if c.feed_word else 0), c.hidden_size)
        self.lstm1 = nn.LSTMCell(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_size + c.embedding_size + c.feature_dim, c.vocab_size)

    # -------------------------------------------------------------- one step of the recurrence

    def start(self, features: torch.Tensor) -> DecodeState:
        """The state before the first word for region features (R, C, D): zero LSTM states."""
        rows, hidden = features.shape[0], self.config.hidden_size
        zeros = features.new_zeros(rows, hidden)
        return DecodeState(features, self.attend_regions(features), zeros, zeros, zeros, zeros)

    def advance(
        self, state: DecodeState, embedded: torch.Tensor | None = None
    ) -> tuple[DecodeState, torch.Tensor, torch.Tensor]:
        """One step: attention from h1,t-1, then both LSTMs. Returns (new state, attended features (R, D),
        attention (R, C)). ``embedded`` (R, E), the previous word's embedding, is used only with ``feed_word``."""
        energy = torch.tanh(state.keys + self.attend_state(state.h1).unsqueeze(1))  # (R, C, A)
        alpha = torch.softmax(self.attend_score(energy).squeeze(2), dim=1)  # (R, C)
        attended = torch.bmm(alpha.unsqueeze(1), state.features).squeeze(1)  # (R, D)
        x0 = self.dropout(attended)
        if self.config.feed_word:
            assert embedded is not None
            x0 = torch.cat([x0, embedded], dim=1)
        h0, c0 = self.lstm0(x0, (state.h0, state.c0))
        h1, c1 = self.lstm1(self.dropout(h0), (state.h1, state.c1))
        return DecodeState(state.features, state.keys, h0, c0, h1, c1, state.word_logits), attended, alpha

    # ----------------------------------------------------------------------------- training

    def forward(self, features: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. features: float (B, C, D); inputs: int64 (B, T), <start> then the words.

        Returns logits (B, T, V) (position t predicts inputs' next token) and attention (B, T, C).
        """
        embedded = self.embedding(inputs)  # (B, T, E)
        state = self.start(features)
        states, attended, alphas = [], [], []
        for t in range(inputs.shape[1]):
            state, ahat, alpha = self.advance(state, embedded[:, t] if self.config.feed_word else None)
            states.append(state.h1)
            attended.append(ahat)
            alphas.append(alpha)
        # The output layer once over all steps: one large matrix product instead of T small ones.
        joint = torch.cat([torch.stack(states, 1), embedded, torch.stack(attended, 1)], dim=2)
        return self.output(joint), torch.stack(alphas, 1)

    # ----------------------------------------------------------------------------- decoding

    def split_output(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output layer's weight (V, H + E + D) split into its (h1, word, attended) blocks."""
        c = self.config
        return self.output.weight.split([c.hidden_size, c.embedding_size, c.feature_dim], dim=1)

    def decode_start(self, features: torch.Tensor) -> DecodeState:
        """``start`` plus, for ``feed_word=False``, the table of each previous word's output term (V, V)."""
        state = self.start(features)
        if not self.config.feed_word:
            _, word_weight, _ = self.split_output()
            state.word_logits = self.embedding.weight @ word_weight.T  # (V prev, V next)
        return state

    def decode_step(self, state: DecodeState, previous: torch.Tensor) -> tuple[DecodeState, torch.Tensor, torch.Tensor]:
        """Next-token log-probabilities for ``previous`` (R, K) int64, K words per state row.

        Returns (new state, log-probs (R, K, V), attention (R, C)). ``feed_word=False``: the state does not
        depend on the words, so the K beams of a row share it and only the output layer's word term differs.
        ``feed_word=True``: K must be 1 (one beam per row).
        """
        hidden_weight, _, attended_weight = self.split_output()
        if self.config.feed_word:
            if previous.shape[1] != 1:
                raise ValueError("with feed_word, decode one word per state row (K = 1)")
            embedded = self.embedding(previous[:, 0])
            state, attended, alpha = self.advance(state, embedded)
            logits = F.linear(torch.cat([state.h1, embedded, attended], 1), self.output.weight, self.output.bias)
            return state, torch.log_softmax(logits, dim=1).unsqueeze(1), alpha
        word_logits = state.word_logits
        assert word_logits is not None, "start decoding with decode_start"
        state, attended, alpha = self.advance(state)
        base = torch.addmm(self.output.bias, state.h1, hidden_weight.T) + attended @ attended_weight.T  # (R, V)
        logits = base.unsqueeze(1) + word_logits[previous]  # (R, K, V)
        return state, torch.log_softmax(logits, dim=2), alpha


def caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The length-normalised cross-entropy: mean over sentences of ``-(1/L_i) sum_t log p(targets[i, t])``.

    logits: (B, T, V); targets: int64 (B, T), <pad> after each sentence's <end> (masked; L_i counts the rest).
    """
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD, reduction="none")
    lengths = (targets != PAD).sum(dim=1).clamp_min(1)
    return (nll.view(targets.shape).sum(dim=1) / lengths).mean()


# ------------------------------------------------------------------------------------- checkpoints


def captioner_checkpoint(model: Captioner, vocabulary: Vocabulary, **extra: Any) -> dict[str, Any]:
    """A self-describing dict (torch.save-able, loadable with ``weights_only=True``): format, config,
    vocabulary tokens, CPU state dict, and ``extra`` (e.g. the classifier's id, history, metrics)."""
    if len(vocabulary) != model.config.vocab_size:
        raise ValueError(f"a vocabulary of {len(vocabulary)} tokens for a model of {model.config.vocab_size}")
    return {
        "format": CAPTIONER_FORMAT,
        "config": asdict(model.config),
        "vocabulary": list(vocabulary.tokens),
        "state_dict": {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()},
        "extra": dict(extra),
    }


def captioner_from_checkpoint(checkpoint: Mapping[str, Any]) -> tuple[Captioner, Vocabulary]:
    """The model (eval mode, CPU) and vocabulary a :func:`captioner_checkpoint` dict describes."""
    if checkpoint.get("format") != CAPTIONER_FORMAT:
        raise ValueError(f"not a captioner checkpoint ({CAPTIONER_FORMAT})")
    model = Captioner(CaptionerConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model, Vocabulary(tuple(checkpoint["vocabulary"]))


def captioner_save(target: str | Path | IO[bytes], model: Captioner, vocabulary: Vocabulary, **extra: Any) -> None:
    """``torch.save`` of :func:`captioner_checkpoint` to a path or binary file (e.g. one for Django storage)."""
    torch.save(captioner_checkpoint(model, vocabulary, **extra), target)


def captioner_load(source: str | Path | IO[bytes]) -> tuple[Captioner, Vocabulary, dict[str, Any]]:
    """Read what :func:`captioner_save` wrote (weights only: nothing is unpickled as code). Returns the model
    (eval mode, CPU), its vocabulary and the checkpoint's ``extra``."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict):
        raise ValueError("not a captioner checkpoint")
    model, vocabulary = captioner_from_checkpoint(checkpoint)
    return model, vocabulary, dict(checkpoint.get("extra", {}))
