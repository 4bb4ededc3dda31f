"""Examples -> shards on disk: ``domainbert data prepare``, its process pool, manifest and checks.

A unit of work is one input file of at least :data:`UNIT_BYTES` (256 KiB: a PubMed baseline file, a
large text file), or consecutive smaller files grouped until they reach that size (one article per
file, a folder per journal), so that random-next segments, which come from another document of the
same unit, come from hundreds of documents whatever the corpus layout (:func:`group_units`). Each unit
is read and filtered (:mod:`domainbert.data.corpus`, :mod:`domainbert.data.filters`), tokenized,
paired and masked (:mod:`domainbert.data.examples`) with its own generator per duplication round,
seeded from ``(seed, unit position and first file's name, dupe index)``, into its own shard. Memory
stays flat (one unit's token ids, as numpy arrays), units run in parallel processes, and the output
is byte-identical whatever the number of workers. Each shard counts its random-next pairs that came
from another document; ``data prepare`` warns about a unit where that share is below 99% (a unit of
one long document). Documents are not
shuffled before pairing (the reader shuffles samples instead, which is what the reference's final
instance shuffle is for). Deduplication (``CorpusFilter.dedup_*``) and ``<DeleteCitation>`` work
across files, as in :func:`domainbert.data.filters.iter_corpus`: a first pass reads every file's PMIDs
and text hashes (parsing only, no sentence splitting), and each file's task then carries the few
keys it must drop.

Output directory (``domainbert data prepare``)::

    manifest.json          written last: parameters, vocabulary hash, counts, shard list, checksum
    vocab.txt              a copy of the vocabulary (decoding; dynamic whole-word masking)
    shard-00000/           one per unit of input files (files in the order given, folders expanded sorted),
                           N samples, L = max_seq_len,
      input_ids.npy        (N, L) uint16 (int32 when the vocabulary has more than 65,536 ids);
                           [CLS] A [SEP] B [SEP] then [PAD]; masked already unless dynamic masking
      lengths.npy          (N,) int16: real tokens (the rest is padding)
      b_start.npy          (N,) int16: position of B's first token (token type 1 from here to length)
      next_sentence.npy    (N,) uint8: 1 = B is random, 0 = B follows A (transformers' convention)
      masked_positions.npy (N, P) int16, P = max_predictions; positions ascending, 0-padded
      masked_labels.npy    (N, P) like input_ids: the original ids there, 0-padded
      num_masked.npy       (N,) uint8: how many of the P slots are used
      shard.json           this shard's counts, config checksum and the SHA-256 of each file
                           (the three masked_* files are absent with --dynamic-masking)

Shards are written under a temporary name and renamed when complete; ``manifest.json`` comes last.
An interrupted run therefore leaves no manifest, and a rerun keeps each finished shard whose
config checksum and file checksums match and redoes the rest.

"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from domainbert.atomic import atomic_write_json, atomic_write_text
from domainbert.data.corpus import CorpusCounts, Document, list_corpus_files, read_corpus_file
from domainbert.data.examples import (
    OBJECTIVES,
    DocumentPool,
    MaskingSpec,
    NspDebt,
    PrepareConfig,
    TrainingInstance,
    create_instances_from_document,
    create_packed_instances,
    derive_seed,
)
from domainbert.data.filters import (
    CorpusFilter,
    DecontaminationSet,
    FileDrops,
    add_filter_arguments,
    build_decontamination_set,
    corpus_drops,
    filter_documents,
    filter_from_args,
)
from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import ConfigError, DataError, DomainBertError
from domainbert.model.hub import resolve_model
from domainbert.progress import tqdm

__all__ = ["prepare_pretraining_data", "vocab_hash", "load_manifest", "check_manifest",
           "MANIFEST_NAME", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
#: What every manifest holds (the reader, the trainer and the checks use all of them).
MANIFEST_KEYS = ("config_checksum", "params", "vocab", "num_samples", "shards", "counts")
SHARD_META = "shard.json"
VOCAB_COPY = "vocab.txt"
FORMAT_VERSION = 1
_DOCS_PER_ENCODE = 512  # documents tokenized per encode_batch call (bounded memory, Rust-parallel)


# ==================================================================================== shards
class _ShardBuffer:
    """Growable fixed-width arrays for one shard (amortised doubling; memory ~ samples x L)."""

    def __init__(self, config: PrepareConfig, id_dtype: np.dtype, pad_id: int) -> None:
        self.config, self.n, self.pad_id = config, 0, pad_id
        L, P = config.max_seq_len, config.max_predictions
        cap = 1024
        self.arrays: dict[str, np.ndarray] = {
            "input_ids": np.full((cap, L), pad_id, dtype=id_dtype),  # (N, L)
            "lengths": np.zeros(cap, dtype=np.int16),  # (N,)
            "b_start": np.zeros(cap, dtype=np.int16),  # (N,)
            "next_sentence": np.zeros(cap, dtype=np.uint8),  # (N,)
        }
        if not config.dynamic_masking:
            self.arrays["masked_positions"] = np.zeros((cap, P), dtype=np.int16)  # (N, P)
            self.arrays["masked_labels"] = np.zeros((cap, P), dtype=id_dtype)  # (N, P)
            self.arrays["num_masked"] = np.zeros(cap, dtype=np.uint8)  # (N,)

    def append(self, inst: TrainingInstance) -> None:
        if self.n == len(self.arrays["lengths"]):
            for name, arr in self.arrays.items():
                grown = np.full((2 * len(arr), *arr.shape[1:]), self.pad_id if name == "input_ids" else 0,
                                dtype=arr.dtype)
                grown[:self.n] = arr
                self.arrays[name] = grown
        a, n, k = self.arrays, self.n, len(inst.input_ids)
        a["input_ids"][n, :k] = inst.input_ids
        a["lengths"][n] = k
        a["b_start"][n] = inst.b_start
        a["next_sentence"][n] = int(inst.is_random_next)
        if not self.config.dynamic_masking:
            m = len(inst.masked_positions)
            a["masked_positions"][n, :m] = inst.masked_positions
            a["masked_labels"][n, :m] = inst.masked_labels
            a["num_masked"][n] = m
        self.n += 1

    def final(self) -> dict[str, np.ndarray]:
        return {name: arr[:self.n] for name, arr in self.arrays.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vocab_hash(tokenizer: BertTokenizer) -> str:
    """SHA-256 of the tokens in id order and the normalisation flags: what makes ids mean the same."""
    by_id = sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])
    h = hashlib.sha256("\n".join(f"{i}\t{t}" for t, i in by_id).encode("utf-8"))
    h.update(json.dumps([tokenizer.do_lower_case, tokenizer.strip_accents,
                         tokenizer.tokenize_chinese_chars]).encode())
    return h.hexdigest()


#: Input files smaller than this are grouped (in corpus order) into units of at least this size, whose
#: documents draw their random-next segments from one another; a larger file is a unit of its own.
UNIT_BYTES = 256 * 1024
#: ``data prepare`` warns when a unit's random-next pairs come from another document less often than this.
MIN_OTHER_DOCUMENT_SHARE = 0.99


def group_units(sizes: Sequence[int], unit_bytes: int = UNIT_BYTES) -> list[list[int]]:
    """Indices of the input files, in order, grouped into units: consecutive files until the unit holds
    ``unit_bytes``; the last unit may be smaller. A file of ``unit_bytes`` or more after a full unit is a
    unit of its own, so a corpus of large files gets one unit per file, as before units existed."""
    units: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, n in enumerate(sizes):
        current.append(i)
        size += n
        if size >= unit_bytes:
            units.append(current)
            current, size = [], 0
    if current:
        units.append(current)
    return units


@dataclass
class _UnitTask:
    index: int
    paths: tuple[str, ...]
    shard: str
    drops: tuple[FileDrops, ...] = ()
    """Per file: deleted citations, PMIDs a later file revises and texts an earlier file holds."""


# What each worker process holds (set by _init_worker; the in-process path sets it too).
_WORKER: dict[str, Any] = {}


def _init_worker(vocab_dir: str, config: PrepareConfig, corpus_filter: CorpusFilter,
                 decontamination: DecontaminationSet | None, split_sentences: bool,
                 out_dir: str, config_checksum: str, single_thread: bool) -> None:
    if single_thread:
        # Several worker processes: one tokenizer thread each, so that workers do not oversubscribe.
        os.environ["RAYON_RS_NUM_CPUS"] = "1"
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    _WORKER.update(tokenizer=tokenizer, spec=MaskingSpec.from_tokenizer(tokenizer), config=config,
                   corpus_filter=corpus_filter, decontamination=decontamination,
                   split_sentences=split_sentences, out_dir=Path(out_dir), checksum=config_checksum)


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


def _shard_done(shard_dir: Path, checksum: str, paths: Sequence[Path]) -> dict[str, Any] | None:
    """The shard's metadata if it is complete, made with ``checksum`` from ``paths`` and intact."""
    meta_path = shard_dir / SHARD_META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    sizes = [p.stat().st_size for p in paths]
    if meta.get("config_checksum") != checksum or meta.get("source_sizes", [meta.get("source_size")]) != sizes:
        return None
    for name, digest in meta.get("sha256", {}).items():
        f = shard_dir / name
        if not f.is_file() or _sha256(f) != digest:
            return None
    return meta


def _process_unit(task: _UnitTask) -> dict[str, Any]:
    """Read, filter, tokenize and pair one unit of input files into its shard; returns the shard's
    metadata."""
    w = _WORKER
    config: PrepareConfig = w["config"]
    tokenizer: BertTokenizer = w["tokenizer"]
    out_dir: Path = w["out_dir"]
    paths = [Path(p) for p in task.paths]
    shard_dir = out_dir / task.shard
    done = _shard_done(shard_dir, w["checksum"], paths)
    if done is not None:
        done["reused"] = True
        return done
    counts = CorpusCounts()
    pool = DocumentPool()
    batch: list[Document] = []
    words = 0  # whitespace-separated words of the kept documents (what a model card reports)

    def encode(batch: list[Document]) -> None:
        nonlocal words
        words += sum(doc.num_words() for doc in batch)
        flat = [s for doc in batch for s in doc.sentences]
        # The Rust backend directly, ids only: the wrapper's Encoding records (offsets, tokens, word
        # ids) would cost a third of the tokenizing time. encode_batch_fast skips offsets (>= 0.20).
        backend = tokenizer.backend
        fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
        encs = fast(flat, add_special_tokens=False)
        k = 0
        for doc in batch:
            pool.add([encs[k + j].ids for j in range(len(doc.sentences))])
            k += len(doc.sentences)

    for path, drops in zip(paths, task.drops):
        docs = read_corpus_file(path, counts=counts, split_sentences=w["split_sentences"])
        for doc in filter_documents((d for d in docs if not drops.drop(d, counts)), w["corpus_filter"],
                                    decontamination=w["decontamination"], counts=counts):
            batch.append(doc)
            if len(batch) >= _DOCS_PER_ENCODE:
                encode(batch)
                batch = []
    if batch:
        encode(batch)
    pool.freeze()

    spec: MaskingSpec = w["spec"]
    buf = _ShardBuffer(config, _id_dtype(spec.vocab_size), tokenizer.pad_token_id)
    stats = {"random_next": 0, "random_next_forced": 0, "random_next_other_document": 0, "masked_tokens": 0,
             "tokens": 0}
    debt = NspDebt()  # one per unit: carried across documents and dupe rounds
    for dupe in range(config.dupe_factor):
        rng = random.Random(derive_seed(config.seed, task.index, paths[0].name, dupe))
        instances = (create_packed_instances(pool, config, spec, rng) if config.objective == "mlm" else
                     (inst for d in range(len(pool)) for inst in create_instances_from_document(pool, d, config, spec,
                                                                                                 rng, debt)))
        for inst in instances:
            buf.append(inst)
            stats["random_next"] += inst.is_random_next
            stats["random_next_forced"] += inst.forced_random
            stats["random_next_other_document"] += inst.other_document
            stats["masked_tokens"] += len(inst.masked_positions)
            stats["tokens"] += len(inst.input_ids)
    arrays = buf.final()

    tmp = out_dir / f".{task.shard}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digests = {}
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        digests[f"{name}.npy"] = _sha256(tmp / f"{name}.npy")
    meta = {
        "shard": task.shard, "source": str(paths[0]), "sources": [str(p) for p in paths],
        "source_size": sum(p.stat().st_size for p in paths), "source_sizes": [p.stat().st_size for p in paths],
        "config_checksum": w["checksum"], "num_samples": int(buf.n),
        "documents": len(pool), "sentences": pool.num_sentences, "words": words,
        "source_tokens": int(len(pool.tokens)), "skipped_empty_sentences": pool.empty_sentences,
        "skipped_empty_documents": pool.empty_documents,
        "random_next": int(stats["random_next"]), "random_next_forced": int(stats["random_next_forced"]),
        "random_next_other_document": int(stats["random_next_other_document"]),
        "masked_tokens": int(stats["masked_tokens"]),
        "example_tokens": int(stats["tokens"]), "corpus_counts": counts.as_dict(), "sha256": digests,
    }
    (tmp / SHARD_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if shard_dir.exists():
        shutil.rmtree(shard_dir)  # a stale or corrupted earlier attempt
    os.replace(tmp, shard_dir)
    meta["reused"] = False
    return meta


def _map(fn: Any, items: Sequence[Any], workers: int, progress: bool) -> list[Any]:
    """``[fn(x) for x in items]`` (the first pass: deletions and duplicates), over ``workers`` processes."""
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(items), unit="file", desc="first pass",
                                       disable=not progress))
        if workers > 1 and len(items) > 1:
            results = stack.enter_context(ctx.Pool(min(workers, len(items)))).imap(fn, items)
        else:
            results = map(fn, items)
        out = []
        for r in results:
            out.append(r)
            bar.update(1)
        return out


def _config_checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def prepare_pretraining_data(corpus: Sequence[str | Path], vocab_dir: str | Path, out_dir: str | Path,
                             config: PrepareConfig = PrepareConfig(), *,
                             corpus_filter: CorpusFilter = CorpusFilter(),
                             decontaminate: str | Path | None = None, split_sentences: bool = False,
                             workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Write shards and ``manifest.json`` for ``corpus`` into ``out_dir``; returns the manifest.

    Work is spread over ``workers`` processes by unit of input files; the bytes written do not depend on
    ``workers``. A finished ``out_dir`` with the same config checksum is left as it is; one made
    with other settings is refused (choose another ``out_dir``).
    """
    if workers < 1:
        raise ConfigError(f"workers {workers} must be at least 1")
    vocab_dir, out = Path(vocab_dir), Path(out_dir)
    tokenizer = BertTokenizer.from_pretrained(vocab_dir)
    files = list_corpus_files(corpus)
    decon = build_decontamination_set(decontaminate) if decontaminate is not None else None
    spec = MaskingSpec.from_tokenizer(tokenizer)
    vhash = vocab_hash(tokenizer)
    filter_dict = dataclasses.asdict(corpus_filter)
    params = dataclasses.asdict(config)
    if params["objective"] == "mlm+nsp":  # BERT's pairs keep the checksum they had before objectives
        del params["objective"]
    payload = {
        "format_version": FORMAT_VERSION, "params": params,
        "corpus_filter": filter_dict, "split_sentences": split_sentences,
        "decontamination": None if decon is None else {"sources": decon.sources},
        "vocab_hash": vhash, "inputs": [{"name": f.name, "size": f.stat().st_size} for f in files],
        "dedup_scope": "corpus",  # duplicates are found across files (earlier versions: within one)
    }
    units = group_units([f.stat().st_size for f in files])
    if any(len(u) > 1 for u in units):  # a corpus of large files keeps the checksum it had before units
        payload["units"] = {"unit_bytes": UNIT_BYTES, "files": [len(u) for u in units]}
    checksum = _config_checksum(payload)

    manifest_path = out / MANIFEST_NAME
    if manifest_path.is_file():
        existing = load_manifest(out)
        if existing.get("config_checksum") == checksum:
            log.info("%s is already complete (config checksum %s)", out, checksum[:12])
            return existing
        raise DataError(f"{out} already holds pretraining data made with other settings (config checksum "
                        f"{existing.get('config_checksum', '?')[:12]} != {checksum[:12]}): pass another --out "
                        "or delete that folder")
    # The first pass reads the inputs before anything is written (bad input leaves no folder).
    drops = corpus_drops(files, corpus_filter, lambda fn, items: _map(fn, items, workers, progress))
    tasks = [_UnitTask(i, tuple(str(files[f]) for f in unit), f"shard-{i:05d}", tuple(drops[f] for f in unit))
             for i, unit in enumerate(units)]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp-*"):  # left by an interrupted run (one writer per folder at a time)
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()

    init_args = (str(vocab_dir), config, corpus_filter, decon, split_sentences, str(out), checksum,
                 workers > 1)
    results: dict[int, dict[str, Any]] = {}
    try:
        bar = tqdm(total=len(tasks), unit="unit", desc="data prepare", disable=not progress)
        if workers == 1:
            _init_worker(*init_args[:-1], False)
            for t in tasks:
                results[t.index] = _process_unit(t)
                bar.update(1)
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker, initargs=init_args) as pool:
                # Largest units first, so that one big file does not finish last alone.
                order = sorted(tasks, key=lambda t: -sum(Path(p).stat().st_size for p in t.paths))
                for meta, t in zip(pool.imap(_process_unit, order), order):
                    results[t.index] = meta
                    bar.update(1)
        bar.close()
    except BaseException as exc:
        for tmp in out.glob(".shard-*.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if created and isinstance(exc, DomainBertError):
            # Bad input: a rerun cannot reuse anything, so leave no half-written output at all. An
            # interruption (Ctrl-C, a crash) keeps the finished shards for the rerun to reuse.
            shutil.rmtree(out, ignore_errors=True)
        raise

    metas = [results[t.index] for t in tasks]
    total = sum(m["num_samples"] for m in metas)
    if total == 0:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        kept = sum(m["documents"] for m in metas)
        raise DataError(f"the corpus gave no pretraining examples ({kept} documents kept after filtering; "
                        f"{', '.join(map(str, files[:3]))}{' ...' if len(files) > 3 else ''}): check the files "
                        "hold text (one sentence per line, blank line between documents) and lower --min-words")
    corpus_counts: dict[str, int] = {}
    for m in metas:
        for k, v in m["corpus_counts"].items():
            corpus_counts[k] = corpus_counts.get(k, 0) + v
    count_keys = ("documents", "sentences", "source_tokens", "skipped_empty_sentences",
                  "skipped_empty_documents", "random_next", "random_next_forced", "masked_tokens",
                  "example_tokens")
    counts = {k: sum(m[k] for m in metas) for k in count_keys}
    # shards kept from a domainbert that did not count it leave the total unknown
    known = all("random_next_other_document" in m for m in metas)
    counts["random_next_other_document"] = sum(m["random_next_other_document"] for m in metas) if known else None
    # shards kept from a domainbert that did not count words leave the total unknown
    counts["words"] = sum(m["words"] for m in metas) if all("words" in m for m in metas) else None
    counts["pairs"] = total
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": "domainbert data prepare",
        "reference": ("google-research/bert create_pretraining_data.py (random-next documents drawn within units "
                      f"of input files of at least {UNIT_BYTES // 1024} KiB)" if config.objective == "mlm+nsp" else
                      "RoBERTa's FULL-SENTENCES (Liu et al. 2019, section 4.2): whole sentences packed across "
                      "documents, a [SEP] between documents"),
        "config_checksum": checksum,
        "params": dataclasses.asdict(config),
        "corpus_filter": filter_dict,
        "split_sentences": split_sentences,
        "decontamination": payload["decontamination"],
        "vocab": {"hash": vhash, "size": spec.vocab_size, "dir": str(vocab_dir),
                  "do_lower_case": tokenizer.do_lower_case, "pad_id": tokenizer.pad_token_id,
                  "cls_id": spec.cls_id, "sep_id": spec.sep_id, "mask_id": spec.mask_id},
        "id_dtype": _id_dtype(spec.vocab_size).name,
        "inputs": [{"path": str(f), "size": f.stat().st_size} for f in files],
        "counts": counts,
        "corpus_counts": corpus_counts,
        "num_samples": total,
        "shards": [{"name": m["shard"], "source": m["source"], "sources": m.get("sources", [m["source"]]),
                    "num_samples": m["num_samples"], "documents": m["documents"], "random_next": m["random_next"],
                    "random_next_other_document": m.get("random_next_other_document"),
                    "sha256": m["sha256"]} for m in metas],
    }
    # The vocabulary travels with the data: examples decode, and dynamic whole-word masking finds the
    # ## pieces, without the original vocabulary directory.
    by_id = sorted(tokenizer.vocab.items(), key=lambda kv: kv[1])
    atomic_write_text(out / VOCAB_COPY, "".join(t + "\n" for t, _ in by_id))
    atomic_write_json(manifest_path, manifest)
    _log_example(out, manifest, tokenizer)
    for line in few_other_documents(manifest):
        log.warning("%s", line)
    return manifest


def few_other_documents(manifest: dict[str, Any]) -> list[str]:
    """One line per unit whose random-next pairs came from another document less often than
    :data:`MIN_OTHER_DOCUMENT_SHARE` (its NSP labels say "random" for segments of the same document)."""
    lines = []
    for shard in manifest["shards"]:
        random_next, other = shard.get("random_next") or 0, shard.get("random_next_other_document")
        if other is None or random_next == 0 or other / random_next >= MIN_OTHER_DOCUMENT_SHARE:
            continue
        lines.append(f"{shard['name']} ({len(shard['sources'])} file(s) from {shard['source']}, {shard['documents']} "
                     f"document(s)): only {other / random_next:.1%} of its {random_next} random-next pairs come from "
                     "another document, so its NSP labels are mostly wrong; put more documents in each input file "
                     "or split its documents with blank lines")
    return lines


def prepared_objective(manifest: dict[str, Any]) -> str:
    """The objective a prepared folder's examples are for: its manifest names only ``mlm`` (packed
    sentences); BERT's pairs leave the field out, so that their checksum is the one they had before it."""
    return manifest["params"].get("objective", "mlm+nsp")


def _log_example(out: Path, manifest: dict[str, Any], tokenizer: BertTokenizer) -> None:
    """Log the first sample decoded, masks shown (cramming's habit: look at what you train on)."""
    shard = next(s for s in manifest["shards"] if s["num_samples"])
    d = out / shard["name"]
    ids = np.load(d / "input_ids.npy", mmap_mode="r")[0]
    n = int(np.load(d / "lengths.npy", mmap_mode="r")[0])
    packed = prepared_objective(manifest) == "mlm"  # one segment, no next-sentence label
    label = "" if packed else f", next_sentence_label={int(np.load(d / 'next_sentence.npy', mmap_mode='r')[0])}"
    tokens = tokenizer.convert_ids_to_tokens(ids[:n].tolist())
    extra = ""
    if (d / "masked_positions.npy").is_file():
        k = int(np.load(d / "num_masked.npy", mmap_mode="r")[0])
        pos = np.load(d / "masked_positions.npy", mmap_mode="r")[0][:k].tolist()
        lab = tokenizer.convert_ids_to_tokens(np.load(d / "masked_labels.npy", mmap_mode="r")[0][:k].tolist())
        extra = " | masked: " + ", ".join(f"{p}={t}" for p, t in zip(pos, lab))
    log.info("example (%s%s): %s%s", shard["name"], label, " ".join(tokens), extra)


# ==================================================================================== reader
def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    """The manifest of a prepared directory, or a DataError that says how to make one."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{data_dir} has no {MANIFEST_NAME}: run `domainbert data prepare --out {data_dir} ...` "
                        "(an interrupted run leaves none; rerun it to finish)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): rerun `domainbert data prepare`") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path} has format version {manifest.get('format_version')}, this domainbert reads "
                        f"{FORMAT_VERSION}: rerun `domainbert data prepare`")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing or not isinstance(manifest.get("shards"), list):
        raise DataError(f"{path} lacks {', '.join(missing) or 'a shard list'}: it was not written whole by `domainbert "
                        "data prepare`; rerun it into a new --out")
    return manifest


def check_manifest(manifest: dict[str, Any], *, max_seq_len: int | None = None,
                   max_predictions: int | None = None, vocab: BertTokenizer | str | Path | None = None,
                   vocab_size: int | None = None, max_position_embeddings: int | None = None,
                   type_vocab_size: int | None = None) -> None:
    """Refuse data that does not fit the model / training config; each problem says what to change.

    ``max_seq_len`` and ``max_predictions`` (training config) must equal the prepared values;
    ``vocab`` (a tokenizer or vocabulary directory) must hash the same; the model's ``vocab_size``
    must cover every id; ``max_position_embeddings`` must be at least the sequence length; and
    ``type_vocab_size`` at least 2 (token types 0 and 1).
    """
    p, v = manifest["params"], manifest["vocab"]
    problems = []
    if max_seq_len is not None and max_seq_len != p["max_seq_len"]:
        problems.append(f"the data has max_seq_len {p['max_seq_len']} but the training config says {max_seq_len}: "
                        f"set max_seq_len to {p['max_seq_len']}, or rerun `domainbert data prepare "
                        f"--max-seq-len {max_seq_len}`")
    if max_predictions is not None and max_predictions != p["max_predictions"]:
        problems.append(f"the data has max_predictions {p['max_predictions']} but the training config says "
                        f"{max_predictions}: set max_predictions to {p['max_predictions']}, or rerun "
                        f"`domainbert data prepare --max-predictions {max_predictions}`")
    if vocab is not None:
        tok = vocab if isinstance(vocab, BertTokenizer) else BertTokenizer.from_pretrained(vocab)
        h = vocab_hash(tok)
        if h != v["hash"]:
            problems.append(f"the data was tokenized with another vocabulary ({v['dir']}, hash {v['hash'][:12]}, "
                            f"{v['size']} ids) than the one given (hash {h[:12]}, {tok.vocab_size} ids): train "
                            f"with the vocabulary in {v['dir']}, or rerun `domainbert data prepare --vocab` with yours")
    if vocab_size is not None and vocab_size < v["size"]:
        problems.append(f"the model's vocab_size {vocab_size} is below the data's {v['size']} ids: set "
                        f"vocab_size to at least {v['size']} in the model config")
    if max_position_embeddings is not None and max_position_embeddings < p["max_seq_len"]:
        problems.append(f"the model's max_position_embeddings {max_position_embeddings} is below the data's "
                        f"max_seq_len {p['max_seq_len']}: raise max_position_embeddings or rerun "
                        f"`domainbert data prepare --max-seq-len {max_position_embeddings}`")
    if type_vocab_size is not None and type_vocab_size < 2:
        problems.append(f"the model's type_vocab_size {type_vocab_size} cannot hold token types 0 and 1 "
                        "(segments A and B): set type_vocab_size to 2")
    if problems:
        raise ConfigError("; ".join(problems))


# ==================================================================================== command
def configure_prepare(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``domainbert data prepare``."""
    d = PrepareConfig()
    parser.add_argument("--corpus", type=Path, nargs="+", action="extend", required=True, metavar="FILE_OR_DIR",
                        help="text (BERT format), MEDLINE XML (.xml/.xml.gz) or PubTator files, or folders")
    parser.add_argument("--vocab", required=True,
                        help="vocabulary directory (holds vocab.txt), or a model's Hub repo id (continual pretraining)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (shards + manifest.json)")
    parser.add_argument("--max-seq-len", type=int, default=d.max_seq_len, help="tokens per example")
    parser.add_argument("--max-predictions", type=int, default=d.max_predictions, help="masked positions cap")
    parser.add_argument("--masked-lm-prob", type=float, default=d.masked_lm_prob, help="share of tokens masked")
    parser.add_argument("--short-seq-prob", type=float, default=d.short_seq_prob,
                        help="probability of a shorter random target length")
    parser.add_argument("--dupe-factor", type=int, default=d.dupe_factor,
                        help="rounds over the corpus with new pairs and masks (the reference's flag: 10)")
    parser.add_argument("--whole-word-mask", action="store_true", help="mask all pieces of a word together")
    parser.add_argument("--dynamic-masking", action="store_true",
                        help="store unmasked pairs; the reader masks anew each epoch")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed")
    parser.add_argument("--objective", choices=OBJECTIVES, default=d.objective,
                        help="mlm+nsp: BERT's segment pairs with next-sentence labels; mlm: whole sentences packed "
                        "across documents up to the length, a [SEP] between documents (RoBERTa's FULL-SENTENCES), "
                        "for `pretrain --objective mlm`")
    parser.add_argument("--nsp-balance", action="store_true",
                        help="50%% actual-next pairs overall (the reference gives ~40%% on abstracts: it always "
                             "draws a random B for one-sentence chunks)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (work is split by unit: a file of 256 KiB or more, or smaller files grouped)")
    add_filter_arguments(parser)
    parser.add_argument("--split-sentences", action="store_true",
                        help="text lines are paragraphs: split them into sentences")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    try:
        config = PrepareConfig(max_seq_len=args.max_seq_len, max_predictions=args.max_predictions,
                               masked_lm_prob=args.masked_lm_prob, short_seq_prob=args.short_seq_prob,
                               dupe_factor=args.dupe_factor, whole_word_mask=args.whole_word_mask,
                               dynamic_masking=args.dynamic_masking, seed=args.seed, objective=args.objective,
                               nsp_balance=args.nsp_balance)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    corpus_filter = filter_from_args(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    vocab = resolve_model(args.vocab).path  # a directory, or a model's snapshot from the Hub cache
    manifest = prepare_pretraining_data(args.corpus, vocab, args.out, config, corpus_filter=corpus_filter,
                                        decontaminate=args.decontaminate, split_sentences=args.split_sentences,
                                        workers=args.workers, progress=not args.quiet)
    c = manifest["counts"]
    print(f"wrote {args.out}: {manifest['num_samples']:,} examples in {len(manifest['shards'])} shard(s) from "
          f"{c['documents']:,} documents / {c['sentences']:,} sentences "
          + (f"(random next {c['random_next'] / max(1, c['pairs']):.1%}; " if config.objective == "mlm+nsp" else
             "(whole sentences packed for masked LM; ") + f"config {manifest['config_checksum'][:12]})")
    return 0

