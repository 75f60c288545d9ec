"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

No selenium, no driver binary, no websocket library: Chromium reads commands from fd 3 and writes
replies and events to fd 4, each a JSON message ending in a NUL byte. That is all the report test
needs: open a file, evaluate an expression in the page (what the browser actually laid out), record
every network request, and take a full-page screenshot.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL = "apt-get install -y chromium"
# Debian's real binary first: /usr/bin/chromium is a shell wrapper that adds extension flags.
_DEBIAN_BINARY = "/usr/lib/chromium/chromium"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-extensions", "--disable-default-apps", "--hide-scrollbars", "--mute-audio",
          "--disable-dev-shm-usage",  # containers often have a small /dev/shm; Chromium then crashes
          "--remote-debugging-pipe"]


class MissingChromium(RuntimeError):
    pass


def find_chromium() -> str:
    """The Chromium binary, or MissingChromium naming the install command."""
    if os.access(_DEBIAN_BINARY, os.X_OK):
        return _DEBIAN_BINARY
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise MissingChromium(f"headless Chromium is needed to check the HTML report and was not found; "
                          f"install it with: {INSTALL}")


class Chromium:
    """``with Chromium() as browser: browser.open(url); browser.evaluate(js); browser.screenshot(path)``."""

    def __init__(self, width: int = 1200, height: int = 900, timeout: float = 30.0):
        self.width, self.height, self.timeout = width, height, timeout
        self.requests: list[str] = []  # every URL the page asked for
        self._id = 0
        self._buf = b""
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        binary = find_chromium()
        self._profile = tempfile.mkdtemp(prefix="bgq-chromium-")
        to_child_r, self._to_child = _high_pipe()
        self._from_child, from_child_w = _high_pipe()
        # bash puts the child's pipe ends on fds 3 and 4 (the protocol's fixed numbers) and closes the
        # originals; _high_pipe keeps those above 9 so that they never collide with 3 and 4.
        script = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self._log = open(Path(self._profile) / "chromium.log", "wb")
        self.proc = subprocess.Popen(["bash", "-c", script, binary, *_FLAGS, f"--user-data-dir={self._profile}",
                                      f"--window-size={self.width},{self.height}", "about:blank"],
                                     pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._call("Browser.close", timeout=5)
                except Exception:
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    # --- protocol -------------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None) -> dict:
        """A command in the page's session; returns its result (RuntimeError on a protocol error)."""
        return self._call(method, params, session=self._session)

    def _call(self, method: str, params: dict | None = None, session: str | None = None,
              timeout: float | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, msg: dict) -> None:
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests.append(msg["params"]["request"]["url"])
        self._events.append(msg)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                self._log.flush()
                tail = (Path(self._profile) / "chromium.log").read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"chromium exited (code {self.proc.poll()}):\n{tail}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self._events):
                if ev.get("method") == method:
                    return self._events.pop(i)
            self._event(self._read(deadline))

    # --- what the tests use ---------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._events.clear()
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (returned by value)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (not only the viewport)."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": self.width, "height": max(1, int(size["height"])), "scale": 1}
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path = Path(path)
        path.write_bytes(base64.b64decode(data["data"]))
        return path


def _high_pipe() -> tuple[int, int]:
    """os.pipe() with both ends moved to fds >= 10 (close-on-exec, like os.pipe's)."""
    out = []
    for fd in os.pipe():
        out.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return out[0], out[1]
