"""BLURB metrics against their reference implementations (seqeval, scikit-learn, scipy) on
hand-built cases, plus hand-counted values and the BLURB score's two-level average."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import pearsonr
from seqeval.metrics import f1_score as seqeval_f1
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score as sk_f1
from sklearn.preprocessing import MultiLabelBinarizer

from domainbert.blurb.metrics import (
    PICO_LABELS,
    accuracy,
    blurb_score,
    entity_f1,
    hoc_f1,
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


def test_hoc_f1_matches_sklearn() -> None:
    rng = random.Random(13)
    labels = [str(i) for i in range(10)]
    gold = [tuple(x for x in labels if rng.random() < 0.2) for _ in range(60)]
    pred = [tuple(x for x in labels if (x in g) != (rng.random() < 0.15)) for g in gold]
    binarizer = MultiLabelBinarizer(classes=labels)
    y_true, y_pred = binarizer.fit_transform(gold), binarizer.fit_transform(pred)
    assert hoc_f1(gold, pred) == pytest.approx(sk_f1(y_true, y_pred, average="macro"))
    assert multilabel_f1(gold, pred, labels, average="micro") == pytest.approx(
        sk_f1(y_true, y_pred, average="micro"))
    with pytest.raises(ValueError, match="not among"):
        hoc_f1([("11",)], [()])


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


def test_hoc_f1_hand_counted() -> None:
    gold = [("a",), ("a", "b"), ()]
    pred = [("a",), ("b",), ("b",)]
    # a: P 1/1, R 1/2 -> 2/3; b: P 1/2, R 1/1 -> 2/3; c: in neither -> 0
    assert hoc_f1(gold, pred, labels=("a", "b", "c")) == pytest.approx(4 / 9)
    assert multilabel_f1(gold, pred, ("a", "b", "c"), average="micro") == pytest.approx(2 / 3)  # 2 of 3 both ways


def test_accuracy_hand_counted() -> None:
    assert accuracy(["yes", "no", "maybe"], ["yes", "yes", "maybe"]) == pytest.approx(2 / 3)


def test_one_dispatch_scores_constant_regression_predictions_zero() -> None:
    """A dataset's score (finetune and metrics alike): constant predictions correlate with nothing."""
    assert score_dataset("biosses", [0.5, 2.0, 3.5], [1.0, 1.0, 1.0]) == 0.0
    assert score(get_record("biosses"), [0.5, 2.0, 3.5], [1.0, 2.0, 4.0]) == pytest.approx(
        pearson([0.5, 2.0, 3.5], [1.0, 2.0, 4.0]))
