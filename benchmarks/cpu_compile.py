"""torch.compile on the CPU: does it buy a small-compute recipe more steps a minute?

Issue 14 lists ``torch.compile`` on the CPU among the candidates for learning more per CPU-minute.
This runs the same recipe's pretraining steps (``--recipe``, mini-cpu by default: quickstart's) on
quickstart's corpus eagerly and with ``--compile on`` (the encoder compiled in place, as
``domainbert pretrain --compile on`` does), each mode in its own process with an empty inductor
cache, and prints one table: the time the first steps took (compiling included), the median step
after warm-up, tokens a second, and the steps the compile time costs. Run it on an otherwise idle
machine; the modes run in the order given, so alternate them (``--modes off on off on``)::

    .venv/bin/python benchmarks/cpu_compile.py --steps 400 --modes off on off on
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

WARMUP = 20  # steps left out of the median (the compiled mode compiles in the first)


def run_mode(mode: str, recipe: str, steps: int, out: Path) -> dict:
    """One mode's steps in this process; the figures fit() measured."""
    import small_compute

    from domainbert.data.shards import load_manifest
    from domainbert.model.configuration import BertConfig
    from domainbert.train.args import RECIPE_EXTRA, PretrainArgs, load_recipe
    from domainbert.train.pretrain import fit, new_model, open_data

    values = load_recipe(recipe)
    rate = float(values.get("masked_lm_prob") or 0.15)
    _, train, _ = small_compute.data_dirs(out, 16384, rate, 128)
    config = BertConfig.preset(str(values["model"]), vocab_size=int(load_manifest(train)["vocab"]["size"]))
    args = PretrainArgs(**{**{k: v for k, v in values.items() if k not in RECIPE_EXTRA}, "max_steps": steps,
                           "save_every": 10 * steps, "eval_every": 0, "compile": mode})
    model = new_model(config, args)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        history = fit(model, open_data(train, args.seed, config), args, Path(run_dir), device=torch.device("cpu"),
                      progress=False)
        wall = time.perf_counter() - started
    steady = history[WARMUP:]
    return {"mode": mode, "steps": len(history), "wall_s": wall,
            "first_steps_s": sum(h.step_seconds for h in history[:WARMUP]),
            "median_step_s": statistics.median(h.step_seconds for h in steady),
            "tokens_per_s": statistics.median(h.tokens_per_s for h in steady), "last_loss": history[-1].loss,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mini-cpu")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps per mode (at least 2 x 20)")
    parser.add_argument("--modes", nargs="+", default=["off", "on", "off", "on"], choices=["off", "on"])
    parser.add_argument("--out", type=Path, default=Path("runs/sc5"), help="small_compute's data directory")
    parser.add_argument("--one", choices=["off", "on"], help=argparse.SUPPRESS)  # a child process's mode
    ns = parser.parse_args(argv)
    if ns.steps < 2 * WARMUP:
        parser.error(f"--steps {ns.steps} is too few: at least {2 * WARMUP} (the first {WARMUP} are warm-up)")
    if ns.one:
        print(json.dumps(run_mode(ns.one, ns.recipe, ns.steps, ns.out)))
        return 0
    rows = []
    for mode in ns.modes:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            done = subprocess.run([sys.executable, __file__, "--one", mode, "--recipe", ns.recipe, "--steps",
                                   str(ns.steps), "--out", str(ns.out)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"the {mode} run failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {mode}: median step {rows[-1]['median_step_s']:.4f} s", file=sys.stderr, flush=True)
    eager = statistics.median(r["median_step_s"] for r in rows if r["mode"] == "off") if "off" in ns.modes else None
    print(f"{ns.recipe}, {ns.steps} steps a run, torch {torch.__version__}, {rows[0]['threads']} threads\n")
    print("| mode | first 20 steps s | median step s (after 20) | tokens/s | eager step / this step | "
          "steps the first 20 cost over eager |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{eager / r['median_step_s']:.3f}" if eager else ""
        lost = (r["first_steps_s"] - WARMUP * eager) / eager if eager else float("nan")
        print(f"| {r['mode']} | {r['first_steps_s']:.1f} | {r['median_step_s']:.4f} | {r['tokens_per_s']:,.0f} | "
              f"{ratio} | {lost:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
