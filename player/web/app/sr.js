// Stage 3, super-resolution: a rendition's client model (manifest web_model, ONNX, exported by the packager)
// fetched with its size limit, verified against its sha256, run in onnxruntime-web on WebGPU when the browser
// has an adapter, else on WebAssembly. Any failure is not fatal: the rendition is shown with the browser's
// bicubic scaling and `reason` says why (the page lists it).

import { fetchBounded, LIMITS } from './loader.js';
import { sha256Hex } from './sha256.js';

// Which execution provider onnxruntime-web uses here: 'webgpu' when an adapter exists, else 'wasm'.
export async function pickBackend(ort, wanted) {
  if (wanted === 'wasm') return 'wasm';
  try {
    if (navigator.gpu && ort.env.webgpu !== undefined) {
      const adapter = await navigator.gpu.requestAdapter();
      if (adapter) return 'webgpu';
    }
  } catch (e) { /* no adapter: WebAssembly */ }
  if (wanted === 'webgpu') throw new Error('WebGPU requested (?backend=webgpu) and this browser has no adapter');
  return 'wasm';
}

// bbmr_stream.resize.levels8 in float32 as torch computes it: clamp to [0, 1], x 255, + 0.5, floor
const f32 = Math.fround;
export function level(v) {
  const x = v > 1 ? 1 : v >= 0 ? v : 0; // NaN -> 0
  return Math.floor(f32(f32(f32(x) * 255) + 0.5));
}

export class SR {
  constructor(ort, base, backend) {
    this.ort = ort;
    this.base = base;
    this.backend = backend;
    this.models = new Map(); // web_model.file -> Promise<{session, reason}>
  }

  // {session, reason}: session null (with the reason) when the model cannot be used.
  model(rend) {
    const ref = rend.web_model;
    if (!ref) return Promise.resolve({ session: null, reason: 'no web model in the manifest (played bicubic)' });
    if (!this.models.has(ref.file)) this.models.set(ref.file, this.load(ref));
    return this.models.get(ref.file);
  }

  async load(ref) {
    try {
      const buf = await fetchBounded(this.base + ref.file, Math.min(ref.bytes, LIMITS.modelBytes), ref.file);
      if (buf.byteLength !== ref.bytes) throw new Error(`${buf.byteLength} bytes, the manifest says ${ref.bytes}`);
      const digest = await sha256Hex(buf);
      if (digest !== ref.sha256) throw new Error(`sha256 ${digest.slice(0, 12)}... is not the manifest's`);
      const session = await this.ort.InferenceSession.create(new Uint8Array(buf),
        { executionProviders: [this.backend], graphOptimizationLevel: 'all' });
      return { session, reason: null };
    } catch (e) {
      return { session: null, reason: `model ${ref.file} not usable: ${e.message || e}; bicubic instead` };
    }
  }

  // The LR frame (RGBA ImageData) through the model -> RGBA ImageData cropped to width x height, values
  // clamped to [0, 1] and rounded half up to 8 bits as the Python player does (bbmr_stream.resize.levels8).
  async run(session, lr, width, height) {
    const { width: w, height: h, data: px } = lr;
    const n = w * h;
    const x = new Float32Array(3 * n);
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      x[i] = px[j] / 255;
      x[n + i] = px[j + 1] / 255;
      x[2 * n + i] = px[j + 2] / 255;
    }
    const out = await session.run({ x: new this.ort.Tensor('float32', x, [1, 3, h, w]) });
    const y = out.y;
    const [, , H, W] = y.dims;
    const d = y.data;
    const ow = Math.min(width, W);
    const oh = Math.min(height, H);
    const img = new ImageData(ow, oh);
    const o = img.data;
    const plane = H * W;
    for (let r = 0; r < oh; r++) {
      for (let c = 0, k = r * W, m = r * ow * 4; c < ow; c++, k++, m += 4) {
        o[m] = level(d[k]);
        o[m + 1] = level(d[plane + k]);
        o[m + 2] = level(d[2 * plane + k]);
        o[m + 3] = 255;
      }
    }
    if (y.dispose) y.dispose();
    return img;
  }
}
