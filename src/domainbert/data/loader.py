"""Prepared shards -> model inputs: the pretraining reader and its one iteration contract.

:class:`PretrainingDataset` memory-maps the shards :mod:`domainbert.data.shards` wrote, shuffles with
a keyed pseudo-random permutation (O(1) memory, a new order per epoch), masks on the fly for
dynamically masked data (a seed per epoch and sample, whichever rank or worker draws it), and refuses
data prepared for another sequence length, prediction count or vocabulary
(:func:`~domainbert.data.shards.check_manifest`). Its class docstring states the order in which
samples are read, once, for both ways of reading them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from domainbert.data.examples import (
    OBJECTIVES,
    MaskingSpec,
    create_masked_lm_predictions,
    derive_seed,
    max_predictions_for,
)
from domainbert.data.shards import SHARD_META, VOCAB_COPY, check_manifest, load_manifest, prepared_objective
from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import ConfigError, DataError

__all__ = ["PretrainingDataset", "collate_pretraining", "IGNORE_INDEX"]

IGNORE_INDEX = -100
"""The label of positions that are not masked (what ``torch.nn.CrossEntropyLoss`` ignores)."""


class _Permutation:
    """A keyed pseudo-random permutation of ``range(n)`` in O(1) memory.

    A 4-round Feistel network on ``2h`` bits (``4**h >= n``) with cycle walking: values that land
    outside ``range(n)`` are encrypted again until they fall inside, which keeps it a bijection.
    ``np.random.permutation`` would need 8 bytes per sample (800 MB for 100M samples).
    """

    ROUNDS = 4

    def __init__(self, n: int, key: int) -> None:
        self.n = n
        self.half = max(1, math.ceil(math.log2(max(n, 2)) / 2))
        self.mask = np.uint64((1 << self.half) - 1)
        keys = np.random.default_rng(key % (2**63)).integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)
        self.keys = [np.uint64(k) for k in keys]

    def _round(self, x: np.ndarray, k: np.uint64) -> np.ndarray:
        # splitmix64-style mixing of (x + k); uint64 arithmetic wraps, as intended.
        z = x + k
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & self.mask

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ self._round(right, k)
        return (left << h) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        """The permuted index of each position (an int64 array in ``range(n)``)."""
        with np.errstate(over="ignore"):
            x = self._encrypt(positions.astype(np.uint64))
            outside = x >= np.uint64(self.n)
            while outside.any():
                x[outside] = self._encrypt(x[outside])
                outside = x >= np.uint64(self.n)
        return x.astype(np.int64)


class PretrainingDataset(IterableDataset):
    """Streams a prepared directory as model inputs, shuffled by seed and epoch, split by rank/worker.

    Each item is a dict of tensors (one sample, shapes ``(L,)``, or a batch, ``(B, L)``):
    ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels`` (the original id at masked
    positions, -100 elsewhere: what ``BertForPreTraining.forward(labels=...)`` takes) and
    ``next_sentence_label`` (0 = B follows A, 1 = random). With ``objective="mlm"`` (masked LM alone)
    a sample is one segment: token types all 0, no ``next_sentence_label``; BERT's pairs can be read
    so, and data prepared with ``--objective mlm`` can only be read so.

    **The iteration contract** (the one place it is written down):

    1. *Order.* The samples form one endless sequence: epoch 0's permutation of all ``N`` samples
       (keyed by ``(seed, epoch)``; the identity with ``shuffle=False``), then epoch 1's, and so on.
       Position ``p`` holds sample ``perm[p // N](p % N)``, read with epoch ``p // N``'s dynamic masks.
    2. *Split.* The sequence is consumed in global batches of ``G`` samples; rank ``r`` of ``W``
       takes the ``r``-th of ``W`` equal contiguous slices of each global batch, so ``W`` ranks
       together read exactly what one rank would.
    3. *Start.* Reading starts at position ``epoch * N + start_sample`` (``start_sample`` counted over
       all ranks: a resumed run passes ``step * G``), so nothing is replayed.

    Two readers follow it, and take the constructor's ``rank``, ``world_size``, ``epoch`` and
    ``start_sample`` unless told otherwise:

    - :meth:`micro_batches` (the trainer, ``domainbert.train.pretrain.BatchSource``): ``G`` is the
      global batch; endless; the rank's slice of each global batch cut into micro-batches.
    - iteration (``for item in dataset``, a ``DataLoader``): ``G = W``, one sample per rank per step
      (so rank ``r`` reads the positions ``≡ r`` mod ``W``) through one epoch; the ``N % W`` last
      positions are dropped so that every rank gets the same count; items are samples, or
      ``batch_size`` batches of the rank's stream; DataLoader worker ``w`` of ``K`` takes the rank's
      items ``w, w + K, ...``, so ``DataLoader(ds, batch_size=None, num_workers=K)`` yields the rank's
      stream in order.

    Memory: shards are memory-mapped; the permutation is computed, not stored.
    """

    def __init__(self, data_dir: str | Path, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 epoch: int = 0, start_sample: int = 0, shuffle: bool = True, batch_size: int | None = None,
                 drop_last: bool = False, max_seq_len: int | None = None, max_predictions: int | None = None,
                 vocab: BertTokenizer | str | Path | None = None, vocab_size: int | None = None,
                 with_index: bool = False, masked_lm_prob: float | None = None, objective: str = "mlm+nsp") -> None:
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} / world_size {world_size}: need 0 <= rank < world_size")
        if start_sample < 0:
            raise ConfigError(f"start_sample {start_sample} must be >= 0")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size {batch_size} must be >= 1 (or None for single samples)")
        self.dir = Path(data_dir)
        self.manifest = load_manifest(self.dir)
        check_manifest(self.manifest, max_seq_len=max_seq_len, max_predictions=max_predictions,
                       vocab=vocab, vocab_size=vocab_size)
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, epoch
        self.start_sample, self.shuffle, self.batch_size, self.drop_last = start_sample, shuffle, batch_size, drop_last
        self.params = dict(self.manifest["params"])
        self.dynamic = bool(self.params["dynamic_masking"])
        prepared = prepared_objective(self.manifest)
        if objective not in OBJECTIVES:
            raise ConfigError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        if objective == "mlm+nsp" and prepared == "mlm":
            raise DataError(f"{self.dir} was prepared with --objective mlm (packed sentences, no sentence pairs) "
                            "and the run trains next-sentence prediction: pretrain with --objective mlm, or give it "
                            "(as --data or --eval-data) BERT's pairs, prepared with --objective mlm+nsp")
        self.objective = objective
        """``mlm``: every sample is one segment (token type 0) and carries no next-sentence label."""
        if masked_lm_prob is not None and masked_lm_prob != self.params["masked_lm_prob"]:
            # A training recipe's masking rate: dynamically masked data masks at it when loading;
            # statically masked data was masked when prepared and cannot change.
            if not 0.0 < masked_lm_prob < 1.0:
                raise ConfigError(f"masked_lm_prob {masked_lm_prob} must be in (0, 1); BERT uses 0.15")
            if not self.dynamic:
                cap = max_predictions_for(masked_lm_prob, self.params["max_seq_len"])
                raise DataError(f"{self.dir} was masked at {self.params['masked_lm_prob']:g} when prepared, and the "
                                f"run asks for {masked_lm_prob:g}: prepare it with --masked-lm-prob {masked_lm_prob:g} "
                                f"--max-predictions {cap}, or with --dynamic-masking to let the run choose")
            self.params["masked_lm_prob"] = masked_lm_prob
            self.params["max_predictions"] = max(int(self.params["max_predictions"]),
                                                 math.ceil(masked_lm_prob * self.params["max_seq_len"]))
        missing = [s["name"] for s in self.manifest["shards"] if not (self.dir / s["name"] / SHARD_META).is_file()]
        if missing:
            raise DataError(f"{self.dir}: shard(s) {', '.join(missing[:3])} listed in the manifest are missing: "
                            "rerun `domainbert data prepare` with the same arguments")
        counts = [s["num_samples"] for s in self.manifest["shards"]]
        self.num_samples = int(sum(counts))
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (shards + 1,)
        self._arrays: list[dict[str, np.ndarray]] | None = None
        self._open()  # maps every shard now, so that a truncated or missing file fails here, not mid-run,
        self._arrays = None  # then forgets the maps: each process (DataLoader worker) maps its own
        self._spec: MaskingSpec | None = None
        self._perms: dict[int, _Permutation] = {}  # the current epoch's permutation, computed once
        self.with_index = with_index
        """Also yield ``index`` (the sample's position over all shards), for tests and debugging."""

    def set_epoch(self, epoch: int, start_sample: int = 0) -> None:
        """Move to ``epoch`` (new order, new dynamic masks), starting at ``start_sample``."""
        self.epoch, self.start_sample = epoch, start_sample

    # ---------------------------------------------------------------- which samples are ours
    @property
    def samples_per_rank(self) -> int:
        return self.num_samples // self.world_size

    def _rank_start(self) -> int:
        """The first rank-local index not yet consumed."""
        return min(self.samples_per_rank, max(0, -(-(self.start_sample - self.rank) // self.world_size)))

    def __len__(self) -> int:
        """Items this rank yields (samples, or batches with ``batch_size``)."""
        n = self.samples_per_rank - self._rank_start()
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def global_indices(self, local: np.ndarray) -> np.ndarray:
        """Iteration's rank-local positions -> sample indices over all shards (the epoch's order)."""
        return self._samples_at(self.epoch * self.num_samples + local.astype(np.int64) * self.world_size
                                + self.rank)[0]

    def _samples_at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the endless sequence (contract point 1) -> (sample indices, epochs)."""
        n = self.num_samples
        epochs = positions // n
        indices = positions - epochs * n
        if self.shuffle:
            for e in np.unique(epochs).tolist():
                if e not in self._perms:
                    self._perms = {e: _Permutation(n, derive_seed("order", self.seed, e))}  # one epoch kept
                at = epochs == e
                indices[at] = self._perms[e](indices[at])
        return indices, epochs

    def _worker_blocks(self) -> list[np.ndarray]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        start, end = self._rank_start(), self.samples_per_rank
        if self.batch_size is None:
            return [np.arange(start + wid, end, nw, dtype=np.int64)]
        blocks = []
        for b, s in enumerate(range(start, end, self.batch_size)):
            e = min(s + self.batch_size, end)
            if self.drop_last and e - s < self.batch_size:
                break
            if b % nw == wid:
                blocks.append(np.arange(s, e, dtype=np.int64))
        return blocks

    # ---------------------------------------------------------------- reading
    def _open(self) -> list[dict[str, np.ndarray]]:
        if self._arrays is None:
            arrays = []
            for s in self.manifest["shards"]:
                d = self.dir / s["name"]
                names = ["input_ids", "lengths", "b_start", "next_sentence"]
                if not self.dynamic:
                    names += ["masked_positions", "masked_labels", "num_masked"]
                try:
                    arrays.append({n: np.load(d / f"{n}.npy", mmap_mode="r") for n in names})
                except (OSError, ValueError) as exc:
                    raise DataError(f"{d}: a shard file is truncated or damaged ({exc}): rerun `domainbert data "
                                    "prepare` with the same arguments (it redoes damaged shards)") from None
                rows = {len(a) for a in arrays[-1].values()}
                if rows != {s["num_samples"]}:
                    raise DataError(f"{d} holds {sorted(rows)} rows where the manifest says {s['num_samples']}: "
                                    "rerun `domainbert data prepare` with the same arguments")
            self._arrays = arrays
        return self._arrays

    def _masking_spec(self) -> MaskingSpec:
        if self._spec is None:
            v = self.manifest["vocab"]
            cont = np.zeros(v["size"], dtype=bool)
            if self.params["whole_word_mask"]:
                path = self.dir / VOCAB_COPY
                if not path.is_file():
                    raise DataError(f"{path} is missing: whole-word dynamic masking needs the vocabulary copy "
                                    "that `domainbert data prepare` writes; rerun it")
                for i, token in enumerate(path.read_text(encoding="utf-8").split("\n")[:v["size"]]):
                    cont[i] = token.startswith("##")
            self._spec = MaskingSpec(int(v["cls_id"]), int(v["sep_id"]), int(v["mask_id"]), int(v["size"]), cont)
        return self._spec

    def sample(self, index: int, epoch: int | None = None) -> dict[str, np.ndarray]:
        """Sample ``index`` (over all shards, unshuffled) as numpy arrays of length L.

        ``epoch`` (default: the dataset's) only matters for dynamically masked data.
        """
        epoch = self.epoch if epoch is None else epoch
        arrays = self._open()
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        row = index - int(self._offsets[k])
        a = arrays[k]
        L = self.params["max_seq_len"]
        n, b = int(a["lengths"][row]), int(a["b_start"][row])
        ids = np.asarray(a["input_ids"][row], dtype=np.int64)  # (L,)
        labels = np.full(L, IGNORE_INDEX, dtype=np.int64)  # (L,)
        if self.dynamic:
            # A new mask per (epoch, sample), the same whichever rank or worker draws it.
            rng = random.Random(derive_seed("mask", self.params["seed"], self.seed, epoch, index))
            out, pos, lab = create_masked_lm_predictions(
                ids[:n].tolist(), self.params["masked_lm_prob"], self.params["max_predictions"],
                self._masking_spec(), rng, self.params["whole_word_mask"])
            ids[:n] = out
            labels[pos] = lab
        else:
            m = int(a["num_masked"][row])
            labels[np.asarray(a["masked_positions"][row][:m], dtype=np.int64)] = a["masked_labels"][row][:m]
        types = np.zeros(L, dtype=np.int64)
        if self.objective == "mlm+nsp":
            types[b:n] = 1
        mask = np.zeros(L, dtype=np.int64)
        mask[:n] = 1
        out = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}
        if self.objective == "mlm+nsp":
            out["next_sentence_label"] = np.int64(a["next_sentence"][row])
        if self.with_index:
            out["index"] = np.int64(index)
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for block in self._worker_blocks():
            indices = self.global_indices(block)
            if self.batch_size is None:
                for i in indices.tolist():
                    yield {k: torch.as_tensor(v) for k, v in self.sample(i).items()}
            else:
                yield collate_pretraining([self.sample(i) for i in indices.tolist()])


    def micro_batches(self, global_batch_size: int, micro_batch_size: int, start_sample: int | None = None,
                      rank: int | None = None, world_size: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """The trainer's reader (see the class docstring): endless micro-batches of ``rank``'s slice of
        each global batch, from position ``start_sample`` of the endless sequence.

        ``start_sample``, ``rank`` and ``world_size`` default to the constructor's (``start_sample`` to
        ``epoch * N + start_sample``). A start inside a global batch reads only the rest of it.
        """
        rank = self.rank if rank is None else rank
        world_size = self.world_size if world_size is None else world_size
        if start_sample is None:
            start_sample = self.epoch * self.num_samples + self.start_sample
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} / world_size {world_size}: need 0 <= rank < world_size")
        if global_batch_size % (micro_batch_size * world_size):
            raise ConfigError(f"global batch {global_batch_size} is not a multiple of micro batch "
                              f"{micro_batch_size} x world size {world_size}")
        per_rank = global_batch_size // world_size
        step_start = start_sample - start_sample % global_batch_size
        skip = start_sample - step_start  # a start inside a step: only the rest of its samples
        while True:
            lo = step_start + rank * per_rank
            for m in range(lo, lo + per_rank, micro_batch_size):
                positions = np.arange(m, m + micro_batch_size, dtype=np.int64)
                positions = positions[positions >= step_start + skip]
                if not len(positions):
                    continue
                indices, epochs = self._samples_at(positions)
                yield collate_pretraining([self.sample(i, epoch=e)
                                           for i, e in zip(indices.tolist(), epochs.tolist())])
            step_start += global_batch_size
            skip = 0


def collate_pretraining(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack samples (numpy arrays or tensors) into a batch: ``(B, L)`` tensors and ``(B,)`` NSP labels."""
    return {k: torch.as_tensor(np.stack([np.asarray(s[k]) for s in samples])) for k in samples[0]}
