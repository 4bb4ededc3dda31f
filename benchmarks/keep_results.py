"""Copy the compact outputs of a finished ``domainbert blurb`` run into ``benchmarks/results/`` to commit.

Run folders do not outlive a session; these files do, and a later session (or anyone) rebuilds the
report from them without training: per dataset ``metrics.json``, ``selection.json``, every
``runs/*/result.json`` and ``runs/*/epochs.jsonl``, and the saved run's ``dev_predictions.jsonl`` and
``test_predictions.jsonl``; and the suite's ``results.json`` and ``report.md``. Model weights are never
copied.

    python benchmarks/keep_results.py runs/minilm-quick benchmarks/results/all-MiniLM-L6-v2/quick
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEPT = ("metrics.json", "selection.json", "dev_predictions.jsonl", "test_predictions.jsonl")


def keep(suite: Path, dest: Path) -> list[Path]:
    """Copy what a suite run in ``suite`` holds into ``dest`` (same layout); return the files written."""
    written = []
    for name in ("results.json", "report.md"):
        if (suite / name).is_file():
            dest.mkdir(parents=True, exist_ok=True)
            written.append(Path(shutil.copy2(suite / name, dest / name)))
    for dataset in sorted(p for p in suite.iterdir() if (p / "metrics.json").is_file()):
        files = [dataset / n for n in KEPT if (dataset / n).is_file()]
        files += sorted(dataset.glob("runs/*/result.json")) + sorted(dataset.glob("runs/*/epochs.jsonl"))
        for file in files:
            target = dest / dataset.name / file.relative_to(dataset)
            target.parent.mkdir(parents=True, exist_ok=True)
            written.append(Path(shutil.copy2(file, target)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="the --out folder of a `domainbert blurb` run")
    parser.add_argument("dest", type=Path, help="where under benchmarks/results/ to copy it")
    args = parser.parse_args()
    written = keep(args.suite, args.dest)
    print(f"kept {len(written)} file(s) in {args.dest}")


if __name__ == "__main__":
    main()
