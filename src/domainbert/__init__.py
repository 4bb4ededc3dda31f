"""domainbert: build a domain-specific BERT from your own corpus and prove it on BLURB.

The pipeline, one subpackage per stage::

    data/   text ─► corpus, filters ─► vocab ─► examples ─► shards      (data download, vocab build,
                                                                          data prepare)
    model/  configuration, modeling, hf_io                              (model create / info)
    train/  pretrain ─► state (checkpoints) ─► export                   (pretrain, export)
    blurb/  registry, readers ─► featurize ─► finetune ─► metrics ─► suite ─► report
                                                                        (finetune, blurb)
    serve/  inference ─► commands, app                                  (fill-mask, ner, classify,
                                                                          embed, serve)

``quickstart`` wires every stage into one command; ``cli`` is the command table. The public classes
are re-exported here lazily (importing ``domainbert`` does not import torch): ``BertConfig``,
``BertModel``, ``BertForPreTraining``, ``BertForMaskedLM``, ``BertForTokenClassification``,
``BertForSequenceClassification`` and ``BertTokenizer``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BertConfig": "domainbert.model.configuration",
    "BertModel": "domainbert.model.modeling",
    "BertForPreTraining": "domainbert.model.modeling",
    "BertForMaskedLM": "domainbert.model.modeling",
    "BertForTokenClassification": "domainbert.model.modeling",
    "BertForSequenceClassification": "domainbert.model.modeling",
    "BertTokenizer": "domainbert.data.tokenization",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'domainbert' has no attribute {name!r}")
