"""What ``domainbert data download`` can fetch, and where fetched data lives.

The catalogue itself is data, not code: ``sources.toml`` beside this module lists every BLURB and
sample-corpus file as a cache path and its public source (a GitHub repository at the commit
``../shared/data/SOURCES.md`` names, or "mirror only" with the reason). This module reads it into
:class:`RemoteFile` records grouped in :data:`BLURB` and :data:`CORPUS` entries, adds NLM's PubMed
baseline by number range (:func:`pubmed_baseline_files`, each file with the ``.md5`` NLM publishes
beside it), and says where the cache is (:func:`default_data_dir`). The cache keeps the layout of
``../shared/data`` (``ncbi_disease/train.tsv``, ``chemprot/raw/...``, ``pubmedqa/ori_pqal.json``), so
``--mirror ../shared/data`` serves every file offline. Fetching is :mod:`domainbert.data.download`.

Two environment variables point the public sources elsewhere (a proxy, an institutional mirror of
NLM's FTP, or a test server), as ``HF_ENDPOINT`` does for the Hub: ``DOMAINBERT_PUBMED_URL`` replaces
NLM's baseline directory and ``DOMAINBERT_GITHUB_RAW`` replaces ``https://raw.githubusercontent.com``.
They are read each time the catalogue's files are listed (:func:`blurb_files`, :func:`corpus_files`).

Every BLURB file carries its git blob id (and its size where the repository's tree records it), so a
download is verified against the exact bytes of the pinned commit without anyone holding the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tomllib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from domainbert.errors import ConfigError

PUBMED_BASE_URL = os.environ.get("DOMAINBERT_PUBMED_URL") or "https://ftp.ncbi.nlm.nih.gov/pubmed/baseline/"
"""NLM's public baseline directory; holds ``pubmedYYnNNNN.xml.gz`` and ``.md5`` for the current YY."""

PUBMED_CACHE_DIR = "pubmed_baseline"
"""Folder (in the cache and in a mirror) that holds the PubMed baseline files."""

GITHUB_RAW = "https://raw.githubusercontent.com"
"""Where raw files of a GitHub repository at a commit are served; ``DOMAINBERT_GITHUB_RAW`` replaces it."""


def github_raw() -> str:
    """The raw-file host in use: ``$DOMAINBERT_GITHUB_RAW`` when set, else :data:`GITHUB_RAW`."""
    return (os.environ.get("DOMAINBERT_GITHUB_RAW") or GITHUB_RAW).rstrip("/")


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file with these bytes: ``sha1(b"blob <size>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def default_data_dir() -> Path:
    """Where downloaded data lives unless ``--out`` says otherwise.

    ``$DOMAINBERT_DATA`` when set, else ``$XDG_CACHE_HOME/domainbert/data``, else
    ``~/.cache/domainbert/data``. Other modules call this to find the files ``data download`` put
    there (e.g. ``default_data_dir() / "ncbi_disease" / "train.tsv"``).
    """
    env = os.environ.get("DOMAINBERT_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "domainbert" / "data"


def current_pubmed_year() -> int:
    """Two-digit year of the PubMed baseline that is current by today's date (2026 -> 26).

    NLM publishes the baseline for year YY in December of the year before and deletes the previous
    one, so in December this may still name the outgoing baseline; ``--pubmed-year`` overrides it.
    """
    return _dt.date.today().year % 100


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file."""

    path: str
    """Relative POSIX path in the cache, and in a ``--mirror`` (e.g. ``ncbi_disease/train.tsv``)."""
    url: str | None
    """Its public URL; ``None`` when a mirror is the only source (derived files)."""
    md5_url: str | None = None
    """URL of the MD5 published beside it (PubMed); ``None`` when none is published."""
    origin: str = ""
    """Where it comes from, in words (``owner/repo@commit:path``), for messages and the manifest."""
    blob: str | None = None
    """Its git blob id at the pinned commit; a download with other bytes is refused. None: not known."""
    size: int | None = None
    """Its size in bytes at the pinned commit, where known."""

    @property
    def md5_path(self) -> str:
        """Cache (and mirror) path of the published MD5 file."""
        return self.path + ".md5"


@dataclass(frozen=True)
class CatalogueEntry:
    """A named group of files that ``--blurb NAME`` or ``--corpus`` fetches together."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]


def _entry(raw: dict[str, Any], host: str) -> CatalogueEntry:
    files: list[RemoteFile] = []
    for group in raw["files"]:
        if "mirror_only" in group:
            files += [RemoteFile(path=p, url=None, origin=group["mirror_only"]) for p in group["paths"]]
            continue
        repo, commit = group["repo"], group["commit"]
        for local, value in group["paths"].items():
            remote = value if isinstance(value, str) else value["path"]
            extra = {} if isinstance(value, str) else {"blob": value["blob"], "size": value.get("bytes")}
            files.append(RemoteFile(path=local, url=f"{host}/{repo}/{commit}/{urllib.parse.quote(remote)}",
                                    origin=f"{repo}@{commit}:{remote}", **extra))
    return CatalogueEntry(raw["name"], raw["description"], tuple(files))


def _catalogue() -> dict[str, Any]:
    return tomllib.loads(resources.files("domainbert.data").joinpath("sources.toml").read_text(encoding="utf-8"))


_RAW = _catalogue()


def _entries(kind: str) -> dict[str, CatalogueEntry]:
    host = github_raw()
    return {raw["name"]: _entry(raw, host) for raw in _RAW[kind]}


BLURB: dict[str, CatalogueEntry] = _entries("blurb")
"""The 13 BLURB datasets (and the source abstracts two of them were cut from), by cache folder name;
URLs as of import (:func:`blurb_files` reads the raw-file host afresh)."""

CORPUS: dict[str, CatalogueEntry] = _entries("corpus")
"""The sample pretraining corpus (``--corpus``): the derived text and the MEDLINE XML it came from."""


def pubmed_baseline_files(start: int, end: int, *, year: int | None = None,
                          base_url: str = PUBMED_BASE_URL) -> list[RemoteFile]:
    """PubMed baseline files ``start..end`` (inclusive), e.g. 1..3 -> ``pubmed26n0001.xml.gz`` ...

    Each comes with the URL of the ``.md5`` NLM publishes beside it. ``year`` is the two-digit
    baseline year (default :func:`current_pubmed_year`); ``base_url`` is the directory holding them.
    """
    year = current_pubmed_year() if year is None else year
    if not 0 <= year <= 99:
        raise ConfigError(f"PubMed baseline year must be two digits (e.g. 26), got {year}")
    if not 1 <= start <= end <= 9999:
        raise ConfigError(f"PubMed baseline file numbers must satisfy 1 <= START <= END <= 9999, "
                          f"got {start}-{end}")
    base = base_url if base_url.endswith("/") else base_url + "/"
    files = []
    for number in range(start, end + 1):
        name = f"pubmed{year:02d}n{number:04d}.xml.gz"
        files.append(RemoteFile(path=f"{PUBMED_CACHE_DIR}/{name}", url=base + name,
                                md5_url=base + name + ".md5", origin=f"NLM PubMed baseline {name}"))
    return files


BLURB_ALIASES: dict[str, str] = {"bc5_chem": "bc5cdr_chem", "bc5_disease": "bc5cdr_disease",
                                  "ncbi": "ncbi_disease", "pico": "ebm_pico"}
"""Other spellings of the catalogue names (after lower-casing and ``-`` -> ``_``), e.g. the
BLURB registry's ``bc5-chem``."""

def _normalise(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return BLURB_ALIASES.get(key, key)


def blurb_files(names: Sequence[str] | None = None) -> list[RemoteFile]:
    """The files of the named BLURB entries (all of them when ``names`` is empty/None)."""
    entries = _entries("blurb")
    if not names:
        return [f for entry in entries.values() for f in entry.files]
    unknown = [n for n in names if _normalise(n) not in entries]
    if unknown:
        raise ConfigError(f"unknown BLURB dataset(s) {', '.join(map(repr, unknown))}; "
                          f"choose from: {', '.join(entries)} (or give no name for all)")
    chosen = dict.fromkeys(_normalise(n) for n in names)  # keeps order, drops repeats
    return [f for name in chosen for f in entries[name].files]


def corpus_files() -> list[RemoteFile]:
    """The files of :data:`CORPUS` (the derived sample corpus and the MEDLINE XML samples)."""
    return [f for entry in _entries("corpus").values() for f in entry.files]
