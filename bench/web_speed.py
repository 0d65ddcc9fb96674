"""In-page speed of the browser player (``bbmr-play --web``) on this machine: onnxruntime-web in headless
Chromium (WebAssembly, no GPU here) super-resolving a plain-sr rendition, beside the Python player doing the
same work (the same rendition, model and frames, headless, eager torch and the default backend) in the same run.

Cases: a generated pan (bbmr_stream.sample) packaged as one plain-sr rung: 960x540 from 480x270 (x2) and
1920x1080 from 480x270 (x4), each with FastSR and OmniSR-light (``--upscaler fast|omnisr``: the rung is
measured on 2 frames with it, so the packager exports its ONNX graph). Per case: the page plays the rung pinned
to its end in real time (SR runs on the frames it can, the others are dropped; frames shown before the model is
loaded are the browser's bicubic), then again with every frame super-resolved (``&every=1``) for ``--frames``
frames (OmniSR-light: ``--frames-omnisr``). Reported: SR ms per frame (every frame: median of the page's last
12), SR fps and fps shown (real time: frames / seconds since the first frame), frames dropped, WebAssembly
threads; the Python player's fps on the same rung (its ``upscale`` stage), and the ratio page / Python.

usage: python -m bench.web_speed [--out bench/results/web] [--seconds 6]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

CASES = [("960x540_x2", (960, 540), 2), ("1920x1080_x4", (1920, 1080), 4)]
UPSCALERS = ("fast", "omnisr")


def package_case(d: Path, size: tuple[int, int], k: int, upscaler: str, seconds: float) -> Path:
    from bbmr_stream.family import parse_ladder
    from bbmr_stream.sample import write_sample
    from packager import PackageConfig, package

    clip = d / f"pan_{size[0]}x{size[1]}.mp4"
    if not clip.exists():
        write_sample(clip, size[0], size[1], seconds, 30)
    out = d / f"stream_{size[0]}_{upscaler}"
    package(PackageConfig(str(clip), str(out), segment=2.0, upscaler=upscaler, device="cpu", measure_frames=2,
                          niqe_frames=0), tuple(parse_ladder(f"plain-sr:{k}:28")))
    return out


def python_fps(stream: Path, rendition: str, frames: int) -> dict:
    """The Python player on the same rung: frames per second of its SR stage, and overall."""
    from player import PlayConfig, play

    t = time.time()
    rep = play(PlayConfig(str(stream), rendition=rendition, headless=True, niqe_every=0, max_frames=frames,
                          device="cpu")).to_dict()
    wall = time.time() - t
    return {"frames": len(rep["frames"]), "stage_fps": rep["stage_fps"], "wall_s": round(wall, 2),
            "backend": rep["stream"].get("backend")}


def run(seconds: float, frames: int, frames_omnisr: int) -> dict:
    from bbmr_stream.manifest import load
    from player.web import WebConfig
    from player.web_selftest import web_selftest

    rows = []
    with tempfile.TemporaryDirectory(prefix="bbmr-web-speed-") as td:
        for name, size, k in CASES:
            for up in UPSCALERS:
                stream = package_case(Path(td), size, k, up, seconds)
                rend = load(stream).renditions[0]
                n = frames if up == "fast" else frames_omnisr
                page = web_selftest(WebConfig(str(stream), port=0, rendition=rend.name), 100000, timeout=900)
                every = web_selftest(WebConfig(str(stream), port=0, rendition=rend.name), n, timeout=1800,
                                     extra={"every": 1})
                py = python_fps(stream, rend.name, n)
                sr_fps_py = py["stage_fps"].get("superresolve") or py["stage_fps"].get("upscale")
                rows.append({"case": name, "upscaler": up, "lr": [rend.lr_width, rend.lr_height], "hr": list(size),
                             "web_model": rend.web_model.file if rend.web_model else None,
                             "web_model_bytes": rend.web_model.bytes if rend.web_model else None,
                             "page": {k2: page[k2] for k2 in ("frames_shown", "frames_superresolved", "fps_shown",
                                                              "fps_superresolved", "sr_ms_median", "frames_dropped",
                                                              "backend", "wasm_threads", "elapsed_s")},
                             "every_frame": {k2: every[k2] for k2 in ("frames_superresolved", "fps_superresolved",
                                                                      "sr_ms_median", "elapsed_s")},
                             "parity_psnr_y": every["parity"]["psnr_y"] if every["parity"] else None,
                             "python": py,
                             "page_sr_ms_vs_python": (round(every["sr_ms_median"] * sr_fps_py / 1000, 2)
                                                      if every["sr_ms_median"] and sr_fps_py else None)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"machine": {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count()},
            "convention": "page: onnxruntime-web in headless Chromium (Debian), WebAssembly; real time: the video "
                          "plays at its rate, SR runs on the frames it can (the others dropped), SR fps = frames "
                          "super-resolved / seconds since the first frame; every frame (&every=1): the video waits "
                          "for SR, SR ms per frame = median of the page's last 12 (LR read from the video, model, "
                          "8-bit canvas write); python: bbmr-play headless on the same rung, its upscale stage's "
                          "frames per second (default backend); page / Python = page ms per frame x Python SR fps "
                          "/ 1000 (how many times the page's time per frame)", "seconds": seconds, "rows": rows}


def markdown(res: dict) -> str:
    lines = ["## Browser player speed (onnxruntime-web, WebAssembly, headless Chromium)", "",
             f"Machine: {res['machine']['cores']} cores, no GPU. {res['convention']}.", "",
             "| LR -> HR | model | ONNX KB | page SR ms/frame (every frame) | page SR fps (real time) | "
             "page fps shown (real time) | dropped (real time) | Python SR fps | page / Python (time) | "
             "parity PSNR-Y dB |", "|---|---|---|---|---|---|---|---|---|---|"]
    f = lambda v, fmt="{}": "-" if v is None else fmt.format(v)  # noqa: E731
    for r in res["rows"]:
        p, e, py = r["page"], r["every_frame"], r["python"]
        sr_py = py["stage_fps"].get("superresolve") or py["stage_fps"].get("upscale")
        lines.append(f"| {r['lr'][0]}x{r['lr'][1]} -> {r['hr'][0]}x{r['hr'][1]} | "
                     f"{'FastSR' if r['upscaler'] == 'fast' else 'OmniSR-light'} x{r['hr'][0] // r['lr'][0]} | "
                     f"{(r['web_model_bytes'] or 0) / 1024:.0f} | {f(e['sr_ms_median'], '{:.0f}')} | "
                     f"{f(p['fps_superresolved'])} | {f(p['fps_shown'])} | {f(p['frames_dropped'])} | "
                     f"{f(sr_py, '{:.2f}')} | {f(r['page_sr_ms_vs_python'])} | {f(r['parity_psnr_y'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bbmr_stream.imageio import write_text_atomic
    from bench.common import write_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/web")
    ap.add_argument("--seconds", type=float, default=6.0, help="clip length (the page plays in real time)")
    ap.add_argument("--frames", type=int, default=60, help="frames super-resolved with FastSR (every frame)")
    ap.add_argument("--frames-omnisr", type=int, default=6,
                    help="frames super-resolved with OmniSR-light (every frame)")
    args = ap.parse_args(argv)
    res = run(args.seconds, args.frames, args.frames_omnisr)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(args.out) / "speed.json", json.dumps(res, indent=1))  # before the table can fail
    write_report(args.out, "speed", res, markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
