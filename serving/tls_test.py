from __future__ import annotations

import datetime
import ipaddress

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from serving.fixtures import write_artifact
from serving.proto import open_inference_grpc_pb2 as pb
from serving.server import FRONTENDS, ServerConfig
from serving.testsupport import decode_outputs, raw_request, running_server, stub


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp_path / "tls.crt", tmp_path / "tls.key", cert_pem


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_tls_round_trip_and_plaintext_refused(tmp_path, frontend):
    cert, key, cert_pem = self_signed(tmp_path)
    model = write_artifact(tmp_path / "m")
    config = ServerConfig(
        model_dirs=(str(model),), port=0, tls_cert=str(cert), tls_key=str(key), frontend=frontend
    )
    with running_server(config) as server:
        client, channel = stub(
            server.port, grpc.ssl_channel_credentials(root_certificates=cert_pem)
        )
        assert client.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        x = np.ones((2, 1, 8, 8), np.float32)
        got = decode_outputs(client.ModelInfer(raw_request("fixture_digits", x), timeout=10))
        assert got["predicted_class"].shape == (2,)
        channel.close()

        plain, plain_channel = stub(server.port)
        with pytest.raises(grpc.RpcError) as e:
            plain.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        plain_channel.close()
