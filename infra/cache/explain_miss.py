"""Why did a step miss the cache? Compares two execution logs, first difference first.

    infra/remote-cache/explain-miss record --out mine.jsonl -- package models/x::
    infra/remote-cache/explain-miss diff ci.jsonl mine.jsonl [--step Train]
    infra/remote-cache/explain-miss --against ci.jsonl -- package models/x::   # both at once

`record` runs real `./pants` with `--execution-log-path` (our plugin's `[execution-log]`), which
logs every process with its argv, env, outputs and input root. Pants 2.17 keeps a process's input
tree only in memory, so for each process that ran here `record` also lists the files of its
sandbox (kept with `--keep-sandboxes=always`, hashed, then deleted): each input file by path and
sha256. CI keeps its log (`[execution-log] path` in pants.ci.toml) as a pipeline artifact.

`diff` pairs the steps of the two logs by description and, for each step that ran (missed) in
the second log, prints whether the other log had the same key (then the cache simply lacked the
entry: never written, evicted, or refused) or what differs: argv, env, output paths, platform,
then input files (changed, only here, only there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# "Preserving local process execution dir /tmp/pants-sandbox-abc for <description>"
_PRESERVED = re.compile(r"Preserving local process execution dir (\S+) for (.*)$")
_RAN = "Ran"
# Cache scopes whose results Pants stores in the remote cache; steps of the others (interpreter
# and binary discovery) run on every machine by design.
REMOTE_CACHEABLE = ("Always", "Successful")
_KEY_PARTS = ("argv", "env", "working_directory", "output_files", "output_directories", "timeout")


@dataclass
class Log:
    header: dict
    processes: list[dict] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Log:
        log = cls(header={})
        with path.open() as lines:
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"explain-miss: {path}:{number}: not a JSON line ({e})") from e
                if record.get("kind") == "header":
                    log.header = record
                elif record.get("kind") == "process":
                    log.processes.append(record)
        if not log.header:
            raise SystemExit(f"explain-miss: {path} is not an execution log (no header line)")
        return log

    def write(self, path: Path) -> None:
        partial = path.with_name(path.name + ".partial")
        with partial.open("w") as out:
            for record in (self.header, *self.processes):
                out.write(json.dumps(record, sort_keys=True) + "\n")
        partial.replace(path)


# ------------------------------------------------------------------------------------------
# Comparing
# ------------------------------------------------------------------------------------------


def _differences(name: str, theirs: object, ours: object) -> list[str]:
    if theirs == ours:
        return []
    if isinstance(theirs, dict) and isinstance(ours, dict):
        lines = []
        for key in sorted(set(theirs) | set(ours)):
            if key not in ours:
                lines.append(f"{name} {key}: only theirs ({theirs[key]!r})")
            elif key not in theirs:
                lines.append(f"{name} {key}: only ours ({ours[key]!r})")
            elif theirs[key] != ours[key]:
                lines.append(f"{name} {key}: theirs {theirs[key]!r}, ours {ours[key]!r}")
        return lines
    if isinstance(theirs, list) and isinstance(ours, list):
        lines = []
        for index in range(max(len(theirs), len(ours))):
            a = theirs[index] if index < len(theirs) else "<none>"
            b = ours[index] if index < len(ours) else "<none>"
            if a != b:
                lines.append(f"{name}[{index}]: theirs {a!r}, ours {b!r}")
        return lines
    return [f"{name}: theirs {theirs!r}, ours {ours!r}"]


def explain_step(theirs: dict, ours: dict) -> list[str]:
    """What differs between two requests for one step, most telling first."""
    if theirs["key"] == ours["key"]:
        return [
            "same key on both machines: the cache lacked the entry (never written by them, "
            "evicted, refused, or the cache was unreachable)"
        ]
    lines: list[str] = []
    for part in (*_KEY_PARTS, "platform", "strategy"):
        lines += _differences(part, theirs.get(part), ours.get(part))
    if theirs.get("input_root") != ours.get("input_root"):
        their_files, our_files = theirs.get("inputs") or {}, ours.get("inputs") or {}
        if not their_files or not our_files:
            side = "their" if not their_files else "our"
            lines.append(
                f"input root: theirs {theirs.get('input_root')}, ours {ours.get('input_root')} "
                f"({side} record lists no files: record that step with `explain-miss record`)"
            )
        else:
            lines += _differences("input file", their_files, our_files)
    return lines or ["keys differ in a part the log does not show"]


def _pair(theirs: list[dict], ours: list[dict]) -> Iterable[tuple[dict | None, dict]]:
    """Pairs each of our steps with their step of the same description (same key first)."""
    by_description: dict[str, list[dict]] = defaultdict(list)
    for record in theirs:
        by_description[record["description"]].append(record)
    for record in ours:
        candidates = by_description.get(record["description"], [])
        match = next((c for c in candidates if c["key"] == record["key"]), None)
        if match is None and candidates:
            match = candidates[0]
        if match is not None:
            candidates.remove(match)
        yield match, record


def diff(theirs: Log, ours: Log, step: str | None = None, everything: bool = False) -> str:
    out = []
    if theirs.header.get("toolchain_root") != ours.header.get("toolchain_root"):
        out.append(
            f"toolchain root: theirs {theirs.header.get('toolchain_root')!r}, ours "
            f"{ours.header.get('toolchain_root')!r} (every pex step's key holds it; see README)"
        )
    counts: dict[str, int] = defaultdict(int)
    for their_step, our_step in _pair(theirs.processes, ours.processes):
        if step and step not in our_step["description"]:
            continue
        local_only = our_step.get("cache_scope", "Successful") not in REMOTE_CACHEABLE
        counts["never cached remotely" if local_only else our_step["source"]] += 1
        if (our_step["source"] != _RAN or local_only) and not everything:
            continue
        title = f"{our_step['description']} [{our_step['source']}]"
        if their_step is None:
            out.append(f"\n{title}\n  no step of that description in their log")
            continue
        lines = explain_step(their_step, our_step)
        if our_step["source"] != _RAN and their_step["key"] == our_step["key"]:
            continue
        out.append(f"\n{title}")
        out += [f"  {line}" for line in lines]
    summary = ", ".join(f"{source or 'unknown'}: {n}" for source, n in sorted(counts.items()))
    out.insert(0, f"our steps: {summary or 'none'}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# Recording
# ------------------------------------------------------------------------------------------


def _sha256(path: Path, seen: dict[tuple[int, int], str]) -> str:
    stat = path.stat()
    identity = (stat.st_dev, stat.st_ino)
    if identity not in seen:  # Pants hard-links large files into sandboxes: hash each once.
        hasher = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                hasher.update(chunk)
        seen[identity] = f"{hasher.hexdigest()}/{stat.st_size}"
    return seen[identity]


def sandbox_inputs(sandbox: Path, record: dict, seen: dict[tuple[int, int], str]) -> dict[str, str]:
    """The files of a kept sandbox that were inputs: not outputs, caches or Pants's script, and
    not the bytecode Python wrote while the step ran (Pants never puts `__pycache__` in an input
    root; it writes `__run.sh` when it keeps the sandbox, after the run)."""
    skip_dirs = tuple(f"{d.rstrip('/')}/" for d in record.get("output_directories") or ())
    skip_files = set(record.get("output_files") or ()) | {"__run.sh"}
    files = {}
    for root, dirs, names in os.walk(sandbox):
        # Append-only caches (.cache/pex_root, ...) are symlinks to shared directories.
        dirs[:] = [
            d for d in dirs if d != "__pycache__" and not os.path.islink(os.path.join(root, d))
        ]
        for name in names:
            path = Path(root, name)
            relative = path.relative_to(sandbox).as_posix()
            if relative in skip_files or relative.startswith(skip_dirs) or not path.exists():
                continue
            files[relative] = _sha256(path, seen)
    return files


def record(out: Path, pants_args: list[str], with_files: bool = True) -> int:
    """Runs real ./pants with the execution log on and adds the input files of what ran."""
    argv = ["./pants", f"--execution-log-path={out}"]
    if with_files:
        argv.append("--keep-sandboxes=always")
    proc = subprocess.Popen(
        [*argv, *pants_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sandboxes: dict[str, list[Path]] = defaultdict(list)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = _PRESERVED.search(line)
        if match:
            sandboxes[match.group(2).strip()].append(Path(match.group(1)))
        else:
            sys.stdout.write(line)
    status = proc.wait()
    if not out.exists():
        print(f"explain-miss: ./pants wrote no execution log ({out})", file=sys.stderr)
        return status or 1
    if with_files:
        kept_all = [path for paths in sandboxes.values() for path in paths]
        log = Log.read(out)
        seen: dict[tuple[int, int], str] = {}
        for process in log.processes:
            kept = sandboxes.get(process["description"].strip())
            if process["source"] == _RAN and kept:
                process["inputs"] = sandbox_inputs(kept.pop(0), process, seen)
        log.write(out)
        for path in kept_all:
            shutil.rmtree(path, ignore_errors=True)
    return status


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        argv, pants_args = argv[:split], argv[split + 1 :]
    else:
        pants_args = []
    parser = argparse.ArgumentParser(prog="explain-miss", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("record", "diff"))
    parser.add_argument("logs", nargs="*", type=Path, help="diff: THEIRS OURS")
    parser.add_argument("--out", type=Path, help="record: where to write the log")
    parser.add_argument("--against", type=Path, help="their log: record ours, then diff")
    parser.add_argument("--step", help="only steps whose description contains this")
    parser.add_argument("--all", action="store_true", help="also steps that were cache hits")
    parser.add_argument("--no-files", action="store_true", help="record: no input file lists")
    args = parser.parse_args(argv)

    if args.command == "diff":
        if len(args.logs) != 2:
            parser.error("diff takes two logs: THEIRS OURS")
        print(diff(Log.read(args.logs[0]), Log.read(args.logs[1]), args.step, args.all))
        return 0
    if not pants_args:
        parser.error("give the Pants arguments after `--`, e.g. `-- package models/x::`")
    if args.command == "record":
        if not args.out:
            parser.error("record needs --out FILE")
        return record(args.out.resolve(), pants_args, not args.no_files)
    if not args.against:
        parser.error("say `record`, `diff`, or `--against THEIR_LOG -- <pants args>`")
    theirs = Log.read(args.against)
    with tempfile.TemporaryDirectory() as scratch:
        ours_path = Path(scratch, "ours.jsonl")
        status = record(ours_path, pants_args, not args.no_files)
        if ours_path.exists():
            print(diff(theirs, Log.read(ours_path), args.step, args.all))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
