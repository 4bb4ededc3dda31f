"""What the pretraining objectives buy on this machine, at equal CPU-minutes.

Four arms of one recipe (``--recipe``, mini-cpu by default), each pretrained for ``--minutes`` (30) of
this machine's time from the same initial weights, on the sample PubMed corpus with the in-domain
vocabulary (both as ``domain_ablation.py`` builds them):

==============  ===============  =======  ===================================================
arm             objective        masking  examples
==============  ===============  =======  ===================================================
mlm+nsp-15      MLM + NSP        15%      BERT's segment pairs (the default, the quickstart's)
mlm-15          MLM alone        15%      whole sentences packed across documents (RoBERTa)
mlm-30          MLM alone        30%      the same
mlm+nsp-30      MLM + NSP        30%      BERT's segment pairs
==============  ===============  =======  ===================================================

Both kinds of examples are masked when read (``--dynamic-masking``: new masks every epoch, at the
arm's rate), whole words. Every arm is scored on the same held-out abstracts masked at 15% (MLM loss
and accuracy; an MLM-only arm reads each pair as one segment), and fine-tuned on NCBI-disease and
BC5-chem as ``domain_ablation.py`` fine-tunes (``finetune --budget quick``, the rate chosen on dev
with seed 42 among ``--grid``, then seeds 43 and 44 at it), each compared with the default by
Welch's t-test over seeds. Beside it, how many times each arm read the corpus: the tokens its
examples held over the corpus' tokens.

Every stage is kept under ``--out`` and skipped when done (pretraining resumes from its checkpoints;
a resumed arm gets ``--minutes`` again, so its total time is in the table); each finished arm's
figures are written to ``--results`` (JSON, no weights). Hours of CPU: run it in the background, the
timed pretraining of every arm first, on an otherwise idle machine, then the fine-tuning (whose scores
do not depend on the load)::

    .venv/bin/python benchmarks/objectives_ablation.py --out runs/objectives_ablation --pretrain-only
    .venv/bin/python benchmarks/objectives_ablation.py --out runs/objectives_ablation
    .venv/bin/python benchmarks/objectives_ablation.py --out runs/objectives_ablation --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import ttest_ind

sys.path.insert(0, str(Path(__file__).resolve().parent))
from domain_ablation import CORPORA, SHARED, finetune_arm, heldout_dir, vocab_dir  # noqa: E402

from domainbert.blurb.compare import compare, render_comparison  # noqa: E402
from domainbert.data.examples import PrepareConfig  # noqa: E402
from domainbert.data.shards import prepare_pretraining_data  # noqa: E402
from domainbert.model.modeling import BertForPreTraining  # noqa: E402
from domainbert.train.pretrain import evaluate, open_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("ncbi-disease", "bc5-chem")
SEEDS = (42, 43, 44)
ARMS: dict[str, tuple[str, float]] = {
    "mlm+nsp-15": ("mlm+nsp", 0.15), "mlm-15": ("mlm", 0.15), "mlm-30": ("mlm", 0.30), "mlm+nsp-30": ("mlm+nsp", 0.30),
}
DEFAULT = "mlm+nsp-15"


def examples_dir(out: Path, objective: str, vocab_path: Path, files: list[Path]) -> Path:
    """The corpus as ``objective``'s examples, unmasked (each arm masks them at its rate when reading)."""
    path = out / f"examples-{objective}"
    config = PrepareConfig(max_seq_len=128, dupe_factor=1, whole_word_mask=True, dynamic_masking=True,
                           objective=objective)
    prepare_pretraining_data(files, vocab_path, path, config, decontaminate=SHARED, workers=2, progress=False)
    return path


def timed_recipe(out: Path, recipe: str) -> Path:
    """``recipe`` with a step count no arm reaches in its minutes, so that ``--max-minutes`` fits every arm's
    schedule to the time (the recipe's own count, mini-cpu's 3,000 steps, ends an arm in about 6 minutes)."""
    path = out / f"recipe-{recipe}-timed.yaml"
    path.write_text(f"base: {recipe}\nmax_steps: 10000000\n")
    return path


def pretrain_arm(out: Path, arm: str, data: Path, heldout: Path, recipe: str, minutes: float) -> Path:
    """The arm's exported model, pretrained for ``minutes`` by ``domainbert pretrain`` (resumed if killed):
    its warmup-stable-decay schedule fitted to the minutes, the same for every arm."""
    objective, rate = ARMS[arm]
    run = out / arm / "pretrain"
    if not (run / "export" / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "domainbert", "pretrain", "--data", str(data), "--eval-data",
                        str(heldout), "--recipe", str(timed_recipe(out, recipe)), "--objective", objective,
                        "--masked-lm-prob", str(rate),
                        "--max-minutes", str(minutes), "--out", str(run), "--no-progress"], check=True)
    return run / "export"


def pretraining_figures(out: Path, arm: str, data: Path, heldout: Path) -> dict[str, Any]:
    """Held-out MLM loss and accuracy at 15%, the time and steps spent, and the corpus passes."""
    objective, _ = ARMS[arm]
    run = out / arm / "pretrain"
    model = BertForPreTraining.from_pretrained(run / "export")
    scores = evaluate(model, open_data(heldout, 0, model.config, objective=objective), 16, 32, "auto",
                      torch.device("cpu"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if not r.get("eval")]
    manifest = json.loads((data / "manifest.json").read_text())
    counts = manifest["counts"]
    tokens_read = steps[-1]["consumed_samples"] * counts["example_tokens"] / manifest["num_samples"]
    return {"eval_mlm_loss": scores["eval_mlm_loss"], "eval_mlm_accuracy": scores["eval_mlm_accuracy"],
            "steps": steps[-1]["step"], "pretraining_minutes": sum(r["step_seconds"] for r in steps) / 60,
            "examples_read": steps[-1]["consumed_samples"], "corpus_passes": tokens_read / counts["source_tokens"],
            "corpus_tokens": counts["source_tokens"], "corpus_words": counts.get("words")}


def test_cell(arm: dict[str, Any], default: dict[str, Any] | None, task: str) -> str:
    """An arm's test F1 on ``task`` over seeds, the rate dev chose, and Welch's p against the default's."""
    entry = arm["datasets"].get(task)
    if not entry:
        return "—"
    test = entry["test"]
    cell = f"{100 * test['mean']:.2f} ± {100 * test['std']:.2f} ({entry['selected']['learning_rate']:g}"
    base = (default or {}).get("datasets", {}).get(task)
    if base and arm is not default:
        p = ttest_ind(list(test["per_seed"].values()), list(base["test"]["per_seed"].values()), equal_var=False).pvalue
        cell += f"; p {p:.3f}"
    return cell + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/objectives_ablation"))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "objectives-ablation",
                        help="where each finished arm's figures go (JSON)")
    parser.add_argument("--minutes", type=float, default=30.0, help="pretraining minutes per arm")
    parser.add_argument("--recipe", default="mini-cpu")
    parser.add_argument("--vocab-size", type=int, default=16384)
    parser.add_argument("--grid", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--corpus-files", type=int, default=None, help="smoke runs: the first N corpus files")
    parser.add_argument("--limit", type=int, default=None, help="smoke runs: first N examples per split")
    parser.add_argument("--finetune-steps", type=int, default=None, help="smoke runs: cap on fine-tuning steps")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="pretrain the arms and write their pretraining figures, fine-tune nothing (the timed "
                        "stage, which wants the machine to itself; a later run without it fine-tunes)")
    parser.add_argument("--table", action="store_true", help="only print what --results holds")
    ns = parser.parse_args(argv)
    settings = {k: getattr(ns, k) for k in ("minutes", "recipe", "vocab_size", "grid", "corpus_files", "limit",
                                            "finetune_steps")}
    ns.out.mkdir(parents=True, exist_ok=True)
    stored = ns.out / "settings.json"
    before = json.loads(stored.read_text()) if stored.is_file() else settings
    if {**before, "grid": ns.grid} != settings:  # another --grid only chooses the fine-tuning rates again
        sys.exit(f"{ns.out} was run with {json.dumps(before)}: use another --out for other settings")
    stored.write_text(json.dumps(settings) + "\n")
    if not ns.table:
        files = CORPORA["pubmed"][:ns.corpus_files]
        vocab = vocab_dir(ns.out, "pubmed", ns.vocab_size)
        heldout = heldout_dir(ns.out, "pubmed", vocab)
        smoke = {"limit": ns.limit, "max_steps": ns.finetune_steps}
        ns.results.mkdir(parents=True, exist_ok=True)
        for arm in ns.arms:
            started = time.perf_counter()
            data = examples_dir(ns.out, ARMS[arm][0], vocab, files)
            model = pretrain_arm(ns.out, arm, data, heldout, ns.recipe, ns.minutes)
            entries = {} if ns.pretrain_only else {task: finetune_arm(ns.out, arm, model, task, tuple(ns.grid), smoke)
                                                   for task in ns.tasks}
            figures = {"arm": arm, "objective": ARMS[arm][0], "masked_lm_prob": ARMS[arm][1], "settings": settings,
                       **pretraining_figures(ns.out, arm, data, heldout), "datasets": entries}
            (ns.results / f"{arm}.json").write_text(json.dumps(figures, indent=1) + "\n")
            print(f"{arm}: done in {time.perf_counter() - started:.0f} s", flush=True)
    results = [json.loads((ns.results / f"{arm}.json").read_text()) for arm in ARMS
               if (ns.results / f"{arm}.json").is_file()]
    tuned = [r for r in results if r["datasets"]]
    if DEFAULT in [r["arm"] for r in tuned] and len(tuned) >= 2:
        ordered = sorted(tuned, key=lambda r: r["arm"] != DEFAULT)  # the default first: the others against it
        runs = [{"name": r["arm"], "model": r["arm"], "budget": "quick", "seeds": list(SEEDS),
                 "datasets": r["datasets"]} for r in ordered]
        print(render_comparison(compare(runs, [r["arm"] for r in ordered])))
    default = next((r for r in results if r["arm"] == DEFAULT), None)
    print("| arm | objective | masking | steps | minutes | corpus passes | held-out MLM loss (15%) | accuracy | "
          + " | ".join(f"{t} test (rate; Welch's p)" for t in TASKS) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(TASKS))
    for r in results:
        cells = [test_cell(r, default, t) for t in TASKS]
        print(f"| {r['arm']} | {r['objective']} | {100 * r['masked_lm_prob']:g}% | {r['steps']:,} | "
              f"{r['pretraining_minutes']:.1f} | {r['corpus_passes']:.2f} | {r['eval_mlm_loss']:.3f} | "
              f"{r['eval_mlm_accuracy']:.3f} | " + " | ".join(cells) + " |")
    if results:
        words = results[0].get("corpus_words")
        means = ", ".join(f"{r['arm']} {100 * statistics.fmean(e['test']['mean'] for e in r['datasets'].values()):.2f}"
                          for r in tuned)
        print(f"\nThe corpus: {results[0]['corpus_tokens']:,} sub-word tokens"
              + (f" ({words:,} words)" if words else "")
              + (f"; mean of the arms' test scores: {means}" if means else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
