"""explain-miss on execution logs: the first difference first, and the honest "same key" case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cache.explain_miss import Log, diff, main, sandbox_inputs


def _step(description: str, source: str = "Ran", **overrides) -> dict:
    step = {
        "kind": "process",
        "description": description,
        "source": source,
        "argv": ["/var/tmp/ml-monorepo-toolchain/python3.11/bin/python3.11", "-m", "train"],
        "env": {"PATH": "/usr/bin:/bin", "PEX_ROOT": ".cache/pex_root"},
        "working_directory": None,
        "output_files": [],
        "output_directories": ["train"],
        "timeout": None,
        "platform": "Linux_x86_64",
        "strategy": "Local",
        "input_root": "aa/10",
        "inputs": {"models/x/config.json": "c1/10", "model_runner.pex_pex_shim.sh": "s1/99"},
        "key": "k1",
    }
    step.update(overrides)
    return step


def _log(*steps: dict, root: str = "/var/tmp/ml-monorepo-toolchain") -> Log:
    return Log(
        header={"kind": "header", "format": 1, "toolchain_root": root}, processes=list(steps)
    )


def test_a_changed_input_file_is_named_with_both_digests() -> None:
    theirs = _log(_step("Train models/x:x"))
    ours = _log(
        _step(
            "Train models/x:x",
            key="k2",
            input_root="bb/10",
            inputs={"models/x/config.json": "c2/11", "model_runner.pex_pex_shim.sh": "s1/99"},
        )
    )
    report = diff(theirs, ours)
    assert "Train models/x:x [Ran]" in report
    assert "input file models/x/config.json: theirs 'c1/10', ours 'c2/11'" in report
    assert "shim" not in report  # Equal files are not listed.


def test_argv_and_env_come_before_files_and_name_the_machine_path() -> None:
    theirs = _log(_step("Train models/x:x"))
    ours = _log(
        _step(
            "Train models/x:x",
            key="k2",
            argv=["/home/me/.cache/python3.11/bin/python3.11", "-m", "train"],
            env={"PATH": "/home/me/bin:/usr/bin", "PEX_ROOT": ".cache/pex_root", "LANG": "de"},
            input_root="bb/10",
            inputs={"models/x/config.json": "c1/10", "model_runner.pex_pex_shim.sh": "s2/99"},
        ),
        root="/home/me/.cache/ml-monorepo/toolchain",
    )
    lines = diff(theirs, ours).splitlines()
    assert lines[1].startswith("toolchain root: theirs '/var/tmp/ml-monorepo-toolchain'")
    step = lines.index("Train models/x:x [Ran]")
    details = [line.strip() for line in lines[step + 1 :]]
    assert details[0] == (
        "argv[0]: theirs '/var/tmp/ml-monorepo-toolchain/python3.11/bin/python3.11', "
        "ours '/home/me/.cache/python3.11/bin/python3.11'"
    )
    assert details[1] == "env LANG: only ours ('de')"
    assert details[2].startswith("env PATH: theirs '/usr/bin:/bin'")
    assert details[3] == "input file model_runner.pex_pex_shim.sh: theirs 's1/99', ours 's2/99'"


def test_same_key_means_the_cache_lacked_the_entry() -> None:
    report = diff(_log(_step("Train models/x:x")), _log(_step("Train models/x:x")))
    assert "same key on both machines: the cache lacked the entry" in report


def test_hits_are_counted_not_explained_and_unknown_steps_are_named() -> None:
    theirs = _log(_step("Build requirements", key="r1"))
    ours = _log(
        _step("Build requirements", source="HitRemotely", key="r1"),
        _step("Train models/new:new", key="n1"),
    )
    report = diff(theirs, ours)
    assert report.splitlines()[0] == "our steps: HitRemotely: 1, Ran: 1"
    assert "Build requirements" not in report
    assert "Train models/new:new [Ran]\n  no step of that description in their log" in report


def test_steps_pants_never_caches_remotely_are_counted_apart() -> None:
    discovery = _step(
        "Find interpreter for constraints: CPython==3.11.*", cache_scope="PerRestartSuccessful"
    )
    report = diff(_log(discovery), _log(discovery))
    assert report == "our steps: never cached remotely: 1"


def test_a_missing_file_list_says_how_to_get_one() -> None:
    theirs = _log(_step("Train models/x:x", inputs={}))
    ours = _log(_step("Train models/x:x", key="k2", input_root="bb/10"))
    assert "their record lists no files: record that step with `explain-miss record`" in diff(
        theirs, ours
    )


def test_sandbox_inputs_leave_out_outputs_scripts_caches_and_what_the_process_wrote(
    tmp_path: Path,
) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / "models/x").mkdir(parents=True)
    (sandbox / "models/x/config.json").write_text("{}")
    (tmp_path / "named").mkdir()
    (tmp_path / "named/big").write_text("not an input")
    (sandbox / ".cache").mkdir()
    (sandbox / ".cache/pex_root").symlink_to(tmp_path / "named")
    (sandbox / "__run.sh").write_text("#!/bin/sh")
    # Written by the process: an output and a bytecode file.
    (sandbox / "train").mkdir()
    (sandbox / "train/checkpoint").write_text("weights")
    (sandbox / "models/x/__pycache__").mkdir()
    (sandbox / "models/x/__pycache__/train.cpython-311.pyc").write_bytes(b"\x00")
    files = sandbox_inputs(sandbox, {"output_directories": ["train"], "output_files": []}, {})
    assert files == {
        "models/x/config.json": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a/2"
    }


def test_a_file_that_is_not_a_log_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"kind": "process"}) + "\nnot json\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: not a JSON line"):
        Log.read(bad)
    bad.write_text(json.dumps({"kind": "process"}) + "\n")
    with pytest.raises(SystemExit, match="is not an execution log"):
        main(["diff", str(bad), str(bad)])
