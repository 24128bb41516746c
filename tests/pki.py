"""Test certificates made with the openssl CLI: a CA, a server cert for 127.0.0.1, a client cert."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .conftest import require_binary


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by a CA the exporter does not trust
    other_client_key: Path


def _run(openssl: str, *args: str, cwd: Path) -> None:
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _ca(openssl: str, directory: Path, name: str) -> None:
    _run(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
         "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _leaf(openssl: str, directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _run(openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _run(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
         cwd=directory)


def make_pki(directory: Path) -> Pki:
    """Everything under `directory`; valid for two days. Skips (fails in CI) without openssl."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    _ca(openssl, directory, "ca")
    _ca(openssl, directory, "rogue-ca")
    _leaf(openssl, directory, "server", "ca",
          "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(openssl, directory, "client", "ca", "extendedKeyUsage=clientAuth\n")
    _leaf(openssl, directory, "rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    return Pki(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_client_cert=directory / "rogue-client.crt",
        other_client_key=directory / "rogue-client.key",
    )
