"""No code from data without opt-in (issue 39): a model directory is data, so loading it
never imports or calls the factory its config.json names unless the caller passed that
factory or said ``trust_code=True`` / ``--trust-code``; and a config describing a model
larger than its weights is refused before anything is allocated.

The payload is a module written into the test's folder (on ``sys.path`` and the current
directory) that leaves a marker file when it is imported or its class is called.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import distill_command, write_tiny_committee
from torch import nn

from diversedistill.errors import ModelError
from diversedistill.export import (
    CONFIG,
    architectures,
    export_from_checkpoint,
    export_model,
    load_model,
    load_student,
)
from diversedistill_recipes.cli import main

PAYLOAD = '''
from pathlib import Path

from torch import nn

Path({marker!r}).write_text("imported")


class Evil(nn.Module):
    def __init__(self, inputs=3, hidden=5, trust_remote_code=False):
        super().__init__()
        Path({marker!r}).write_text("called")
        self.body = nn.Linear(inputs, hidden)
'''


class Plain(nn.Module):
    """A legitimate user model, exported by factory."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.body = nn.Linear(inputs, hidden)

    def forward(self, x):
        return self.body(x)


class Other(Plain):
    pass


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """(module name, marker file): the module importable from sys.path and the cwd."""
    name = f"payload_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "marker"
    (tmp_path / f"{name}.py").write_text(PAYLOAD.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    architectures()  # entry-point plugins loaded now, so sys.modules may be compared after
    yield name, marker
    sys.modules.pop(name, None)


def plain_export(out: Path) -> Path:
    torch.manual_seed(0)
    return export_model(Plain(3, 5), out, factory=f"{__name__}:Plain",
                        arguments={"inputs": 3, "hidden": 5})


def rewrite(directory: Path, change) -> Path:
    """Edit a directory's config.json as a stranger could (its checksum stays valid)."""
    config = json.loads((directory / CONFIG).read_text())
    change(config)
    (directory / CONFIG).write_text(json.dumps(config))
    return directory


def naming(factory: str):
    def change(config):
        config["architecture"] = "factory"
        config["model"] = {"factory": factory, "arguments": {"trust_remote_code": True},
                           "parameters": 20}
    return change


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_load_model_never_imports_the_factory_a_directory_names(payload, tmp_path):
    name, marker = payload
    out = rewrite(plain_export(tmp_path / "m"), naming(f"{name}:Evil"))
    before = set(sys.modules)
    for load in (load_model, load_student):
        with pytest.raises(ModelError) as refused:
            load(out)
        message = str(refused.value)
        assert "\n" not in message and str(out) in message and f"{name}:Evil" in message
        assert "factory=" in message and "trust_code=True" in message and "--trust-code" in message
    assert not marker.exists()
    assert set(sys.modules) == before  # not even importlib.import_module ran


def test_a_run_whose_student_names_foreign_code_is_not_exported(payload, tmp_path):
    name, marker = payload
    run = tmp_path / "run"
    rewrite(plain_export(run / "student"), naming(f"{name}:Evil"))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"never read")
    with pytest.raises(ModelError) as refused:
        export_from_checkpoint(run, tmp_path / "a")
    assert not marker.exists()  # neither imported nor called
    assert "nothing was imported" in str(refused.value)


def test_cli_export_of_a_downloaded_run_runs_none_of_its_code(payload, tmp_path, capsys):
    name, marker = payload
    run = tmp_path / "run"
    rewrite(plain_export(run / "student"), naming(f"{name}:Evil"))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"never read")
    assert main(["export", str(run), "--out", str(tmp_path / "served")]) == 2
    assert not marker.exists() and not (tmp_path / "served").exists()
    error = one_line(capsys)
    assert f"{name}:Evil" in error and "--trust-code" in error


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return write_tiny_committee(tmp_path_factory.mktemp("committee"))


def test_cli_distill_never_runs_a_teachers_code(committee, payload, tmp_path, capsys):
    name, marker = payload
    data, teachers = committee
    evil = tmp_path / "evil"
    shutil.copytree(teachers[0], evil)
    rewrite(evil, naming(f"{name}:Evil"))
    out = tmp_path / "run"
    assert main(distill_command((data, [evil, teachers[1]]), out, "--no-progress",
                                "--max-epochs", "1")) == 2
    assert not marker.exists() and not (out / "checkpoints").exists()
    error = one_line(capsys)
    assert str(evil) in error and f"{name}:Evil" in error and "--trust-code" in error


def test_a_factory_naming_a_module_with_side_effects_prints_nothing(tmp_path, capfd):
    out = rewrite(plain_export(tmp_path / "m"), naming("this:x"))
    sys.modules.pop("this", None)  # `import this` prints the Zen of Python, once
    capfd.readouterr()
    with pytest.raises(ModelError, match="'this:x'"):
        load_model(out)
    assert capfd.readouterr() == ("", "") and "this" not in sys.modules


def test_a_passed_factory_or_trust_code_loads_a_legitimate_export(tmp_path):
    out = plain_export(tmp_path / "m")
    x = torch.randn(2, 3)
    torch.manual_seed(0)
    expected = Plain(3, 5).eval()(x)
    for opt_in in ({"factory": Plain}, {"factory": f"{__name__}:Plain"}, {"trust_code": True}):
        torch.testing.assert_close(load_model(out, **opt_in)(x), expected, rtol=0, atol=0)


def test_a_passed_factory_must_be_the_one_recorded(tmp_path):
    out = plain_export(tmp_path / "m")
    for other in (Other, f"{__name__}:Other"):
        with pytest.raises(ModelError, match=rf"names factory '{__name__}:Plain', not "
                                             rf"'{__name__}:Other' as given"):
            load_model(out, factory=other)


def test_a_config_describing_a_huge_model_is_refused_before_allocating(tmp_path):
    out = plain_export(tmp_path / "m")
    start = time.monotonic()
    # 10**12 values: 4 TB if it were built; the declared count left small, as a forger would
    rewrite(out, lambda c: c["model"]["arguments"].update(hidden=10 ** 12))
    with pytest.raises(ModelError, match="refused before building it"):
        load_model(out, trust_code=True)
    rewrite(out, lambda c: c["model"].update(parameters=10 ** 15))
    with pytest.raises(ModelError, match=r"declares 1000000000000000 parameters but the "
                                         r"weights hold 20 values"):
        load_model(out, trust_code=True)
    assert time.monotonic() - start < 30


def test_a_hugging_face_config_of_enormous_sizes_is_refused_before_allocating(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    small = BertForSequenceClassification(BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=3))
    out = export_model(small, tmp_path / "bert")

    def enormous(config):  # about 10**13 values: far beyond any machine
        config["model"]["config"].update(hidden_size=2 ** 20, intermediate_size=2 ** 22)
    rewrite(out, enormous)
    start = time.monotonic()
    with pytest.raises(ModelError, match="refused before building it"):
        load_model(out)
    assert time.monotonic() - start < 60
