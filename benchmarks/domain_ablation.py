"""The PubMedBERT finding at equal compute: in-domain text and vocabulary against general ones.

Five arms, all the shape of the same recipe (``--recipe``, mini-cpu by default) and the same
pretraining budget in **optimizer steps** (``--steps`` x the recipe's batch x 128 tokens: the same
number of sequences for every arm, so the same compute, whatever the text), then fine-tuned
identically on NCBI-disease, BC5-chem, ChemProt and GAD:

====  ===============================  =================  =========================================
arm   vocabulary (16,384 WordPiece)    corpus             what it stands for (Gu et al. 2021)
====  ===============================  =================  =========================================
a     in-domain (PubMed corpus)        PubMed             PubMedBERT: from scratch, in-domain vocab
b     general (general corpus)         general            BERT: Wikipedia and books
c     general                          PubMed             the vocabulary's own effect (Table 7)
d     general                          general, then      mixed-domain continual pretraining,
                                       PubMed (half each) BioBERT-style (Table 9)
e     in-domain                        none               random initialisation
====  ===============================  =================  =========================================

The general vocabulary is built by the same builder at the same size on ``general_corpus/prepared``
(WikiText-2 and Project Gutenberg), not BERT's own 30,522-token one, so that (a) and (c) differ only
in the text the vocabulary was learned from (BERT's was built by Google's WordPiece trainer, at
another size, on far more text). Every arm masks whole words at the recipe's rate (held-out MLM
is scored at 15%) and predicts next sentences. The PubMed corpus holds the unlabelled train and dev
abstracts of several BLURB sets (never a test split: every corpus is decontaminated against all
BLURB test files).

Fine-tuning (``finetune --budget quick``: one setting, at most 3 epochs): the learning rate of each
arm and task is chosen on dev among ``--grid`` with seed 42, then seeds 43 and 44 run at the chosen
rate; test scores are mean ± std over the three seeds, and each arm is compared with (a) by Welch's
t-test over seeds (``domainbert.blurb.compare``). Every stage is kept under ``--out`` and skipped
when done, so the benchmark resumes after a kill (pretraining from its last checkpoint, fine-tuning
per run). Hours of CPU: run it in the background, in parts if need be::

    .venv/bin/python benchmarks/domain_ablation.py --steps 1000 --out runs/domain_ablation
    .venv/bin/python benchmarks/domain_ablation.py --out runs/domain_ablation --table   # what is done
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from domainbert.blurb.compare import compare, render_comparison
from domainbert.blurb.finetune import FinetuneArgs, finetune
from domainbert.blurb.registry import get_record, load_split
from domainbert.data.examples import PrepareConfig, max_predictions_for
from domainbert.data.shards import prepare_pretraining_data
from domainbert.data.tokenization import BertTokenizer
from domainbert.data.vocab import build_vocab, split_stats
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining
from domainbert.quickstart import HELD_OUT_TEXT
from domainbert.train.args import RECIPE_EXTRA, PretrainArgs, load_recipe
from domainbert.train.export import export
from domainbert.train.pretrain import copy_tokenizer, evaluate, fit, new_model, open_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = ("ncbi-disease", "bc5-chem", "chemprot", "gad")
SEEDS = (42, 43, 44)
CORPORA = {
    "pubmed": sorted(p for p in (SHARED / "pubmed_corpus").glob("*.txt") if p.name != HELD_OUT_TEXT),
    "general": sorted((SHARED / "general_corpus" / "prepared").glob("*.txt")),
}
#: arm -> (vocabulary, corpora in order, each for an equal share of the steps; none: random init)
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "a-pubmed": ("pubmed", ("pubmed",)),
    "b-general": ("general", ("general",)),
    "c-pubmed-general-vocab": ("general", ("pubmed",)),
    "d-general-then-pubmed": ("general", ("general", "pubmed")),
    "e-random-init": ("pubmed", ()),
}
#: Gu et al. 2021, BLURB scores of the paper's ablations, as ../shared/reference/pubmedbert_paper.md
#: transcribes them: the first from its main table (S1), the others from one secondary source (S1,
#: citing v6 Tables 7 and 9). Check them against the paper before quoting them.
PUBLISHED = [
    ("(a) PubMed, in-domain vocabulary, whole-word masking (Table 7)", 81.16),
    ("(c) PubMed, BERT's vocabulary, whole-word masking (Table 7)", 79.96),
    ("(d) BERT continued on PubMed, BERT's vocabulary (Table 9, BioBERT)", 80.34),
    ("BERT itself, general domain (main table)", 76.11),
]


def vocab_dir(out: Path, name: str, size: int) -> Path:
    path = out / f"vocab-{name}"
    if not (path / "vocab_stats.json").is_file():
        build_vocab(CORPORA[name], path, size, progress=False, decontaminate=SHARED)
    return path


def examples_dir(out: Path, corpus: str, vocab: str, vocab_path: Path, rate: float) -> Path:
    """Training examples masked at the recipe's rate (static masks, as ``data prepare`` makes them)."""
    path = out / f"examples-{corpus}-vocab-{vocab}-m{rate:g}"
    if not (path / "manifest.json").is_file():
        config = PrepareConfig(max_seq_len=128, max_predictions=max_predictions_for(rate, 128), masked_lm_prob=rate,
                               dupe_factor=2, whole_word_mask=True)
        prepare_pretraining_data(CORPORA[corpus], vocab_path, path, config, decontaminate=SHARED, workers=2,
                                 progress=False)
    return path


def heldout_dir(out: Path, vocab: str, vocab_path: Path) -> Path:
    path = out / f"heldout-pubmed-vocab-{vocab}"
    if not (path / "manifest.json").is_file():
        config = PrepareConfig(max_seq_len=128, max_predictions=20, dupe_factor=1, whole_word_mask=True)
        prepare_pretraining_data([SHARED / "pubmed_corpus" / HELD_OUT_TEXT], vocab_path, path, config,
                                 decontaminate=SHARED, workers=1, progress=False)
    return path


def pretrain_arm(out: Path, arm: str, steps: int, recipe: dict[str, Any], vocab_size: int) -> Path:
    """Pretrain (or initialise) the arm's model; returns its Hugging Face directory."""
    vocab, corpora = ARMS[arm]
    vocab_path = vocab_dir(out, vocab, vocab_size)
    final = out / arm / "model"
    if (final / "config.json").is_file():
        return final
    size = int(json.loads((vocab_path / "vocab_stats.json").read_text())["vocab_size"])
    config = BertConfig.preset(recipe.get("model", "small"), vocab_size=size, **(recipe.get("model_overrides") or {}))
    values = {k: v for k, v in recipe.items() if k not in RECIPE_EXTRA}
    model = new_model(config, PretrainArgs(**values))
    if not corpora:  # random initialisation: the weights every other arm starts from
        model.save_pretrained(final, tokenizer=BertTokenizer.from_pretrained(vocab_path))
        return final
    share = steps // len(corpora)
    heldout = open_data(heldout_dir(out, vocab, vocab_path), 0, config)
    for phase, corpus in enumerate(corpora):
        data = examples_dir(out, corpus, vocab, vocab_path, float(values.get("masked_lm_prob") or 0.15))
        run = out / arm / f"pretrain-{phase}-{corpus}"
        args = PretrainArgs(**{**values, "max_steps": share, "save_every": max(1, share // 4),
                               "eval_every": max(1, share // 4)})
        copy_tokenizer(data, run)
        fit(model, open_data(data, args.seed, config), args, run, eval_source=heldout, progress=False)
        export(run, run / "export")
        model = BertForPreTraining.from_pretrained(run / "export")  # the next phase continues from here
    (final.parent / "model.tmp").mkdir(parents=True, exist_ok=True)
    model.save_pretrained(final.parent / "model.tmp", tokenizer=BertTokenizer.from_pretrained(vocab_path))
    (final.parent / "model.tmp").rename(final)
    return final


def heldout_scores(out: Path, arm: str, model_dir: Path, vocab_size: int) -> dict[str, float]:
    vocab, _ = ARMS[arm]
    model = BertForPreTraining.from_pretrained(model_dir)
    data = open_data(heldout_dir(out, vocab, vocab_dir(out, vocab, vocab_size)), 0, model.config)
    return evaluate(model, data, 16, 32, "auto", torch.device("cpu"))


def finetune_arm(out: Path, arm: str, model_dir: Path, task: str, grid: tuple[float, ...],
                 smoke: dict[str, int | None]) -> dict[str, Any]:
    """Choose the rate on dev (seed 42), run the other seeds at it; the dataset's entry for compare().
    An entry chosen over another grid is chosen again (only the rates not run yet are run)."""
    root = out / arm / "finetune" / task
    done = root / "entry.json"
    if done.is_file():
        entry = json.loads(done.read_text())
        if set(entry["grid_dev"]) == {f"{lr:g}" for lr in grid}:
            return entry
    common = dict(model=model_dir, task=task, data_dir=SHARED, save_model=False, progress=False, **smoke)
    tried = {}
    for lr in grid:
        tried[lr] = finetune(FinetuneArgs(out=root / f"lr{lr:g}", learning_rate=lr, seeds=(SEEDS[0],), **common))
    best = max(grid, key=lambda lr: tried[lr]["dev"]["mean"])
    rest = finetune(FinetuneArgs(out=root / f"lr{best:g}-more-seeds", learning_rate=best, seeds=SEEDS[1:], **common))
    per_seed = {**tried[best]["test"]["per_seed"], **rest["test"]["per_seed"]}
    dev = {**tried[best]["dev"]["per_seed"], **rest["dev"]["per_seed"]}
    values = list(per_seed.values())
    entry = {"status": "complete", "selected": {**tried[best]["selected"]},
             "grid_dev": {f"{lr:g}": tried[lr]["dev"]["mean"] for lr in grid},
             "dev": {"mean": statistics.fmean(dev.values()), "per_seed": dev},
             "test": {"mean": statistics.fmean(values), "std": statistics.stdev(values), "n": len(values),
                      "per_seed": per_seed},
             "wall_seconds": sum(t["wall_seconds"] for t in tried.values()) + rest["wall_seconds"]}
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def vocabulary_table(out: Path, vocab_size: int) -> list[str]:
    """Table 8's argument: how each vocabulary splits the BLURB sets' words and sentences."""
    rows = ["| vocabulary | BLURB set | words split into 2+ pieces | mean pieces per word | mean pieces per sentence |",
            "|---|---|---:|---:|---:|"]
    for name in ("pubmed", "general"):
        tokenizer = BertTokenizer.from_pretrained(vocab_dir(out, name, vocab_size))
        for task in TASKS:
            record = get_record(task)
            texts = [" ".join(e.tokens) if hasattr(e, "tokens") else e.text
                     for split in ("train", "dev") for e in load_split(record, split, SHARED)]
            _, split_share, per_word, _ = split_stats(tokenizer, texts)
            pieces = [len(enc.input_ids) for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
            rows.append(f"| {name} | {record.display_name} | {split_share:.1%} | {per_word:.2f} | "
                        f"{statistics.fmean(pieces):.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/domain_ablation"))
    parser.add_argument("--steps", type=int, default=1000, help="pretraining optimizer steps per arm")
    parser.add_argument("--recipe", default="mini-cpu", help="the pretraining recipe every arm follows")
    parser.add_argument("--vocab-size", type=int, default=16384)
    parser.add_argument("--grid", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3],
                        help="fine-tuning learning rates, chosen on dev per arm and task")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--limit", type=int, default=None, help="smoke runs: first N examples per split")
    parser.add_argument("--finetune-steps", type=int, default=None, help="smoke runs: cap on fine-tuning steps")
    parser.add_argument("--table", action="store_true", help="only print what is done")
    ns = parser.parse_args(argv)
    ns.out.mkdir(parents=True, exist_ok=True)
    settings = {"steps": ns.steps, "recipe": ns.recipe, "vocab_size": ns.vocab_size, "grid": ns.grid,
                "limit": ns.limit, "finetune_steps": ns.finetune_steps}
    smoke = {"limit": ns.limit, "max_steps": ns.finetune_steps}
    stored = ns.out / "settings.json"
    if stored.is_file() and json.loads(stored.read_text()) != settings:
        sys.exit(f"{ns.out} was run with {stored.read_text().strip()}: use another --out for other settings")
    stored.write_text(json.dumps(settings) + "\n")
    recipe = load_recipe(ns.recipe)
    results = []
    for arm in ns.arms:
        entries: dict[str, Any] = {}
        final = ns.out / arm / "model"
        if not ns.table:
            started = time.perf_counter()
            final = pretrain_arm(ns.out, arm, ns.steps, recipe, ns.vocab_size)
            print(f"{arm}: model ready ({time.perf_counter() - started:.0f} s)", flush=True)
            for task in ns.tasks:
                entries[task] = finetune_arm(ns.out, arm, final, task, tuple(ns.grid), smoke)
                print(f"{arm}: {task} test {100 * entries[task]['test']['mean']:.2f} "
                      f"± {100 * entries[task]['test']['std']:.2f}", flush=True)
        else:
            for task in ns.tasks:
                path = ns.out / arm / "finetune" / task / "entry.json"
                if path.is_file():
                    entries[task] = json.loads(path.read_text())
        scores = heldout_scores(ns.out, arm, final, ns.vocab_size) if (final / "config.json").is_file() else {}
        results.append({"model": str(final), "name": arm, "budget": "quick", "seeds": list(SEEDS),
                        "date": time.strftime("%Y-%m-%d", time.gmtime()), "datasets": entries, "heldout": scores})
    done = [r for r in results if r["datasets"]]
    if len(done) >= 2:
        print(render_comparison(compare(done, [r["name"] for r in done])))
    print("| arm | held-out PubMed MLM loss | accuracy | mean test score over the tasks run |\n|---|---:|---:|---:|")
    for r in results:
        h = r["heldout"]
        mean = statistics.fmean(e["test"]["mean"] for e in r["datasets"].values()) if r["datasets"] else None
        print(f"| {r['name']} | {h.get('eval_mlm_loss', float('nan')):.3f} | "
              f"{h.get('eval_mlm_accuracy', float('nan')):.3f} | {'' if mean is None else f'{100 * mean:.2f}'} |")
    print("\nPublished BLURB scores (Gu et al. 2021, all 13 datasets; from secondary copies, see PUBLISHED):\n"
          + "\n".join(f"- {n}: {v:.2f}" for n, v in PUBLISHED))
    print("\nThe PubMed corpus holds the unlabelled train and dev abstracts of several BLURB sets (NCBI-disease, "
          "BC5CDR, ChemProt, HoC, JNLPBA, PubMedQA), never a test split: every corpus is decontaminated against "
          "all BLURB test files.")
    print("\n" + "\n".join(vocabulary_table(ns.out, ns.vocab_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
