"""``domainbert data download``: fetch the files the catalogue names into a cache, verified and resumable.

What can be fetched is :mod:`domainbert.data.sources` (the catalogue, read from ``sources.toml``);
this module moves bytes:

* The fetcher, :func:`download`: every file goes to ``<final>.part`` in the same folder, is
  fsynced, verified and only then renamed onto its final path, so an error never leaves a partial
  file at the final path. A ``.part`` left by an interrupted or truncated HTTP transfer is
  continued with a ``Range`` request when the server answers ``206``, and restarted when it does
  not. Verification is honest about what is published: PubMed files are checked against the
  ``.md5`` NLM publishes beside each one; every other file is checked for a complete transfer
  (``Content-Length``, or the source's size for a mirror folder) and for its format where that is
  cheap (UTF-8 text, JSON, XML, gzip CRC). No checksum is invented for files without one.
* One run at a time per folder (:func:`domainbert.atomic.one_writer`, POSIX ``flock``), so two runs never
  append to the same ``.part``.
* ``download.json`` in the cache root, the machine-readable manifest: for every file its size,
  SHA-256, MD5, whether the MD5 was checked against a published one, the URL it came from and when.
  A file whose manifest entry matches its size on disk (and the published MD5, for PubMed) counts
  as complete and is skipped on the next run.
* :func:`configure_download` and :func:`run_download`, the CLI glue (see ``domainbert.cli``).

Every failure (unreachable source, an HTTP error, a truncated transfer, a checksum mismatch, a file
missing from a mirror) raises :class:`~domainbert.errors.DataError` with a one-line message that
says what to do.
"""

from __future__ import annotations

import argparse
import codecs
import datetime as _dt
import gzip
import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainbert import __version__
from domainbert.atomic import one_writer
from domainbert.data.sources import (
    BLURB,
    PUBMED_BASE_URL,
    RemoteFile,
    blurb_files,
    corpus_files,
    current_pubmed_year,
    default_data_dir,
    pubmed_baseline_files,
)
from domainbert.errors import ConfigError, DataError
from domainbert.progress import tqdm

MANIFEST_NAME = "download.json"
"""The manifest written in the root of the download folder."""
_CHUNK = 1 << 20
_USER_AGENT = f"domainbert/{__version__} (data download; Python urllib)"


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying (server error, dropped connection, truncated transfer)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unavailable(DataError):
    """The source does not have the file (a mirror folder lacks it, or the server answers 404/410)."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


@dataclass(frozen=True)
class _Mirror:
    """A ``--mirror``: a local folder or an http(s) base URL with the cache's relative layout."""

    spec: str
    folder: Path | None
    base_url: str | None

    @classmethod
    def parse(cls, spec: str) -> _Mirror:
        if _is_url(spec):
            return cls(spec, None, spec if spec.endswith("/") else spec + "/")
        parts = urllib.parse.urlsplit(spec)
        folder = Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else Path(spec)
        folder = folder.expanduser()
        if not folder.is_dir():
            raise DataError(f"mirror folder {folder} does not exist or is not a folder; pass a folder "
                            "with the cache's layout (e.g. ../shared/data) or an http(s) base URL")
        return cls(spec, folder.resolve(), None)

    def url(self, rel: str) -> str:
        assert self.base_url is not None
        return self.base_url + urllib.parse.quote(rel)


def _md5_from_text(text: str, name: str, source: str) -> str:
    """The hex digest in an NLM ``MD5(name)= hex`` line (or ``md5sum``'s ``hex  name``)."""
    match = re.search(r"\b([0-9a-fA-F]{32})\b", text)
    if not match:
        raise DataError(f"{source} holds no MD5 digest (got {text[:80]!r}); the checksum file is "
                        "damaged: delete it and rerun, or check the source")
    named = re.search(r"MD5\s*\(([^)]*)\)", text) or re.search(r"[0-9a-fA-F]{32}\s+\*?(\S+)", text)
    if named and Path(named.group(1)).name != name:
        raise DataError(f"{source} is the checksum of {named.group(1)}, not of {name}; the mirror "
                        "or server has the wrong .md5 file beside it")
    return match.group(1).lower()


def _hash_file(path: Path) -> tuple[str, str, str]:
    """MD5, SHA-256 and git blob id of a file, in one read."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % path.stat().st_size)  # git's object header, then the bytes
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            blob.update(chunk)
    return md5.hexdigest(), sha256.hexdigest(), blob.hexdigest()


def _check_format(path: Path, rel: str) -> str | None:
    """Cheap structural check by file type; the problem in words, or None when it parses."""
    name = rel.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as f:  # reading to the end checks the CRC and length
                while f.read(_CHUNK):
                    pass
        elif name.endswith(".json"):
            with path.open("rb") as f:
                json.load(f)
        elif name.endswith(".xml"):
            ET.parse(path)
        else:  # .tsv, .txt, .pmids, LICENSE, .md5: text, UTF-8 throughout
            decoder = codecs.getincrementaldecoder("utf-8")()
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
    except (OSError, EOFError, zlib.error, ValueError, ET.ParseError) as exc:
        # gzip.BadGzipFile is an OSError; JSON and UTF-8 errors are ValueErrors
        return _one_line(exc)
    return None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


class _Fetcher:
    """Moves bytes from a source (URL or mirror folder) to ``<final>.part``."""

    def __init__(self, *, timeout: float, progress: bool):
        self.timeout = timeout
        self.progress = progress
        self.opener = urllib.request.build_opener()

    def _bar(self, desc: str, total: int | None, initial: int = 0) -> Any:
        return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                    unit_divisor=1024, leave=False, disable=None if self.progress else True)

    def copy_local(self, source: Path, part: Path, rel: str, mirror: str) -> None:
        if not source.is_file():
            raise Unavailable(f"{rel} is missing from the mirror folder {mirror}; put the file at "
                            f"{source} (the mirror needs the cache's layout) or drop --mirror to "
                            "fetch it from its public source")
        size = source.stat().st_size
        with source.open("rb") as src, part.open("wb") as dst, self._bar(rel, size) as bar:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
                bar.update(len(chunk))
            dst.flush()
            os.fsync(dst.fileno())
        copied = part.stat().st_size
        if copied != size:
            part.unlink()
            raise DataError(f"copying {rel} from the mirror folder {mirror} gave {copied:,} of "
                            f"{size:,} bytes (the source changed while copying?); rerun the command")

    def fetch_url(self, url: str, part: Path, rel: str, hint_404: str) -> None:
        """GET ``url`` into ``part``, continuing an existing ``part`` with a Range request.

        Raises :class:`_Transient` for failures worth a retry (the ``.part`` keeps what arrived)
        and :class:`DataError` for the rest.
        """
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(
            url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        host = urllib.parse.urlsplit(url).netloc
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                # The .part is not a prefix the server can continue (e.g. already full length or the
                # file changed): start over.
                part.unlink()
                return self.fetch_url(url, part, rel, hint_404)
            if exc.code in (404, 410):
                raise Unavailable(f"{url} answered HTTP {exc.code} ({exc.reason}) for {rel}; "
                                f"{hint_404}") from None
            message = (f"{url} answered HTTP {exc.code} ({exc.reason}) for {rel}; the server "
                       "failed: rerun later (the download resumes), or pass --mirror DIR_OR_URL")
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Transient(message) from None
            raise DataError(message) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _Transient(f"cannot reach {host} for {rel} ({_one_line(reason)}); check the network "
                             "or proxy and rerun (the download resumes), or pass --mirror "
                             "DIR_OR_URL with a copy of the files") from None
        with response:
            status = response.status
            if offset and status == 206:
                content_range = response.headers.get("Content-Range", "")
                match = re.match(r"bytes\s+(\d+)-", content_range)
                if not match or int(match.group(1)) != offset:
                    part.unlink()
                    raise _Transient(f"{url} answered a Range request for {rel} with Content-Range "
                                     f"{content_range!r} instead of bytes {offset}-; rerun the "
                                     "command (the partial file will be fetched again)")
            elif status == 200:
                offset = 0  # the server ignored Range (or none was sent): restart from byte 0
            else:
                raise DataError(f"{url} answered HTTP {status} for {rel}, expected 200; check the "
                                "URL, or pass --mirror DIR_OR_URL")
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise DataError(f"{url} sent {rel} with Content-Encoding {encoding!r} although "
                                "identity was asked for; the bytes would not be the file: use "
                                "another --mirror or --pubmed-base-url")
            length = response.headers.get("Content-Length")
            expected = offset + int(length) if length and length.isdigit() else None
            received = offset
            # Errors while reading are the network's (worth a retry that resumes); errors while
            # writing are the local disk's and propagate as OSError (see download()).
            with part.open("ab" if offset else "wb") as out, \
                    self._bar(rel, expected, initial=offset) as bar:
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (http.client.HTTPException, OSError) as exc:
                        out.flush()
                        os.fsync(out.fileno())
                        raise _Transient(
                            f"transfer of {rel} from {host} broke off after {received:,} of "
                            f"{f'{expected:,}' if expected is not None else 'unknown'} bytes "
                            f"({_one_line(exc) or type(exc).__name__}); rerun the same command to "
                            f"resume from {part.name}") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            if expected is not None and received != expected:
                raise _Transient(f"transfer of {rel} from {host} stopped after {received:,} of "
                                 f"{expected:,} bytes (the connection closed early); rerun the "
                                 f"same command to resume from {part.name}")


def _load_manifest(out_dir: Path) -> dict[str, Any]:
    path = out_dir / MANIFEST_NAME
    if not path.exists():
        return {"format": 1, "files": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' object")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a valid download manifest ({_one_line(exc)}); delete it and "
                        "rerun (files are then fetched and verified again)") from None
    return manifest


def _write_atomic(path: Path, data: bytes) -> None:
    part = _part_path(path)
    with part.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    _fsync_dir(path.parent)


def _save_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    manifest["files"] = dict(sorted(manifest["files"].items()))
    _write_atomic(out_dir / MANIFEST_NAME,
                  (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _is_complete(out_dir: Path, file: RemoteFile, manifest: dict[str, Any], verify: bool) -> bool:
    """True when the file is at its final path with a matching manifest entry (and MD5 file).

    Without ``verify`` the size on disk is compared (a stat); with it the SHA-256 is recomputed.
    """
    entry = manifest["files"].get(file.path)
    final = out_dir / file.path
    if not entry or not final.is_file() or final.stat().st_size != entry.get("size"):
        return False
    if file.blob is not None and entry.get("git_blob") != file.blob:  # fetched before the id was known
        return False
    if verify and _hash_file(final)[1] != entry.get("sha256"):
        return False
    if file.md5_url is None:
        return True
    md5_file = out_dir / file.md5_path
    if not md5_file.is_file() or not entry.get("md5_verified"):
        return False
    try:
        published = _md5_from_text(md5_file.read_text(encoding="ascii", errors="replace"),
                                   Path(file.path).name, str(md5_file))
    except DataError:
        return False
    return published == entry.get("md5")


@dataclass
class DownloadResult:
    """What one :func:`download` call did."""

    out_dir: Path
    fetched: list[str]
    """Relative paths fetched (and verified) in this run."""
    skipped: list[str]
    """Relative paths already complete, left as they were."""
    bytes_fetched: int
    unavailable: list[str] = field(default_factory=list)
    """Relative paths the source did not have (only with ``skip_unavailable``); nothing written for them."""

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_NAME


def download(files: Sequence[RemoteFile], out_dir: str | Path, *, mirror: str | None = None,
             timeout: float = 60.0, retries: int = 2, retry_wait: float = 2.0,
             verify: bool = False, progress: bool = True, skip_unavailable: bool = False) -> DownloadResult:
    """Fetch ``files`` into ``out_dir`` (same relative paths), verified and atomically written.

    ``mirror`` (a folder or an http(s) base URL) replaces every file's public source by
    ``<mirror>/<path>`` (and ``<mirror>/<path>.md5`` for files with a published MD5). Transient
    failures (5xx, dropped connections, truncated transfers) are retried ``retries`` times,
    ``retry_wait`` seconds apart and doubling, resuming the ``.part`` when the server allows.
    Files already complete are skipped: their manifest entry matches the size on disk, or with
    ``verify`` the SHA-256 (a re-read); a file that fails that is fetched again.
    A file with a git blob id (and size) in the catalogue is refused unless its bytes give them.
    Raises :class:`DataError` on the first file that cannot be fetched; files completed before it
    stay (and are in the manifest), so a rerun continues where this one stopped. With
    ``skip_unavailable``, a file the source does not have (a mirror folder without it, HTTP 404/410)
    is listed in ``unavailable`` and the rest go on; a file that arrives with the wrong bytes is
    still an error.
    """
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the download folder {out} ({_one_line(exc)}); pass a "
                        "writable --out DIR or set DOMAINBERT_DATA") from None
    source_mirror = _Mirror.parse(mirror) if mirror else None
    if source_mirror is not None and source_mirror.folder == out.resolve():
        raise DataError(f"--mirror and --out are the same folder ({out}); the files are already "
                        "there: pass another --out DIR, or use the folder directly")
    if source_mirror is None:
        for file in files:
            _source_of(file, file.path, file.url, None)  # fail before fetching anything
    fetcher = _Fetcher(timeout=timeout, progress=progress)
    result = DownloadResult(out, [], [], 0)
    unique = list({f.path: f for f in files}.values())
    with one_writer(out, "data download", DataError), tqdm(unique, desc="files", unit="file",
                          disable=None if progress else True) as bar:
        manifest = _load_manifest(out)  # read under the lock: another run may just have written it
        for file in bar:
            if _is_complete(out, file, manifest, verify):
                result.skipped.append(file.path)
                continue
            try:
                entry = _fetch_one(file, out, source_mirror, fetcher, retries, retry_wait)
                manifest["files"][file.path] = entry
                _save_manifest(out, manifest)  # after every file: an interrupted run keeps its work
            except Unavailable:
                if not skip_unavailable:
                    raise
                _part_path(out / file.path).unlink(missing_ok=True)
                result.unavailable.append(file.path)
                continue
            except OSError as exc:  # network errors are DataErrors by now: this is the file system
                raise DataError(f"cannot write {file.path} under {out} ({_one_line(exc)}); free "
                                "disk space or pass a writable --out DIR (or DOMAINBERT_DATA)"
                                ) from None
            result.fetched.append(file.path)
            result.bytes_fetched += entry["size"]
    return result


def _source_of(file: RemoteFile, rel: str, url: str | None, mirror: _Mirror | None
               ) -> tuple[str, Path | None, str | None]:
    """(description, local path, url) of where ``rel`` comes from."""
    if mirror is not None:
        if mirror.folder is not None:
            return str(mirror.folder / rel), mirror.folder / rel, None
        return mirror.url(rel), None, mirror.url(rel)
    if url is None:
        raise DataError(f"{rel} is a {file.origin or 'file without a public source'}, so it can only "
                        "come from a mirror: pass --mirror DIR_OR_URL (e.g. --mirror ../shared/data)")
    return url, None, url


def _transfer(rel: str, final: Path, source: tuple[str, Path | None, str | None],
              mirror: _Mirror | None, fetcher: _Fetcher, retries: int, retry_wait: float,
              hint_404: str) -> None:
    """Bring ``rel`` into ``<final>.part`` (complete transfer, not yet verified)."""
    _, local, url = source
    part = _part_path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if local is not None:
        assert mirror is not None
        fetcher.copy_local(local, part, rel, mirror.spec)
        return
    assert url is not None
    for attempt in range(retries + 1):
        try:
            fetcher.fetch_url(url, part, rel, hint_404)
            return
        except _Transient as exc:
            if attempt == retries:
                raise DataError(exc.message) from None
            time.sleep(retry_wait * 2 ** attempt)


def _hint_404(file: RemoteFile, rel: str, mirror: _Mirror | None) -> str:
    if mirror is not None:
        return (f"the mirror {mirror.spec} lacks it: add the file there at {rel}, or drop --mirror "
                "to fetch it from its public source")
    if file.md5_url is not None:
        return ("NLM keeps only the current baseline year: check " + PUBMED_BASE_URL +
                " for the current pubmedYYn prefix and pass --pubmed-year YY, and that the file "
                "numbers exist")
    return (f"the public copy ({file.origin}) has gone; fetch it from another copy with "
            "--mirror DIR_OR_URL and report the broken link")


def _fetch_one(file: RemoteFile, out: Path, mirror: _Mirror | None, fetcher: _Fetcher,
               retries: int, retry_wait: float) -> dict[str, Any]:
    """Fetch, verify and install one file; return its manifest entry."""
    final = out / file.path
    published_md5: str | None = None
    if file.md5_url is not None:
        md5_final = out / file.md5_path
        md5_source = _source_of(file, file.md5_path, file.md5_url, mirror)
        _transfer(file.md5_path, md5_final, md5_source, mirror, fetcher, retries, retry_wait,
                  _hint_404(file, file.md5_path, mirror))
        md5_part = _part_path(md5_final)
        text = md5_part.read_text(encoding="ascii", errors="replace")
        try:
            published_md5 = _md5_from_text(text, final.name, md5_source[0])
        except DataError:
            md5_part.unlink(missing_ok=True)
            raise
        os.replace(md5_part, md5_final)

    source = _source_of(file, file.path, file.url, mirror)
    _transfer(file.path, final, source, mirror, fetcher, retries, retry_wait,
              _hint_404(file, file.path, mirror))
    part = _part_path(final)
    md5, sha256, blob = _hash_file(part)
    size = part.stat().st_size
    if file.size is not None and size != file.size:
        part.unlink()
        raise DataError(f"{file.path} from {source[0]} has {size:,} bytes but {file.origin} has "
                        f"{file.size:,}; the download was deleted: rerun, and if it fails again the source "
                        "copy is not the pinned file (try another --mirror)")
    if file.blob is not None and blob != file.blob:
        part.unlink()
        raise DataError(f"{file.path} from {source[0]} has git blob id {blob} but {file.origin} is "
                        f"{file.blob}; the download was deleted: the source holds other bytes than the "
                        "pinned file (another release or a damaged copy): fetch it from its public source "
                        "or another --mirror")
    if published_md5 is not None:
        if md5 != published_md5:
            part.unlink()
            raise DataError(f"{file.path} from {source[0]} has MD5 {md5} but the published checksum "
                            f"is {published_md5}; the download was deleted: rerun to fetch it "
                            "again, and if it fails again the source copy is corrupt")
    elif file.blob is None:  # nothing published to check the bytes against: check they parse
        problem = _check_format(part, file.path)
        if problem is not None:
            part.unlink()
            raise DataError(f"{file.path} from {source[0]} does not parse ({problem}); the download "
                            "was deleted: rerun to fetch it again, and if it fails again the source "
                            "copy is damaged (try another --mirror)")
    os.replace(part, final)
    _fsync_dir(final.parent)
    return {
        "size": size,
        "sha256": sha256,
        "md5": md5,
        "md5_verified": published_md5 is not None,
        "git_blob": blob,
        "blob_verified": file.blob is not None,
        "source": source[0],
        "origin": file.origin,
        "fetched_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _pubmed_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a file-number range; write START-END (e.g. 1-3) or one number")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if not 1 <= start <= end <= 9999:
        raise argparse.ArgumentTypeError(
            f"{text!r}: need 1 <= START <= END <= 9999 (baseline files are numbered from 0001)")
    return start, end


def _year(text: str) -> int:
    if not re.fullmatch(r"\d{2}", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a two-digit year (e.g. 26 for pubmed26n)")
    return int(text)


def configure_download(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``domainbert data download``."""
    what = parser.add_argument_group("what to fetch (at least one)")
    what.add_argument("--pubmed", type=_pubmed_range, metavar="START-END",
                      help="PubMed baseline files by number, e.g. 1-3 for pubmedYYn0001..0003.xml.gz "
                           "(each about 20-40 MB; a yearly baseline has about 1,200-1,300 files)")
    what.add_argument("--blurb", nargs="*", action="extend", metavar="NAME",
                      help=f"BLURB datasets by name; no name means all: {', '.join(BLURB)}")
    what.add_argument("--corpus", action="store_true",
                      help="the sample pretraining corpus (pubmed_corpus/, derived: needs --mirror) "
                           "and the MEDLINE XML samples (medline_xml/)")
    parser.add_argument("--out", type=Path, default=default_data_dir(), metavar="DIR",
                        help="download folder; the default is $DOMAINBERT_DATA, else "
                             "~/.cache/domainbert/data")
    parser.add_argument("--mirror", default=None, metavar="DIR_OR_URL",
                        help="take every file from this folder or http(s) base URL instead, at the "
                             "same relative path (e.g. ../shared/data)")
    parser.add_argument("--pubmed-year", type=_year, default=current_pubmed_year(), metavar="YY",
                        help="two-digit baseline year in the file names, pubmedYYn (the default is "
                             "this year's); NLM keeps only the current baseline")
    parser.add_argument("--pubmed-base-url", default=PUBMED_BASE_URL, metavar="URL",
                        help="directory that holds the baseline files and their .md5")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="network timeout per connection and read")
    parser.add_argument("--retries", type=int, default=2,
                        help="retries of a transient failure (server error, dropped or truncated "
                             "transfer), resuming where it stopped")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash files already downloaded against the manifest (not just their "
                             "size) and fetch again any that changed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_download(args: argparse.Namespace) -> int:
    """Run ``domainbert data download``; prints a summary and returns 0 (errors raise DataError)."""
    if not args.timeout > 0:
        raise ConfigError(f"--timeout {args.timeout} must be a positive number of seconds")
    if args.retries < 0:
        raise ConfigError(f"--retries {args.retries} must be 0 or more")
    files: list[RemoteFile] = []
    if args.pubmed is not None:
        start, end = args.pubmed
        files += pubmed_baseline_files(start, end, year=args.pubmed_year,
                                       base_url=args.pubmed_base_url)
    if args.blurb is not None:
        files += blurb_files(args.blurb)
    if args.corpus:
        files += corpus_files()
    if not files:
        raise ConfigError("nothing to download: pass --pubmed START-END, --blurb [NAME ...] and/or "
                          "--corpus (see `domainbert data download --help`)")
    if args.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {args.retries}")
    # Every BLURB dataset (--blurb without names): what the source lacks is said, the rest is fetched.
    every = args.blurb is not None and not args.blurb
    result = download(files, args.out, mirror=args.mirror, timeout=args.timeout, retries=args.retries,
                      verify=args.verify, progress=not args.no_progress, skip_unavailable=every)
    print(f"{len(result.fetched)} file(s) fetched ({result.bytes_fetched / 1e6:.1f} MB), "
          f"{len(result.skipped)} already complete, in {result.out_dir}; "
          f"manifest: {result.manifest}")
    if result.unavailable:
        print(f"{len(result.unavailable)} file(s) not in {args.mirror or 'the public sources'}, so "
              f"incomplete: {unavailable_datasets(result.unavailable)}; run `domainbert data download --blurb` "
              "on a connected machine without --mirror to fetch every BLURB file", file=sys.stderr)
    return 0


def unavailable_datasets(paths: Sequence[str]) -> str:
    """``bc2gm (train.tsv, dev.tsv), ddi (...)``: the files of a download's ``unavailable``, by folder."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        folder, _, rest = path.partition("/")
        by_folder.setdefault(folder, []).append(rest)
    return ", ".join(f"{folder} ({', '.join(rest)})" for folder, rest in by_folder.items())
