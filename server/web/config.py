"""Console settings: the ``[web]`` section of the nasname TOML file plus ``NASNAME_WEB_*`` overrides.

    [web]                        # every key optional; defaults below
    enabled = true               # serve the console beside the gRPC service
    address = "127.0.0.1:8443"   # its own port, loopback by default; HTTPS with the gRPC certificate
    idle_timeout_s = 900         # a session unused this long is logged out
    login_failures = 5           # failed logins allowed per username and per client address ...
    login_window_s = 300         # ... within this window; beyond it, logins are refused until it passes
    two_person_same = false      # a "same" decision (which erases biometrics) needs a second adjudicator
                                 # (a different account); "distinct" erases nothing and is final at once
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import settings_kwargs
from engine.errors import ConfigurationError
from server.config import section_values, split_address

__all__ = ["WebConfig"]


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = True
    address: str = "127.0.0.1:8443"
    idle_timeout_s: float = 900.0
    login_failures: int = 5
    login_window_s: float = 300.0
    two_person_same: bool = False

    def __post_init__(self) -> None:
        split_address(self.address)
        if self.idle_timeout_s <= 0 or self.login_window_s <= 0 or self.login_failures < 1:
            raise ConfigurationError("idle_timeout_s and login_window_s must be positive, "
                                     "login_failures at least 1")

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @classmethod
    def load(cls, toml: Mapping[str, Any], environ: Mapping[str, str] | None = None,
             **overrides: Any) -> WebConfig:
        """``toml`` is the whole parsed file; then ``NASNAME_WEB_<KEY>``, then explicit overrides."""
        return cls(**settings_kwargs(cls, section_values(cls, toml, "web", environ, overrides), "web"))
