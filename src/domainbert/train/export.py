"""``domainbert export``: a pretraining checkpoint -> a Hugging Face model directory with its tokenizer
and its model card (``README.md``, :func:`domainbert.model.card.pretraining_card`)."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from domainbert.data.tokenization import BertTokenizer
from domainbert.errors import TrainingError
from domainbert.model.card import DEFAULT_LICENSE, pretraining_card, write_card
from domainbert.model.configuration import BertConfig
from domainbert.model.modeling import BertForPreTraining
from domainbert.train.state import checkpoint_dirs, load_checkpoint


def export(run_dir: Path, out: Path, step: int | None = None, name: str | None = None,
           license: str = DEFAULT_LICENSE) -> Path:
    """Write a run's checkpoint (the newest, or ``step``) as a Hugging Face directory with its tokenizer
    and a model card named ``name`` (default: the run folder's name) under ``license``."""
    found = checkpoint_dirs(run_dir)
    if step is not None:
        found = [c for c in found if c.name == f"step-{step:08d}"]
    if not found:
        what = f"no checkpoint for step {step}" if step is not None else "no checkpoint"
        raise TrainingError(f"{run_dir} has {what}: run `domainbert pretrain --out {run_dir}` first")
    state = load_checkpoint(found[-1])
    model = BertForPreTraining(BertConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    tokenizer = BertTokenizer.from_pretrained(run_dir / "tokenizer") if (run_dir / "tokenizer").is_dir() else None
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file, not a directory: pass a folder to export into")
    if out == Path(run_dir).resolve() or Path(run_dir).resolve().is_relative_to(out):
        raise TrainingError(f"--out {out} would replace the run it exports from: pass a folder of its own")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise TrainingError(f"--out {out} holds files that are not a model export: pass an empty or new folder "
                            "(an earlier export there is replaced)")
    # Written beside the target and moved into place whole: a failure leaves neither a half-written
    # model nor the temporary folder, and the previous export stays until the new one is complete.
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, tokenizer=tokenizer)
        write_card(pretraining_card(Path(run_dir), tmp, name or Path(run_dir).resolve().name, license), tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="pretraining run directory")
    parser.add_argument("--out", type=Path, required=True, help="Hugging Face directory to write")
    parser.add_argument("--step", type=int, help="which checkpoint (default: the newest)")
    parser.add_argument("--name", help="the model's name in its card (default: the run folder's name)")
    parser.add_argument("--license", default=DEFAULT_LICENSE,
                        help="license id for the card's metadata (check your corpus's terms; default %(default)s)")


def run_export(ns: argparse.Namespace) -> int:
    out = export(ns.run, ns.out, ns.step, ns.name, ns.license)
    print(f"wrote {out}: config.json, model.safetensors, the tokenizer files (loads with transformers' "
          "AutoModel / BertForPreTraining and `domainbert` alike) and README.md, its model card")
    return 0
