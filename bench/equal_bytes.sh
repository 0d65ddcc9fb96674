#!/usr/bin/env bash
# End-to-end BBMR vs uniform x4 at equal bytes on one clip, with the shipped models:
# package (light scorer; BBMR rungs measured with JointSR, uniform rungs with OmniSR-O), then play the middle
# BBMR rung headless against the source with --compare uniform,bicubic (the uniform rung nearest in bitrate)
# and NIQE on every frame; then the gain of each BBMR rung over the uniform-x4 rate curve at equal bytes
# (bench/equal_bytes_gain.py). PSNR-Y: BT.601, crop 0, mean over frames.
# usage: bench/equal_bytes.sh INPUT.mp4 OUT_DIR [FRAMES] [LADDER] [PLAY_RUNG]
set -euo pipefail
in=${1:?input video}; out=${2:?out dir}; n=${3:-60}
ladder=${4:-bbmr:12,bbmr:16,bbmr:20,uniform:4,uniform:8,uniform:12,uniform:16}
rung=${5:-bbmr_crf16}
mkdir -p "$out"
bbmr-package "$in" --out "$out/stream" --force --max-frames "$n" --ladder "$ladder" | tee "$out/package.txt"
bbmr-play "$out/stream" --headless --rendition "$rung" --reference "$in" --max-frames "$n" \
  --compare uniform,bicubic --niqe-every 1 --report "$out/report.json" | tee "$out/play.txt"
cp "$out/stream/manifest.json" "$out/manifest.json"
python -m bench.equal_bytes_gain "$out/manifest.json" --json "$out/gain.json" | grep "^#"
