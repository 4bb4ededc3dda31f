"""``domainbert quickstart``: the whole PubMedBERT recipe at CPU size, in one command.

PubMed abstracts → decontaminated corpus → in-domain vocabulary → pretraining examples →
pretraining within a time budget → export → fine-tuning on NCBI-disease and a non-NER BLURB task
→ report. Every stage is the same code the stage's own command runs; quickstart only wires them:

====  ================  ==========================================  =============================
 #    stage             what                                        output under ``--out``
====  ================  ==========================================  =============================
 1    data              ``data download`` (BLURB + the corpus       ``data/`` (+ ``download.json``)
                        slice), from ``--mirror`` or the sources
 2    vocabulary        ``vocab build`` on the training files       ``vocab/``
 3    examples          ``data prepare``, decontaminated against    ``examples-128/``,
                        every BLURB test split; one file held out   ``heldout-128/``
 4    pretraining       ``pretrain`` (mini-cpu recipe and its       ``pretrain/`` (checkpoints,
                        schedule), stopped when ``--minutes`` end   metrics, ``export/``)
 5    fine-tuning       ``blurb --budget quick`` on ``--tasks``,    ``blurb/`` (report.md,
                        the fine-tuned models kept; then the same   comparison.md, png, each
                        shape from random weights                   dataset's ``model/``),
                        (``--no-baseline`` skips it)                ``blurb-random-init/``
====  ================  ==========================================  =============================

The corpus slice: with a mirror, the sample corpus (``pubmed_corpus/``); without, PubMed baseline
file 1. Either way ``medline_xml/medline16n0902.xml.gz`` is held out of pretraining (and its text
copy dropped from the training files) to score held-out MLM loss. A second run with the same
arguments reuses every finished stage (each stage's own resume logic), and ``summary.json``
records what each stage took. The summary ends with the ``serve`` command that puts the pretrained
model (fill-mask) and the fine-tuned NER model on one web page.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

from domainbert.atomic import atomic_write_json
from domainbert.blurb.compare import write_comparison
from domainbert.blurb.registry import get_record
from domainbert.blurb.suite import run_suite
from domainbert.data.download import download, unavailable_datasets
from domainbert.data.examples import PrepareConfig, max_predictions_for
from domainbert.data.shards import load_manifest, prepare_pretraining_data
from domainbert.data.sources import blurb_files, corpus_files, pubmed_baseline_files
from domainbert.data.tokenization import BertTokenizer
from domainbert.data.vocab import build_vocab
from domainbert.errors import ConfigError
from domainbert.model.configuration import BertConfig
from domainbert.train import distributed
from domainbert.train.export import export
from domainbert.train.precision import resolve_precision
from domainbert.train.pretrain import (
    RECIPE_EXTRA,
    REFIT_RESERVE,
    RUN_CONFIG,
    PretrainArgs,
    copy_tokenizer,
    describe_run,
    fit,
    load_recipe,
    new_model,
    open_data,
    recipe_path,
    steps_in_minutes,
    verify_settings,
)
from domainbert.train.state import checkpoint_dirs

HELD_OUT_XML = "medline_xml/medline16n0902.xml.gz"
HELD_OUT_TEXT = "medline16n0902.txt"  # the text copy of that file inside pubmed_corpus/
DEFAULT_TASKS = ("ncbi-disease", "gad")
RECIPE = "mini-cpu"
"""The pretraining recipe quickstart follows (its shape unless ``--model-size``), its schedule
fitted to ``--minutes``."""


def _stage(k: int, total: int, title: str) -> float:
    print(f"\n[{k}/{total}] {title}", flush=True)
    return time.perf_counter()


def fetch_data(out: Path, mirror: str | None, progress: bool) -> tuple[list[Path], Path]:
    """Download BLURB and the corpus slice; return (training corpus files, held-out file)."""
    files = blurb_files() + [f for f in corpus_files() if f.path == HELD_OUT_XML or mirror is not None]
    if mirror is None:
        files += pubmed_baseline_files(1, 1)
    # A mirror (or source) without some BLURB files still serves the rest: those datasets are then left
    # out of the evaluation and the decontamination uses the test files that are there.
    result = download(files, out, mirror=mirror, progress=progress, skip_unavailable=True)
    print(f"  {len(result.fetched)} file(s) fetched, {len(result.skipped)} already there, into {out}"
          + (f"; {len(result.unavailable)} not in the source ({unavailable_datasets(result.unavailable)})"
             if result.unavailable else ""))
    if mirror is not None:
        train = sorted(p for p in (out / "pubmed_corpus").glob("*.txt") if p.name != HELD_OUT_TEXT)
    else:
        train = sorted((out / "pubmed_baseline").glob("*.xml.gz"))
    if not train:
        raise ConfigError(f"no pretraining corpus under {out}: check --mirror (it needs pubmed_corpus/)")
    return train, out / HELD_OUT_XML


def recipe_values() -> tuple[dict[str, Any], str]:
    """The PretrainArgs fields of quickstart's recipe (shipped with the package; missing is an error)
    and its model preset."""
    recipe = load_recipe(RECIPE)
    return {k: v for k, v in recipe.items() if k not in RECIPE_EXTRA}, str(recipe.get("model", "small"))


def pretrain_stage(out: Path, data: Path, heldout: Path, minutes: float, size: str, progress: bool,
                   recipe: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()  # the minutes are the whole stage's, the settings pass and the probe included
    values = dict(recipe)
    if size == "tiny":  # CI and smoke runs: a 2-layer model, small batches
        values.update(global_batch_size=16, micro_batch_size=16, eval_batches=2)
    device = distributed.pick_device("auto")
    overrides = {"max_position_embeddings": 128} if size == "tiny" else {}
    config = BertConfig.preset(size, vocab_size=int(load_manifest(data)["vocab"]["size"]), **overrides)
    recipe_args = PretrainArgs(**values)
    model = new_model(config, recipe_args)
    objective = recipe_args.objective  # a recipe may pretrain masked LM alone
    source = open_data(data, values.get("seed", 0), config, values.get("masked_lm_prob"), objective)
    eval_source = open_data(heldout, 0, config, objective=objective)
    plan = out / "plan.json"
    planned = json.loads(plan.read_text()) if plan.is_file() else None
    if planned is not None:  # a rerun keeps the first run's schedule, so it resumes instead of restarting
        max_steps = planned["max_steps"]
    else:
        args = PretrainArgs(**values)
        verify_settings(model, source, args, device, 0)
        # The schedule fits the minutes, as `pretrain --max-minutes` fits it: the recipe holds the peak
        # rate and decays only over the last share of the steps (warmup-stable-decay), so the model
        # leaves the unigram plateau at full rate and still ends annealed. What the stage has spent so far
        # comes off the minutes, and 10% of the rest is kept for evaluations, checkpoints and the machine's
        # noise: over a whole 10-minute run here the steps took 8% longer than the probe had timed.
        # The minutes are the budget, not the recipe's step count: a faster machine runs more steps.
        max_steps = steps_in_minutes(model, source, args, minutes, device, reserve=0.10, since=started)
        out.mkdir(parents=True, exist_ok=True)
        planned = {"max_steps": max_steps, "minutes": minutes}
        atomic_write_json(plan, planned)
    # about six evaluations, the last at the final step (floor division put one a step before it)
    args = PretrainArgs(**{**values, "max_steps": max_steps, "eval_every": math.ceil(max_steps / 6),
                           "save_every": max(1, max_steps // 4)})
    print(f"  recipe {RECIPE} ({recipe_path(RECIPE)}): peak rate {args.learning_rate:g}, "
          f"masking {args.masked_lm_prob or 'as prepared'}, position init {args.position_init}, "
          f"attention init {args.attention_init}")
    print(f"  {size} BERT, {model.num_parameters():,} parameters; {max_steps} steps of {args.global_batch_size} "
          f"sequences, the learning-rate schedule fitted to {minutes:g} min")
    done = checkpoint_dirs(out)
    reached = int(done[-1].name.split("-")[-1]) if done else 0
    if planned.get("finished"):  # the minutes were spent (or the steps done): the stage is finished
        print(f"  reusing {out} (finished at step {reached})")
    elif reached < max_steps:
        copy_tokenizer(data, out)
        if not (out / RUN_CONFIG).is_file():  # what the exported model's card reads
            atomic_write_json(out / RUN_CONFIG, describe_run(args, size, model, data, heldout,
                                                             resolve_precision(args.precision, device)))
        # A fresh stage refits its steps to the minutes left while the rate is at its peak (the steps ran
        # 8-26% slower over whole runs here than the probe had timed them); a resumed one keeps the
        # schedule its checkpoint holds.
        refit = {} if reached else {"time_left": lambda: started + minutes * 60 * (1 - REFIT_RESERVE)
                                    - time.perf_counter()}
        fit(model, source, args, out, eval_source=eval_source, device=device, progress=progress,
            time_budget_s=minutes * 60 * 1.5, **refit)
        atomic_write_json(plan, {**planned, "finished": True})
    export(out, out / "export", name="domainbert-quickstart")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if not r.get("eval")]
    evals = [r for r in rows if r.get("eval")]
    return {"steps": train[-1]["step"] if train else 0, "first_loss": train[0]["loss"] if train else None,
            "last_loss": train[-1]["loss"] if train else None, "evals": evals, "export": str(out / "export")}


def run_quickstart(ns: argparse.Namespace) -> dict[str, Any]:
    out: Path = ns.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    progress = not ns.no_progress
    total = 5
    recipe, recipe_size = recipe_values()  # read once: masking rate, pretraining, the random-init baseline

    t = _stage(1, total, "data: BLURB datasets and a PubMed slice" + (f" from {ns.mirror}" if ns.mirror else ""))
    train_files, heldout_file = fetch_data(out / "data", ns.mirror, progress)
    train_files = train_files[: ns.corpus_files] if ns.corpus_files else train_files
    print(f"  pretraining corpus: {len(train_files)} file(s); held out: {heldout_file.name}")
    timings["data"] = time.perf_counter() - t

    t = _stage(2, total, f"vocabulary: in-domain WordPiece, {ns.vocab_size:,} tokens")
    vocab = out / "vocab"
    if (vocab / "vocab_stats.json").is_file():
        stats = json.loads((vocab / "vocab_stats.json").read_text())
        print(f"  reusing {vocab}")
    else:
        # Read as stage 3 reads it: the same readers, filters and decontamination (never XML markup).
        stats = vars(build_vocab(train_files, vocab, ns.vocab_size, progress=progress, decontaminate=out / "data"))
    print(f"  {stats['vocab_size']:,} tokens; {stats['split_share']:.1%} of corpus words split into 2+ pieces")
    timings["vocabulary"] = time.perf_counter() - t

    t = _stage(3, total, "pretraining examples: NSP pairs + whole-word masked LM, decontaminated against BLURB tests")
    # Training examples are masked at the recipe's rate; the held-out ones at BERT's 15% (20 of 128),
    # so that held-out MLM loss and accuracy are comparable with any other run's.
    rate = float(recipe.get("masked_lm_prob") or 0.15)
    train_config = PrepareConfig(max_seq_len=128, max_predictions=max_predictions_for(rate, 128), masked_lm_prob=rate,
                                 dupe_factor=ns.dupe_factor, whole_word_mask=True)
    held_config = PrepareConfig(max_seq_len=128, max_predictions=20, dupe_factor=ns.dupe_factor, whole_word_mask=True)
    examples, heldout = out / "examples-128", out / "heldout-128"
    for files, target, config in ((train_files, examples, train_config), ([heldout_file], heldout, held_config)):
        if (target / "manifest.json").is_file():
            print(f"  reusing {target}")
            continue
        manifest = prepare_pretraining_data(files, vocab, target, config, decontaminate=out / "data",
                                            workers=ns.workers, progress=progress)
        print(f"  {target.name}: {manifest['num_samples']:,} examples from "
              f"{manifest['counts']['documents']:,} documents")
    timings["examples"] = time.perf_counter() - t

    t = _stage(4, total, f"pretraining: MLM + NSP for about {ns.minutes:g} minutes")
    pre = pretrain_stage(out / "pretrain", examples, heldout, ns.minutes, ns.model_size or recipe_size, progress,
                         recipe)
    timings["pretraining"] = time.perf_counter() - t

    tasks = list(ns.tasks or DEFAULT_TASKS)
    t = _stage(5, total, f"fine-tuning on BLURB ({', '.join(tasks)}) and the report")
    suite = dict(tasks=tasks, budget="quick", data_dir=out / "data", max_steps=ns.finetune_steps,
                 limit=ns.limit)
    # The pretrained model's fine-tuned models are kept (small at this size): the NER one is served below.
    results = run_suite(Path(pre["export"]), out / "blurb", name="pretrained", save_models=True, **suite)
    timings["fine-tuning"] = time.perf_counter() - t
    baseline = None
    if not ns.no_baseline:
        t = time.perf_counter()
        print("  the same shape from random weights (no pretraining), fine-tuned the same way:")
        random_init = random_init_model(Path(pre["export"]), out / "random-init", recipe)
        baseline = run_suite(random_init, out / "blurb-random-init", name="random init", **suite)
        write_comparison([results, baseline], ["pretrained", "random init"], out / "blurb")
        timings["fine-tuning, random init"] = time.perf_counter() - t

    report = out / "blurb" / ("comparison.md" if baseline else "report.md")
    ner_models = [out / "blurb" / r.name / "model" for r in map(get_record, tasks)
                  if r.task_type == "ner" and (out / "blurb" / r.name / "model" / "config.json").is_file()]
    summary = {"vocabulary": {k: stats[k] for k in ("vocab_size", "split_share", "mean_pieces_per_word")},
               "pretraining": pre, "blurb": results["blurb"],
               "tasks": {n: d.get("test") for n, d in results["datasets"].items()},
               "random_init": None if baseline is None else {
                   "blurb": baseline["blurb"], "tasks": {n: d.get("test") for n, d in baseline["datasets"].items()},
                   "model": str(out / "random-init"), "seconds": round(timings["fine-tuning, random init"], 1)},
               "seconds": {k: round(v, 1) for k, v in timings.items()},
               "artifacts": {"data": str(out / "data"), "vocabulary": str(vocab), "examples": str(examples),
                             "pretraining run": str(out / "pretrain"), "model": pre["export"],
                             "report": str(report),
                             "chart": str(out / "blurb" / ("comparison.png" if baseline else "blurb.png")),
                             **({"NER model": str(ner_models[0])} if ner_models else {})},
               "serve": shlex.join(["domainbert", "serve", "--model", str(pre["export"]),
                                    *(["--ner-model", str(ner_models[0])] if ner_models else [])])}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return summary


def print_summary(s: dict[str, Any]) -> None:
    v, p = s["vocabulary"], s["pretraining"]
    print("\n" + "=" * 72)
    print(f"vocabulary   {v['vocab_size']:,} tokens, {v['split_share']:.1%} of words split, "
          f"{v['mean_pieces_per_word']:.2f} pieces/word")
    if p["first_loss"] is not None:
        print(f"pretraining  {p['steps']} steps, loss {p['first_loss']:.2f} -> {p['last_loss']:.2f}")
    for e in p["evals"]:
        print(f"   step {e['step']:>5}  held-out MLM loss {e['eval_mlm_loss']:.3f}  accuracy "
              f"{e['eval_mlm_accuracy']:.3f}"
              + (f"  NSP accuracy {e['eval_nsp_accuracy']:.3f}" if e["eval_nsp_accuracy"] is not None else ""))
    base = s.get("random_init")
    for name, test in s["tasks"].items():
        line = f"task         {name:<14} test {_pct(test)}"
        if base is not None:
            other = base["tasks"].get(name)
            line += f"   random init {_pct(other)}"
            if test and other:
                line += f"   pretraining bought {100 * (test['mean'] - other['mean']):+.2f}"
        print(line)
    if s["blurb"]:
        print(f"BLURB        {100 * s['blurb']['score']:.2f} over the task types run"
              + (f" (random init {100 * base['blurb']['score']:.2f})" if base and base["blurb"] else "")
              + "; published PubMedBERT: 81.16 on all 13 datasets, a CPU-minute model is not comparable")
    if base is not None:
        print(f"baseline     the random-init model's fine-tuning took {base['seconds']:.0f} s of the total "
              "(--no-baseline skips it)")
    print("time         " + ", ".join(f"{k} {v:.0f}s" for k, v in s["seconds"].items()))
    for k, path in s["artifacts"].items():
        print(f"  {k:<16} {path}")
    print("=" * 72)
    print(f"report: {s['artifacts']['report']}")
    print(f"serve the pretrained model (fill-mask){' and the NER model' if 'NER model' in s['artifacts'] else ''} "
          f"on a web page: {s['serve']}")


def _pct(test: dict[str, Any] | None) -> str:
    return f"{100 * test['mean']:.2f}" if test else "not run"


def random_init_model(pretrained: Path, out: Path, recipe: dict[str, Any]) -> Path:
    """The pretrained model's shape and vocabulary, initialised as pretraining began (the recipe's
    seed and position init) and never trained."""
    if (out / "config.json").is_file():
        return out
    model = new_model(BertConfig.load(pretrained), PretrainArgs(**recipe))
    model.save_pretrained(out, tokenizer=BertTokenizer.from_pretrained(pretrained))
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", default=None, metavar="DIR_OR_URL",
                        help="take the data from a folder or server laid out like the download cache")
    parser.add_argument("--minutes", type=float, default=10.0, help="pretraining time budget")
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="where everything goes")
    parser.add_argument("--tasks", nargs="+", action="extend", default=None,
                        help=f"BLURB datasets to fine-tune on (default: {' '.join(DEFAULT_TASKS)})")
    parser.add_argument("--vocab-size", type=int, default=16384, help="in-domain vocabulary size")
    parser.add_argument("--model-size", choices=["tiny", "mini", "small"], default=None,
                        help=f"model preset (default: the {RECIPE} recipe's)")
    parser.add_argument("--dupe-factor", type=int, default=2, help="masking rounds over the corpus")
    parser.add_argument("--corpus-files", type=int, default=None, help="use only the first N corpus files")
    parser.add_argument("--finetune-steps", type=int, default=None, help="cap on fine-tuning steps per task")
    parser.add_argument("--limit", type=int, default=None, help="first N examples per split (smoke runs)")
    parser.add_argument("--workers", type=int, default=2, help="processes for data preparation")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip fine-tuning the same shape from random weights (what pretraining bought)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(ns: argparse.Namespace) -> int:
    if ns.minutes <= 0:
        raise ConfigError(f"--minutes must be positive, got {ns.minutes}")
    run_quickstart(ns)
    return 0
