"""Masked LM alone beside BERT's MLM + NSP: RoBERTa's FULL-SENTENCES packing, the reader, the loop, the export.

* :func:`create_packed_instances` keeps every token of every document, in a shuffled document order,
  whole sentences unless one is longer than an input, a ``[SEP]`` only between documents, inputs of at
  most ``max_seq_len`` tokens (RoBERTa, Liu et al. 2019, section 4.2);
* ``data prepare --objective mlm`` on real abstracts: inputs nearly full, no sentence pairs, and BERT's
  objective refuses such data; the reader gives one segment and no next-sentence label under ``mlm``;
* ``pretrain --objective mlm``: no NSP loss or accuracy, the loss is the MLM loss; the export loads in
  transformers as ``BertForMaskedLM`` and ``BertForPreTraining`` (its NSP head untrained, said in the card);
  a resume is bit-identical, another objective is refused on resume, ``--max-minutes`` fits the schedule,
  and two torchrun processes match one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from conftest import REPO
from domainbert.cli import main
from domainbert.data.examples import DocumentPool, MaskingSpec, PrepareConfig, create_packed_instances
from domainbert.data.loader import PretrainingDataset
from domainbert.errors import ConfigError, DataError

TINY = str(REPO / "src" / "domainbert" / "train" / "recipes" / "tiny.yaml")
CLS, SEP, MASK = 2, 3, 4


def spec() -> MaskingSpec:
    return MaskingSpec(CLS, SEP, MASK, 100, np.zeros(100, dtype=bool))


def test_packing_keeps_every_sentence_in_order_and_separates_documents():
    rng = random.Random(0)
    docs = [[[10 + d * 10 + s] * rng.randint(1, 7) for s in range(rng.randint(1, 5))] for d in range(9)]
    docs[4][0] = [99] * 25  # a sentence longer than a whole input
    pool = DocumentPool.from_documents(docs)
    config = PrepareConfig(max_seq_len=12, dynamic_masking=True, objective="mlm")
    instances = list(create_packed_instances(pool, config, spec(), random.Random(7)))
    order = list(range(len(docs)))
    random.Random(7).shuffle(order)
    bodies = [inst.input_ids[1:-1] for inst in instances]
    assert all(inst.input_ids[0] == CLS and inst.input_ids[-1] == SEP and len(inst.input_ids) <= 12
               and inst.b_start == len(inst.input_ids) and not inst.is_random_next for inst in instances)
    # every token once, in the shuffled order of documents; a [SEP] inside an input ends a document
    expected = [t for d in order for sentence in docs[d] for t in sentence]
    assert [t for body in bodies for t in body if t != SEP] == expected
    seps = sum(body.count(SEP) for body in bodies)
    assert seps <= len(docs) - 1 and all(body[0] != SEP and body[-1] != SEP for body in bodies)
    # a sentence that fits an input is never cut (the 25-token one fills inputs)
    for d in order:
        for sentence in docs[d]:
            if len(sentence) <= 10:
                assert any(sentence == body[i:i + len(sentence)] for body in bodies for i in range(len(body))), sentence
    assert sum(len(b) for b in bodies) / (10 * len(bodies)) > 0.7  # packed, not one document per input


def test_packed_inputs_are_masked_as_berts_are():
    pool = DocumentPool.from_documents([[[11, 12, 13, 14, 15, 16]], [[21, 22, 23]], [[31, 32, 33, 34, 35]]])
    config = PrepareConfig(max_seq_len=32, max_predictions=5, masked_lm_prob=0.3, objective="mlm")
    (inst,) = create_packed_instances(pool, config, spec(), random.Random(3))
    assert len(inst.masked_positions) == min(5, round(0.3 * len(inst.input_ids)))
    assert not {CLS, SEP} & set(inst.masked_labels) and len(set(inst.masked_positions)) == len(inst.masked_positions)


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("objectives")
    corpus = shared_data / "pubmed_corpus"
    assert main(["vocab", "build", "--corpus", str(corpus / "ncbi_disease_train_dev.txt"), "--vocab-size", "3000",
                 "--out", str(root / "vocab")]) == 0
    for name, objective in (("mlm", "mlm"), ("pairs", "mlm+nsp")):
        assert main(["data", "prepare", "--corpus", str(corpus / "ncbi_disease_train_dev.txt"), "--vocab",
                     str(root / "vocab"), "--out", str(root / name), "--dupe-factor", "1", "--min-words", "0",
                     "--objective", objective, "--quiet"]) == 0
    return root


def test_prepared_mlm_data_is_packed_and_read_as_one_segment(data):
    manifest = json.loads((data / "mlm" / "manifest.json").read_text())
    pairs = json.loads((data / "pairs" / "manifest.json").read_text())
    assert manifest["params"]["objective"] == "mlm" and "FULL-SENTENCES" in manifest["reference"]
    assert manifest["counts"]["random_next"] == 0
    # the same tokens in fewer, fuller inputs than BERT's pairs (a sentence that does not fit waits for the next)
    fill = manifest["counts"]["example_tokens"] / manifest["num_samples"]
    assert fill > 0.8 * 128 and fill > pairs["counts"]["example_tokens"] / pairs["num_samples"]
    assert manifest["num_samples"] < pairs["num_samples"]
    assert manifest["config_checksum"] != pairs["config_checksum"]
    reader = PretrainingDataset(data / "mlm", objective="mlm")
    sample = reader.sample(0)
    assert "next_sentence_label" not in sample and not sample["token_type_ids"].any()
    assert (sample["labels"] != -100).sum() > 0
    paired = PretrainingDataset(data / "pairs", objective="mlm").sample(0)
    assert "next_sentence_label" not in paired and not paired["token_type_ids"].any()
    assert PretrainingDataset(data / "pairs").sample(0)["token_type_ids"].any()
    with pytest.raises(DataError, match="--objective mlm"):
        PretrainingDataset(data / "mlm")


def test_the_logged_example_has_a_next_sentence_label_for_pairs_only(data, caplog):
    from domainbert.data.shards import _log_example, load_manifest
    from domainbert.data.tokenization import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(data / "vocab")
    with caplog.at_level(logging.INFO, logger="domainbert.data.shards"):
        for name in ("mlm", "pairs"):
            _log_example(data / name, load_manifest(data / name), tokenizer)
    packed, pairs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("example (")]
    assert "next_sentence_label" not in packed and "next_sentence_label=" in pairs


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_mlm_alone_exports_for_transformers_and_resumes(data, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["pretrain", "--data", str(data / "mlm"), "--eval-data", str(data / "pairs"), "--recipe", TINY,
            "--objective", "mlm", "--precision", "fp32", "--no-progress"]
    assert main([*base, "--out", str(run), "--stop-after", "12"]) == 0
    assert main([*base, "--out", str(run)]) == 0  # resumed to the recipe's 30 steps
    assert main([*base, "--out", str(tmp_path / "straight")]) == 0
    train = [r for r in rows(run) if not r.get("eval")]
    assert [r["loss"] for r in train] == [r["loss"] for r in rows(tmp_path / "straight") if not r.get("eval")]
    assert [r["step"] for r in train] == list(range(1, 31))
    assert all(r["nsp_loss"] is None and r["nsp_accuracy"] is None and r["loss"] == r["mlm_loss"] for r in train)
    evals = [r for r in rows(run) if r.get("eval")]
    assert evals and all(r["eval_nsp_accuracy"] is None and r["eval_loss"] == r["eval_mlm_loss"] for r in evals)
    assert train[-1]["mlm_loss"] < train[0]["mlm_loss"]
    card = (run / "export" / "README.md").read_text()
    assert "masked language modelling alone" in card and "never trained" in card
    assert all(part in card for part in ("`cls.seq_relationship`", "`bert.pooler`", "token type 1"))
    assert isinstance(transformers.AutoModelForMaskedLM.from_pretrained(run / "export"), transformers.BertForMaskedLM)
    from domainbert.model.modeling import BertForMaskedLM

    ours = BertForMaskedLM.from_pretrained(run / "export").eval()
    theirs = transformers.BertForPreTraining.from_pretrained(run / "export").eval()
    inputs = transformers.AutoTokenizer.from_pretrained(run / "export")(
        ["Mutations in BRCA1 cause breast cancer.", "Aspirin."], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, theirs(**inputs).prediction_logits, rtol=0, atol=1e-5)
    # another objective is another run: refused on resume, in one line
    capsys.readouterr()
    assert main(["pretrain", "--data", str(data / "pairs"), "--out", str(run), "--recipe", TINY,
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "other prepared data" in err, err  # the objective's own refusal: the test below
    assert main(["pretrain", "--data", str(data / "mlm"), "--out", str(tmp_path / "nsp"), "--recipe", TINY,
                 "--no-progress"]) == 1
    assert "--objective mlm" in capsys.readouterr().err
    assert main([*base[:-3], "--objective", "mlm+nsp+sop", "--out", str(tmp_path / "bad"), "--no-progress"]) == 1
    assert "objective" in capsys.readouterr().err


def test_changing_the_objective_on_resume_is_refused(data, tmp_path, capsys):
    run = tmp_path / "run"
    cmd = ["pretrain", "--data", str(data / "pairs"), "--out", str(run), "--recipe", TINY, "--eval-every", "0",
           "--no-progress"]
    assert main([*cmd, "--objective", "mlm", "--stop-after", "2"]) == 0
    capsys.readouterr()
    assert main(cmd) == 1
    assert "objective: 'mlm' -> 'mlm+nsp'" in capsys.readouterr().err


def test_max_minutes_fits_an_mlm_schedule(data, tmp_path, capsys):
    long = tmp_path / "long.yaml"
    long.write_text(Path(TINY).read_text().replace("max_steps: 30", "max_steps: 100000"))
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(data / "mlm"), "--out", str(run), "--recipe", str(long), "--objective",
                 "mlm", "--max-minutes", "0.04", "--no-progress"]) == 0
    fitted = json.loads((run / "run_config.json").read_text())["args"]["max_steps"]
    assert 4 <= fitted < 100000 and f"fits --max-minutes 0.04: {fitted} steps" in capsys.readouterr().out


@pytest.mark.distributed
def test_two_process_torchrun_mlm_matches_one_process(data, tmp_path):
    common = ["--data", str(data / "mlm"), "--recipe", TINY, "--objective", "mlm", "--max-steps", "4",
              "--eval-every", "0", "--global-batch-size", "16", "--micro-batch-size", "8", "--set",
              "hidden_dropout_prob=0", "--set", "attention_probs_dropout_prob=0", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "domainbert", "pretrain", "--out", str(tmp_path / "one"), *common],
                         capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                          "29617", "-m", "domainbert", "pretrain", "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    losses = [[r["loss"] for r in rows(tmp_path / name) if not r.get("eval")] for name in ("one", "two")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-4, atol=1e-4)


def test_a_checkpoint_older_than_objectives_resumes_only_as_mlm_and_nsp():
    from domainbert.train.args import PretrainArgs

    older = {k: v for k, v in PretrainArgs().to_dict().items() if k != "objective"}
    assert PretrainArgs().resume_changes(older) == []
    assert PretrainArgs(objective="mlm").resume_changes(older) == ["objective: 'mlm+nsp' -> 'mlm'"]


def test_fit_refuses_data_opened_for_the_other_objective(data, tmp_path):
    """A source opened for MLM + NSP carries next-sentence labels: a masked-LM-alone run would add their loss
    through the frozen head without logging it, so fit refuses it in one line that says how to open it."""
    from domainbert.data.shards import load_manifest
    from domainbert.model.configuration import BertConfig
    from domainbert.model.modeling import BertForPreTraining
    from domainbert.train.args import PretrainArgs
    from domainbert.train.pretrain import fit, open_data

    config = BertConfig.preset("tiny", vocab_size=int(load_manifest(data / "pairs")["vocab"]["size"]),
                               max_position_embeddings=128)
    with pytest.raises(ConfigError, match=r"opened for the mlm\+nsp objective .* objective='mlm'"):
        fit(BertForPreTraining(config), open_data(data / "pairs", 0, config),
            PretrainArgs(objective="mlm", max_steps=2), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_pair_options_are_refused_for_packed_sentences(capsys):
    """--short-seq-prob and --nsp-balance shape BERT's pairs: with --objective mlm they would change the data's
    checksum and manifest and nothing else, so they are refused in one line."""
    with pytest.raises(ConfigError, match="short_seq_prob and nsp_balance shape BERT's sentence pairs"):
        PrepareConfig(objective="mlm", short_seq_prob=0.2, nsp_balance=True)
    assert PrepareConfig(objective="mlm").short_seq_prob == PrepareConfig().short_seq_prob  # defaults stay valid
    PrepareConfig(short_seq_prob=0.2, nsp_balance=True)  # pairs take them
    assert main(["data", "prepare", "--corpus", "x.txt", "--vocab", "v", "--out", "o", "--objective", "mlm",
                 "--nsp-balance"]) == 1
    assert "nsp_balance shape BERT's sentence pairs" in capsys.readouterr().err
