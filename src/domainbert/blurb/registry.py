"""The 13 BLURB datasets as records, and loading a split of any of them from a data directory.

One :class:`DatasetRecord` per dataset (cramming's "task as a record", not a class per dataset):
its task type, the files each split reads, the reader, the label list, the maximum sequence length,
the metric, fine-tuning defaults and the notes a report must show. :func:`load_split` reads a split
and checks its labels against the record; :func:`dataset_status` says which files are missing
without reading anything.

Data directory layout (relative to the data directory, the same as ``shared/data``)::

    bc5cdr_chem/{train,devel,test}.tsv     ncbi_disease/{train,devel,test}.tsv
    bc5cdr_disease/{train,devel,test}.tsv  bc2gm/{train,dev,test}.tsv
    jnlpba/{train,dev,test}.tsv            ebm_pico/{train,dev,test}.tsv
    chemprot/blurb/{train,dev,test}.tsv    (or, offline, the BioCreative VI release it is built from:
                                            chemprot/raw/chemprot_{training,development,test_gs}/...)
    ddi/{train,dev,test}.tsv  gad/{train,dev,test}.tsv  biosses/{train,dev,test}.tsv
    hoc/{train,dev,test}.tsv + hoc/{train,dev,test}_pmid.tsv
    pubmedqa/{ori_pqal.json,test_ground_truth.json}   bioasq/{train,dev,test}.tsv

``domainbert data download --blurb`` fetches all of it. Each record also carries the size of each
split in BLURB's release (:attr:`DatasetRecord.sizes`); a split of another size is said in one line
when it is read (another release of the corpus gives scores that do not compare with BLURB's).

Fine-tuning defaults: BLURB (Gu et al. 2021, §4.3) adapts the BERT paper's §3.5 grid — learning rates
{1e-5, 2e-5, 3e-5, 5e-5}, batch sizes {16, 32}, epochs per task — and selects on dev. The single
setting in each record is the starting point for ``--budget quick``; per-task values are
domainbert's choice within that grid and are marked as such (``FinetuneDefaults.source``), not
quoted from the paper.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from domainbert.blurb import readers
from domainbert.blurb.chemprot import CHEMPROT_LABELS, raw_files, read_chemprot_raw
from domainbert.blurb.examples import TextExample, TokenExample
from domainbert.data.sources import default_data_dir
from domainbert.errors import DataError

logger = logging.getLogger("domainbert")

TaskType = Literal["ner", "pico", "relation", "similarity", "multilabel", "classification"]
Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")

#: BLURB's six task types, as the paper names them; the BLURB score averages over these.
TASK_GROUPS: dict[TaskType, str] = {
    "ner": "Named entity recognition",
    "pico": "PICO extraction",
    "relation": "Relation extraction",
    "similarity": "Sentence similarity",
    "multilabel": "Document classification",
    "classification": "Question answering",
}

Example = TokenExample | TextExample
#: A reader gets the record, the split name and the split's files (in ``record.files`` order).
Reader = Callable[["DatasetRecord", str, tuple[Path, ...]], list[Example]]

DOWNLOAD_HINT = "domainbert data download --blurb {name}"
"""How to fetch a dataset's files; ``name`` is its folder's first part (the download catalogue key)."""


@dataclass(frozen=True)
class FinetuneDefaults:
    """One fine-tuning setting (the ``--budget quick`` default) and where it comes from."""

    learning_rate: float
    """Peak AdamW learning rate (10% warmup, then linear decay)."""
    batch_size: int
    """Examples per optimizer step."""
    epochs: int
    """Passes over the training split."""
    source: str = "domainbert default within BLURB's grid (lr {1e-5,2e-5,3e-5,5e-5}, batch {16,32})"
    """Where the numbers come from."""

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"bad fine-tuning defaults {self}")


@dataclass(frozen=True)
class Fallback:
    """Other files a split can be read from when the record's own are absent (ChemProt: the original
    release, converted to BLURB's rows on the fly)."""

    folder: str
    files: Mapping[str, tuple[str, ...]]
    reader: Reader
    description: str
    """What these files are, for messages."""


@dataclass(frozen=True)
class SplitSizes:
    """How big each split of BLURB's release is, and in what unit it is counted."""

    unit: Literal["mentions", "rows", "documents", "pairs", "questions"]
    """``mentions``: entity starts (B tags); ``documents``: distinct documents (HoC PMIDs, EBM-PICO
    abstracts); the others: examples."""
    counts: Mapping[str, int]
    source: str
    """Where the counts come from (the release files counted, or the paper's table)."""


@dataclass(frozen=True)
class DatasetRecord:
    """One BLURB dataset (or a user's dataset in a BLURB format)."""

    name: str
    """Registry key and CLI name, e.g. ``bc5-chem``."""
    display_name: str
    """As BLURB prints it, e.g. ``BC5-chem``."""
    task_type: TaskType
    """Which of the six BLURB task types it belongs to (and so which head it needs)."""
    folder: str
    """Sub-folder of the data directory holding its files."""
    files: Mapping[str, tuple[str, ...]]
    """Per split, the files (relative to ``folder``) the reader needs."""
    reader: Reader
    """Reads one split into examples."""
    labels: tuple[str, ...]
    """Every tag / class the split files may use; empty for regression (BIOSSES)."""
    max_seq_length: int
    """Maximum sub-word length; longer token-classification inputs are windowed, not cut."""
    metric: str
    """Key into :data:`domainbert.blurb.metrics.METRICS` for the dataset's BLURB metric."""
    finetune: FinetuneDefaults
    """Starting fine-tuning setting (see the module docstring)."""
    negative_label: str | None = None
    """Relation extraction: the class left out of micro F1 (ChemProt ``false``, GAD ``0``)."""
    notes: tuple[str, ...] = ()
    """Facts a report must show (missing splits, reconstructed splits, metric conventions)."""
    text_fields: tuple[str, ...] = field(default=("text",))
    """Which example fields are model input (``text`` and maybe ``text_pair``)."""
    sizes: SplitSizes | None = None
    """BLURB's split sizes, checked when a split is read; None for a user's dataset."""
    fallback: Fallback | None = None
    """Where a split is read from when the record's own files are absent."""
    download_name: str | None = None
    """The ``data download --blurb`` name that fetches its files; None for a user's dataset."""

    def __post_init__(self) -> None:
        if self.task_type not in get_args(TaskType):
            raise ValueError(f"{self.name}: unknown task type {self.task_type!r}")
        if set(self.files) - set(SPLITS):
            raise ValueError(f"{self.name}: splits must be among {SPLITS}, got {sorted(self.files)}")
        if self.task_type == "relation" and self.labels and self.negative_label not in self.labels:
            raise ValueError(f"{self.name}: negative label {self.negative_label!r} not in labels")

    @property
    def group(self) -> str:
        """The BLURB task-type name used in the score table."""
        return TASK_GROUPS[self.task_type]

    def paths(self, split: str, data_dir: Path) -> tuple[Path, ...]:
        """Absolute paths of ``split``'s own files under ``data_dir``."""
        if split not in self.files:
            raise DataError(f"{self.name} has no '{split}' split; it has {', '.join(self.files)}")
        return tuple(data_dir / self.folder / name for name in self.files[split])

    def locate(self, split: str, data_dir: Path) -> tuple[tuple[Path, ...], Reader] | None:
        """The files ``split`` is read from and their reader: the record's own when all are present,
        else the fallback's when all of those are; None when neither is complete."""
        own = self.paths(split, data_dir)
        if all(p.is_file() for p in own):
            return own, self.reader
        if self.fallback is not None and split in self.fallback.files:
            other = tuple(data_dir / self.fallback.folder / n for n in self.fallback.files[split])
            if all(p.is_file() for p in other):
                return other, self.fallback.reader
        return None


# --- readers bound to records ------------------------------------------------------------------

def _conll(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_conll(paths[0]))


def _conll_untyped(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    # BLURB's own NER files tag B/I/O without a type; a typed copy (B-GENE) reads the same.
    return [replace(e, tags=tuple(t.split("-")[0] for t in e.tags)) for e in readers.read_conll(paths[0])]


def _relation(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_relation_tsv(paths[0]))


def _chemprot_raw(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    # paths[0] is <raw folder>/chemprot_xxx/<abstracts>; the raw folder is two levels up.
    return list(read_chemprot_raw(paths[0].parent.parent, split))


def _biosses(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_biosses(paths[0]))


def _hoc(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_hoc(paths[0], paths[1]))


def _pubmedqa(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_pubmedqa(split, paths[0], paths[1]))


def _bioasq(record: DatasetRecord, split: str, paths: tuple[Path, ...]) -> list[Example]:
    return list(readers.read_bioasq(paths[0]))


def _bio(entity: str) -> tuple[str, ...]:
    return ("O", f"B-{entity}", f"I-{entity}")


_IOB_FILES = {"train": ("train.tsv",), "dev": ("devel.tsv",), "test": ("test.tsv",)}
_BLURB_FILES = {"train": ("train.tsv",), "dev": ("dev.tsv",), "test": ("test.tsv",)}
_NER_DEFAULTS = FinetuneDefaults(5e-5, 32, 20)
_NER_NOTE = ("entity-level F1 (seqeval, conlleval-style chunks: an I- after O starts an entity)")
_COUNTED = "counted in BLURB's release files (their git blob ids are in domainbert/data/sources.toml)"
_PAPER = "BLURB's published table (Gu et al. 2021, Table 3); not counted here from the files"


def _mentions(train: int, dev: int, test: int, source: str = _COUNTED) -> SplitSizes:
    return SplitSizes("mentions", {"train": train, "dev": dev, "test": test}, source)


def _rows(unit: str, train: int, dev: int, test: int, source: str = _COUNTED) -> SplitSizes:
    return SplitSizes(unit, {"train": train, "dev": dev, "test": test}, source)  # type: ignore[arg-type]

DATASETS: dict[str, DatasetRecord] = {r.name: r for r in [
    DatasetRecord("bc5-chem", "BC5-chem", "ner", "bc5cdr_chem", _IOB_FILES, _conll,
                  _bio("Chemical"), 512, "entity_f1", _NER_DEFAULTS,
                  notes=(_NER_NOTE, "IOB files of MTL-Bioinformatics-2016; BLURB's copy only drops "
                         "the type suffix, so entity F1 is the same"),
                  sizes=_mentions(5203, 5347, 5385), download_name="bc5cdr_chem"),
    DatasetRecord("bc5-disease", "BC5-disease", "ner", "bc5cdr_disease", _IOB_FILES, _conll,
                  _bio("Disease"), 512, "entity_f1", _NER_DEFAULTS, notes=(_NER_NOTE,),
                  # the paper's table says 4,244 dev mentions; BLURB's file has 4,246
                  sizes=_mentions(4182, 4246, 4424), download_name="bc5cdr_disease"),
    DatasetRecord("ncbi-disease", "NCBI-disease", "ner", "ncbi_disease", _IOB_FILES, _conll,
                  _bio("Disease"), 512, "entity_f1", _NER_DEFAULTS, notes=(_NER_NOTE,),
                  sizes=_mentions(5134, 787, 960), download_name="ncbi_disease"),
    DatasetRecord("bc2gm", "BC2GM", "ner", "bc2gm", _BLURB_FILES, _conll_untyped,
                  ("O", "B", "I"), 512, "entity_f1", _NER_DEFAULTS,
                  notes=(_NER_NOTE, "BLURB's processed copy: untyped B/I/O tags (a B-GENE copy reads the same)"),
                  sizes=_mentions(15197, 3061, 6325, _PAPER), download_name="bc2gm"),
    DatasetRecord("jnlpba", "JNLPBA", "ner", "jnlpba", _BLURB_FILES, _conll,
                  ("O", "B", "I"), 512, "entity_f1", _NER_DEFAULTS,
                  notes=(_NER_NOTE, "BLURB's processed copy: untyped B/I/O tags, -DOCSTART- per "
                         "abstract, BLURB's train/dev split of the JNLPBA training set"),
                  sizes=_mentions(46750, 4551, 8662), download_name="jnlpba"),
    DatasetRecord("ebm-pico", "EBM PICO", "pico", "ebm_pico", _BLURB_FILES, _conll,
                  ("O", "I-PAR", "I-INT", "I-OUT"), 512, "pico_macro_f1",
                  FinetuneDefaults(5e-5, 32, 5),
                  notes=("macro word-level F1 over I-PAR/I-INT/I-OUT, O excluded (BLURB's evaluator)",),
                  # abstracts, as BLURB's PMID lists give them (the paper's word counts, 339,167 /
                  # 85,321 / 16,364, do not match the dev file's 87,308 tagged words)
                  sizes=_rows("documents", 3842, 960, 191, "BLURB's PMID lists (indexing/ebmnlp)"),
                  download_name="ebm_pico"),
    DatasetRecord("chemprot", "ChemProt", "relation", "chemprot/blurb", _BLURB_FILES, _relation,
                  CHEMPROT_LABELS, 256, "relation_micro_f1", FinetuneDefaults(5e-5, 32, 10),
                  negative_label="false",
                  notes=("BLURB's files; without them, the same rows built from the BioCreative VI release "
                         "(chemprot/raw): the conversion gives BLURB's three files byte for byte",
                         "micro F1 over CPR:3/4/5/6/9, the 'false' class left out"),
                  sizes=_rows("pairs", 18035, 11268, 15745),
                  fallback=Fallback("chemprot/raw", {s: raw_files(s) for s in SPLITS}, _chemprot_raw,
                                    "the BioCreative VI ChemProt release (chemprot/raw)"),
                  download_name="chemprot"),
    DatasetRecord("ddi", "DDI", "relation", "ddi", _BLURB_FILES, _relation,
                  ("DDI-advise", "DDI-effect", "DDI-int", "DDI-mechanism", "DDI-false"), 256,
                  "relation_micro_f1", FinetuneDefaults(5e-5, 32, 10), negative_label="DDI-false",
                  notes=("BLURB's DDI 2013 pairs, drugs masked as @DRUG$ (id<TAB>sentence<TAB>label)",
                         "micro F1 over the four DDI types, 'DDI-false' left out"),
                  sizes=_rows("pairs", 25296, 2496, 5716, _PAPER), download_name="ddi"),
    DatasetRecord("gad", "GAD", "relation", "gad", _BLURB_FILES, _relation,
                  ("0", "1"), 128, "relation_micro_f1", FinetuneDefaults(5e-5, 32, 10),
                  negative_label="0",
                  notes=("fold 1 of BioBERT's GAD", "micro F1 without the negative class '0', i.e. "
                         "the F1 of the positive class (as BioBERT and PubMedBERT report it)"),
                  sizes=_rows("pairs", 4261, 535, 534), download_name="gad"),
    DatasetRecord("biosses", "BIOSSES", "similarity", "biosses", _BLURB_FILES, _biosses,
                  (), 128, "pearson", FinetuneDefaults(2e-5, 16, 30),
                  notes=("regression on the 0-4 mean annotator score; Pearson correlation",),
                  text_fields=("text", "text_pair"),
                  sizes=_rows("pairs", 64, 16, 20), download_name="biosses"),
    DatasetRecord("hoc", "HoC", "multilabel", "hoc",
                  {s: (f"{s}.tsv", f"{s}_pmid.tsv") for s in SPLITS}, _hoc,
                  tuple(str(i) for i in range(readers.HOC_NUM_LABELS)), 512, "hoc_micro_f1",
                  FinetuneDefaults(5e-5, 16, 10),
                  notes=("abstract level: one example per PMID of BLURB's lists, its sentences joined and its "
                         "labels the union of theirs, as LinkBERT's preprocessing makes it (its evaluator's union "
                         "per PMID is then the identity); inputs cut at 512 pieces, as there",
                         "labels are the column indices 0-9 of BLURB's '0_x,...,9_x' field",
                         "metric: micro F1 pooled over document x hallmark cells, as the PubMedBERT paper "
                         "states (§2.3.5) and LinkBERT's utils_hoc.py computes it; metrics.json also gives "
                         "the mean of per-hallmark F1 and BLUE's per-document score, which are not BLURB's"),
                  sizes=_rows("documents", 1295, 186, 371), download_name="hoc"),
    DatasetRecord("pubmedqa", "PubMedQA", "classification", "pubmedqa",
                  {s: ("ori_pqal.json", "test_ground_truth.json") for s in SPLITS}, _pubmedqa,
                  ("yes", "no", "maybe"), 512, "accuracy", FinetuneDefaults(2e-5, 16, 20),
                  notes=("PQA-L only: test = the 500 of test_ground_truth.json; train/dev = fold 0 "
                         "(450/50) of the pubmedqa repo's split_dataset.py (seed 0), re-implemented; "
                         "its test half is checked to equal test_ground_truth.json",),
                  text_fields=("text", "text_pair"),
                  sizes=_rows("questions", 450, 50, 500), download_name="pubmedqa"),
    DatasetRecord("bioasq", "BioASQ", "classification", "bioasq", _BLURB_FILES, _bioasq,
                  ("yes", "no"), 512, "accuracy", FinetuneDefaults(2e-5, 16, 20),
                  notes=("BLURB's BioASQ 7b yes/no questions; context = the concatenated snippets",),
                  text_fields=("text", "text_pair"),
                  sizes=_rows("questions", 670, 75, 140), download_name="bioasq"),
]}


def get_record(name: str) -> DatasetRecord:
    """The record for ``name`` (case-insensitive; ``_`` and ``-`` are the same)."""
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown BLURB dataset '{name}'; choose from {', '.join(DATASETS)}")
    return DATASETS[key]


@dataclass(frozen=True)
class DatasetStatus:
    """Which splits of a dataset can be read from a data directory."""

    name: str
    available: tuple[str, ...]
    """Splits whose files are all present."""
    missing_files: tuple[Path, ...]
    """Every file that is absent, for the report."""

    @property
    def state(self) -> Literal["complete", "partial", "missing"]:
        if not self.missing_files:
            return "complete"
        return "partial" if self.available else "missing"


def dataset_status(name: str, data_dir: str | Path | None = None) -> DatasetStatus:
    """Check which of ``name``'s splits can be read under ``data_dir`` (nothing is read): a split is
    available when its own files, or its fallback's, are all there; missing files are the own ones."""
    record = get_record(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    available: list[str] = []
    missing: list[Path] = []
    for split in record.files:
        if record.locate(split, root) is not None:
            available.append(split)
            continue
        missing.extend(p for p in record.paths(split, root) if not p.is_file() and p not in missing)
    return DatasetStatus(record.name, tuple(available), tuple(missing))


def check_labels(record: DatasetRecord, examples: list[Example]) -> None:
    """Raise a DataError naming the first example whose label is not in ``record.labels``."""
    if not record.labels:
        return
    known = set(record.labels)
    for example in examples:
        if isinstance(example, TokenExample):
            found = [t for t in example.tags if t not in known]
        elif isinstance(example.label, tuple):
            found = [t for t in example.label if t not in known]
        else:
            found = [] if example.label in known else [str(example.label)]
        if found:
            raise DataError(f"{example.source}: unknown label '{found[0]}' for {record.name}; "
                            f"expected one of {', '.join(record.labels)}")


def count_split(unit: str, examples: Sequence[Example]) -> int:
    """The size of a split in a :class:`SplitSizes` unit: entity mentions (B tags), distinct documents
    (token examples are ``<document>-<sentence>``; text examples are documents already), or examples."""
    if unit == "mentions":
        return sum(t.startswith("B") for e in examples if isinstance(e, TokenExample) for t in e.tags)
    if unit == "documents" and examples and isinstance(examples[0], TokenExample):
        return len({e.id.rsplit("-", 1)[0] for e in examples})
    return len(examples)


def size_problem(record: DatasetRecord, split: str, examples: Sequence[Example]) -> str | None:
    """One line when ``split`` is not the size of BLURB's release (another release of the corpus, or a
    damaged file), else None."""
    if record.sizes is None or split not in record.sizes.counts:
        return None
    found, expected = count_split(record.sizes.unit, examples), record.sizes.counts[split]
    if found == expected:
        return None
    return (f"{record.name} {split}: {found:,} {record.sizes.unit}, but BLURB's {split} split has {expected:,} "
            f"({record.sizes.source}); scores on these files do not compare with published BLURB scores")


def how_to_get(record: DatasetRecord) -> str:
    """How a user gets a dataset's missing files, in words (the download command, or for a user's own
    dataset where to put them)."""
    if record.download_name is None:  # a user's own dataset
        return "add the file, or point the command at the folder that has it"
    fetch = f"get it with `{DOWNLOAD_HINT.format(name=record.download_name)}`"
    if record.fallback is not None:
        return f"{fetch} (or put {record.fallback.description} under {record.fallback.folder})"
    return fetch


def load_split(name: str | DatasetRecord, split: str,
               data_dir: str | Path | None = None) -> list[Example]:
    """Read one split of a BLURB dataset (or of a user record), check its labels, and say in one line
    (a warning) when its size is not BLURB's.

    A missing file raises a DataError that names it and how to get it.
    """
    record = name if isinstance(name, DatasetRecord) else get_record(name)
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    found = record.locate(split, root)
    if found is None:
        missing = next(p for p in record.paths(split, root) if not p.is_file())
        raise DataError(f"{missing}: missing {record.name} {split} file; {how_to_get(record)}")
    paths, reader = found
    examples = reader(record, split, paths)
    check_labels(record, examples)
    problem = size_problem(record, split, examples)
    if problem is not None:
        logger.warning("%s", problem)
    return examples


# --- a user's own dataset in a BLURB format ----------------------------------------------------

_USER_READERS: dict[str, tuple[Reader, str, int]] = {
    # task type → (reader, metric, max_seq_length)
    "ner": (_conll, "entity_f1", 512),
    "relation": (_relation, "relation_micro_f1", 256),
    "similarity": (_biosses, "pearson", 128),
    "classification": (_bioasq, "accuracy", 512),
}
_SPLIT_NAMES = {"train": ("train.tsv", "train.txt"), "dev": ("dev.tsv", "devel.tsv", "dev.txt"),
                "test": ("test.tsv", "test.txt")}


#: Label names that mean "no relation" (compared lower-cased); a label ending in "-false" does too.
NEGATIVE_NAMES = ("false", "0", "negative", "none")


def infer_negative_label(labels: set[str] | Sequence[str]) -> str | None:
    """The one label of a relation set that reads as "no relation", or None when none or several do."""
    found = [label for label in labels if label.lower() in NEGATIVE_NAMES or label.lower().endswith("-false")]
    return found[0] if len(found) == 1 else None


def user_record(task_type: str, folder: str | Path, negative_label: str | None = None,
                name: str | None = None) -> DatasetRecord:
    """A record for a user's own dataset in ``folder`` (``train``/``dev``/``test`` found by name).

    Formats: ``ner`` token files (``read_conll``), ``relation`` ``id<TAB>text<TAB>label`` files,
    ``similarity`` BIOSSES-style pairs, ``classification`` BioASQ-style
    ``id<TAB>question<TAB>context<TAB>label`` files. The label list is every
    label of the train split (for NER, every tag), so dev/test labels outside it are errors.
    For relation extraction micro F1 leaves the negative class out: when it is not named, the one
    label called ``false``, ``0``, ``negative`` or ``none`` or ending in ``-false`` (any case) is taken
    and said so (a note of the record, printed); no such label, or several, is an error.
    """
    if task_type not in _USER_READERS:
        raise DataError(f"task type '{task_type}' cannot be read from a user folder; choose from "
                        f"{', '.join(_USER_READERS)}")
    root = Path(folder)
    files: dict[str, tuple[str, ...]] = {}
    for split, candidates in _SPLIT_NAMES.items():
        found = next((c for c in candidates if (root / c).is_file()), None)
        if found is None:
            raise DataError(f"{root}: no {split} file (looked for {', '.join(candidates)})")
        files[split] = (found,)
    reader, metric, max_len = _USER_READERS[task_type]
    probe = DatasetRecord(name or root.name, name or root.name, task_type, ".", files,  # type: ignore[arg-type]
                          reader, (), max_len, metric, FinetuneDefaults(5e-5, 32, 10))
    train = reader(probe, "train", probe.paths("train", root))
    if not train:
        raise DataError(f"{root / files['train'][0]}: the train split has no examples; a {task_type} set needs "
                        "at least one")
    labels: set[str] = set()
    for example in train:
        if isinstance(example, TokenExample):
            labels.update(example.tags)
        elif not isinstance(example.label, float):
            labels.update(example.label if isinstance(example.label, tuple) else [example.label])
    notes: tuple[str, ...] = ()
    if task_type == "relation" and negative_label is None:
        negative_label = infer_negative_label(labels)
        if negative_label is not None:
            notes = (f"negative class '{negative_label}' inferred from the labels (left out of micro F1; "
                     "--negative-label names another)",)
            logger.warning("%s: %s", root, notes[0])
    if task_type == "relation" and negative_label not in labels:
        raise DataError(f"{root}: give the negative class of the relation set with --negative-label (one of "
                        f"{', '.join(sorted(labels))}); micro F1 leaves it out")
    return DatasetRecord(probe.name, probe.display_name, probe.task_type, str(root.resolve()),
                         files, reader, tuple(sorted(labels)), max_len, metric, probe.finetune,
                         negative_label=negative_label, notes=notes,
                         text_fields=(("text", "text_pair") if task_type in ("similarity", "classification")
                                      else ("text",)))


def record_for(task: str | None, task_type: str | None = None, data: Path | None = None,
               negative_label: str | None = None) -> DatasetRecord:
    """The BLURB record named ``task``, or a record for a user's folder ``data`` of ``task_type``
    (a multi-label set uses BLURB's HoC layout: a sentence file and a PMID list per split)."""
    if task is not None:
        return get_record(task)
    if data is None or task_type is None:
        raise DataError("give a BLURB dataset name, or a task type with a data folder")
    if task_type == "multilabel":
        root = Path(data).resolve()
        hoc = get_record("hoc")
        for names in hoc.files.values():
            for name in names:
                if not (root / name).is_file():
                    raise DataError(f"{root}: no {name}; a multi-label set uses BLURB's HoC layout: "
                                    "{train,dev,test}.tsv (labels<TAB>sentence<TAB>PMID_s<n>) and "
                                    "{train,dev,test}_pmid.tsv")
        return replace(hoc, name=root.name, display_name=root.name, folder=str(root), sizes=None,
                       download_name=None, notes=("a user's multi-label set in BLURB's HoC layout",))
    return user_record(task_type, data, negative_label=negative_label)
