from pathlib import Path

import pytest

from diversedistill.config import from_dict, load_yaml
from diversedistill.errors import ConfigError
from diversedistill.methods import DiverseDistillConfig
from diversedistill_recipes.movielens.lm.prepare import LMConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    data = load_yaml(path)
    if path.parent.name == "vision":  # an image experiment: models, committees, methods
        from diversedistill_recipes.cifar.image_recipes import load_experiment

        from_dict(DiverseDistillConfig, load_experiment(data, str(path)).diversedistill, str(path))
        return
    assert set(data) <= {"diversedistill", "injection", "lm"}
    from_dict(DiverseDistillConfig, data.get("diversedistill"), str(path))
    from_dict(LMConfig, data.get("lm"), str(path))


def test_configs_exist():
    assert CONFIGS


@pytest.mark.parametrize("values, message", [
    ({"lamda": 1}, "unknown key 'lamda'"),
    ({"lam": "big"}, "cfg.lam: expected a number, got 'big'"),
    ({"z_as_served": "yes"}, "cfg.z_as_served: expected true or false"),
    ({"d1": 1.5}, "cfg.d1: expected an integer"),
])
def test_bad_keys_and_types_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(DiverseDistillConfig, values, "cfg")


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("diversedistill:\n  lam: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: not valid YAML"):
        load_yaml(path)


def test_lm_config_names_bad_values():
    with pytest.raises(ConfigError, match="lm.epochs: expected an integer"):
        from_dict(LMConfig, {"epochs": "three"}, "lm")
    with pytest.raises(ConfigError, match="context_cache must be one of"):
        from_dict(LMConfig, {"context_cache": "cloud"}, "lm")


def test_boolean_switches_are_flag_and_no_flag_and_unset_keeps_the_default():
    from diversedistill_recipes.cli import build_parser
    from diversedistill_recipes.cli.config_file import diversedistill_config
    from diversedistill_recipes.cli.typed import UNSET

    def parse(*flags):
        args = build_parser().parse_args(["distill", "--teacher", "t", "--out", "o", *flags])
        given = {k.split(".", 1)[1]: v for k, v in vars(args).items()
                 if k.startswith("diversedistill.") and v is not UNSET}
        return diversedistill_config(None, given, None)

    cfg, _ = parse("--no-zero-init-questions", "--distill-trains-importance")
    assert cfg.zero_init_questions is False and cfg.distill_trains_importance is True
    cfg, _ = parse()
    assert cfg.zero_init_questions is True and cfg.distill_trains_importance is False
    with pytest.raises(SystemExit):  # the old form, a boolean that took a value, is gone
        parse("--zero-init-questions", "false")
