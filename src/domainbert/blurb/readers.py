"""Readers for the BLURB file formats, each returning plain :mod:`~domainbert.blurb.examples`.

Formats (as described in ``shared/data/SOURCES.md``; a user's own set in one of them reads the same):

- ``read_conll``: ``token<TAB>tag`` per line, a blank line between sentences, optional
  ``-DOCSTART- <id>`` lines starting a document (IOB files of BC5CDR / NCBI-disease / BC2GM,
  BLURB's CoNLL for JNLPBA and EBM-PICO).
- ``read_relation_tsv``: ``id<TAB>sentence with @TYPE$ masks<TAB>label``, with or without an
  ``index<TAB>sentence<TAB>label`` header (GAD has one, BLURB's ChemProt and DDI do not).
- ``read_biosses``: ``pair_id<TAB>sent1<TAB>sent2<TAB>score`` with a header.
- ``read_hoc``: BLURB's sentence-level ``labels<TAB>sentence<TAB>PMID_s<n>`` file plus the PMID
  list of the split; returns one example per *document*, labelled with the union of its
  sentences' hallmarks (BLURB scores HoC per document).
- ``read_pubmedqa``: ``ori_pqal.json`` + ``test_ground_truth.json``; the 450/50 train/dev split is
  fold 0 of the pubmedqa repo's ``preprocess/split_dataset.py``, re-implemented and checked here.
- ``read_bioasq``: ``question_id<TAB>question<TAB>context<TAB>yes|no``, no header.

ChemProt's raw release is converted by :mod:`domainbert.blurb.chemprot`.
Every malformed line raises :class:`~domainbert.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

from domainbert.blurb.examples import TextExample, TokenExample, malformed, numbered_lines
from domainbert.errors import DataError

HOC_NUM_LABELS = 10


def read_conll(path: Path) -> list[TokenExample]:
    """Read a ``token<TAB>tag`` file; sentences are blank-line separated, ``-DOCSTART-`` optional.

    Example ids are ``<document id>-<sentence number in it>`` (``<file stem>-<n>`` without
    ``-DOCSTART-``); the k-th repeat of a document id becomes ``<id>.<k>``.
    """
    examples: list[TokenExample] = []
    seen: dict[str, int] = {}
    doc = path.stem
    sentence_in_doc = 0
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        nonlocal sentence_in_doc, tokens, tags
        if tokens:
            examples.append(TokenExample(f"{doc}-{sentence_in_doc}", tuple(tokens), tuple(tags),
                                         f"{path}:{start}"))
            sentence_in_doc += 1
        tokens, tags = [], []

    for number, line in numbered_lines(path):
        if line.startswith("-DOCSTART-"):
            flush()
            # "-DOCSTART- 95369245" (JNLPBA) or "-DOCSTART- (10037531)" (EBM-PICO)
            doc = line[len("-DOCSTART-"):].split("\t")[0].strip().strip("()") or path.stem
            # a document id can repeat (JNLPBA repeats some MEDLINE UIDs): keep ids unique
            seen[doc] = seen.get(doc, 0) + 1
            if seen[doc] > 1:
                doc = f"{doc}.{seen[doc]}"
            sentence_in_doc = 0
            continue
        if not line.strip():
            flush()
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1].strip():
            raise malformed(path, number, "'token<TAB>tag'", line)
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[1].strip())
    flush()
    return examples


def _is_header(fields: Sequence[str], names: Sequence[str]) -> bool:
    return [f.strip().lower() for f in fields] == list(names)


def read_relation_tsv(path: Path) -> list[TextExample]:
    """Read BLURB's relation format ``id<TAB>sentence<TAB>label`` (an ``index`` header is skipped)."""
    examples: list[TextExample] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and (_is_header(fields, ["index", "sentence", "label"])
                            or _is_header(fields, ["id", "sentence", "label"])):
            continue
        if len(fields) != 3 or not fields[1] or not fields[2]:
            raise malformed(path, number, "'id<TAB>sentence<TAB>label'", line)
        examples.append(TextExample(fields[0], fields[1], None, fields[2].strip(), f"{path}:{number}"))
    return examples


def read_biosses(path: Path) -> list[TextExample]:
    """Read BIOSSES ``pair_id<TAB>sent1<TAB>sent2<TAB>score`` (header skipped); label is the float."""
    examples: list[TextExample] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and _is_header(fields, ["pair_id", "sent1", "sent2", "score"]):
            continue
        if len(fields) != 4:
            raise malformed(path, number, "'pair_id<TAB>sent1<TAB>sent2<TAB>score'", line)
        try:
            score = float(fields[3])
        except ValueError:
            raise malformed(path, number, "a numeric score in the 4th column", line) from None
        examples.append(TextExample(fields[0], fields[1], fields[2], score, f"{path}:{number}"))
    return examples


def _read_id_list(path: Path) -> list[str]:
    """A BLURB split list: comma-separated ids on one (or more) lines; ``PMID.txt`` → ``PMID``."""
    ids: list[str] = []
    for _, line in numbered_lines(path):
        ids.extend(i.strip().removesuffix(".txt") for i in line.split(",") if i.strip())
    return ids


def read_hoc_sentences(path: Path) -> list[TextExample]:
    """Read BLURB's sentence-level HoC file: id ``PMID_s<n>``, label = sorted hallmark indices.

    Hallmark indices are ``"0"`` … ``"9"``, the column order of the file's ``0_x,…,9_x`` field.
    """
    examples: list[TextExample] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and _is_header(fields, ["labels", "sentence", "index"]):
            continue
        if len(fields) != 3:
            raise malformed(path, number, "'0_x,...,9_x<TAB>sentence<TAB>PMID_s<n>'", line)
        _, _, position = fields[2].partition("_s")
        flags = fields[0].split(",")
        if (len(flags) != HOC_NUM_LABELS or not position.isdigit()
                or any(f != f"{i}_0" and f != f"{i}_1" for i, f in enumerate(flags))):
            raise malformed(path, number, "labels '0_x,...,9_x' with x in {0,1} and an index "
                            "'PMID_s<n>'", line)
        label = tuple(str(i) for i, f in enumerate(flags) if f.endswith("_1"))
        examples.append(TextExample(fields[2], fields[1], None, label, f"{path}:{number}"))
    return examples


def read_hoc(sentences_path: Path, pmids_path: Path) -> list[TextExample]:
    """Read HoC as BLURB scores it: one example per PMID of the split list, in that order.

    ``text`` is the document's sentences joined by a space in ``_s<n>`` order; ``label`` is the
    sorted union of the hallmark indices that any of its sentences carries (BLURB's document-level
    labels). A PMID of the list without sentences is an error (the files do not belong together).
    """
    sentences: dict[str, list[tuple[int, str]]] = {}
    labels: dict[str, set[str]] = {}
    source: dict[str, str] = {}
    for sentence in read_hoc_sentences(sentences_path):
        pmid, _, position = sentence.id.partition("_s")
        sentences.setdefault(pmid, []).append((int(position), sentence.text))
        labels.setdefault(pmid, set()).update(sentence.label)  # type: ignore[arg-type]
        source.setdefault(pmid, sentence.source)
    examples: list[TextExample] = []
    for pmid in _read_id_list(pmids_path):
        if pmid not in sentences:
            raise DataError(f"{pmids_path}: PMID {pmid} of the split list has no sentence in "
                            f"{sentences_path}; use the sentence file and PMID list of the same split")
        text = " ".join(s for _, s in sorted(sentences[pmid]))
        examples.append(TextExample(pmid, text, None, tuple(sorted(labels[pmid], key=int)),
                                    source[pmid]))
    return examples


def _pubmedqa_stratified_split(dataset: dict[str, dict], folds: int,
                               rng: random.Random) -> list[dict[str, dict]]:
    """The pubmedqa repo's ``split()``: shuffle each decision's PMIDs, cut them into ``folds``
    equal chunks (ceil size, the last takes the rest), and, when the last fold ends up a different
    size from the first, move one random PMID from each other fold into the last.

    Reproduced from pubmedqa/pubmedqa ``preprocess/split_dataset.py`` (one global
    ``random.seed(0)`` shared by both calls); the order of operations matters for the random stream.
    """
    by_label: dict[str, list[str]] = {"yes": [], "no": [], "maybe": []}
    for pmid, entry in dataset.items():
        by_label[entry["final_decision"]].append(pmid)
    chunks: dict[str, list[list[str]]] = {}
    for label, pmids in by_label.items():
        rng.shuffle(pmids)
        size = math.ceil(len(pmids) / folds)
        chunks[label] = [pmids[i * size:(i + 1) * size] if i < folds - 1 else pmids[i * size:]
                         for i in range(folds)]
    out = [{p: dataset[p] for label in by_label for p in chunks[label][i]} for i in range(folds)]
    if len(out[-1]) != len(out[0]):
        for i in range(folds - 1):
            picked = rng.choice(list(out[i]))
            out[-1][picked] = out[i].pop(picked)
    return out


def pubmedqa_splits(ori_pqal: dict[str, dict], fold: int = 0) -> dict[str, list[str]]:
    """PMIDs of BLURB's PubMedQA train / dev / test, in the order the split script produces them.

    The script first halves the 1,000 PQA-L questions into 500 "CV" and 500 test (stratified by
    decision), then cuts the CV half into 10 stratified folds; BLURB's dev set is fold 0 (50) and its
    train set the other nine folds (450), in fold order.
    """
    rng = random.Random(0)
    cv_set, test_set = _pubmedqa_stratified_split(ori_pqal, 2, rng)
    folds = _pubmedqa_stratified_split(cv_set, 10, rng)
    train = [p for i, f in enumerate(folds) if i != fold for p in f]
    return {"train": train, "dev": list(folds[fold]), "test": list(test_set)}


def read_pubmedqa(split: str, ori_pqal_path: Path, ground_truth_path: Path) -> list[TextExample]:
    """Read one PubMedQA (PQA-L) split; text = question, text_pair = the contexts joined by a space.

    The test split is the 500 PMIDs of ``test_ground_truth.json`` (labels from that file). Train and
    dev are re-derived with the pubmedqa split script's method (see :func:`pubmedqa_splits`); the
    derivation is checked by requiring that its test half equals ``test_ground_truth.json``, so a
    different ``ori_pqal.json`` cannot silently give a different split.
    """
    def load(path: Path) -> dict:
        try:
            with path.open(encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: malformed JSON: {error.msg}") from None

    ori, truth = load(ori_pqal_path), load(ground_truth_path)
    for pmid, entry in ori.items():
        missing = {"QUESTION", "CONTEXTS", "final_decision"} - set(entry)
        if missing:
            raise DataError(f"{ori_pqal_path}: entry {pmid} lacks {sorted(missing)}")
    splits = pubmedqa_splits(ori)
    if set(splits["test"]) != set(truth):
        raise DataError(f"{ground_truth_path}: its PMIDs are not the test half that the pubmedqa "
                        f"split script gives for {ori_pqal_path}; use the two files of the same "
                        "pubmedqa release (data/ori_pqal.json and data/test_ground_truth.json)")
    examples: list[TextExample] = []
    for pmid in splits[split]:
        entry = ori[pmid]
        label = truth[pmid] if split == "test" else entry["final_decision"]
        if split == "test" and label != entry["final_decision"]:
            raise DataError(f"{ground_truth_path}: PMID {pmid} is '{label}' but "
                            f"{ori_pqal_path} says '{entry['final_decision']}'")
        examples.append(TextExample(pmid, entry["QUESTION"], " ".join(entry["CONTEXTS"]), label,
                                    f"{ori_pqal_path}#{pmid}"))
    return examples


def read_bioasq(path: Path) -> list[TextExample]:
    """Read BLURB's BioASQ yes/no file ``question_id<TAB>question<TAB>context<TAB>label``."""
    examples: list[TextExample] = []
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise malformed(path, number, "'question_id<TAB>question<TAB>context<TAB>yes|no'", line)
        examples.append(TextExample(fields[0], fields[1], fields[2], fields[3].strip(),
                                    f"{path}:{number}"))
    return examples
