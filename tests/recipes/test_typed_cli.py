"""The command line is built from typed, documented functions: flags, --help and config
files all come from one signature."""

import argparse
from typing import Annotated, Literal

import pytest

from diversedistill.errors import ConfigError
from diversedistill_recipes.cli import build_parser, main, typed
from diversedistill_recipes.cli.options import Reproduction
from diversedistill_recipes.cli.typed import Flag


def sample(name: str, /, *, target: str, times: int = 2,
           mode: Literal["fast", "slow"] = "fast",
           tags: Annotated[list[str] | None, Flag(repeat=True)] = None,
           sizes: list[float] | None = None, loud: bool = False, color: bool | None = None,
           config: str | None = None, run: Reproduction) -> dict:
    """Do a sample thing.

    A second paragraph, for --help only.

    Args:
        name: what to call it
        target: where it goes
        times: how often
        mode: how
        tags: a label (repeat)
        sizes: widths
        loud: say it loudly
        color: paint it
        config: a YAML file
        run: the run
    """
    return {"name": name, "target": target, "times": times, "mode": mode, "tags": tags,
            "sizes": sizes, "loud": loud, "color": color, "seeds": run.seeds,
            "committees": run.committees}


@pytest.fixture
def parser():
    root = argparse.ArgumentParser(prog="t")
    typed.add_command(root.add_subparsers(dest="command"), "sample", sample)
    return root


def run(parser, *argv, config_sets_flags=False):
    return typed.call(parser.parse_args(["sample", *argv]), config_sets_flags)


def test_a_signature_is_the_parser(parser):
    got = run(parser, "n", "--target", "o", "--times", "3", "--mode", "slow", "--tags", "a",
              "--tags", "b", "--sizes", "1", "2.5", "--loud", "--no-color", "--seeds", "4",
              "--committees", "x", "y+z")
    assert got == {"name": "n", "target": "o", "times": 3, "mode": "slow", "tags": ["a", "b"],
                   "sizes": [1.0, 2.5], "loud": True, "color": False, "seeds": 4,
                   "committees": ["x", "y+z"]}
    defaults = run(parser, "n", "--target", "o")
    assert defaults["times"] == 2 and defaults["tags"] is None and defaults["color"] is None
    assert defaults["seeds"] == Reproduction().seeds


@pytest.mark.parametrize("argv", [["n"], ["n", "--target", "o", "--mode", "medium"],
                                  ["n", "--target", "o", "--times", "two"]])
def test_a_missing_required_flag_or_a_bad_value_is_refused_by_the_parser(parser, argv):
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", *argv])


def test_help_comes_from_the_docstring(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Do a sample thing." in text and "A second paragraph, for --help only." in text
    assert "--times TIMES how often (default 2)" in text
    assert "--color, --no-color paint it" in text
    assert "reproduction: --seeds SEEDS number of seeds (default 3)" in text


def test_a_config_file_sets_flags_and_the_command_line_wins(parser, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("times: 5\nseeds: 7\ncommittees: [a, b+c]\nmode: slow\nother: 1\n")
    got = run(parser, "n", "--target", "o", "--config", str(config), "--times", "6",
              config_sets_flags=True)
    assert (got["times"], got["seeds"], got["committees"], got["mode"]) == \
        (6, 7, ["a", "b+c"], "slow")
    assert run(parser, "n", "--target", "o", "--config", str(config))["times"] == 2  # not opted in


@pytest.mark.parametrize("line, message", [("times: many", "c.yaml: times: expected int"),
                                           ("mode: medium", "c.yaml: mode: expected one of"),
                                           ("loud: 1", "c.yaml: loud: expected bool")])
def test_a_bad_value_in_the_config_file_names_the_file_and_the_key(parser, tmp_path, line,
                                                                   message):
    config = tmp_path / "c.yaml"
    config.write_text(line + "\n")
    with pytest.raises(ConfigError, match=message):
        run(parser, "n", "--target", "o", "--config", str(config), config_sets_flags=True)


def test_every_field_of_a_flag_group_and_of_diversedistills_config_is_documented():
    from dataclasses import fields

    from diversedistill.diversedistill_config import DiverseDistillConfig
    from diversedistill_recipes.cli import options

    for group in (DiverseDistillConfig, options.MovieLensData, options.Training,
                  options.Devices, options.Reproduction):
        documented = typed._docs(group)
        assert {f.name for f in fields(group)} == set(documented), group.__name__
        assert all(documented.values()), group.__name__


def test_every_subcommand_has_a_documented_flag_for_every_parameter():
    subcommands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    reproduce = subcommands.pop("reproduce")._subparsers._group_actions[0].choices
    for name, sub in {**subcommands, **reproduce}.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name}: {action.option_strings or action.dest}"


def test_reproduce_reads_its_flags_from_the_config_file_and_refuses_unknown_keys(tmp_path,
                                                                                 capsys):
    config = tmp_path / "exp.yaml"
    # seeds: the flag; lm and tables: sections, though --lm and --tables are flags too
    config.write_text("seeds: 0\nlm: {model: none}\ntables: {grids: {}}\n")
    assert main(["reproduce", "movielens", "--config", str(config)]) == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
    config.write_text("seeds: 2\nsplitt: u1\n")
    assert main(["reproduce", "movielens", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml: unknown top-level key 'splitt'" in err and "split_seed" in err
