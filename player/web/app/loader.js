// Stage 1, the loader: where the stream is, and its manifest.json (what bbmr-play reads), fetched with a size
// limit and checked for what this page relies on before anything plays. Media segments are hls.js's.

export const LIMITS = Object.freeze({ manifestBytes: 16 << 20, modelBytes: 64 << 20, renditions: 64 });
const FAMILIES = new Set(['plain', 'plain-sr', 'uniform', 'bbmr']);

export class LoadError extends Error {}

// The stream's base URL (ends with '/') and its master playlist, from the page's ?src= (a directory or its
// master.m3u8, relative to the page or absolute); default: the stream this server publishes.
export function streamBase(src) {
  const url = new URL(src || 'stream/', document.baseURI);
  if (url.pathname.endsWith('.m3u8')) url.pathname = url.pathname.replace(/[^/]*$/, '');
  else if (!url.pathname.endsWith('/')) url.pathname += '/';
  url.search = '';
  url.hash = '';
  return url.href;
}

// fetch -> ArrayBuffer of at most `limit` bytes (Content-Length checked first, then the body as it arrives).
export async function fetchBounded(url, limit, what) {
  const res = await fetch(url);
  if (!res.ok) throw new LoadError(`${what}: HTTP ${res.status}`);
  const len = Number(res.headers.get('Content-Length') || 0);
  if (len > limit) throw new LoadError(`${what}: ${len} bytes, more than ${limit}`);
  const reader = res.body.getReader();
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > limit) {
      reader.cancel();
      throw new LoadError(`${what}: more than ${limit} bytes`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.byteLength; }
  return out.buffer;
}

const VIDEO_RANGES = new Set(['SDR', 'PQ', 'HLG']); // HLS VIDEO-RANGE (bbmr_stream/manifest.py)

function need(ok, msg) { if (!ok) throw new LoadError(`manifest.json: ${msg}`); }
const isNum = (v, lo, hi) => typeof v === 'number' && Number.isFinite(v) && v >= lo && v <= hi;
const isSafePath = (p) => typeof p === 'string' && p.length > 0 && p.length < 512 && !p.startsWith('/')
  && !p.includes('\\') && !p.includes('\0') && !p.split('/').some((s) => s === '' || s === '.' || s === '..');

// The manifest's fields this page uses, checked (types, ranges, paths that stay in the stream directory).
export function checkManifest(m) {
  need(m && typeof m === 'object' && m.version === 1, 'not a version-1 manifest');
  const s = m.source;
  need(s && isNum(s.width, 1, 16384) && isNum(s.height, 1, 16384), 'source width/height');
  need(Array.isArray(s.fps) && isNum(s.fps[0], 1, 1e9) && isNum(s.fps[1], 1, 1e6), 'source fps');
  need(Number.isInteger(m.block) && m.block >= 8 && m.block <= 1024, 'block');
  need(Array.isArray(m.renditions) && m.renditions.length >= 1 && m.renditions.length <= LIMITS.renditions,
    'renditions');
  for (const r of m.renditions) {
    need(typeof r.name === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(r.name), 'rendition name');
    need(FAMILIES.has(r.kind), `rendition ${r.name}: unknown family ${r.kind}`);
    need(isSafePath(r.playlist), `rendition ${r.name}: playlist path`);
    need(isNum(r.bitrate_kbps, 0, 1e7) && isNum(r.lr_width, 1, 16384) && isNum(r.lr_height, 1, 16384),
      `rendition ${r.name}: bitrate or size`);
    need(r.psnr_y === null || r.psnr_y === undefined || isNum(r.psnr_y, 0, 1000), `rendition ${r.name}: psnr_y`);
    need(Array.isArray(r.scales) && r.scales.length >= 1 && r.scales.length <= 16
      && r.scales.every((k) => Number.isInteger(k) && k >= 1 && k <= 256 && m.block % k === 0)
      && Number.isInteger(r.overall) && r.overall >= 1 && r.overall <= 64 && typeof r.layout === 'string',
    `rendition ${r.name}: scales, overall or layout`);
    need(r.video_range === undefined || VIDEO_RANGES.has(r.video_range), `rendition ${r.name}: video_range`);
    const w = r.web_model;
    if (w !== null && w !== undefined) {
      need(r.kind === 'plain-sr' && isSafePath(w.file) && isNum(w.bytes, 1, LIMITS.modelBytes)
        && /^[0-9a-f]{64}$/.test(w.sha256) && isNum(w.scale, 1, 16), `rendition ${r.name}: web_model`);
    }
  }
  return m;
}

export async function loadManifest(base) {
  const buf = await fetchBounded(base + 'manifest.json', LIMITS.manifestBytes, 'manifest.json');
  let m;
  try {
    m = JSON.parse(new TextDecoder().decode(buf));
  } catch (e) {
    throw new LoadError(`manifest.json: not JSON (${e.message})`);
  }
  return checkManifest(m);
}
