// The scale map of a BBMR/uniform frame (bbmr_stream/scalemap.py, version 1; docs/formats.md), as carried in
// the SEI user_data_unregistered message under BBMR_UUID: parsed with every field checked (magic, version,
// flags, sizes, CRC-32, padding bits, indices inside the scale set). Any fault throws MapError.

export const BBMR_UUID = 'ae77f864-b398-59fd-9842-bb2b72d61740';
export class MapError extends Error {}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes, end = bytes.length) { // zlib.crc32
  let c = 0xffffffff;
  for (let i = 0; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const bitsPerBlock = (n) => (n > 1 ? Math.max(1, Math.ceil(Math.log2(n))) : 1);

// Uint8Array -> {frame, block, gridH, gridW, scaleSet, factors (Uint8Array, raster order)}
export function parseMap(data) {
  const fail = (m) => { throw new MapError(m); };
  if (!(data instanceof Uint8Array) || data.length < 21) fail(`scale map too short (${data && data.length} bytes)`);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (String.fromCharCode(data[0], data[1], data[2], data[3]) !== 'BBSM') fail('bad magic');
  if (data[4] !== 1) fail(`unsupported scale map version ${data[4]}`);
  if (data[5] !== 0) fail('reserved flags set');
  const frame = v.getUint32(6);
  const block = v.getUint16(10);
  const gridH = v.getUint16(12);
  const gridW = v.getUint16(14);
  const n = data[16];
  if (n < 1 || n > 16) fail(`bad scale count ${n}`);
  if (gridH < 1 || gridW < 1) fail('empty grid');
  if (block < 1) fail('block size 0');
  const bits = bitsPerBlock(n);
  const blocks = gridH * gridW; // up to 2^32: plain Number arithmetic below, never 32-bit operators
  const m = Math.ceil((blocks * bits) / 8);
  const expect = 17 + n + m + 4;
  if (data.length !== expect) fail(`length ${data.length}, the header says ${expect}`); // before any allocation
  if (crc32(data, expect - 4) !== v.getUint32(expect - 4)) fail('CRC mismatch');
  const scaleSet = Array.from(data.subarray(17, 17 + n));
  for (let i = 0; i < n; i++) {
    if (scaleSet[i] < 1 || (i && scaleSet[i] <= scaleSet[i - 1]) || block % scaleSet[i]) fail('bad scale set');
  }
  const factors = new Uint8Array(blocks);
  const base = 17 + n;
  for (let b = 0; b < blocks; b++) {
    let idx = 0;
    for (let j = 0; j < bits; j++) {
      const bit = b * bits + j;
      idx = (idx << 1) | ((data[base + Math.floor(bit / 8)] >> (7 - (bit % 8))) & 1);
    }
    if (idx >= n) fail(`block index ${idx} outside the scale set of ${n}`);
    factors[b] = scaleSet[idx];
  }
  for (let bit = blocks * bits; bit < m * 8; bit++) {
    if ((data[base + Math.floor(bit / 8)] >> (7 - (bit % 8))) & 1) fail('non-zero padding bits');
  }
  return { frame, block, gridH, gridW, scaleSet, factors };
}
