"""ChemProt's entity markers: where their embeddings start, and whether that decides what is learned.

BLURB's relation sets replace the two entity mentions by markers (``@CHEMICAL$``, ``@GENE$``).
``finetune`` adds each marker to the vocabulary as one whole token, so the embedding matrix grows
and its new rows need values. A pretrained model's rows are not at BERT's init scale (the
``mini-cpu`` model's rows have norm about 0.94; a new N(0, 0.02²) row of width 128 about 0.22: the
table's first column), and the markers are
the only tokens that say which pair to classify. Variants, each fine-tuning the same model with the
same setting and seeds:

==========  ===============================================================================
variant     the markers' input embeddings
==========  ===============================================================================
bert-init   new rows drawn from N(0, initializer_range²): BERT's init (what ``finetune`` does)
mean        new rows drawn around the old rows' mean with 1e-9 x their covariance (what
            transformers' ``resize_token_embeddings`` does by default, ``mean_resizing=True``)
name        each marker's row set to the mean of its name's pieces (``@GENE$`` → ``gene``)
text        no new tokens: each marker is read as the vocabulary's own pieces (``@`` is
            [UNK] in a vocabulary built from PubMed, so ``@GENE$`` → [UNK] gene $)
==========  ===============================================================================

Every run is kept under ``--out`` and skipped when done (``finetune`` resumes per run)::

    .venv/bin/python benchmarks/chemprot_markers.py --model runs/da8k/a-pubmed/model \\
        --out runs/chemprot-markers --seeds 42 43 44
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import domainbert.blurb.finetune as ft
import domainbert.blurb.task as task_module
import domainbert.blurb.training as training
from domainbert.model.configuration import BertConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VARIANTS = ("bert-init", "mean", "name", "text")


def mean_rows(model: nn.Module, old_rows: int) -> None:
    """Redraw the rows past ``old_rows`` around the old rows' mean, with 1e-9 x their covariance."""
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        old = weight[:old_rows].double()
        mean = old.mean(0)
        centred = old - mean
        covariance = centred.T @ centred / old_rows
        draw = torch.distributions.MultivariateNormal(mean, covariance_matrix=1e-9 * covariance)
        weight[old_rows:] = draw.sample((weight.shape[0] - old_rows,)).to(weight.dtype)


def name_rows(model: nn.Module, task: task_module.Task) -> None:
    """Set each marker's row to the mean of its name's pieces (``@GENE$`` → the rows of ``gene``)."""
    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for marker in task.markers:
            name = marker.strip("@$").replace("-", " ").replace("_", " ").lower()
            ids = task.tokenizer.convert_tokens_to_ids(task.tokenizer.tokenize(name))
            weight[task.tokenizer.convert_tokens_to_ids([marker])[0]] = weight[ids].mean(0)


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fine-tune ``args.model`` on ChemProt with the markers started as ``variant`` says."""
    build, markers = training.build_model, task_module.markers_in
    norm_of: dict[str, float | None] = {}

    def build_variant(task: task_module.Task, model_dir: Path) -> nn.Module:
        model = build(task, model_dir)
        old_rows = BertConfig.load(model_dir).vocab_size
        if variant == "mean":
            mean_rows(model, old_rows)
        elif variant == "name":
            name_rows(model, task)
        norms = model.get_input_embeddings().weight.detach().norm(dim=1)
        norm_of["vocabulary"] = float(norms[:old_rows].mean())
        norm_of["markers"] = float(norms[old_rows:].mean()) if len(norms) > old_rows else None
        return model

    training.build_model = build_variant
    if variant == "text":
        task_module.markers_in = lambda examples: []
    try:
        return {**ft.finetune(ft.FinetuneArgs(
            model=args.model, out=args.out / variant, task="chemprot", data_dir=args.data_dir, budget="quick",
            learning_rate=args.lr, epochs=args.epochs, seeds=tuple(args.seeds), limit=args.limit,
            save_model=False)), "row_norms": norm_of}
    finally:
        training.build_model, task_module.markers_in = build, markers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a BERT checkpoint directory")
    parser.add_argument("--out", type=Path, default=Path("runs/chemprot-markers"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=SHARED)
    parser.add_argument("--limit", type=int, default=None, help="smoke runs: first N examples per split")
    args = parser.parse_args(argv)
    results = args.out / "results.json"
    done = {r["variant"]: r for r in json.loads(results.read_text())} if results.is_file() else {}
    rows = []
    for variant in args.variants:
        metrics = run_variant(variant, args)
        test = metrics["test"]["per_seed"]
        dev = metrics["dev"]["per_seed"]
        rows.append({"variant": variant, "dev": dev, "test": test, "markers": metrics["markers"],
                     "row_norms": metrics["row_norms"], "wall_seconds": metrics["wall_seconds"]})
        done[variant] = rows[-1]  # other invocations' variants stay in the file
        results.write_text(json.dumps(list(done.values()), indent=2) + "\n")
    print(f"ChemProt, {args.model}, lr {args.lr:g}, {args.epochs} epochs: micro-F1 x 100 (seeds {args.seeds})")
    print("| markers start as | row norm: markers / vocabulary | dev per seed | test per seed | test mean ± std |")
    print("|---|---|---|---|---:|")
    for row in rows:
        tests = [100 * v for v in row["test"].values()]
        spread = f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else ""
        norms = row["row_norms"]
        marker = "—" if norms.get("markers") is None else f"{norms['markers']:.3f}"
        vocabulary = norms.get("vocabulary", float("nan"))
        devs = ", ".join(f"{100 * v:.2f}" for v in row["dev"].values())
        print(f"| {row['variant']} | {marker} / {vocabulary:.3f} | {devs} | "
              f"{', '.join(f'{v:.2f}' for v in tests)} | {statistics.fmean(tests):.2f}{spread} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
