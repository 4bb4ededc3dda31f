"""What a CPU-minute of pretraining buys: candidate small-compute recipes, each for the same wall time.

Every arm pretrains a fresh model on quickstart's corpus (the sample PubMed corpus of
``../shared/data``, ``medline16n0902`` held out, decontaminated against every BLURB test split)
for ``--minutes`` of training time, scores held-out MLM loss and accuracy at four points of that
time (always on the same held-out examples, masked at 15% with whole-word masking, whatever the arm
trains with; the scoring time is not charged to the budget), and optionally fine-tunes the result
on NCBI-disease (``--finetune``: ``finetune --budget quick`` at the learning rate the quick budget
picks for the model's size). The learning-rate schedule of an arm that fits the budget spans the
steps that fit in it, timed by ``steps_in_minutes`` and refitted to the training time left while the
rate is at its peak (``fit(time_left=)``), as ``quickstart`` does.

Results go to ``<out>/results/<arm>.json``; an arm with a result is skipped, so the benchmark
resumes after a kill (a killed arm restarts: its budget is wall time). Run one at a time on an
otherwise idle machine::

    .venv/bin/python benchmarks/small_compute.py --minutes 10 --arms recipe b32 ...
    .venv/bin/python benchmarks/small_compute.py --table        # the table of what is done
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from domainbert.blurb.finetune import FinetuneArgs, finetune
from domainbert.data.examples import PrepareConfig, max_predictions_for
from domainbert.data.shards import load_manifest, prepare_pretraining_data
from domainbert.data.vocab import build_vocab
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining, local_attention, sinusoidal_positions
from domainbert.quickstart import HELD_OUT_TEXT
from domainbert.train.args import RECIPE_EXTRA, PretrainArgs, load_recipe
from domainbert.train.export import export
from domainbert.train.pretrain import copy_tokenizer, evaluate, fit, new_model, open_data, steps_in_minutes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EVAL_BATCHES, EVAL_MICRO = 16, 32  # 512 held-out examples

#: The arms. ``data``: vocabulary size, masking rate, sequence length; ``model``: preset and config
#: overrides; ``args``: PretrainArgs fields over BASE_ARGS; ``fit``: the schedule spans the steps
#: that fit in the budget (else it is the recipe's 1,300 steps, cut by the time).
BASE_ARGS: dict[str, Any] = dict(global_batch_size=128, micro_batch_size=32, learning_rate=1e-3, warmup=0.06,
                                 weight_decay=0.01, precision="auto", log_every=10, save_every=100000,
                                 keep_last=1, max_steps=1300)
ARMS: dict[str, dict[str, Any]] = {
    "recipe": dict(desc="small-cpu as it was: batch 128, peak 1e-3, 1,300-step schedule cut by the time"),
    "b32": dict(desc="batch 32, schedule fitted to the budget", fit=True,
                args=dict(global_batch_size=32, warmup=0.06)),
    "b32-nodrop": dict(desc="+ no dropout while pretraining", fit=True,
                       args=dict(global_batch_size=32, warmup=0.06, dropout=0.0)),
    "b32-nodrop-wsd": dict(desc="+ rate held, decayed over the last 25%", fit=True,
                           args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "b32-nodrop-wsd-lr2e3": dict(desc="+ peak 2e-3, beta2 0.98", fit=True,
                                 args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25,
                                           learning_rate=2e-3, betas=(0.9, 0.98))),
    "b32-nodrop-wsd-sinpos": dict(desc="b32-nodrop-wsd, positions start as sinusoids", fit=True, init="sinusoidal",
                                  args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "h128-sinpos": dict(desc="4 x 128 wide, sinusoid positions, no dropout, trapezoid", fit=True,
                        init="sinusoidal", model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                        args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-lr2e3": dict(desc="b32-nodrop-wsd-sinpos, peak 2e-3, beta2 0.98", fit=True, init="sinusoidal",
                         args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25, learning_rate=2e-3,
                                   betas=(0.9, 0.98))),
    "sinpos-mask30": dict(desc="b32-nodrop-wsd-sinpos, 30% masking", fit=True, init="sinusoidal", data=dict(mask=0.3),
                          args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-t64": dict(desc="b32-nodrop-wsd-sinpos at length 64, batch 64 (the same tokens a step)", fit=True,
                       init="sinusoidal", data=dict(seq_len=64),
                       args=dict(global_batch_size=64, micro_batch_size=64, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-v8k": dict(desc="b32-nodrop-wsd-sinpos, 8,192-token vocabulary", fit=True, init="sinusoidal",
                       data=dict(vocab=8192), args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-b16": dict(desc="b32-nodrop-wsd-sinpos at batch 16", fit=True, init="sinusoidal",
                       args=dict(global_batch_size=16, micro_batch_size=16, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-b64": dict(desc="b32-nodrop-wsd-sinpos at batch 64", fit=True, init="sinusoidal",
                       args=dict(global_batch_size=64, warmup=0.06, dropout=0.0, decay=0.25)),
    "sinpos-b128": dict(desc="b32-nodrop-wsd-sinpos at batch 128", fit=True, init="sinusoidal",
                        args=dict(global_batch_size=128, warmup=0.06, dropout=0.0, decay=0.25)),
    "h128-sinpos-mask30": dict(desc="h128-sinpos, 30% masking", fit=True, init="sinusoidal", data=dict(mask=0.3),
                               model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                               args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "h128-sinpos-mask30-lr2e3": dict(desc="h128-sinpos-mask30, peak 2e-3, beta2 0.98", fit=True, init="sinusoidal",
                                     data=dict(mask=0.3),
                                     model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                                     args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25,
                                               learning_rate=2e-3, betas=(0.9, 0.98))),
    "h128-sinpos-t64": dict(desc="h128-sinpos at length 64, batch 64 (the same tokens a step)", fit=True,
                            init="sinusoidal", data=dict(seq_len=64),
                            model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                            args=dict(global_batch_size=64, micro_batch_size=64, warmup=0.06, dropout=0.0,
                                      decay=0.25)),
    "h128-sinpos-t32": dict(desc="h128-sinpos at length 32, batch 128 (the same tokens a step)", fit=True,
                            init="sinusoidal", data=dict(seq_len=32),
                            model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                            args=dict(global_batch_size=128, micro_batch_size=128, warmup=0.06, dropout=0.0,
                                      decay=0.25)),
    "h128-sinpos-local": dict(desc="h128-sinpos, heads start on offsets -1/+1/-2/+2 (query/key)", fit=True,
                              init="sinusoidal", local={},
                              model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                              args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "h128-sinpos-local-copy": dict(desc="h128-sinpos-local, + value/output start copying the neighbour",
                                   fit=True, init="sinusoidal", local=dict(vo_scale=1.0),
                                   model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                                   args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "small-cpu-local": dict(desc="the small-cpu recipe (4 x 256, sinusoids, 30% masking) + local attention init",
                            fit=True, init="sinusoidal", local={}, data=dict(mask=0.3),
                            args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "local-h4": dict(desc="h128-sinpos-local with 4 heads of 32 (offsets -1/+1/-2/+2 in every layer)", fit=True,
                     init="sinusoidal", local={},
                     model=dict(hidden_size=128, num_attention_heads=4, intermediate_size=512),
                     args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "local-lr2e3": dict(desc="h128-sinpos-local, peak 2e-3, beta2 0.98", fit=True, init="sinusoidal", local={},
                        model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                        args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25, learning_rate=2e-3,
                                  betas=(0.9, 0.98))),
    "local-v8k": dict(desc="h128-sinpos-local, 8,192-token vocabulary", fit=True, init="sinusoidal", local={},
                      data=dict(vocab=8192), model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                      args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "local-b16": dict(desc="h128-sinpos-local at batch 16", fit=True, init="sinusoidal", local={},
                      model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                      args=dict(global_batch_size=16, micro_batch_size=16, warmup=0.06, dropout=0.0, decay=0.25)),
    "local-b8": dict(desc="h128-sinpos-local at batch 8", fit=True, init="sinusoidal", local={},
                     model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                     args=dict(global_batch_size=8, micro_batch_size=8, warmup=0.06, dropout=0.0, decay=0.25)),
    "local-b16-v8k": dict(desc="h128-sinpos-local at batch 16, 8,192-token vocabulary", fit=True,
                          init="sinusoidal", local={}, data=dict(vocab=8192),
                          model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                          args=dict(global_batch_size=16, micro_batch_size=16, warmup=0.06, dropout=0.0,
                                    decay=0.25)),
    # The shipped recipes themselves (their YAML read as it is, only the schedule fitted to the minutes):
    # small-cpu was the 4 x 256 shape (small-cpu-local's settings) until its 60 minutes were measured
    # against mini's; it is now mini-cpu's settings with an hour's steps.
    "recipe-small-cpu": dict(desc="the shipped small-cpu recipe", fit=True, recipe="small-cpu"),
    "recipe-mini-cpu": dict(desc="the shipped mini-cpu recipe (quickstart's)", fit=True, recipe="mini-cpu"),
    "mini-cpu-dynamic": dict(desc="mini-cpu, masked anew every epoch (the same pairs, dupe factor 2)", fit=True,
                             recipe="mini-cpu", data=dict(dynamic=True)),
    "b16-nodrop-wsd": dict(desc="batch 16, no dropout, trapezoid", fit=True,
                           args=dict(global_batch_size=16, micro_batch_size=16, warmup=0.06, dropout=0.0,
                                     decay=0.25)),
    "b32-nodrop-wsd-mask30": dict(desc="b32-nodrop-wsd, 30% masking", fit=True, data=dict(mask=0.3),
                                  args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "b32-nodrop-wsd-v8k": dict(desc="b32-nodrop-wsd, 8,192-token vocabulary", fit=True, data=dict(vocab=8192),
                               args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
    "b32-nodrop-wsd-h128": dict(desc="b32-nodrop-wsd, 4 layers x 128 wide", fit=True,
                                model=dict(hidden_size=128, num_attention_heads=2, intermediate_size=512),
                                args=dict(global_batch_size=32, warmup=0.06, dropout=0.0, decay=0.25)),
}


def data_dirs(out: Path, vocab_size: int, mask: float, seq_len: int,
              dynamic: bool = False) -> tuple[Path, Path, Path]:
    """(vocabulary, training examples, held-out examples at 15%) for one data spec, built once.
    ``dynamic``: the training pairs are stored unmasked and masked anew every epoch when read."""
    train_files = sorted(p for p in (SHARED / "pubmed_corpus").glob("*.txt") if p.name != HELD_OUT_TEXT)
    vocab = out / "data" / f"vocab-{vocab_size}"
    if not (vocab / "vocab_stats.json").is_file():
        build_vocab(train_files, vocab, vocab_size, progress=False, decontaminate=SHARED)
    predictions = max_predictions_for(mask, seq_len)
    train = out / "data" / f"train-v{vocab_size}-m{mask:g}-t{seq_len}{'-dynamic' if dynamic else ''}"
    heldout = out / "data" / f"heldout-v{vocab_size}"
    for files, target, config in (
            (train_files, train, PrepareConfig(max_seq_len=seq_len, max_predictions=predictions, masked_lm_prob=mask,
                                               dupe_factor=2, whole_word_mask=True, dynamic_masking=dynamic)),
            ([SHARED / "pubmed_corpus" / HELD_OUT_TEXT], heldout,
             PrepareConfig(max_seq_len=128, max_predictions=20, dupe_factor=1, whole_word_mask=True))):
        if not (target / "manifest.json").is_file():
            prepare_pretraining_data(files, vocab, target, config, decontaminate=SHARED, workers=2, progress=False)
    return vocab, train, heldout


def run_arm(name: str, out: Path, minutes: float, finetune_lr: float | None) -> dict[str, Any]:
    arm = ARMS[name]
    recipe = {}
    if "recipe" in arm:  # checkpoints only at the end, as every arm: the curve is scored in on_step
        recipe = {**load_recipe(arm["recipe"]), "save_every": 100000, "keep_last": 1, "eval_every": 0}
    spec = {"vocab": 16384, "mask": float(recipe.get("masked_lm_prob") or 0.15), "seq_len": 128, **arm.get("data", {})}
    vocab, train, heldout = data_dirs(out, spec["vocab"], spec["mask"], spec["seq_len"], spec.get("dynamic", False))
    vocab_size = int(load_manifest(train)["vocab"]["size"])
    if recipe:
        config = BertConfig.preset(str(recipe["model"]), vocab_size=vocab_size)
        values = {k: v for k, v in recipe.items() if k not in RECIPE_EXTRA}
        model = new_model(config, PretrainArgs(**values))
    else:
        config = BertConfig.preset("small", vocab_size=vocab_size, **arm.get("model", {}))
        torch.manual_seed(0)
        model = BertForPreTraining(config)
        if arm.get("init") == "sinusoidal":
            sinusoidal_positions(model, config.initializer_range)
        if "local" in arm:  # heads start on a neighbour (local_attention's own position pairs)
            local_attention(model, **arm["local"])
        values = {**BASE_ARGS, **arm.get("args", {})}
    source, eval_source = open_data(train, 0, config), open_data(heldout, 0, config)
    args = PretrainArgs(**values)
    device = torch.device("cpu")
    if arm.get("fit"):
        values["max_steps"] = steps_in_minutes(model, source, args, minutes, device)
        args = PretrainArgs(**values)
    fitted_steps = args.max_steps  # before any refit
    run_dir = out / "runs" / name
    if run_dir.exists():  # a killed arm restarts: its budget is wall time
        shutil.rmtree(run_dir)
    copy_tokenizer(train, run_dir)
    marks = [minutes * 60 * f for f in (0.25, 0.5, 0.75, 1.0)]
    curve: list[dict[str, Any]] = []
    clock = {"start": time.perf_counter(), "scoring": 0.0}

    def score(step: int, lr: float) -> None:
        trained = time.perf_counter() - clock["start"] - clock["scoring"]
        t = time.perf_counter()
        scores = evaluate(model, eval_source, EVAL_BATCHES, EVAL_MICRO, "auto", device)
        clock["scoring"] += time.perf_counter() - t
        curve.append({"minutes": round(trained / 60, 2), "step": step, "lr": lr, **scores})
        print(f"  {name}: {trained / 60:5.2f} min, step {step}, held-out MLM loss {scores['eval_mlm_loss']:.3f} "
              f"accuracy {scores['eval_mlm_accuracy']:.3f}", flush=True)

    def on_step(m: Any) -> bool:
        if time.perf_counter() - clock["start"] - clock["scoring"] < marks[len(curve)]:
            return False
        score(m.step, m.lr)
        return len(curve) == len(marks)

    def time_left() -> float:  # the fitted schedule is refitted to the training time left while at its peak
        return minutes * 60 - (time.perf_counter() - clock["start"] - clock["scoring"])

    history = fit(model, source, args, run_dir, device=device, progress=False, on_step=on_step,
                  time_left=time_left if arm.get("fit") else None)
    if len(curve) < len(marks):  # the schedule ended before the time: its last step is the last point
        score(history[-1].step, history[-1].lr)
    export(run_dir, run_dir / "export")
    result: dict[str, Any] = {
        "arm": name, "desc": arm["desc"], "minutes": minutes, "data": spec, "model": config.to_dict(),
        "args": args.to_dict(), "steps": history[-1].step, "schedule_steps": fitted_steps,
        "last_lr": history[-1].lr, "tokens_per_s": round(
            sum(h.tokens_per_s * h.step_seconds for h in history) / sum(h.step_seconds for h in history)),
        "curve": curve, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch_threads": torch.get_num_threads()}
    if finetune_lr is not None:
        ft = finetune(FinetuneArgs(model=run_dir / "export", out=run_dir / "ncbi-disease", task="ncbi-disease",
                                   data_dir=SHARED, learning_rate=finetune_lr, save_model=False, progress=False))
        result["ncbi_disease"] = {"lr": finetune_lr, "test_f1": ft["test"]["mean"], "dev_f1": ft["dev"]["mean"],
                                  "seconds": ft["wall_seconds"]}
        print(f"  {name}: NCBI-disease test F1 {100 * ft['test']['mean']:.1f} at lr {finetune_lr:g}", flush=True)
    return result


def table(out: Path) -> str:
    rows = ["| arm | what | steps | tokens/s | MLM loss / accuracy at 1/4, 1/2, 3/4, all of the time | "
            "NCBI-disease F1 |", "|---|---|---:|---:|---|---:|"]
    for name in ARMS:
        path = out / "results" / f"{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        curve = ", ".join(f"{c['eval_mlm_loss']:.2f} / {c['eval_mlm_accuracy']:.3f}" for c in r["curve"])
        ft = r.get("ncbi_disease")
        score = f"{100 * ft['test_f1']:.1f} (lr {ft['lr']:g})" if ft else ""
        rows.append(f"| {name} | {r['desc']} | {r['steps']} | {r['tokens_per_s']:,} | {curve} | {score} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=[], choices=list(ARMS), help="arms to run (in this order)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per arm")
    parser.add_argument("--finetune-lr", type=float, default=None, help="also fine-tune NCBI-disease at this rate")
    parser.add_argument("--out", type=Path, default=Path("runs/small_compute"))
    parser.add_argument("--table", action="store_true", help="print the table of finished arms")
    ns = parser.parse_args(argv)
    (ns.out / "results").mkdir(parents=True, exist_ok=True)
    for name in ns.arms:
        path = ns.out / "results" / f"{name}.json"
        if path.is_file():
            print(f"{name}: done ({path})")
            continue
        print(f"{name}: {ARMS[name]['desc']}", flush=True)
        result = run_arm(name, ns.out, ns.minutes, ns.finetune_lr)
        path.write_text(json.dumps(result, indent=2) + "\n")
    if ns.table or not ns.arms:
        print(table(ns.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
