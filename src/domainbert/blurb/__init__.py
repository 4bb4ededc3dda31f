"""BLURB, the benchmark: a model directory in, fine-tuned models, scores and a report out.

Takes a BERT checkpoint (from :mod:`domainbert.train` or any Hugging Face BERT) and BLURB's 13
datasets (or a user's dataset in a BLURB format), and gives out per-dataset metrics, predictions
and models, ``results.json``, ``report.md``, a chart and a TSV row.

- :mod:`~domainbert.blurb.registry`: :class:`DatasetRecord`, the :data:`DATASETS` registry,
  :func:`load_split`, :func:`dataset_status`, :func:`user_record`, :func:`test_text_files`.
- :mod:`~domainbert.blurb.readers`: one reader per file format; :mod:`~domainbert.blurb.chemprot`:
  the ChemProt release → BLURB's masked sentences; :mod:`~domainbert.blurb.examples`: the
  :class:`TokenExample` / :class:`TextExample` records; :mod:`~domainbert.blurb.test_text`: the test
  files' raw text, for decontamination.
- :mod:`~domainbert.blurb.featurize`: examples → model inputs (windows, markers, batches), shared
  with serving; :mod:`~domainbert.blurb.finetune`: the one fine-tuning loop, the grid and seeds
  (``domainbert finetune``); :mod:`~domainbert.blurb.resume`: when a stored result may be reused;
  :mod:`~domainbert.blurb.metrics`: BLURB's metrics, the one dispatch from a record to its metric,
  the BLURB score.
- :mod:`~domainbert.blurb.suite`: the whole suite (``domainbert blurb``);
  :mod:`~domainbert.blurb.report`: its report, chart and TSV row;
  :mod:`~domainbert.blurb.compare`: several models' results side by side, with Welch's t over
  seeds (``domainbert blurb --model A B``, ``domainbert report``).
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
