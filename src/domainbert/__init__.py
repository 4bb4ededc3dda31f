"""domainbert: build a domain-specific BERT from your own corpus and prove it on BLURB.

The pipeline, one module per stage::

    text ─► vocab.py ─► pretraining_data.py ─► modeling.py + pretrain.py ─► checkpoint.py
         ─► finetune.py ─► blurb.py ─► report

The public classes are re-exported here lazily (importing ``domainbert`` does not import torch):
``BertConfig``, ``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM``,
``BertForTokenClassification``, ``BertForSequenceClassification`` and ``BertTokenizer``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BertConfig": "domainbert.configuration",
    "BertModel": "domainbert.modeling",
    "BertForPreTraining": "domainbert.modeling",
    "BertForMaskedLM": "domainbert.modeling",
    "BertForTokenClassification": "domainbert.modeling",
    "BertForSequenceClassification": "domainbert.modeling",
    "BertTokenizer": "domainbert.tokenization",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'domainbert' has no attribute {name!r}")
