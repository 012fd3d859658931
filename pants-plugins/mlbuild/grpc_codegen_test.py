"""The `grpc_python_proto` rules, run for real: grpcio-tools from the repository's python-default
lockfile generates the stubs, and Python dependency inference maps the generated modules."""

import os
from pathlib import Path

import pytest
from pants.backend.python import target_types_rules
from pants.backend.python.dependency_inference import rules as dependency_inference_rules
from pants.backend.python.dependency_inference.rules import (
    InferPythonImportDependencies,
    PythonImportDependenciesInferenceFieldSet,
)
from pants.backend.python.target_types import PythonRequirementTarget, PythonSourceTarget
from pants.backend.python.util_rules import pex
from pants.core.util_rules import source_files, stripped_source_files
from pants.engine.addresses import Address
from pants.engine.rules import QueryRule
from pants.engine.target import (
    GeneratedSources,
    HydratedSources,
    HydrateSourcesRequest,
    InferredDependencies,
)
from pants.testutil.rule_runner import RuleRunner

from mlbuild.grpc_codegen import (
    GeneratePythonFromGrpcProtoRequest,
    GrpcProtoRuntimeFieldSet,
    GrpcProtoSourceField,
    GrpcPythonProtoTarget,
    InferGrpcProtoRuntimeDependencies,
    generated_modules,
)
from mlbuild.grpc_codegen import rules as grpc_codegen_rules

# The real lockfile (a `file` dependency of these tests): grpcio-tools and its pins come from it.
LOCKFILE = Path("3rdparty/python/default.lock")

PROTO = """
syntax = "proto3";
package demo;
service Echo { rpc Say(Words) returns (Words) {} }
message Words { string text = 1; }
"""


def test_generated_module_names() -> None:
    assert generated_modules("serving/proto/open_inference_grpc.proto") == [
        "serving.proto.open_inference_grpc_pb2",
        "serving.proto.open_inference_grpc_pb2_grpc",
    ]


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *grpc_codegen_rules(),
            *pex.rules(),
            *source_files.rules(),
            *stripped_source_files.rules(),
            *target_types_rules.rules(),
            *dependency_inference_rules.rules(),
            QueryRule(HydratedSources, [HydrateSourcesRequest]),
            QueryRule(GeneratedSources, [GeneratePythonFromGrpcProtoRequest]),
            QueryRule(InferredDependencies, [InferPythonImportDependencies]),
            QueryRule(InferredDependencies, [InferGrpcProtoRuntimeDependencies]),
        ],
        target_types=[GrpcPythonProtoTarget, PythonSourceTarget, PythonRequirementTarget],
    )
    runner.set_options(
        [
            "--source-root-patterns=['src']",
            "--python-enable-resolves",
            '--python-resolves={"python-default": "default.lock"}',
            "--python-default-resolve=python-default",
            "--python-interpreter-constraints=['CPython==3.11.*']",
            "--python-invalid-lockfile-behavior=ignore",
            "--python-bootstrap-search-path=['<PATH>', '<PYENV>']",
            "--subprocess-environment-env-vars=['PIP_CONFIG_FILE=/dev/null']",
        ],
        # ./pants's settings (the `pex` tool built from PyPI, the lockfile's WHEELS_DIR, CA bundle)
        # reach this test through the BUILD file's `extra_env_vars`.
        env_inherit={
            "PATH",
            "PYENV_ROOT",
            "HOME",
            *(k for k in os.environ if k.startswith("PANTS_")),
        },
    )
    return runner


def test_generates_stubs_and_infers_dependencies_both_ways(rule_runner) -> None:
    rule_runner.write_files(
        {
            "default.lock": LOCKFILE.read_text(),
            "src/demo/echo.proto": PROTO,
            "src/demo/BUILD": 'grpc_python_proto(name="echo", source="echo.proto")',
            "src/app/main.py": "from demo import echo_pb2, echo_pb2_grpc\n",
            "src/app/BUILD": 'python_source(name="main", source="main.py")',
            "3rdparty/BUILD": (
                'python_requirement(name="grpcio", requirements=["grpcio"])\n'
                'python_requirement(name="protobuf", requirements=["protobuf"])\n'
            ),
        }
    )
    target = rule_runner.get_target(Address("src/demo", target_name="echo"))
    proto = rule_runner.request(
        HydratedSources, [HydrateSourcesRequest(target[GrpcProtoSourceField])]
    )
    generated = rule_runner.request(
        GeneratedSources, [GeneratePythonFromGrpcProtoRequest(proto.snapshot, target)]
    )
    assert set(generated.snapshot.files) == {"src/demo/echo_pb2.py", "src/demo/echo_pb2_grpc.py"}

    main = rule_runner.get_target(Address("src/app", target_name="main"))
    inferred = rule_runner.request(
        InferredDependencies,
        [InferPythonImportDependencies(PythonImportDependenciesInferenceFieldSet.create(main))],
    )
    assert set(inferred.include) == {target.address}

    runtime = rule_runner.request(
        InferredDependencies,
        [InferGrpcProtoRuntimeDependencies(GrpcProtoRuntimeFieldSet.create(target))],
    )
    assert set(runtime.include) == {
        Address("3rdparty", target_name="grpcio"),
        Address("3rdparty", target_name="protobuf"),
    }
