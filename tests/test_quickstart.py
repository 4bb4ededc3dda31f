"""`domainbert quickstart` end to end with a tiny budget, from ../shared/data as the mirror: every
stage runs, the artifacts are where the summary says, the report holds real scores, and a second
run reuses the finished stages."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import math
import os
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

from domainbert.data.sources import GITHUB_RAW, blurb_files, corpus_files, current_pubmed_year
from domainbert.quickstart import HELD_OUT_XML


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
    # What pretraining bought: the same shape from the weights pretraining started from, fine-tuned alike
    baseline = json.loads((out / "blurb-random-init" / "results.json").read_text())
    assert baseline["name"] == "random init" and baseline["model"] == str(out / "random-init")
    random_config = json.loads((out / "random-init" / "config.json").read_text())
    assert random_config == json.loads((out / "pretrain" / "export" / "config.json").read_text())
    comparison = (out / "blurb" / "comparison.md").read_text()
    assert "# BLURB comparison: pretrained vs random init" in comparison and "NCBI-disease" in comparison
    ncbi = baseline["datasets"]["ncbi-disease"]["test"]["mean"]
    assert summary["random_init"]["tasks"]["ncbi-disease"]["mean"] == ncbi
    assert "pretraining bought" in first.stdout and "random-init model's fine-tuning took" in first.stdout
    assert f"report: {out / 'blurb' / 'comparison.md'}" in first.stdout
    # The fine-tuned NER model is kept and served beside the pretrained one, as the summary's last line says
    ner_model = out / "blurb" / "ncbi-disease" / "model"
    serve = f"domainbert serve --model {out / 'pretrain' / 'export'} --ner-model {ner_model}"
    assert summary["serve"] == serve and first.stdout.rstrip().endswith(serve)
    from fastapi.testclient import TestClient

    from domainbert.serve.app import create_app

    with TestClient(create_app(out / "pretrain" / "export", ner_model, precision="fp32")) as client:
        health = client.get("/health").json()
        assert health["models"]["fill_mask"] and health["models"]["ner"], health
        assert client.post("/ner", json={"texts": ["Patients with breast cancer."]}).status_code == 200
        assert client.post("/fill-mask", json={"texts": ["Patients with breast [MASK]."]}).status_code == 200

    metrics_before = (out / "pretrain" / "metrics.jsonl").read_bytes()
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "85 already there" in second.stdout
    assert second.stdout.count("reusing") >= 4  # vocabulary, both example sets and pretraining
    assert (out / "pretrain" / "metrics.jsonl").read_bytes() == metrics_before  # no new step
    again = json.loads((out / "blurb" / "results.json").read_text())
    for name in ("ncbi-disease", "biosses"):  # fine-tuning reused: the same runs, the same scores
        assert again["datasets"][name]["test"] == results["datasets"][name]["test"]


def test_quickstart_connected_path_reads_pubmed_xml_as_text(shared_data, tmp_path):
    """Without --mirror, quickstart fetches PubMed baseline file 1 (MEDLINE XML) and the BLURB files
    from their public sources, here a loopback server standing in for NLM and GitHub; the vocabulary
    is learned from the parsed abstracts, never from XML markup. (The stand-in baseline file holds the
    bytes of the held-out MEDLINE file: this checks the path, not the held-out score.)"""
    root = tmp_path / "www"
    name = f"pubmed{current_pubmed_year():02d}n0001.xml.gz"
    baseline = root / "pubmed" / "baseline"
    baseline.mkdir(parents=True)
    data = (shared_data / HELD_OUT_XML).read_bytes()
    (baseline / name).write_bytes(data)
    (baseline / f"{name}.md5").write_text(f"MD5({name})= {hashlib.md5(data).hexdigest()}\n")
    for f in blurb_files() + corpus_files():
        if f.url is not None and f.url.startswith(GITHUB_RAW):
            target = root / "raw" / urllib.parse.unquote(f.url[len(GITHUB_RAW) + 1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(shared_data / f.path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        env = {**os.environ, "DOMAINBERT_PUBMED_URL": f"{url}/pubmed/baseline/", "DOMAINBERT_GITHUB_RAW": f"{url}/raw"}
        out = tmp_path / "qs"
        cmd = [sys.executable, "-m", "domainbert", "quickstart", "--out", str(out), "--minutes", "0.1",
               "--model-size", "tiny", "--vocab-size", "3000", "--dupe-factor", "1", "--limit", "50",
               "--finetune-steps", "4", "--tasks", "biosses", "--no-baseline", "--no-progress"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        httpd.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "data" / "pubmed_baseline" / name).read_bytes() == data
    stats = json.loads((out / "vocab" / "vocab_stats.json").read_text())
    assert stats["corpus_files"] == [str(out / "data" / "pubmed_baseline" / name)]
    assert stats["corpus"]["counts"]["kept"] > 400
    vocab = set((out / "vocab" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert not {"abstracttext", "medlinecitation", "datecreated", "articletitle", "pubmedarticle"} & vocab
    assert json.loads((out / "blurb" / "results.json").read_text())["datasets"]["biosses"]["status"] == "complete"
