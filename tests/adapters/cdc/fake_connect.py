"""A small Kafka Connect REST server (http.server in a thread) for the Debezium adapter's tests.

It implements the endpoints the adapter uses with the shapes Kafka Connect documents
(ConnectorsResource, KIP-875): ``GET /`` → {version, commit, kafka_cluster_id};
``GET /connectors/{n}/status`` → {name, connector: {state, worker_id}, tasks: [{id, state,
worker_id[, trace]}], type}; ``PUT …/stop`` → 204; ``PUT …/resume`` → 202; ``GET …/offsets`` →
{offsets: [{partition, offset}]}; ``PATCH …/offsets`` → 200 {message} only when STOPPED, else 400;
``GET/PUT …/config``; errors as {error_code, message}. Versions before 3.5 have no stop/offsets
routes (404), 3.5 has GET offsets but no PATCH (405). State changes take effect a status read
later, as a real worker applies them asynchronously.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORKER = "connect-1:8083"
ALTERED = ("The Connect framework-managed offsets for this connector have been altered successfully. However, if "
           "this connector manages offsets externally, they will need to be manually altered in the system that "
           "the connector uses.")


class Connector:
    def __init__(self, name: str, config: dict, offset: dict | None, prefix: str):
        self.name, self.config, self.prefix = name, dict(config), prefix
        self.offsets = [{"partition": {"server": prefix}, "offset": offset}] if offset else []
        self.state, self.target, self.tasks = "RUNNING", "RUNNING", ["RUNNING"]
        self.fail_on_resume: str | None = None  # a task trace to fail with after the next resume
        self.on_stop = None  # called with the connector when it reaches STOPPED (tests move its offset)

    def status(self) -> dict:
        body = {"name": self.name, "connector": {"state": self.state, "worker_id": WORKER},
                "tasks": [{"id": i, "state": s, "worker_id": WORKER} for i, s in enumerate(self.tasks)],
                "type": "source"}
        for t in body["tasks"]:
            if t["state"] == "FAILED":
                t["trace"] = self.fail_on_resume
        self._converge()
        return body

    def _converge(self) -> None:
        if self.target == "STOPPED" and self.state != "STOPPED":
            self.state, self.tasks = "STOPPED", []
            if self.on_stop:
                self.on_stop(self)
        elif self.target == "RUNNING" and self.state != "RUNNING":
            self.state, self.tasks = "RUNNING", ["UNASSIGNED"]
        elif self.state == "RUNNING" and self.tasks == ["UNASSIGNED"]:
            self.tasks = ["FAILED" if self.fail_on_resume else "RUNNING"]


class FakeConnect:
    """``with FakeConnect(version) as connect: connect.url``; ``connect.requests`` lists (method, path, body)."""

    def __init__(self, version: str = "3.7.0"):
        self.version = version
        self.connectors: dict[str, Connector] = {}
        self.requests: list[tuple[str, str, object]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add(self, name: str, config: dict, offset: dict | None, prefix: str) -> Connector:
        self.connectors[name] = Connector(name, config, offset, prefix)
        return self.connectors[name]

    def __enter__(self) -> FakeConnect:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method: str | None = None) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.requests if method is None or m == method]

    @property
    def _minor(self) -> tuple[int, int]:
        major, minor = self.version.split(".")[:2]
        return int(major), int(minor)

    def handle(self, method: str, path: str, body) -> tuple[int, object]:
        self.requests.append((method, path, body))
        if path == "/" and method == "GET":
            return 200, {"version": self.version, "commit": "0123456789abcdef", "kafka_cluster_id": "k1"}
        m = re.fullmatch(r"/connectors/([^/]+)(/[a-z]+)?", path)
        if not m:
            return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
        name, sub = m.group(1), m.group(2) or ""
        if sub in ("/stop", "/offsets") and self._minor < (3, 5):
            return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}
        if sub == "/offsets" and method == "PATCH" and self._minor < (3, 6):
            return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
        c = self.connectors.get(name)
        if c is None:
            return 404, {"error_code": 404, "message": f"Connector {name} not found"}
        if (method, sub) == ("GET", "/status"):
            return 200, c.status()
        if (method, sub) == ("PUT", "/stop"):
            c.target = "STOPPED"
            return 204, None
        if (method, sub) == ("PUT", "/resume"):
            c.target = "RUNNING"
            return 202, None
        if (method, sub) == ("GET", "/offsets"):
            return 200, {"offsets": c.offsets}
        if (method, sub) == ("PATCH", "/offsets"):
            if c.state != "STOPPED":
                return 400, {"error_code": 400, "message": (
                    "Connectors must be in the STOPPED state before their offsets can be modified. This can be done "
                    f"for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' "
                    "endpoint")}
            if not body or not body.get("offsets"):
                return 400, {"error_code": 400,
                             "message": "Partitions / offsets need to be provided for an alter offsets request"}
            for entry in body["offsets"]:
                c.offsets = [o for o in c.offsets if o["partition"] != entry["partition"]] + [entry]
            return 200, {"message": ALTERED}
        if (method, sub) == ("GET", "/config"):
            return 200, dict(c.config)
        if (method, sub) == ("PUT", "/config"):
            c.config = dict(body)
            return 200, {"name": name, "config": c.config, "tasks": [{"connector": name, "task": 0}], "type": "source"}
        return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake.lock:
                    status, answer = fake.handle(method, self.path, body)
                data = json.dumps(answer).encode() if answer is not None else b""
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._serve("GET")

            def do_PUT(self):
                self._serve("PUT")

            def do_PATCH(self):
                self._serve("PATCH")

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler
