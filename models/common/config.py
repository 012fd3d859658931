"""A model's training config file: hyperparameters, seed and split, validated with clear errors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The config file is missing, not JSON, or has a missing or invalid key."""


@dataclass(frozen=True)
class TrainingConfig:
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    validation_fraction: float = 0.15
    test_fraction: float = 0.2
    # Architecture parameters, interpreted by the model's own code.
    model: dict[str, Any] = field(default_factory=dict)

    def architecture(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The `model` object merged over the model's defaults; unknown keys or types are errors."""
        unknown = sorted(set(self.model) - set(defaults))
        if unknown:
            raise ConfigError(
                f"model: unknown key(s) {', '.join(unknown)}; this model takes: "
                f"{', '.join(sorted(defaults))}"
            )
        for key, value in self.model.items():
            expected = type(defaults[key])
            ok = (
                isinstance(value, (int, float))
                if expected is float
                else isinstance(value, expected)
            )
            if not ok or isinstance(value, bool) != isinstance(defaults[key], bool):
                raise ConfigError(
                    f"model: '{key}' must be {expected.__name__} like its default "
                    f"{defaults[key]!r}, got {value!r}"
                )
        return {**defaults, **self.model}


# key: (type, required, check, what the check means)
_KEYS = {
    "seed": (int, True, lambda v: v >= 0, "an integer >= 0"),
    "epochs": (int, True, lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    "batch_size": (int, True, lambda v: 1 <= v <= 65_536, "an integer in [1, 65536]"),
    "learning_rate": ((int, float), True, lambda v: 0 < v <= 10, "a number in (0, 10]"),
    "validation_fraction": ((int, float), False, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "test_fraction": ((int, float), False, lambda v: 0 < v < 1, "a number in (0, 1)"),
    "model": (dict, False, lambda v: True, "an object"),
}


def parse_config(data: Any, source: str = "<config>") -> TrainingConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}"
        )
    values = {}
    for key, (types, required, check, meaning) in _KEYS.items():
        if key not in data:
            if required:
                raise ConfigError(f"{source}: missing required key '{key}' ({meaning})")
            continue
        value = data[key]
        # bool is an int subclass in Python, but `"epochs": true` is a mistake.
        if isinstance(value, bool) or not isinstance(value, types) or not check(value):
            raise ConfigError(f"{source}: '{key}' must be {meaning}, got {value!r}")
        values[key] = value
    config = TrainingConfig(**values)
    if config.validation_fraction + config.test_fraction >= 1:
        raise ConfigError(f"{source}: validation_fraction + test_fraction must be below 1")
    return config


def load_config(path: Path) -> TrainingConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from e
    return parse_config(data, str(path))
