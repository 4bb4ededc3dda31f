"""Hugging Face Hub names wherever a model is taken, through huggingface_hub's own code (no mocks).

Two stand-ins for the Hub, both read by the real library:

* an offline cache in the Hub's documented layout (``$HF_HOME/hub/models--owner--name/`` with
  ``blobs/``, ``snapshots/<commit>/`` links into them and ``refs/main``) holding all-MiniLM-L6-v2's
  files, used with ``HF_HUB_OFFLINE=1``;
* a loopback HTTP server answering the Hub API calls ``snapshot_download`` makes (repo info, tree
  listing, HEAD and GET of ``resolve/<commit>/<file>``), set as ``HF_ENDPOINT``, for the download
  path: which files are fetched, revisions, private repos and ``HF_TOKEN``.

huggingface_hub reads ``HF_*`` when it is imported, so every command runs in its own process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from inference_models import minilm_dir, save_rule_ner, save_tiny_classifier, save_tiny_mlm

REPO = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
MINILM_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json")


def cli(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """``domainbert ARGS`` in a fresh process with ``env`` added (HF_* are read at import)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | env
    return subprocess.run([sys.executable, "-m", "domainbert", *args], capture_output=True, text=True,
                          env=full, timeout=timeout)


def write_cache(hf_home: Path, repo: str, commit: str, files: dict[str, Path], ref: str = "main") -> Path:
    """The Hub cache layout: content in blobs/<sha256>, snapshots/<commit>/<name> linked to it."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        blob = root / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(source, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def offline_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf_home")
    write_cache(home, REPO, COMMIT, {n: minilm_dir() / n for n in MINILM_FILES if (minilm_dir() / n).is_file()})
    return home


def test_offline_cache_model_info_and_embed_equal_the_directory(offline_home, tmp_path):
    env = {"HF_HOME": str(offline_home), "HF_HUB_OFFLINE": "1"}
    info = cli(["model", "info", REPO, "--json"], env)
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    snapshot = offline_home / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / COMMIT
    assert report["source"] == {"repo_id": REPO, "revision": "main", "commit": COMMIT, "directory": str(snapshot)}
    assert report["config"]["hidden_size"] == 384 and report["config"]["num_hidden_layers"] == 6
    text = tmp_path / "in.txt"
    text.write_text("BRCA1 mutations raise the risk of breast cancer.\n")
    by_id = cli(["embed", str(text), "--model", REPO, "--precision", "fp32"], env)
    by_dir = cli(["embed", str(text), "--model", str(minilm_dir()), "--precision", "fp32"], {})
    assert by_id.returncode == 0 and by_dir.returncode == 0, by_id.stderr + by_dir.stderr
    assert json.loads(by_id.stdout) == json.loads(by_dir.stdout)


def test_offline_and_not_cached_is_one_line_saying_how_to_fetch(offline_home):
    env = {"HF_HOME": str(offline_home), "HF_HUB_OFFLINE": "1"}
    for args in (["model", "info", "nobody/no-such-bert"],
                 ["embed", "--model", "nobody/no-such-bert"],
                 ["blurb", "--model", "nobody/no-such-bert", "--out", "unused", "--tasks", "gad"]):
        done = cli(args, env)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "not in the Hugging Face cache" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
        assert "hf download nobody/no-such-bert" in lines[0]
    assert not Path("unused").exists()


def test_a_value_that_can_only_be_a_path_is_not_sent_to_the_hub(tmp_path):
    done = cli(["model", "info", str(tmp_path / "no" / "such" / "dir")], {"HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0 and "does not exist: pass a model directory" in done.stderr
    assert "Hugging Face cache" not in done.stderr
    model = save_tiny_mlm(tmp_path / "tiny")
    done = cli(["model", "info", str(model), "--revision", "v1"], {})
    assert done.returncode != 0 and "drop --revision" in done.stderr


def test_finetune_and_blurb_record_the_repo_and_commit(offline_home, tmp_path, shared_data):
    env = {"HF_HOME": str(offline_home), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "ft"
    done = cli(["finetune", "--model", REPO, "--task", "gad", "--data-dir", str(shared_data), "--out", str(out),
                "--limit", "24", "--max-steps", "1", "--precision", "fp32"], env)
    assert done.returncode == 0, done.stderr
    source = json.loads((out / "metrics.json").read_text())["model_source"]
    assert (source["repo_id"], source["revision"], source["commit"]) == (REPO, "main", COMMIT)
    card = ModelCard.load(out / "model" / "README.md")  # the fine-tuned model names its Hub base
    assert card.data.base_model == REPO and f"`{REPO}` (Hugging Face Hub, commit `{COMMIT}`)" in card.text
    out = tmp_path / "suite"
    done = cli(["blurb", "--model", REPO, "--tasks", "biosses", "--data-dir", str(shared_data), "--out", str(out),
                "--limit", "16", "--max-steps", "1", "--precision", "fp32"], env)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["name"] == REPO and results["model_source"]["commit"] == COMMIT
    assert f"`{REPO}` (Hugging Face Hub, revision `main`, commit `{COMMIT}`)" in (out / "report.md").read_text()


# ============================================================================ a loopback Hub
class FakeHub:
    """Answers the Hub API calls of ``snapshot_download`` for a few repos held in memory.

    ``repos[repo_id] = {"refs": {name: commit}, "files": {commit: {path: bytes}}, "token": str | None}``;
    a repo with a token answers 401 without ``Authorization: Bearer <token>``, as a private repo does.
    """

    def __init__(self, repos: dict) -> None:
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: bytes, body: bool,
              headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if body:
            h.wfile.write(payload)

    def _error(self, h, status: int, code: str, body: bool) -> None:
        self._send(h, status, json.dumps({"error": code}).encode(), body,
                   {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"})

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = h.path.split("?")[0]
        self.requests.append((h.command, path))
        api = path.startswith("/api/models/")
        rest = path[len("/api/models/"):] if api else path.lstrip("/")
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(h, 404, "RepoNotFound", body)
        if repo.get("token") and h.headers.get("Authorization") != f"Bearer {repo['token']}":
            return self._error(h, 401, "RepoNotFound", body)
        if repo.get("gated"):
            return self._error(h, 403, "GatedRepo", body)
        kind, revision, filename = parts[2], parts[3] if len(parts) > 3 else "main", "/".join(parts[4:])
        commit = repo["refs"].get(revision, revision if revision in repo["files"] else None)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", body)
        files = repo["files"][commit]
        json_headers = {"Content-Type": "application/json", "X-Repo-Commit": commit}
        if api and kind == "revision":
            info = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": bool(repo.get("token")),
                    "siblings": [{"rfilename": name} for name in files]}
            return self._send(h, 200, json.dumps(info).encode(), body, json_headers)
        if api and kind == "tree":
            tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in files.items()]
            return self._send(h, 200, json.dumps(tree).encode(), body, json_headers)
        if not api and kind == "resolve":
            if filename not in files:
                return self._error(h, 404, "EntryNotFound", body)
            data = files[filename]
            return self._send(h, 200, data, body, {"X-Repo-Commit": commit,
                                                   "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
        return self._error(h, 404, "RepoNotFound", body)


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_download_fetches_only_what_a_bert_needs_then_works_offline(tmp_path):
    tiny = _folder_files(save_tiny_mlm(tmp_path / "tiny"))
    v1 = _folder_files(save_tiny_mlm(tmp_path / "tiny-v1", seed=1))
    head, old = "a" * 40, "b" * 40
    extras = {"pytorch_model.bin": b"not needed beside safetensors", "onnx/model.onnx": b"onnx",
              "README.md": b"---\nlicense: mit\n---\n", "tf_model.h5": b"h5"}
    repos = {"lab/tiny-bert": {"refs": {"main": head, "v1": old},
                               "files": {head: {**tiny, **extras}, old: v1}}}
    home = tmp_path / "home"
    with FakeHub(repos) as hub:
        env = {"HF_HOME": str(home), "HF_ENDPOINT": hub.endpoint}
        done = cli(["model", "info", "lab/tiny-bert", "--json"], env)
        assert done.returncode == 0, done.stderr
        source = json.loads(done.stdout)["source"]
        assert source["commit"] == head and source["revision"] == "main"
        snapshot = Path(source["directory"])
        assert snapshot == home / "hub" / "models--lab--tiny-bert" / "snapshots" / head
        assert sorted(p.name for p in snapshot.iterdir()) == sorted(tiny)  # no .bin, onnx, h5 or README
        assert all((snapshot / n).read_bytes() == data for n, data in tiny.items())
        downloaded = {p for m, p in hub.requests if m == "GET" and "/resolve/" in p}
        assert not any(p.endswith(("pytorch_model.bin", ".onnx", ".h5", "README.md")) for p in downloaded)

        done = cli(["model", "info", "lab/tiny-bert", "--revision", "v1", "--json"], env)
        assert done.returncode == 0, done.stderr
        source = json.loads(done.stdout)["source"]
        assert (source["revision"], source["commit"]) == ("v1", old)
        assert (Path(source["directory"]) / "model.safetensors").read_bytes() == v1["model.safetensors"]

        done = cli(["model", "info", "lab/tiny-bert", "--revision", "v9"], env)
        assert done.returncode != 0 and "has no revision 'v9'" in done.stderr
        done = cli(["model", "info", "lab/no-such-bert"], env)
        assert done.returncode != 0 and "no Hub model of that name" in done.stderr
    # The Hub is gone; the cache answers.
    done = cli(["model", "info", "lab/tiny-bert", "--json"], {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["commit"] == head


def test_bin_only_repo_and_a_private_repo_with_hf_token(tmp_path):
    model_dir = save_tiny_classifier(tmp_path / "cls", ["yes", "no"], "single_label_classification")
    files = _folder_files(model_dir)
    torch.save(load_file(model_dir / "model.safetensors"), tmp_path / "pytorch_model.bin")
    bin_only = {n: d for n, d in files.items() if n != "model.safetensors"}
    bin_only["pytorch_model.bin"] = (tmp_path / "pytorch_model.bin").read_bytes()
    commit = "c" * 40
    repos = {"lab/private-bert": {"refs": {"main": commit}, "files": {commit: bin_only}, "token": "hf_secret"},
             "lab/gated-bert": {"refs": {"main": commit}, "files": {commit: bin_only}, "gated": True}}
    home = tmp_path / "home"
    with FakeHub(repos) as hub:
        env = {"HF_HOME": str(home), "HF_ENDPOINT": hub.endpoint}
        done = cli(["model", "info", "lab/private-bert"], env)
        assert done.returncode != 0 and "HF_TOKEN" in done.stderr
        done = cli(["model", "info", "lab/gated-bert"], env)
        assert done.returncode != 0 and "gated Hub model: accept its terms" in done.stderr
        done = cli(["model", "info", "lab/private-bert", "--json"], {**env, "HF_TOKEN": "hf_secret"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        snapshot = Path(report["source"]["directory"])
        assert (snapshot / "pytorch_model.bin").is_file() and not (snapshot / "model.safetensors").exists()
        assert report["weights_initialised"] == [] and report["labels"]


def test_update_card_refuses_a_hub_model_before_fine_tuning(offline_home, tmp_path):
    done = cli(["blurb", "--model", REPO, "--tasks", "gad", "--out", str(tmp_path / "o"), "--update-card"],
               {"HF_HOME": str(offline_home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0 and "--local-dir" in done.stderr and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """An offline cache holding three tiny models (MLM, rule-based NER, classifier) as Hub repos."""
    root = tmp_path_factory.mktemp("tiny_hub")
    dirs = {"lab/tiny-mlm": save_tiny_mlm(root / "mlm"), "lab/rule-ner": save_rule_ner(root / "ner"),
            "lab/tiny-cls": save_tiny_classifier(root / "cls", ["yes", "no"], "single_label_classification")}
    home = root / "home"
    for i, (repo, folder) in enumerate(dirs.items()):
        write_cache(home, repo, f"{i + 1}" * 40, {p.name: p for p in folder.iterdir() if p.is_file()})
    return home, dirs


@pytest.mark.parametrize("command,repo", [("fill-mask", "lab/tiny-mlm"), ("ner", "lab/rule-ner"),
                                          ("classify", "lab/tiny-cls")])
def test_prediction_commands_give_the_same_output_from_a_hub_id(tiny_hub, tmp_path, command, repo):
    home, dirs = tiny_hub
    text = tmp_path / "in.txt"
    text.write_text("Patients with breast cancer and [MASK] mellitus.\nAspirin inhibits [MASK].\n")
    by_id = cli([command, str(text), "--model", repo, "--precision", "fp32"],
                {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    by_dir = cli([command, str(text), "--model", str(dirs[repo]), "--precision", "fp32"], {})
    assert by_id.returncode == 0 and by_dir.returncode == 0, by_id.stderr + by_dir.stderr
    assert by_id.stdout == by_dir.stdout and by_id.stdout.count("\n") == 2


def test_serve_takes_hub_ids(tiny_hub):
    home, _ = tiny_hub
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(home),
                                                                           "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "domainbert", "serve", "--model", "lab/tiny-mlm", "--ner-model",
                               "lab/rule-ner", "--port", str(port), "--precision", "fp32"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.2)
        assert {"fill_mask", "ner"} <= {k for k, v in health["models"].items() if v}
        entities = httpx.post(f"http://127.0.0.1:{port}/ner", json={"texts": ["breast cancer"]}).json()
        assert [e["text"] for e in entities["results"][0]["entities"]] == ["breast cancer"]
        assert str(home) in health["models"]["ner"]  # the snapshot in the Hub cache
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_pretrain_continues_from_a_hub_id_and_records_it(tiny_hub, tmp_path, shared_data):
    home, dirs = tiny_hub
    corpus = shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt"
    offline = {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    # the data takes the model's own vocabulary, by its Hub id too
    assert cli(["data", "prepare", "--corpus", str(corpus), "--vocab", "lab/tiny-mlm", "--out",
                str(tmp_path / "data"), "--dupe-factor", "1", "--quiet"], offline).returncode == 0
    vocab_dir = json.loads((tmp_path / "data" / "manifest.json").read_text())["vocab"]["dir"]
    assert vocab_dir.startswith(str(home)) and vocab_dir.endswith("1" * 40)
    recipe = Path(__file__).resolve().parents[1] / "src" / "domainbert" / "train" / "recipes" / "tiny.yaml"
    done = cli(["pretrain", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--recipe", str(recipe),
                "--model", "lab/tiny-mlm", "--max-steps", "2", "--eval-every", "0", "--no-progress"],
               {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    run_config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_config["model_source"]["repo_id"] == "lab/tiny-mlm"
    assert run_config["model_source"]["commit"] == "1" * 40
    card = (tmp_path / "run" / "export" / "README.md").read_text()
    assert "base_model: lab/tiny-mlm" in card and "further from `lab/tiny-mlm`" in card
