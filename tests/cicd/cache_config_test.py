"""pants.ci.toml reads and writes, pants.remote-read.toml only reads; both reach the one endpoint
infra/remote-cache/start serves (TLS, instance, port) with a token and a CA, and neither holds a
secret."""

import re
from pathlib import Path

import tomllib

CREDENTIAL_OPTIONS = ("remote_ca_certs_path", "remote_oauth_bearer_token_path")


def start_defaults() -> dict[str, str]:
    text = Path("infra/remote-cache/common.sh").read_text()
    return dict(re.findall(r'^(\w+)="\$\{\w+:-([^}$]*)\}"$', text, re.M))


def instance_name() -> str:
    text = Path("infra/remote-cache/server_config.py").read_text()
    (name,) = re.findall(r'^INSTANCE_NAME = "(\w+)"$', text, re.M)
    return name


def global_section(path: str) -> dict:
    return tomllib.loads(Path(path).read_text())["GLOBAL"]


def check_endpoint(options: dict) -> None:
    defaults = start_defaults()
    assert options["remote_store_address"] == (
        f"grpcs://{defaults['CACHE_NAME']}:{defaults['CACHE_PORT']}"
    )
    assert options["remote_instance_name"] == instance_name()
    assert options["remote_cache_warnings"] == "first_only"
    for option in CREDENTIAL_OPTIONS:
        # A path outside the repository, the same on every machine; never the secret itself.
        assert options[option].startswith("%(homedir)s/.config/ml-monorepo/remote-cache/")
    assert "remote_store_headers" not in options


def test_ci_reads_and_writes_with_its_token() -> None:
    ci = global_section("pants.ci.toml")
    assert ci["remote_cache_read"] is True and ci["remote_cache_write"] is True
    check_endpoint(ci)


def test_developers_only_read() -> None:
    dev = global_section("pants.remote-read.toml")
    assert dev["remote_cache_read"] is True and dev["remote_cache_write"] is False
    check_endpoint(dev)
