"""Small generated "real-world source" clips for the tests: HDR10, HLG, 10-bit SDR, variable frame rate with
audio, phone-style rotation, anamorphic pixels, two audio languages (no data outside the repo).

Every generator takes the destination path plus a few keyword parameters with small defaults and returns the
path. Pictures are crops of scikit-image's bundled astronaut photo panning over time (plus generated
highlights, gradients, markers or circles), encoded with the FFmpeg binary of imageio-ffmpeg (raw frames piped
in) or, for the variable frame rate clip, with PyAV. How each property reads back through PyAV is written in
each docstring and checked in tests/unit/test_sources.py.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

# SMPTE ST 2086 mastering display (P3-D65 primaries in a BT.2020 container, 1000 / 0.005 nits) in x265 /
# ffmpeg `-mastering_display` syntax: chromaticities in units of 1/50000, luminance in units of 1/10000 nits.
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MAX_CLL = (1000, 400)  # MaxCLL, MaxFALL in nits
REFERENCE_WHITE_NITS = 203.0  # BT.2408 HDR reference (graphics) white: where the SDR picture's white lands
VFR_TIME_BASE = Fraction(1, 90000)


# ---------------------------------------------------------------------------------------------- pictures


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())[:, :, :3]  # (512, 512, 3) uint8


def _bounce(v: float, span: int) -> int:
    """v folded into [0, span] (a triangle wave), so a pan of any length stays inside the picture."""
    if span <= 0:
        return 0
    v = int(round(v)) % (2 * span)
    return v if v <= span else 2 * span - v


def _pan(n: int, size: tuple[int, int], step: tuple[float, float] = (5, 9)) -> Iterator[np.ndarray]:
    """n (h, w, 3) uint8 crops of the astronaut moving diagonally by `step` (dy, dx) pixels per frame."""
    w, h = size
    img = _astronaut()
    k = max(1, math.ceil(1.25 * max(w, h) / min(img.shape[:2])))
    if k > 1:  # bigger than the photo: nearest-neighbour upscale (still textured)
        img = img.repeat(k, 0).repeat(k, 1)
    for i in range(n):
        y, x = _bounce(40 + step[0] * i, img.shape[0] - h), _bounce(100 + step[1] * i, img.shape[1] - w)
        yield img[y:y + h, x:x + w]


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _check_size(w: int, h: int) -> None:
    if w % 2 or h % 2 or w < 16 or h < 16:
        raise ValueError(f"size must be even and at least 16 x 16, got {w} x {h}")


# ---------------------------------------------------------------------------------------------- ffmpeg


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg(args: Sequence[str], frames: Iterable[np.ndarray] | None = None) -> None:
    """Runs the ffmpeg binary; `frames` (raw picture arrays, already in the input's pix_fmt layout) go to stdin."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y", *args]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty failure cannot block the frame writes
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL if frames is None else subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err)
        if frames is not None:
            try:
                for f in frames:
                    proc.stdin.write(np.ascontiguousarray(f).tobytes())
            except BrokenPipeError:
                pass  # ffmpeg failed early: its message is in err
            finally:
                proc.stdin.close()
        if proc.wait():
            err.seek(0)
            msg = err.read().decode(errors="replace")
            raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{msg}")


def _raw_input(pix_fmt: str, size: tuple[int, int], fps: float) -> list[str]:
    return ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "pipe:0"]


def _x264(fps: float, crf: int) -> list[str]:
    """8-bit 4:2:0 H.264 output options, a key frame every second."""
    return ["-c:v", "libx264", "-preset", "ultrafast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-g", str(max(1, round(fps)))]


def _gbrpf32(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) float RGB -> planar G, B, R float32 (ffmpeg's gbrpf32le)."""
    return np.ascontiguousarray(rgb[:, :, [1, 2, 0]].transpose(2, 0, 1), dtype="<f4")


# ---------------------------------------------------------------------------------------------- HDR


def _hdr_frames(frames: int, size: tuple[int, int], peak_nits: float) -> Iterator[np.ndarray]:
    """Linear-light BT.709 RGB in nits: the SDR photo with its white at 203 nits, a moving disc at `peak_nits`,
    a smaller one at half of it, and a bottom strip ramping 0 -> `peak_nits` left to right."""
    w, h = size
    strip = max(4, h // 9) // 2 * 2
    ramp = np.linspace(0.0, peak_nits, w, dtype=np.float32)
    for i, img in enumerate(_pan(frames, size)):
        lin = _srgb_to_linear(img.astype(np.float32) / 255) * REFERENCE_WHITE_NITS
        r = max(3, h // 12)
        lin[_disc(h, w, _bounce(h // 5 + 4 * i, h - strip - 2 * r) + r, _bounce(w // 6 + 11 * i, w - 2 * r) + r, r)] = (
            peak_nits)
        lin[_disc(h, w, h // 3, _bounce(w - 2 * r - 7 * i, w - 2 * r) + r, r / 2)] = peak_nits / 2
        lin[h - strip:] = ramp[None, :, None]
        yield lin


def _hdr_encode(path: Path, frames: int, size: tuple[int, int], fps: float, peak_nits: float, transfer: str,
                npl: float, x265_params: str, input_options: Sequence[str] = (), crf: int = 20) -> Path:
    """Linear frames / npl -> zscale (BT.709 -> BT.2020 primaries, linear -> `transfer`, limited range
    BT.2020nc YUV 4:2:0 10 bit) -> libx265 Main10, VUI tagged BT.2020 / `transfer` / BT.2020nc / tv."""
    w, h = size
    _check_size(w, h)
    path = Path(path)
    trc = {"smpte2084": "smpte2084", "arib-std-b67": "arib-std-b67"}[transfer]
    vf = (f"zscale=tin=linear:pin=709:min=gbr:rin=full:t={transfer}:p=2020:m=2020_ncl:r=limited:npl={npl:g},"
          "format=yuv420p10le")
    args = [*input_options, *_raw_input("gbrpf32le", size, fps), "-vf", vf,
            "-c:v", "libx265", "-preset", "ultrafast", "-crf", str(crf), "-g", str(max(1, round(fps))),
            "-x265-params", f"log-level=error:pools=2:frame-threads=1:{x265_params}",
            "-color_primaries", "bt2020", "-color_trc", trc, "-colorspace", "bt2020nc", "-color_range", "tv"]
    if path.suffix.lower() in (".mp4", ".mov"):
        args += ["-tag:v", "hvc1"]
    _ffmpeg([*args, str(path)], (_gbrpf32(f / npl) for f in _hdr_frames(frames, size, peak_nits)))
    return path


def hdr10_clip(path: Path, frames: int = 12, size: tuple[int, int] = (256, 144), fps: float = 10,
               peak_nits: float = 1000.0, master_display: str = MASTER_DISPLAY,
               max_cll: tuple[int, int] = MAX_CLL) -> Path:
    """HDR10: HEVC Main 10 (yuv420p10le), BT.2020 primaries, SMPTE ST 2084 (PQ) transfer, BT.2020nc matrix,
    limited range, mastering display + MaxCLL/MaxFALL both as HEVC SEI (x265 repeats them on every frame) and
    as container boxes (MP4 `mdcv`/`clli`, MKV MasteringMetadata/MaxCLL: FFmpeg 9's *input* options
    -mastering_display / -content_light put them on the stream; x265-params alone only writes the SEI and the
    muxers then write no boxes). Use .mp4 (tagged hvc1) or .mkv. One key frame per second.

    Picture: the astronaut panning (sRGB decoded, BT.709 primaries) with its white at 203 nits (PQ code ~573 of
    1023; its median is ~510), a disc at `peak_nits` (PQ ~723 for 1000) and a smaller one at half of it moving,
    and a bottom strip (h // 9 rows rounded down to even, 16 at 144) ramping 0 -> `peak_nits` nits left to
    right: the discs and 80 % of the strip are above SDR reference white, so tone mapping matters.

    PyAV: first decoded frame: format.name 'yuv420p10le', color_trc 16, color_primaries 9, colorspace 9,
    color_range 1; frame.side_data yields SideData objects whose .type is av.sidedata.sidedata.Type
    .MASTERING_DISPLAY_METADATA (88 bytes, see `mastering_display`) and .CONTENT_LIGHT_LEVEL (8 bytes,
    see `content_light_level`) (plus x265's SEI_UNREGISTERED info strings)."""
    cll = f"{max_cll[0]},{max_cll[1]}"
    return _hdr_encode(path, frames, size, fps, peak_nits, "smpte2084", REFERENCE_WHITE_NITS,
                       f"hdr10=1:hdr10-opt=0:repeat-headers=1:master-display={master_display}:max-cll={cll}",
                       ["-mastering_display", master_display, "-content_light", cll])


def hlg_clip(path: Path, frames: int = 12, size: tuple[int, int] = (256, 144), fps: float = 10,
             peak_nits: float = 1000.0) -> Path:
    """HLG: HEVC Main 10 (yuv420p10le), BT.2020 / ARIB STD-B67 (HLG) / BT.2020nc, limited range, no static
    metadata. Same picture as `hdr10_clip` (display light, 1000-nit nominal peak: SDR white at 203 nits gives
    the HLG reference level 75 %, `peak_nits` 1000 gives 100 %, limited-range code 940).

    PyAV: first frame color_trc 18, color_primaries 9, colorspace 9, color_range 1, no mastering side data."""
    return _hdr_encode(path, frames, size, fps, peak_nits, "arib-std-b67", 1000.0, "repeat-headers=1")


def mastering_display(frame) -> dict | None:
    """Parses a decoded PyAV frame's MASTERING_DISPLAY_METADATA side data (AVMasteringDisplayMetadata: r, g, b,
    white point (x, y) and min, max luminance as int32 rationals, then has_primaries, has_luminance), or None.
    Returns {'r': (x, y), 'g':, 'b':, 'wp':, 'min_nits':, 'max_nits':} as floats."""
    from av.sidedata.sidedata import Type

    sd = frame.side_data.get(Type.MASTERING_DISPLAY_METADATA)
    if sd is None:
        return None
    v = np.frombuffer(bytes(sd), "<i4")
    q = [float(v[2 * i] / v[2 * i + 1]) if v[2 * i + 1] else 0.0 for i in range(10)]
    return {"r": (q[0], q[1]), "g": (q[2], q[3]), "b": (q[4], q[5]), "wp": (q[6], q[7]),
            "min_nits": q[8], "max_nits": q[9]}


def content_light_level(frame) -> tuple[int, int] | None:
    """(MaxCLL, MaxFALL) from a decoded PyAV frame's CONTENT_LIGHT_LEVEL side data (two uint32), or None."""
    from av.sidedata.sidedata import Type

    sd = frame.side_data.get(Type.CONTENT_LIGHT_LEVEL)
    if sd is None:
        return None
    cll, fall = np.frombuffer(bytes(sd), "<u4")[:2]
    return int(cll), int(fall)


# ---------------------------------------------------------------------------------------------- 10-bit SDR


def sdr10_clip(path: Path, frames: int = 12, size: tuple[int, int] = (256, 144), fps: float = 10,
               codec: str = "libx264") -> Path:
    """10-bit SDR: H.264 High 10 (`codec='libx264'`, default; no browser decodes it, a real-world trap) or HEVC
    Main 10 (`codec='libx265'`), yuv420p10le, BT.709 primaries / transfer / matrix, limited range.

    Picture: the top half is the astronaut panning; the bottom half is a smooth, slowly drifting sky-blue
    gradient spanning only ~0.15 of the signal range across the width (~130 ten-bit luma codes, ~33 eight-bit
    ones: 8 px wide bands if reduced to 8 bit). Tests can count distinct luma codes along a bottom row.

    PyAV: frame.format.name 'yuv420p10le', color_trc 1, color_primaries 1, colorspace 1, color_range 1;
    stream.codec_context.profile 'High 10' (or 'Main 10')."""
    w, h = size
    _check_size(w, h)
    path = Path(path)
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    yy = np.linspace(0.0, 1.0, h - h // 2, dtype=np.float32)[:, None]

    def frame(i: int, img: np.ndarray) -> np.ndarray:
        rgb = img.astype(np.float32) / 255  # gamma-encoded R'G'B'
        g = 0.30 + 0.15 * xx + 0.01 * yy + 0.002 * i  # luma-ish ramp, drifting brighter
        rgb[h // 2:] = np.stack([g * 0.8, g * 0.95, g * 1.25], -1)
        return _gbrpf32(np.clip(rgb, 0, 1))

    enc = {"libx264": ["-c:v", "libx264", "-profile:v", "high10", "-preset", "ultrafast", "-crf", "8"],
           "libx265": ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "8", "-tag:v", "hvc1",
                       "-x265-params", "log-level=error:pools=2:frame-threads=1"]}[codec]
    vf = "zscale=min=gbr:rin=full:m=709:r=limited:tin=709:t=709:pin=709:p=709,format=yuv420p10le"
    _ffmpeg([*_raw_input("gbrpf32le", size, fps), "-vf", vf, *enc, "-g", str(max(1, round(fps))),
             "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
             str(path)], (frame(i, img) for i, img in enumerate(_pan(frames, size))))
    return path


# ---------------------------------------------------------------------------------------------- VFR + audio


def vfr_timeline(seconds: float = 4.0, fps_choices: Sequence[int] = (30, 15, 24), jitter: float = 0.25,
                 seed: int = 0) -> list[int]:
    """The video pts of `vfr_clip` in ticks of VFR_TIME_BASE (1/90000 s; seconds = tick / 90000), ascending.

    Second s of the clip runs at fps_choices[s % len(fps_choices)] frames per second, each frame duration
    randomly off by up to +-`jitter` of the nominal one (seeded, they still sum to exactly one second), so
    every whole second starts with a frame: frame durations really vary inside and between the runs."""
    if not 0 <= jitter < 0.45:
        raise ValueError("jitter must be in [0, 0.45) of a frame duration")
    tick = VFR_TIME_BASE.denominator
    total = round(seconds * tick)
    rng = np.random.default_rng(seed)
    pts: list[int] = []
    for s in range(math.ceil(total / tick)):
        n = int(fps_choices[s % len(fps_choices)])
        d = tick / n
        j = rng.uniform(-jitter, jitter, n) * d
        edges = np.round(np.concatenate([[0.0], np.cumsum(d + j - j.mean())])).astype(np.int64)
        pts.extend(int(s * tick + e) for e in edges[:-1] if s * tick + e < total)
    return pts


def click_times(seconds: float = 4.0) -> list[int]:
    """When `vfr_clip`'s audio clicks and its video flashes: every whole second after 0 and before the end."""
    return list(range(1, math.ceil(seconds)))


def _tone_with_clicks(start: int, n: int, rate: int, freq: float = 440.0) -> np.ndarray:
    """Samples [start, start + n) of a 0.2 amplitude `freq` sine plus, at every whole second, a 10 ms 2 kHz
    burst of amplitude 0.6 starting exactly on the second (sharp onset: |x[i] - x[i-1]| jumps from <0.02 to >0.1)."""
    t = np.arange(start, start + n, dtype=np.float64)
    x = 0.2 * np.sin(2 * np.pi * freq * t / rate)
    into = t % rate  # samples since the last whole second
    burst = (into < rate // 100) & (t >= rate)
    x[burst] += 0.6 * np.sin(2 * np.pi * 2000 * into[burst] / rate)
    return x.astype(np.float32)


def vfr_clip(path: Path, seconds: float = 4.0, fps_choices: Sequence[int] = (30, 15, 24),
             size: tuple[int, int] = (64, 48), audio: bool = True, jitter: float = 0.25, seed: int = 0,
             audio_rate: int = 48000) -> Path:
    """Variable frame rate H.264 (yuv420p, ultrafast, crf 30) + AAC mono `audio_rate` Hz, via PyAV, MP4 or MKV.

    Video pts are exactly `vfr_timeline(seconds, fps_choices, jitter, seed)` (ticks of 1/90000 s: the MP4 track
    timescale is 90000, so they read back exactly; MKV stores milliseconds: within 1 ms). The picture is a 4x
    reduced astronaut panning at a constant speed in *time* (bigger steps at lower rates); the frame starting at
    each of `click_times(seconds)` is all white (a flash). The audio is a 440 Hz sine with a 10 ms 2 kHz click
    starting at each of the same whole seconds, and lasts `seconds` too, so A/V sync can be measured.

    A 10-minute clip at the default 64 x 48 and (30, 15, 24) fps (13800 frames) takes ~4.5 s and 7.5 MB (the AAC
    encoder is ~3.5 s and 4.8 MB of it; audio=False: ~0.9 s).

    PyAV: stream.time_base 1/90000 (MP4), frame.pts in it (frame.time in seconds); stream.average_rate is
    frames / duration (23 for the default choices), none of the per-frame rates; stream.frames the frame count."""
    import av

    w, h = size
    _check_size(w, h)
    path = Path(path)
    tick = VFR_TIME_BASE.denominator
    pts = vfr_timeline(seconds, fps_choices, jitter, seed)
    total = round(seconds * tick)
    durations = dict(zip(pts, np.diff([*pts, total]).tolist()))  # x264 guesses the last one wrong: set them all
    flashes = {k * tick for k in click_times(seconds)}
    src = _astronaut().reshape(128, 4, 128, 4, 3).mean((1, 3)).astype(np.uint8)
    k = max(1, math.ceil(1.25 * max(w, h) / 128))
    src = src.repeat(k, 0).repeat(k, 1)
    ry, rx = src.shape[0] - h, src.shape[1] - w

    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", options={"preset": "ultrafast", "crf": "30", "g": "48"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = VFR_TIME_BASE
        vs.time_base = VFR_TIME_BASE
        vs.thread_count = 1
        if audio:
            aus = out.add_stream("aac", rate=audio_rate, layout="mono")
            aus.bit_rate = 64000
        vi, a_done = 0, 0
        for s in range(math.ceil(total / tick)):
            end = min(total, (s + 1) * tick)
            while vi < len(pts) and pts[vi] < end:
                p = pts[vi]
                if p in flashes:
                    img = np.full((h, w, 3), 255, np.uint8)
                else:
                    t = p / tick
                    y, x = _bounce(17 * t, ry), _bounce(30 * t, rx)
                    img = src[y:y + h, x:x + w]
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                f.pts, f.time_base = p, VFR_TIME_BASE
                f.duration = durations[p]
                _mux_timed(out, vs.encode(f), durations)
                vi += 1
            if audio:
                a_end = round(end * audio_rate / tick)
                x = _tone_with_clicks(a_done, a_end - a_done, audio_rate)
                af = av.AudioFrame.from_ndarray(x[None], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = audio_rate, a_done, Fraction(1, audio_rate)
                out.mux(aus.encode(af))
                a_done = a_end
        _mux_timed(out, vs.encode(None), durations)
        if audio:
            out.mux(aus.encode(None))
    return path


def _mux_timed(out, packets, durations: dict[int, int]) -> None:
    for pkt in packets:
        pkt.duration = durations[pkt.pts]
        out.mux(pkt)


# ---------------------------------------------------------------------------------------------- rotation


def rotated_clip(path: Path, rotation: int = 90, frames: int = 12, size: tuple[int, int] = (192, 108),
                 fps: float = 10) -> Path:
    """A phone-style H.264 MP4: coded landscape `size`, with a display matrix saying "rotate by `rotation`
    degrees counter-clockwise" (FFmpeg's and PyAV's convention; a typical portrait phone video, whose old
    `rotate` tag said 90 clockwise, reads -90 here). Written with the ffmpeg *input* options
    `-noautorotate -display_rotation <rotation>` (without -noautorotate ffmpeg rotates the pixels instead; the
    old `-metadata:s:v:0 rotate=90` is silently ignored by FFmpeg 9).

    Picture: dark (<= ~80 of 255), textured astronaut panning, a white (255) square marker in the coded
    top-left corner and a mid-grey (150) one in the coded top-right corner, each h // 4 px. Displayed upright
    (ffmpeg's autorotate: `ffmpeg -i clip -frames:v 1 out.png`) with rotation 90 the picture is portrait
    h x w: white marker bottom-left, grey marker top-left (a counter-clockwise quarter turn: np.rot90(coded));
    with -90 white top-right, grey bottom-right (np.rot90(coded, -1)); with 180 white bottom-right.

    PyAV: frame.rotation == rotation (int degrees counter-clockwise in [-180, 180], so 180 reads back as -180),
    computed from the frame's Type.DISPLAYMATRIX side data (36 bytes, nine int32); frame.width / height stay the
    coded landscape size, PyAV does not rotate; `stream.metadata` has no 'rotate' key."""
    w, h = size
    _check_size(w, h)
    m = h // 4

    def frame(img: np.ndarray) -> np.ndarray:
        out = (img.astype(np.uint16) * 80 // 255).astype(np.uint8)
        out[:m, :m] = 255
        out[:m, w - m:] = 150
        return out

    _ffmpeg(["-noautorotate", "-display_rotation", str(rotation), *_raw_input("rgb24", size, fps),
             *_x264(fps, 18), str(path)], (frame(img) for img in _pan(frames, size)))
    return Path(path)


# ---------------------------------------------------------------------------------------------- anamorphic


def sar_clip(path: Path, coded: tuple[int, int] = (192, 144), sar: tuple[int, int] = (4, 3), frames: int = 12,
             fps: float = 10) -> Path:
    """Anamorphic H.264 MP4: coded `coded` pixels with sample aspect ratio `sar`, so it displays
    coded_w * sar[0] / sar[1] x coded_h (default 256 x 144, 16:9). Set with `-vf setsar=4/3`: in the H.264 VUI
    and in the MP4 `pasp` box.

    Picture: the astronaut panning (darkened) with three white filled circles drawn round in *display*
    geometry, then squeezed horizontally to the coded width: in the coded frame the circles are ellipses
    sar[1]/sar[0] as wide as tall (the big one: display diameter h/2, coded bbox h/2 * sar[1]/sar[0] x h/2).

    PyAV: stream.sample_aspect_ratio == Fraction(*sar) (also stream.codec_context.sample_aspect_ratio),
    stream.display_aspect_ratio == display w / h; frames have no per-frame SAR attribute in PyAV 18."""
    from skimage.transform import resize

    w, h = coded
    _check_size(w, h)
    dw = w * sar[0] / sar[1]
    if dw != int(dw):
        raise ValueError(f"coded width {w} x sar {sar[0]}/{sar[1]} is not a whole display width")
    dw = int(dw)

    def frame(i: int, img: np.ndarray) -> np.ndarray:
        img = img.astype(np.float32) * 0.5
        r = h / 4
        for cy, cx, rr in ((h / 2, _bounce(dw / 4 + 6 * i, dw - 2 * r) + r, r), (h / 4, dw * 0.8, r / 2.5),
                           (h * 0.8, dw * 0.15, r / 3)):
            img[_disc(h, dw, cy, cx, rr)] = 255
        return np.clip(resize(img, (h, w), order=1, anti_aliasing=True, preserve_range=True) + 0.5, 0, 255
                       ).astype(np.uint8)

    _ffmpeg([*_raw_input("rgb24", (w, h), fps), "-vf", f"setsar={sar[0]}/{sar[1]}",
             *_x264(fps, 18), str(path)], (frame(i, img) for i, img in enumerate(_pan(frames, (dw, h)))))
    return Path(path)


# ---------------------------------------------------------------------------------------------- two audio tracks


def two_audio_clip(path: Path, frames: int = 12, size: tuple[int, int] = (192, 108), fps: float = 10,
                   tracks: Sequence[tuple[str, str, float]] = (("eng", "English", 440.0), ("fra", "Français", 660.0)),
                   audio_rate: int = 48000) -> Path:
    """H.264 video + one AAC mono track per (language, title, tone Hz) of `tracks` (default eng/English 440 Hz,
    fra/Français 660 Hz), each as long as the video (frames / fps), MP4. The first audio track is the default.

    PyAV: container.streams.audio[i].language ('eng', 'fra'; also .metadata['language']), .metadata['title']
    (MP4 keeps it as a udta name box), .disposition (Disposition.default on the first audio track only)."""
    w, h = size
    _check_size(w, h)
    dur = frames / fps
    args = [*_raw_input("rgb24", size, fps)]
    for _, _, hz in tracks:
        args += ["-f", "lavfi", "-i", f"sine=frequency={hz:g}:sample_rate={audio_rate}:duration={dur:g}"]
    args += ["-map", "0:v"]
    for i in range(len(tracks)):
        args += ["-map", f"{i + 1}:a"]
    args += [*_x264(fps, 23), "-c:a", "aac", "-b:a", "64k"]
    for i, (lang, title, _) in enumerate(tracks):
        args += [f"-metadata:s:a:{i}", f"language={lang}", f"-metadata:s:a:{i}", f"title={title}",
                 f"-disposition:a:{i}", "default" if i == 0 else "0"]
    _ffmpeg([*args, str(path)], _pan(frames, size))
    return Path(path)
