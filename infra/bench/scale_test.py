"""A small-N run of the scale benchmark with real `./pants` (the fast cases only)."""

from __future__ import annotations

import csv

from infra.bench.scale import format_table, run


def test_scale_benchmark_small_n(tmp_path) -> None:
    lines: list[str] = []
    rows = run(
        [2],
        ("cold", "noop_warm", "config", "shared"),
        workdir=tmp_path / "work",
        out=tmp_path / "out",
        keep=False,
        log=lines.append,
    )
    (row,) = rows
    # The counts are checked inside run() too; here they are what the table reports.
    assert row.trained == {"cold": 2, "noop_warm": 0, "config": 1, "shared": 1}
    assert all(seconds > 0 for seconds in row.seconds.values())
    # A no-op with pantsd warm costs less than training everything.
    assert row.seconds["noop_warm"] < row.seconds["cold"]
    # Training two models costs CPU in pantsd's processes; a no-op costs less.
    assert row.cpu["cold"] > row.cpu["noop_warm"] >= 0
    assert not (tmp_path / "work/n2").exists()

    with open(tmp_path / "out/scale.csv", newline="") as f:
        (written,) = csv.DictReader(f)
    assert written["n"] == "2" and written["shared_trained"] == "1"
    assert float(written["cold_cpu_s"]) > 0 and written["naive_cpu_s"] == ""
    assert written["naive_s"] == "" and written["config_over_naive"] == ""

    table = format_table(rows)
    assert table.splitlines()[1].startswith("2 | ") and "(2)" in table
    assert lines[-1] == table
