"""Reading and writing still images as (H, W, 3) uint8 RGB arrays, with user-facing errors."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from bbmr_stream.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")



def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """The path of an existing, non-empty regular file, or InputError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected {what}")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    return p


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image file as (H, W, 3) uint8 RGB (gray is replicated, alpha dropped, 16-bit scaled)."""
    from PIL import Image, UnidentifiedImageError

    p = check_input_file(path, "an image file")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                a = np.asarray(im, dtype=np.float64)
                a = np.clip(a / (65535.0 if a.max() > 255 else 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(a[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{p}: not a readable image ({e.__class__.__name__}: {e})") from None


def list_images(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (non-recursive, sorted by name) into image paths; errors on none."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise InputError(f"{p}: directory has no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise InputError("no input images")
    return out


def prepare_output_file(option: str, path: str | os.PathLike) -> Path:
    """Check an output file option before any work: not a directory, its directory made and writable
    (InputError naming ``option`` otherwise)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{option} {p} is a directory, not a file")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{option} {p}: cannot create its directory ({e.strerror})") from None
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"{option} {p}: directory {p.parent} is not writable")
    return p


def umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def normal_mode(path: str | os.PathLike) -> None:
    """Give a file or directory made by ``tempfile`` (0600 / 0700) the mode an ordinary ``open``/``mkdir``
    would have given it (0666 / 0777 less the umask), so a web server running as another user can serve it."""
    p = Path(path)
    os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask())


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write (H, W, 3) uint8 atomically (temp file in the same directory, then rename; PNG without a suffix)."""
    from PIL import Image

    with Staged() as staged:
        Image.fromarray(img).save(staged.path(path), format=None if Path(path).suffix else "PNG")
        staged.commit()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (temp file in the same directory, then rename)."""
    with Staged() as staged:
        staged.path(path).write_text(text)
        staged.commit()


class Staged:
    """Output files written under temporary names beside their destinations (same directory, so the same
    filesystem) and renamed into place together by :meth:`commit`: until then no destination is touched, so a
    failure on the way (a full disk) leaves every previous file as it was. :meth:`discard` (or leaving a ``with``
    block without committing) removes the temporary files."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []  # (temporary name, destination)

    def path(self, dest: str | os.PathLike) -> Path:
        """A new temporary file for ``dest`` (its suffix kept, the usual permissions), to be written now."""
        d = Path(dest)
        fd, tmp = tempfile.mkstemp(prefix=f".{d.name}.", suffix=d.suffix, dir=d.parent if str(d.parent) else ".")
        os.close(fd)
        self.add(tmp, d)
        normal_mode(tmp)
        return Path(tmp)

    def add(self, tmp: str | os.PathLike, dest: str | os.PathLike) -> None:
        """Take over ``tmp``, a complete file written by someone else, to be renamed to ``dest``."""
        self.pending.append((Path(tmp), Path(dest)))

    def commit(self) -> None:
        """Rename every file into place (renames need no space)."""
        while self.pending:
            tmp, dest = self.pending[0]
            os.replace(tmp, dest)
            self.pending.pop(0)

    def discard(self) -> None:
        """Remove the files not committed."""
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        self.pending.clear()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()
