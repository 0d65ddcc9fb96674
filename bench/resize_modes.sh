#!/usr/bin/env bash
# PSNR-Y of uniform / paper / optimal on a directory of frames for the 4 combinations of
# downscale mode (frame|block) and reconstruction border (context|tile); bicubic scorer and upscaler.
# usage: bench/resize_modes.sh DATA_DIR OUT_DIR
set -euo pipefail
data=${1:?data dir}; out=${2:?out dir}
mkdir -p "$out"
for mode in frame block; do
  for border in context tile; do
    bbmr-eval images "$data" --mode "$mode" --border "$border" --json "$out/eval_${mode}_${border}.json" >/dev/null
  done
done
python -m bench.summarize_eval "$out"/eval_*.json
