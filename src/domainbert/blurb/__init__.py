"""BLURB's 13 datasets: records, readers and loading (the data half of ``domainbert blurb``).

- :mod:`~domainbert.blurb.registry`: :class:`DatasetRecord`, the :data:`DATASETS` registry,
  :func:`load_split`, :func:`dataset_status`, :func:`user_record`.
- :mod:`~domainbert.blurb.readers`: one reader per file format.
- :mod:`~domainbert.blurb.chemprot`: the ChemProt release → BLURB's masked sentences.
- :mod:`~domainbert.blurb.examples`: the :class:`TokenExample` / :class:`TextExample` records.

Metrics and the BLURB score are in :mod:`domainbert.metrics`.
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
