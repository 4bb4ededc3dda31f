"""`domainbert pretrain` end to end on real PubMed text: prepare → pretrain 30 steps → the exact files
written → export loads in transformers; a real `kill -9` then resume; a 2-process torchrun run with
gloo matching a 1-process run; every shipped recipe validates; bad settings refused."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import transformers

from conftest import REPO
from domainbert.cli import main
from domainbert.model.configuration import PRESETS
from domainbert.train.optim import get_lr
from domainbert.train.pretrain import PretrainArgs, checkpoint_dirs, load_recipe

RECIPES = REPO / "src" / "domainbert" / "train" / "recipes"
TINY = str(RECIPES / "tiny.yaml")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
    """A 3k vocabulary and two prepared directories (train, held out) from real abstracts."""
    root = tmp_path_factory.mktemp("pretrain")
    corpus = shared_data / "pubmed_corpus"
    assert main(["vocab", "build", "--corpus", str(corpus / "ncbi_disease_train_dev.txt"),
                 "--vocab-size", "3000", "--out", str(root / "vocab")]) == 0
    for name, src in (("data", "ncbi_disease_train_dev.txt"), ("heldout", "medline16n0902.txt")):
        assert main(["data", "prepare", "--corpus", str(corpus / src), "--vocab", str(root / "vocab"),
                     "--out", str(root / name), "--dupe-factor", "1", "--min-words", "0", "--quiet"]) == 0
    return root


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "domainbert", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kw)


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if not r.get("eval")]


def test_tiny_end_to_end_writes_the_exact_files_and_exports_for_transformers(prepared, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(prepared / "data"), "--eval-data", str(prepared / "heldout"),
                 "--out", str(run), "--recipe", TINY, "--no-progress"]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "export", "metrics.jsonl", "run_config.json",
                                                     "tensorboard", "tokenizer"]
    stats = "vocab_stats.json"  # kept with the run for the model card
    assert (run / "tokenizer" / stats).read_bytes() == (prepared / "vocab" / stats).read_bytes()
    assert [c.name for c in checkpoint_dirs(run)] == ["step-00000020", "step-00000030"]  # keep_last 2
    assert sorted(p.name for p in (run / "checkpoints" / "step-00000030").iterdir()) == ["training_state.pt"]
    assert sorted(p.name for p in (run / "export").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if not r.get("eval")]
    evals = [r for r in rows if r.get("eval")]
    assert [r["step"] for r in train] == list(range(1, 31))
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert {"mlm_accuracy", "nsp_accuracy", "lr", "tokens_per_s"} <= set(train[0])
    measured = [r["step"] for r in train if r["mlm_accuracy"] is not None]
    assert measured == [5, 10, 15, 20, 25, 30]  # accuracies on the recipe's logging steps
    assert {"eval_mlm_loss", "eval_mlm_accuracy", "eval_perplexity", "eval_nsp_accuracy"} <= set(evals[0])
    assert train[-1]["loss"] < train[0]["loss"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    # Resuming the finished run with another learning rate is refused before anything is written.
    before = (run / "run_config.json").read_bytes()
    assert main(["pretrain", "--data", str(prepared / "data"), "--out", str(run), "--recipe", TINY,
                 "--learning-rate", "0.5", "--no-progress"]) == 1
    assert (run / "run_config.json").read_bytes() == before

    # the export loads in transformers, with its tokenizer, and gives domainbert's outputs
    from domainbert.model.modeling import BertForPreTraining

    ours = BertForPreTraining.from_pretrained(run / "export").eval()
    theirs = transformers.BertForPreTraining.from_pretrained(run / "export").eval()
    tok = transformers.AutoTokenizer.from_pretrained(run / "export")
    inputs = tok(["Mutations in the BRCA1 gene cause breast cancer.", "Aspirin inhibits platelets."],
                 padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).prediction_logits, theirs(**inputs).prediction_logits,
                                   rtol=0, atol=1e-5)
    assert isinstance(transformers.AutoModelForMaskedLM.from_pretrained(run / "export"), transformers.BertForMaskedLM)

    # phase 2 continues from phase 1's export (here at the same length; the recipe's phase 2 uses 512)
    phase2 = tmp_path / "phase2"
    assert main(["pretrain", "--data", str(prepared / "data"), "--out", str(phase2), "--recipe", TINY,
                 "--model", str(run / "export"), "--max-steps", "2", "--eval-every", "0", "--no-progress"]) == 0
    assert losses(phase2)[0] < train[0]["loss"] - 0.1  # it starts where phase 1 ended, not from scratch
    assert json.loads((phase2 / "run_config.json").read_text())["model"] == str(run / "export")

    # `domainbert export` of an older step
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "step20"), "--step", "20"]) == 0
    assert (tmp_path / "step20" / "vocab.txt").is_file()


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def _kill_when_checkpointed(cmd: list[str], run: Path, env: dict | None = None) -> int:
    """Start ``cmd``, SIGKILL it and every process it started (torchrun's workers) at once when two
    checkpoints exist; returns the newest surviving checkpoint's step."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, **(env or {})})
    deadline = time.time() + 180
    while time.time() < deadline and len(checkpoint_dirs(run)) < 2 and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read()[-2000:]}"
    tree = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]  # torchrun's workers
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs([p for p in map(_process, tree) if p is not None], timeout=30)
    survivors = checkpoint_dirs(run)
    assert survivors, "no checkpoint was written before the kill"
    return int(survivors[-1].name.split("-")[1])


def test_kill_9_then_resume_equals_the_uninterrupted_run_bit_for_bit(prepared, tmp_path):
    """Dropout on, the settings pass included, fp32: the killed-and-resumed run logs exactly the losses
    of a run never interrupted, one row per step (the rows a killed run logged past its checkpoint
    are dropped, not duplicated)."""
    run = tmp_path / "run"
    args = ["pretrain", "--data", str(prepared / "data"), "--out", str(run), "--recipe", TINY, "--precision", "fp32",
            "--max-steps", "400", "--save-every", "3", "--log-every", "10", "--eval-every", "0", "--no-progress"]
    last_step = _kill_when_checkpointed([sys.executable, "-m", "domainbert", *args], run)
    assert 6 <= last_step < 400
    done = cli(*args[:-1], "--stop-after", "6", "--no-progress")
    assert done.returncode == 0, done.stderr
    straight = tmp_path / "straight"
    args[args.index(str(run))] = str(straight)
    ref = cli(*args[:-1], "--stop-after", str(last_step + 6), "--no-progress")
    assert ref.returncode == 0, ref.stderr
    resumed, uninterrupted = _rows(run), _rows(straight)
    assert [r["step"] for r in resumed] == list(range(1, last_step + 7))  # no hole, no duplicate
    assert [r["loss"] for r in resumed] == [r["loss"] for r in uninterrupted]  # bit for bit
    assert not list((run / "checkpoints").glob(".tmp-*"))


@pytest.mark.distributed
def test_two_process_torchrun_matches_one_process_at_the_same_global_batch(prepared, tmp_path):
    common = ["--data", str(prepared / "data"), "--recipe", TINY, "--max-steps", "6", "--eval-every", "0",
              "--global-batch-size", "16", "--micro-batch-size", "8", "--set", "hidden_dropout_prob=0",
              "--set", "attention_probs_dropout_prob=0", "--no-progress"]
    one = cli("pretrain", "--out", str(tmp_path / "one"), *common)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          "29613", "-m", "domainbert", "pretrain", "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    assert "16 = 8 x 1 x 2 process(es)" in two.stdout
    torch.testing.assert_close(torch.tensor(losses(tmp_path / "two")), torch.tensor(losses(tmp_path / "one")),
                               rtol=1e-4, atol=1e-4)
    assert [c.name for c in checkpoint_dirs(tmp_path / "two")] == ["step-00000006"]  # rank 0 wrote it, once


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_validates(recipe):
    data = load_recipe(recipe)
    args = PretrainArgs(**{k: v for k, v in data.items() if k not in ("model", "model_overrides")})
    assert data["model"] in PRESETS
    if recipe.stem == "pubmedbert-base":  # the paper's settings
        assert (args.global_batch_size, args.learning_rate, args.warmup) == (8192, 6e-4, 0.1)
        phase2 = PretrainArgs(**{k: v for k, v in load_recipe(recipe.with_name("pubmedbert-base-phase2.yaml")).items()
                                 if k != "model"})
        assert args.max_steps + phase2.max_steps == 62_500


def test_max_minutes_fits_the_schedule_to_the_time_and_a_resume_keeps_it(prepared, tmp_path, capsys):
    long = tmp_path / "long.yaml"  # the tiny recipe with a schedule far longer than the time allows
    long.write_text(Path(TINY).read_text().replace("max_steps: 30", "max_steps: 100000"))
    run = tmp_path / "run"
    cmd = ["pretrain", "--data", str(prepared / "data"), "--out", str(run), "--recipe", str(long),
           "--max-minutes", "0.04", "--no-progress"]
    assert main(cmd) == 0
    said = capsys.readouterr().out
    fitted = json.loads((run / "run_config.json").read_text())["args"]["max_steps"]
    assert 4 <= fitted < 100000 and f"fits --max-minutes 0.04: {fitted} steps" in said
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] <= fitted
    # every step's rate is on the fitted schedule (warmup and decay over `fitted` steps, not 100,000)
    a = json.loads((run / "run_config.json").read_text())["args"]
    assert [r["lr"] for r in rows if not r.get("eval")] == [
        get_lr(r["step"] - 1, fitted, a["learning_rate"], a["warmup"], a["decay"]) for r in rows if not r.get("eval")]
    assert main(cmd) == 0  # a resume keeps the fitted schedule (the checkpoint refuses any other)
    assert json.loads((run / "run_config.json").read_text())["args"]["max_steps"] == fitted
    assert main([*cmd[:-3], "--max-steps", "100000", "--stop-after", "1"]) == 1  # another schedule is refused
    assert "max_steps" in capsys.readouterr().err


def test_bad_settings_and_mismatched_data_are_refused_in_one_line(prepared, tmp_path, capsys):
    def refused(*args: str) -> str:
        assert main(["pretrain", "--data", str(prepared / "data"), "--out", str(tmp_path / "r"), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    assert "not divisible by micro_batch_size 8" in refused("--recipe", TINY, "--global-batch-size", "20")
    assert "max_position_embeddings 64 is below the data's max_seq_len 128" in refused(
        "--model", "tiny", "--max-steps", "2")  # the tiny preset has 64 positions; the data is 128 long
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny\nlearning_rte: 0.1\n")
    assert "unknown option(s) learning_rte" in refused("--recipe", str(bad))
    assert "vocab_size 99 is below the data's 3000 ids" in refused(
        "--recipe", TINY, "--set", "vocab_size=99")
    assert not (tmp_path / "r" / "checkpoints").exists()
    assert not (tmp_path / "r").exists()  # refused before anything was written: no folder left
    # A second run into a run directory another run is writing to is refused, not interleaved.
    busy = tmp_path / "busy"
    busy.mkdir()
    with (busy / ".pretrain.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert main(["pretrain", "--data", str(prepared / "data"), "--out", str(busy), "--recipe", TINY]) == 1
        assert "another `domainbert pretrain` is writing to" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.distributed
def test_two_process_kill_9_then_resume_equals_the_uninterrupted_two_process_run(prepared, tmp_path):
    """Every rank's RNG states are in the checkpoint: two gloo ranks killed together and resumed log
    the losses of two ranks never interrupted (dropout on, fp32)."""
    def torchrun(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                str(_free_port()), "-m", "domainbert", "pretrain", "--data", str(prepared / "data"), "--out", str(out),
                "--recipe", TINY, "--precision", "fp32", "--max-steps", "400", "--global-batch-size", "16",
                "--micro-batch-size", "8", "--save-every", "3", "--eval-every", "0", "--no-progress", *extra]

    env = {"OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    last_step = _kill_when_checkpointed(torchrun(run), run, env=env)
    resumed = subprocess.run(torchrun(run, "--stop-after", "4"), capture_output=True, text=True,
                             env={**os.environ, **env})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = subprocess.run(torchrun(tmp_path / "straight", "--stop-after", str(last_step + 4)),
                              capture_output=True, text=True, env={**os.environ, **env})
    assert straight.returncode == 0, straight.stderr[-3000:]
    rows, reference = _rows(run), _rows(tmp_path / "straight")
    assert [r["step"] for r in rows] == list(range(1, last_step + 5))
    assert [r["loss"] for r in rows] == [r["loss"] for r in reference]


def test_unpad_trains_the_same_model_as_the_padded_path(prepared, tmp_path):
    """--unpad (the encoder on the real tokens only, its Packing found on the host) gives the padded
    run's losses, up to float rounding, step by step (fp32, dropout off)."""
    runs = {}
    for flag in ("--no-unpad", "--unpad"):
        out = tmp_path / flag.strip("-")
        assert main(["pretrain", "--data", str(prepared / "data"), "--out", str(out), "--recipe", TINY,
                     "--max-steps", "4", "--eval-every", "0", "--dropout", "0", "--precision", "fp32", flag,
                     "--no-progress"]) == 0
        runs[flag] = losses(out)
        assert json.loads((out / "run_config.json").read_text())["args"]["unpad"] == (flag == "--unpad")
    assert len(runs["--unpad"]) == 4
    assert runs["--unpad"] == pytest.approx(runs["--no-unpad"], rel=0, abs=1e-4)


def test_quickstart_fits_its_schedule_to_what_is_left_of_its_minutes(prepared, tmp_path, monkeypatch):
    """Quickstart's minutes are the whole pretraining stage's: what ran before the schedule was fitted
    (here a settings pass made 1.5 s slower) comes off them, and about six evaluations end on the
    final step (floor division once put one a step before it, and one at every step of a short run)."""
    import domainbert.quickstart as quickstart

    real_verify, asked = quickstart.verify_settings, {}

    def slow_verify(*a, **kw):
        time.sleep(1.5)
        return real_verify(*a, **kw)

    def fitted_steps(model, source, args, minutes, device, **kw):
        since = kw.get("since")
        asked["seconds_left"] = minutes * 60 - (time.perf_counter() - since if since is not None else 0.0)
        return 7

    monkeypatch.setattr(quickstart, "verify_settings", slow_verify)
    monkeypatch.setattr(quickstart, "steps_in_minutes", fitted_steps)
    recipe, _ = quickstart.recipe_values()
    done = quickstart.pretrain_stage(tmp_path / "pretrain", prepared / "data", prepared / "heldout", 0.2, "tiny",
                                     False, recipe)
    assert asked["seconds_left"] <= 0.2 * 60 - 1.5
    assert done["steps"] == 7
    evals = [e["step"] for e in done["evals"]]
    assert evals[-1] == 7 and len(evals) == len(set(evals)) <= 6


def test_quickstart_spends_all_its_minutes_when_they_hold_more_steps_than_the_recipe(prepared, tmp_path,
                                                                                   monkeypatch):
    """The minutes are quickstart's budget: on a machine fast enough to fit more steps than the
    recipe's own schedule, the fitted steps run (the recipe's count once capped them, and on a fast
    machine the 10 minutes then ended after a few)."""
    import domainbert.quickstart as quickstart

    monkeypatch.setattr(quickstart, "steps_in_minutes", lambda *a, **kw: 9)
    recipe, _ = quickstart.recipe_values()
    done = quickstart.pretrain_stage(tmp_path / "pretrain", prepared / "data", prepared / "heldout", 0.2, "tiny",
                                     False, {**recipe, "max_steps": 5})
    assert done["steps"] == 9
