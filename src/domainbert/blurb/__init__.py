"""BLURB, the benchmark: a model directory in, fine-tuned models, scores and a report out.

Takes a BERT checkpoint (from :mod:`domainbert.train` or any Hugging Face BERT) and BLURB's 13
datasets (or a user's dataset in a BLURB format), and gives out per-dataset metrics, predictions
and models, ``results.json``, ``report.md``, a chart and a TSV row.

- :mod:`~domainbert.blurb.registry`: :class:`DatasetRecord`, the :data:`DATASETS` registry with
  BLURB's split sizes, :func:`load_split`, :func:`dataset_status`, :func:`user_record`.
- :mod:`~domainbert.blurb.readers`: one reader per file format; :mod:`~domainbert.blurb.chemprot`:
  the ChemProt release → BLURB's masked sentences (byte for byte); :mod:`~domainbert.blurb.examples`:
  the :class:`TokenExample` / :class:`TextExample` records. (Which files hold BLURB's test text, for
  decontamination, is the data stage's :mod:`domainbert.data.test_text`.)
- :mod:`~domainbert.blurb.featurize`: examples → model inputs (windows, markers, batches), shared
  with serving; :mod:`~domainbert.blurb.budgets`: which settings and seeds a budget trains;
  :mod:`~domainbert.blurb.finetune`: the one fine-tuning loop (``domainbert finetune``);
  :mod:`~domainbert.blurb.resume`: when a stored result may be reused;
  :mod:`~domainbert.blurb.metrics`: BLURB's metrics as the reference evaluators compute them, the one
  dispatch from a record to its metric, the breakdown, the BLURB score;
  :mod:`~domainbert.blurb.evaluate`: a fine-tuned model scored without training (``domainbert evaluate``).
- :mod:`~domainbert.blurb.suite`: the whole suite (``domainbert blurb``);
  :mod:`~domainbert.blurb.report`: its report, chart and TSV row;
  :mod:`~domainbert.blurb.compare`: several models' results side by side (``domainbert blurb --model A
  B``, ``domainbert report``), with :mod:`~domainbert.blurb.significance`: paired tests over seeds,
  bootstrap intervals over test examples, Holm's correction.
"""

from __future__ import annotations

from domainbert.blurb.examples import Label, TextExample, TokenExample
from domainbert.blurb.registry import (
    DATASETS,
    SPLITS,
    TASK_GROUPS,
    DatasetRecord,
    DatasetStatus,
    FinetuneDefaults,
    TaskType,
    dataset_status,
    default_data_dir,
    get_record,
    load_split,
    user_record,
)

__all__ = [
    "DATASETS", "SPLITS", "TASK_GROUPS", "DatasetRecord", "DatasetStatus", "FinetuneDefaults",
    "Label", "TaskType", "TextExample", "TokenExample", "dataset_status", "default_data_dir",
    "get_record", "load_split", "user_record",
]
