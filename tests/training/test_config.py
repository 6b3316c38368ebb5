import tomllib
from pathlib import Path

import pytest

from rnnkit.training.config import (Config, ConfigError, apply_overrides,
                                    config_from_dict, load_toml)
from rnnkit.training.presets import preset_config, preset_names, preset_path
from rnnkit.training.schedule import LRSchedule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nhidden_size = 64\n[model.options]\nzoneout = 0.1\n'
                    '[optim]\nlr = 1\n')
    config = load_toml(path)
    assert config.model.hidden_size == 64 and config.optim.lr == 1.0
    assert config.model.options == {"zoneout": 0.1}
    config = apply_overrides(config, {"model.num_layers": "3", "dropout": "0.2",
                                      "train.out": "runs/x", "options.layer_norm": "true"})
    assert (config.model.num_layers, config.model.dropout) == (3, 0.2)
    assert config.train.out == "runs/x"
    assert config.model.options == {"zoneout": 0.1, "layer_norm": True}


@pytest.mark.parametrize("key,value,match", [
    ("hiden_size", "3", "config key 'hiden_size' is unknown"),
    ("model.hiden_size", "3", "unknown config key model.hiden_size"),
    ("epochs", "1.5", "train.epochs: expected int"),
    ("optimizer", "lbfgs", "optim.optimizer: must be one of"),
    ("batch_size", "0", "train.batch_size: must be >= 1, got 0"),
])
def test_bad_keys_and_values_are_named(key, value, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), {key: value}).validate()


def test_unknown_key_in_a_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepochz = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown config key train.epochz"):
        load_toml(path)


def test_the_presets_are_the_files_of_rnnkit_configs():
    assert preset_names() == ["addition", "char-default", "char-shakespeare", "date",
                              "ptb-awd", "ptb-medium", "ptb-small", "sst2", "wikitext2",
                              "wikitext2-awd"]
    # configs/ at the root of the checkout is the same folder, not a copy
    assert CONFIGS.resolve() == Path(str(preset_path("date"))).parent.resolve()


@pytest.mark.parametrize("name", ["addition", "char-default", "char-shakespeare", "date",
                                  "ptb-awd", "ptb-medium", "ptb-small", "sst2", "wikitext2",
                                  "wikitext2-awd"])
def test_each_preset_is_a_valid_config(name):
    with open(CONFIGS / f"{name}.toml", "rb") as f:
        from_file = config_from_dict(tomllib.load(f))
    assert from_file == preset_config(name).validate()


def test_the_presets_ship_as_package_data():
    with open(CONFIGS.parent / "pyproject.toml", "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "configs/*.toml" in package_data["rnnkit"]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'ptb-huge'"):
        preset_config("ptb-huge")


def test_zaremba_step_schedule():
    config = preset_config("ptb-small").optim
    schedule = LRSchedule(config, total_steps=100)
    lrs = [config.lr * schedule.factor(0, epoch) for epoch in range(1, 14)]
    assert lrs[:4] == [1.0] * 4
    assert lrs[4:7] == [0.5, 0.25, 0.125] and lrs[12] == 0.5 ** 9


def test_plateau_divides_when_validation_stalls_and_warmup_is_linear():
    config = apply_overrides(Config(), {"schedule": "plateau", "decay": "0.25",
                                        "warmup_steps": "4"}).optim
    schedule = LRSchedule(config, total_steps=100)
    assert [schedule.factor(s, 1) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    for loss in (5.0, 4.0, 4.5, 3.0, 3.5):
        schedule.end_epoch(loss)
    assert schedule.factor(10, 1) == 0.25 ** 2
    other = LRSchedule(config, 100)
    other.load_state_dict(schedule.state_dict())
    assert other.factor(10, 1) == schedule.factor(10, 1)


def test_cosine_goes_from_one_to_min_ratio():
    config = apply_overrides(Config(), {"schedule": "cosine", "min_lr_ratio": "0.1"}).optim
    schedule = LRSchedule(config, total_steps=100)
    assert schedule.factor(0, 1) == 1.0
    assert abs(schedule.factor(50, 1) - 0.55) < 1e-12
    assert abs(schedule.factor(100, 1) - 0.1) < 1e-12
