"""`pants run` of a model_image: loads the image tar into the local Docker engine and runs it.

Runs inside a PEX with the Docker SDK (from the python-default lock). Publishes the server's port
on 127.0.0.1 (a free host port), prints where the gRPC server is, follows the logs, and on Ctrl-C
stops the container (SIGTERM, like `docker stop`) and removes it. Without an engine it says so.
"""

from __future__ import annotations

import json
import os
import sys

import docker  # pants: no-infer-dep


def main(argv: list[str]) -> int:
    tar, summary_path, dist_tar, *server_args = argv
    with open(summary_path) as f:
        summary = json.load(f)
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        print(
            f"No Docker engine answers at {where} ({e}).\n"
            'Start one with `export DOCKER_HOST="$(infra/docker/start-dockerd.sh)"`, or use the '
            f"image from `pants package`: `docker load -i dist/{dist_tar}`, "
            f"`podman run oci-archive:dist/{dist_tar}`.",
            file=sys.stderr,
        )
        return 1
    with open(tar, "rb") as f:
        client.images.load(f.read())
    ports = summary["ports"]
    container = client.containers.run(
        summary["reference"],
        command=["--model-dir", f"/models/{summary['model']}", *server_args]
        if server_args
        else None,
        detach=True,
        ports={f"{port}/tcp": ("127.0.0.1", None) for port in ports},
    )
    container.reload()
    published = {
        port: container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        for port in ports
    }
    print(f"Running {summary['reference']} ({summary['digest']}) as container {container.short_id}")
    for port, host_port in published.items():
        print(f"gRPC port: 127.0.0.1:{host_port} (container port {port})", flush=True)
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("Stopping the container (SIGTERM)...", flush=True)
        container.stop(timeout=20)
    finally:
        status = container.wait()["StatusCode"]
        container.remove(force=True)
    print(f"Container exited with status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
