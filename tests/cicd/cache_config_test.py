"""pants.ci.toml writes to CI's endpoint, pants.remote-read.toml only reads from developers';
both name the ports and instance infra/remote-cache/start serves."""

import re
from pathlib import Path

import tomllib


def start_defaults() -> dict[str, str]:
    text = Path("infra/remote-cache/common.sh").read_text()
    values = dict(re.findall(r'^(\w+)="\$\{\w+:-([^}]*)\}"$', text, re.M))
    values.update(re.findall(r'^(\w+)="([^$"]*)"$', text, re.M))
    return values


def global_section(path: str) -> dict:
    return tomllib.loads(Path(path).read_text())["GLOBAL"]


def test_ci_reads_and_writes_on_the_ci_endpoint() -> None:
    ci, defaults = global_section("pants.ci.toml"), start_defaults()
    assert ci["remote_cache_read"] is True and ci["remote_cache_write"] is True
    host, port = defaults["CACHE_HOST"], defaults["CI_PORT"]
    assert ci["remote_store_address"] == f"grpc://{host}:{port}"
    assert ci["remote_instance_name"] == defaults["INSTANCE_NAME"]
    assert ci["remote_cache_warnings"] == "first_only"


def test_developers_only_read_from_the_read_only_endpoint() -> None:
    dev, defaults = global_section("pants.remote-read.toml"), start_defaults()
    assert dev["remote_cache_read"] is True and dev["remote_cache_write"] is False
    host, port = defaults["CACHE_HOST"], defaults["DEV_PORT"]
    assert dev["remote_store_address"] == f"grpc://{host}:{port}"
    assert port != defaults["CI_PORT"]
    assert dev["remote_instance_name"] == defaults["INSTANCE_NAME"]
    assert dev["remote_cache_warnings"] == "first_only"
