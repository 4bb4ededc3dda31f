"""Bad input, table-driven, across every command and the HTTP service.

Each case runs one command on a broken input and checks what a user must get: a non-zero exit, one
line on standard error that says what is wrong (no traceback), and nothing left behind or changed
(the case's folder and every fixture are compared before and after). The cases are the classes a
new user hits: bad bytes, malformed files, wrong types and values, unusable paths, missing devices,
bad flags.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from domainbert.cli import main
from inference_models import save_rule_ner, save_tiny_mlm


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fx(tmp_path_factory, shared_data: Path) -> dict[str, Path]:
    """Good inputs the cases break: models, a vocabulary, prepared data, a pretraining run, text."""
    root = tmp_path_factory.mktemp("fixtures")
    corpus = root / "corpus.txt"
    blocks = (shared_data / "pubmed_corpus" / "ncbi_disease_train_dev.txt").read_text(encoding="utf-8").split("\n\n")
    corpus.write_text("\n\n".join(blocks[:60]) + "\n", encoding="utf-8")
    assert main(["vocab", "build", "--corpus", str(corpus), "--vocab-size", "1500", "--min-words", "0",
                 "--out", str(root / "vocab"), "--quiet"]) == 0
    assert main(["data", "prepare", "--corpus", str(corpus), "--vocab", str(root / "vocab"), "--out",
                 str(root / "data"), "--min-words", "0", "--dupe-factor", "1", "--quiet"]) == 0
    run = root / "run"
    assert main(["pretrain", "--data", str(root / "data"), "--out", str(run), "--recipe", "tiny",
                 "--max-steps", "2", "--save-every", "1", "--eval-every", "0", "--no-progress"]) == 0
    mlm = save_tiny_mlm(root / "mlm")
    ner = save_rule_ner(root / "ner")
    texts = root / "texts.txt"
    texts.write_text("Mutations in BRCA1 cause [MASK] cancer.\n", encoding="utf-8")
    latin1 = root / "latin1.txt"
    latin1.write_bytes("Caf\xe9 society [MASK].\n".encode("latin-1"))
    return {"root": root, "corpus": corpus, "vocab": root / "vocab", "data": root / "data", "run": run,
            "mlm": mlm, "ner": ner, "texts": texts, "latin1": latin1, "shared": shared_data}


def _snapshot(*roots: Path) -> dict[str, str]:
    """Every file and folder under ``roots`` with a digest of its bytes (folders: "dir")."""
    seen: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted([root, *root.rglob("*")]):
            seen[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


@dataclass
class Case:
    name: str
    argv: Callable[[dict[str, Path], Path], list[str]]
    """The command line, from the fixtures and the case's own folder."""
    says: str
    """A piece of the one-line error."""
    prepare: Callable[[dict[str, Path], Path], None] | None = None
    """Builds the broken input inside the case's folder."""


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _corrupt_safetensors(fx: dict[str, Path], work: Path) -> None:
    model = _copy(fx["mlm"], work / "model")
    (model / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors")


def _config(fx: dict[str, Path], work: Path, change: Callable[[dict], None]) -> None:
    model = _copy(fx["mlm"], work / "model")
    config = json.loads((model / "config.json").read_text())
    change(config)
    (model / "config.json").write_text(json.dumps(config))


def _vocab_without_mask(fx: dict[str, Path], work: Path) -> None:
    model = _copy(fx["mlm"], work / "model")
    (model / "tokenizer.json").unlink()
    lines = (model / "vocab.txt").read_text().splitlines()
    (model / "vocab.txt").write_text("\n".join(t for t in lines if t != "[MASK]") + "\n")


def _data_copy(fx: dict[str, Path], work: Path, change: Callable[[Path], None]) -> None:
    data = _copy(fx["data"], work / "data")
    change(data)


def _drop_manifest_key(data: Path) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    del manifest["vocab"]
    (data / "manifest.json").write_text(json.dumps(manifest))


def _other_checksum(data: Path) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["config_checksum"] = "0" * 64  # as if prepared with other settings
    (data / "manifest.json").write_text(json.dumps(manifest))


def _truncate_shard(data: Path) -> None:
    ids = data / "shard-00000" / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[: ids.stat().st_size // 2])


def _wrong_checkpoint(fx: dict[str, Path], work: Path) -> None:
    run = _copy(fx["run"], work / "run")
    for state in run.glob("checkpoints/step-*/training_state.pt"):
        torch.save({"weights": torch.zeros(2)}, state)


def _recipe(text: str) -> Callable[[dict[str, Path], Path], None]:
    def write(fx: dict[str, Path], work: Path) -> None:
        (work / "recipe.yaml").write_text(text)
    return write


def _ner_set(fx: dict[str, Path], work: Path, train: bytes) -> None:
    folder = work / "set"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(train)
    (folder / "dev.tsv").write_text("BRCA1\tB-Gene\n\n")
    (folder / "test.tsv").write_text("TP53\tB-Gene\n\n")


def _relation_set(fx: dict[str, Path], work: Path, train: bytes) -> None:
    folder = work / "set"
    folder.mkdir()
    (folder / "train.tsv").write_bytes(train)
    for name in ("dev.tsv", "test.tsv"):
        (folder / name).write_text("a.1\t@GENE$ causes @DISEASE$.\t1\nb.1\t@GENE$ and @DISEASE$.\t0\n")


def _file(name: str, text: str = "x") -> Callable[[dict[str, Path], Path], None]:
    def write(fx: dict[str, Path], work: Path) -> None:
        (work / name).write_text(text)
    return write


def _existing_output(fx: dict[str, Path], work: Path) -> None:
    (work / "out.jsonl").write_text('{"kept": true}\n')


NO_CUDA = not torch.cuda.is_available()
F, W = "fx", "work"  # readability of the table below: fixtures, the case's folder

CASES = [
    # ---- vocab build
    Case("vocab: non-UTF-8 corpus", lambda f, w: ["vocab", "build", "--corpus", str(f["latin1"]), "--min-words", "0",
                                                  "--out", str(w / "v")], "not valid UTF-8"),
    Case("vocab: missing corpus", lambda f, w: ["vocab", "build", "--corpus", str(w / "nope.txt"), "--out",
                                                str(w / "v")], "not found"),
    Case("vocab: size too small", lambda f, w: ["vocab", "build", "--corpus", str(f["corpus"]), "--vocab-size", "3",
                                                "--out", str(w / "v")], "too small"),
    Case("vocab: --out is a file", lambda f, w: ["vocab", "build", "--corpus", str(f["corpus"]), "--min-words", "0",
                                                 "--vocab-size", "500", "--out", str(w / "file")], "not a directory",
         _file("file")),
    Case("vocab: --out unusable", lambda f, w: ["vocab", "build", "--corpus", str(f["corpus"]), "--min-words", "0",
                                                "--vocab-size", "500", "--out", "/proc/domainbert/v"], "/proc"),
    Case("vocab: negative --min-words", lambda f, w: ["vocab", "build", "--corpus", str(f["corpus"]), "--min-words",
                                                      "-1", "--out", str(w / "v")], "min_words"),
    Case("vocab: truncated gzip", lambda f, w: ["vocab", "build", "--corpus", str(w / "c.txt.gz"), "--out",
                                                str(w / "v")], "truncated gzip",
         lambda f, w: (w / "c.txt.gz").write_bytes(gzip.compress(b"some words here\n" * 500)[:-30])),
    Case("vocab: folder without corpus files", lambda f, w: ["vocab", "build", "--corpus", str(w / "empty"), "--out",
                                                             str(w / "v")], "no corpus files",
         lambda f, w: (w / "empty").mkdir()),
    Case("vocab: not a number", lambda f, w: ["vocab", "build", "--corpus", str(f["corpus"]), "--vocab-size", "big",
                                              "--out", str(w / "v")], "invalid int value"),
    # ---- vocab encode
    Case("encode: missing vocabulary", lambda f, w: ["vocab", "encode", "--vocab", str(w / "none"), str(f["texts"])],
         "none"),
    Case("encode: non-UTF-8 input", lambda f, w: ["vocab", "encode", "--vocab", str(f["vocab"]), str(f["latin1"])],
         "UTF-8"),
    Case("encode: vocabulary without [MASK]", lambda f, w: ["vocab", "encode", "--vocab", str(w / "model"),
                                                            str(f["texts"])], "[MASK]", _vocab_without_mask),
    # ---- data download
    Case("download: mirror missing", lambda f, w: ["data", "download", "--blurb", "biosses", "--mirror",
                                                   str(w / "nowhere"), "--out", str(w / "d"), "--no-progress"],
         "nowhere"),
    Case("download: unknown dataset", lambda f, w: ["data", "download", "--blurb", "blurbish", "--out", str(w / "d")],
         "unknown BLURB dataset"),
    Case("download: bad range", lambda f, w: ["data", "download", "--pubmed", "3-1", "--out", str(w / "d")],
         "START"),
    Case("download: --out is a file", lambda f, w: ["data", "download", "--blurb", "biosses", "--mirror",
                                                    str(f["shared"]), "--out", str(w / "file"), "--no-progress"],
         "not a directory", _file("file")),
    Case("download: negative timeout", lambda f, w: ["data", "download", "--blurb", "biosses", "--mirror",
                                                     str(f["shared"]), "--timeout", "-5", "--out", str(w / "d")],
         "timeout"),
    # ---- data prepare
    Case("prepare: missing vocabulary", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                      str(w / "none"), "--out", str(w / "o")], "none"),
    Case("prepare: non-UTF-8 corpus", lambda f, w: ["data", "prepare", "--corpus", str(f["latin1"]), "--vocab",
                                                    str(f["vocab"]), "--min-words", "0", "--out", str(w / "o")],
         "not valid UTF-8"),
    Case("prepare: length too short", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                    str(f["vocab"]), "--max-seq-len", "4", "--out", str(w / "o")],
         "below 8"),
    Case("prepare: --out is a file", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                   str(f["vocab"]), "--min-words", "0", "--out", str(w / "file")],
         "not a directory", _file("file")),
    Case("prepare: no BLURB test files", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                       str(f["vocab"]), "--decontaminate", str(w), "--out",
                                                       str(w / "o")], "no BLURB test file"),
    Case("prepare: zero workers", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                str(f["vocab"]), "--workers", "0", "--out", str(w / "o")], "workers"),
    Case("prepare: too many predictions", lambda f, w: ["data", "prepare", "--corpus", str(f["corpus"]), "--vocab",
                                                        str(f["vocab"]), "--max-predictions", "300", "--out",
                                                        str(w / "o")], "max_predictions"),
    # ---- model create / info
    Case("create: unknown field", lambda f, w: ["model", "create", "--set", "hiden_size=64", "--out", str(w / "m")],
         "unknown config field"),
    Case("create: heads do not divide", lambda f, w: ["model", "create", "--preset", "tiny", "--set", "hidden_size=30",
                                                      "--out", str(w / "m")], "not divisible"),
    Case("create: --out is a file", lambda f, w: ["model", "create", "--preset", "tiny", "--out", str(w / "file")],
         "not a directory", _file("file")),
    Case("create: missing vocabulary", lambda f, w: ["model", "create", "--vocab", str(w / "none"), "--out",
                                                     str(w / "m")], "none"),
    Case("create: --set without =", lambda f, w: ["model", "create", "--set", "hidden_size", "--out", str(w / "m")],
         "FIELD=VALUE"),
    Case("create: wrong value type", lambda f, w: ["model", "create", "--set", "num_hidden_layers=many", "--out",
                                                   str(w / "m")], "num_hidden_layers"),
    Case("info: missing directory", lambda f, w: ["model", "info", str(w / "none")], "does not exist"),
    Case("info: corrupted weights", lambda f, w: ["model", "info", str(w / "model")], "corrupted",
         _corrupt_safetensors),
    Case("info: config not JSON", lambda f, w: ["model", "info", str(w / "model")], "not valid JSON",
         lambda f, w: (_copy(f["mlm"], w / "model") / "config.json").write_text("{oops")),
    Case("info: id2label with words for keys", lambda f, w: ["model", "info", str(w / "model")], "id2label",
         lambda f, w: _config(f, w, lambda c: c.update(id2label={"first": "O", "second": "B"}))),
    Case("info: id2label a list", lambda f, w: ["model", "info", str(w / "model")], "id2label",
         lambda f, w: _config(f, w, lambda c: c.update(id2label=["O", "B"]))),
    Case("info: hidden size a string", lambda f, w: ["model", "info", str(w / "model")], "hidden_size",
         lambda f, w: _config(f, w, lambda c: c.update(hidden_size="wide"))),
    # ---- pretrain / export
    Case("pretrain: data without manifest", lambda f, w: ["pretrain", "--data", str(w), "--out", str(w / "r")],
         "manifest.json"),
    Case("pretrain: unknown recipe", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tinny", "--out",
                                                   str(w / "r")], "recipe tinny not found"),
    Case("pretrain: recipe value a string", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                          str(w / "recipe.yaml"), "--out", str(w / "r")], "max_steps",
         _recipe("model: tiny\nmax_steps: many\n")),
    Case("pretrain: recipe value a list", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                        str(w / "recipe.yaml"), "--out", str(w / "r")],
         "learning_rate", _recipe("model: tiny\nlearning_rate: [0.1, 0.2]\n")),
    Case("pretrain: recipe not a mapping", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                         str(w / "recipe.yaml"), "--out", str(w / "r")], "mapping",
         _recipe("- tiny\n")),
    Case("pretrain: recipe base not found", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                           str(w / "recipe.yaml"), "--out", str(w / "r")],
         "base recipe tinny not found", _recipe("base: tinny\nmax_steps: 3\n")),
    Case("pretrain: recipe base loops", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                       str(w / "recipe.yaml"), "--out", str(w / "r")], "loops",
         _recipe("base: recipe.yaml\nmax_steps: 3\n")),
    Case("pretrain: no such device", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny",
                                                   "--device", "cuda:3" if NO_CUDA else "cuda:97", "--out",
                                                   str(w / "r")], "cuda"),
    Case("pretrain: --out is a file", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny", "--out",
                                                    str(w / "file")], "not a directory", _file("file")),
    Case("pretrain: manifest missing keys", lambda f, w: ["pretrain", "--data", str(w / "data"), "--recipe", "tiny",
                                                          "--out", str(w / "r")], "manifest",
         lambda f, w: _data_copy(f, w, _drop_manifest_key)),
    Case("pretrain: truncated shard", lambda f, w: ["pretrain", "--data", str(w / "data"), "--recipe", "tiny",
                                                    "--out", str(w / "r")], "shard",
         lambda f, w: _data_copy(f, w, _truncate_shard)),
    Case("pretrain: ambiguous warmup", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny",
                                                     "--warmup", "1.0", "--out", str(w / "r")], "ambiguous"),
    Case("pretrain: batch does not divide", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny",
                                                          "--global-batch-size", "10", "--micro-batch-size", "4",
                                                          "--out", str(w / "r")], "not divisible"),
    Case("pretrain: checkpoint with the wrong keys", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe",
                                                                   "tiny", "--max-steps", "2", "--out",
                                                                   str(w / "run")], "checkpoint", _wrong_checkpoint),
    Case("export: no checkpoint", lambda f, w: ["export", "--run", str(w), "--out", str(w / "e")], "no checkpoint"),
    Case("export: --out is a file", lambda f, w: ["export", "--run", str(f["run"]), "--out", str(w / "file")],
         "not a directory", _file("file")),
    Case("export: no such step", lambda f, w: ["export", "--run", str(f["run"]), "--step", "99", "--out",
                                               str(w / "e")], "step 99"),
    Case("export: checkpoint with the wrong keys", lambda f, w: ["export", "--run", str(w / "run"), "--out",
                                                                 str(w / "e")], "checkpoint", _wrong_checkpoint),
    Case("export: --out is the run itself", lambda f, w: ["export", "--run", str(f["run"]), "--out", str(f["run"])],
         "would replace the run"),
    Case("export: --out holds other files", lambda f, w: ["export", "--run", str(f["run"]), "--out", str(w)],
         "not a model export", _file("notes.txt")),
    Case("pretrain: --stop-after 0", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny",
                                                   "--stop-after", "0", "--out", str(w / "r")], "stop-after"),
    Case("pretrain: clipping at 0", lambda f, w: ["pretrain", "--data", str(f["data"]), "--recipe", "tiny",
                                                  "--max-grad-norm", "0", "--out", str(w / "r")], "max_grad_norm"),
    Case("pretrain: resume on other data", lambda f, w: ["pretrain", "--data", str(w / "data"), "--recipe", "tiny",
                                                         "--max-steps", "2", "--out", str(w / "run")],
         "other prepared data", lambda f, w: (_copy(f["run"], w / "run"), _data_copy(f, w, _other_checksum))),
    # ---- finetune / blurb
    Case("finetune: unknown task", lambda f, w: ["finetune", "--task", "ncbi", "--model", str(f["mlm"]), "--out",
                                                 str(w / "o")], "unknown BLURB dataset"),
    Case("finetune: missing model", lambda f, w: ["finetune", "--task", "gad", "--model", str(w / "none"), "--out",
                                                  str(w / "o"), "--data-dir", str(f["shared"])], "config.json"),
    Case("finetune: non-UTF-8 NER set", lambda f, w: ["finetune", "--task-type", "ner", "--data", str(w / "set"),
                                                      "--model", str(f["mlm"]), "--out", str(w / "o")], "UTF-8",
         lambda f, w: _ner_set(f, w, "Caf\xe9\tB-Gene\n\n".encode("latin-1"))),
    Case("finetune: non-UTF-8 relation set", lambda f, w: ["finetune", "--task-type", "relation", "--data",
                                                           str(w / "set"), "--model", str(f["mlm"]), "--out",
                                                           str(w / "o")], "UTF-8",
         lambda f, w: _relation_set(f, w, "a.1\t@GENE$ caf\xe9 @DISEASE$.\t1\n".encode("latin-1"))),
    Case("finetune: --out is a file", lambda f, w: ["finetune", "--task", "gad", "--model", str(f["mlm"]), "--out",
                                                    str(w / "file"), "--data-dir", str(f["shared"]), "--limit", "8"],
         "not a directory", _file("file")),
    Case("finetune: vocabulary without [MASK]", lambda f, w: ["finetune", "--task", "gad", "--model", str(w / "model"),
                                                              "--out", str(w / "o"), "--data-dir", str(f["shared"])],
         "[MASK]", _vocab_without_mask),
    Case("finetune: negative learning rate", lambda f, w: ["finetune", "--task", "gad", "--model", str(f["mlm"]),
                                                           "--lr", "-1", "--out", str(w / "o")], "learning rate"),
    Case("finetune: sequence length too short", lambda f, w: ["finetune", "--task", "gad", "--model", str(f["mlm"]),
                                                              "--max-seq-length", "4", "--out", str(w / "o")],
         "max_seq_length"),
    Case("blurb: missing model", lambda f, w: ["blurb", "--model", str(w / "none"), "--tasks", "gad", "--data-dir",
                                               str(f["shared"]), "--out", str(w / "b")], "none"),
    Case("blurb: unknown dataset", lambda f, w: ["blurb", "--model", str(f["mlm"]), "--tasks", "gadd", "--out",
                                                 str(w / "b")], "unknown BLURB dataset"),
    # ---- using models
    Case("fill-mask: non-UTF-8 input keeps --output", lambda f, w: ["fill-mask", "--model", str(f["mlm"]), "--output",
                                                                   str(w / "out.jsonl"), str(f["latin1"])], "UTF-8",
         _existing_output),
    Case("fill-mask: no [MASK] keeps --output", lambda f, w: ["fill-mask", "--model", str(f["mlm"]), "--output",
                                                             str(w / "out.jsonl"), str(w / "t.txt")], "[MASK]",
         lambda f, w: (_existing_output(f, w), (w / "t.txt").write_text("no mask here\n"))),
    Case("fill-mask: missing model", lambda f, w: ["fill-mask", "--model", str(w / "none"), str(f["texts"])], "none"),
    Case("fill-mask: --output is a folder", lambda f, w: ["fill-mask", "--model", str(f["mlm"]), "--output",
                                                          str(w), str(f["texts"])], "directory"),
    Case("fill-mask: zero batch size", lambda f, w: ["fill-mask", "--model", str(f["mlm"]), "--batch-size", "0",
                                                     str(f["texts"])], "batch_size"),
    Case("fill-mask: missing input", lambda f, w: ["fill-mask", "--model", str(f["mlm"]), str(w / "none.txt")],
         "none.txt"),
    Case("ner: model without a NER head", lambda f, w: ["ner", "--model", str(f["mlm"]), str(f["texts"])],
         "token-classification"),
    Case("ner: window too short", lambda f, w: ["ner", "--model", str(f["ner"]), "--max-length", "2",
                                                str(f["texts"])], "max_length"),
    Case("ner: PubTator abstract without its title keeps --output",
         lambda f, w: ["ner", "--model", str(f["ner"]), "--input-format", "pubtator", "--output-format", "pubtator",
                       "--output", str(w / "out.jsonl"), str(w / "d.txt")], "title line",
         lambda f, w: (_existing_output(f, w), (w / "d.txt").write_text("1|t|Cancer.\n1|a|Ok.\n\n2|a|No title.\n"))),
    Case("ner: PubTator mention of another document", lambda f, w: ["ner", "--model", str(f["ner"]), "--input-format",
                                                                    "pubtator", str(w / "d.txt")], "blank line",
         lambda f, w: (w / "d.txt").write_text("1|t|Cancer.\n1|a|\n2\t0\t6\tCancer\tDisease\n")),
    Case("ner: CoNLL line without a word", lambda f, w: ["ner", "--model", str(f["ner"]), "--input-format", "conll",
                                                         str(w / "s.tsv")], "line 2",
         lambda f, w: (w / "s.tsv").write_text("BRCA1\tO\n\tO\n")),
    Case("ner: an id PubTator cannot write keeps --output",
         lambda f, w: ["ner", "--model", str(f["ner"]), "--output-format", "pubtator", "--output",
                       str(w / "out.jsonl"), str(w / "t.jsonl")], "PMID",
         lambda f, w: (_existing_output(f, w), (w / "t.jsonl").write_text('{"id": "a|b", "text": "Cancer."}\n'))),
    Case("ner: unknown output format", lambda f, w: ["ner", "--model", str(f["ner"]), "--output-format", "brat",
                                                     str(f["texts"])], "output-format"),
    Case("classify: model without a classifier", lambda f, w: ["classify", "--model", str(f["mlm"]), str(f["texts"])],
         "classif"),
    Case("embed: corrupted weights", lambda f, w: ["embed", "--model", str(w / "model"), str(f["texts"])],
         "corrupted", _corrupt_safetensors),
    Case("embed: bad JSON line", lambda f, w: ["embed", "--model", str(f["mlm"]), str(w / "t.jsonl")], "JSON",
         lambda f, w: (w / "t.jsonl").write_text('{"text": "ok"}\n{"text": \n')),
    # ---- serve / quickstart
    Case("serve: port out of range", lambda f, w: ["serve", "--model", str(f["mlm"]), "--port", "70000"], "port"),
    Case("serve: no model", lambda f, w: ["serve"], "no model"),
    Case("serve: missing model", lambda f, w: ["serve", "--model", str(w / "none")], "none"),
    Case("quickstart: mirror missing", lambda f, w: ["quickstart", "--mirror", str(w / "nowhere"), "--out",
                                                     str(w / "q"), "--no-progress"], "nowhere"),
    Case("quickstart: --out is a file", lambda f, w: ["quickstart", "--mirror", str(f["shared"]), "--out",
                                                      str(w / "file"), "--no-progress"], "not a directory",
         _file("file")),
    Case("bad flag", lambda f, w: ["pretrain", "--data", str(f["data"]), "--out", str(w / "r"), "--learnin-rate", "1"],
         "unrecognized"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_one_line_nonzero_and_leaves_nothing(case: Case, fx, tmp_path, capsys):
    work = tmp_path / "case"
    work.mkdir()
    if case.prepare is not None:
        case.prepare(fx, work)
    argv = case.argv(fx, work)
    before = _snapshot(work, fx["root"])
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code not in (0, None), f"exit {code}: {err}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert case.says.lower() in err.lower(), err
    assert _snapshot(work, fx["root"]) == before, "the failed command left files behind or changed some"


# ------------------------------------------------------------------------------ the HTTP service
@pytest.fixture(scope="module")
def client(fx):
    from fastapi.testclient import TestClient

    from domainbert.serve.app import Limits, create_app

    app = create_app(fx["mlm"], fx["ner"], limits=Limits(max_text_chars=200, max_batch=3, max_body_bytes=4000))
    with TestClient(app) as c:
        yield c


HTTP_CASES = [
    ("not UTF-8", "/fill-mask", b'{"texts": ["caf\xe9 [MASK]"]}', 400),
    ("not JSON", "/fill-mask", b'{"texts": ', 422),
    ("no texts", "/fill-mask", b'{}', 422),
    ("texts not a list", "/fill-mask", b'{"texts": "a [MASK]"}', 422),
    ("empty text", "/fill-mask", b'{"texts": ["  "]}', 422),
    ("too many texts", "/fill-mask", json.dumps({"texts": ["a [MASK]"] * 4}).encode(), 422),
    ("text too long", "/fill-mask", json.dumps({"texts": ["[MASK] " + "x" * 300]}).encode(), 422),
    ("top_k out of range", "/fill-mask", b'{"texts": ["a [MASK]"], "top_k": 0}', 422),
    ("no [MASK]", "/fill-mask", b'{"texts": ["no mask"]}', 422),
    ("body too large", "/embed", json.dumps({"texts": ["x" * 5000]}).encode(), 413),
    ("no classifier loaded", "/classify", b'{"texts": ["a"]}', 404),
    ("text a number", "/ner", b'{"texts": [42]}', 422),
]


@pytest.mark.parametrize("name,path,body,status", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_service_answers_bad_requests_with_a_4xx_and_one_line(client, name, path, body, status):
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    message = r.json()["message"]
    assert isinstance(message, str) and message and "\n" not in message
    assert client.get("/health").status_code == 200  # alive after it


def test_the_table_is_wide() -> None:
    assert len(CASES) + len(HTTP_CASES) >= 60
    assert {c.argv({k: Path("/x") for k in ("root", "corpus", "vocab", "data", "run", "mlm", "ner", "texts",
                                            "latin1", "shared")}, Path("/w"))[0] for c in CASES} >= {
        "vocab", "data", "model", "pretrain", "export", "finetune", "blurb", "fill-mask", "ner", "classify", "embed",
        "serve", "quickstart"}


def test_every_command_that_loads_a_vocabulary_names_its_missing_special_tokens(tmp_path, tiny_model, shared_data,
                                                                                capsys):
    """A vocab.txt without [CLS] used to fail inside the tokenizer's templates with a KeyError traceback."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / extra).unlink(missing_ok=True)
    lines = (model / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (model / "vocab.txt").write_text("".join(t + "\n" for t in lines if t != "[CLS]"), encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Aspirin reduces fever.\nIt is old.\n", encoding="utf-8")
    (tmp_path / "text.txt").write_text("aspirin\n", encoding="utf-8")
    commands = {
        "data prepare": ["data", "prepare", "--corpus", str(corpus), "--vocab", str(model), "--out",
                         str(tmp_path / "out"), "--quiet"],
        "vocab encode": ["vocab", "encode", "--vocab", str(model), str(tmp_path / "text.txt")],
        "finetune": ["finetune", "--model", str(model), "--task", "biosses", "--data-dir", str(shared_data),
                     "--out", str(tmp_path / "ft"), "--limit", "4"],
        "serve": ["serve", "--model", str(model), "--port", "1"],
    }
    for name, argv in commands.items():
        capsys.readouterr()
        assert main(argv) != 0, name
        err = capsys.readouterr().err.strip()
        assert "lacks [CLS]:" in err and "vocab build" in err and "\n" not in err, (name, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "ft" / "metrics.json").exists()
