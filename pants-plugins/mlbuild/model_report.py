"""The review report of an `ml_model`: `report.html` and PNG figures, a cached step of `package`.

The report reads only JSON (the artifact's description and the per-epoch history of training).
Its figures are drawn by a process with matplotlib from a light resolve, never in the model's
torch/tensorflow one, whose input is only what the figures show (history, test metrics,
thresholds, class names): a model retrained with the same results, e.g. after a change to a shared
module that did not move its numbers, gets its figures from the cache, as drawing them costs more
than such a model's training. `report.html` (which also shows the inputs digest and version) is
written by this rule. The training's wall-clock time is left out of both: two trainings of the
same inputs give the same report bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.pex_requirements import PexRequirements, Resolve
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests, RemovePrefix
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.option.option_types import StrOption
from pants.option.subsystem import Subsystem
from pants.util.logging import LogLevel
from pants.util.resources import read_resource
from pants.util.strutil import help_text

from mlbuild.report_html import FIGURES, report_html

_SCRIPT = "__render_report.py"
_INPUT = "report_input.json"
_OUT = "report"


class ModelReportSubsystem(Subsystem):
    options_scope = "model-report"
    help = "Options of the review report (`report.html`) that `package` writes for each `ml_model`."

    resolve = StrOption(
        default="python-default",
        help=help_text(
            """
            The resolve whose lockfile provides `matplotlib` for rendering the reports. Not a
            model's resolve: the report reads JSON only.
            """
        ),
    )


@dataclass(frozen=True)
class ModelReportRequest:
    address: Address
    # model.json's content, without the training time
    description: str
    # the per-epoch records of the training step (training.json's summary.history)
    history: str


@dataclass(frozen=True)
class ModelReport:
    """`report.html` and its PNGs, at the digest's root."""

    digest: Digest


def report_request(address: Address, description: dict, history: list) -> ModelReportRequest:
    """Only what the report shows; wall-clock time would make every training a new report."""
    training = {k: v for k, v in description["training"].items() if k != "seconds"}
    return ModelReportRequest(
        address,
        json.dumps({**description, "training": training}, sort_keys=True),
        json.dumps(history, sort_keys=True),
    )


@rule(desc="Render an ml_model's report", level=LogLevel.DEBUG)
async def render_model_report(
    request: ModelReportRequest, subsystem: ModelReportSubsystem, python_setup: PythonSetup
) -> ModelReport:
    script = read_resource("mlbuild", "render_report.py")
    assert script is not None, "mlbuild/render_report.py is missing"
    description = json.loads(request.description)
    history = json.loads(request.history)
    shown = {key: description[key] for key in ("name", "metrics", "thresholds", "class_names")}
    report_input = json.dumps(
        {"figures": FIGURES, "history": history, "model": shown}, sort_keys=True
    ).encode()
    renderer, input_digest = await MultiGet(
        Get(
            VenvPex,
            PexRequest(
                output_filename="render_report.pex",
                internal_only=True,
                requirements=PexRequirements(
                    ["matplotlib"],
                    from_superset=Resolve(subsystem.resolve, use_entire_lockfile=False),
                    description_of_origin="the reports of ml_model targets",
                ),
                interpreter_constraints=InterpreterConstraints(
                    python_setup.interpreter_constraints
                ),
            ),
        ),
        Get(
            Digest,
            CreateDigest([FileContent(_SCRIPT, script), FileContent(_INPUT, report_input)]),
        ),
    )
    result, page = await MultiGet(
        Get(
            ProcessResult,
            VenvPexProcess(
                renderer,
                argv=(_SCRIPT, _INPUT, _OUT),
                input_digest=input_digest,
                output_directories=(_OUT,),
                description=f"Render the report figures of {request.address}",
                level=LogLevel.DEBUG,
            ),
        ),
        Get(
            Digest,
            CreateDigest(
                [FileContent("report.html", report_html(description, history).encode("utf-8"))]
            ),
        ),
    )
    figures = await Get(Digest, RemovePrefix(result.output_digest, _OUT))
    return ModelReport(await Get(Digest, MergeDigests((figures, page))))


def rules():
    return collect_rules()
