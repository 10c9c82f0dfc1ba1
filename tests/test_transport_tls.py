"""The HTTP transport verifies the server's certificate: a network attacker on the path who
answers with a certificate no trusted authority signed gets no request body.

The transports share one verifying TLS context (building one loads the CA bundle); this
checks that sharing it kept verification on, against a real TLS server on loopback.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from blindmatch.client import HttpTransport, ServerUnreachableError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Recorder(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def impostor(tmp_path: Path) -> Iterator[str]:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = HTTPServer(("127.0.0.1", 0), _Recorder)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Recorder.bodies = []
    try:
        yield f"https://localhost:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_an_unsigned_certificate_is_refused_before_any_body_is_sent(impostor: str) -> None:
    for _ in range(2):  # the second transport reuses the shared context
        t = HttpTransport(impostor, "plain", timeout=10)
        with pytest.raises(ServerUnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
            t.post("query", b"secret hash bytes")
        t.close()
    assert _Recorder.bodies == []
