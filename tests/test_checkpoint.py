"""Checkpoint directories: the formats real BERT checkpoints come in, and every way one can be broken."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from domainbert.cli import main
from domainbert.errors import CheckpointError, ConfigError
from domainbert.model.configuration import BertConfig
from domainbert.model.hf_io import read_state_dict
from domainbert.model.modeling import BertForPreTraining, BertForTokenClassification, BertModel, load_model

TINY = BertConfig.preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def saved(tmp_path, cls=BertForPreTraining, config=TINY, name="model"):
    torch.manual_seed(0)
    model = cls(config).eval()
    model.save_pretrained(tmp_path / name)
    return model, tmp_path / name


def same_outputs(a, b):
    ids = torch.randint(5, 99, (3, 6))
    with torch.no_grad():
        torch.testing.assert_close(a.bert(ids).last_hidden_state if hasattr(a, "bert") else a(ids).last_hidden_state,
                                   b.bert(ids).last_hidden_state if hasattr(b, "bert") else b(ids).last_hidden_state)


def test_save_writes_exactly_config_and_safetensors_and_round_trips(tmp_path):
    model, path = saved(tmp_path)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    assert "cls.predictions.decoder.weight" not in read_state_dict(path)  # tied: saved once
    again = BertForPreTraining.from_pretrained(path).eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert type(load_model(path)) is BertForPreTraining


def test_pytorch_model_bin_is_read_with_weights_only(tmp_path):
    model, path = saved(tmp_path)
    state = dict(read_state_dict(path))
    (path / "model.safetensors").unlink()
    torch.save(state, path / "pytorch_model.bin")
    same_outputs(model, BertForPreTraining.from_pretrained(path).eval())


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    _, path = saved(tmp_path)
    (path / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"x": Evil()}, path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        BertModel.from_pretrained(path)
    assert not (tmp_path / "pwned").exists()


def test_tf_era_gamma_beta_names_and_position_ids_buffer_are_understood(tmp_path):
    model, path = saved(tmp_path, cls=BertModel)
    state = read_state_dict(path)
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    renamed["embeddings.position_ids"] = torch.arange(TINY.max_position_embeddings)[None]
    save_file(renamed, str(path / "model.safetensors"), metadata={"format": "pt"})
    again = BertModel.from_pretrained(path).eval()
    assert again.loading_info.missing == [] and again.loading_info.unexpected == []
    assert again.loading_info.ignored == ["embeddings.position_ids"]
    same_outputs(model, again)


def test_bare_encoder_into_head_and_head_checkpoint_into_bare_encoder(tmp_path, caplog):
    model, path = saved(tmp_path, cls=BertForPreTraining)
    with caplog.at_level(logging.WARNING, logger="domainbert"):
        bare = BertModel.from_pretrained(path).eval()
    assert "cls.seq_relationship.weight" in bare.loading_info.unexpected
    assert "cls.seq_relationship.weight" in caplog.text  # listed, never silent
    same_outputs(model, bare)
    bare.save_pretrained(tmp_path / "bare")
    head = BertForTokenClassification.from_pretrained(tmp_path / "bare", id2label={0: "O", 1: "B", 2: "I"})
    assert head.loading_info.missing == ["classifier.bias", "classifier.weight"]
    assert head.loading_info.unexpected == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


def test_classifier_with_another_label_count_is_reinitialised_and_listed(tmp_path):
    _, path = saved(tmp_path, cls=BertForTokenClassification, config=TINY.with_labels(["O", "B", "I"]))
    model = BertForTokenClassification.from_pretrained(path, id2label={i: str(i) for i in range(5)})
    assert model.classifier.weight.shape == (5, 32)
    assert any(m.startswith("classifier.weight (3, 32) -> (5, 32)") for m in model.loading_info.mismatched)
    assert model.loading_info.missing == []


def test_vocab_txt_shorter_than_vocab_size_is_fine_like_pubmedbert(tmp_path):
    _, path = saved(tmp_path)
    (path / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(80)))  # 80 lines, 99 rows
    BertForPreTraining.from_pretrained(path)


def test_vocab_txt_longer_than_vocab_size_is_refused(tmp_path):
    _, path = saved(tmp_path)
    (path / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(120)))
    with pytest.raises(CheckpointError, match="120 tokens but config.json says vocab_size 99"):
        BertForPreTraining.from_pretrained(path)


def test_config_that_does_not_match_the_weights_is_refused_with_both_sizes(tmp_path):
    _, path = saved(tmp_path)
    data = json.loads((path / "config.json").read_text())
    data["vocab_size"] = 120
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="99 rows .* vocab_size 120"):
        BertForPreTraining.from_pretrained(path)


def test_missing_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing config.json and model.safetensors"):
        BertModel.from_pretrained(tmp_path / "empty")
    _, path = saved(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing model.safetensors \(or pytorch_model.bin\)"):
        BertModel.from_pretrained(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        BertModel.from_pretrained(tmp_path / "nowhere")


def test_corrupted_safetensors_is_refused(tmp_path):
    _, path = saved(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        BertModel.from_pretrained(path)


def test_impossible_or_foreign_config_is_refused(tmp_path):
    _, path = saved(tmp_path)
    data = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**data, "num_attention_heads": 5}))
    with pytest.raises(ConfigError, match="hidden_size 32 is not divisible by num_attention_heads 5"):
        BertModel.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**data, "model_type": "roberta"}))
    with pytest.raises(ConfigError, match="model_type 'roberta'"):
        BertModel.from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        BertModel.from_pretrained(path)


def test_sharded_safetensors_checkpoint_is_merged(tmp_path):
    model, path = saved(tmp_path, cls=BertModel)
    state = read_state_dict(path)
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(path / shard), metadata={"format": "pt"})
    (path / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    same_outputs(model, BertModel.from_pretrained(path).eval())


def test_cli_reports_bad_checkpoints_in_one_line_with_non_zero_exit(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["model", "info", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing config.json" in err and err.startswith("domainbert model info: error:")
    _, path = saved(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(b"\x00" * 16 + data[16:])
    assert main(["model", "info", str(path)]) == 1
    assert "corrupted" in capsys.readouterr().err


def test_cli_create_and_info(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["model", "create", "--preset", "tiny", "--set", "num_hidden_layers=3", "--out", str(out)]) == 0
    assert main(["model", "info", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["class"] == "BertForPreTraining" and report["config"]["num_hidden_layers"] == 3
    assert main(["model", "create", "--preset", "tiny", "--set", "hidden_size=30", "--out", str(tmp_path / "x")]) == 1
    assert "not divisible" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written for an impossible config


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    from domainbert.atomic import atomic_write, atomic_write_json

    target = atomic_write_json(tmp_path / "deep" / "metrics.json", {"f1": 0.5})
    assert json.loads(target.read_text()) == {"f1": 0.5}

    def crash(tmp: Path) -> None:
        tmp.write_text('{"f1": 0.')  # half of a new version, then the process dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert json.loads(target.read_text()) == {"f1": 0.5}  # the old file, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temporary left
