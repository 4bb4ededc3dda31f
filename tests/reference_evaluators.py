"""The BLURB evaluators most published BLURB numbers were scored with, transcribed from their public
code so that domainbert's metrics can be checked against them (nobody here wrote the originals).

Each function restates one reference's arithmetic step by step, keeping its conventions (its label
rewriting, its grouping key, its division-by-zero rules); only the input/output plumbing differs.

- :func:`linkbert_eval_hoc`: michiyasunaga/LinkBERT ``src/seqcls/utils_hoc.py`` (``eval_hoc`` +
  ``compute_p_r_f``, commit 6b60e0f), called by ``run_seqcls.py`` with logits > 0 as predictions.
- :func:`blue_eval_hoc`: ncbi-nlp/BLUE_Benchmark ``blue/eval_hoc.py`` (``get_p_r_f_arrary``).
- :func:`linkbert_prf1`: LinkBERT ``run_seqcls.py`` ``compute_metrics`` for ``--metric_name PRF1``
  (ChemProt, DDI, GAD) after ``scripts/preprocess_blurb.py`` rewrote every label containing
  ``false`` to ``"0"`` and the label list was sorted (so ``"0"`` is id 0).
- :func:`linkbert_pico`: LinkBERT ``src/tokcls/run_ner.py`` with ``--return_macro_metrics`` on the
  EBM-PICO files that ``preprocess_blurb.py`` rewrote ``I-X`` -> ``B-X``: seqeval's per-type F1,
  averaged over the types seqeval reports.
"""

from __future__ import annotations

import numpy as np
from seqeval.metrics import classification_report

HALLMARKS = 10


def _divide(x: float, y: float) -> float:
    return float(x) / float(y) if y != 0 else 0.0


def linkbert_eval_hoc(true_list: list[list[int]], pred_list: list[list[int]], id_list: list[str]) -> dict:
    """Rows are 10-long 0/1 vectors with ids ``PMID_s<n>`` (or bare PMIDs)."""
    data: dict[str, tuple[set, set]] = {}
    for i in range(len(true_list)):
        key = id_list[i].split("_")[0]
        if key not in data:
            data[key] = (set(), set())
        for j in range(HALLMARKS):
            if true_list[i][j] == 1:
                data[key][0].add(j)
            if pred_list[i][j] == 1:
                data[key][1].add(j)
    y_test, y_pred = [], []
    for true, pred in data.values():
        y_test.append([1 if i in true else 0 for i in range(HALLMARKS)])
        y_pred.append([1 if i in pred else 0 for i in range(HALLMARKS)])
    preds, labels = np.array(y_pred), np.array(y_test)
    tp = ((preds == labels) & (preds != 0)).astype(int).sum()
    p_total = (preds != 0).astype(int).sum()
    l_total = (labels != 0).astype(int).sum()
    p, r = _divide(tp, p_total), _divide(tp, l_total)
    return {"precision": p, "recall": r, "F1": _divide(2 * p * r, p + r)}


def blue_eval_hoc(test_predict_label: np.ndarray, test_true_label: np.ndarray) -> tuple[float, float, float]:
    """(mean precision, mean recall, F1 of the two means), documents as rows of 0/1 matrices. Like the
    original, a document without gold labels divides by zero (BLUE's data has none)."""
    num, cat = test_predict_label.shape
    prc_list, rec_list = [], []
    for i in range(num):
        pred = {j for j in range(cat) if test_predict_label[i, j] == 1}
        gold = {j for j in range(cat) if test_true_label[i, j] == 1}
        tt = len(gold & pred)
        prc_list.append(0 if len(pred) == 0 else tt / len(pred))
        rec_list.append(tt / len(gold))
    mean_prc, mean_rec = float(np.mean(prc_list)), float(np.mean(rec_list))
    return mean_prc, mean_rec, _divide(2 * mean_prc * mean_rec, mean_prc + mean_rec)


def linkbert_prf1(gold: list[str], pred: list[str]) -> dict:
    """String labels as in BLURB's files; rewritten, sorted and indexed as LinkBERT does."""
    rewrite = ["0" if "false" in label else label for label in gold]
    rewrite_pred = ["0" if "false" in label else label for label in pred]
    label_list = sorted(set(rewrite))
    label_to_id = {label: i for i, label in enumerate(label_list)}
    label_ids = np.array([label_to_id[label] for label in rewrite])
    preds = np.array([label_to_id[label] for label in rewrite_pred])
    tp = ((preds == label_ids) & (preds != 0)).astype(int).sum().item()
    p_total = (preds != 0).astype(int).sum().item()
    l_total = (label_ids != 0).astype(int).sum().item()
    p = tp / p_total if p_total else 0
    r = tp / l_total if l_total else 0
    return {"precision": p, "recall": r, "F1": 2 * p * r / (p + r) if (p + r) else 0}


def linkbert_pico(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """Sentences of BLURB's IO tags (``I-PAR`` ...), first sub-token of every word."""
    def to_b(tags: list[str]) -> list[str]:
        return ["B" + t[1:] if t.startswith("I") else t for t in tags]

    results = classification_report([to_b(s) for s in gold], [to_b(s) for s in pred], output_dict=True,
                                    zero_division=0)
    per_type = {k: v for k, v in results.items() if not k.endswith(" avg")}
    return {"macro_f1": float(np.mean([v["f1-score"] for v in per_type.values()])),
            "per_type": {k: v["f1-score"] for k, v in per_type.items()}}
