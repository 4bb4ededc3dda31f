"""The published rows the BLURB reports show, checked against the reference nobody here wrote:
``shared/reference/pubmedbert_paper.md`` (the PubMedBERT paper's main table, each value with its sources).

A value is shown exactly when at least two sources give it; no value the reference marks [unconfirmed],
or that one source alone gives, reaches a report."""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from domainbert.blurb.published import MIN_SOURCES, PUBLISHED, WITH_ROWS, _load
from domainbert.blurb.registry import DATASETS
from domainbert.blurb.report import render_report

REFERENCE = REPO.parent / "shared" / "reference" / "pubmedbert_paper.md"
CELL = re.compile(r"^\**(\d+\.\d+)\**\s*\(([S\d,\s]+)\)")


def main_table() -> dict[str, dict[str, str]]:
    """§1 of the reference: dataset display name → column → cell text (and the BLURB score row)."""
    text = REFERENCE.read_text(encoding="utf-8")
    section = text[text.index("## 1. Main results table"):text.index("### 1a.")]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for line in rows[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = re.sub(r"\s*\(.*\)$", "", cells[0].strip("*")).strip("*").strip()
        table[name] = dict(zip(header[1:], cells[1:]))
    return table


def first_value(cell: str) -> tuple[float, set[str]] | None:
    """The cell's first number and the sources given for it (None: no number, e.g. [unconfirmed])."""
    found = CELL.match(cell)
    if not found:
        return None
    return float(found.group(1)), {s.strip() for s in found.group(2).split(",")}


def test_every_shown_value_is_the_references_with_two_sources_and_none_is_left_out():
    table = main_table()
    by_display = {r.display_name: name for name, r in DATASETS.items()}
    assert set(by_display) <= set(table)  # all 13 datasets are rows of the reference table
    checked = 0
    for model in PUBLISHED:
        if model.column is None:
            continue
        for display, cells in table.items():
            if display not in by_display:
                continue
            dataset = by_display[display]
            parsed = first_value(cells[model.column])
            if parsed is not None and len(parsed[1]) >= MIN_SOURCES:
                assert dataset in model.rows, f"{model.name} {display}: {cells[model.column]} has two sources"
                assert model.rows[dataset] == parsed[0]
                assert set(model.row_sources[dataset]) == parsed[1]
                checked += 1
            else:
                assert dataset not in model.rows, f"{model.name} {display}: {cells[model.column]} is not shown"
        total = first_value(table["BLURB score"][model.column])
        assert total is not None and total[0] == model.blurb and set(model.blurb_sources) == total[1]
    assert checked == 16  # PubMedBERT 9, BioBERT 7 (BERT-base has no two-source cell)
    # The two releases of the PubMedBERT numbers: neither JNLPBA nor GAD is shown, and the row says why.
    pubmedbert = next(m for m in PUBLISHED if m.column == "PubMedBERT (uncased)")
    assert "jnlpba" not in pubmedbert.rows and "gad" not in pubmedbert.rows and "v6" in pubmedbert.release
    assert "JNLPBA and GAD" in pubmedbert.not_shown
    assert {m.name: m.blurb for m in PUBLISHED if m.column is None} == {"BioLinkBERT-base": 83.39,
                                                                        "BioLinkBERT-large": 84.30}


def test_a_one_source_value_is_refused():
    data = {"model": [{"name": "X", "release": "r", "blurb": 80.0, "blurb_sources": ["S1"],
                       "rows": {"gad": {"value": 83.96, "sources": ["S1"]}}}]}
    with pytest.raises(ValueError, match="fewer than 2 sources"):
        _load(data)
    data["model"][0]["rows"] = {"gad": {"value": 83.96, "sources": ["S1", "S1"]}}
    with pytest.raises(ValueError, match="fewer than 2 sources"):
        _load(data)


def _results(scores: dict[str, float]) -> dict:
    datasets = {}
    for name, record in DATASETS.items():
        entry = {"display_name": record.display_name, "task_type": record.task_type, "group": record.group,
                 "metric": record.metric, "notes": [], "status": "complete" if name in scores else "missing"}
        if name in scores:
            stats = {"mean": scores[name], "std": 0.0, "n": 1}
            entry.update(dev=stats, test=stats, selected={"learning_rate": 5e-5, "batch_size": 32, "epochs": 3})
        else:
            entry["reason"] = "not found"
        datasets[name] = entry
    return {"model": "m", "name": "m", "budget": "record", "date": "2026-12-02", "wall_seconds": 1.0,
            "data_dir": "d", "datasets": datasets,
            "blurb": {"score": 0.5, "per_type": {}, "missing_types": [], "complete": False}}


def test_the_report_shows_the_rows_beside_the_users_and_never_a_one_source_value():
    text = render_report(_results({"ncbi-disease": 0.7805, "gad": 0.7796}))
    ncbi = next(line for line in text.splitlines() if line.startswith("| NCBI-disease |"))
    assert ncbi.endswith("| 87.82 | 89.13 |") and "78.05" in ncbi
    gad = next(line for line in text.splitlines() if line.startswith("| GAD |"))
    assert gad.endswith("| — | — |")
    assert "PubMedBERT (base, uncased, abstracts) (published)" in text and "v6" in text
    assert "S3 = the BioT5X README" in text and "check the paper before quoting" in text
    shown = {f"{v:.2f}" for m in WITH_ROWS for v in m.rows.values()} | {f"{m.blurb:.2f}" for m in PUBLISHED}
    hidden = set()
    for cells in main_table().values():
        for cell in cells.values():
            hidden |= {n for n in re.findall(r"\d+\.\d+", cell)} - shown
    assert hidden and not [n for n in hidden if n in text]  # 79.10, 83.96, 80.06, 82.34, 73.38 ... never shown
