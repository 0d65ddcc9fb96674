"""Headless Chromium (Debian's package) driven through the DevTools protocol, for the browser player's self-test
and its screenshot: open a URL, collect the page's console errors (``console.error``, uncaught exceptions,
failed resource loads: ``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``, ``Log.entryAdded``), evaluate
expressions, capture a screenshot. The browser runs with a throw-away profile and is always stopped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bbmr_stream.errors import InputError

FLAGS = ("--headless=new", "--no-sandbox", "--mute-audio", "--hide-scrollbars", "--no-first-run",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0", "--window-size=1140,860")
# the DevTools port listens on 127.0.0.1 only, for the few seconds of a self-test; a local user could attach to it
# meanwhile (--remote-debugging-pipe would close that, noted in docs/web.md)
MAX_ERRORS = 100


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise InputError("the browser self-test needs Chromium (apt-get install chromium; make test installs it "
                         "as root)")
    return exe


class Chromium:
    """``async with Chromium(url) as c``: the page loading ``url``; ``c.errors`` grows as the page logs errors."""

    def __init__(self, url: str, start_timeout: float = 30.0) -> None:
        self.url, self.start_timeout = url, start_timeout
        self.errors: list[str] = []
        self._n = 0
        self._pending: dict[int, asyncio.Future] = {}

    async def __aenter__(self) -> "Chromium":
        import aiohttp

        exe = chromium()  # before anything is made: a missing browser leaves nothing behind
        self._proc = None
        self._profile = tempfile.mkdtemp(prefix="bbmr-chromium-")
        try:
            # its own process group: the browser's helper processes are stopped with it
            self._proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            port = await self._port()
            self._session = aiohttp.ClientSession()
            pages = await (await self._session.get(f"http://127.0.0.1:{port}/json/list")).json()
            ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
            self._ws = await self._session.ws_connect(ws_url, max_msg_size=1 << 28)
            self._reader = asyncio.create_task(self._read())
            for domain in ("Runtime", "Log", "Page"):
                await self.call(f"{domain}.enable")
            await self.call("Page.navigate", url=self.url)
        except (OSError, asyncio.TimeoutError, RuntimeError, StopIteration, ValueError) as e:
            await self.__aexit__(None, None, None)
            raise InputError(f"the browser could not be driven ({e.__class__.__name__}: {e})") from None
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _port(self) -> int:
        f = Path(self._profile) / "DevToolsActivePort"
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            if f.exists() and f.read_text().strip():
                return int(f.read_text().split()[0])
            if self._proc is not None and self._proc.poll() is not None:
                raise InputError(f"Chromium exited at start (code {self._proc.returncode})")
            await asyncio.sleep(0.1)
        raise InputError(f"Chromium did not start within {self.start_timeout:.0f} s")

    async def _read(self) -> None:
        async for msg in self._ws:
            d = json.loads(msg.data)
            if "id" in d:
                fut = self._pending.pop(d["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(d)
            else:
                self._event(d.get("method"), d.get("params", {}))

    def _event(self, method: str, p: dict) -> None:
        text = None
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            text = f"{e.get('text')} ({e.get('url', '')})"
        if text and len(self.errors) < MAX_ERRORS:
            self.errors.append(text[:400])

    async def call(self, method: str, **params) -> dict:
        self._n += 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._n] = fut
        await self._ws.send_json({"id": self._n, "method": method, "params": params})
        try:
            d = await asyncio.wait_for(fut, 60)
        except asyncio.TimeoutError:
            raise InputError(f"the browser did not answer DevTools {method} within 60 s") from None
        if "error" in d:
            raise InputError(f"the browser refused DevTools {method}: {d['error']}")
        return d.get("result", {})

    async def evaluate(self, expression: str):
        """The JSON value of ``expression`` in the page."""
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    async def screenshot(self, fmt: str = "png", quality: int = 90) -> bytes:
        """The page as ``png`` or ``jpeg`` bytes."""
        params = {"format": fmt, **({"quality": quality} if fmt == "jpeg" else {})}
        return base64.b64decode((await self.call("Page.captureScreenshot", **params))["data"])

    async def __aexit__(self, *exc) -> None:
        for name in ("_reader",):
            t = getattr(self, name, None)
            if t is not None:
                t.cancel()
        for name in ("_ws", "_session"):
            obj = getattr(self, name, None)
            if obj is not None:
                await obj.close()
        if self._proc is not None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._proc.wait, 20)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _signal(self, sig: int) -> None:
        """``sig`` to the browser's process group (its renderer, GPU and zygote helpers too)."""
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
