"""Tests of ``domainbert data download`` against a real HTTP server on loopback and a folder mirror.

The server (``http.server`` in a thread) serves a tmp folder through a handler the tests steer: it
can answer a path with an HTTP error, cut a transfer short (a full ``Content-Length``, fewer bytes,
then close), and honour or ignore ``Range``. It logs every request with its ``Range`` header so
the tests can see a resume happen. PubMed baseline files are synthetic gzip files built in
``tmp_path`` with their real MD5s; the BLURB and corpus files come from ``../shared/data``. Nothing
here touches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from domainbert import cli
from domainbert.blurb.chemprot import read_chemprot_raw
from domainbert.blurb.registry import DATASETS, dataset_status
from domainbert.data.download import MANIFEST_NAME, download
from domainbert.data.sources import (
    BLURB,
    CORPUS,
    PUBMED_CACHE_DIR,
    RemoteFile,
    blurb_files,
    corpus_files,
    default_data_dir,
    git_blob_id,
    pubmed_baseline_files,
)
from domainbert.errors import ConfigError, DataError

YEAR = 99  # a baseline year NLM has never published, so nothing could match a real file by accident


# ------------------------------------------------------------------------------------------------
# A controllable HTTP server on loopback
# ------------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    root: Path
    ranges: bool = True
    """Honour ``Range: bytes=N-`` with 206 (else ignore it and send 200 with the whole file)."""
    fail: dict[str, list[int]] = field(default_factory=dict)
    """URL path -> HTTP statuses to answer, one per request, before serving normally."""
    truncate: dict[str, list[int]] = field(default_factory=dict)
    """URL path -> byte counts: send the full Content-Length but only this many bytes, then close."""
    log: list[tuple[str, str | None, int]] = field(default_factory=list)
    """(path, Range header, status) of every request."""


def _handler(state: ServerState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str], sent: int | None,
                  range_header: str | None, path: str) -> None:
            state.log.append((path, range_header, status))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if sent is None else body[:sent])
            self.wfile.flush()
            self.close_connection = True

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            range_header = self.headers.get("Range")
            if state.fail.get(path):
                code = state.fail[path].pop(0)
                self._send(code, f"error {code}\n".encode(), {}, None, range_header, path)
                return
            file = state.root / path
            if not file.is_file():
                self._send(404, b"not found\n", {}, None, range_header, path)
                return
            data = file.read_bytes()
            status, headers, body = 200, {"Accept-Ranges": "bytes" if state.ranges else "none"}, data
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if state.ranges and match:
                start = int(match.group(1))
                if start >= len(data):
                    self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, None,
                               range_header, path)
                    return
                status, body = 206, data[start:]
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            sent = state.truncate[path].pop(0) if state.truncate.get(path) else None
            self._send(status, body, headers, sent, range_header, path)

    return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServerState]]:
    """(base URL with a trailing slash, steerable state) of a server over ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    state = ServerState(root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _make_pubmed(folder: Path, numbers: range, year: int = YEAR) -> dict[str, bytes]:
    """Small real-gzip baseline files with NLM-style ``MD5(name)= hex`` files beside them."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for n in numbers:
        name = f"pubmed{year:02d}n{n:04d}.xml.gz"
        xml = ('<?xml version="1.0"?>\n<PubmedArticleSet>'
               + "".join(f"<PubmedArticle><PMID>{n * 1000 + i}</PMID><Abstract>Abstract {i} of "
                         f"file {n}: {'lorem ipsum ' * (20 + i)}</Abstract></PubmedArticle>"
                         for i in range(40))
               + "</PubmedArticleSet>\n").encode()
        data = gzip.compress(xml, mtime=0)
        (folder / name).write_bytes(data)
        (folder / (name + ".md5")).write_text(f"MD5({name})= {hashlib.md5(data).hexdigest()}\n")
        made[name] = data
    return made


def _pubmed(base: str, start: int, end: int) -> list[RemoteFile]:
    return pubmed_baseline_files(start, end, year=YEAR, base_url=base + "baseline/")


def _leftovers(out: Path) -> list[str]:
    """Every file under ``out`` (relative), to check what an error left behind."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and p.name != ".download.lock")


# ------------------------------------------------------------------------------------------------
# Catalogue
# ------------------------------------------------------------------------------------------------


#: The BLURB files ../shared/data does not hold (its SOURCES.md, "Not included here").
NOT_IN_SHARED = {"bc2gm/train.tsv", "bc2gm/dev.tsv", "bc2gm/test.tsv", "ddi/train.tsv", "ddi/dev.tsv",
                 "ddi/test.tsv", "ddi/train_files.tsv", "ddi/dev_files.tsv", "ddi/test_files.tsv",
                 "chemprot/blurb/train.tsv", "chemprot/blurb/test.tsv", "ebm_pico/train.tsv"}


def test_catalogue_is_exactly_the_shared_data_layout(shared_data: Path) -> None:
    files = blurb_files() + corpus_files()
    paths = [f.path for f in files]
    assert len(paths) == len(set(paths)), "two catalogue records share a cache path"
    missing = {p for p in paths if not (shared_data / p).is_file()}
    assert missing == NOT_IN_SHARED, f"catalogue names files absent from ../shared/data: {missing - NOT_IN_SHARED}"
    paths = [p for p in paths if p not in NOT_IN_SHARED]
    folders = {p.split("/")[0] for p in paths}
    on_disk = {str(p.relative_to(shared_data)) for p in shared_data.rglob("*")
               if p.is_file() and p.relative_to(shared_data).parts[0] in folders}
    assert on_disk == set(paths), f"files in ../shared/data not in the catalogue: {on_disk - set(paths)}"
    assert {"ncbi_disease", "bc5cdr_chem", "chemprot", "pubmedqa", "ebm_pico", "hoc"} <= set(BLURB)


def test_catalogue_urls_are_raw_github_at_the_named_commits() -> None:
    by_path = {f.path: f for f in blurb_files() + corpus_files()}
    assert by_path["ncbi_disease/train.tsv"].url == (
        "https://raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/df0df02/"
        "data/NCBI-disease-IOB/train.tsv")
    assert by_path["ncbi_disease/pubtator/NCBItrainset_corpus.txt"].url == (
        "https://raw.githubusercontent.com/spyysalo/ncbi-disease/5a266c6/"
        "original-data/train/NCBItrainset_corpus.txt")
    assert by_path["pubmedqa/ori_pqal.json"].url == (
        "https://raw.githubusercontent.com/pubmedqa/pubmedqa/1cbae8e/data/ori_pqal.json")
    assert by_path["chemprot/raw/chemprot_test_gs/chemprot_test_relations_gs.tsv"].url == (
        "https://raw.githubusercontent.com/Aitslab/nlp_2021_alexander_petter/1784721/"
        "utils/chemprot/chemprot/chemprot_test_gs/chemprot_test_relations_gs.tsv")
    assert str(by_path["hoc/test_pmid.tsv"].url).endswith("/KeBioLM/bc7c366/indexing/HoC/test_pmid.tsv")
    assert str(by_path["medline_xml/biopython_pubmed7.xml"].url).endswith(
        "/biopython/biopython/8b4d499/Tests/Entrez/pubmed7.xml")
    # derived files have no public source and nothing pretends otherwise; no checksum is invented
    assert all(f.url is None for f in CORPUS["pubmed_corpus"].files)
    assert all(f.md5_url is None for f in by_path.values())


def test_pubmed_baseline_names_and_ranges() -> None:
    files = pubmed_baseline_files(1, 3, year=26, base_url="https://example.org/base")
    assert [f.path for f in files] == [f"{PUBMED_CACHE_DIR}/pubmed26n000{i}.xml.gz" for i in (1, 2, 3)]
    assert files[0].url == "https://example.org/base/pubmed26n0001.xml.gz"
    assert files[0].md5_url == "https://example.org/base/pubmed26n0001.xml.gz.md5"
    with pytest.raises(ConfigError, match="START <= END"):
        pubmed_baseline_files(3, 1, year=26)
    with pytest.raises(ConfigError, match="two digits"):
        pubmed_baseline_files(1, 1, year=2026)
    with pytest.raises(ConfigError, match="choose from: bc5cdr_chem"):
        blurb_files(["ncbi_disease", "nonsense"])
    assert [f.path for f in blurb_files(["BIOSSES", "biosses"])] == [
        "biosses/train.tsv", "biosses/dev.tsv", "biosses/test.tsv"]
    # the BLURB registry's names work too
    assert blurb_files(["bc5-chem", "ncbi-disease"]) == blurb_files(["bc5cdr_chem", "ncbi_disease"])
    assert [f.path for f in blurb_files(["ddi"])][:3] == ["ddi/train.tsv", "ddi/dev.tsv", "ddi/test.tsv"]


def _reference_blobs() -> dict[str, tuple[str, str]]:
    """``owner/repo@commit:path`` -> (bytes or "?", git blob id), read from blurb_sources.md's tables."""
    text = (Path(__file__).resolve().parents[2] / "shared" / "reference" / "blurb_sources.md").read_text()
    found: dict[str, tuple[str, str]] = {}
    parts = re.split(r"\*\*([\w-]+/[\w-]+) @ ([0-9a-f]{40})\*\*", text)  # [before, repo, commit, text, ...]
    for repo, commit, block in zip(parts[1::3], parts[2::3], parts[3::3]):
        for path, size, blob in re.findall(r"^\| `([^`]+)` \| (\S+) \| `([0-9a-f]{40})` \|$", block, re.M):
            found[f"{repo}@{commit[:7]}:{path}"] = (size, blob)
    return found


def test_catalogue_blob_ids_are_the_repositories_and_the_files_here(shared_data: Path) -> None:
    """Every BLURB file has a git blob id: those of KeBioLM are the ones its tree lists
    (blurb_sources.md, read by hand here, not by the catalogue's code), sizes too where listed, and
    every file ../shared/data holds gives its id."""
    reference = _reference_blobs()
    assert len(reference) >= 52
    files = blurb_files()
    assert all(f.blob is not None for f in files)
    from_reference = 0
    for f in files:
        if f.origin in reference:
            size, blob = reference[f.origin]
            assert f.blob == blob and f.size == (None if size == "?" else int(size)), f.path
            from_reference += 1
        if (shared_data / f.path).is_file():
            data = (shared_data / f.path).read_bytes()
            assert git_blob_id(data) == f.blob and f.size in (None, len(data)), f.path
    assert from_reference == sum("KeBioLM" in f.origin for f in files) == 39


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOMAINBERT_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("DOMAINBERT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "domainbert" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "domainbert" / "data"


# ------------------------------------------------------------------------------------------------
# PubMed over HTTP: verified, skipped when complete, and every failure mode
# ------------------------------------------------------------------------------------------------


def test_pubmed_download_verifies_md5_and_skips_complete_files(server, tmp_path: Path) -> None:
    base, state = server
    made = _make_pubmed(state.root / "baseline", range(1, 4))
    out = tmp_path / "out"
    result = download(_pubmed(base, 1, 3), out, progress=False)
    assert len(result.fetched) == 3 and not result.skipped
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    for name, data in made.items():
        final = out / PUBMED_CACHE_DIR / name
        assert final.read_bytes() == data
        assert (out / PUBMED_CACHE_DIR / (name + ".md5")).is_file()
        entry = manifest["files"][f"{PUBMED_CACHE_DIR}/{name}"]
        assert entry["md5"] == hashlib.md5(data).hexdigest() and entry["md5_verified"] is True
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["source"] == f"{base}baseline/{name}"
    assert not any(p.endswith(".part") for p in _leftovers(out))

    requests = len(state.log)
    again = download(_pubmed(base, 1, 3), out, progress=False)
    assert again.fetched == [] and len(again.skipped) == 3
    assert len(state.log) == requests, "a complete, verified file was requested again"

    # a file that changed on disk after download no longer counts as complete
    (out / PUBMED_CACHE_DIR / f"pubmed{YEAR}n0002.xml.gz").write_bytes(b"damaged")
    third = download(_pubmed(base, 1, 3), out, progress=False)
    assert third.fetched == [f"{PUBMED_CACHE_DIR}/pubmed{YEAR}n0002.xml.gz"]
    assert (out / third.fetched[0]).read_bytes() == made[f"pubmed{YEAR}n0002.xml.gz"]


def test_wrong_checksum_is_an_error_and_leaves_nothing(server, tmp_path: Path) -> None:
    base, state = server
    _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    (state.root / "baseline" / (name + ".md5")).write_text(f"MD5({name})= {'0' * 32}\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"published checksum is 0{32}.*rerun") as err:
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert "\n" not in str(err.value)
    assert not (out / PUBMED_CACHE_DIR / name).exists()
    assert not (out / PUBMED_CACHE_DIR / (name + ".part")).exists()
    assert not (out / MANIFEST_NAME).exists()


def test_md5_file_for_another_file_is_refused(server, tmp_path: Path) -> None:
    base, state = server
    _make_pubmed(state.root / "baseline", range(1, 3))
    folder = state.root / "baseline"
    (folder / f"pubmed{YEAR}n0001.xml.gz.md5").write_text(
        (folder / f"pubmed{YEAR}n0002.xml.gz.md5").read_text())
    with pytest.raises(DataError, match=f"checksum of pubmed{YEAR}n0002.xml.gz, not of"):
        download(_pubmed(base, 1, 1), tmp_path / "out", retries=0, progress=False)
    assert _leftovers(tmp_path / "out") == []


def test_server_error_is_an_error_and_leaves_nothing(server, tmp_path: Path) -> None:
    base, state = server
    _make_pubmed(state.root / "baseline", range(1, 2))
    path = f"baseline/pubmed{YEAR}n0001.xml.gz"
    state.fail[path] = [500]
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"HTTP 500 .*rerun later"):
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    # the .md5 beside it arrived; the data file left nothing, not even a .part
    assert _leftovers(out) == [f"{PUBMED_CACHE_DIR}/pubmed{YEAR}n0001.xml.gz.md5"]

    # with a retry, a passing server error is survived
    state.fail[path] = [503]
    result = download(_pubmed(base, 1, 1), out, retries=1, retry_wait=0, progress=False)
    assert result.fetched == [f"{PUBMED_CACHE_DIR}/pubmed{YEAR}n0001.xml.gz"]
    assert [s for p, _, s in state.log if p == path][-2:] == [503, 200]


def test_not_found_says_what_to_do(server, tmp_path: Path) -> None:
    base, state = server
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"HTTP 404 .*--pubmed-year"):
        download(_pubmed(base, 1, 1), out, retries=3, retry_wait=0, progress=False)
    assert len(state.log) == 1, "a 404 is not worth retrying"
    with pytest.raises(DataError, match=r"HTTP 404 .*the mirror .* lacks it"):
        download(blurb_files(["biosses"]), out, mirror=base, progress=False)
    assert _leftovers(out) == []


def test_truncated_transfer_is_an_error_then_resumes_with_range(server, tmp_path: Path) -> None:
    base, state = server
    made = _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    data = made[name]
    state.truncate[f"baseline/{name}"] = [100]
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"stopped after 100 of {len(data):,} bytes.*resume"):
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    final = out / PUBMED_CACHE_DIR / name
    part = final.with_name(name + ".part")
    assert not final.exists()
    assert part.read_bytes() == data[:100]  # kept for the resume, never at the final path

    result = download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert result.fetched == [f"{PUBMED_CACHE_DIR}/{name}"]
    assert final.read_bytes() == data and not part.exists()
    assert state.log[-1] == (f"baseline/{name}", "bytes=100-", 206)


def test_truncated_transfer_is_retried_in_the_same_run(server, tmp_path: Path) -> None:
    base, state = server
    made = _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    state.truncate[f"baseline/{name}"] = [50, 120]
    out = tmp_path / "out"
    download(_pubmed(base, 1, 1), out, retries=2, retry_wait=0, progress=False)
    assert (out / PUBMED_CACHE_DIR / name).read_bytes() == made[name]
    ranges = [r for p, r, _ in state.log if p == f"baseline/{name}"]
    assert ranges == [None, "bytes=50-", "bytes=170-"]


def test_resume_restarts_when_the_server_ignores_range(server, tmp_path: Path) -> None:
    base, state = server
    state.ranges = False
    made = _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    out = tmp_path / "out"
    (out / PUBMED_CACHE_DIR).mkdir(parents=True)
    # a partial file from an interrupted run, with wrong bytes: appending to it would corrupt it
    (out / PUBMED_CACHE_DIR / (name + ".part")).write_bytes(b"x" * 200)
    download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert (out / PUBMED_CACHE_DIR / name).read_bytes() == made[name]
    assert state.log[-1] == (f"baseline/{name}", "bytes=200-", 200)


def test_a_bad_partial_file_fails_the_checksum_then_the_rerun_succeeds(server, tmp_path) -> None:
    base, state = server
    made = _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    out = tmp_path / "out"
    part = out / PUBMED_CACHE_DIR / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 64)  # not a prefix of the real file; the server resumes after it
    with pytest.raises(DataError, match="published checksum"):
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert not part.exists() and not (out / PUBMED_CACHE_DIR / name).exists()
    download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert (out / PUBMED_CACHE_DIR / name).read_bytes() == made[name]


def test_partial_file_longer_than_the_source_restarts(server, tmp_path: Path) -> None:
    base, state = server
    made = _make_pubmed(state.root / "baseline", range(1, 2))
    name = f"pubmed{YEAR}n0001.xml.gz"
    out = tmp_path / "out"
    part = out / PUBMED_CACHE_DIR / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"y" * (len(made[name]) + 10))
    download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert (out / PUBMED_CACHE_DIR / name).read_bytes() == made[name]
    assert [s for p, _, s in state.log if p.endswith(".gz")] == [416, 200]


def test_unreachable_source(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"cannot reach 127.0.0.1:{port} .*--mirror"):
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert _leftovers(out) == []


def test_a_file_that_does_not_parse_is_deleted(server, tmp_path: Path) -> None:
    base, state = server
    (state.root / "pubmedqa").mkdir()
    (state.root / "pubmedqa" / "ori_pqal.json").write_text('{"12345": {"QUESTION": "cut off')
    out = tmp_path / "out"
    # a file without a published id or size is checked for its format instead
    files = [replace(f, blob=None, size=None) for f in blurb_files(["pubmedqa"]) if f.path.endswith("ori_pqal.json")]
    with pytest.raises(DataError, match=r"ori_pqal.json .* does not parse .*deleted"):
        download(files, out, mirror=base, progress=False)
    assert _leftovers(out) == []


# ------------------------------------------------------------------------------------------------
# BLURB files verified by their git blob id, from a loopback server standing in for the raw-file host
# ------------------------------------------------------------------------------------------------


def _raw_host(root: Path, files: list[RemoteFile], content: dict[str, bytes]) -> None:
    """Lay ``content`` (cache path -> bytes) out under ``root`` as the raw host serves it:
    ``<owner>/<repo>/<commit>/<path in the repository>``."""
    for f in files:
        repo_commit, _, remote = f.origin.partition(":")
        repo, _, commit = repo_commit.partition("@")
        target = root / repo / commit / remote
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content[f.path])


def test_blurb_files_are_verified_by_git_blob_id(server, shared_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    base, state = server
    monkeypatch.setenv("DOMAINBERT_GITHUB_RAW", base.rstrip("/"))
    files = blurb_files(["gad"])
    assert all(f.url.startswith(base) for f in files)  # the host is read when the files are listed
    good = {f.path: (shared_data / f.path).read_bytes() for f in files}
    _raw_host(state.root, files, good)
    out = tmp_path / "out"
    download(files, out, progress=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    for f in files:
        assert (out / f.path).read_bytes() == good[f.path]
        assert manifest["files"][f.path]["git_blob"] == f.blob and manifest["files"][f.path]["blob_verified"]

    # one byte altered, same size: refused by its blob id, nothing of it kept, the good copy untouched
    altered = dict(good, **{"gad/dev.tsv": good["gad/dev.tsv"].replace(b"\t1\n", b"\t0\n", 1)})
    assert len(altered["gad/dev.tsv"]) == len(good["gad/dev.tsv"])
    _raw_host(state.root, files, altered)
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError) as error:
        download(files, fresh, progress=False)
    message = str(error.value)
    assert "\n" not in message and "gad/dev.tsv" in message and "git blob id" in message
    assert "ece07ca8b7146f5f0eec5b952027270acc01ff72" in message and "deleted" in message
    assert _leftovers(fresh) == [MANIFEST_NAME, "gad/train.tsv"]  # the file before it stays, verified

    # served whole but shorter (another release, a cut copy): refused by its size
    cut = dict(good, **{"gad/train.tsv": good["gad/train.tsv"][:-100]})
    _raw_host(state.root, files, cut)
    third = tmp_path / "third"
    with pytest.raises(DataError, match=r"^gad/train.tsv from \S+ has 773,049 bytes but "
                                        r"hieunguyen7337/KeBioLM@bc7c366:data/GAD/train.tsv has 773,149;"):
        download(files, third, progress=False)
    assert _leftovers(third) == []

    # a transfer cut short is resumed, and the whole file then verifies
    _raw_host(state.root, files, good)
    state.truncate[files[0].origin.replace("@", "/", 1).replace(":", "/", 1)] = [1000]
    with pytest.raises(DataError, match="stopped after 1,000"):
        download(files, third, retries=0, progress=False)
    assert _leftovers(third) == ["gad/train.tsv.part"]
    download(files, third, retries=0, progress=False)
    assert (third / "gad" / "train.tsv").read_bytes() == good["gad/train.tsv"]


def _stand_ins(shared_data: Path) -> dict[str, bytes]:
    """Files in BLURB's formats for the BLURB files ../shared/data does not hold, made from ones it does
    (BC2GM from NCBI-disease's tokens, DDI from GAD's pairs, EBM-PICO train from its dev) except
    ChemProt's, which the release converts to BLURB's own bytes."""
    ncbi = {s: (shared_data / "ncbi_disease" / f"{n}.tsv").read_text() for s, n in
            (("train", "train"), ("dev", "devel"), ("test", "test"))}
    made = {f"bc2gm/{s}.tsv": text.replace("-Disease", "").encode() for s, text in ncbi.items()}
    for split in ("train", "dev", "test"):
        rows = []
        for line in (shared_data / "gad" / f"{split}.tsv").read_text().splitlines()[1:]:
            index, sentence, label = line.split("\t")
            sentence = sentence.replace("@GENE$", "@DRUG$").replace("@DISEASE$", "@DRUG$")
            rows.append(f"DDI-{split}.{index}\t{sentence}\t{'DDI-effect' if label == '1' else 'DDI-false'}\n")
        made[f"ddi/{split}.tsv"] = "".join(rows).encode()
        made[f"ddi/{split}_files.tsv"] = f"{split}_0001.xml,{split}_0002.xml\n".encode()
        if split != "dev":
            converted = read_chemprot_raw(shared_data / "chemprot" / "raw", split)
            made[f"chemprot/blurb/{split}.tsv"] = "".join(f"{e.id}\t{e.text}\t{e.label}\n" for e in converted).encode()
    made["ebm_pico/train.tsv"] = (shared_data / "ebm_pico" / "dev.tsv").read_bytes()
    return made


def test_all_13_datasets_from_a_loopback_mirror(server, shared_data: Path, tmp_path: Path, tiny_model) -> None:
    """A mirror holding every BLURB file gives a set on which `blurb` runs all 13 datasets. The files
    ../shared/data lacks are stand-ins with their own ids (those of ChemProt are BLURB's real ones)."""
    base, state = server
    made = _stand_ins(shared_data)
    assert set(made) == NOT_IN_SHARED
    files = []
    for f in blurb_files():
        if f.path in made:
            if f.path.startswith("chemprot/"):  # the conversion is BLURB's file: its real id verifies it
                assert git_blob_id(made[f.path]) == f.blob
            else:
                f = replace(f, blob=git_blob_id(made[f.path]), size=len(made[f.path]))
        files.append(f)
    for f in files:
        target = state.root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(made[f.path] if f.path in made else (shared_data / f.path).read_bytes())
    data = tmp_path / "data"
    download(files, data, mirror=base, progress=False)
    assert all(dataset_status(name, data).state == "complete" for name in DATASETS)

    out = tmp_path / "suite"
    assert cli.main(["blurb", "--model", str(tiny_model), "--out", str(out), "--data-dir", str(data), "--limit", "8",
                     "--max-steps", "1", "--epochs", "1", "--precision", "fp32", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {name for name, entry in results["datasets"].items() if entry["status"] == "complete"} == set(DATASETS)
    assert results["blurb"]["complete"] is True


def test_every_blurb_dataset_says_what_a_mirror_lacks(shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["data", "download", "--blurb", "--mirror", str(shared_data), "--out", str(out),
                     "--no-progress"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "12 file(s) not in" in err
    assert "bc2gm (train.tsv, dev.tsv, test.tsv), ddi (" in err and "ebm_pico (train.tsv)" in err
    assert not [p for p in _leftovers(out) if p in NOT_IN_SHARED or p.endswith(".part")]
    with pytest.raises(DataError, match="bc2gm/train.tsv is missing from the mirror folder"):
        download(blurb_files(["bc2gm"]), out, mirror=str(shared_data), progress=False)


def test_a_full_disk_is_a_clear_error(server, tmp_path: Path, monkeypatch) -> None:
    base, state = server
    _make_pubmed(state.root / "baseline", range(1, 2))
    import domainbert.data.download as dl

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dl.os, "fsync", no_space)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"cannot write .*No space left on device.*free disk space"):
        download(_pubmed(base, 1, 1), out, retries=0, progress=False)
    assert not [p for p in _leftovers(out) if p.endswith((".gz", ".md5"))]


def test_two_runs_cannot_write_one_folder(shared_data: Path, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "out"
    out.mkdir()
    with (out / ".download.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(DataError, match="another `domainbert data download` is writing"):
            download(blurb_files(["biosses"]), out, mirror=str(shared_data), progress=False)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    download(blurb_files(["biosses"]), out, mirror=str(shared_data), progress=False)


# ------------------------------------------------------------------------------------------------
# Mirrors
# ------------------------------------------------------------------------------------------------


def test_folder_mirror_gives_byte_identical_blurb_files(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = blurb_files(["biosses", "pubmedqa", "ncbi_disease"])
    result = download(files, out, mirror=str(shared_data), progress=False)
    assert sorted(result.fetched) == sorted(f.path for f in files)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    for f in files:
        data = (shared_data / f.path).read_bytes()
        assert (out / f.path).read_bytes() == data
        entry = manifest["files"][f.path]
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["md5_verified"] is False  # nothing published to check against
    assert set(_leftovers(out)) == {f.path for f in files} | {MANIFEST_NAME}

    # a same-size change passes the cheap size check, and is caught and refetched with verify
    changed = out / "biosses" / "dev.tsv"
    changed.write_bytes(changed.read_bytes().replace(b"\t", b" ", 1))
    assert download(files, out, mirror=str(shared_data), progress=False).fetched == []
    again = download(files, out, mirror=str(shared_data), verify=True, progress=False)
    assert again.fetched == ["biosses/dev.tsv"]
    assert changed.read_bytes() == (shared_data / "biosses" / "dev.tsv").read_bytes()


def test_http_mirror_serves_shared_data(server, shared_data: Path, tmp_path: Path) -> None:
    base, state = server
    state.root = shared_data
    out = tmp_path / "out"
    files = blurb_files(["gad"]) + [f for f in corpus_files() if f.path.endswith(".gz")]
    download(files, out, mirror=base, progress=False)
    for f in files:
        assert (out / f.path).read_bytes() == (shared_data / f.path).read_bytes()


def test_pubmed_from_a_folder_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    made = _make_pubmed(mirror / PUBMED_CACHE_DIR, range(7, 9))
    out = tmp_path / "out"
    download(pubmed_baseline_files(7, 8, year=YEAR, base_url="http://unused.invalid/"), out,
             mirror=str(mirror), progress=False)
    for name, data in made.items():
        assert (out / PUBMED_CACHE_DIR / name).read_bytes() == data


def test_missing_file_in_a_mirror_folder(shared_data: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "biosses").mkdir(parents=True)
    for split in ("train", "dev"):  # test.tsv is missing
        (mirror / "biosses" / f"{split}.tsv").write_bytes(
            (shared_data / "biosses" / f"{split}.tsv").read_bytes())
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"biosses/test.tsv is missing from the mirror folder"):
        download(blurb_files(["biosses"]), out, mirror=str(mirror), progress=False)
    assert set(_leftovers(out)) == {"biosses/train.tsv", "biosses/dev.tsv", MANIFEST_NAME}
    with pytest.raises(DataError, match="does not exist"):
        download(blurb_files(["biosses"]), out, mirror=str(tmp_path / "nowhere"), progress=False)
    with pytest.raises(DataError, match="are the same folder"):
        download(blurb_files(["biosses"]), mirror, mirror=str(mirror), progress=False)


def test_derived_corpus_needs_a_mirror(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"pubmed_corpus/.* no public source.*--mirror"):
        download(corpus_files(), out, progress=False)
    assert _leftovers(out) == []  # refused before anything was fetched


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def test_cli_mirror_download(shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = cli.main(["data", "download", "--blurb", "biosses", "--corpus", "--mirror",
                     str(shared_data), "--out", str(out), "--no-progress"])
    assert code == 0
    assert "already complete" in capsys.readouterr().out
    for f in blurb_files(["biosses"]) + corpus_files():
        assert (out / f.path).read_bytes() == (shared_data / f.path).read_bytes()


def test_cli_default_out_is_the_data_dir(shared_data: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOMAINBERT_DATA", str(tmp_path / "cache"))
    assert cli.main(["data", "download", "--blurb", "biosses", "--mirror", str(shared_data),
                     "--no-progress"]) == 0
    assert (tmp_path / "cache" / "biosses" / "train.tsv").is_file()


@pytest.mark.parametrize("make_args, message", [
    (lambda base, out: ["--pubmed", "1-1", "--pubmed-year", str(YEAR), "--pubmed-base-url",
                        base + "baseline/", "--retries", "0"], "HTTP 500"),
    (lambda base, out: ["--blurb", "nonsense"], "unknown BLURB dataset"),
    (lambda base, out: [], "nothing to download"),
    (lambda base, out: ["--corpus"], "--mirror"),
])
def test_cli_errors_are_one_line(server, tmp_path: Path, capsys, make_args, message) -> None:
    base, state = server
    _make_pubmed(state.root / "baseline", range(1, 2))
    state.fail[f"baseline/pubmed{YEAR}n0001.xml.gz"] = [500]
    out = tmp_path / "out"
    code = cli.main(["data", "download", *make_args(base, out), "--out", str(out), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("domainbert data download: error: ") and "\n" not in err
    assert message in err
    assert not [p for p in _leftovers(out) if p.endswith(".xml.gz")]


def test_cli_bad_range_is_an_argument_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "download", "--pubmed", "5-2"])
    assert exit_info.value.code == 2
    assert "START <= END" in capsys.readouterr().err
