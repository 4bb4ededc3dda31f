#!/usr/bin/env python3
"""Complete BLURB tables, one dataset at a time, kept under ``benchmarks/results/`` as each finishes.

For every dataset of ``../shared/data`` that has a train split (cheapest first), each model is run with
``domainbert blurb --budget linkbert`` (its three seeds) into ``--out/<name>/``; the suite is asked for
every dataset done so far, so its ``results.json`` and ``report.md`` always cover them all (the finished
ones are read back, not trained again). The compact outputs are then copied to
``--keep/<name>/linkbert/`` (``benchmarks/keep_results.py``: metrics, selection, every run's result and
the test predictions; never weights), the models compared there (``domainbert report``: paired tests
and bootstrap intervals), and with ``--commit`` that dataset's files are committed. Everything resumes:
rerun the same command after an interruption.

Models are ``NAME=PATH``; ``NAME=random-init:PATH`` is PATH's shape and vocabulary from random weights,
initialised as pretraining began (made once, into ``--out/NAME-model``).

  python benchmarks/blurb_tables.py --models small-cpu=runs/small-cpu/export \\
      small-cpu-random-init=random-init:runs/small-cpu/export [--datasets gad biosses] [--commit]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keep_results import keep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the datasets with a train split in ../shared/data, cheapest first under the LinkBERT budget (EBM-PICO
#: has none there; BC2GM and DDI are not there)
ORDER = ("biosses", "gad", "ncbi-disease", "bc5-chem", "bc5-disease", "bioasq", "pubmedqa", "jnlpba",
         "chemprot", "hoc")


def model_path(name: str, spec: str, out: Path) -> Path:
    """The model folder a ``--models`` value names, making the random-init one if asked."""
    if not spec.startswith("random-init:"):
        return Path(spec)
    from domainbert.quickstart import random_init_model
    from domainbert.train.args import RECIPE_EXTRA, load_recipe

    pretrained = Path(spec.removeprefix("random-init:"))
    fields = {k: v for k, v in load_recipe("small-cpu").items() if k not in RECIPE_EXTRA}
    return random_init_model(pretrained, out / f"{name}-model", fields)


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH")
    ap.add_argument("--datasets", nargs="+", choices=ORDER, default=list(ORDER))
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tables")
    ap.add_argument("--keep", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--commit", action="store_true", help="commit each dataset's kept outputs as it finishes")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.models)
    paths = {name: model_path(name, spec, args.out) for name, spec in models.items()}
    done: list[str] = []
    for dataset in [d for d in ORDER if d in args.datasets]:
        done.append(dataset)
        for name, path in paths.items():
            print(f"== {name}: {dataset}", flush=True)
            subprocess.run([sys.executable, "-m", "domainbert", "blurb", "--model", str(path), "--name", name,
                            "--tasks", *done, "--budget", "linkbert", "--data-dir", str(args.data_dir),
                            "--out", str(args.out / name), "--results-tsv", str(args.out / "blurb_results.tsv")],
                           check=True)
            keep(args.out / name, args.keep / name / "linkbert")
        kept = [args.keep / name / "linkbert" for name in paths]
        if len(kept) > 1:
            comparison = args.keep / "linkbert-comparison"
            subprocess.run([sys.executable, "-m", "domainbert", "report", *map(str, kept), "--name", *paths,
                            "--out", str(comparison)], check=True)
            kept.append(comparison)
        if args.commit:
            git("add", *map(str, kept))
            git("commit", "-q", "-m", f"BLURB tables (LinkBERT budget): {dataset} for {', '.join(paths)}",
                "--", *map(str, kept))


if __name__ == "__main__":
    main()
