"""Serve the example web app (or any folder) over HTTP on 127.0.0.1, in a thread.

python examples/webapp/serve.py [--port 8000]
"""

from __future__ import annotations

import argparse
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _QuietHandler(SimpleHTTPRequestHandler):
    """A static file handler that does not log every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def serve(
    directory: str | Path = HERE, port: int = 0, host: str = "127.0.0.1"
) -> tuple[str, ThreadingHTTPServer]:
    """Start serving `directory` in a daemon thread; returns (base URL ending in /, server).

    Stop it with ``server.shutdown(); server.server_close()``. Port 0 picks a free port.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="webapp-server", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return f"http://{bound_host}:{bound_port}/", server


def main() -> None:
    """Serve the example app until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--directory", type=Path, default=HERE)
    args = parser.parse_args()
    url, server = serve(args.directory, args.port)
    print(f"Serving {args.directory} at {url} (Ctrl+C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
