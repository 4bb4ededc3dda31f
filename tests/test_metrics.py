"""BLURB metrics against their reference implementations (seqeval, scikit-learn, scipy) on
hand-built cases, plus hand-counted values and the BLURB score's two-level average."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import reference_evaluators
from scipy.stats import pearsonr
from seqeval.metrics import classification_report as seqeval_report
from seqeval.metrics import f1_score as seqeval_f1
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score as sk_f1
from sklearn.preprocessing import MultiLabelBinarizer

from domainbert.blurb.metrics import (
    PICO_LABELS,
    accuracy,
    blurb_score,
    breakdown,
    constant_prediction,
    entity_f1,
    hoc_micro_f1,
    hoc_scores,
    labels_by_document,
    multilabel_f1,
    pearson,
    pico_macro_f1,
    relation_micro_f1,
    score,
    score_dataset,
)
from domainbert.blurb.registry import get_record

GOLD_NER = [["B-Disease", "I-Disease", "O", "B-Disease"], ["O", "B-Disease", "I-Disease", "I-Disease"]]
PRED_NER = [["B-Disease", "I-Disease", "O", "O"], ["O", "B-Disease", "I-Disease", "O"]]


def test_entity_f1_hand_counted() -> None:
    # gold entities: 3; predicted: 2; exact matches: 1 (the second prediction is one token short)
    p, r = 1 / 2, 1 / 3
    assert entity_f1(GOLD_NER, PRED_NER) == pytest.approx(2 * p * r / (p + r))
    assert entity_f1(GOLD_NER, GOLD_NER) == 1.0


def _random_tags(rng: random.Random, types: list[str], n: int) -> list[str]:
    return [rng.choice(["O"] + [f"{b}-{t}" if t else b for b in "BI" for t in types])
            for _ in range(n)]


@pytest.mark.parametrize("types", [["Chemical"], ["Chemical", "Disease"], [""]])
def test_entity_f1_matches_seqeval(types: list[str]) -> None:
    rng = random.Random(7)
    gold = [_random_tags(rng, types, rng.randint(1, 12)) for _ in range(40)]
    pred = [_random_tags(rng, types, len(s)) for s in gold]
    assert entity_f1(gold, pred) == pytest.approx(seqeval_f1(gold, pred))


def test_entity_f1_untyped_tags() -> None:
    # JNLPBA's B/I/O tags: I after O starts an entity (conlleval), so "O I I" holds one entity
    assert entity_f1([["B", "I", "O", "I", "I"]], [["B", "I", "O", "B", "I"]]) == pytest.approx(1.0)
    assert entity_f1([["B", "I", "O"]], [["B", "O", "O"]]) == 0.0


def test_pico_macro_f1_matches_sklearn() -> None:
    rng = random.Random(3)
    tags = ["O", *PICO_LABELS]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 20))] for _ in range(30)]
    pred = [[rng.choice(tags) for _ in s] for s in gold]
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in pred for t in s]
    expected = sk_f1(flat_gold, flat_pred, average="macro", labels=list(PICO_LABELS))
    assert pico_macro_f1(gold, pred) == pytest.approx(expected)
    assert pico_macro_f1(flat_gold, flat_pred) == pytest.approx(expected)


def test_pico_hand_counted_and_absent_class() -> None:
    gold = ["I-PAR", "I-PAR", "O", "I-INT"]
    pred = ["I-PAR", "O", "I-INT", "I-INT"]
    # PAR: tp1 pred1 gold2 → 2/3; INT: tp1 pred2 gold1 → 2/3; OUT absent everywhere → 0 (sklearn)
    assert pico_macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    with pytest.warns(Warning):
        reference = sk_f1(gold, pred, average="macro", labels=list(PICO_LABELS))
    assert pico_macro_f1(gold, pred) == pytest.approx(reference)


def test_relation_micro_f1_matches_sklearn() -> None:
    rng = random.Random(11)
    labels = ["CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9", "false"]
    gold = [rng.choice(labels) for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    expected = sk_f1(gold, pred, average="micro", labels=labels[:-1])
    assert relation_micro_f1(gold, pred, negative="false") == pytest.approx(expected)
    # including the negative class would be a different number (so the exclusion is tested)
    assert relation_micro_f1(gold, pred, negative="false") != pytest.approx(
        sk_f1(gold, pred, average="micro"))


def test_gad_is_positive_class_f1() -> None:
    gold = ["1", "1", "0", "0", "1", "0"]
    pred = ["1", "0", "1", "0", "1", "0"]
    # positive class: tp 2, predicted 3, gold 3 → F1 2/3 (equal to accuracy here by chance)
    assert relation_micro_f1(gold, pred, negative="0") == pytest.approx(
        sk_f1(gold, pred, pos_label="1", average="binary"))
    # here they differ: F1 of class 1 = 2/3, accuracy = 3/4
    gold2, pred2 = ["1", "0", "0", "0"], ["1", "1", "0", "0"]
    assert relation_micro_f1(gold2, pred2, negative="0") == pytest.approx(2 / 3)
    assert accuracy(gold2, pred2) == pytest.approx(3 / 4)


def test_pearson_matches_scipy() -> None:
    rng = random.Random(5)
    gold = [rng.uniform(0, 4) for _ in range(20)]
    pred = [g + rng.gauss(0, 1) for g in gold]
    assert pearson(gold, pred) == pytest.approx(pearsonr(gold, pred)[0])
    with pytest.raises(ValueError, match="constant"):
        pearson([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])


def test_multilabel_f1_matches_sklearn() -> None:
    rng = random.Random(13)
    labels = [str(i) for i in range(10)]
    gold = [tuple(x for x in labels if rng.random() < 0.2) for _ in range(60)]
    pred = [tuple(x for x in labels if (x in g) != (rng.random() < 0.15)) for g in gold]
    binarizer = MultiLabelBinarizer(classes=labels)
    y_true, y_pred = binarizer.fit_transform(gold), binarizer.fit_transform(pred)
    assert multilabel_f1(gold, pred, labels, average="macro") == pytest.approx(sk_f1(y_true, y_pred, average="macro"))
    assert hoc_micro_f1(gold, pred) == pytest.approx(sk_f1(y_true, y_pred, average="micro"))
    with pytest.raises(ValueError, match="not among"):
        hoc_micro_f1([("11",)], [()])


def test_labels_by_document() -> None:
    merged = labels_by_document(["7_s0", "7_s1", "9_s0"], [("1",), ("3", "1"), ()])
    assert merged == {"7": ("1", "3"), "9": ()}


def test_accuracy_matches_sklearn() -> None:
    gold = ["yes", "no", "maybe", "yes", "no"]
    pred = ["yes", "yes", "maybe", "no", "no"]
    assert accuracy(gold, pred) == pytest.approx(accuracy_score(gold, pred))
    with pytest.raises(ValueError, match="2 gold items but 1"):
        accuracy(["yes", "no"], ["yes"])


def test_score_dataset_uses_record_metric() -> None:
    assert score_dataset("chemprot", ["false", "CPR:3"], ["false", "CPR:3"]) == 1.0
    assert score_dataset("gad", ["0", "0", "1"], ["0", "0", "0"]) == 0.0  # accuracy would be 2/3
    assert score_dataset("pubmedqa", ["yes", "no"], ["yes", "yes"]) == 0.5


def test_blurb_score_is_mean_of_type_means() -> None:
    scores = {"bc5-chem": 0.9, "ncbi-disease": 0.7, "jnlpba": 0.8, "ebm-pico": 0.7,
              "chemprot": 0.6, "gad": 0.8, "biosses": 0.9, "hoc": 0.8,
              "pubmedqa": 0.5, "bioasq": 0.7}
    result = blurb_score(scores)
    types = [0.8, 0.7, 0.7, 0.9, 0.8, 0.6]  # ner, pico, relation, similarity, doc, qa
    assert result.score == pytest.approx(sum(types) / 6)
    assert result.per_type["ner"] == pytest.approx(0.8) and result.complete
    # a flat mean over datasets would weight NER thrice: different number
    assert not math.isclose(result.score, sum(scores.values()) / len(scores))
    partial = blurb_score({"bc5-chem": 0.9, "gad": 0.5})
    assert partial.score == pytest.approx(0.7)
    assert set(partial.missing_types) == {"pico", "similarity", "multilabel", "classification"}
    with pytest.raises(ValueError, match="no task type"):
        blurb_score({"squad": 0.9})


# ------------------------------------------------------------------------------ hand-counted, every metric
def test_entity_f1_hand_counted_overlaps_types_and_i_without_b() -> None:
    gold = [["B-Dis", "I-Dis", "O", "B-Chem"], ["O", "I-Dis", "I-Dis"]]
    pred = [["B-Dis", "O", "O", "B-Dis"], ["O", "B-Dis", "I-Dis"]]
    # gold: Dis[0:2], Chem[3], Dis[1:3] (an I- after O starts an entity, as conlleval reads it)
    # pred: Dis[0] (partial overlap: wrong), Dis[3] (type mismatch: wrong), Dis[1:3] (right)
    assert entity_f1(gold, pred) == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))


def test_pico_macro_f1_hand_counted() -> None:
    gold = [["I-PAR", "I-PAR", "O", "I-INT"]]
    pred = [["I-PAR", "O", "I-INT", "I-INT"]]
    # PAR: P 1/1, R 1/2 -> 2/3; INT: P 1/2, R 1/1 -> 2/3; OUT: in neither -> 0 (scikit-learn's convention)
    assert pico_macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_relation_micro_f1_hand_counted() -> None:
    gold = ["A", "B", "false", "A", "false"]
    pred = ["A", "false", "A", "B", "false"]
    # predicted positives 3 (A, A, B), gold positives 3 (A, B, A), right 1 (the first A): P = R = 1/3
    assert relation_micro_f1(gold, pred, negative="false") == pytest.approx(1 / 3)


def test_pearson_hand_counted() -> None:
    # deviations (-1, 0, 1) and (-1, 1, 0): covariance sum 1, norms sqrt(2) x sqrt(2)
    assert pearson([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)


def test_hoc_micro_f1_hand_counted() -> None:
    gold = [("a",), ("a", "b"), ()]
    pred = [("a",), ("b",), ("b",)]
    # cells: gold 3, predicted 3, both 2 -> P = R = 2/3; per label (not BLURB's): a 2/3, b 2/3, c 0 -> 4/9
    assert hoc_micro_f1(gold, pred, labels=("a", "b", "c")) == pytest.approx(2 / 3)
    assert multilabel_f1(gold, pred, ("a", "b", "c"), average="macro") == pytest.approx(4 / 9)


def test_accuracy_hand_counted() -> None:
    assert accuracy(["yes", "no", "maybe"], ["yes", "yes", "maybe"]) == pytest.approx(2 / 3)


def test_one_dispatch_scores_constant_regression_predictions_zero() -> None:
    """A dataset's score (finetune and metrics alike): constant predictions correlate with nothing."""
    assert score_dataset("biosses", [0.5, 2.0, 3.5], [1.0, 1.0, 1.0]) == 0.0
    assert score(get_record("biosses"), [0.5, 2.0, 3.5], [1.0, 2.0, 4.0]) == pytest.approx(
        pearson([0.5, 2.0, 3.5], [1.0, 2.0, 4.0]))


# ------------------------------------------------------------------------------ against the reference evaluators
def _vector(labels: tuple[str, ...]) -> list[int]:
    return [1 if str(i) in labels else 0 for i in range(10)]


#: Sentences of three abstracts (ids PMID_s<n>) on which the three HoC definitions all differ: one
#: abstract's hallmarks are spread over two sentences, and each abstract has some gold hallmark.
HOC_SENTENCES = [("101_s0", ("0",), ("0",)), ("101_s1", ("4",), ()), ("202_s0", ("7",), ("7", "9")),
                 ("303_s0", ("1", "2"), ("1",)), ("303_s1", ("3",), ("2",))]


def test_hoc_default_is_linkberts_eval_hoc_and_the_others_are_their_references() -> None:
    ids = [i for i, _, _ in HOC_SENTENCES]
    gold_rows, pred_rows = [g for _, g, _ in HOC_SENTENCES], [p for _, _, p in HOC_SENTENCES]
    reference = reference_evaluators.linkbert_eval_hoc([_vector(g) for g in gold_rows],
                                                       [_vector(p) for p in pred_rows], ids)
    gold_docs = labels_by_document(ids, gold_rows)
    pred_docs = labels_by_document(ids, pred_rows)
    docs = sorted(gold_docs)
    gold, pred = [gold_docs[d] for d in docs], [pred_docs[d] for d in docs]
    ours = score(get_record("hoc"), gold, pred)  # BLURB's HoC metric, as finetune and evaluate score it
    assert ours == pytest.approx(reference["F1"]) == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    pred_matrix, gold_matrix = np.array([_vector(p) for p in pred]), np.array([_vector(g) for g in gold])
    blue = reference_evaluators.blue_eval_hoc(pred_matrix, gold_matrix)
    macro = sk_f1(np.array([_vector(g) for g in gold]), np.array([_vector(p) for p in pred]), average="macro",
                  zero_division=0)
    definitions = hoc_scores(gold, pred)
    assert definitions["micro"] == pytest.approx(reference["F1"])
    assert definitions["blue_example_based"] == pytest.approx(blue[2])
    assert definitions["macro_over_hallmarks"] == pytest.approx(macro)
    assert len({round(v, 6) for v in definitions.values()}) == 3  # the case tells all three apart
    detail = breakdown(get_record("hoc"), gold, pred)
    assert detail["precision"] == pytest.approx(reference["precision"])
    assert detail["recall"] == pytest.approx(reference["recall"])


def test_hoc_documents_without_hallmarks_count_in_blurbs_definition() -> None:
    """BLURB keeps the abstracts without a hallmark; the micro score counts a wrong label on one as a
    false positive, as LinkBERT's evaluator does."""
    gold, pred = [("1",), ()], [("1",), ("5",)]
    reference = reference_evaluators.linkbert_eval_hoc([_vector(g) for g in gold], [_vector(p) for p in pred],
                                                       ["1_s0", "2_s0"])
    assert hoc_micro_f1(gold, pred) == pytest.approx(reference["F1"]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", ["chemprot", "ddi", "gad"])
def test_relation_micro_f1_is_linkberts_prf1(name: str) -> None:
    """Cases where a plausible mistake differs: a wrong positive class (an FP and an FN at once), the
    negative predicted for a positive, and plain micro F1 over all classes (= accuracy)."""
    record = get_record(name)
    rng = random.Random(name)
    labels = list(record.labels)
    weights = [6 if label == record.negative_label else 1 for label in labels]
    gold = rng.choices(labels, weights, k=300)
    pred = [g if rng.random() < 0.5 else rng.choice(labels) for g in gold]
    reference = reference_evaluators.linkbert_prf1(gold, pred)
    assert score(record, gold, pred) == pytest.approx(reference["F1"])
    assert score(record, gold, pred) != pytest.approx(accuracy(gold, pred))
    detail = breakdown(record, gold, pred)
    assert (detail["precision"], detail["recall"]) == (pytest.approx(reference["precision"]),
                                                       pytest.approx(reference["recall"]))
    per_class = sk_f1(gold, pred, labels=labels, average=None, zero_division=0)
    assert [detail["per_class"][c]["f1"] for c in labels] == pytest.approx(list(per_class))
    assert sum(map(sum, detail["confusion"]["rows_gold_columns_predicted"])) == len(gold)


def test_pico_macro_f1_is_linkberts_seqeval_on_b_rewritten_tags() -> None:
    """Runs of I-X are one entity to an entity-level scorer but one word each to BLURB's: the case has
    runs, so entity-level F1 on the IO tags would differ."""
    rng = random.Random(3)
    tags = ["O", "I-PAR", "I-INT", "I-OUT"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(3, 15))] for _ in range(50)]
    pred = [[t if rng.random() < 0.6 else rng.choice(tags) for t in s] for s in gold]
    reference = reference_evaluators.linkbert_pico(gold, pred)
    assert set(reference["per_type"]) == {"PAR", "INT", "OUT"}
    assert pico_macro_f1(gold, pred) == pytest.approx(reference["macro_f1"])
    assert pico_macro_f1(gold, pred) != pytest.approx(float(np.mean(
        [v["f1-score"] for k, v in seqeval_report(gold, pred, output_dict=True).items() if not k.endswith("avg")])))
    detail = breakdown(get_record("ebm-pico"), gold, pred)
    assert {k: v["f1"] for k, v in detail["per_type"].items()} == pytest.approx(
        {f"I-{k}": v for k, v in reference["per_type"].items()})


def test_ner_breakdown_is_seqevals_report() -> None:
    detail = breakdown(get_record("bc5-disease"), GOLD_NER, PRED_NER)
    report = seqeval_report(GOLD_NER, PRED_NER, output_dict=True)
    assert detail["score"] == pytest.approx(report["micro avg"]["f1-score"])
    assert detail["precision"] == pytest.approx(0.5) and detail["recall"] == pytest.approx(1 / 3)
    assert detail["per_type"]["Disease"]["support"] == 3
    assert breakdown(get_record("jnlpba"), [["B", "I", "O"]], [["B", "I", "O"]])["per_type"]["entity"]["f1"] == 1.0


def test_constant_predictions_are_named() -> None:
    assert constant_prediction(get_record("pubmedqa"), ["yes"] * 500) == "predicts `yes` for all 500"
    assert constant_prediction(get_record("gad"), ["1", "0"]) is None
    assert constant_prediction(get_record("hoc"), [()] * 7) == "predicts no label for all 7"
    assert constant_prediction(get_record("hoc"), [("1", "3")] * 2) == "predicts 1, 3 for all 2"
    assert constant_prediction(get_record("biosses"), [2.0] * 20) == "predicts 2 for all 20"
    assert constant_prediction(get_record("ncbi-disease"), [["O", "O"], ["O"]]) == "predicts O for every word"
    assert constant_prediction(get_record("ncbi-disease"), [["O", "B-Disease"]]) is None
    assert breakdown(get_record("chemprot"), ["false", "CPR:3"], ["false", "false"])["constant"] == (
        "predicts `false` for all 2")
