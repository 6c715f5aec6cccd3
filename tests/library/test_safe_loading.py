"""Nothing is loaded in a way that can run code: checkpoints with weights_only=True (also
when Lightning resumes), exports and Hugging Face weights from safetensors, never remote code."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_committee

from diversedistill.errors import ModelError
from diversedistill.runs.checkpoints import AtomicCheckpointIO, read_checkpoint
from diversedistill.runs.rundir import mark
from diversedistill_recipes.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"  # the library and the recipes


class Exploit:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_malicious_checkpoint_is_refused_by_every_reader(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, path)
    with pytest.raises(ModelError,
                       match=r"evil\.ckpt: refused to load, it holds more than tensors"):
        read_checkpoint(path)
    with pytest.raises(ModelError, match="refused to load"):  # even when asked for less safety
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_resume_refuses_a_malicious_last_checkpoint(tmp_path, capsys):
    data, teachers = write_tiny_committee(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    mark(tmp_path / "run")  # a run directory of the tool's, whose checkpoint was replaced
    torch.save({"state_dict": {}, "payload": Exploit(marker)},
               tmp_path / "run" / "checkpoints" / "last.ckpt")
    code = main(["distill", "--teacher", str(teachers[0]), "--data-dir", str(data), "--no-progress",
                 "--out", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "last.ckpt: refused to load" in err[0]
    assert not marker.exists()


def test_checkpoints_are_written_by_rename_only(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "c.ckpt"
    io.save_checkpoint({"w": torch.ones(2)}, target)
    assert torch.equal(read_checkpoint(target)["w"], torch.ones(2))
    with pytest.raises(RuntimeError):  # a save that fails half-way leaves the old file
        io.save_checkpoint({"w": torch.zeros(2), "bad": _Unsaveable()}, target)
    assert torch.equal(read_checkpoint(target)["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt", "c.ckpt.sha256"]


class _Unsaveable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_source_loads_nothing_unsafely():
    """No torch.load without weights_only=True, no from_pretrained outside hub.py, and no
    trust_remote_code=True anywhere in the package."""
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"torch\.load\((.*?)\)", text, re.S):
            assert "weights_only=True" in call, f"{path}: torch.load({call})"
        if path.name != "hub.py":
            assert ".from_pretrained(" not in text, (
                f"{path}: use diversedistill.models.hub.load_pretrained")
        assert not re.search(r"[(,]\s*trust_remote_code\s*=\s*True", text), path  # an argument


@pytest.fixture
def transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return pytest.importorskip("transformers")


def tiny_bert(transformers):
    config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16)
    return config, transformers.BertModel(config)


def test_hugging_face_weights_come_from_safetensors_only(transformers, tmp_path):
    from diversedistill.models.hub import load_pretrained

    config, model = tiny_bert(transformers)
    model.save_pretrained(tmp_path / "safe")
    assert isinstance(load_pretrained(transformers.AutoModel, str(tmp_path / "safe")),
                      transformers.BertModel)

    marker = tmp_path / "pwned"
    config.save_pretrained(tmp_path / "pickled")  # weights only as a (malicious) pickle
    torch.save({"x": Exploit(marker)}, tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"pickled: not loaded \(.*model\.safetensors"):
        load_pretrained(transformers.AutoModel, str(tmp_path / "pickled"))
    with pytest.raises(ModelError, match="use_safetensors=False is refused"):
        load_pretrained(transformers.AutoModel, str(tmp_path / "pickled"), use_safetensors=False)
    assert not marker.exists()


def test_hugging_face_remote_code_never_runs(transformers, tmp_path):
    from diversedistill.models.hub import load_pretrained

    marker = tmp_path / "ran"
    repo = tmp_path / "custom"
    repo.mkdir()
    (repo / "config.json").write_text(json.dumps({
        "model_type": "custom",
        "auto_map": {"AutoConfig": "custom.Config", "AutoModel": "custom.Model"}}))
    (repo / "custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    with pytest.raises(ModelError, match=r"custom: not loaded \(.*contains custom code"):
        load_pretrained(transformers.AutoModel, str(repo))
    with pytest.raises(ModelError, match="trust_remote_code=True is refused"):
        load_pretrained(transformers.AutoModel, str(repo), trust_remote_code=True)
    assert not marker.exists()


def test_loading_prints_one_line_for_weights_that_start_random_and_nothing_for_unused(
        tmp_path, caplog, capsys):
    from transformers import AutoModel, BertConfig, BertModel

    from diversedistill.models.hub import load_pretrained

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16)
    BertModel(config, add_pooling_layer=True).save_pretrained(tmp_path / "with-pooler")
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "no-pooler")
    with caplog.at_level("WARNING"):
        # the checkpoint's pooler is not used: expected, so silent
        load_pretrained(AutoModel, str(tmp_path / "with-pooler"), add_pooling_layer=False)
        assert not caplog.records
        # the model's pooler is not in the checkpoint: it starts random, and the user hears it
        model = load_pretrained(AutoModel, str(tmp_path / "no-pooler"))
    assert isinstance(model, BertModel)  # the model, not transformers' (model, info) pair
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'no-pooler'}: 2 weight(s) not in the checkpoint start from random values: "
        "pooler.dense.bias, pooler.dense.weight"]
    captured = capsys.readouterr()
    # transformers' own table is not printed
    assert "LOAD REPORT" not in captured.out + captured.err
