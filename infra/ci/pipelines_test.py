"""The three CI pipelines (GitHub Actions, GitLab CI, Jenkins) fan out the same way:

- plan: `infra/ci/shard-plan plan` with CI's config, `--since=<base>` (<base> from
  infra/ci/changed-base) and the recorded costs carried over from earlier pipelines;
- build: for every runner class of infra/ci/runner-classes.json, one job per shard K/N (K from 0)
  on a runner with the class's labels, running `shard-plan run <plan> <class> K/N -- ./pants
  --pants-config-files=pants.ci.toml package` (nothing else: the plan chose the targets);
- test: `./pants ... --changed-since=<base> --changed-dependents=transitive test --shard=K/N` for
  every K of one N, each followed by `shard-plan check-no-training`; lint of what changed;
- assemble, after the tests: the unsharded `package` of what changed, `check-no-training`, then
  `record-costs` into the carried-over directory;
- deploy only from main, after assemble, with infra/ci/deploy-changed (publish, verify, deploy the
  changed images), given the registry's credentials and the signing key as secret files.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.ci.git_testing import git

CI = Path("infra/ci")
DEPLOY_COMMAND = "infra/ci/deploy-changed"
SHARD_PLAN = "infra/ci/shard-plan"
CHECK_NO_TRAINING = f"{SHARD_PLAN} check-no-training dist/execution-log.jsonl"
RECORD_COSTS = f"{SHARD_PLAN} record-costs dist .model-costs"
RUNNER_CLASSES = json.loads((CI / "runner-classes.json").read_text())["classes"]


def expected_build_shards() -> dict[tuple[str, str], set[str]]:
    """(runner class, K/N) -> the labels its runner must have, for every shard of every class."""
    return {
        (name, f"{k}/{spec['shards']}"): set(spec["labels"])
        for name, spec in RUNNER_CLASSES.items()
        for k in range(spec["shards"])
    }


@dataclass(frozen=True)
class PantsCall:
    options: dict[str, str]
    goals: tuple[str, ...]


@dataclass(frozen=True)
class ShardRun:
    plan: str
    runner_class: str
    shard: str
    pants: PantsCall


def _words(script: str) -> list[list[str]]:
    # `${{ expr }}` (GitHub) holds spaces; make each one a single shell word.
    script = re.sub(
        r"\$\{\{\s*(.*?)\s*\}\}", lambda m: "${{" + m[1].replace(" ", "") + "}}", script
    )
    return [shlex.split(line, comments=True) for line in script.replace("\\\n", " ").splitlines()]


def _pants_call(args: list[str]) -> PantsCall:
    options = dict(a[2:].partition("=")[::2] for a in args if a.startswith("--"))
    return PantsCall(options, tuple(a for a in args if not a.startswith("-")))


def pants_calls(script: str) -> list[PantsCall]:
    """Every direct `./pants ...` command in a shell script (one command per line or YAML scalar);
    not those that `shard-plan run` starts."""
    return [
        _pants_call(words[words.index("./pants") + 1 :])
        for words in _words(script)
        if "./pants" in words and SHARD_PLAN not in words
    ]


def shard_runs(script: str) -> list[ShardRun]:
    """Every `infra/ci/shard-plan run PLAN CLASS K/N -- ./pants ...` in a shell script."""
    runs = []
    for words in _words(script):
        if words[:2] != [SHARD_PLAN, "run"]:
            continue
        plan, runner_class, shard, separator, pants, *args = words[2:]
        assert (separator, pants) == ("--", "./pants"), words
        runs.append(ShardRun(plan, runner_class, shard, _pants_call(args)))
    return runs


def assert_changed_pants_calls(script: str, base: str) -> set[str]:
    """Every direct Pants call in `script` uses CI's config and the changed targets since `base`;
    returns the goals they run."""
    calls = pants_calls(script)
    assert calls, f"no ./pants call in:\n{script}"
    for call in calls:
        assert call.options.get("pants-config-files") == "pants.ci.toml", call
        assert call.options.get("changed-since") == base, call
        assert call.options.get("changed-dependents") == "transitive", call
    return {goal for call in calls for goal in call.goals}


def assert_plans(script: str, base: str) -> None:
    [command] = [w for w in _words(script) if w[:2] == [SHARD_PLAN, "plan"]]
    assert f"--since={base}" in command and "--pants-config-files=pants.ci.toml" in command
    assert "--costs=.model-costs" in command


def assert_builds_one_shard(script: str) -> tuple[str, str]:
    """The job packages exactly one shard of the plan, and does nothing else with Pants."""
    [run] = shard_runs(script)
    assert run.pants == PantsCall({"pants-config-files": "pants.ci.toml"}, ("package",)), run
    assert pants_calls(script) == [], "a build shard must only package its own targets"
    return run.runner_class, run.shard


def assert_tests_one_shard(script: str, base: str) -> str:
    """The job tests one `--shard` of the changed targets, then checks that nothing trained."""
    [call] = pants_calls(script)
    assert assert_changed_pants_calls(script, base) == {"test"}
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    assert lines.index(CHECK_NO_TRAINING) > next(i for i, x in enumerate(lines) if "./pants" in x)
    return call.options["shard"]


def assert_assembles(script: str, base: str) -> None:
    assert assert_changed_pants_calls(script, base) == {"package"}
    lines = [line.strip() for line in script.splitlines() if line.strip()]
    pants = next(i for i, x in enumerate(lines) if "./pants" in x)
    assert pants < lines.index(CHECK_NO_TRAINING) < lines.index(RECORD_COSTS)


def as_script(commands: str | list[str]) -> str:
    return commands if isinstance(commands, str) else "\n".join(commands)


# ---------------------------------------------------------------------------------- GitHub

# GitHub runs workflows from .github/workflows/ only.
GITHUB_WORKFLOW = Path(".github/workflows/ci.yml")
GITHUB_BASE = "${{needs.plan.outputs.base}}"


def _github_script(job: dict, **matrix: str) -> str:
    script = as_script([step["run"] for step in job["steps"] if "run" in step])
    for key, value in matrix.items():
        script = re.sub(rf"\$\{{\{{\s*matrix\.{key}\s*\}}\}}", value, script)
    return script


def test_github_actions() -> None:
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"] == {"branches": ["main"]}
    jobs = workflow["jobs"]
    assert {name: job.get("needs") for name, job in jobs.items()} == {
        "plan": None,
        "build": "plan",
        "test": ["plan", "build"],
        "lint": "plan",
        "assemble": ["plan", "test", "lint"],
        "deploy": ["plan", "assemble"],
    }

    plan = jobs["plan"]
    steps = {step.get("id"): step for step in plan["steps"]}
    checkout = plan["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    assert steps["base"]["env"]["TARGET_BRANCH"] == "${{ github.base_ref }}"  # empty on a push
    assert "infra/ci/changed-base $TARGET_BRANCH" in steps["base"]["run"]
    assert plan["outputs"]["base"] == "${{ steps.base.outputs.base }}"
    assert_plans(_github_script(plan), "${{steps.base.outputs.base}}")

    build = jobs["build"]
    assert build["runs-on"] == "${{ matrix.labels }}"
    built = {}
    for entry in build["strategy"]["matrix"]["include"]:
        script = _github_script(build, runner_class=entry["runner_class"], shard=entry["shard"])
        built[assert_builds_one_shard(script)] = entry["labels"]
    assert set(built) == set(expected_build_shards())
    for shard, labels in expected_build_shards().items():
        assert labels <= set(built[shard]), (shard, built[shard])

    test = jobs["test"]
    shards = {
        assert_tests_one_shard(_github_script(test, shard=shard), GITHUB_BASE)
        for shard in test["strategy"]["matrix"]["shard"]
    }
    count = len(test["strategy"]["matrix"]["shard"])
    assert shards == {f"{k}/{count}" for k in range(count)}
    assert assert_changed_pants_calls(_github_script(jobs["lint"]), GITHUB_BASE) == {"lint"}
    assert_assembles(_github_script(jobs["assemble"]), GITHUB_BASE)
    for name in ("plan", "build", "test", "lint", "assemble"):
        assert DEPLOY_COMMAND not in _github_script(jobs[name])

    deploy = jobs["deploy"]
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    deploy_script = _github_script(deploy)
    assert DEPLOY_COMMAND in deploy_script and "pants.ci.toml" in deploy_script
    assert "--since=${{ needs.plan.outputs.base }}" in deploy_script
    [deploy_step] = [step for step in deploy["steps"] if DEPLOY_COMMAND in step.get("run", "")]
    assert deploy_step["env"]["SIGNING_KEY_PEM"] == "${{ secrets.PROVENANCE_SIGNING_KEY }}"
    assert deploy_step["env"]["REGISTRY_AUTH_JSON"] == "${{ secrets.REGISTRY_AUTH_JSON }}"
    assert "PANTS_OCI_REGISTRY" in deploy_step["env"]
    # The secrets become files (umask 077) before the deploy command runs.
    run = deploy_step["run"]
    assert (
        run.index("umask 077")
        < run.index('> "$PROVENANCE_SIGNING_KEY"')
        < run.index(DEPLOY_COMMAND)
    )


# ---------------------------------------------------------------------------------- GitLab

GITLAB_SHARD = '"$((${CI_NODE_INDEX:-1} - 1))/${CI_NODE_TOTAL:-1}"'


def _gitlab_nodes(job: dict) -> list[str]:
    """The job's script as each of its `parallel:` copies runs it (GitLab counts from 1)."""
    count = job.get("parallel", 1)
    script = as_script(job["script"])
    return [script.replace(GITLAB_SHARD, f"{k}/{count}") for k in range(count)]


def test_gitlab_ci() -> None:
    pipeline = yaml.safe_load(Path(".gitlab-ci.yml").read_text())
    assert pipeline["stages"] == ["build", "test", "deploy"]
    assert pipeline["variables"]["GIT_DEPTH"] == 0
    before = as_script(pipeline["default"]["before_script"])
    assert 'BASE="$(infra/ci/changed-base $CI_MERGE_REQUEST_TARGET_BRANCH_NAME)"' in before

    jobs = {
        name: job for name, job in pipeline.items() if isinstance(job, dict) and "script" in job
    }
    builds = {name for name in jobs if name.startswith("build-")}
    assert {name: job["stage"] for name, job in jobs.items()} == {
        "plan": ".pre",
        **{name: "build" for name in builds},
        "test": "test",
        "lint": "test",
        "metrics-diff": "test",
        "assemble": "deploy",
        "deploy": "deploy",
    }
    script = as_script(jobs["plan"]["script"])
    assert_plans(script.replace('"$BASE"', "$BASE"), "$BASE")
    assert jobs["plan"]["cache"] == {
        "key": "model-costs",
        "paths": [".model-costs/"],
        "policy": "pull",
    }
    assert jobs["plan"]["artifacts"]["paths"] == ["dist/shard-plan.json"]

    built = {}
    for name in builds:
        assert jobs[name]["needs"] == ["plan"]
        for node in _gitlab_nodes(jobs[name]):
            built[
                assert_builds_one_shard(node.replace('"$SHARD_PLAN"', "dist/shard-plan.json"))
            ] = jobs[name]["tags"]
    assert set(built) == set(expected_build_shards())
    for shard, labels in expected_build_shards().items():
        assert labels <= set(built[shard]), (shard, built[shard])

    nodes = _gitlab_nodes(jobs["test"])
    assert {assert_tests_one_shard(node, "$BASE") for node in nodes} == {
        f"{k}/{len(nodes)}" for k in range(len(nodes))
    }
    assert assert_changed_pants_calls(as_script(jobs["lint"]["script"]), "$BASE") == {"lint"}
    assemble = jobs["assemble"]
    assert_assembles(as_script(assemble["script"]), "$BASE")
    assert assemble["cache"]["policy"] == "pull-push" and "needs" not in assemble
    for name, job in jobs.items():
        assert (DEPLOY_COMMAND in as_script(job["script"])) == (name == "deploy"), name

    deploy = jobs["deploy"]
    assert deploy["needs"] == ["assemble"]
    assert deploy["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == "main" && $CI_PIPELINE_SOURCE != "merge_request_event"'}
    ]


# ---------------------------------------------------------------------------------- Jenkins


def jenkins_blocks(text: str, keyword: str) -> dict[str, str]:
    """`keyword('name') { body }` (or `keyword { body }`: name "") -> {name: body}, matching braces
    outside string literals and comments (enough of Groovy for a declarative Jenkinsfile)."""
    blocks = {}
    for match in re.finditer(rf"\b{keyword}\s*(?:\(\s*'([^']*)'\s*\))?\s*\{{", text):
        depth, i, quote = 1, match.end(), None
        while depth:
            c = text[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif text.startswith("//", i):
                i = text.index("\n", i)
            elif c in "{}":
                depth += 1 if c == "{" else -1
            i += 1
        blocks[match[1] or ""] = text[match.end() : i - 1]
    return blocks


def jenkins_shell(body: str) -> list[str]:
    """The shell commands of `sh '...'` steps and `sh(script: '...')` calls."""
    return re.findall(r"\bsh\s*(?:\(.*?script:\s*)?'((?:[^'\\]|\\.)*)'", body)


def jenkins_label(body: str) -> str:
    [label] = re.findall(r"agent\s*\{\s*label\s+'([^']*)'\s*\}", body)
    return label


def test_jenkinsfile() -> None:
    text = (CI / "Jenkinsfile").read_text()
    assert re.match(r"(\s*//[^\n]*\n)*\s*pipeline\s*\{", text), "not a declarative pipeline"
    stages = jenkins_blocks(text, "stage")
    top = [
        "Compare against",
        "Plan the shards",
        "Build shards",
        "Test shards and lint",
        "Metrics diff",
        "Assemble",
        "Deploy",
    ]
    assert [name for name in stages if name in top] == top

    assert jenkins_shell(stages["Compare against"]) == ["infra/ci/changed-base ${CHANGE_TARGET:-}"]
    assert "env.BASE = sh(returnStdout: true" in stages["Compare against"]
    assert_plans("\n".join(jenkins_shell(stages["Plan the shards"])), "$BASE")

    build_stages = jenkins_blocks(jenkins_blocks(stages["Build shards"], "parallel")[""], "stage")
    built = {}
    for body in build_stages.values():
        assert "unstash 'shard-plan'" in body
        built[assert_builds_one_shard("\n".join(jenkins_shell(body)))] = {jenkins_label(body)}
    assert built == expected_build_shards()

    test_stages = jenkins_blocks(
        jenkins_blocks(stages["Test shards and lint"], "parallel")[""], "stage"
    )
    lint = test_stages.pop("lint")
    assert assert_changed_pants_calls("\n".join(jenkins_shell(lint)), "$BASE") == {"lint"}
    shards = {
        assert_tests_one_shard("\n".join(jenkins_shell(b)), "$BASE") for b in test_stages.values()
    }
    assert shards == {f"{k}/{len(shards)}" for k in range(len(shards))}
    assert_assembles("\n".join(jenkins_shell(stages["Assemble"])), "$BASE")

    deploy = stages["Deploy"]
    when = jenkins_blocks(deploy, "when")
    assert list(when) == [""], "the Deploy stage needs one `when`"
    assert re.findall(r"\b(branch\s+'[^']*'|not\s*\{\s*changeRequest\(\)\s*\})", when[""]) == [
        "branch 'main'",
        "not { changeRequest() }",
    ]
    assert [cmd.split()[0] for cmd in jenkins_shell(deploy)] == [DEPLOY_COMMAND]
    [credentials] = re.findall(r"withCredentials\(\[(.*?)\]\)", deploy, re.S)
    assert re.findall(r"variable: '(\w+)'", credentials) == [
        "REGISTRY_AUTH_FILE",
        "PROVENANCE_SIGNING_KEY",
    ]
    assert all(DEPLOY_COMMAND not in body for name, body in stages.items() if name != "Deploy")


# ---------------------------------------------------------------------------- metrics diff

METRICS_DIFF = "infra/ci/metrics-diff --pants-config-files=pants.ci.toml"


def test_every_pipeline_runs_the_metrics_diff_on_merge_requests_only() -> None:
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    [step] = [s for s in workflow["jobs"]["lint"]["steps"] if METRICS_DIFF in s.get("run", "")]
    assert step["if"] == "github.event_name == 'pull_request'"
    assert f"{METRICS_DIFF} ${{{{ needs.plan.outputs.base }}}}" in step["run"]
    assert "post-metrics-diff github" in step["run"]

    job = yaml.safe_load(Path(".gitlab-ci.yml").read_text())["metrics-diff"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert as_script(job["script"]).startswith(f'{METRICS_DIFF} "$BASE"')
    assert "post-metrics-diff gitlab" in as_script(job["script"])

    stage = jenkins_blocks((CI / "Jenkinsfile").read_text(), "stage")["Metrics diff"]
    assert re.search(r"when\s*\{\s*changeRequest\(\)\s*\}", stage)
    assert jenkins_shell(stage) == [f'{METRICS_DIFF} "$BASE"']
    assert "currentBuild.description = readFile('dist/metrics-diff/metrics-diff.md')" in stage


def test_jenkins_parser_skips_braces_in_strings_and_comments() -> None:
    text = "stage('a') { sh 'echo }' // }\n x { } }\nstage('b') { sh(script: 'y {') }"
    assert jenkins_blocks(text, "stage") == {
        "a": " sh 'echo }' // }\n x { } ",
        "b": " sh(script: 'y {') ",
    }
    assert jenkins_shell(text) == ["echo }", "y {"]
    assert jenkins_blocks("when { branch 'x' }", "when") == {"": " branch 'x' "}


# ---------------------------------------------------------------------------------- the base


@pytest.fixture
def forked_repo(tmp_path: Path) -> tuple[Path, str]:
    """main: c1 - c2; feature (checked out): c1 - f1 - f2. Returns (repo, c1)."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "f").write_text("c1")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "c1")
    fork = git(tmp_path, "rev-parse", "HEAD")
    git(tmp_path, "branch", "feature")
    for branch, commits in (("main", ["c2"]), ("feature", ["f1", "f2"])):
        git(tmp_path, "checkout", "-q", branch)
        for n in commits:
            (tmp_path / "f").write_text(n)
            git(tmp_path, "commit", "-qam", n)
    return tmp_path, fork


def changed_base(repo: Path, *args: str) -> str:
    script = Path.cwd() / CI / "changed-base"
    return subprocess.run(
        [str(script), *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_changed_base_on_a_merge_request_is_the_merge_base(forked_repo) -> None:
    repo, fork = forked_repo
    assert changed_base(repo, "main") == fork
    # On CI the target branch is usually only a remote-tracking ref.
    clone = repo.parent / "clone"
    git(repo.parent, "clone", "-q", "--branch", "feature", str(repo), str(clone))
    assert changed_base(clone, "main") == fork


def test_changed_base_on_main_is_the_previous_commit(forked_repo) -> None:
    repo, _ = forked_repo
    git(repo, "checkout", "-q", "main")
    assert changed_base(repo) == git(repo, "rev-parse", "HEAD~1")
    assert changed_base(repo, "") == git(repo, "rev-parse", "HEAD~1")


def test_changed_base_of_a_first_commit_is_the_empty_tree(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "first")
    assert changed_base(tmp_path) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
