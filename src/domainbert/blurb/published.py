"""Published BLURB results: the BLURB totals and the per-dataset rows the reports show beside a user's.

Read from ``published.toml`` (shipped with the package), which transcribes the PubMedBERT paper's main
table from the reference ``shared/reference/pubmedbert_paper.md`` with each value's sources, and the
LinkBERT README's BioLinkBERT totals. A per-dataset value is kept only when at least two sources give it
(:data:`MIN_SOURCES`; the loader refuses a file that breaks this), so a number the reference marks
unconfirmed, or that one secondary copy alone gives, is never shown. Every model says which release of
the numbers it is and what is left out, and the reports print both.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from domainbert.blurb.registry import DATASETS

MIN_SOURCES = 2
"""A per-dataset published value needs this many sources that agree."""


@dataclass(frozen=True)
class PublishedModel:
    """One published model: its BLURB total and the per-dataset values two sources agree on."""

    name: str
    release: str
    """Paper (or README), version and table the numbers come from."""
    blurb: float
    blurb_sources: tuple[str, ...]
    rows: dict[str, float]
    """BLURB dataset name → published test score (0-100)."""
    row_sources: dict[str, tuple[str, ...]]
    not_shown: str = ""
    """What is left out and why (one source, disagreeing sources, unconfirmed)."""
    blurb_note: str = ""
    column: str | None = None
    """The model's column in the reference file's main table (None: not in that table)."""


def _load(data: dict[str, Any]) -> tuple[dict[str, str], list[PublishedModel]]:
    sources = dict(data.get("sources", {}))
    models = []
    for m in data["model"]:
        rows, row_sources = {}, {}
        for dataset, cell in m.get("rows", {}).items():
            if dataset not in DATASETS:
                raise ValueError(f"published.toml: {m['name']}: unknown BLURB dataset {dataset!r}")
            if len(set(cell["sources"])) < MIN_SOURCES:
                raise ValueError(f"published.toml: {m['name']} {dataset} has fewer than {MIN_SOURCES} sources")
            rows[dataset], row_sources[dataset] = float(cell["value"]), tuple(cell["sources"])
        models.append(PublishedModel(m["name"], m["release"], float(m["blurb"]), tuple(m["blurb_sources"]),
                                     rows, row_sources, m.get("not_shown", ""), m.get("blurb_note", ""),
                                     m.get("column")))
    return sources, models


SOURCES, PUBLISHED = _load(tomllib.loads(files("domainbert.blurb").joinpath("published.toml").read_text("utf-8")))
"""The sources (tag → what it is) and the published models, in the order the reports list them."""

#: Model name → published BLURB score, for the charts and totals tables.
PUBLISHED_TOTALS: dict[str, float] = {m.name: m.blurb for m in PUBLISHED}
#: The models with per-dataset rows (those the per-dataset tables get a column for).
WITH_ROWS = [m for m in PUBLISHED if m.rows]


def row_header() -> str:
    """The per-dataset tables' extra column names."""
    return "".join(f" {m.name} (published) |" for m in WITH_ROWS)


def row_cells(dataset: str) -> str:
    """The published values of ``dataset`` for the per-dataset tables ("—" where none is shown)."""
    return "".join(f" {m.rows[dataset]:.2f} |" if dataset in m.rows else " — |" for m in WITH_ROWS)


def source_lines(totals: bool = True) -> list[str]:
    """What the published columns (and, with ``totals``, the totals) are: release, sources, what is
    not shown and why."""
    lines = ["Published values are shown only where two sources agree (the reference "
             "`shared/reference/pubmedbert_paper.md` transcribes them from secondary copies; check the paper "
             "before quoting one):"]
    for m in PUBLISHED if totals else WITH_ROWS:
        shown = f"{len(m.rows)} dataset(s)" if m.rows else "the BLURB total only"
        total = (f"; BLURB {m.blurb:.2f} ({', '.join(m.blurb_sources)}" + (f"; {m.blurb_note}" if m.blurb_note
                                                                         else "") + ")") if totals else ""
        lines.append(f"- **{m.name}**: {m.release}; {shown}{total}"
                     + (f". Not shown: {m.not_shown}" if m.not_shown else "") + ".")
    used = sorted({s for m in PUBLISHED for src in m.row_sources.values() for s in src} & set(SOURCES))
    lines.append("- Sources: " + "; ".join(f"{s} = {SOURCES[s]}" for s in used) + ".")
    return lines
