"""The review report of an `ml_model`: `report.html` and four SVG figures, written by `package`.

The report reads only JSON (the artifact's description and the per-epoch history of training)
and is drawn by this rule in the standard library (mlbuild/report_figures.py,
mlbuild/report_html.py): no process, no framework, no plotting library. The training's wall-clock
time is left out: two trainings of the same inputs give the same report bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from mlbuild.report_figures import report_figures
from mlbuild.report_html import FIGURES, report_html


@dataclass(frozen=True)
class ModelReportRequest:
    address: Address
    # model.json's content, without the training time
    description: str
    # the per-epoch records of the training step (training.json's summary.history)
    history: str


@dataclass(frozen=True)
class ModelReport:
    """`report.html` and its figures, at the digest's root."""

    digest: Digest


def report_request(address: Address, description: dict, history: list) -> ModelReportRequest:
    """Only what the report shows; wall-clock time would make every training a new report."""
    training = {k: v for k, v in description["training"].items() if k != "seconds"}
    return ModelReportRequest(
        address,
        json.dumps({**description, "training": training}, sort_keys=True),
        json.dumps(history, sort_keys=True),
    )


def report_files(description: dict, history: list) -> list[FileContent]:
    figures = report_figures(description, history, FIGURES)
    page = report_html(description, history)
    return [
        FileContent("report.html", page.encode("utf-8")),
        *(FileContent(name, svg.encode("utf-8")) for name, svg in sorted(figures.items())),
    ]


@rule(desc="Write an ml_model's report", level=LogLevel.DEBUG)
async def write_model_report(request: ModelReportRequest) -> ModelReport:
    files = report_files(json.loads(request.description), json.loads(request.history))
    return ModelReport(await Get(Digest, CreateDigest(files)))


def rules():
    return collect_rules()
