"""The user's client settings: ``$XDG_CONFIG_HOME/nasname/client.toml`` (default ``~/.config``), written
by ``nasname login`` with mode 0600 (it holds an API token), read by every client command.

    address = "10.0.0.5:50051"
    token = "nsk_..."
    ca = "/home/clerk/.config/nasname/server-ca.pem"   # a copy of the server's certificate / CA
    tls_server_name = "nasname.camp-a"                 # optional: the name the certificate carries
    plaintext = "true"                                 # only for a loopback development server

Precedence for each value: command-line option, then environment (``NASNAME_ADDRESS``,
``NASNAME_TOKEN``), then this file, then the defaults. ``NASNAME_CLIENT_CONFIG`` names another file.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import ConfigurationError
from engine.fsutil import write_atomic

__all__ = ["ClientSettings", "config_dir", "config_path", "load", "save", "store_ca"]

KEYS = ("address", "token", "ca", "tls_server_name", "plaintext")


@dataclass(frozen=True)
class ClientSettings:
    address: str = ""
    token: str = ""
    ca: str = ""
    tls_server_name: str = ""
    plaintext: str = ""  # "true": the stored address speaks plaintext (loopback development servers)


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nasname"


def config_path() -> Path:
    explicit = os.environ.get("NASNAME_CLIENT_CONFIG")
    return Path(explicit) if explicit else config_dir() / "client.toml"


def load(path: Path | None = None) -> ClientSettings:
    """The stored settings (empty when there is no file yet)."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClientSettings()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read the client settings {path}: {exc}; run `nasname login` "
                                 "again to rewrite them", reason="CLIENT_CONFIG") from exc
    unknown = set(data) - set(KEYS)
    if unknown:
        raise ConfigurationError(f"unknown client setting(s) {', '.join(sorted(unknown))} in {path}",
                                 reason="CLIENT_CONFIG")
    return ClientSettings(**{k: str(v) for k, v in data.items()})


def save(settings: ClientSettings, path: Path | None = None) -> Path:
    """Write the file with mode 0600 (the directory 0700), replacing it atomically."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON strings are valid TOML basic strings (same escapes)
    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in asdict(settings).items() if v)
    write_atomic(path, text.encode("utf-8"))  # a mkstemp file: mode 0600 from the start
    os.chmod(path, 0o600)
    return path


def store_ca(pem: bytes) -> Path:
    """Keep a copy of the server's certificate / CA beside the settings (it outlives shells and data
    directories); returns its path."""
    path = config_dir() / "server-ca.pem"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, pem)
    return path
