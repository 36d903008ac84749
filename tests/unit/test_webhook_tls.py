"""An https webhook goes to the address the guard checked, yet the certificate is still
verified against the URL's host name (TLS server name and Host header kept)."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tidegate.adapters.webhook_http import post


def _cert(tmp_path: Path, host: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[int, Path, dict[str, str]]]:
    seen: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            seen["host"] = self.headers["Host"]
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 100_000)  # only the first 4 KiB are read

        def log_message(self, *args: object) -> None:
            pass

    cert, key = _cert(tmp_path, "localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert, seen
    server.shutdown()
    server.server_close()


def test_https_is_pinned_to_the_checked_address_and_verified_by_name(https_server,
                                                                     tmp_path: Path) -> None:
    port, cert, seen = https_server
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
        answer = post(client, f"https://localhost:{port}/hook", b"{}", {}, allow_http=False,
                      allow_private=True)
    assert answer.status == 200 and seen["host"] == f"localhost:{port}"
    assert len(answer.body) == 4096
    other, _ = _cert(tmp_path, "elsewhere.example")
    with httpx.Client(verify=ssl.create_default_context(cafile=str(other))) as client, \
            pytest.raises(httpx.ConnectError):
        post(client, f"https://localhost:{port}/hook", b"{}", {}, allow_http=False,
             allow_private=True)
