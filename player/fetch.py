"""Stream sources: a local directory or an http(s) URL of one (manifest.json + segments).

Remote segments are downloaded on demand into a private temporary directory, each bounded by the size the
manifest declares (+1 MiB), a per-read timeout and a total deadline per download (a server trickling bytes
cannot stall playback), redirects followed only within the same origin; file names come only from the
validated manifest (no path leaves the directory, and a local segment that is a symlink out of it is refused).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bbmr_stream.errors import InputError, ManifestError
from bbmr_stream.manifest import Manifest, from_dict, load

MAX_MANIFEST = 16 << 20


def is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https")


DEADLINE_S = 120.0  # a whole download, however slowly the server trickles
READ_TIMEOUT_S = 20.0  # one read


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        a, b = urllib.parse.urlparse(req.full_url), urllib.parse.urlparse(urllib.parse.urljoin(req.full_url, newurl))
        if (a.scheme, a.netloc) != (b.scheme, b.netloc):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to another origin refused ({newurl})",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOrigin)


def _get(url: str, limit: int, deadline_s: float | None = None, timeout: float = READ_TIMEOUT_S) -> bytes:
    """GET at most ``limit`` bytes within ``deadline_s`` (default :data:`DEADLINE_S`) seconds in all (OSError
    otherwise)."""
    deadline_s = DEADLINE_S if deadline_s is None else deadline_s
    end = time.monotonic() + deadline_s
    buf = bytearray()
    with _OPENER.open(url, timeout=timeout) as r:  # noqa: S310 (http/https checked by is_url)
        while True:
            if time.monotonic() > end:
                raise TimeoutError(f"{url}: not downloaded within {deadline_s:g} s")
            chunk = r.read1(min(1 << 16, limit + 1 - len(buf)))  # what one recv gave: no waiting for more
            if not chunk:
                break
            buf += chunk
            if len(buf) > limit:
                raise IOError(f"{url}: larger than {limit} bytes")
    return bytes(buf)


def check_manifest(man: Manifest, where: str) -> None:
    """Every rendition consistent with its family and the source (bbmr_stream.family.check_rendition)."""
    from bbmr_stream.family import check_rendition

    for r in man.renditions:
        try:
            check_rendition(r, man)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None


class StreamSource:
    def __init__(self, where: str) -> None:
        self.where = where
        self.tmp: Path | None = None
        if is_url(where):
            self.base = where if where.endswith("/") else where + "/"
            try:
                d = json.loads(_get(urllib.parse.urljoin(self.base, "manifest.json"), MAX_MANIFEST))
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise InputError(f"{where}: cannot read manifest.json ({e})") from None
            try:
                self.manifest: Manifest = from_dict(d)
            except ManifestError as e:
                raise InputError(f"{where}: {e}") from None
            self.tmp = Path(tempfile.mkdtemp(prefix="bbmr-play-"))
            self.sizes = {s.file: s.bytes for r in self.manifest.renditions for s in r.segments}
            self.sizes |= {m.file: m.bytes for r in self.manifest.renditions for m in r.models}
            self.sizes |= {r.init.file: r.init.bytes for r in self.manifest.renditions if r.init is not None}
        else:
            self.base = None
            try:
                self.manifest = load(where)
            except ManifestError as e:
                raise InputError(str(e)) from None
        check_manifest(self.manifest, where)
        self.name = Path(urllib.parse.urlparse(where).path.rstrip("/")).name or "stream"

    def path(self, file: str) -> Path:
        """Local path of a segment, init segment or model (downloaded first for URL streams, once); errors
        surface as OSError."""
        if self.base is None:
            root = Path(self.where).resolve()
            p = (Path(self.where) / file).resolve()
            if not p.is_relative_to(root):
                raise PermissionError(f"{file} resolves outside the stream directory (symlink)")
            return p
        local = self.tmp / file
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            data = _get(urllib.parse.urljoin(self.base, urllib.parse.quote(file)), self.sizes.get(file, 0) + (1 << 20))
            try:
                local.write_bytes(data)
            except BaseException:  # a full disk: no truncated copy that a later call would take as downloaded
                local.unlink(missing_ok=True)
                raise
        return local

    def close(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
