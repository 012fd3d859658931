"""Target types for datasets and models: what a BUILD file may say about them, checked early."""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Dict, Optional
from urllib.parse import urlparse

from pants.core.target_types import FileSourceField, http_source
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    Dependencies,
    Field,
    IntField,
    InvalidFieldException,
    InvalidFieldTypeException,
    InvalidTargetException,
    StringField,
    Target,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

# The metrics the training harness (models/common/metrics.py) reports on the test split and a
# threshold may name. A test checks that the two lists agree.
GATED_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")

FRAMEWORKS = ("torch", "tensorflow")

# ------------------------------------------------------------------------------------------
# ml_dataset
# ------------------------------------------------------------------------------------------


class DatasetSourceField(FileSourceField):
    """A `file` source, so tests and processes that depend on the dataset see the file itself."""

    required = False
    expected_file_extensions = (".npz",)
    help = help_text(
        """
        The dataset file, relative to the BUILD file's directory: a `.npz` with `features`,
        `labels`, `class_names` and `scale` arrays, as written by `models/datasets/export_datasets.py`.
        Set either this or `url` (a dataset kept in the artifact store).
        """
    )


class DatasetUrlField(StringField):
    alias = "url"
    help = help_text(
        """
        Where the artifact store serves the dataset file (instead of `source`): an `https://`
        (or `http://`, `file:`) URL whose last path segment is the `.npz` file name, e.g. as
        printed by `infra/datastore/upload`. Pants fetches it once per machine, checks `size` and
        `sha256`, and caches it by digest; credentials come from the environment
        (`DATASTORE_NETRC`, a netrc-style file), never from the repository.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("https", "http", "file") or (
            parsed.scheme != "file" and not parsed.hostname
        ):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be an https://, http:// or "
                f"file: URL, but was {value!r}."
            )
        if parsed.username or parsed.password:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} contains credentials; put them in "
                "the file named by DATASTORE_NETRC (netrc-style), never in a BUILD file."
            )
        name = parsed.path.rsplit("/", 1)[-1]
        if not re.fullmatch(r"[A-Za-z0-9._-]+\.npz", name) or parsed.query or parsed.fragment:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must end in the dataset's `.npz` "
                f"file name (letters, digits, `._-`; no query or fragment), but was {value!r}."
            )
        return value


class DatasetSizeField(IntField):
    alias = "size"
    help = "The size of the file at `url` in bytes; a download of any other length is refused."

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is not None and value <= 0:
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be a positive number of bytes, "
                f"but was {value!r}."
            )
        return value


class DatasetSha256Field(StringField):
    alias = "sha256"
    required = True
    help = help_text(
        """
        The sha256 of the dataset file, as 64 lowercase hex digits. Training refuses to start
        when the file's digest differs, so a silently changed dataset never trains a model.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be 64 lowercase hex digits "
                f"(a sha256), but was {value!r}."
            )
        return value


class MlDatasetTarget(Target):
    alias = "ml_dataset"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        DatasetSourceField,
        DatasetSha256Field,
        DatasetUrlField,
        DatasetSizeField,
    )
    help = help_text(
        """
        A dataset file with its declared sha256, used by `ml_model` targets: committed next to
        the BUILD file (`source`), or kept in the artifact store (`url` and `size`).
        """
    )

    def __init__(self, unhydrated_values: dict[str, Any], address: Address, *args, **kwargs):
        # A dataset in the store is, to Pants's own source handling, an `http_source` pinned by
        # length and sha256: anything that depends on it gets the file, from the local store once
        # `mlbuild.dataset_fetch` fetched it (with credentials, which `http_source` cannot carry).
        url, size, sha256 = (unhydrated_values.get(k) for k in ("url", "size", "sha256"))
        object.__setattr__(self, "_source_set", unhydrated_values.get("source") is not None)
        if url is not None and not self._source_set and isinstance(size, int) and sha256:
            unhydrated_values = {
                **unhydrated_values,
                "source": http_source(str(url), len=size, sha256=str(sha256)),
            }
        super().__init__(unhydrated_values, address, *args, **kwargs)

    def validate(self) -> None:
        has_source = self._source_set
        has_url = self[DatasetUrlField].value is not None
        if has_source == has_url:
            raise InvalidTargetException(
                f"The `ml_dataset` target {self.address} must set exactly one of `source` (a file "
                f"in the repository) and `url` (a file in the artifact store)."
            )
        has_size = self[DatasetSizeField].value is not None
        if has_url and not has_size:
            raise InvalidTargetException(
                f"The `ml_dataset` target {self.address} sets `url`, so it must set `size` too "
                "(the file's length in bytes, as printed by infra/datastore/upload)."
            )
        if has_size and not has_url:
            raise InvalidTargetException(
                f"The `ml_dataset` target {self.address} sets `size`, but `size` only goes with "
                "`url` (a file in the artifact store)."
            )


# ------------------------------------------------------------------------------------------
# ml_model
# ------------------------------------------------------------------------------------------


class ModelFrameworkField(StringField):
    alias = "framework"
    required = True
    valid_choices = FRAMEWORKS
    help = "The framework the model is written in; it selects the training harness and its export to ONNX."


class ModelEntryPointField(StringField):
    alias = "entry_point"
    required = True
    help = help_text(
        """
        The model's training module: a `.py` file in the target's directory (e.g. `train.py`),
        owned by a `python_source` target. Pants runs it as `python -m <module> train|evaluate|export`;
        its imports are inferred like any Python code, so a change to a library it uses retrains it.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and (
            not value.endswith(".py") or "/" in value or value.startswith(".")
        ):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must name a `.py` file in the "
                f"target's directory (e.g. 'train.py'), but was {value!r}."
            )
        return value


class ModelConfigSourceField(FileSourceField):
    """A `file` source, so the model's tests that depend on the model can read its config."""

    alias = "config"
    required = True
    expected_file_extensions = (".json",)
    help = help_text(
        """
        The training config, a JSON file relative to the BUILD file's directory: `seed`, `epochs`,
        `batch_size`, `learning_rate`, optional `validation_fraction`/`test_fraction`, and a
        `model` object of architecture parameters. Editing it retrains this model only.
        """
    )


class ModelDatasetField(StringField):
    alias = "dataset"
    required = True
    help = "The address of the `ml_dataset` target the model trains on, e.g. `//models/datasets:digits`."


class ModelThresholdsField(Field):
    alias = "thresholds"
    required = True
    value: FrozenDict[str, float]
    allowed_metrics: ClassVar[tuple[str, ...]] = GATED_METRICS
    help = help_text(
        f"""
        The evaluation gate: the least value each named metric must reach on the held-out test
        split, e.g. `{{"accuracy": 0.95}}`. A model below any threshold fails `package` and its
        tests. Metrics: {", ".join(GATED_METRICS)}; each threshold is a number in [0, 1].
        """
    )

    @classmethod
    def compute_value(  # type: ignore[override]
        cls, raw_value: Optional[Dict[str, Any]], address: Address
    ) -> FrozenDict[str, float]:
        value = super().compute_value(raw_value, address)
        if not isinstance(value, dict) or not value:
            raise InvalidFieldTypeException(
                address,
                cls.alias,
                raw_value,
                expected_type=f"a non-empty dict of metric name -> number, metrics: {', '.join(cls.allowed_metrics)}",
            )
        thresholds = {}
        for metric, threshold in value.items():
            if metric not in cls.allowed_metrics:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} names the unknown metric "
                    f"{metric!r}; allowed metrics: {', '.join(cls.allowed_metrics)}."
                )
            if (
                isinstance(threshold, bool)
                or not isinstance(threshold, (int, float))
                or not math.isfinite(threshold)
                or not 0 <= threshold <= 1
            ):
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} sets {metric!r} to {threshold!r}; "
                    "a threshold must be a number in [0, 1]."
                )
            thresholds[metric] = float(threshold)
        return FrozenDict(sorted(thresholds.items()))


class ModelResolveField(StringField):
    """Not a `PythonResolveField`: its default depends on `framework`, which Pants's own resolve
    checks cannot know, and the model itself is no Python code."""

    alias = "resolve"
    help = help_text(
        """
        The Python resolve to train in (from `[python].resolves`); defaults to the resolve named
        like the framework (`torch` or `tensorflow`). The entry point's `python_source` must be in
        the same resolve.
        """
    )

    def resolve_name(self, framework: str) -> str:
        return self.value or framework


class ModelDependenciesField(Dependencies):
    pass


RESOURCE_KINDS = ("gpu", "memory_gb")


class ModelResourcesField(Field):
    alias = "resources"
    default = None
    value: Optional[FrozenDict[str, int]]
    help = help_text(
        f"""
        What training the model needs from the machine, e.g. `{{"gpu": 1, "memory_gb": 16}}`
        (kinds: {", ".join(RESOURCE_KINDS)}; whole numbers >= 0). CI's shard planner
        (`infra/ci/shard-plan`) sends the model only to runners of a class that offers it, and
        a machine without it refuses to train the model instead of training it on CPU. It is
        part of the training step's cache key: declaring a GPU retrains the model (on a GPU).
        """
    )

    @classmethod
    def compute_value(  # type: ignore[override]
        cls, raw_value: Optional[Dict[str, Any]], address: Address
    ) -> Optional[FrozenDict[str, int]]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidFieldTypeException(
                address,
                cls.alias,
                raw_value,
                expected_type='a dict such as {"gpu": 1, "memory_gb": 16}',
            )
        needs = {}
        for kind, amount in value.items():
            if kind not in RESOURCE_KINDS:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} names the unknown resource "
                    f"{kind!r}; known resources: {', '.join(RESOURCE_KINDS)}."
                )
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} sets {kind!r} to {amount!r}; "
                    "it must be a whole number >= 0."
                )
            if amount:  # 0 asks for nothing: the same model, the same cache key, as leaving it out
                needs[kind] = amount
        return FrozenDict(sorted(needs.items()))


class MlModelTarget(Target):
    alias = "ml_model"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ModelFrameworkField,
        ModelEntryPointField,
        ModelConfigSourceField,
        ModelDatasetField,
        ModelThresholdsField,
        ModelResolveField,
        ModelDependenciesField,
        ModelResourcesField,
    )
    help = help_text(
        """
        A model trained, evaluated, gated and exported to ONNX as cached build steps.

        `pants package` on it writes an artifact directory (`model.onnx` and `model.json`) to
        `dist/models/<name>/`; its training reruns only when its code, config, dataset or locked
        requirements change.
        """
    )
