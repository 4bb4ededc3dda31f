"""Sentence-splitter accuracy on biomedical abstracts, against gold boundaries from ../shared/data.

Gold: the NCBI-disease and BC5CDR IOB files are sentence-split, tokenised copies of the abstracts
in the PubTator files beside them. Each IOB sentence is aligned to its abstract in normalised space
(lowercase letters and digits only, :func:`domainbert.data.corpus.normalize_text`, where tokenisation
disappears), so a gold boundary is the normalised offset where a sentence starts. A predicted
boundary is the same offset for each predicted sentence. Only boundaries *inside* an abstract are
scored (title/abstract and document ends are given to every splitter); precision, recall and F1 of
boundaries are reported per corpus, over train+dev+test, with the time per abstract.

Run:  python benchmarks/sentence_split.py [--data ../shared/data] [--errors 20]

Splitters compared: domainbert's (pysbd + merge rules), pysbd alone, a ". + capital" regex, and
blingfire / segtok when installed (optional, not dependencies of domainbert).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from domainbert.data.corpus import SentenceSplitter, normalize_text

REPO = Path(__file__).resolve().parents[1]

# (corpus, PubTator file, IOB file) per split; the BC5CDR disease and chem IOB files hold the same
# sentences, so one of them is enough.
CORPORA: dict[str, list[tuple[str, str]]] = {
    "NCBI-disease": [
        ("ncbi_disease/pubtator/NCBItrainset_corpus.txt", "ncbi_disease/train.tsv"),
        ("ncbi_disease/pubtator/NCBIdevelopset_corpus.txt", "ncbi_disease/devel.tsv"),
        ("ncbi_disease/pubtator/NCBItestset_corpus.txt", "ncbi_disease/test.tsv"),
    ],
    "BC5CDR": [
        ("bc5cdr_pubtator/CDR_TrainingSet.PubTator.txt", "bc5cdr_disease/train.tsv"),
        ("bc5cdr_pubtator/CDR_DevelopmentSet.PubTator.txt", "bc5cdr_disease/devel.tsv"),
        ("bc5cdr_pubtator/CDR_TestSet.PubTator.txt", "bc5cdr_disease/test.tsv"),
    ],
}


@dataclass
class GoldAbstract:
    pmid: str
    abstract: str
    boundaries: set[int]
    """Normalised offsets (in the abstract) where a gold sentence starts, excluding 0."""


def _pubtator(path: Path) -> dict[str, tuple[str, str]]:
    docs: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\d+)\|([ta])\|(.*)$", line)
        if m:
            docs.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    return {p: (d.get("t", ""), d.get("a", "")) for p, d in docs.items()}


def _iob_sentences(path: Path) -> list[str]:
    """Normalised text of each IOB sentence, in file order."""
    out, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                out.append(normalize_text("".join(tokens)))
                tokens = []
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split("\t", 1)[0])
    if tokens:
        out.append(normalize_text("".join(tokens)))
    return out


def gold_abstracts(data: Path, pairs: list[tuple[str, str]]) -> tuple[list[GoldAbstract], int]:
    """Align IOB sentences to PubTator abstracts; returns (aligned abstracts, unaligned count)."""
    gold: list[GoldAbstract] = []
    unaligned = 0
    for pub, iob in pairs:
        docs = _pubtator(data / pub)
        # A document is found by the normalised start of its title (the IOB order is not the
        # PubTator order in BC5CDR); the following IOB sentences must then tile it exactly.
        by_start: dict[str, list[str]] = {}
        for pmid, (t, a) in docs.items():
            by_start.setdefault(normalize_text(t + a)[:30], []).append(pmid)
        sents = _iob_sentences(data / iob)
        i = 0
        while i < len(sents):
            cands = by_start.get(sents[i][:30], []) if len(sents[i]) >= 30 else [
                p for k, ps in by_start.items() if k.startswith(sents[i]) for p in ps]
            done = False
            for pmid in cands:
                title, abstract = docs[pmid]
                full, tl = normalize_text(title + abstract), len(normalize_text(title))
                pos, j, starts = 0, i, []
                while j < len(sents) and pos < len(full) and sents[j] and full.startswith(sents[j], pos):
                    starts.append(pos)
                    pos += len(sents[j])
                    j += 1
                if pos == len(full):
                    gold.append(GoldAbstract(pmid, abstract, {s - tl for s in starts if s > tl}))
                    i, done = j, True
                    break
            if not done:
                unaligned += 1
                i += 1
    return gold, unaligned


def predicted_boundaries(sentences: list[str], length: int) -> set[int]:
    out, pos = set(), 0
    for s in sentences:
        if 0 < pos < length:
            out.add(pos)
        pos += len(normalize_text(s))
    return out


def regex_split(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)


def splitters() -> dict[str, Callable[[str], list[str]]]:
    out: dict[str, Callable[[str], list[str]]] = {
        "domainbert (pysbd + merges)": SentenceSplitter(fixes=True),
        "pysbd 0.3.4 alone": SentenceSplitter(fixes=False),
        "regex '[.!?] + Capital'": regex_split,
    }
    try:
        import blingfire

        out["blingfire"] = lambda t: blingfire.text_to_sentences(t).split("\n")
    except ImportError:
        pass
    try:
        from segtok.segmenter import split_single

        out["segtok"] = lambda t: list(split_single(t))
    except ImportError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--errors", type=int, default=0, help="print this many errors per corpus (first splitter)")
    args = parser.parse_args()
    rows = []
    for corpus, pairs in CORPORA.items():
        gold, unaligned = gold_abstracts(args.data, pairs)
        n_bound = sum(len(g.boundaries) for g in gold)
        print(f"{corpus}: {len(gold)} abstracts aligned ({unaligned} IOB sentences unaligned), "
              f"{n_bound} gold boundaries inside abstracts")
        for k, (name, split) in enumerate(splitters().items()):
            tp = fp = fn = 0
            shown = 0
            start = time.perf_counter()
            for g in gold:
                length = len(normalize_text(g.abstract))
                pred = predicted_boundaries(split(g.abstract), length)
                tp += len(pred & g.boundaries)
                fp += len(pred - g.boundaries)
                fn += len(g.boundaries - pred)
                if k == 0 and shown < args.errors and pred != g.boundaries:
                    shown += 1
                    print(f"  {g.pmid}: false splits at {sorted(pred - g.boundaries)}, "
                          f"missed {sorted(g.boundaries - pred)}")
            ms = 1000 * (time.perf_counter() - start) / max(1, len(gold))
            p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
            f1 = 2 * p * r / max(1e-12, p + r)
            rows.append((corpus, name, p, r, f1, fp, fn, ms))
    print()
    print("| corpus | splitter | precision | recall | F1 | false splits | missed | ms/abstract |")
    print("|---|---|---|---|---|---|---|---|")
    for corpus, name, p, r, f1, fp, fn, ms in rows:
        print(f"| {corpus} | {name} | {p:.4f} | {r:.4f} | {f1:.4f} | {fp} | {fn} | {ms:.2f} |")


if __name__ == "__main__":
    main()
