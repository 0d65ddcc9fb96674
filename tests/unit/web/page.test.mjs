// Unit tests of the browser player's pure stages (node --test; run by tests/unit/test_web_js.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import { pick, SRSpeed, SAFETY } from '../../../player/web/app/abr.js';
import { level } from '../../../player/web/app/sr.js';
import { checkManifest, LoadError } from '../../../player/web/app/loader.js';
import { sha256Js } from '../../../player/web/app/sha256.js';

const R = (name, kind, kbps, psnr) => ({ name, kind, bitrate_kbps: kbps, psnr_y: psnr });
const ladder = [R('p1', 'plain', 100, 30), { ...R('s1', 'plain-sr', 110, 32), web_model: {} },
  R('p2', 'plain', 300, 36), R('b1', 'bbmr', 120, 40)];
const all = () => true;

test('pick: the best measured rendition under SAFETY x the estimate', () => {
  assert.equal(pick(ladder, 130e3 / SAFETY, all, false), 3); // bbmr fits and is best
  assert.equal(pick(ladder, 130e3 / SAFETY, (i) => i !== 3, false), 1); // not playable: never picked
  assert.equal(pick(ladder, 1e9, (i) => i !== 3, false), 2);
});

test('pick: nothing fits or no estimate -> the lowest playable', () => {
  assert.equal(pick(ladder, 50e3, all, false), 0);
  assert.equal(pick(ladder, 0, all, false), 0);
  assert.equal(pick(ladder, 0, (i) => i > 0, false), 1);
});

test('pick: SR too slow -> the best rendition that runs no model and fits', () => {
  assert.equal(pick(ladder, 115e3 / SAFETY, all, true), 0);
  assert.equal(pick(ladder, 130e3 / SAFETY, all, true), 3); // BBMR is unpacked by the canvas: not excluded
  assert.equal(pick(ladder, 1e9, (i) => i !== 3, true), 2);
  assert.equal(pick([{ ...R('s', 'plain-sr', 10, 30), web_model: {} }], 1e9, all, true), -1);
  assert.equal(pick([R('s', 'plain-sr', 10, 30)], 1e9, all, true), 0); // no model: drawn bicubic, never slow
});

test('level: saturating at both ends', () => {
  assert.deepEqual([0, 1, 0.5, -3, 7, NaN, Infinity, -Infinity, 1e12].map(level), [0, 255, 128, 0, 255, 0, 255, 0, 255]);
});

test('pick: unmeasured renditions and ties by bitrate', () => {
  const l = [R('a', 'plain', 100, null), R('b', 'plain', 200, null), R('c', 'plain', 150, 20)];
  assert.equal(pick(l, 1e9, all, false), 2);
  assert.equal(pick([R('a', 'plain', 100, 30), R('b', 'plain', 200, 30)], 1e9, all, false), 1);
});

test('SRSpeed: slow once the median of enough frames exceeds the frame period', () => {
  const s = new SRSpeed(25, 5, 3); // 40 ms
  s.add(100); s.add(100);
  assert.equal(s.slow, false); // too few frames
  s.add(10);
  assert.equal(s.slow, true);
  for (let i = 0; i < 5; i++) s.add(10);
  assert.equal(s.slow, false); // the window forgets
});

test('sha256Js equals node crypto at every padding boundary', () => {
  for (const n of [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 1000, 100003]) {
    const b = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 255);
    assert.equal(sha256Js(b.buffer), createHash('sha256').update(b).digest('hex'), `n=${n}`);
  }
});

const manifest = () => ({
  version: 1, source: { width: 640, height: 360, fps: [24, 1] }, block: 128,
  renditions: [{ name: 'a', kind: 'plain-sr', playlist: 'a.m3u8', bitrate_kbps: 10, lr_width: 160, lr_height: 90,
    psnr_y: 30, scales: [4], overall: 4, layout: 'plain',
    web_model: { file: 'web/m.onnx', bytes: 10, sha256: 'a'.repeat(64), scale: 4 } }],
});

test('checkManifest: accepts a good manifest, rejects what the page must not trust', () => {
  assert.ok(checkManifest(manifest()));
  const hdr = manifest();
  hdr.renditions[0].video_range = 'PQ';
  assert.ok(checkManifest(hdr));
  const bad = [
    (m) => { m.version = 2; },
    (m) => { m.renditions[0].playlist = '../x.m3u8'; },
    (m) => { m.renditions[0].playlist = '/etc/passwd'; },
    (m) => { m.renditions[0].web_model.file = 'web/../../m.onnx'; },
    (m) => { m.renditions[0].web_model.sha256 = 'xyz'; },
    (m) => { m.renditions[0].web_model.bytes = 1e12; },
    (m) => { m.renditions[0].kind = 'plain'; },
    (m) => { m.renditions[0].kind = 'movie'; },
    (m) => { m.renditions[0].name = '<script>'; },
    (m) => { m.renditions[0].video_range = 'DolbyVision'; },
    (m) => { m.source.width = 1e9; },
    (m) => { m.renditions = []; },
    (m) => { m.renditions = Array(65).fill(m.renditions[0]); },
    (m) => { m.block = 0; },
    (m) => { m.renditions[0].scales = [3]; },
    (m) => { m.renditions[0].overall = 'x'; },
    (m) => { delete m.renditions[0].layout; },
  ];
  for (const edit of bad) {
    const m = manifest();
    edit(m);
    assert.throws(() => checkManifest(m), LoadError, edit.toString());
  }
  assert.throws(() => checkManifest(null), LoadError);
});

// ---- scale maps and the planes layout, against vectors written by the Python modules (test_web_js.py)
import { readFileSync } from 'node:fs';
import { crc32, MapError, parseMap } from '../../../player/web/app/scalemap.js';
import { planesGeometry } from '../../../player/web/app/blocks.js';

const vectors = () => JSON.parse(readFileSync(process.env.BBMR_WEB_VECTORS, 'utf8'));
const bytes = (hex) => Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16));

test('parseMap reads what bbmr_stream.scalemap writes', () => {
  for (const v of vectors().maps) {
    const m = parseMap(bytes(v.hex));
    assert.deepEqual([m.gridH, m.gridW], v.grid);
    assert.deepEqual(m.scaleSet, v.scales);
    assert.equal(m.frame, v.frame);
    assert.deepEqual(Array.from(m.factors), v.factors);
  }
});

test('parseMap refuses every damaged map (one bit flipped anywhere, truncated, extended)', () => {
  const v = vectors().maps[1];
  const good = bytes(v.hex);
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  for (let i = 0; i < good.length * 8; i++) {
    const b = good.slice();
    b[i >> 3] ^= 1 << (i & 7);
    assert.throws(() => parseMap(b), MapError, `bit ${i}`);
  }
  assert.throws(() => parseMap(good.slice(0, good.length - 1)), MapError);
  assert.throws(() => parseMap(Uint8Array.from([...good, 0])), MapError);
  assert.throws(() => parseMap(new Uint8Array(3)), MapError);
});

test('parseMap: a huge grid in a small map is refused before anything is allocated', () => {
  // 65535 x 32769 blocks, 4 scales (2 bits each): 32-bit arithmetic would wrap the length to a few KB
  const n = 4;
  const blocks = 65535 * 32769;
  const wrapped = ((blocks * 2 + 7) | 0) >>> 3; // what a 32-bit computation would expect
  const len = 17 + n + (wrapped % 100000) + 4;
  const b = new Uint8Array(len);
  b.set([66, 66, 83, 77, 1, 0, 0, 0, 0, 0, 0, 128, 255, 255, 128, 1, n, 2, 4, 8, 16]);
  const t = Date.now();
  assert.throws(() => parseMap(b), /length/);
  assert.ok(Date.now() - t < 1000);
});

test('level equals bbmr_stream.resize.levels8 (torch, float32) on values around every half level', () => {
  const { values, levels } = vectors().levels;
  const got = values.map(level);
  const bad = got.map((g, i) => [g, levels[i], values[i]]).filter(([g, e]) => g !== e);
  assert.deepEqual(bad.slice(0, 5), []);
});

test('planesGeometry stacks the planes as bbmr_stream.planes.stack', () => {
  for (const v of vectors().planes) {
    const g = planesGeometry(v.width, v.height, 128, v.scales);
    assert.deepEqual([g.picW, g.picH], v.pic, JSON.stringify(v));
    assert.deepEqual(g.boxes, v.boxes, JSON.stringify(v));
  }
});
