"""Running the console: uvicorn over HTTPS in a thread of the ``nasname serve`` process.

    web = WebServer(app, "127.0.0.1", 0, cert_path, key_path)   # port 0: a free one
    web.start(); print(web.url); ...; web.stop()

The socket is bound here (before the thread starts), so a port in use fails ``start`` with a clear
``ConfigurationError`` and port 0 is known at once. Access logs are off: URLs name reference ids.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from engine.errors import ConfigurationError

__all__ = ["WebServer"]


class WebServer:
    def __init__(self, app: ASGIApp, host: str, port: int, cert: Path, key: Path) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise ConfigurationError(f"the web console cannot bind {host}:{port}: {exc.strerror}") from exc
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="warning",
                                access_log=False, lifespan="off", server_header=False, date_header=False,
                                proxy_headers=False, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="nasname-web", daemon=True)

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        for _ in range(int(timeout / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            self._thread.join(0.05)
        if not self._server.started:
            raise ConfigurationError("the web console did not start (see the log)")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
        self._sock.close()
