// Stage 2, ABR: the rendition for the next segment, from hls.js's bandwidth estimate and the manifest's
// measured quality, the rule of bbmr-play (player/abr.py): among the renditions whose bitrate is at most
// SAFETY x the estimate, the one of highest PSNR-Y (rungs of different families are not ordered by bitrate
// alone; unmeasured ones and ties by bitrate); none fits (or no estimate yet: the caller passes 0 until the
// first segment is in): the lowest. Renditions this page cannot show are never picked; once super-resolution
// has been measured slower than the frame rate, renditions that run a model are skipped for the rest of the
// session (the best other rendition that fits plays instead: a counted fallback; the page does not probe SR
// again).

export const SAFETY = 0.9;
// a rendition the page runs a model on (plain-sr with its ONNX model); BBMR/uniform are unpacked with the canvas
export const runsModel = (r) => r.kind === 'plain-sr' && !!r.web_model;

const better = (a, b) => { // is rendition a preferred to b?
  const qa = a.psnr_y ?? -Infinity;
  const qb = b.psnr_y ?? -Infinity;
  return qa !== qb ? qa > qb : a.bitrate_kbps > b.bitrate_kbps;
};

// Index into `rends` (manifest renditions) of the pick; `playable(i)` false for renditions the page cannot show.
export function pick(rends, estimateBps, playable, srSlow) {
  const ok = rends.map((r, i) => playable(i) && !(srSlow && runsModel(r)));
  let idx = -1;
  let lowest = -1;
  rends.forEach((r, i) => {
    if (!ok[i]) return;
    if (lowest < 0 || r.bitrate_kbps < rends[lowest].bitrate_kbps) lowest = i;
    if (estimateBps > 0 && r.bitrate_kbps * 1000 <= SAFETY * estimateBps && (idx < 0 || better(r, rends[idx]))) {
      idx = i;
    }
  });
  return idx >= 0 ? idx : lowest;
}

// Keeps the speed of super-resolution: the median of the last `window` frame times (ms) against the frame
// period; slow after `min` frames when the median exceeds it.
export class SRSpeed {
  constructor(fps, window = 12, min = 5) {
    this.period = 1000 / fps;
    this.window = window;
    this.min = min;
    this.ms = [];
  }

  add(ms) {
    this.ms.push(ms);
    if (this.ms.length > this.window) this.ms.shift();
  }

  median() {
    if (!this.ms.length) return null;
    const s = [...this.ms].sort((a, b) => a - b);
    return s[s.length >> 1];
  }

  get slow() { return this.ms.length >= this.min && this.median() > this.period; }
}
