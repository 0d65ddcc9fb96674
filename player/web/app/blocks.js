// BBMR and uniform renditions in the page: the coded picture's planes (bbmr_stream/planes.py, version 2) cut
// with the frame's scale map and upscaled per block with the browser's canvas scaling ("bicubic per block",
// the Python player's `context` border: bbmr_stream/upscale.py): for each scale k, the frame at 1/k is
// assembled from every block (blocks of other scales resampled to 1/k), scaled by k, and its blocks of scale k
// are kept. Not JointSR: the page labels it so.

// Geometry of the planes layout for a source of width x height, `block`-pixel blocks and the pack scales
// (BBMR: the stream's scale set; uniform: its one factor).
export function planesGeometry(width, height, block, scales) {
  const gridW = Math.ceil(width / block);
  const gridH = Math.ceil(height / block);
  const coded = (n, k, padded) => {
    const c = Math.ceil(n / k);
    return Math.min(c + (c % 2), padded / k);
  };
  const sizes = scales.map((k) => [coded(width, k, gridW * block), coded(height, k, gridH * block)]);
  const boxes = [[0, 0, sizes[0][0], sizes[0][1]]];
  let x = 0;
  for (const [w, h] of sizes.slice(1)) {
    boxes.push([x, sizes[0][1], w, h]);
    x += w;
  }
  const picW = Math.max(sizes[0][0], x);
  const picH = sizes[0][1] + Math.max(0, ...sizes.slice(1).map((s) => s[1]));
  return { width, height, block, gridW, gridH, scales, boxes, picW, picH };
}

const canvas = (w, h) => {
  const c = new OffscreenCanvas(w, h);
  const ctx = c.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  return [c, ctx];
};

export class BlockRenderer {
  constructor(geo) {
    this.g = geo;
    const { gridW, gridH, block } = geo;
    this.planes = new Map(); // k -> [canvas, ctx] of the plane padded to whole blocks at 1/k
    this.assembled = new Map(); // k -> [canvas, ctx] of the frame at 1/k from every block
    for (const k of geo.scales) {
      this.planes.set(k, canvas(gridW * block / k, gridH * block / k));
      this.assembled.set(k, canvas(gridW * block / k, gridH * block / k));
    }
    [this.hr, this.hrCtx] = canvas(gridW * block, gridH * block);
  }

  // Check a parsed map against this geometry (grid and scales); a message, or null when it fits.
  misfit(map) {
    const g = this.g;
    if (map.gridH !== g.gridH || map.gridW !== g.gridW || map.block !== g.block) {
      return `scale map grid ${map.gridH}x${map.gridW} of ${map.block} px, the stream's ${g.gridH}x${g.gridW}`;
    }
    for (const f of map.factors) if (!g.scales.includes(f)) return `scale map uses x${f}, the picture has no plane`;
    return null;
  }

  // Draw the frame (`picture`: the video element, its coded picture of picW x picH) with `map` on `out`
  // (a 2D context of the source's size).
  draw(picture, map, out) {
    const g = this.g;
    const { block, gridW } = g;
    g.scales.forEach((k, i) => { // each plane, padded to whole blocks by edge replication
      const [x, y, w, h] = g.boxes[i];
      const [c, ctx] = this.planes.get(k);
      ctx.drawImage(picture, x, y, w, h, 0, 0, w, h);
      if (w < c.width) ctx.drawImage(c, w - 1, 0, 1, h, w, 0, c.width - w, h);
      if (h < c.height) ctx.drawImage(c, 0, h - 1, c.width, 1, 0, h, c.width, c.height - h);
    });
    for (const k of g.scales) {
      if (!map.factors.includes(k)) continue;
      const t = block / k;
      const [a, actx] = this.assembled.get(k);
      actx.drawImage(this.planes.get(k)[0], 0, 0);
      map.factors.forEach((f, b) => { // blocks of other scales, resampled from their plane to 1/k
        if (f === k) return;
        const s = block / f;
        const bx = b % gridW;
        const by = (b - bx) / gridW;
        actx.drawImage(this.planes.get(f)[0], bx * s, by * s, s, s, bx * t, by * t, t, t);
      });
      this.hrCtx.drawImage(a, 0, 0, a.width * k, a.height * k);
      map.factors.forEach((f, b) => {
        if (f !== k) return;
        const bx = b % gridW;
        const by = (b - bx) / gridW;
        out.drawImage(this.hr, bx * block, by * block, block, block, bx * block, by * block, block, block);
      });
    }
  }
}
