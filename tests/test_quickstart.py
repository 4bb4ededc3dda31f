"""`domainbert quickstart` end to end with a tiny budget, from ../shared/data as the mirror: every
stage runs, the artifacts are where the summary says, the report holds real scores, and a second
run reuses the finished stages."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


def test_quickstart_runs_the_whole_recipe_and_reuses_finished_stages(shared_data, tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "domainbert", "quickstart", "--mirror", str(shared_data), "--out", str(out),
           "--minutes", "0.2", "--model-size", "tiny", "--corpus-files", "1", "--vocab-size", "3000",
           "--dupe-factor", "1", "--limit", "150", "--finetune-steps", "10", "--tasks", "ncbi-disease", "biosses",
           "--no-progress"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    for k in range(1, 6):
        assert f"[{k}/5]" in first.stdout
    summary = json.loads((out / "summary.json").read_text())
    for path in summary["artifacts"].values():
        assert Path(path).exists(), path
    assert (out / "pretrain" / "export" / "model.safetensors").is_file()
    assert summary["pretraining"]["steps"] >= 4 and summary["pretraining"]["evals"]
    assert summary["pretraining"]["last_loss"] < summary["pretraining"]["first_loss"]
    results = json.loads((out / "blurb" / "results.json").read_text())
    for name in ("ncbi-disease", "biosses"):
        test = results["datasets"][name]["test"]["mean"]
        assert isinstance(test, float) and math.isfinite(test)
    report = (out / "blurb" / "report.md").read_text()
    assert "NCBI-disease" in report and "81.16" in report
    assert f"report: {out / 'blurb' / 'report.md'}" in first.stdout

    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "85 already there" in second.stdout
    assert second.stdout.count("reusing") >= 3  # vocabulary and both example sets
