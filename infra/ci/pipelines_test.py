"""The three CI pipelines (GitHub Actions, GitLab CI, Jenkins) do the same thing:

- run `./pants --pants-config-files=pants.ci.toml --changed-since=<base>
  --changed-dependents=transitive` with the goals lint, test and package;
- take <base> from infra/ci/changed-base, given the target branch on a merge/pull request;
- deploy only from main, with infra/ci/deploy-changed (publish, verify, deploy the changed
  images), given the registry's credentials and the signing key as secret files.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from infra.ci.git_testing import git

CI = Path("infra/ci")
GOALS = {"lint", "test", "package"}
DEPLOY_COMMAND = "infra/ci/deploy-changed"


@dataclass(frozen=True)
class PantsCall:
    options: dict[str, str]
    goals: tuple[str, ...]


def pants_calls(script: str) -> list[PantsCall]:
    """Every `./pants ...` command in a shell script (one command per line or YAML scalar)."""
    # `${{ expr }}` (GitHub) holds spaces; make each one a single shell word.
    script = re.sub(
        r"\$\{\{\s*(.*?)\s*\}\}", lambda m: "${{" + m[1].replace(" ", "") + "}}", script
    )
    calls = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if "./pants" not in words:
            continue
        args = words[words.index("./pants") + 1 :]
        options = dict(a[2:].partition("=")[::2] for a in args if a.startswith("--"))
        calls.append(PantsCall(options, tuple(a for a in args if not a.startswith("-"))))
    return calls


def assert_changed_pants_calls(script: str, base: str) -> set[str]:
    """Every Pants call in `script` uses CI's config and the changed targets since `base`;
    returns the goals they run."""
    calls = pants_calls(script)
    assert calls, f"no ./pants call in:\n{script}"
    for call in calls:
        assert call.options.get("pants-config-files") == "pants.ci.toml", call
        assert call.options.get("changed-since") == base, call
        assert call.options.get("changed-dependents") == "transitive", call
    return {goal for call in calls for goal in call.goals}


def as_script(commands: str | list[str]) -> str:
    return commands if isinstance(commands, str) else "\n".join(commands)


# ---------------------------------------------------------------------------------- GitHub

# GitHub runs workflows from .github/workflows/ only.
GITHUB_WORKFLOW = Path(".github/workflows/ci.yml")


def test_github_actions() -> None:
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"] == {"branches": ["main"]}

    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    steps = {step.get("id"): step for step in build["steps"]}
    checkout = build["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    base_step = steps["base"]
    assert base_step["env"]["TARGET_BRANCH"] == "${{ github.base_ref }}"  # empty on a push
    assert "infra/ci/changed-base $TARGET_BRANCH" in base_step["run"]
    build_script = as_script([step["run"] for step in build["steps"] if "run" in step])
    assert assert_changed_pants_calls(build_script, "${{steps.base.outputs.base}}") == GOALS
    assert DEPLOY_COMMAND not in build_script

    assert deploy["needs"] == "build"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    deploy_script = as_script([step["run"] for step in deploy["steps"] if "run" in step])
    assert DEPLOY_COMMAND in deploy_script and "pants.ci.toml" in deploy_script
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


def test_gitlab_ci() -> None:
    pipeline = yaml.safe_load(Path(".gitlab-ci.yml").read_text())
    assert pipeline["stages"] == ["build", "test", "deploy"]
    assert pipeline["variables"]["GIT_DEPTH"] == 0
    before = as_script(pipeline["default"]["before_script"])
    assert 'BASE="$(infra/ci/changed-base $CI_MERGE_REQUEST_TARGET_BRANCH_NAME)"' in before

    jobs = {
        name: job for name, job in pipeline.items() if isinstance(job, dict) and "script" in job
    }
    assert {name: job["stage"] for name, job in jobs.items()} == {
        "build": "build",
        "test": "test",
        "metrics-diff": "test",
        "deploy": "deploy",
    }
    goals = set()
    for name in ("build", "test"):
        script = as_script(jobs[name]["script"])
        goals |= assert_changed_pants_calls(script, "$BASE")
        assert DEPLOY_COMMAND not in script and "rules" not in jobs[name]
    assert goals == GOALS

    deploy = jobs["deploy"]
    assert DEPLOY_COMMAND in as_script(deploy["script"])
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


def test_jenkinsfile() -> None:
    text = (CI / "Jenkinsfile").read_text()
    assert re.match(r"(\s*//[^\n]*\n)*\s*pipeline\s*\{", text), "not a declarative pipeline"
    stages = jenkins_blocks(text, "stage")
    assert list(stages) == [
        "Compare against",
        "Lint, test and package what changed",
        "Metrics diff",
        "Deploy",
    ]

    assert jenkins_shell(stages["Compare against"]) == ["infra/ci/changed-base ${CHANGE_TARGET:-}"]
    assert "env.BASE = sh(returnStdout: true" in stages["Compare against"]

    build = "\n".join(jenkins_shell(stages["Lint, test and package what changed"]))
    assert assert_changed_pants_calls(build, "$BASE") == GOALS

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
    [step] = [s for s in workflow["jobs"]["build"]["steps"] if METRICS_DIFF in s.get("run", "")]
    assert step["if"] == "github.event_name == 'pull_request'"
    assert f"{METRICS_DIFF} ${{{{ steps.base.outputs.base }}}}" in step["run"]
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
