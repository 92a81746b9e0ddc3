"""TLS, mutual TLS and the bearer token, on a real server with certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fraudscore.v1 import scorer_pb2 as pb
from fraudscore.v1 import scorer_pb2_grpc
from scorer.config import TlsConfig
from tests.integration.scorer_support import SERVING, ServerThread, config, source_model, transactions

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A PEM (certificate, key) valid for 127.0.0.1 and localhost; it is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def certs() -> dict[str, tuple[bytes, bytes]]:
    return {"server": self_signed("scorer"), "client": self_signed("analyst-tool"), "stranger": self_signed("x")}


@pytest.fixture(scope="module")
def tx(request: pytest.FixtureRequest) -> pb.Transaction:
    return transactions(Path(request.getfixturevalue("train_csv")), 1)[0]


@pytest.fixture(scope="module")
def mtls_server(request: pytest.FixtureRequest, certs) -> Iterator[ServerThread]:
    cert, key = certs["server"]
    tls = TlsConfig(cert=cert, key=key, client_ca=certs["client"][0])
    server = ServerThread(config(source_model(request), tls=tls, token=TOKEN))
    server.wait_serving()
    yield server
    server.close()


def _score(channel: grpc.Channel, tx: pb.Transaction, metadata: tuple[tuple[str, str], ...] = ()) -> pb.ScoreResponse:
    return scorer_pb2_grpc.FraudScorerStub(channel).Score(
        pb.ScoreRequest(transaction=tx), timeout=10, metadata=metadata
    )


def _tls_channel(target: str, certs, client: str | None) -> grpc.Channel:
    cert, key = certs[client] if client else (None, None)
    creds = grpc.ssl_channel_credentials(root_certificates=certs["server"][0], private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds)


def test_mutual_tls_round_trip_with_token(mtls_server, certs, tx) -> None:
    with _tls_channel(mtls_server.target, certs, "client") as channel:
        reply = _score(channel, tx, (("authorization", f"Bearer {TOKEN}"),))
    assert reply.transaction_id == tx.transaction_id and reply.model_version == 1


@pytest.mark.parametrize("client", [None, "stranger"])
def test_client_without_a_trusted_certificate_is_refused(mtls_server, certs, tx, client) -> None:
    with _tls_channel(mtls_server.target, certs, client) as channel, pytest.raises(grpc.RpcError) as caught:
        _score(channel, tx, (("authorization", f"Bearer {TOKEN}"),))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_cannot_talk_to_a_tls_server(mtls_server, tx) -> None:
    with grpc.insecure_channel(mtls_server.target) as channel, pytest.raises(grpc.RpcError) as caught:
        _score(channel, tx, (("authorization", f"Bearer {TOKEN}"),))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [((), "missing bearer token"), ((("authorization", "Bearer wrong"),), "invalid bearer token")],
)
def test_bad_or_missing_token_is_unauthenticated(mtls_server, certs, tx, metadata, reason) -> None:
    with _tls_channel(mtls_server.target, certs, "client") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            _score(channel, tx, metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == f"authorization: {reason}"
        stream = scorer_pb2_grpc.FraudScorerStub(channel).ScoreStream(
            iter([pb.ScoreRequest(transaction=tx)]), timeout=10
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(stream)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health checks stay open for load balancers.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == SERVING


def test_plain_tls_without_client_certificates(request: pytest.FixtureRequest, certs, tx) -> None:
    cert, key = certs["server"]
    server = ServerThread(config(source_model(request), tls=TlsConfig(cert=cert, key=key)))
    try:
        server.wait_serving()
        with _tls_channel(server.target, certs, None) as channel:
            assert _score(channel, tx).transaction_id == tx.transaction_id
    finally:
        server.close()


@pytest.mark.parametrize("method", ["Score", "ScoreBatch", "ScoreColumns", "GetModelInfo"])
def test_unauthenticated_garbage_is_refused_before_it_is_parsed(mtls_server, certs, method) -> None:
    with _tls_channel(mtls_server.target, certs, "client") as channel:
        # No serializers: the bytes go out as they are (not a valid protobuf message).
        call = channel.unary_unary(f"/fraudscore.v1.FraudScorer/{method}")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff\xff\xff\xff garbage", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == "authorization: missing bearer token"
        stream = channel.stream_stream("/fraudscore.v1.FraudScorer/ScoreStream")
        with pytest.raises(grpc.RpcError) as caught:
            list(stream(iter([b"\x0a\x05abc"]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _list_services(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = stub.ServerReflectionInfo(iter([request]), timeout=10, metadata=metadata)
    return {s.name for s in reply.list_services_response.service}


def test_reflection_is_open_by_default_and_needs_the_token_with_auth_reflection(
    request: pytest.FixtureRequest, mtls_server, certs
) -> None:
    with _tls_channel(mtls_server.target, certs, "client") as channel:
        assert "fraudscore.v1.FraudScorer" in _list_services(channel)  # --token-file alone: reflection open
    server = ServerThread(config(source_model(request), token=TOKEN, auth_reflection=True))
    try:
        with grpc.insecure_channel(server.target) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                _list_services(channel)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "fraudscore.v1.FraudScorer" in _list_services(channel, (("authorization", f"Bearer {TOKEN}"),))
            # Health stays open for probes, token or not.
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    finally:
        server.close()
