"""The BERT encoder and its heads, in this one file, with Hugging Face's parameter names.

A reader can scroll from ``BertEmbeddings`` down to ``BertForSequenceClassification``. Every
parameter has the name transformers' ``models/bert/modeling_bert.py`` gives it (``bert.encoder.
layer.0.attention.self.query.weight``, ``cls.predictions.transform.dense.weight`` ...), so saving a
checkpoint that transformers loads is a save, not a conversion (see :mod:`domainbert.model.hf_io`), and the
numerical outputs equal transformers' BERT (tests/test_parity_transformers.py).

References: Devlin et al. 2019 (BERT); google-research/bert ``modeling.py``; transformers
``BertModel``. Where this file departs from transformers' BERT, on purpose:

* attention is ``torch.nn.functional.scaled_dot_product_attention`` (fused/flash kernels) with a
  boolean padding mask, instead of an explicit softmax with an additive -inf mask;
* with ``labels``, the MLM head runs its transform and vocabulary projection only at the labelled
  positions (``labels != -100``), as google-research/bert and NVIDIA's BERT do; the loss equals the
  all-positions loss and a small-model training step is several times faster, since the vocabulary
  projection dominates. ``mlm_all_positions=True`` gives transformers' (B, T, V) logits instead;
* an unpadded path (``BertModel.unpad``, or a :class:`Packing` passed to ``forward``): padding tokens
  are dropped once, at the embeddings, every dense layer runs on the (R, H) matrix of the R real
  tokens, and attention runs on them with PyTorch's variable-length kernel (``varlen_attn``) on a GPU
  in bf16/fp16 without attention dropout, or on the CPU (and with attention dropout) re-padded for
  SDPA; the output is padded back to (B, T, H) for the heads. Real positions equal the padded
  path's (tests/test_modeling.py); padding positions are zeros instead of unused values;
* ``BertForPreTraining`` returns the MLM and NSP parts of the loss as well as their sum;
* no decoder, cross-attention, ``head_mask`` or ``return_dict`` plumbing: this is an encoder.

Dimension legend used in the shape comments:
    B = batch size, T = sequence length, H = hidden size, N = attention heads,
    D = head size (H / N), I = intermediate size, V = vocabulary size, M = labelled MLM positions,
    R = real (non-padding) tokens of a batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

try:  # PyTorch's variable-length attention (FlashAttention kernels; CUDA only), where this torch has it
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch: the unpadded path re-pads for SDPA
    varlen_attn = None

from domainbert.model import hf_io
from domainbert.model.configuration import BertConfig

_ACTIVATIONS = {
    "gelu": F.gelu,  # the exact erf form, as in BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


# ==================================================================================== outputs
@dataclass
class BaseModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None = None  # (B, H), tanh(W h_[CLS]); None without a pooler


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None  # mlm_loss + nsp_loss (or whichever labels were given)
    mlm_loss: torch.Tensor | None
    nsp_loss: torch.Tensor | None
    prediction_logits: torch.Tensor  # (B, T, V), or (M, V) at the labelled positions
    seq_relationship_logits: torch.Tensor | None  # (B, 2): index 0 = "B follows A"

    @property
    def logits(self) -> torch.Tensor:
        return self.prediction_logits


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # (B, T, V), or (M, V) at the labelled positions


@dataclass
class TokenClassifierOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # (B, T, num_labels)


@dataclass
class SequenceClassifierOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # (B, num_labels)


# ==================================================================================== encoder
# ==================================================================================== packing
def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device`` without waiting for it: on a GPU the copy goes through pinned
    memory and returns at once (a copy from pageable memory waits for the GPU's queue)."""
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        t = t.contiguous().pin_memory()
    return t.to(device, non_blocking=True)


@dataclass(frozen=True)
class Packing:
    """Where the real tokens of a padded (B, T) batch sit, for the unpadded path.

    Made by :meth:`from_mask`, best on the host before the batch moves to a GPU (finding the real
    tokens of a GPU mask waits for the GPU), then moved with :meth:`to`. A sequence's real tokens are
    contiguous in the packed order (row-major), which is what ``cu_seqlens`` describes.
    """

    indices: torch.Tensor  # (R,) int64: flat positions b * T + t of the real tokens, row-major
    cu_seqlens: torch.Tensor  # (B + 1,) int32: cumulative real lengths, 0 first
    max_seqlen: int  # the longest real length (a host int: the kernel needs it)
    batch: int  # B
    length: int  # T

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> Packing:
        """From a (B, T) mask, 1 = real token."""
        B, T = attention_mask.shape
        real = attention_mask.bool()
        lengths = real.sum(1)  # (B,)
        cu = torch.zeros(B + 1, dtype=torch.int32, device=attention_mask.device)
        cu[1:] = lengths.cumsum(0)
        return cls(real.reshape(-1).nonzero().squeeze(1), cu, int(lengths.max()) if B else 0, B, T)

    @classmethod
    def for_batch(cls, attention_mask: torch.Tensor, device: torch.device | str) -> Packing | None:
        """The Packing of a host (CPU) mask, moved to ``device``; None when the batch has no padding
        (the padded path is then the same computation). What the training loops call per batch."""
        if bool(attention_mask.all()):
            return None
        return cls.from_mask(attention_mask).to(device, non_blocking=True)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Packing:
        """On ``device``; ``non_blocking``: through :func:`to_device`, without waiting for a GPU."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return to_device(t, device) if non_blocking else t.to(device)

        return Packing(move(self.indices), move(self.cu_seqlens), self.max_seqlen, self.batch, self.length)

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """(R, F) → (B, T, F), zeros at padding."""
        flat = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return flat.index_copy(0, self.indices, packed).view(self.batch, self.length, -1)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                packing: Packing | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        if packing is not None:  # only the real tokens: (R, H)
            ids, positions = input_ids.reshape(-1)[packing.indices], packing.indices % T  # (R,), (R,)
            types = None if token_type_ids is None else token_type_ids.reshape(-1)[packing.indices]
        else:
            ids, positions, types = input_ids, torch.arange(T, device=input_ids.device), token_type_ids
        x = self.word_embeddings(ids) + self.position_embeddings(positions)  # (B, T, H) or (R, H)
        if types is None:  # all segment A: add row 0 without materialising zeros (B, T)
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(x))


def sinusoidal_positions(model: nn.Module, std: float) -> None:
    """Start the learned position table from the Transformer's sinusoids (Vaswani et al. 2017).

    The table stays an ordinary learned ``position_embeddings.weight`` (a Hugging Face BERT in every
    respect); only its starting point changes: row p holds sin/cos of p at geometric frequencies,
    scaled to the element size of BERT's normal init (``std``, the config's ``initializer_range``),
    so that from the first step each offset between two positions is a fixed rotation of their
    rows, which attention can use at once instead of learning positions from noise. A from-scratch
    pretraining option (``PretrainArgs.position_init``), measured in benchmarks/small_compute.py.
    """
    (embeddings,) = [m for m in model.modules() if isinstance(m, BertEmbeddings)]
    table = embeddings.position_embeddings.weight
    n, h = table.shape
    position = torch.arange(n, dtype=torch.float64)[:, None]  # (P, 1)
    frequency = torch.exp(torch.arange(0, h, 2, dtype=torch.float64) * (-math.log(10000.0) / h))  # (ceil(H/2),)
    angles = position * frequency  # (P, ceil(H/2))
    values = torch.zeros(n, h, dtype=torch.float64)
    values[:, 0::2] = torch.sin(angles)
    values[:, 1::2] = torch.cos(angles[:, : h // 2])
    scale = std * math.sqrt(2.0)  # sin/cos have RMS 1/sqrt(2)
    with torch.no_grad():
        table.copy_((values * scale).to(table.dtype))


#: Offsets the heads of ``local_attention`` look at, head after head through the layers.
LOCAL_OFFSETS = (-1, 1, -2, 2)


def local_attention(model: nn.Module, pairs: int | None = None, qk_scale: float = 5.0, vo_scale: float = 0.0,
                    offsets: tuple[int, ...] = LOCAL_OFFSETS, seed: int = 0) -> None:
    """Start every attention head looking at one neighbour: offsets -1, +1, -2, +2, ... head after head.

    The first ``pairs`` (sin, cos) pairs of the position table (dims 0 .. 2 pairs - 1; default 8, at
    most head size / 2) are set to sinusoids of p at frequencies from 0.9 pi down to pi / 96, where
    those of :func:`sinusoidal_positions` stop at 1 radian a position and so barely tell a token's
    neighbour from itself. A shift by d positions rotates pair k by w_k d, so a head whose query is
    its key rotated by d scores q_i . k_j ~ sum_k cos(w_k (i + d - j)): highest at j = i + d, and
    at these frequencies at least 3.3 of the 8 units below it at every other offset up to 127. The
    query and key read those pairs, scaled by ``qk_scale``; those dims of the word and token-type
    embeddings start at zero, so that a token's likeness to itself does not drown the positional
    score. ``vo_scale`` > 0 also starts the value and output projections copying the neighbour
    (``vo_scale`` times a random orthonormal D-dimensional projection, read and written): measured
    at 1.0 it kept the model on the unigram plateau, so it is off by default. This is the pattern
    trained BERTs show in their lower layers (heads on the previous or next token, Clark et al.
    2019), started by construction: a position-aware form of mimetic initialisation (Trockman &
    Kolter 2023, who start W_q W_k^T and W_v W_o near structured matrices instead of noise). The
    structured parts are added to BERT's normal init; the model stays a Hugging Face BERT and only
    its starting point changes. A from-scratch pretraining option (``PretrainArgs.attention_init``),
    measured in benchmarks/small_compute.py.
    """
    (embeddings,) = [m for m in model.modules() if isinstance(m, BertEmbeddings)]
    layers = [m for m in model.modules() if isinstance(m, BertAttention)]
    H = embeddings.position_embeddings.weight.shape[1]
    N = layers[0].self.num_heads
    D = H // N
    pairs = min(8, D // 2) if pairs is None else pairs
    if not 1 <= pairs <= D // 2:
        raise ValueError(f"pairs must be between 1 and head size / 2 ({D // 2}), got {pairs}")
    table = embeddings.position_embeddings.weight  # (P, H)
    frequency = math.pi * torch.logspace(math.log10(0.9), math.log10(1 / 96), pairs, dtype=torch.float64)  # (m,)
    angles = torch.arange(table.shape[0], dtype=torch.float64)[:, None] * frequency  # (P, m)
    generator = torch.Generator().manual_seed(seed)
    head = 0
    with torch.no_grad():
        for layer in layers:
            attention, output = layer.self, layer.output
            for n in range(N):
                delta = offsets[head % len(offsets)]
                head += 1
                rows = slice(n * D, (n + 1) * D)
                key = torch.zeros(D, H, dtype=torch.float64)  # (D, H): reads pairs 0..m-1 as they are
                query = torch.zeros(D, H, dtype=torch.float64)  # (D, H): the same pairs rotated by w_k delta
                cos, sin = torch.cos(frequency * delta), torch.sin(frequency * delta)
                for k in range(pairs):
                    s, c = 2 * k, 2 * k + 1  # the sin and cos dims of pair k
                    key[s, s] = key[c, c] = 1.0
                    query[s, s], query[s, c] = cos[k], sin[k]  # sin(a + b) = sin a cos b + cos a sin b
                    query[c, s], query[c, c] = -sin[k], cos[k]  # cos(a + b) = cos a cos b - sin a sin b
                attention.query.weight[rows] += (qk_scale * query).to(attention.query.weight.dtype)
                attention.key.weight[rows] += (qk_scale * key).to(attention.key.weight.dtype)
                if vo_scale:
                    basis = torch.linalg.qr(torch.randn(H, D, generator=generator, dtype=torch.float64))[0]  # (H, D)
                    attention.value.weight[rows] += (vo_scale * basis.T).to(attention.value.weight.dtype)
                    output.dense.weight[:, rows] += (vo_scale * basis).to(output.dense.weight.dtype)
        scale = float(table.detach().double().pow(2).mean().sqrt()) * math.sqrt(2.0)  # the table's own size
        table[:, 0: 2 * pairs: 2] = (torch.sin(angles) * scale).to(table.dtype)
        table[:, 1: 2 * pairs: 2] = (torch.cos(angles) * scale).to(table.dtype)
        embeddings.word_embeddings.weight[:, : 2 * pairs] = 0.0
        embeddings.token_type_embeddings.weight[:, : 2 * pairs] = 0.0


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the whole sequence (bidirectional)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None) -> torch.Tensor:
        dropout = self.dropout_p if self.training else 0.0
        if packing is not None:
            return self._packed(x, mask, packing, dropout)
        B, T, H = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        # mask: (B, 1, 1, T) bool, True = a real key that may be attended to; broadcast over heads
        # and queries. None (no padding) lets SDPA pick its fastest (flash) kernel.
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)  # (B, N, T, D)
        return ctx.transpose(1, 2).reshape(B, T, H)  # (B, T, H)

    def _packed(self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing, dropout: float) -> torch.Tensor:
        """Attention over the real tokens only: x (R, H) → (R, H)."""
        R, H = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)  # (R, H) each
        if (varlen_attn is not None and x.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
                and dropout == 0.0):  # varlen_attn has no dropout
            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(R, self.num_heads, self.head_dim)  # (R, N, D)

            ctx = varlen_attn(heads(q), heads(k), heads(v), packing.cu_seqlens, packing.cu_seqlens,
                              packing.max_seqlen, packing.max_seqlen)  # (R, N, D)
            return ctx.reshape(R, H)
        B, T = packing.batch, packing.length

        def padded_heads(t: torch.Tensor) -> torch.Tensor:
            return packing.pad(t).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)

        ctx = F.scaled_dot_product_attention(padded_heads(q), padded_heads(k), padded_heads(v), attn_mask=mask,
                                             dropout_p=dropout)  # (B, N, T, D)
        return ctx.transpose(1, 2).reshape(B * T, H).index_select(0, packing.indices)  # (R, H)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, LayerNorm (post-LN, as in BERT)."""

    def __init__(self, config: BertConfig, in_features: int | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None) -> torch.Tensor:
        return self.output(self.self(x, mask, packing), x)


class BertIntermediate(nn.Module):
    """The feed-forward layer's expansion: H -> I, then the activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, I)


class BertOutput(BertSelfOutput):
    """The feed-forward layer's projection back: I -> H, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config, in_features=config.intermediate_size)


class BertLayer(nn.Module):
    """One post-LayerNorm Transformer encoder layer: attention, then feed-forward."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None) -> torch.Tensor:
        x = self.attention(x, mask, packing)  # (B, T, H), or (R, H) with packing
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask, packing)
        return x


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sequence vector that NSP and sequence classification read."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H)


# ==================================================================================== base class
class BertPreTrainedModel(nn.Module):
    """What every model here shares: the config, BERT's weight init, and checkpoint I/O.

    ``save_pretrained`` / ``from_pretrained`` read and write Hugging Face BERT directories; the
    work is in ``domainbert.model.hf_io``.
    """

    base_model_prefix: ClassVar[str] = "bert"
    #: Parameter names that hold the same tensor as another (weight tying): not saved twice.
    tied_weights: ClassVar[dict[str, str]] = {}

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config

    def post_init(self) -> None:
        """Initialise every weight as BERT does, then tie the weights that are shared."""
        self.apply(self._init_weights)
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, BertLMPredictionHead):
            nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Point every tied parameter at its source (the MLM decoder at the word embeddings)."""

    @property
    def base_model(self) -> BertModel:
        return getattr(self, self.base_model_prefix, self)  # type: ignore[return-value]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def resize_token_embeddings(self, new_size: int) -> nn.Embedding:
        """Grow (or shrink) the vocabulary to ``new_size`` rows, e.g. after adding marker tokens.

        Existing rows are kept; new rows get BERT's init. The MLM bias follows, and the config's
        ``vocab_size`` is updated so that the checkpoint stays self-consistent.
        """
        old = self.get_input_embeddings()
        if new_size == old.num_embeddings:
            return old
        new = nn.Embedding(new_size, old.embedding_dim, padding_idx=old.padding_idx,
                           device=old.weight.device, dtype=old.weight.dtype)
        self._init_weights(new)
        n = min(new_size, old.num_embeddings)
        with torch.no_grad():
            new.weight[:n] = old.weight[:n]
        self.base_model.embeddings.word_embeddings = new
        for module in self.modules():
            if isinstance(module, BertLMPredictionHead):
                bias = torch.zeros(new_size, device=module.bias.device, dtype=module.bias.dtype)
                bias[:n] = module.bias.data[:n]
                module.bias = nn.Parameter(bias)
        self.config.vocab_size = new_size
        self.tie_weights()
        return new

    def num_parameters(self) -> int:
        """Number of distinct parameters (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike, tokenizer: Any = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` (+ the tokenizer's files) to ``directory``."""
        hf_io.save_pretrained(self, directory, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **config_overrides: Any):
        """Load a domainbert or Hugging Face BERT directory (safetensors or ``pytorch_model.bin``).

        Head weights the checkpoint lacks are initialised and listed in ``model.loading_info``
        (and logged), as are checkpoint weights this class does not use. ``config_overrides``
        replace config fields, e.g. ``id2label={0: "O", 1: "B", 2: "I"}`` for a new task head.
        """
        return hf_io.load_pretrained(cls, directory, **config_overrides)


class BertModel(BertPreTrainedModel):
    """The bare encoder: embeddings, L encoder layers and (optionally) the pooler."""

    base_model_prefix: ClassVar[str] = ""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.unpad = False
        """Run the unpadded path whenever a batch has padding (a setting, not saved in config.json)."""
        self.post_init()

    @property
    def base_model(self) -> BertModel:
        return self

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) token ids
        attention_mask: torch.Tensor | None = None,  # (B, T) 1 = real token, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, T) 0 = segment A, 1 = segment B
        packing: Packing | None = None,  # the unpadded path with these real tokens (else see self.unpad)
    ) -> BaseModelOutput:
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}: truncate or split the input")
        mask = None
        # On a GPU, asking whether a mask has padding waits for the GPU: a CUDA batch is masked as given.
        if attention_mask is not None and (attention_mask.device.type != "cpu" or not bool(attention_mask.all())):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
            if packing is None and self.unpad:
                packing = Packing.from_mask(attention_mask)
        if packing is not None and mask is None and packing.indices.numel() != packing.batch * packing.length:
            real = torch.zeros(packing.batch * packing.length, dtype=torch.bool, device=input_ids.device)
            mask = real.index_fill(0, packing.indices, True).view(packing.batch, 1, 1, packing.length)
        if packing is not None:
            packed = self.encoder(self.embeddings(input_ids, token_type_ids, packing), mask, packing)  # (R, H)
            hidden = packing.pad(packed)  # (B, T, H), zeros at padding
        else:
            hidden = self.encoder(self.embeddings(input_ids, token_type_ids), mask)  # (B, T, H)
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=hidden, pooler_output=pooled)


# ==================================================================================== heads
class BertPredictionHeadTransform(nn.Module):
    """dense H -> H, activation, LayerNorm: the MLM head's transform before the vocabulary."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = _ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """Transform, then project onto the vocabulary with the (tied) word-embedding matrix + a bias."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        # The decoder's weight is the word-embedding matrix (tied in tie_weights); only the bias
        # (HF's cls.predictions.bias, alias cls.predictions.decoder.bias) is the head's own.
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), self.decoder.weight, self.bias)  # (..., V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


class BertPreTrainingHeads(nn.Module):
    """The MLM head and the NSP classifier (2 classes on the pooled [CLS] vector)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


def _masked_lm(head: BertLMPredictionHead, hidden: torch.Tensor, labels: torch.Tensor | None,
               all_positions: bool, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MLM logits and mean cross-entropy over the labelled positions (labels != -100).

    Without labels, or with ``all_positions``, the head runs at every position: logits (B, T, V).
    Otherwise it runs only at the M labelled positions: logits (M, V), rows in row-major order of
    the positions. Both give the same loss; the gather skips (T - M) / T of the head's work.
    ``positions`` (M,) are those positions flat (b * T + t), found on the host beforehand: finding
    them here from a GPU tensor waits for the GPU.
    """
    if labels is None:
        return head(hidden), None
    if positions is not None and not all_positions:
        if positions.numel() == 0:  # known on the host: no wait
            return hidden.new_zeros(0, head.decoder.out_features), hidden.sum() * 0.0
        logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))  # (M, V)
        return logits, F.cross_entropy(logits.float(), labels.reshape(-1).index_select(0, positions))
    if all_positions:
        logits = head(hidden)  # (B, T, V)
        flat_logits, flat_labels = logits.view(-1, logits.shape[-1]), labels.view(-1)
    else:
        selected = labels != -100  # (B, T)
        logits = flat_logits = head(hidden[selected])  # (M, V)
        flat_labels = labels[selected]  # (M,)
    if flat_labels.numel() == 0 or not bool((flat_labels != -100).any()):
        return logits, flat_logits.sum() * 0.0  # no labelled position: zero loss, not NaN
    # The loss is computed in fp32 even under bf16 autocast: a log-softmax over V in bf16 loses bits.
    loss = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=-100)
    return logits, loss


class _TiedMLMModel(BertPreTrainedModel):
    """A model with an MLM head whose vocabulary projection is the word-embedding matrix (BERT's tying)."""

    tied_weights: ClassVar[dict[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"}
    bert: BertModel
    cls: nn.Module

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight


class BertForPreTraining(_TiedMLMModel):
    """BERT with both pretraining objectives: masked LM + next sentence prediction.

    ``loss = mlm_loss + nsp_loss`` (Devlin et al. 2019, section 3.1); both parts are returned.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        labels: torch.Tensor | None = None,  # (B, T): original id at masked positions, -100 elsewhere
        next_sentence_label: torch.Tensor | None = None,  # (B,): 0 = B follows A, 1 = B is random
        mlm_all_positions: bool = False,
        packing: Packing | None = None,
        mlm_positions: torch.Tensor | None = None,  # (M,) flat positions of the labels, found on the host
    ) -> PreTrainingOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, packing)
        mlm_logits, mlm_loss = _masked_lm(self.cls.predictions, out.last_hidden_state, labels, mlm_all_positions,
                                          mlm_positions)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)  # (B, 2)
        nsp_loss = None
        if next_sentence_label is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
        parts = [x for x in (mlm_loss, nsp_loss) if x is not None]
        loss = sum(parts[1:], parts[0]) if parts else None
        return PreTrainingOutput(loss, mlm_loss, nsp_loss, mlm_logits, nsp_logits)


class BertForMaskedLM(_TiedMLMModel):
    """BERT with the masked-LM head only (no pooler), e.g. for fill-mask."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        labels: torch.Tensor | None = None,  # (B, T), -100 where not predicted
        mlm_all_positions: bool = False,
        packing: Packing | None = None,
    ) -> MaskedLMOutput:
        hidden = self.bert(input_ids, attention_mask, token_type_ids, packing).last_hidden_state
        logits, loss = _masked_lm(self.cls.predictions, hidden, labels, mlm_all_positions)
        return MaskedLMOutput(loss, logits)


class BertForTokenClassification(BertPreTrainedModel):
    """One linear layer on every token vector (NER, PICO); labels -100 are ignored."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        labels: torch.Tensor | None = None,  # (B, T) class ids, -100 = not scored (sub-tokens, padding)
        packing: Packing | None = None,
    ) -> TokenClassifierOutput:
        hidden = self.bert(input_ids, attention_mask, token_type_ids, packing).last_hidden_state
        logits = self.classifier(self.dropout(hidden))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        return TokenClassifierOutput(loss, logits)


class BertForSequenceClassification(BertPreTrainedModel):
    """One linear layer on the pooled [CLS] vector: single-label, multi-label or regression.

    The problem type is ``config.problem_type`` or, when unset, chosen as transformers does: one
    label means regression (MSE), integer labels mean single-label classification (cross-entropy),
    float labels mean multi-label classification (binary cross-entropy per class).
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    @property
    def regression(self) -> bool:
        """Whether the head predicts scores (one label, or ``problem_type`` "regression")."""
        return self.config.problem_type == "regression" or (self.config.problem_type is None and self.num_labels == 1)

    def problem_type_for(self, labels: torch.Tensor) -> str:
        if self.regression:
            return "regression"
        if self.config.problem_type is not None:
            return self.config.problem_type
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        labels: torch.Tensor | None = None,  # (B,) ids or values, or (B, num_labels) 0/1 for multi-label
        packing: Packing | None = None,
    ) -> SequenceClassifierOutput:
        pooled = self.dropout(self.bert(input_ids, attention_mask, token_type_ids, packing).pooler_output)
        if self.regression:  # a score, in fp32 even under autocast (bf16 keeps 8 significant bits)
            with torch.autocast(pooled.device.type, enabled=False):
                logits = self.classifier(pooled.float())
        else:
            logits = self.classifier(pooled)  # (B, num_labels)
        loss = None
        if labels is not None:
            kind = self.problem_type_for(labels)
            if kind == "regression":
                target = labels.float()
                pred = logits.float().squeeze(-1) if self.num_labels == 1 else logits.float()
                loss = F.mse_loss(pred, target.view_as(pred))
            elif kind == "single_label_classification":
                loss = F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return SequenceClassifierOutput(loss, logits)


#: The classes a checkpoint's ``architectures`` entry may name, for ``AutoModel``-like loading.
MODEL_CLASSES: dict[str, type[BertPreTrainedModel]] = {
    cls.__name__: cls for cls in (BertModel, BertForPreTraining, BertForMaskedLM,
                                  BertForTokenClassification, BertForSequenceClassification)
}


def load_model(directory: str | os.PathLike, **config_overrides: Any) -> BertPreTrainedModel:
    """Load a checkpoint with the class its ``architectures`` names (``BertModel`` if none)."""
    hf_io.find_weights(Path(directory))
    config = BertConfig.load(Path(directory))
    names = config.extra.get("architectures") or ["BertModel"]
    cls = MODEL_CLASSES.get(names[0], BertModel)
    return hf_io.load_pretrained(cls, directory, **config_overrides)
