"""The client against a server with TLS and tokens: a token made through TokenService (with the
bootstrap admin token) runs a Runner over TLS; calls without a token, outside the token's
grants, or after its revocation are refused with the exact codes.

The certificates are made with the ``openssl`` command (a CA and a server certificate for
127.0.0.1).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from conftest import LiveServer, start_server
from eventbus import Client, ListenerSpecBuilder, Notification, Runner, new_event
from eventbus.v1 import token_service_pb2, token_service_pb2_grpc

pytestmark = pytest.mark.integration

ADMIN = "ebt_adminadminadminadminadminadminadmin00"
ORDER_CREATED = "com.example.order.created"
WAIT_TIMEOUT = 20.0


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """Writes ca.pem, cert.pem and key.pem: a CA and a server certificate for 127.0.0.1 it signed."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(directory, "req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1", "-subj", "/CN=ca")
    openssl(directory, "req", *ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=eventbus")
    (directory / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    signed = ["-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "1", "-extfile", "ext"]
    openssl(directory, "x509", "-req", "-in", "server.csr", *signed, "-out", "cert.pem")


@pytest.fixture
def secure_server(server_dir: Path) -> Iterator[LiveServer]:
    make_certificates(server_dir)
    (server_dir / "admin-token").write_text(ADMIN)
    args = [
        *("--tls-cert", str(server_dir / "cert.pem"), "--tls-key", str(server_dir / "key.pem")),
        *("--admin-token-file", str(server_dir / "admin-token"), "--token-cache-seconds", "0"),
    ]
    server = start_server(server_dir, args=args)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_tail()


def code_of(call: Callable[[], object]) -> grpc.StatusCode | None:
    """Runs ``call`` and returns the status code it failed with (``None`` when it succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_runner_over_tls_with_a_token_from_token_service(
    secure_server: LiveServer, server_dir: Path, namespace: str
) -> None:
    ca = (server_dir / "ca.pem").read_bytes()
    address = secure_server.address
    admin_metadata = (("authorization", f"Bearer {ADMIN}"),)
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
    tokens = token_service_pb2_grpc.TokenServiceStub(channel)
    grants = [
        token_service_pb2.Grant(role=role, namespaces=namespace)
        for role in (token_service_pb2.ROLE_LISTENER, token_service_pb2.ROLE_PUBLISHER, token_service_pb2.ROLE_SUBSCRIBER)
    ]
    request = token_service_pb2.CreateTokenRequest(name="python runner", grants=grants)
    created = tokens.CreateToken(request, metadata=admin_metadata, timeout=10)
    assert created.secret.startswith("ebt_")

    with Client(address, root_certificates=ca, token=created.secret, timeout=10) as client:
        listener = client.register_listener(namespace, ListenerSpecBuilder.start("fulfilment").one(ORDER_CREATED))
        client.publish(namespace, [new_event("/shop", ORDER_CREATED, subject="order-1")])
        got: list[Notification] = []
        delivered = threading.Event()

        def handler(note: Notification) -> None:
            got.append(note)
            delivered.set()

        with Runner(client, namespace, "runners", handler):
            assert delivered.wait(WAIT_TIMEOUT), "no notification over TLS within the timeout"
        assert got[0].listener_id == listener.listener.id

        other = f"{namespace}-other"
        denied = code_of(lambda: client.publish(other, [new_event("/shop", ORDER_CREATED)]))
        assert denied == grpc.StatusCode.PERMISSION_DENIED
        revoke = token_service_pb2.RevokeTokenRequest(id=created.token.id)
        tokens.RevokeToken(revoke, metadata=admin_metadata, timeout=10)
        revoked = code_of(lambda: client.publish(namespace, [new_event("/shop", ORDER_CREATED)]))
        assert revoked == grpc.StatusCode.UNAUTHENTICATED

    with Client(address, root_certificates=ca, timeout=10) as anonymous:
        missing = code_of(lambda: anonymous.publish(namespace, [new_event("/shop", ORDER_CREATED)]))
        assert missing == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
