"""``bbmr-bench speed --vs-ffmpeg CLIP``: the packager and the player against FFmpeg doing the same work, in one run.

Packaging: the plain and plain-sr rungs of a ladder are, for the encoder, pictures of a size at a CRF (a plain-sr
xK rung is the frame at 1/K; the client's SR is not the encoder's work), so one FFmpeg command makes the same
rungs: decode once, ``split``, ``scale`` (swscale bicubic) per rung, one libx264 per rung with the packager's
settings (preset, CRF, closed GOPs of the segment length, 2 B-frames, no scene cuts, the same ``asm`` cap,
x264's own thread count as the packager's encoders), fMP4 HLS segments. FFmpeg is run three times, to split its
time into stages as the packager's manifest does: decode only (``-f null``), decode + split + scale (``-f
null``), the whole ladder. The packager runs as ``bbmr-package --ladder ... --no-measure --no-web-models`` (its
own process, as a user runs it; its stage seconds from the manifest). Ratios are FFmpeg's wall time over the
packager's (throughput: 1.0 = as fast as FFmpeg).

Playback: FFmpeg decoding the top plain rendition's playlist and scaling it to the source size (bicubic, ``-f
null``) against ``bbmr-play --headless --rendition`` of it (no reference, no NIQE): frames per second each; and,
for the record, the player's fps on the plain-sr rendition with FastSR (FFmpeg has no peer for that).

Times are wall seconds of one run each on the same machine, measured one after another; the machine's load is
not controlled (run it alone). Nothing is printed here: the CLI prints :func:`markdown`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bbmr_stream.decode import probe
from bbmr_stream.errors import InputError
from bbmr_stream.family import FAMILIES, parse_ladder
from packager.segment import ffmpeg_exe

DEFAULT_LADDER = "plain:23,plain:1280x720:26,plain:640x360:30,plain-sr:4:28"


@dataclass(frozen=True)
class SpeedConfig:
    """One comparison: ``clip`` (a video file), the first ``frames`` frames, the packager's ``ladder`` (plain and
    plain-sr rungs), x264 ``preset``, ``segment`` seconds (the GOP)."""

    clip: str
    ladder: str = DEFAULT_LADDER
    frames: int = 60
    preset: str = "medium"
    segment: float = 2.0


def rung_pictures(cfg: SpeedConfig, width: int, height: int) -> list[tuple[str, int, int, float]]:
    """(rung name, coded width, coded height, CRF) of each rung of the ladder; plain and plain-sr only."""
    out = []
    for spec in parse_ladder(cfg.ladder):
        if spec.family not in ("plain", "plain-sr"):
            raise InputError(f"--ladder {spec.text}: the comparison takes plain and plain-sr rungs (FFmpeg makes "
                             f"no BBMR pictures)")
        w, h = spec.size or (width, height)
        if spec.family == "plain-sr":
            w, h = width // spec.factor // 2 * 2, height // spec.factor // 2 * 2
        out.append((FAMILIES[spec.family].rung_name(spec), w, h, spec.crf))
    return out


def ffmpeg_args(cfg: SpeedConfig, rungs, gop: int, stage: str, out: Path) -> list[str]:
    """The FFmpeg command of one stage: ``decode``, ``scale`` (decode + split + scale) or ``ladder``."""
    from bbmr_stream.x264 import with_asm

    args = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", cfg.clip, "-frames:v", str(cfg.frames), "-an"]
    if stage == "decode":
        return args + ["-f", "null", "-"]
    n = len(rungs)
    graph = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";" + ";".join(
        f"[s{i}]scale={w}:{h}:flags=bicubic[o{i}]" for i, (_, w, h, _) in enumerate(rungs))
    args += ["-filter_complex", graph]
    x264 = with_asm({"x264-params": "open-gop=0:scenecut=0"})["x264-params"]
    for i, (name, _, _, crf) in enumerate(rungs):
        args += ["-map", f"[o{i}]"]
        if stage == "scale":
            args += ["-frames:v", str(cfg.frames), "-f", "null", "-"]
            continue
        args += ["-c:v", "libx264", "-preset", cfg.preset, "-crf", f"{crf:g}", "-g", str(gop), "-keyint_min",
                 str(gop), "-sc_threshold", "0", "-bf", "2", "-x264-params", x264, "-pix_fmt", "yuv420p",
                 "-f", "hls", "-hls_time", f"{cfg.segment:g}", "-hls_playlist_type", "vod", "-hls_segment_type",
                 "fmp4", "-hls_fmp4_init_filename", f"{name}_init.mp4",
                 "-hls_segment_filename", str(out / f"{name}_%05d.m4s"), str(out / f"{name}.m3u8")]
    return args


def _timed(args: list[str], what: str) -> float:
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise RuntimeError(f"{what} failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return dt


def _tool(name: str) -> str:
    """The path of one of this package's CLIs beside the running Python (the venv's bin)."""
    exe = Path(sys.executable).with_name(name)
    return str(exe) if exe.exists() else (shutil.which(name) or name)


def run(cfg: SpeedConfig) -> dict:
    """The comparison: {"clip", "frames", "ladder", "packaging": {...}, "playback": {...}} (seconds, fps,
    ratios)."""
    info = probe(cfg.clip)
    n = min(cfg.frames, info.frames) if info.frames else cfg.frames
    cfg = SpeedConfig(cfg.clip, cfg.ladder, n, cfg.preset, cfg.segment)
    gop = max(1, int(round(float(info.fps) * cfg.segment)))
    rungs = rung_pictures(cfg, info.width, info.height)
    with tempfile.TemporaryDirectory(prefix="bbmr-vs-ffmpeg-") as td:
        td = Path(td)
        (td / "ff").mkdir()
        ff = {stage: _timed(ffmpeg_args(cfg, rungs, gop, stage, td / "ff"), f"ffmpeg ({stage})")
              for stage in ("decode", "scale", "ladder")}
        stream = td / "stream"
        ours = _timed([_tool("bbmr-package"), cfg.clip, "--out", str(stream), "--ladder", cfg.ladder, "--no-measure",
                       "--no-web-models", "--max-frames", str(n), "--preset", cfg.preset, "--segment",
                       f"{cfg.segment:g}"], "bbmr-package")
        man = json.loads((stream / "manifest.json").read_text())
        stages = man["conventions"]["timing_s"]
        packaging = {
            "ffmpeg_s": {k: round(v, 3) for k, v in ff.items()},
            "packager_s": round(ours, 3), "packager_stages_s": stages,
            "ratio": round(ff["ladder"] / ours, 3),
            "fps": {"ffmpeg": round(n / ff["ladder"], 2), "packager": round(n / ours, 2)},
            "stage_ratios": {  # FFmpeg's stage seconds over the packager's same stage
                "decode": _ratio(ff["decode"], stages.get("decode")),
                "resize+convert": _ratio(ff["scale"] - ff["decode"], stages.get("pack")),
                "encode+segment": _ratio(ff["ladder"] - ff["scale"],
                                         (stages.get("encode") or 0) + (stages.get("segment") or 0)),
            },
        }
        playback = _playback(cfg, man, stream, td, info.width, info.height)
    return {"clip": Path(cfg.clip).name, "size": [info.width, info.height], "frames": n, "ladder": cfg.ladder,
            "preset": cfg.preset, "segment_s": cfg.segment, "packaging": packaging, "playback": playback}


def _ratio(a: float, b: float | None) -> float | None:
    return round(a / b, 3) if b else None


def _playback(cfg: SpeedConfig, man: dict, stream: Path, td: Path, width: int, height: int) -> dict:
    plain = max((r for r in man["renditions"] if r["kind"] == "plain"), key=lambda r: r["lr_width"], default=None)
    out: dict = {}
    if plain is not None:
        ff = _timed([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(stream / plain["playlist"]), "-vf",
                     f"scale={width}:{height}:flags=bicubic", "-f", "null", "-"], "ffmpeg (playback)")
        ours = _play(stream, plain["name"], td, "bicubic")
        out["plain"] = {"rendition": plain["name"], "ffmpeg_fps": round(man["source"]["frames"] / ff, 2),
                        "player_fps": ours, "ratio": round(ours / (man["source"]["frames"] / ff), 3)}
    sr = next((r for r in man["renditions"] if r["kind"] == "plain-sr"), None)
    if sr is not None:
        out["plain-sr"] = {"rendition": sr["name"], "upscaler": "fast", "player_fps": _play(stream, sr["name"], td,
                                                                                             "fast")}
    return out


def _play(stream: Path, name: str, td: Path, upscaler: str) -> float:
    """bbmr-play --headless of one rendition: frames per second over its whole run (the report's total)."""
    rep = td / f"play-{name}.json"
    _timed([_tool("bbmr-play"), str(stream), "--headless", "--rendition", name, "--upscaler", upscaler,
            "--niqe-every", "0", "--report", str(rep)], "bbmr-play")
    r = json.loads(rep.read_text())
    return round(float(r["stage_fps"]["total"]) if "stage_fps" in r else len(r["frames"]) / r["timing_s"]["total"], 2)


def markdown(res: dict) -> str:
    """The result as a Markdown table (what the CLI prints and docs/speed.md shows)."""
    p, pb = res["packaging"], res["playback"]
    ff, st = p["ffmpeg_s"], p["packager_stages_s"]
    lines = [f"{res['clip']} ({res['size'][0]}x{res['size'][1]}), {res['frames']} frames, ladder `{res['ladder']}`, "
             f"x264 {res['preset']}, {res['segment_s']:g} s GOPs; wall seconds of one run each, ratio = FFmpeg / "
             f"ours (throughput; 1 = as fast as FFmpeg)", "",
             "| packaging | FFmpeg s | bbmr-package s | ratio |", "|---|---|---|---|",
             f"| decode | {ff['decode']:.2f} | {st.get('decode', 0):.2f} | {p['stage_ratios']['decode']} |",
             f"| resize + convert | {ff['scale'] - ff['decode']:.2f} | {st.get('pack', 0):.2f} | "
             f"{p['stage_ratios']['resize+convert']} |",
             f"| encode + segment | {ff['ladder'] - ff['scale']:.2f} | "
             f"{st.get('encode', 0) + st.get('segment', 0):.2f} | {p['stage_ratios']['encode+segment']} |",
             f"| **whole run** (process wall) | {ff['ladder']:.2f} | {p['packager_s']:.2f} | **{p['ratio']}** |", ""]
    if pb:
        lines += ["| playback | FFmpeg fps | bbmr-play fps | ratio |", "|---|---|---|---|"]
        if "plain" in pb:
            q = pb["plain"]
            lines.append(f"| {q['rendition']} (decode + bicubic to the source size) | {q['ffmpeg_fps']} | "
                         f"{q['player_fps']} | {q['ratio']} |")
        if "plain-sr" in pb:
            q = pb["plain-sr"]
            lines.append(f"| {q['rendition']} (FastSR) | | {q['player_fps']} | |")
    return "\n".join(lines) + "\n"
