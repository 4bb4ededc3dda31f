"""BLURB's test files as raw text and PMIDs: what test-set decontamination keeps out of pretraining.

One reader per test-file format, each ``path -> (PMIDs, sentences)``, the sentences as raw,
tokenised or entity-masked text (``@GENE$``), and :data:`BLURB_TEST_TEXT`, which of each BLURB
dataset's files (relative to a data directory laid out as ``data download`` writes it) hold test
text and which reader reads each: the test split itself, and the releases it was cut from when they
carry more of the same text. :func:`domainbert.data.filters.build_decontamination_set` matches a
corpus against what they return. These readers differ from the fine-tuning readers of
:mod:`domainbert.blurb.readers` on purpose: they want every piece of test text (whole abstracts
of the PubTator and ChemProt releases, the PubMedQA contexts), not labelled examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from domainbert.data.corpus import PUBTATOR_LINE, text_lines
from domainbert.errors import DataError

#: Reads one test file: path -> (PMIDs, sentences as raw/tokenised/masked text).
TestTextReader = Callable[[Path], tuple[list[str], list[str]]]


def rough_sentences(text: str) -> list[str]:
    """Split raw test text at ``.!?`` + whitespace. Over-splitting is harmless for matching (each
    piece must still be >= 8 words), and it is ~1000x faster than pysbd on the ~4k test abstracts."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def iob_text(path: Path) -> tuple[list[str], list[str]]:
    """CoNLL ``token<TAB>tag``, blank line between sentences; ``-DOCSTART- (PMID)`` gives PMIDs
    (JNLPBA's ``-DOCSTART- <MEDLINE UID>`` is not a PMID and is ignored)."""
    pmids: list[str] = []
    sentences: list[str] = []
    tokens: list[str] = []
    for _, line in text_lines(path):
        if line.startswith("-DOCSTART-"):
            m = re.match(r"-DOCSTART-\s*\((\d+)\)", line)
            if m:
                pmids.append(m.group(1))
            continue
        if not line.strip():
            if tokens:
                sentences.append(" ".join(tokens))
                tokens = []
            continue
        tokens.append(line.split("\t", 1)[0])
    if tokens:
        sentences.append(" ".join(tokens))
    return pmids, sentences


def pubtator_text(path: Path) -> tuple[list[str], list[str]]:
    pmids: list[str] = []
    sentences: list[str] = []
    for _, line in text_lines(path):
        m = PUBTATOR_LINE.match(line)
        if m:
            if m.group(2) == "t":
                pmids.append(m.group(1))
            sentences.extend(rough_sentences(m.group(3)))
    return pmids, sentences


def _tsv_column(path: Path, columns: tuple[int, ...], header: bool) -> list[str]:
    out: list[str] = []
    for lineno, line in text_lines(path):
        if (header and lineno == 1) or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) <= max(columns):
            raise DataError(f"{path}: line {lineno} has {len(fields)} tab-separated fields, "
                            f"expected at least {max(columns) + 1}")
        out.extend(fields[c] for c in columns)
    return out


def masked_tsv_text(path: Path) -> tuple[list[str], list[str]]:
    """GAD / ChemProt / DDI BLURB TSV: sentence (with ``@GENE$``-style masks) in column 2."""
    lines = text_lines(path)
    first = next(lines, (1, ""))[1]
    lines.close()
    header = first.split("\t")[0] in ("index", "id", "")
    return [], _tsv_column(path, (1,), header)


def biosses_text(path: Path) -> tuple[list[str], list[str]]:
    return [], _tsv_column(path, (1, 2), header=True)


def hoc_text(path: Path) -> tuple[list[str], list[str]]:
    """HoC: ``labels<TAB>sentence<TAB>PMID_s<n>``."""
    rows = _tsv_column(path, (1, 2), header=True)
    return sorted({idx.split("_", 1)[0] for idx in rows[1::2]}), rows[0::2]


def pmid_list(path: Path) -> tuple[list[str], list[str]]:
    """BLURB indexing file: comma-separated ``PMID`` or ``PMID.txt`` names."""
    pmids = []
    for lineno, line in text_lines(path):
        for item in line.split(","):
            item = item.strip().removesuffix(".txt")
            if item:
                if not item.isdigit():
                    raise DataError(f"{path}: line {lineno}: {item!r} is not a PMID")
                pmids.append(item)
    return pmids, []


def chemprot_abstracts_text(path: Path) -> tuple[list[str], list[str]]:
    """ChemProt raw ``PMID<TAB>title<TAB>abstract``."""
    rows = _tsv_column(path, (0, 1, 2), header=False)
    pmids = rows[0::3]
    sentences = [s for text in rows[1::3] + rows[2::3] for s in rough_sentences(text)]
    return pmids, sentences


def bioasq_text(path: Path) -> tuple[list[str], list[str]]:
    """BioASQ BLURB TSV: ``id<TAB>question<TAB>context<TAB>label`` (ids are not PMIDs)."""
    rows = _tsv_column(path, (1, 2), header=False)
    return [], [s for text in rows for s in rough_sentences(text)]


def pubmedqa_text(path: Path) -> tuple[list[str], list[str]]:
    """PubMedQA ``test_ground_truth.json`` (PMIDs); question, contexts and long answer of those
    PMIDs from ``ori_pqal.json`` beside it."""
    try:
        truth = json.loads(path.read_bytes().decode("utf-8"))
        pqal_path = path.with_name("ori_pqal.json")
        pqal = json.loads(pqal_path.read_bytes().decode("utf-8")) if pqal_path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} (or ori_pqal.json beside it): not valid UTF-8 JSON: {e}") from None
    pmids = list(truth)
    sentences: list[str] = []
    for pmid in pmids:
        entry = pqal.get(pmid)
        if entry:
            texts = [entry.get("QUESTION", ""), *entry.get("CONTEXTS", []), entry.get("LONG_ANSWER", "")]
            sentences.extend(s for t in texts for s in rough_sentences(t))
    return pmids, sentences


#: Per BLURB dataset (the registry's names), the files holding its test text and their readers.
BLURB_TEST_TEXT: dict[str, tuple[tuple[str, TestTextReader], ...]] = {
    "bc5-chem": (("bc5cdr_chem/test.tsv", iob_text), ("bc5cdr_pubtator/CDR_TestSet.PubTator.txt", pubtator_text)),
    "bc5-disease": (("bc5cdr_disease/test.tsv", iob_text),
                    ("bc5cdr_pubtator/CDR_TestSet.PubTator.txt", pubtator_text)),
    "ncbi-disease": (("ncbi_disease/test.tsv", iob_text),
                     ("ncbi_disease/pubtator/NCBItestset_corpus.txt", pubtator_text)),
    "bc2gm": (("bc2gm/test.tsv", iob_text),),
    "jnlpba": (("jnlpba/test.tsv", iob_text),),
    "ebm-pico": (("ebm_pico/test.tsv", iob_text), ("ebm_pico/test_pmid.tsv", pmid_list)),
    "chemprot": (("chemprot/raw/chemprot_test_gs/chemprot_test_abstracts_gs.tsv", chemprot_abstracts_text),
                 ("chemprot/blurb/test.tsv", masked_tsv_text)),
    "ddi": (("ddi/test.tsv", masked_tsv_text),),
    "gad": (("gad/test.tsv", masked_tsv_text),),
    "biosses": (("biosses/test.tsv", biosses_text),),
    "hoc": (("hoc/test.tsv", hoc_text), ("hoc/test_pmid.tsv", pmid_list)),
    "pubmedqa": (("pubmedqa/test_ground_truth.json", pubmedqa_text),),
    "bioasq": (("bioasq/test.tsv", bioasq_text),),
}


def test_text_files() -> list[tuple[str, TestTextReader]]:
    """Every BLURB file holding test text (relative to a data directory) with its reader, each file once
    (the BC5CDR PubTator test set belongs to both BC5 sets)."""
    seen: dict[str, TestTextReader] = {}
    for files in BLURB_TEST_TEXT.values():
        for path, reader in files:
            seen.setdefault(path, reader)
    return list(seen.items())
