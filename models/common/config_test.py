import json

import pytest

from models.common.config import ConfigError, load_config, parse_config

VALID = {"seed": 0, "epochs": 3, "batch_size": 32, "learning_rate": 0.01, "model": {"hidden": 8}}


def test_valid_config_parses_with_defaults(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(VALID))
    config = load_config(path)
    assert config.epochs == 3 and config.model == {"hidden": 8}
    assert config.test_fraction == 0.2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "'epochs' must be an integer in [1, 10000], got 0"),
        ({"epochs": True}, "'epochs' must be an integer"),
        ({"learning_rate": -1}, "'learning_rate' must be a number in (0, 10]"),
        ({"seed": "0"}, "'seed' must be an integer >= 0"),
        ({"batchsize": 3}, "unknown key(s) batchsize"),
        ({"validation_fraction": 0.5, "test_fraction": 0.5}, "must be below 1"),
    ],
)
def test_invalid_values_are_named(change, message):
    with pytest.raises(ConfigError) as e:
        parse_config({**VALID, **change}, "cfg.json")
    assert message in str(e.value)
    assert str(e.value).startswith("cfg.json: ")


def test_missing_key_and_bad_json_are_named(tmp_path):
    with pytest.raises(ConfigError, match="missing required key 'seed'"):
        parse_config({k: v for k, v in VALID.items() if k != "seed"})
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
