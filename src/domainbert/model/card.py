"""Model cards: the ``README.md`` a model directory carries to the Hugging Face Hub.

Each card is the Hub's YAML metadata (license, language, library_name, pipeline_tag, tags,
datasets, base_model, and ``model-index`` results in the Hub's schema, written with
``huggingface_hub.ModelCardData``) followed by a body a researcher would publish. Everything in it
is read from the run's own files, never typed in:

* :func:`pretraining_card` (``export``): the recipe (shape, steps, batch, tokens seen, learning
  rate, precision, masking) from ``run_config.json``; the corpus (files, documents, words, what the
  filters and the test-set decontamination dropped) from the prepared data's manifest; vocabulary
  statistics from ``vocab_stats.json``; held-out MLM accuracy from the last evaluation row of
  ``metrics.jsonl``.
* :func:`finetuned_card` (``finetune``): the task, metric, selected setting, seeds and dev/test
  scores from ``metrics.json``, the base model (a Hub repo id becomes ``base_model``).
* :func:`add_blurb_results` (``blurb --update-card``): the suite's test scores added to a model's
  card (``model-index`` entries and a section of the body), replacing earlier ones.

Only results go into ``model-index`` (which the Hub shows as the model's results): a run on the first
``--limit`` examples, capped by ``--max-steps``, or under ``--budget quick`` (:func:`not_results` says
which) gets its scores in the card's prose, marked as a smoke run, and no ``model-index`` entry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from domainbert import __version__
from domainbert.atomic import atomic_write_text

CARD_NAME = "README.md"
DEFAULT_LICENSE = "apache-2.0"
TAGS = ["bert", "biomedical", "domainbert"]

#: BLURB metric key → (Hub metric type, the name the card shows).
METRIC_TYPES = {"entity_f1": ("f1", "entity F1 (seqeval)"), "pico_macro_f1": ("f1", "macro word-level F1"),
                "relation_micro_f1": ("f1", "micro F1 without the negative class"),
                "pearson": ("pearsonr", "Pearson correlation"),
                "hoc_micro_f1": ("f1", "micro F1 over document x hallmark cells"),
                "accuracy": ("accuracy", "accuracy")}
#: BLURB task type → the Hub's pipeline tag / task type.
PIPELINE_TAGS = {"ner": "token-classification", "pico": "token-classification",
                 "relation": "text-classification", "similarity": "sentence-similarity",
                 "multilabel": "text-classification", "classification": "text-classification"}
BLURB_BEGIN, BLURB_END = "<!-- domainbert:blurb -->", "<!-- /domainbert:blurb -->"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _card(data: ModelCardData, body: str) -> ModelCard:
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")


def write_card(card: ModelCard, directory: Path) -> Path:
    """Write ``card`` as ``directory/README.md`` (atomically: a failure leaves the old card)."""
    path = Path(directory) / CARD_NAME
    atomic_write_text(path, str(card))
    return path


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("—" if value is None else str(value))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


# ============================================================================ pretrained model
def _eval_row(run_dir: Path) -> dict[str, Any] | None:
    """The last held-out evaluation row of ``metrics.jsonl`` (None when the run never evaluated)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    evals = [r for r in rows if r.get("eval") and r.get("eval_mlm_accuracy") is not None]
    train = [r for r in rows if not r.get("eval")]
    last = dict(evals[-1]) if evals else {}
    if train:
        last["consumed_samples"] = train[-1].get("consumed_samples")
        last["last_step"] = train[-1].get("step")
    return last or None


def pretraining_card(run_dir: Path, model_dir: Path, name: str, license: str = DEFAULT_LICENSE) -> ModelCard:
    """The card of a model exported from pretraining run ``run_dir`` (read from the run's files)."""
    run_config = _read_json(run_dir / "run_config.json") or {}
    args, config = run_config.get("args", {}), run_config.get("model_config") or _read_json(
        model_dir / "config.json") or {}
    data = run_config.get("data_manifest") or _read_json(Path(str(run_config.get("data", ""))) / "manifest.json")
    vocab = _read_json(run_dir / "tokenizer" / "vocab_stats.json")
    evaluated = _eval_row(run_dir)
    source = run_config.get("model_source") or {}
    params = (data or {}).get("params", {})
    counts = (data or {}).get("counts", {})
    corpus = (data or {}).get("corpus_counts", {})

    steps = (evaluated or {}).get("last_step") or args.get("max_steps")
    samples = (evaluated or {}).get("consumed_samples")
    mean_len = counts["example_tokens"] / counts["pairs"] if counts.get("pairs") else None
    tokens = round(samples * mean_len) if samples and mean_len else None
    continued = source.get("repo_id") or source.get("directory")
    dropout = config.get("hidden_dropout_prob") if args.get("dropout") is None else args["dropout"]
    mlm_only = args.get("objective") == "mlm"

    meta = ModelCardData(
        language="en", license=license, library_name="transformers", pipeline_tag="fill-mask",
        tags=[*TAGS, "fill-mask", "pretraining" if not continued else "continual-pretraining"],
        base_model=source.get("repo_id"), model_name=name)
    lines = [f"# {name}", "",
             ("A BERT pretrained " + (f"further from `{continued}`" if continued else "from scratch")
              + f" with [domainbert](https://pypi.org/project/domainbert/) {__version__}: "
              + ("masked language modelling alone" if mlm_only else
                 "masked language modelling and next-sentence prediction")
              + " on the corpus below, with "
              + ("that model's vocabulary." if continued else "a WordPiece vocabulary built from that corpus.")
              + (" Masked LM alone does not train the next-sentence head (`cls.seq_relationship`, which "
                 "`BertForPreTraining` loads), the pooler under it (`bert.pooler`, which a [CLS] classifier reads) "
                 "or the second segment's embedding (token type 1, which sentence pairs are given): "
                 + (f"they are as `{continued}` left them" if continued else "they were never trained")
                 + ". Use the model as `BertForMaskedLM` or as an encoder; fine-tuning a classifier trains them "
                 "from there." if mlm_only else "")),
             "", "```python", "from transformers import AutoModelForMaskedLM, AutoTokenizer",
             f'where = "{name}"  # this folder, or the model\'s Hub repo id once it is pushed',
             "tokenizer = AutoTokenizer.from_pretrained(where)",
             "model = AutoModelForMaskedLM.from_pretrained(where)", "```", "",
             "## Recipe", "", "| | |", "|---|---|",
             f"| shape | {config.get('num_hidden_layers')} layers, hidden {config.get('hidden_size')}, "
             f"{config.get('num_attention_heads')} heads, intermediate {config.get('intermediate_size')}, "
             f"vocabulary {_n(config.get('vocab_size'))}, max length {config.get('max_position_embeddings')} |",
             f"| optimizer steps | {_n(steps)} (schedule: {_n(args.get('max_steps'))}) |",
             f"| global batch | {_n(args.get('global_batch_size'))} sequences of up to "
             f"{params.get('max_seq_len', '—')} tokens |",
             f"| tokens seen | {'≈ ' + _n(tokens) if tokens else '—'} (examples seen × the data's mean "
             "example length) |",
             f"| learning rate | peak {args.get('learning_rate')} ({args.get('optimizer')}), warmup "
             f"{args.get('warmup')}, decay share {args.get('decay')}, weight decay {args.get('weight_decay')} |",
             f"| precision | {run_config.get('precision', args.get('precision'))} |",
             f"| masking | {100 * (args.get('masked_lm_prob') or params.get('masked_lm_prob') or 0):g}% of tokens"
             f"{', whole words' if params.get('whole_word_mask') else ''}"
             f"{', re-drawn every epoch' if params.get('dynamic_masking') else ''} |",
             f"| objective | {'masked LM alone' if mlm_only else 'masked LM + next sentence prediction'}"
             f"{' on whole sentences packed across documents' if params.get('objective') == 'mlm' else ''} |",
             f"| pretraining dropout | {dropout}"
             f" (the exported config keeps {config.get('hidden_dropout_prob')} for fine-tuning) |", ""]
    lines += ["## Corpus", ""]
    if data is None:
        lines += [f"The prepared data (`{run_config.get('data')}`) was not found when this card was written.", ""]
    else:
        files = data.get("inputs", [])
        lines += [f"- files: {len(files)} ({', '.join(Path(f['path']).name for f in files[:6])}"
                  f"{' ...' if len(files) > 6 else ''}), {_n(sum(f.get('size', 0) for f in files))} bytes",
                  f"- documents kept: {_n(counts.get('documents'))}, sentences {_n(counts.get('sentences'))}, "
                  f"words {_n(counts.get('words'))} (whitespace-separated), sub-word tokens "
                  f"{_n(counts.get('source_tokens'))}",
                  f"- pretraining examples: {_n(counts.get('pairs'))} (dupe factor {params.get('dupe_factor')})",
                  f"- dropped by the filters: {_n(corpus.get('dropped_short'))} short, "
                  f"{_n(corpus.get('dropped_duplicate_pmid'))} duplicate PMIDs, "
                  f"{_n(corpus.get('dropped_duplicate_text'))} duplicate texts, "
                  f"{_n(corpus.get('dropped_language'))} other languages, "
                  f"{_n(corpus.get('dropped_deleted'))} deleted citations",
                  "- test-set decontamination: " + (
                      f"{_n(corpus.get('dropped_test_pmid'))} documents dropped by PMID and "
                      f"{_n(corpus.get('dropped_test_text'))} by text against "
                      f"{len(data['decontamination'].get('sources', []))} BLURB test files"
                      if data.get("decontamination") else "none (the data was prepared without --decontaminate)"),
                  ""]
    lines += ["## Vocabulary", ""]
    if vocab is None:
        lines += ["No `vocab_stats.json` came with the run's vocabulary.", ""]
    else:
        lines += [f"- size {_n(vocab['vocab_size'])}; {100 * vocab['split_share']:.1f}% of "
                  f"{_n(vocab['words_measured'])} corpus words split into two or more pieces "
                  f"(mean {vocab['mean_pieces_per_word']:.2f} pieces per word, {100 * vocab['unk_share']:.2f}% [UNK])"]
        if vocab.get("reference"):
            lines += [f"- the reference vocabulary `{vocab['reference']}` splits "
                      f"{100 * vocab['reference_split_share']:.1f}% of the same words "
                      f"(mean {vocab['reference_mean_pieces_per_word']:.2f} pieces)"]
        lines += [""]
    lines += ["## Held-out evaluation", ""]
    if evaluated and evaluated.get("eval_mlm_accuracy") is not None:
        lines += [f"At step {_n(evaluated.get('step'))} on `{run_config.get('eval_data')}`: masked-token accuracy "
                  f"{evaluated['eval_mlm_accuracy']:.3f}, MLM loss {evaluated['eval_mlm_loss']:.3f} (perplexity "
                  f"{evaluated.get('eval_perplexity', float('nan')):.1f})"
                  + (f", next-sentence accuracy {evaluated['eval_nsp_accuracy']:.3f}."
                     if evaluated.get("eval_nsp_accuracy") is not None else "."), ""]
    else:
        lines += ["The run had no held-out data (`pretrain --eval-data`), so no held-out score is given.", ""]
    lines += ["## BLURB", "", "Not evaluated yet: `domainbert blurb --model <this folder> --update-card` adds its "
              "scores here.", ""]
    return _card(meta, "\n".join(lines))


# ============================================================================ fine-tuned model
def not_results(run: dict[str, Any]) -> str | None:
    """Why a run's scores are not results to publish as ``model-index`` (``metrics.json`` or
    ``results.json`` content), in words; None when they are: all of every split, no step cap, and a
    named budget other than ``quick``."""
    why = []
    if run.get("budget") == "quick":
        why.append("`--budget quick` (the cheap budget: a few epochs, one seed)")
    if run.get("limit"):
        why.append(f"only the first {run['limit']} examples of each split")
    if run.get("max_steps"):
        why.append(f"at most {run['max_steps']} optimizer steps per run")
    return "; ".join(why) or None


def _eval_result(metrics: dict[str, Any], split: str = "test") -> EvalResult:
    metric_type, metric_name = METRIC_TYPES.get(metrics["metric"], (metrics["metric"], metrics["metric"]))
    dataset = metrics.get("dataset_id") or metrics["task"]
    return EvalResult(task_type=PIPELINE_TAGS.get(metrics["task_type"], "text-classification"),
                      dataset_type=dataset, dataset_name=f"{metrics['display_name']} (BLURB)", dataset_split=split,
                      metric_type=metric_type, metric_name=f"{metric_name} (%)",
                      metric_value=round(100 * metrics[split]["mean"], 2))


def finetuned_card(metrics: dict[str, Any], model_dir: Path, license: str = DEFAULT_LICENSE) -> ModelCard:
    """The card of the model ``finetune`` saved, from its ``metrics.json`` content."""
    source = metrics.get("model_source") or {}
    base = source.get("repo_id")
    base_text = (f"`{base}` (Hugging Face Hub, commit `{source.get('commit')}`)" if base
                 else f"`{source.get('directory', metrics.get('model'))}`")
    setting = metrics["selected"]
    dev, test = metrics["dev"], metrics["test"]
    name = f"{(base or Path(str(source.get('directory', 'bert'))).name).split('/')[-1]}-{metrics['task']}"
    smoke = not_results(metrics)
    meta = ModelCardData(
        language="en", license=license, library_name="transformers",
        pipeline_tag="token-classification" if metrics["task_type"] in ("ner", "pico") else "text-classification",
        tags=[*TAGS, "blurb", metrics["task"]], datasets=[metrics.get("dataset_id") or metrics["task"]],
        base_model=base, model_name=name,
        eval_results=None if smoke else [_eval_result(metrics, "test")])
    seeds = sorted(test["per_seed"], key=int)
    lines = [f"# {name}", "",
             f"{base_text} fine-tuned on {metrics['display_name']} ({metrics['group']}) with domainbert "
             f"{__version__} (`domainbert finetune --task {metrics['task']} --budget {metrics['budget']}`).", "",
             "## Task", "", f"- dataset: {metrics['display_name']}; examples: "
             + ", ".join(f"{k} {_n(v)}" for k, v in metrics.get("examples", {}).items()),
             f"- metric: {METRIC_TYPES.get(metrics['metric'], (None, metrics['metric']))[1]} (`{metrics['metric']}`)",
             f"- inputs up to {metrics.get('max_seq_length')} sub-words"
             + (" (longer sentences in windows)" if metrics["task_type"] in ("ner", "pico") else ""),
             *[f"- {note}" for note in metrics.get("notes", [])], "",
             "## Training", "",
             f"- selected setting (best mean dev score): learning rate {setting['learning_rate']:g}, batch "
             f"{setting['batch_size']}, {setting['epochs']} epochs; AdamW, 10% warmup then linear decay",
             f"- seeds: {', '.join(seeds)}; this model is run `{metrics.get('saved_model_run')}` (the best single "
             "run by dev score)",
             f"- budget `{metrics['budget']}`, precision {metrics.get('precision')}, device {metrics.get('device')}"
             + (f", at most {metrics['max_steps']} steps" if metrics.get("max_steps") else "")
             + (f", only the first {metrics['limit']} examples of each split" if metrics.get("limit") else ""), "",
             "## Scores (%)", "", "| split | mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|" + "---|" * len(seeds)]
    for split, stats in (("dev", dev), ("test", test)):
        lines.append(f"| {split} | {_pct(stats['mean'])} ± {_pct(stats['std'])} | "
                     + " | ".join(_pct(stats["per_seed"].get(s)) for s in seeds) + " |")
    if smoke:
        lines += ["", f"A smoke run, not a result: {smoke}. These scores are not in the card's `model-index`."]
    lines += [""]
    return _card(meta, "\n".join(lines))


# ============================================================================ blurb --update-card
def add_blurb_results(model_dir: Path, results: dict[str, Any]) -> Path:
    """Add the suite's test scores to ``model_dir``'s card (made when absent): one ``model-index``
    entry per scored dataset, replacing that dataset's earlier entry, and a BLURB section in the body."""
    path = Path(model_dir) / CARD_NAME
    card = ModelCard.load(path) if path.is_file() else _card(
        ModelCardData(language="en", library_name="transformers", tags=list(TAGS),
                      model_name=results.get("name") or Path(model_dir).name), f"# {Path(model_dir).name}\n")
    scored = {n: d for n, d in results["datasets"].items() if "test" in d}
    smoke = not_results(results)
    if smoke is None:  # results replace a dataset's earlier entry; a smoke run leaves model-index alone
        new = [_eval_result({**d, "task": n, "dataset_id": n}, "test") for n, d in scored.items()]
        keep = [r for r in (card.data.eval_results or []) if r.dataset_type not in scored]
        card.data.eval_results = (keep + new) or None
    if not card.data.model_name:
        card.data.model_name = results.get("name") or Path(model_dir).name
    table = ["## BLURB", "", f"`domainbert blurb --budget {results['budget']}` ({results['date']}); test scores, "
             "mean ± std over seeds, selected on dev:", "", "| dataset | metric | test (%) | seeds |",
             "|---|---|---|---|"]
    for d in scored.values():
        table.append(f"| {d['display_name']} | {METRIC_TYPES.get(d['metric'], (None, d['metric']))[1]} | "
                     f"{_pct(d['test']['mean'])} ± {_pct(d['test']['std'])} | {d['test']['n']} |")
    if smoke:
        table += ["", f"A smoke run, not a result: {smoke}. These scores are not in the card's `model-index`."]
    summary = results.get("blurb")
    if summary:
        table += ["", f"BLURB score over these datasets: {_pct(summary['score'])}"
                  + ("" if summary.get("complete") else " (partial: not every dataset; not comparable with "
                     "published BLURB scores)")]
    section = f"{BLURB_BEGIN}\n" + "\n".join(table) + f"\n{BLURB_END}"
    text = card.text
    if BLURB_BEGIN in text:
        text = re.sub(re.escape(BLURB_BEGIN) + ".*?" + re.escape(BLURB_END), lambda _: section, text, flags=re.S)
    else:
        text = re.sub(r"## BLURB\n\nNot evaluated yet:[^\n]*\n", "", text).rstrip() + "\n\n" + section
    card = _card(card.data, text)
    atomic_write_text(path, str(card))
    return path
