"""BLURB data: every dataset in ../shared/data loads with the counts of its SOURCES.md, the ChemProt
conversion reproduces BLURB's dev file row for row, PubMedQA's split is the script's fold 0, and bad
input (missing file, unknown label, malformed line) is a one-line DataError naming file and line.

Real data is read from ``shared_data`` (never copied); bad-input files are written in ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from domainbert.blurb import (
    DATASETS,
    TASK_GROUPS,
    TextExample,
    TokenExample,
    dataset_status,
    get_record,
    load_split,
    user_record,
)
from domainbert.blurb.chemprot import convert_chemprot, raw_files, read_chemprot_raw, write_relation_tsv
from domainbert.blurb.readers import pubmedqa_splits, read_conll, read_hoc_sentences, read_relation_tsv
from domainbert.blurb.registry import SPLITS, size_problem
from domainbert.data.sources import BLURB, git_blob_id
from domainbert.data.test_text import BLURB_TEST_TEXT
from domainbert.errors import DataError

# (sentences, mentions = B* tags) per split, from shared/data/SOURCES.md
NER_COUNTS = {
    "bc5-chem": ((4560, 5203), (4581, 5347), (4797, 5385)),
    "bc5-disease": ((4560, 4182), (4581, 4246), (4797, 4424)),
    "ncbi-disease": ((5424, 5134), (923, 787), (940, 960)),
    "jnlpba": ((16807, 46750), (1739, 4551), (3856, 8662)),
}


def test_registry_covers_blurb() -> None:
    assert len(DATASETS) == 13
    assert {r.task_type for r in DATASETS.values()} == set(TASK_GROUPS)
    by_type = Counter(r.task_type for r in DATASETS.values())
    assert by_type == {"ner": 5, "pico": 1, "relation": 3, "similarity": 1, "multilabel": 1,
                       "classification": 2}
    for record in DATASETS.values():
        assert set(record.files) == {"train", "dev", "test"}


def test_every_dataset_is_in_the_download_catalogue() -> None:
    """All 13 datasets can be fetched: every split file a record reads is a catalogue file of the
    record's download name, with a git blob id to verify it by, and every record has BLURB's sizes."""
    for record in DATASETS.values():
        assert record.download_name in BLURB and record.sizes is not None, record.name
        catalogue = {f.path: f for f in BLURB[record.download_name].files}
        for split in SPLITS:
            for path in record.paths(split, Path(".")):
                assert str(path) in catalogue, (record.name, path)
                assert catalogue[str(path)].blob is not None, (record.name, path)
    # and decontamination knows each dataset's test text (the data stage keeps that table)
    assert set(BLURB_TEST_TEXT) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(NER_COUNTS))
def test_ner_counts(shared_data: Path, name: str) -> None:
    for split, (sentences, mentions) in zip(("train", "dev", "test"), NER_COUNTS[name]):
        examples = load_split(name, split, shared_data)
        assert all(isinstance(e, TokenExample) for e in examples)
        assert len(examples) == sentences
        assert sum(t.startswith("B") for e in examples for t in e.tags) == mentions
        assert len({e.id for e in examples}) == len(examples)


def test_jnlpba_documents(shared_data: Path) -> None:
    examples = load_split("jnlpba", "train", shared_data)
    assert examples[0].id == "95369245-0"
    assert examples[0].tokens[:3] == ("IL-2", "gene", "expression")


def test_ebm_pico(shared_data: Path) -> None:
    status = dataset_status("ebm-pico", shared_data)
    assert status.state == "partial" and status.available == ("dev", "test")
    assert status.missing_files == (shared_data / "ebm_pico" / "train.tsv",)
    for split, docs, sentences in (("dev", 960, 10386), ("test", 191, 2076)):
        examples = load_split("ebm-pico", split, shared_data)
        assert len(examples) == sentences
        assert len({e.id.rsplit("-", 1)[0] for e in examples}) == docs
    test = load_split("ebm-pico", "test", shared_data)
    assert sum(t != "O" for e in test for t in e.tags) == 16364
    with pytest.raises(DataError, match=r"train\.tsv: missing ebm-pico train file; get it with "
                                         r"`domainbert data download --blurb ebm_pico`$"):
        load_split("ebm-pico", "train", shared_data)


def test_datasets_absent_here_say_how_to_get_them(tmp_path: Path) -> None:
    for name, download_name in (("bc2gm", "bc2gm"), ("ddi", "ddi")):
        assert dataset_status(name, tmp_path).state == "missing"
        with pytest.raises(DataError, match=f"--blurb {download_name}`$"):
            load_split(name, "test", tmp_path)
    with pytest.raises(DataError, match=r"--blurb chemprot` \(or put the BioCreative VI ChemProt release "
                                        r"\(chemprot/raw\) under chemprot/raw\)"):
        load_split("chemprot", "test", tmp_path)


@pytest.mark.parametrize("split", SPLITS)
def test_chemprot_conversion_gives_blurbs_files_byte_for_byte(shared_data: Path, tmp_path: Path,
                                                              split: str) -> None:
    """The offline path: the BioCreative VI release converted and written in BLURB's format has the git
    blob id of BLURB's own file at the pinned commit (the catalogue's, read from its repository)."""
    rows = read_chemprot_raw(shared_data / "chemprot" / "raw", split)
    write_relation_tsv(rows, tmp_path / f"{split}.tsv")
    blob = {f.path: f.blob for f in BLURB["chemprot"].files}[f"chemprot/blurb/{split}.tsv"]
    assert git_blob_id((tmp_path / f"{split}.tsv").read_bytes()) == blob


def test_chemprot_reads_blurbs_files_or_else_the_release(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "chemprot").mkdir()
    (tmp_path / "chemprot" / "raw").symlink_to(shared_data / "chemprot" / "raw")
    assert dataset_status("chemprot", tmp_path).state == "complete"  # the release stands in
    converted = load_split("chemprot", "dev", tmp_path)
    (tmp_path / "chemprot" / "blurb").mkdir()
    (tmp_path / "chemprot" / "blurb" / "dev.tsv").write_text("1.T1.T2\t@CHEMICAL$ binds @GENE$.\tCPR:3\n")
    assert [e.id for e in load_split("chemprot", "dev", tmp_path)] == ["1.T1.T2"]  # BLURB's file first
    assert len(converted) == 11268


def test_a_split_of_another_size_is_said_in_one_line(shared_data: Path, tmp_path: Path, caplog) -> None:
    (tmp_path / "gad").mkdir()
    for split in SPLITS:
        lines = (shared_data / "gad" / f"{split}.tsv").read_text().splitlines(keepends=True)
        (tmp_path / "gad" / f"{split}.tsv").write_text("".join(lines[:-1] if split == "dev" else lines))
    with caplog.at_level(logging.WARNING, logger="domainbert"):
        load_split("gad", "train", tmp_path)
        assert caplog.messages == []
        load_split("gad", "dev", tmp_path)
    assert caplog.messages == ["gad dev: 534 pairs, but BLURB's dev split has 535 (counted in BLURB's release "
                               "files (their git blob ids are in domainbert/data/sources.toml)); scores on "
                               "these files do not compare with published BLURB scores"]
    assert size_problem(get_record("ebm-pico"), "test", load_split("ebm-pico", "test", shared_data)) is None
    assert size_problem(get_record("hoc"), "dev", load_split("hoc", "dev", shared_data)) is None


def test_chemprot_dev_reproduces_blurb(shared_data: Path) -> None:
    ours = read_chemprot_raw(shared_data / "chemprot" / "raw", "dev")
    blurb = read_relation_tsv(shared_data / "chemprot" / "blurb" / "dev.tsv")
    assert len(ours) == len(blurb) == 11268
    mismatch = [(a.id, b.id) for a, b in zip(ours, blurb)
                if (a.id, a.text, a.label) != (b.id, b.text, b.label)]
    assert mismatch == []
    assert Counter(e.label for e in ours) == {"CPR:3": 546, "CPR:4": 1091, "CPR:5": 115,
                                              "CPR:6": 199, "CPR:9": 457, "false": 8860}


def test_chemprot_train_test_counts(shared_data: Path, tmp_path: Path) -> None:
    # converted from the release (BLURB's train/test files are not in ../shared/data)
    train = load_split("chemprot", "train", shared_data)
    test = load_split("chemprot", "test", shared_data)
    assert (len(train), len(test)) == (18035, 15745)
    # the written file reads back identically in BLURB's format
    write_relation_tsv(test, tmp_path / "test.tsv")
    back = read_relation_tsv(tmp_path / "test.tsv")
    assert [(e.id, e.text, e.label) for e in back] == [(e.id, e.text, e.label) for e in test]


def test_chemprot_overlap_mask(tmp_path: Path) -> None:
    # a hand-made abstract: an overlapping chemical/gene pair and a related pair
    (tmp_path / "a.tsv").write_text("1\tTitle here.\tAspirin blocks COX-1 strongly. "
                                    "The COX-2 inhibitor celecoxib works.\n")
    text = "Title here.\tAspirin blocks COX-1 strongly. The COX-2 inhibitor celecoxib works."
    spans = {"T1": "Aspirin", "T2": "COX-1", "T3": "COX-2", "T4": "COX-2 inhibitor",
             "T5": "celecoxib"}
    kinds = {"T1": "CHEMICAL", "T2": "GENE-Y", "T3": "GENE-N", "T4": "CHEMICAL", "T5": "CHEMICAL"}
    lines = []
    for tid, mention in spans.items():
        start = text.index(mention)
        lines.append(f"1\t{tid}\t{kinds[tid]}\t{start}\t{start + len(mention)}\t{mention}")
    (tmp_path / "e.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "r.tsv").write_text("1\tCPR:4\tY \tINHIBITOR\tArg1:T1\tArg2:T2\n"
                                    "1\tCPR:1\tN \tPART-OF\tArg1:T5\tArg2:T3\n")
    rows = convert_chemprot(tmp_path / "a.tsv", tmp_path / "e.tsv", tmp_path / "r.tsv")
    got = {(r.id, r.text, r.label) for r in rows}
    assert got == {
        ("1.T1.T2", "@CHEMICAL$ blocks @GENE$ strongly.", "CPR:4"),
        ("1.T3.T4", "The @CHEM-GENE$ celecoxib works.", "false"),
        ("1.T3.T5", "The @GENE$ inhibitor @CHEMICAL$ works.", "false"),  # CPR:1 is not evaluated
    }


def test_relation_gad(shared_data: Path) -> None:
    for split, rows, positives in (("train", 4261, 2227), ("dev", 535, 293), ("test", 534, 281)):
        examples = load_split("gad", split, shared_data)
        assert len(examples) == rows
        assert sum(e.label == "1" for e in examples) == positives
        assert all("@GENE$" in e.text and "@DISEASE$" in e.text for e in examples)


def test_biosses(shared_data: Path) -> None:
    sizes = [len(load_split("biosses", s, shared_data)) for s in ("train", "dev", "test")]
    assert sizes == [64, 16, 20]
    pair = load_split("biosses", "train", shared_data)[0]
    assert isinstance(pair.label, float) and 0.0 <= pair.label <= 4.0 and pair.text_pair


def test_hoc_documents(shared_data: Path) -> None:
    for split, docs, sentences in (("train", 1295, 12119), ("dev", 186, 1798), ("test", 371, 3547)):
        examples = load_split("hoc", split, shared_data)
        rows = read_hoc_sentences(shared_data / "hoc" / f"{split}.tsv")
        assert len(examples) == docs and len(rows) == sentences
        # every sentence belongs to a document of its split, and labels are the union per PMID
        union: dict[str, set[str]] = {}
        for row in rows:
            union.setdefault(row.id.split("_s")[0], set()).update(row.label)
        assert {e.id for e in examples} == set(union)
        assert all(set(e.label) == union[e.id] for e in examples)
    doc = load_split("hoc", "train", shared_data)[0]
    assert doc.id == "22239943" and doc.text.startswith("Hypoxic events frequently occur")


def test_pubmedqa_split(shared_data: Path) -> None:
    splits = {s: load_split("pubmedqa", s, shared_data) for s in ("train", "dev", "test")}
    assert [len(v) for v in splits.values()] == [450, 50, 500]
    ids = [{e.id for e in v} for v in splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert Counter(e.label for e in splits["test"]) == {"yes": 276, "no": 169, "maybe": 55}
    truth = json.loads((shared_data / "pubmedqa" / "test_ground_truth.json").read_text())
    # the re-implemented split script gives the ground-truth test set in its own order
    assert [e.id for e in splits["test"]] == list(truth)
    # deterministic, and the 10 folds of the CV half are stratified 50-question folds
    ori = json.loads((shared_data / "pubmedqa" / "ori_pqal.json").read_text())
    assert pubmedqa_splits(ori) == pubmedqa_splits(ori)
    assert [e.id for e in splits["dev"]] == pubmedqa_splits(ori)["dev"]
    assert pubmedqa_splits(ori, fold=1)["dev"] != pubmedqa_splits(ori)["dev"]


def test_bioasq(shared_data: Path) -> None:
    expected = {"train": (552, 118), "dev": (62, 13), "test": (94, 46)}
    for split, (yes, no) in expected.items():
        examples = load_split("bioasq", split, shared_data)
        assert Counter(e.label for e in examples) == {"yes": yes, "no": no}
        ids = (shared_data / "bioasq" / f"{split}_id.tsv").read_text().strip().split(",")
        assert [e.id for e in examples] == ids


# --- bad input ---------------------------------------------------------------------------------

def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_split("ncbi-disease", "train", tmp_path)
    message = str(error.value)
    assert "ncbi_disease/train.tsv" in message
    assert "domainbert data download --blurb ncbi_disease" in message
    assert "\n" not in message


def test_unknown_label_in_test(tmp_path: Path) -> None:
    folder = tmp_path / "ncbi_disease"
    folder.mkdir()
    good = "Aspirin\tO\nrelieves\tO\npain\tB-Disease\n\n"
    for name in ("train.tsv", "devel.tsv"):
        (folder / name).write_text(good)
    (folder / "test.tsv").write_text(good + "Tumour\tB-Chemical\ngrowth\tO\n")
    with pytest.raises(DataError, match=r"test\.tsv:5: unknown label 'B-Chemical'"):
        load_split("ncbi-disease", "test", tmp_path)


def test_malformed_lines(tmp_path: Path) -> None:
    bad_conll = tmp_path / "bad.tsv"
    bad_conll.write_text("Aspirin\tO\nno tab here\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: malformed line"):
        read_conll(bad_conll)
    bad_relation = tmp_path / "gad" / "test.tsv"
    bad_relation.parent.mkdir()
    bad_relation.write_text("index\tsentence\tlabel\n0\t@GENE$ and @DISEASE$.\t1\n1\tonly two\n")
    with pytest.raises(DataError, match=r"test\.tsv:3: malformed line"):
        load_split("gad", "test", tmp_path)
    bad_hoc = tmp_path / "hoc.tsv"
    bad_hoc.write_text("labels\tsentence\tindex\n0_0,1_2,2_0,3_0,4_0,5_0,6_0,7_0,8_0,9_0\tx .\t1_s0\n")
    with pytest.raises(DataError, match=r"hoc\.tsv:2: malformed line"):
        read_hoc_sentences(bad_hoc)
    (tmp_path / "pubmedqa").mkdir()
    (tmp_path / "pubmedqa" / "ori_pqal.json").write_text('{"1": {"QUESTION": "q",')
    (tmp_path / "pubmedqa" / "test_ground_truth.json").write_text("{}")
    with pytest.raises(DataError, match=r"ori_pqal\.json:1: malformed JSON"):
        load_split("pubmedqa", "dev", tmp_path)


def test_user_ner_dataset(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("-DOCSTART- 7\n\nBRCA1\tB-Gene\nmutation\tO\n\n")
    (tmp_path / "dev.tsv").write_text("TP53\tB-Gene\n\n")
    (tmp_path / "test.tsv").write_text("p53\tB-Gene\nprotein\tI-Gene\n\n")
    record = user_record("ner", tmp_path)
    assert record.labels == ("B-Gene", "O")
    assert load_split(record, "train")[0].id == "7-0"
    with pytest.raises(DataError, match=r"test\.tsv:1: unknown label 'I-Gene'"):
        load_split(record, "test")
    relation = tmp_path / "relation"
    relation.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (relation / name).write_text("a.1\t@DRUG$ raises @DRUG$ levels.\tup\n"
                                     "a.2\t@DRUG$ and @DRUG$ were given.\tnone\n")
    inferred = user_record("relation", relation)  # "none" is the one label that reads as negative
    assert inferred.negative_label == "none" and "inferred" in inferred.notes[0]
    assert user_record("relation", relation, negative_label="none").labels == ("none", "up")
    for labels, negative in ((("DDI-advise", "DDI-effect", "DDI-false", "DDI-int", "DDI-mechanism"), "DDI-false"),
                             (("CPR:3", "FALSE"), "FALSE"), (("0", "1"), "0"), (("up", "down"), None),
                             (("none", "false", "up"), None)):
        for name in ("train.tsv", "dev.tsv", "test.tsv"):
            (relation / name).write_text("".join(f"a.{i}\t@DRUG$ and @DRUG$.\t{label}\n"
                                                 for i, label in enumerate(labels)))
        if negative is None:  # no label, or several, read as negative: the user must say
            with pytest.raises(DataError, match="--negative-label"):
                user_record("relation", relation)
        else:
            assert user_record("relation", relation).negative_label == negative
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (relation / name).write_text("index\tsentence\tlabel\n")
    with pytest.raises(DataError, match="train split has no examples"):
        user_record("relation", relation)


def test_examples_are_plain_records(shared_data: Path) -> None:
    example = load_split("gad", "dev", shared_data)[0]
    assert isinstance(example, TextExample) and example.text_pair is None
    assert example.source.endswith("gad/dev.tsv:2")
    assert raw_files("test")[0] == "chemprot_test_gs/chemprot_test_abstracts_gs.tsv"
