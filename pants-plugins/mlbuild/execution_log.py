"""An execution log: every process a Pants run asked for, with what makes up its cache key.

Pants 2.17 says that a step missed the cache, never why. Bazel users diff execution logs; this
writes one (`--execution-log-path=FILE`): for each process its description, whether it ran or
came from a cache, its argv, env, output paths, platform and input root digest, plus a `key` over
all of them. Pants keeps input trees in memory only, so the files behind an input root cannot be
listed from here: `infra/remote-cache/explain-miss record` adds them from the kept sandboxes of
the processes that ran, and compares two logs (this machine's and CI's) step by step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from pants.engine.rules import collect_rules, rule
from pants.engine.streaming_workunit_handler import (
    StreamingWorkunitContext,
    WorkunitsCallback,
    WorkunitsCallbackFactory,
    WorkunitsCallbackFactoryRequest,
)
from pants.engine.unions import UnionRule
from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1

# What Pants puts into a process's REAPI action, i.e. its cache key (process_execution's
# make_execute_request): these fields of the process definition, and the input root.
_KEY_FIELDS = ("argv", "env", "working_directory", "output_files", "output_directories", "timeout")


class ExecutionLogSubsystem(Subsystem):
    options_scope = "execution-log"
    help = help_text(
        """
        Write every process of a run, with the parts of its cache key, to a JSON-lines file, for
        `infra/remote-cache/explain-miss`.
        """
    )

    path = StrOption(
        default=None,
        help=help_text(
            """
            Where to write the log (relative to the build root); nothing is written when unset.
            """
        ),
    )


def process_record(definition: dict[str, Any], source: str) -> dict:
    """One line of the log: a process's key parts, and a key over them."""
    root = definition["input_digests"]["complete"]["digest"]
    environment = definition.get("execution_environment") or {}
    record = {
        "kind": "process",
        "description": definition.get("description", ""),
        "source": source,
        **{field: definition.get(field) for field in _KEY_FIELDS},
        "cache_scope": definition.get("cache_scope"),
        "platform": environment.get("platform"),
        "strategy": environment.get("strategy"),
        "input_root": f"{root['fingerprint']}/{root['size_bytes']}",
    }
    record["key"] = hashlib.sha256(
        json.dumps(
            {name: record[name] for name in (*_KEY_FIELDS, "platform", "strategy", "input_root")},
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return record


class ExecutionLogCallback(WorkunitsCallback):
    def __init__(self, path: str) -> None:
        self.path = path
        self.processes: list[tuple[dict[str, Any], str]] = []

    @property
    def can_finish_async(self) -> bool:
        return False

    def __call__(
        self,
        *,
        started_workunits: tuple[dict, ...],
        completed_workunits: tuple[dict, ...],
        finished: bool,
        context: StreamingWorkunitContext,
        **kwargs: Any,
    ) -> None:
        for workunit in completed_workunits:
            metadata = workunit.get("metadata") or {}
            if workunit.get("name") == "process" and "definition" in metadata:
                self.processes.append(
                    (json.loads(metadata["definition"]), str(metadata.get("source", "")))
                )
        if finished:
            self._write()

    def _records(self) -> Iterator[dict]:
        yield {
            "kind": "header",
            "format": FORMAT_VERSION,
            "pants_interpreter": sys.executable,
            # ./pants installs Pants at <root>/pants-<version>-pex-<version>/venv/bin/python.
            "toolchain_root": str(Path(sys.executable).parents[3]),
        }
        for definition, source in self.processes:
            yield process_record(definition, source)

    def _write(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        partial = f"{self.path}.partial"
        with open(partial, "w") as log:
            for record in self._records():
                log.write(json.dumps(record, sort_keys=True) + "\n")
        os.replace(partial, self.path)
        logger.info(f"Wrote the execution log of {len(self.processes)} processes to {self.path}")


class ExecutionLogCallbackFactoryRequest:
    """Asks for the execution log's callback (a union member: Pants calls every one)."""


@rule
def execution_log_callback_factory(
    _: ExecutionLogCallbackFactoryRequest, subsystem: ExecutionLogSubsystem
) -> WorkunitsCallbackFactory:
    path = subsystem.path
    return WorkunitsCallbackFactory(lambda: ExecutionLogCallback(path) if path else None)


def rules():
    return [
        *collect_rules(),
        UnionRule(WorkunitsCallbackFactoryRequest, ExecutionLogCallbackFactoryRequest),
    ]
