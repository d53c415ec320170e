"""The worker's TLS port (snakepit_bridge.server.app.TlsFiles): a client that
trusts the CA and shows a client certificate is served; one without the
certificate, or trusting another CA, is refused."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import grpc
import pytest
from bridge_harness import TOKEN, bearer

from snakepit_bridge.proto import snakepit_bridge_pb2 as pb
from snakepit_bridge.proto import snakepit_bridge_pb2_grpc as pb_grpc
from snakepit_bridge.server.app import TlsFiles, start_server

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", *EC, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"),
        "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _leaf(d: Path, name: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\n{ext}\n")
    _openssl(
        "req", *EC, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
        "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{name}.pem"),
        "-days", "2", "-extfile", str(d / f"{name}.ext"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _ca(d, "other_ca")
    _leaf(d, "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    _leaf(d, "client", "extendedKeyUsage=clientAuth")
    return d


async def _ping(port: int, d: Path, ca: str, client: bool) -> str:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(d / f"{ca}.pem").read_bytes(),
        private_key=(d / "client.key").read_bytes() if client else None,
        certificate_chain=(d / "client.pem").read_bytes() if client else None,
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        reply = await stub.Ping(pb.PingRequest(message="t"), metadata=bearer(), timeout=5)
        return reply.message


def test_mutual_tls_serves_only_clients_with_a_certificate_from_the_ca(certs: Path) -> None:
    tls = TlsFiles(
        (certs / "server.pem").read_bytes(),
        (certs / "server.key").read_bytes(),
        (certs / "ca.pem").read_bytes(),
    )

    async def main() -> None:
        server, port, _ = await start_server(token=TOKEN, tls=tls)
        try:
            assert await _ping(port, certs, "ca", client=True) == "pong: t"
            for ca, client in (("ca", False), ("other_ca", True)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await _ping(port, certs, ca, client)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(0)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_plain_text_client_gets_nothing_from_a_tls_port(certs: Path) -> None:
    tls = TlsFiles((certs / "server.pem").read_bytes(), (certs / "server.key").read_bytes())

    async def main() -> None:
        server, port, _ = await start_server(token=TOKEN, tls=tls)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.BridgeServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Ping(pb.PingRequest(message="t"), metadata=bearer(), timeout=3)
        finally:
            await server.stop(0)

    asyncio.run(asyncio.wait_for(main(), 30))
