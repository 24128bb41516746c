"""--web.config.file: TLS, basic auth and extra headers, in the exporter-toolkit format."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import logging
import re
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.config import ConfigError, first_problem

log = logging.getLogger(__name__)

# The client auth policies of Go's crypto/tls, as exporter-toolkit names them.
CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # exporter-toolkit's old name for RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# exporter-toolkit allows only these in http_server_config.headers.
ALLOWED_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
_BCRYPT_HASH = re.compile(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$")
_CACHE_LIMIT = 256


def bcrypt_cost(hashed: bytes) -> int:
    """The cost (log2 of the rounds) of a `$2b$12$...` hash."""
    return int(hashed.split(b"$")[2])


@functools.lru_cache(maxsize=4)
def dummy_hash(cost: int) -> bytes:
    """A hash of a random password at `cost`, checked against when the user name is unknown,
    so that a wrong name costs as long as a wrong password (made once per cost: at cost 12
    that is a quarter of a second, paid when the web config is loaded)."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(min(max(cost, 4), 31)))


class WebConfigError(ConfigError):
    """An invalid web config: one line naming the file, the field and the problem."""


class TLSServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    # Accepted so that a file shared with Go exporters loads; Python's ssl defaults apply.
    cipher_suites: list[str] | None = None
    curve_preferences: list[str] | None = None
    prefer_server_cipher_suites: bool | None = None
    # Not implemented: refused rather than silently ignored, because it narrows who may connect.
    client_allowed_sans: list[str] | None = None
    cert: str | None = None
    key: str | None = None

    @field_validator("client_auth_type")
    @classmethod
    def _auth_type(cls, value: str) -> str:
        if value == "":
            return "NoClientCert"
        if value not in CLIENT_AUTH_TYPES:
            raise ValueError(f"{value!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"{value!r} is not supported; use TLS12 or TLS13")
        return value

    @field_validator("client_allowed_sans", "cert", "key")
    @classmethod
    def _unsupported(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("is not supported by this exporter; use cert_file / key_file "
                             "and a client CA instead")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        if not self.cert_file:
            raise ValueError("cert_file is required when tls_server_config is set")
        if not self.key_file:
            raise ValueError("key_file is required when tls_server_config is set")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise ValueError(f"min_version {self.min_version} is above max_version "
                             f"{self.max_version}")
        auth = self.client_auth_type
        if self.client_ca_file and auth == "NoClientCert":
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert; "
                             "set client_auth_type to RequireAndVerifyClientCert")
        if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
                    "RequireAnyClientCert", "RequireClientCert") and not self.client_ca_file:
            raise ValueError(f"client_auth_type {auth} needs client_ca_file (Python's ssl "
                             "module verifies every client certificate it asks for)")
        return self


class HTTPServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    headers: dict[str, str] = Field(default_factory=dict)
    http2: bool | None = None  # accepted for compatibility; this server speaks HTTP/1.1

    @field_validator("headers")
    @classmethod
    def _allowed(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {h.lower(): h for h in ALLOWED_HEADERS}
        out = {}
        for name, header_value in value.items():
            if name.lower() not in allowed:
                raise ValueError(f"header {name!r} is not allowed; allowed: "
                                 + ", ".join(ALLOWED_HEADERS))
            if "\r" in header_value or "\n" in header_value:
                raise ValueError(f"header {name!r} contains a line break")
            out[allowed[name.lower()]] = header_value
        return out


class WebConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("tls_server_config", mode="before")
    @classmethod
    def _empty_tls(cls, value: Any) -> Any:
        # exporter-toolkit treats a tls_server_config with no cert, key or CA as "no TLS".
        if isinstance(value, dict) and not any(
            value.get(k) for k in ("cert_file", "key_file", "client_ca_file", "cert", "key",
                                   "client_auth_type")
        ):
            return None
        return value

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        for user, hashed in value.items():
            if ":" in user:
                raise ValueError(f"user name {user!r} contains ':'")
            if not isinstance(hashed, str) or not _BCRYPT_HASH.match(hashed):
                raise ValueError(f"the password of user {user!r} is not a bcrypt hash "
                                 "(generate one with: python -c \"import bcrypt, getpass; "
                                 "print(bcrypt.hashpw(getpass.getpass().encode(), "
                                 "bcrypt.gensalt()).decode())\")")
        return value


class BasicAuth:
    """Checks an Authorization header against bcrypt hashes; remembers passwords that matched.

    A successful check is cached under the SHA-256 of user, hash and password, so a scrape
    every few seconds costs one hash instead of one bcrypt. Failures are never cached.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        # The unknown-user path pays the configured cost. With mixed costs no single dummy
        # matches every user, so take the highest: no real user answers slower than a stranger.
        costs = sorted({bcrypt_cost(hashed) for hashed in self.users.values()})
        self.dummy_hash = dummy_hash(costs[-1]) if costs else b""
        if len(costs) > 1:
            log.warning("basic_auth_users have different bcrypt costs (%s): a wrong password "
                        "for a user of lower cost answers faster than an unknown user name; "
                        "hash every password with the same cost",
                        ", ".join(map(str, costs)))

    def __bool__(self) -> bool:
        return bool(self.users)

    def check(self, header: str | None) -> bool:
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password.encode()))).digest()
        if hashed is not None:
            with self._lock:
                if key in self._verified:
                    return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or self.dummy_hash)
        except ValueError:  # longer than 72 bytes, or a hash bcrypt cannot read
            ok = False
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                if len(self._verified) >= _CACHE_LIMIT:
                    self._verified.clear()
                self._verified.add(key)
        return ok


@dataclass(frozen=True)
class WebConfig:
    """What the HTTP server needs: an SSL context (or None for plain HTTP), users, headers."""

    ssl_context: ssl.SSLContext | None = None
    auth: BasicAuth = field(default_factory=lambda: BasicAuth({}))
    headers: dict[str, str] = field(default_factory=dict)
    origin: str = ""

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WebConfigError(f"{path}: file not found") from None
    except PermissionError:
        raise WebConfigError(f"{path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise WebConfigError(f"{path}: not valid YAML{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise WebConfigError(f"{path}: (top level): expected a mapping of settings")
    return data


def _ssl_context(tls: TLSServerConfig, base: Path, origin: str) -> ssl.SSLContext:
    def resolve(name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else base / path

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    assert tls.cert_file and tls.key_file
    cert, key = resolve(tls.cert_file), resolve(tls.key_file)
    for name, path in (("cert_file", cert), ("key_file", key)):
        if not path.is_file():
            raise WebConfigError(f"{origin}: tls_server_config.{name}: {path}: file not found")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise WebConfigError(
            f"{origin}: tls_server_config.cert_file/key_file: cannot load {cert} with {key}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    auth = tls.client_auth_type
    if auth in ("NoClientCert", "RequestClientCert"):
        # Nobody is refused for the certificate they send, or don't: the same as not asking.
        context.verify_mode = ssl.CERT_NONE
        return context
    assert tls.client_ca_file
    ca = resolve(tls.client_ca_file)
    try:
        context.load_verify_locations(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise WebConfigError(
            f"{origin}: tls_server_config.client_ca_file: cannot load {ca}: "
            f"{getattr(exc, 'reason', None) or exc}"
        ) from None
    context.verify_mode = (
        ssl.CERT_OPTIONAL if auth == "VerifyClientCertIfGiven" else ssl.CERT_REQUIRED
    )
    return context


def load_web_config(path: Path | str | None) -> WebConfig:
    """Read and validate the web config; WebConfigError with one readable line if not.

    Relative file names inside it resolve against the file's own directory, as in
    exporter-toolkit. No file: plain HTTP without authentication.
    """
    if path is None:
        return WebConfig()
    path = Path(path)
    raw = _read_yaml(path)
    try:
        parsed = WebConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise WebConfigError(f"{path}: {first_problem(exc, raw)}") from None
    context = None
    if parsed.tls_server_config is not None:
        tls = parsed.tls_server_config
        context = _ssl_context(tls, path.parent, str(path))
        ignored = [k for k in ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites")
                   if getattr(tls, k) is not None]
        if ignored:
            log.warning("%s: tls_server_config.%s ignored: Python's ssl defaults apply",
                        path, ", ".join(ignored))
    return WebConfig(
        ssl_context=context,
        auth=BasicAuth(parsed.basic_auth_users),
        headers=dict(parsed.http_server_config.headers),
        origin=str(path),
    )
