"""How often serving cuts text into the words a NER corpus was cut into: the learned cut against BERT's.

For every token-classification set in ``../shared/data``, the cut learned from its train split
(``WordCutter.learn``, what ``finetune`` records in the model's config) and BERT's pre-tokenizer cut
(what a tagger without the record uses) are applied to each test sentence written as text (its words
joined by single spaces), and to NCBI-disease's and BC5CDR's test sentences as the original abstracts
(PubTator) write them. A sentence counts when the cut gives back exactly the corpus' words: where it
does not, some word is tagged from a position fine-tuning never taught to carry a tag. Seconds on a
CPU::

    .venv/bin/python benchmarks/word_cutting.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from domainbert.blurb.registry import load_split
from domainbert.blurb.words import WordCutter, find
from domainbert.serve.formats import read_pubtator

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = ("ncbi-disease", "bc5-chem", "bc5-disease", "jnlpba", "ebm-pico")
PUBTATOR = {"ncbi-disease": "ncbi_disease/pubtator/NCBItestset_corpus.txt",
            "bc5-chem": "bc5cdr_pubtator/CDR_TestSet.PubTator.txt",
            "bc5-disease": "bc5cdr_pubtator/CDR_TestSet.PubTator.txt"}


def raw_sentences(data: Path, dataset: str, words: list[tuple[str, ...]]) -> list[tuple[str, list[str]]]:
    """The test sentences found in the original abstracts: (text as written, the corpus' words)."""
    path = data / PUBTATOR[dataset]
    lines = list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
    texts = [doc.text for doc in read_pubtator(lines, path.name)]
    found = []
    for sentence in words:
        if (hit := find(sentence, texts)) is not None:
            text, spans = texts[hit[0]], hit[1]
            found.append((text[spans[0][0]:spans[-1][1]], list(sentence)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    ns = parser.parse_args(argv)
    print("| set | kept inside words (learned) | test sentences as text: learned cut | BERT's cut "
          "| as in the abstracts: found | learned cut | BERT's cut |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dataset in SETS:
        train = "dev" if dataset == "ebm-pico" else "train"  # EBM-PICO has no train split here
        learned = WordCutter.learn(e.tokens for e in load_split(dataset, train, ns.data))
        test = [e.tokens for e in load_split(dataset, "test", ns.data)]

        def share(cutter: WordCutter, pairs: list[tuple[str, list[str]]]) -> str:
            if not pairs:
                return "—"
            return f"{100 * sum(cutter.words(text) == words for text, words in pairs) / len(pairs):.1f}%"

        joined = [(" ".join(words), list(words)) for words in test]
        row = (f"| {dataset} | `{learned.keep_inside or '(none)'}` | {share(learned, joined)} | "
               f"{share(WordCutter(), joined)}")
        if dataset in PUBTATOR:
            raw = raw_sentences(ns.data, dataset, test)
            row += f" | {len(raw)} of {len(test)} | {share(learned, raw)} | {share(WordCutter(), raw)} |"
        else:
            row += " | — | — | — |"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
