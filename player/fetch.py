"""Stream sources: a local directory or an http(s) URL of one (manifest.json + segments).

Remote segments are downloaded on demand into a private temporary directory, each bounded by the size the
manifest declares (+1 MiB) and a timeout, so a server cannot make the player store unbounded data; file names
come only from the validated manifest (no path leaves the directory).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bbmr_stream.imageio import InputError
from bbmr_stream.manifest import Manifest, ManifestError, from_dict, load

MAX_MANIFEST = 16 << 20


def is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https")


def _get(url: str, limit: int, timeout: float = 20.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http/https checked by is_url)
        data = r.read(limit + 1)
    if len(data) > limit:
        raise IOError(f"{url}: larger than {limit} bytes")
    return data


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
        else:
            self.base = None
            try:
                self.manifest = load(where)
            except ManifestError as e:
                raise InputError(str(e)) from None
        self.name = Path(urllib.parse.urlparse(where).path.rstrip("/")).name or "stream"

    def path(self, file: str) -> Path:
        """Local path of a segment (downloaded first for URL streams); errors surface as OSError."""
        if self.base is None:
            return Path(self.where) / file
        local = self.tmp / file
        if not local.exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            data = _get(urllib.parse.urljoin(self.base, urllib.parse.quote(file)), self.sizes.get(file, 0) + (1 << 20))
            local.write_bytes(data)
        return local

    def close(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
