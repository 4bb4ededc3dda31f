"""Tests for domainbert.data.corpus: readers, sentence splitting, filters and decontamination.

Real files are read from ../shared/data (the ``shared_data`` fixture; counts from its SOURCES.md);
every bad or synthetic input is built in ``tmp_path``. The slow parts (pysbd over the 604-citation
MEDLINE file, building the BLURB decontamination set) run once per module.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from domainbert.data.corpus import (
    CorpusCounts,
    Document,
    SentenceSplitter,
    medline_deleted_pmids,
    normalize_text,
    read_corpus_file,
    read_medline_xml,
    read_pubtator,
    read_text,
)
from domainbert.data.filters import (
    CorpusFilter,
    DecontaminationSet,
    FileDrops,
    build_decontamination_set,
    cross_file_drops,
    filter_documents,
    iter_corpus,
)
from domainbert.errors import DataError

MEDLINE16 = "medline_xml/medline16n0902.xml.gz"


@pytest.fixture(scope="module")
def medline16(shared_data: Path) -> tuple[list[Document], CorpusCounts]:
    counts = CorpusCounts()
    return list(read_medline_xml(shared_data / MEDLINE16, counts=counts)), counts


@pytest.fixture(scope="module")
def decon(shared_data: Path) -> DecontaminationSet:
    return build_decontamination_set(shared_data)


def _article(pmid: str, title: str, *sections: tuple[str | None, str]) -> str:
    abstract = "".join(
        f'<AbstractText{f" Label={label!r}" if label else ""}>{text}</AbstractText>' for label, text in sections)
    return (f"<PubmedArticle><MedlineCitation><PMID Version=\"1\">{pmid}</PMID><Article>"
            f"<ArticleTitle>{title}</ArticleTitle>"
            + (f"<Abstract>{abstract}</Abstract>" if sections else "")
            + "<Language>eng</Language><PublicationTypeList><PublicationType>Journal Article"
              "</PublicationType></PublicationTypeList></Article></MedlineCitation></PubmedArticle>")


def _pubmed_xml(*records: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n' + "\n".join(records)
            + "\n</PubmedArticleSet>\n")


# ------------------------------------------------------------------------------------------------
# MEDLINE XML


def test_medline16_counts_match_sources(medline16: tuple[list[Document], CorpusCounts]) -> None:
    docs, counts = medline16
    # SOURCES.md: 604 MedlineCitations, 526 with an abstract; the file ends with one DeleteCitation.
    assert counts.records == 604
    assert len(docs) == 526
    assert counts.skipped_no_abstract + counts.skipped_empty == 604 - 526
    assert counts.deleted_pmids == {"26432306"} and counts.deleted_citations == 1
    assert all(d.pmid and d.pmid.isdigit() and d.sentences for d in docs)


def test_medline16_same_documents_as_shared_corpus(shared_data: Path,
                                                   medline16: tuple[list[Document], CorpusCounts]) -> None:
    docs, _ = medline16
    ref = list(read_text(shared_data / "pubmed_corpus/medline16n0902.txt"))
    assert [d.pmid for d in docs] == [r.pmid for r in ref]
    # The shared file was split with pysbd alone; our merges change a few splits, never the text.
    assert all(normalize_text(d.text) == normalize_text(r.text) for d, r in zip(docs, ref))


def test_structured_abstract_sections_joined(medline16: tuple[list[Document], CorpusCounts]) -> None:
    docs, _ = medline16
    doc = docs[0]
    assert doc.pmid == "17942999"
    assert doc.title.startswith("Neuroplasticity in the processing of pitch dimensions")
    assert doc.sentences[0] == doc.title
    text = doc.text
    # First words of the PURPOSE section and last words of CONCLUSIONS, with the labels dropped.
    assert "An auditory electrophysiological study was conducted" in text
    assert text.endswith("within a particular tone space.")
    assert "PURPOSE" not in text and "CONCLUSIONS" not in text
    assert text.index("An auditory") < text.index("Mismatch negativity (MMN)") < text.index("Two pitch dimensions")
    assert doc.language == "eng"
    assert "Journal Article" in doc.publication_types


def test_pubmed_article_set_files(shared_data: Path) -> None:
    counts = CorpusCounts()
    docs = list(read_corpus_file(shared_data / "medline_xml/pubmed-29768149.xml", counts=counts))
    assert [d.pmid for d in docs] == ["29768149"]
    doc = docs[0]
    assert doc.title == "Inhaled Combined Budesonide-Formoterol as Needed in Mild Asthma."
    # Inline markup (<sub>2</sub>) is kept as text and XML newlines squashed.
    assert "fast-acting β 2-agonist" in doc.text and "\n" not in doc.text
    assert "Randomized Controlled Trial" in doc.publication_types
    gz = list(read_corpus_file(shared_data / "medline_xml/test_current_medline.xml.gz"))
    assert gz[0].pmid == "36400559" and gz[0].title == "Back Pain: Differential Diagnosis and Management."


def test_delete_citation_honoured_across_files(tmp_path: Path) -> None:
    long = " ".join(["Word"] * 20) + "."
    baseline = tmp_path / "pubmed24n0001.xml.gz"
    with gzip.open(baseline, "wt", encoding="utf-8") as f:
        f.write(_pubmed_xml(_article("111", "Kept.", (None, "First " + long)),
                            _article("222", "Deleted later.", (None, "Second " + long)),
                            _article("333", "Revised later.", (None, "Third " + long))))
    update = tmp_path / "pubmed24n0002.xml"
    update.write_text(_pubmed_xml(
        _article("444", "New in update.", (None, "Fourth " + long)),
        _article("555", "Deleted in its own file.", (None, "Fifth " + long)),
        "<DeleteCitation><PMID Version=\"1\">222</PMID><PMID Version=\"1\">555</PMID></DeleteCitation>"))
    later = tmp_path / "pubmed24n0003.xml"
    later.write_text(_pubmed_xml(_article("555", "Re-added after its deletion.", (None, "Sixth " + long))))
    assert medline_deleted_pmids(update) == {"222", "555"}
    assert medline_deleted_pmids(baseline) == set()
    counts = CorpusCounts()
    docs = list(iter_corpus([baseline, update, later], CorpusFilter(min_words=0), counts=counts))
    assert [d.pmid for d in docs] == ["111", "333", "444", "555"]
    assert docs[-1].title == "Re-added after its deletion."
    assert counts.dropped_deleted == 2 and counts.deleted_pmids == {"222", "555"}


def _dedup_files(tmp_path: Path) -> list[Path]:
    """A baseline file, and an update that revises PMID 111 and repeats 222's text under PMID 999."""
    long = " ".join(["word"] * 20) + "."
    baseline = tmp_path / "pubmed24n0001.xml"
    baseline.write_text(_pubmed_xml(_article("111", "First version.", (None, "One " + long)),
                                    _article("222", "Two.", (None, "Two " + long)),
                                    _article("333", "Three.", (None, "Three " + long))))
    update = tmp_path / "pubmed24n0002.xml"
    update.write_text(_pubmed_xml(_article("111", "Revised version.", (None, "One, revised " + long)),
                                  _article("999", "Two.", (None, "Two " + long)),
                                  _article("444", "Four.", (None, "Four " + long))))
    return [baseline, update]


def test_duplicates_are_found_across_files(tmp_path: Path) -> None:
    files = _dedup_files(tmp_path)
    counts = CorpusCounts()
    docs = list(iter_corpus(files, CorpusFilter(min_words=0), counts=counts))
    # 111: the update's revision replaces the baseline's; 999 repeats 222's text, which came first.
    assert [(d.pmid, d.title) for d in docs] == [("222", "Two."), ("333", "Three."), ("111", "Revised version."),
                                                 ("444", "Four.")]
    assert (counts.dropped_duplicate_pmid, counts.dropped_duplicate_text, counts.kept) == (1, 1, 4)
    assert counts.records == 6
    # Each filter can be turned off on its own.
    kept = [d.pmid for d in iter_corpus(files, CorpusFilter(min_words=0, dedup_pmid=False))]
    assert kept == ["111", "222", "333", "111", "444"]
    kept = [d.pmid for d in iter_corpus(files, CorpusFilter(min_words=0, dedup_text=False))]
    assert kept == ["222", "333", "111", "999", "444"]


def test_cross_file_drops_leave_out_deleted_and_superseded_records() -> None:
    # (PMID keys, text keys) per file. File 0: PMID 1 with text 7 (deleted by file 1's
    # <DeleteCitation>), PMID 2 with text 8 (revised in file 2). Those two dead records must not
    # shadow the later copies of their texts: file 1's text 7 and file 2's text 8 are the first
    # live ones. File 3 repeats text 7 under PMID 10: a duplicate of file 1's.
    keys = [([1, 2], [7, 8]), ([5], [7]), ([2, 6], [9, 8]), ([10], [7])]
    drops = cross_file_drops(keys, {"1": 1}, CorpusFilter())
    assert drops == [FileDrops(deleted_pmids=frozenset({1}), superseded_pmids=frozenset({2})), FileDrops(),
                     FileDrops(), FileDrops(earlier_texts=frozenset({7}))]
    off = CorpusFilter(dedup_pmid=False, dedup_text=False)
    assert cross_file_drops(keys, {}, off) == [FileDrops()] * 4
    # A PMID both deleted and revised later counts once, as deleted.
    assert cross_file_drops([([3], [1]), ([3], [2])], {"3": 0}, CorpusFilter())[0] == \
        FileDrops(deleted_pmids=frozenset({3}))


def test_xml_record_without_abstract_or_text_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "u.xml"
    path.write_text(_pubmed_xml(_article("1", "Title only."), _article("2", "", (None, "  ")),
                                _article("3", "T.", ("RESULTS", "It <i>works</i>."))))
    counts = CorpusCounts()
    docs = list(read_medline_xml(path, counts=counts))
    assert [d.sentences for d in docs] == [["T.", "It works."]]
    assert (counts.records, counts.skipped_no_abstract, counts.skipped_empty) == (3, 1, 1)


# ------------------------------------------------------------------------------------------------
# PubTator and plain text


def test_pubtator_ncbi_train_counts(shared_data: Path) -> None:
    counts = CorpusCounts()
    path = shared_data / "ncbi_disease/pubtator/NCBItrainset_corpus.txt"
    docs = list(read_pubtator(path, counts=counts))
    assert counts.records == 593 and len(docs) == 593  # SOURCES.md: 593 train abstracts
    assert all(d.pmid and d.title and len(d.sentences) >= 2 for d in docs)
    assert not any("\t" in s for d in docs for s in d.sentences)  # annotation lines ignored
    # SOURCES.md: train has one duplicate PMID (8528200); the PMID filter drops exactly that one.
    fcounts = CorpusCounts()
    kept = list(filter_documents(docs, CorpusFilter(min_words=0, dedup_text=False), counts=fcounts))
    assert len(kept) == 592 and fcounts.dropped_duplicate_pmid == 1
    assert [d.pmid for d in docs if d.pmid == "8528200"] == ["8528200", "8528200"]


@pytest.mark.parametrize("name,documents,lines", [
    ("ncbi_disease_train_dev", 692, 6811),
    ("bc5cdr_train_dev", 998, 9115),
    ("chemprot_train_dev", 1626, 16459),
    ("pubmedqa_pqal_train_dev", 500, 6244),
    ("medline16n0902", 526, 5640),
    ("pubmed_sample_1mb", 724, 6319),
    ("hoc_abstracts_tokenized", 1474, 13847),
    ("jnlpba_genia_train_dev_tokenized", 1971, 18238),
])
def test_plain_text_counts_match_sources(shared_data: Path, name: str, documents: int, lines: int) -> None:
    counts = CorpusCounts()
    docs = list(read_corpus_file(shared_data / "pubmed_corpus" / f"{name}.txt", counts=counts))
    assert len(docs) == documents == counts.records
    assert sum(len(d.sentences) for d in docs) == lines
    if name in ("pubmed_sample_1mb", "jnlpba_genia_train_dev_tokenized"):
        assert all(d.pmid is None for d in docs)  # sidecar all NA (no PMIDs; GENIA has MEDLINE UIDs)
    else:
        assert all(d.pmid is not None and d.pmid.isdigit() for d in docs)


def test_text_without_sidecar_and_paragraph_splitting(tmp_path: Path) -> None:
    path = tmp_path / "paragraphs.txt"
    path.write_text("A title\nFirst sentence here. Second one follows.\n\n\n\nOther doc.\n", encoding="utf-8")
    docs = list(read_text(path, split_sentences=True))
    assert [d.sentences for d in docs] == [["A title", "First sentence here.", "Second one follows."],
                                           ["Other doc."]]
    assert [d.pmid for d in docs] == [None, None] and [d.index for d in docs] == [0, 1]


# ------------------------------------------------------------------------------------------------
# Sentence splitting


def test_biomedical_abbreviations_not_split() -> None:
    split = SentenceSplitter()
    text = ("Mice received cisplatin i.v. at 5 mg/kg, e.g. as described by Smith et al. in 2001. "
            "Survival differed between groups (p < 0.05; Fig. 2), 3.5 vs. 2.1 months. "
            "E. coli strains were used i.e. in all experiments. "
            "These results suggest that 1) the drug is safe and 2) it is effective. "
            "beta-Blocker therapy was stopped. mRNA levels fell.")
    assert split(text) == [
        "Mice received cisplatin i.v. at 5 mg/kg, e.g. as described by Smith et al. in 2001.",
        "Survival differed between groups (p < 0.05; Fig. 2), 3.5 vs. 2.1 months.",
        "E. coli strains were used i.e. in all experiments.",
        "These results suggest that 1) the drug is safe and 2) it is effective.",
        "beta-Blocker therapy was stopped.",
        "mRNA levels fell.",
    ]


def test_merge_rules_fix_pysbd_false_splits() -> None:
    truncated = "No patients had rhabdomyolysis.(ABSTRACT TRUNCATED AT 250 WORDS)"
    enumeration = "Four groups were used, i) the PAN group, ii) PAN/temocapril and iii) untreated controls."
    lowercase = "Ashkenazi Jews, i. e., those of European birth, were studied."
    for text in (truncated, enumeration, lowercase):
        assert len(SentenceSplitter(fixes=False)(text)) > 1  # what pysbd alone does
        assert SentenceSplitter()(text) == [text]
    assert SentenceSplitter()("   ") == []


# ------------------------------------------------------------------------------------------------
# Filters: length, duplicates, decontamination


def _doc(text: str, pmid: str | None = None) -> Document:
    return Document(pmid=pmid, sentences=[text], source="mem", index=0)


def test_min_words_filter(medline16: tuple[list[Document], CorpusCounts]) -> None:
    docs, _ = medline16
    counts = CorpusCounts()
    kept = list(filter_documents(docs, CorpusFilter(min_words=128, dedup_pmid=False, dedup_text=False),
                                 counts=counts))
    assert all(d.num_words() >= 128 for d in kept)
    assert counts.dropped_short == sum(d.num_words() < 128 for d in docs) > 0
    assert counts.kept + counts.dropped_short == 526
    with pytest.raises(ValueError, match="min_words"):
        CorpusFilter(min_words=-1)


def test_dedup_by_pmid_and_normalised_text_counted() -> None:
    base = "Aspirin reduced the risk of stroke in 1,234 patients (p < 0.05)."
    docs = [_doc(base, "1"), _doc(base + " More.", "1"),  # same PMID
            _doc("ASPIRIN reduced the risk of stroke in 1234 patients, p<0.05", "2"),  # same text
            _doc(base.replace("Aspirin", "Heparin"), None)]
    counts = CorpusCounts()
    kept = list(filter_documents(docs, CorpusFilter(min_words=0), counts=counts))
    assert [d.pmid for d in kept] == ["1", None]
    assert (counts.dropped_duplicate_pmid, counts.dropped_duplicate_text, counts.kept) == (1, 1, 2)
    assert normalize_text("IL - 2 ( p < 0.05 ) .") == normalize_text("IL-2 (p<0.05).") == "il2p005"


def test_decontamination_set_sources(decon: DecontaminationSet) -> None:
    # SOURCES.md's test PMIDs: NCBI 100, BC5CDR 500, ChemProt 800, HoC 371, EBM-PICO 191, PubMedQA 500.
    assert decon.sources["ncbi_disease/pubtator/NCBItestset_corpus.txt"]["pmids"] == 100
    assert decon.sources["bc5cdr_pubtator/CDR_TestSet.PubTator.txt"]["pmids"] == 500
    assert decon.sources["hoc/test.tsv"]["pmids"] == 371
    assert decon.sources["ebm_pico/test.tsv"]["pmids"] == 191
    assert decon.sources["pubmedqa/test_ground_truth.json"]["pmids"] == 500
    assert len(decon.pmids) >= 2400
    assert all(decon.sources[f]["sentences"] > 0 for f in ("gad/test.tsv", "biosses/test.tsv",
                                                          "bioasq/test.tsv", "jnlpba/test.tsv"))
    assert set(decon.missing) == {"bc2gm/test.tsv", "ddi/test.tsv", "chemprot/blurb/test.tsv"}


def test_decontamination_drops_planted_test_sentences_and_pmids(shared_data: Path,
                                                                decon: DecontaminationSet) -> None:
    train = list(read_text(shared_data / "pubmed_corpus/ncbi_disease_train_dev.txt"))[:40]
    assert not any(decon.match(d) for d in train)
    # A tokenised NCBI-disease test sentence, planted in raw form in the middle of a train abstract.
    tokens = [line.split("\t")[0] for line in
              (shared_data / "ncbi_disease/test.tsv").read_text(encoding="utf-8").split("\n\n")[1].splitlines()]
    raw = " ".join(tokens).replace(" - ", "-").replace("( ", "(").replace(" )", ")").replace(" .", ".")
    planted_ner = Document(None, train[0].sentences[:2] + [raw] + train[0].sentences[2:], "x", 0)
    # A GAD test sentence with its @GENE$/@DISEASE$ masks filled in by entity names.
    gad = (shared_data / "gad/test.tsv").read_text(encoding="utf-8").splitlines()[1].split("\t")[1]
    filled = gad.replace("@GENE$", "CYP1A1").replace("@DISEASE$", "lung cancer")
    planted_gad = Document(None, train[1].sentences + [filled], "x", 0)
    test_pmid = Document("9949209", train[2].sentences, "x", 0)  # an NCBI-disease test PMID
    # One word changed in the test sentence: no longer the test sentence, kept.
    near = Document(None, train[3].sentences + [raw.replace(tokens[0], "Zzyzx", 1)], "x", 0)
    assert decon.match(planted_ner) == "text"
    assert decon.match(planted_gad) == "text"
    assert decon.match(test_pmid) == "pmid"
    assert decon.match(near) is None
    counts = CorpusCounts()
    kept = list(filter_documents(train + [planted_ner, planted_gad, test_pmid, near], CorpusFilter(min_words=0),
                                 decontamination=decon, counts=counts))
    assert (counts.dropped_test_text, counts.dropped_test_pmid) == (2, 1)
    assert kept[-1] is near and len(kept) == 41


def test_decontamination_catches_every_test_abstract_by_text(shared_data: Path,
                                                             decon: DecontaminationSet) -> None:
    docs = list(read_pubtator(shared_data / "ncbi_disease/pubtator/NCBItestset_corpus.txt"))
    for d in docs:
        d.pmid = None  # as if the abstract came from a source without PMIDs
    assert sum(decon.match(d) == "text" for d in docs) == 100


def test_decontamination_without_test_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no BLURB test file"):
        build_decontamination_set(tmp_path)


def test_counts_add_up_over_a_mixed_corpus(shared_data: Path, tmp_path: Path, decon: DecontaminationSet) -> None:
    counts = CorpusCounts()
    files = [shared_data / "pubmed_corpus/ncbi_disease_train_dev.txt",
             shared_data / "ncbi_disease/pubtator/NCBItestset_corpus.txt"]
    kept = list(iter_corpus(files, CorpusFilter(min_words=150), decontamination=decon, counts=counts))
    c = counts.as_dict()
    assert c["records"] == 692 + 100 and c["files"] == 2
    # Length is checked first, so each NCBI test abstract is dropped as short or as a test PMID.
    short_tests = sum(d.num_words() < 150 for d in read_pubtator(files[1]))
    assert 0 < short_tests < 100 and c["dropped_test_pmid"] == 100 - short_tests
    dropped = sum(v for k, v in c.items() if k.startswith(("dropped_", "skipped_")))
    assert c["kept"] == len(kept) == c["records"] - dropped
    assert "deleted_pmids" not in c


# ------------------------------------------------------------------------------------------------
# Bad input: one clear DataError naming the file and the line/record, or a counted skip


def test_non_utf8_text_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("First line.\n\nCaf\u00e9 au lait.\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt: line 3 is not valid UTF-8"):
        list(read_text(path))


def test_non_utf8_xml_is_a_malformed_xml_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(_pubmed_xml(_article("1", "Caf\u00e9.", (None, "Text."))).encode("latin-1"))
    with pytest.raises(DataError, match=r"bad\.xml: malformed XML at line \d+, column \d+"):
        list(read_medline_xml(path))


def test_truncated_gzip(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / MEDLINE16).read_bytes()
    cut = tmp_path / "medline16n0902.xml.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated gzip stream"):
        list(read_medline_xml(cut, splitter=str.split))
    with pytest.raises(DataError, match="truncated gzip stream"):
        medline_deleted_pmids(cut)
    text = tmp_path / "corpus.txt.gz"
    whole = gzip.compress(("A sentence.\n\n" * 20000).encode())
    text.write_bytes(whole[:-40])
    with pytest.raises(DataError, match=r"corpus\.txt\.gz: truncated gzip stream"):
        list(read_text(text))
    fake = tmp_path / "plain.xml.gz"
    shutil.copy(shared_data / "medline_xml/pubmed-29768149.xml", fake)
    with pytest.raises(DataError, match="not a valid gzip file"):
        list(read_medline_xml(fake))


def test_malformed_xml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text(_pubmed_xml(_article("1", "T.", (None, "Text."))).replace("</ArticleTitle>", "", 1))
    with pytest.raises(DataError, match=r"broken\.xml: malformed XML at line 3"):
        list(read_medline_xml(broken))
    cut = tmp_path / "cut.xml"
    cut.write_text(_pubmed_xml(_article("1", "T.", (None, "Text.")))[:-40])
    with pytest.raises(DataError, match=r"cut\.xml: malformed XML"):
        list(read_medline_xml(cut))
    not_medline = tmp_path / "other.xml"
    not_medline.write_text("<html><body/></html>")
    with pytest.raises(DataError, match="not MEDLINE XML"):
        list(read_medline_xml(not_medline))
    no_pmid = tmp_path / "nopmid.xml"
    no_pmid.write_text(_pubmed_xml(_article("", "T.", (None, "Text."))))
    with pytest.raises(DataError, match=r"citation #1 has no numeric <PMID>"):
        list(read_medline_xml(no_pmid))


def test_empty_documents(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n\n")
    with pytest.raises(DataError, match=r"empty\.txt: no documents"):
        list(read_text(empty))
    pub = tmp_path / "x.pubtator"
    pub.write_text("1|t|A title\n1|a|An abstract.\n\n2|t| \n2|a|\n\n3|t|Title only\n3|a|\n")
    counts = CorpusCounts()
    docs = list(read_pubtator(pub, counts=counts))
    assert [d.pmid for d in docs] == ["1"]
    assert (counts.records, counts.skipped_empty, counts.skipped_no_abstract) == (3, 1, 1)
    kept = list(filter_documents([_doc("  "), _doc("Real text.")], CorpusFilter(min_words=0), counts=counts))
    assert len(kept) == 1 and counts.skipped_empty == 2


def test_bad_pubtator_and_sidecar(tmp_path: Path) -> None:
    orphan = tmp_path / "orphan.pubtator"
    orphan.write_text("1|a|An abstract without a title.\n")
    with pytest.raises(DataError, match=r"line 1: abstract of 1 without its"):
        list(read_pubtator(orphan))
    text = tmp_path / "c.txt"
    text.write_text("Doc one.\n\nDoc two.\n")
    (tmp_path / "c.pmids").write_text("123\n")
    with pytest.raises(DataError, match=r"c\.pmids: has 1 PMIDs but .*c\.txt has more documents"):
        list(read_text(text))
    (tmp_path / "c.pmids").write_text("123\nNA\n456\n")
    with pytest.raises(DataError, match=r"c\.pmids: line 3: more PMIDs than the 2 documents"):
        list(read_text(text))
    (tmp_path / "c.pmids").write_text("123\nPMC99\n")
    with pytest.raises(DataError, match=r"line 2: 'PMC99' is not a PMID or NA"):
        list(read_text(text))
    (tmp_path / "c.pmids").write_text("123\nNA\n")
    assert [d.pmid for d in read_text(text)] == ["123", None]
    with pytest.raises(DataError, match="no such file"):
        list(read_text(tmp_path / "missing.txt"))


def test_xml_streaming_memory_is_bounded(tmp_path: Path) -> None:
    import tracemalloc

    body = " ".join(["Streaming keeps one citation in memory at a time."] * 10)
    path = tmp_path / "big.xml.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(_pubmed_xml(*(_article(str(i), f"Title {i}.", ("RESULTS", body)) for i in range(1, 4001))))
    assert path.stat().st_size > 10_000  # ~2.6 MB of XML once decompressed
    tracemalloc.start()
    try:
        n = sum(1 for _ in read_medline_xml(path, splitter=lambda s: [s]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 4000
    assert peak < 1_000_000, f"peak {peak} bytes: records are not being cleared"
