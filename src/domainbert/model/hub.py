"""Where a ``--model`` value points: a local checkpoint directory, or a Hugging Face Hub repo id.

A value naming an existing directory is that directory. Anything else is read as a Hub repo id
(``owner/name`` or a legacy ``name``) and fetched with ``huggingface_hub`` into its cache, only the
files a BERT needs: ``config.json``, the safetensors weights (or, when a repo has none,
``pytorch_model.bin`` and its shards) and the vocabulary/tokenizer files. ``huggingface_hub`` itself
honours ``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache is), ``HF_HUB_OFFLINE`` (cache only),
``HF_TOKEN`` (private and gated repos) and ``HF_ENDPOINT`` (a mirror), as transformers does.

:func:`resolve_model` returns a :class:`ModelSource`: the directory to load, and for a Hub model the
repo id, the revision asked for and the commit it resolved to, which every run records
(:meth:`ModelSource.record`). A failure is one :class:`~domainbert.errors.CheckpointError` line that
says what to do (offline and not cached, no such repo, gated, no such revision).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from domainbert.errors import CheckpointError

#: Files a BERT checkpoint needs besides its weights (absent ones are skipped).
CONFIG_AND_VOCAB = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json"]
#: Weight files, safetensors first; a repo's ``pytorch_model.bin`` is fetched only when it has no safetensors.
SAFETENSORS_PATTERNS = ["model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json"]
BIN_PATTERNS = ["pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"]


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``--model`` value."""

    path: Path
    """The directory to load (for a Hub model: its snapshot in the cache)."""
    repo_id: str | None = None
    """The Hub repo id, or None for a local directory."""
    revision: str | None = None
    """The revision asked for (branch, tag or commit; None: the default branch)."""
    commit: str | None = None
    """The commit the revision resolved to."""

    @property
    def label(self) -> str:
        """How reports name the model: the repo id, or the directory as given."""
        return self.repo_id or str(self.path)

    def record(self) -> dict[str, Any]:
        """What a run's outputs store about where the model came from."""
        if self.repo_id is None:
            return {"directory": str(self.path)}
        return {"repo_id": self.repo_id, "revision": self.revision or "main", "commit": self.commit,
                "directory": str(self.path)}


def _looks_like_path(value: str) -> bool:
    """True for values that can only be paths (a repo id has at most one '/', no leading . / ~)."""
    return (value.startswith((".", "/", "~")) or value.count("/") > 1 or os.sep != "/" and os.sep in value
            or value.endswith("/"))


def _fetch_hint(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"`hf download {repo_id}{rev}` on a connected machine with the same HF_HOME"


def resolve_model(value: str | os.PathLike, revision: str | None = None) -> ModelSource:
    """The directory a ``--model`` value means: itself when it is a directory, else a Hub snapshot."""
    text = os.fspath(value)
    path = Path(text).expanduser()
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"--revision {revision} applies to Hub models, and {text} is a local directory: "
                                  "drop --revision")
        return ModelSource(path)
    if path.exists():
        raise CheckpointError(f"{text} is a file, not a model directory: pass the folder holding config.json")
    if _looks_like_path(text):
        raise CheckpointError(f"{text} does not exist: pass a model directory (with config.json) or a Hub repo "
                              "id such as microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract")
    return _download(text, revision)


#: What each Hub error means for a ``--model`` value, in the order they are tried.
_HUB_ERRORS = (
    (HFValidationError, "{repo_id}: no such model directory, and not a valid Hub repo id (owner/name): check the "
                        "path or the name"),
    (GatedRepoError, "{repo_id} is a gated Hub model: accept its terms on the Hub, then set HF_TOKEN to a token of "
                     "that account"),
    (RevisionNotFoundError, "{repo_id} has no revision {revision!r} on the Hub: pass a branch, tag or commit it has"),
    (RepositoryNotFoundError, "{repo_id}: no such model directory, and no Hub model of that name (a private one "
                              "needs HF_TOKEN): check the path or the repo id"),
)


def _download(repo_id: str, revision: str | None) -> ModelSource:
    offline = constants.HF_HUB_OFFLINE
    try:
        folder = Path(snapshot_download(repo_id, revision=revision,
                                        allow_patterns=CONFIG_AND_VOCAB + SAFETENSORS_PATTERNS))
        if not any(folder.glob("*.safetensors")) and not (folder / SAFETENSORS_PATTERNS[-1]).is_file():
            folder = Path(snapshot_download(repo_id, revision=revision,
                                            allow_patterns=CONFIG_AND_VOCAB + BIN_PATTERNS))
    except (HFValidationError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        # the first class that matches says it (a gated repo is also a RepositoryNotFoundError)
        what = next(text for cls, text in _HUB_ERRORS if isinstance(exc, cls))
        raise CheckpointError(what.format(repo_id=repo_id, revision=revision)) from None
    except LocalEntryNotFoundError:
        where = "HF_HUB_OFFLINE is set" if offline else f"the Hub ({constants.ENDPOINT}) could not be reached"
        raise CheckpointError(f"{repo_id} is not a directory and not in the Hugging Face cache "
                              f"({constants.HF_HUB_CACHE}), and {where}: fetch it with "
                              f"{_fetch_hint(repo_id, revision)}, or pass a model directory") from None
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"Hub model {repo_id} has no config.json: it is not a transformers checkpoint")
    return ModelSource(folder, repo_id, revision, folder.name)


def add_revision_argument(parser: argparse.ArgumentParser) -> None:
    """``--revision`` for commands whose models may be Hub repo ids."""
    parser.add_argument("--revision", default=None,
                        help="branch, tag or commit of Hub models (default: the default branch)")


MODEL_HELP = ("model directory, or a Hugging Face Hub repo id "
              "(e.g. microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract)")
