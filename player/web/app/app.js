// The page of `bbmr-play STREAM --web`: hls.js plays master.m3u8 through Media Source Extensions into a hidden
// <video>; every presented frame (requestVideoFrameCallback) is drawn on the canvas at the source's size:
// plain renditions scaled by the browser (a display's bicubic), plain-sr renditions super-resolved by their
// client model in onnxruntime-web. Stages, as hls.js reads: loader.js (manifest), abr.js (which rendition),
// sr.js (models), this file (playback, drawing, overlay, self-test report).
//
// Query: ?src=STREAM (directory or master.m3u8 URL; default the served stream/), &rendition=NAME (pin one),
// &backend=auto|wasm|webgpu, &max_kbps=K (cap the bandwidth estimate the ABR sees: a slow link),
// &fps_target=F (the rate super-resolution must keep up with; default the video's), &selftest=N (play N
// frames, then POST the results to selftest/ on this server), &every=1 (super-resolve every frame: the video
// pauses while the model runs, slower than real time when SR is; for measurements and close looks).

/* global Hls, ort */
import { loadManifest, streamBase } from './loader.js';
import { pick, runsModel, SRSpeed } from './abr.js';
import { pickBackend, SR } from './sr.js';
import { BBMR_UUID, parseMap } from './scalemap.js';
import { BlockRenderer, planesGeometry } from './blocks.js';

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const SELFTEST = Math.max(0, Math.min(100000, Number(query.get('selftest') || 0) | 0));
const PARITY_FRAME = 3; // the self-test compares this super-resolved (or unpacked) frame with the Python player's
const MAX_LOG = 50;
const MAX_KBPS = Number(query.get('max_kbps')) || Infinity;
const EVERY = query.get('every') === '1';

const stats = {
  frames_presented: 0, frames_shown: 0, frames_superresolved: 0, frames_dropped_sr_busy: 0, sr_fallbacks: 0,
  renditions_played: [], level_switches: 0, hls_errors: [], recovered: 0, errors: [], notes: [],
  backend: null, started: performance.now(), first_media_time: null, last_media_time: null, first_frame_at: null,
  last_frame_at: null,
  sr_ms_median: null, decisions: [], frames_unpacked: 0, maps_received: 0, maps_invalid: 0,
  frames_without_map: 0,
};
const MAP_KEEP_S = 30; // scale maps kept behind the playhead (seconds of media)

function note(msg) {
  if (stats.notes.includes(msg)) return;
  stats.notes.push(msg);
  const li = document.createElement('li');
  li.textContent = msg;
  $('notes').appendChild(li);
}

function logError(msg) {
  if (stats.errors.length < MAX_LOG) stats.errors.push(String(msg).slice(0, 500));
}
window.addEventListener('error', (e) => logError(e.message));
window.addEventListener('unhandledrejection', (e) => logError(e.reason && (e.reason.message || e.reason)));
const consoleError = console.error.bind(console);
console.error = (...args) => { logError(args.join(' ')); consoleError(...args); };

async function post(path, body, type) {
  try {
    await fetch(path, { method: 'POST', body, headers: { 'Content-Type': type } });
  } catch (e) { /* the server is gone: nothing to report to */ }
}

class Page {
  constructor(manifest, base, sr) {
    this.m = manifest;
    this.base = base;
    this.sr = sr;
    this.video = $('video');
    this.screen = $('screen');
    this.W = manifest.source.width;
    this.H = manifest.source.height;
    this.fps = manifest.source.fps[0] / manifest.source.fps[1];
    this.screen.width = this.W;
    this.screen.height = this.H;
    this.ctx = this.screen.getContext('2d');
    this.ctx.imageSmoothingEnabled = true;
    this.ctx.imageSmoothingQuality = 'high';
    this.lr = null; // OffscreenCanvas at the LR frame's size
    this.busy = false;
    this.speed = new SRSpeed(Number(query.get('fps_target')) || this.fps);
    this.models = new Map(); // web_model file -> {session, reason} once loaded
    this.levelRend = []; // hls level index -> manifest rendition index (-1: not in the manifest)
    this.pinned = query.get('rendition');
    this.selftestSent = false;
    this.paritySent = false;
    this.maps = new Map(); // hls level -> [{pts, map}] in arrival order (the SEI scale maps, hls.js userdata)
    this.renderers = new Map(); // rendition name -> BlockRenderer (BBMR, uniform)
  }

  // The page draws SDR on its canvas: an HDR title's HDR renditions are left to its SDR ladder.
  playable(i) {
    const r = this.m.renditions[i];
    if ((r.video_range ?? 'SDR') !== 'SDR') return false;
    return r.kind === 'plain' || r.kind === 'plain-sr' || (r.layout === 'planes' && !!this.renderer(r));
  }

  // The block renderer of a BBMR/uniform rendition in the planes layout (null: another layout, not shown here).
  renderer(r) {
    if (!this.renderers.has(r.name)) {
      let rr = null;
      if (r.layout === 'planes' && (r.kind === 'bbmr' || r.kind === 'uniform')) {
        const scales = r.kind === 'uniform' ? [r.overall] : r.scales;
        const g = planesGeometry(this.W, this.H, this.m.block, scales);
        if (g.picW === r.lr_width && g.picH === r.lr_height) rr = new BlockRenderer(g);
        else note(`${r.name}: its ${r.lr_width}x${r.lr_height} picture is not the planes layout of this page `
          + `(${g.picW}x${g.picH}): not played`);
      }
      this.renderers.set(r.name, rr);
    }
    return this.renderers.get(r.name);
  }

  onUserdata(d) {
    const lvl = d.frag ? d.frag.level : this.hls.currentLevel;
    if (!this.maps.has(lvl)) this.maps.set(lvl, []);
    const list = this.maps.get(lvl);
    for (const s of d.samples || []) {
      if (s.payloadType !== 5 || s.uuid !== BBMR_UUID || !s.userDataBytes) continue;
      stats.maps_received += 1;
      try {
        list.push({ pts: s.pts, map: parseMap(s.userDataBytes) });
      } catch (e) { // kept as a hole: the frames it served are concealed, not unpacked with an older map
        list.push({ pts: s.pts, map: null });
        stats.maps_invalid += 1;
        note(`invalid scale map at ${s.pts.toFixed(3)} s: ${e.message} (its frames keep the previous picture)`);
      }
    }
    list.sort((a, b) => a.pts - b.pts);
    const keep = this.video.currentTime - MAP_KEEP_S;
    while (list.length > 1 && list[1].pts < keep) list.shift();
  }

  // The map of the frame presented at `t` on level `lvl`: the last one carried at or before it (docs/formats.md:
  // a frame without a map has the previous frame's); null when there is none or that one was invalid.
  mapAt(lvl, t) {
    const list = this.maps.get(lvl) || [];
    const eps = 0.5 / this.fps;
    let found = null;
    for (const e of list) {
      if (e.pts <= t + eps) found = e.map;
      else break;
    }
    return found;
  }

  start() {
    const blocks = this.m.renditions.filter((r, i) => r.kind !== 'plain' && r.kind !== 'plain-sr' && this.playable(i));
    if (blocks.length) {
      note(`${blocks.map((r) => r.name).join(', ')}: unpacked with their scale maps and upscaled per block with the `
        + "browser's bicubic (JointSR and OmniSR do not run in this page)");
    }
    if (!Hls.isSupported()) throw new Error('this browser has no Media Source Extensions: hls.js cannot play');
    // a short forward buffer: the page's ABR (which also weighs how fast SR runs here) decides every few seconds
    const hls = new Hls({ autoStartLoad: false, capLevelToPlayerSize: false, enableWorker: true,
      maxBufferLength: 6, maxMaxBufferLength: 12 });
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => this.onLevels());
    hls.on(Hls.Events.FRAG_LOADED, () => { this.measured = true; this.abr(); });
    hls.on(Hls.Events.FRAG_BUFFERED, (_, d) => this.onBuffered(d.frag));
    hls.on(Hls.Events.LEVEL_SWITCHED, () => { stats.level_switches += 1; });
    hls.on(Hls.Events.ERROR, (_, d) => this.onError(d));
    hls.on(Hls.Events.FRAG_PARSING_USERDATA, (_, d) => this.onUserdata(d));
    hls.loadSource(this.base + 'master.m3u8');
    hls.attachMedia(this.video);
    this.video.requestVideoFrameCallback((now, meta) => this.onFrame(now, meta));
    this.video.addEventListener('ended', () => this.finish('ended'));
    $('play').onclick = () => (this.video.paused ? this.video.play() : this.video.pause());
    setInterval(() => this.overlay(), 250);
  }

  onLevels() {
    const byPlaylist = new Map(this.m.renditions.map((r, i) => [r.playlist, i]));
    this.levelRend = this.hls.levels.map((l) => {
      const path = new URL(l.url, this.base).pathname;
      const name = path.slice(path.lastIndexOf('/') + 1);
      return byPlaylist.has(name) ? byPlaylist.get(name) : -1;
    });
    const sel = $('pin');
    this.levelRend.forEach((ri, lvl) => {
      if (ri < 0 || !this.playable(ri)) return;
      const r = this.m.renditions[ri];
      const o = document.createElement('option');
      o.value = r.name;
      o.textContent = `${r.name} (${r.kind}, ${Math.round(r.bitrate_kbps)} kbps)`;
      sel.appendChild(o);
    });
    sel.value = this.pinned || '';
    sel.onchange = () => { this.pinned = sel.value || null; this.abr(true); };
    const lvl = this.choose();
    if (lvl < 0) { // (a throw here would be swallowed by hls.js's event dispatch)
      note('cannot play: no rendition of this stream can be shown by this page');
      this.finish('error: no playable rendition');
      return;
    }
    this.hls.startLevel = lvl;
    if (this.pinned) this.hls.currentLevel = lvl;
    this.hls.startLoad();
    this.video.play().catch((e) => note(`autoplay refused (${e.message}): press play`));
  }

  levelOf(ri) { return this.levelRend.indexOf(ri); }

  // The level to load next: the pinned rendition, else the ABR pick (the lowest playable before the first
  // segment is in: hls.js's estimate is then only its configured default).
  choose() {
    const rends = this.m.renditions;
    if (this.pinned) {
      const ri = rends.findIndex((r) => r.name === this.pinned);
      if (ri < 0 || !this.playable(ri) || this.levelOf(ri) < 0) {
        note(`rendition ${this.pinned}: not a rendition this page can play; ABR instead`);
        this.pinned = null;
      } else return this.levelOf(ri);
    }
    const ok = (i) => this.playable(i) && this.levelOf(i) >= 0;
    const est = this.measured ? Math.min(this.hls.bandwidthEstimate || 0, MAX_KBPS * 1000) : 0; // hls.js's
    // estimate before any download is its configured default, not a measurement: the lowest rung first
    const slow = this.speed.slow;
    const ri = pick(rends, est, ok, slow);
    if (slow && ri >= 0 && pick(rends, est, ok, false) !== ri) {
      if (!this.fellBack) stats.sr_fallbacks += 1;
      this.fellBack = true;
      note(`super-resolution runs at ${(1000 / this.speed.median()).toFixed(1)} fps here, below the `
        + `${(1000 / this.speed.period).toFixed(0)} fps it must keep up with: plain renditions play instead of the `
        + 'SR ones');
    } else this.fellBack = false;
    return ri < 0 ? -1 : this.levelOf(ri);
  }

  // SR has just become too slow: leave the SR rendition at once (hls.js flushes the buffer and reloads).
  switchNow() {
    const lvl = this.choose();
    this.decide(lvl, 'sr-slow');
    if (lvl >= 0 && lvl !== this.hls.currentLevel) this.hls.currentLevel = lvl; // immediate: flushes the buffer
  }

  // the ABR's decisions while they change (at most MAX_LOG): media time, level chosen, its rendition, why
  decide(lvl, why) {
    const last = stats.decisions[stats.decisions.length - 1];
    const name = lvl >= 0 ? this.m.renditions[this.levelRend[lvl]].name : null;
    if ((last && last.rendition === name) || stats.decisions.length >= MAX_LOG) return;
    stats.decisions.push({ t: +this.video.currentTime.toFixed(3), level: lvl, rendition: name, why,
      estimate_kbps: Math.round(Math.min(this.hls.bandwidthEstimate || 0, MAX_KBPS * 1000) / 1000) });
  }

  abr(now = false) {
    const lvl = this.choose();
    if (lvl < 0) return;
    this.decide(lvl, 'segment');
    if (now && this.pinned) this.hls.currentLevel = lvl;
    else if (this.hls.loadLevel !== lvl) this.hls.loadLevel = lvl;
  }

  onError(d) {
    if (stats.hls_errors.length < MAX_LOG) stats.hls_errors.push(`${d.type}/${d.details}${d.fatal ? ' (fatal)' : ''}`);
    if (!d.fatal) return;
    if (d.type === Hls.ErrorTypes.MEDIA_ERROR) {
      stats.recovered += 1;
      this.hls.recoverMediaError();
    } else if (d.type === Hls.ErrorTypes.NETWORK_ERROR && d.frag && d.frag.sn !== 'initSegment') {
      // a segment that cannot be loaded (404, cut connection): carry on after it
      stats.recovered += 1;
      const after = d.frag.start + d.frag.duration + 0.001;
      note(`segment ${d.frag.relurl || d.frag.sn} could not be loaded (${d.details}): skipped`);
      this.hls.startLoad(after);
      if (this.video.currentTime < after && this.video.buffered.length === 0) this.video.currentTime = after;
    } else {
      note(`playback stopped: ${d.details}`);
      this.finish(`fatal: ${d.details}`);
    }
  }

  // What is buffered, by media time: [{start, end, level}] from hls.js's FRAG_BUFFERED, newest wins where they
  // overlap (a switch re-buffers a span), kept MAP_KEEP_S behind the playhead.
  onBuffered(frag) {
    if (!frag || frag.sn === 'initSegment') return;
    const start = Number.isFinite(frag.startPTS) ? frag.startPTS : frag.start;
    const end = Number.isFinite(frag.endPTS) ? frag.endPTS : frag.start + frag.duration;
    const keep = this.video.currentTime - MAP_KEEP_S;
    this.spans = (this.spans || []).filter((sp) => (sp.end <= start || sp.start >= end) && sp.end > keep);
    this.spans.push({ start, end, level: frag.level });
    this.spans.sort((a, b) => a.start - b.start);
  }

  // The hls.js level of the frame presented at media time t: the buffered fragment holding it (hls.currentLevel
  // lags a switch by a tick), else hls.js's current level.
  levelAt(t) {
    const eps = 0.5 / this.fps;
    const sp = (this.spans || []).find((x) => x.start - eps <= t && t < x.end - eps);
    return sp ? sp.level : this.hls.currentLevel;
  }

  rendition(lvl) {
    const ri = this.levelRend[lvl];
    return ri === undefined || ri < 0 ? null : this.m.renditions[ri];
  }

  model(rend) {
    const ref = rend.web_model;
    if (!ref) return { session: null, reason: `${rend.name}: no web model in the manifest; bicubic` };
    if (!this.models.has(ref.file)) {
      this.models.set(ref.file, null); // loading
      this.sr.model(rend).then((m) => {
        this.models.set(ref.file, m);
        if (m.reason) note(m.reason);
      });
    }
    return this.models.get(ref.file); // null while loading
  }

  onFrame(now, meta) {
    this.video.requestVideoFrameCallback((n, m) => this.onFrame(n, m));
    stats.frames_presented += 1;
    if (stats.first_media_time === null) {
      stats.first_media_time = meta.mediaTime;
      stats.first_frame_at = performance.now();
    }
    stats.last_media_time = meta.mediaTime;
    stats.last_frame_at = performance.now();
    const lvl = this.levelAt(meta.mediaTime);
    const rend = this.rendition(lvl);
    const played = stats.renditions_played; // in play order, one entry per run of frames
    if (rend && played[played.length - 1] !== rend.name && played.length < MAX_LOG) played.push(rend.name);
    this.current = rend;
    if (rend && (rend.kind === 'bbmr' || rend.kind === 'uniform')) {
      this.drawBlocks(rend, lvl, meta);
      return;
    }
    const m = rend && runsModel(rend) && !$('bicubic').checked ? this.model(rend) : null;
    if (EVERY && m === null && rend && runsModel(rend) && !$('bicubic').checked) { // every frame SR: wait for it
      this.video.pause();
      this.sr.model(rend).then(() => this.video.play());
      return;
    }
    if (!m || !m.session || meta.width !== rend.lr_width || meta.height !== rend.lr_height) {
      this.upscaler = rend && rend.kind === 'plain' ? 'none (plain: browser scaling)'
        : `bicubic (browser canvas)${m && m.session ? '' : m ? ': no model' : ''}`;
      if (rend && rend.kind === 'plain-sr') { // the picture is the source padded to 2K: its W/K x H/K corner
        const k = rend.overall;
        this.ctx.drawImage(this.video, 0, 0, this.W / k, this.H / k, 0, 0, this.W, this.H);
      } else this.ctx.drawImage(this.video, 0, 0, this.W, this.H);
      this.shown();
      return;
    }
    if (this.busy) {
      stats.frames_dropped_sr_busy += 1;
      return;
    }
    this.busy = true;
    if (EVERY) this.video.pause();
    const t0 = performance.now();
    if (!this.lr || this.lr.width !== meta.width || this.lr.height !== meta.height) {
      this.lr = new OffscreenCanvas(meta.width, meta.height);
      this.lrCtx = this.lr.getContext('2d', { willReadFrequently: true });
    }
    this.lrCtx.drawImage(this.video, 0, 0, meta.width, meta.height);
    const lr = this.lrCtx.getImageData(0, 0, meta.width, meta.height);
    this.sr.run(m.session, lr, this.W, this.H).then((img) => {
      this.ctx.putImageData(img, 0, 0);
      const wasSlow = this.speed.slow;
      this.speed.add(performance.now() - t0);
      if (this.speed.slow && !wasSlow && !this.pinned) this.switchNow();
      this.upscaler = `${rend.web_model.arch} x${rend.web_model.scale} (onnxruntime-web ${stats.backend})`;
      stats.frames_superresolved += 1;
      if (SELFTEST && !this.paritySent && stats.frames_superresolved >= PARITY_FRAME) this.sendParity(rend, meta);
      this.shown();
    }).catch((e) => {
      logError(`super-resolution failed: ${e.message || e}`);
      this.models.set(rend.web_model.file, { session: null, reason: `model ${rend.web_model.file}: ${e.message}` });
    }).finally(() => {
      this.busy = false;
      if (EVERY && !this.video.ended) this.video.play();
    });
  }

  drawBlocks(rend, lvl, meta) {
    const r = this.renderer(rend);
    const map = this.mapAt(lvl, meta.mediaTime);
    const misfit = map && r.misfit(map);
    if (!map || misfit || meta.width !== r.g.picW || meta.height !== r.g.picH) {
      stats.frames_without_map += 1; // concealed: the canvas keeps the previous picture
      if (misfit) note(`${rend.name}: ${misfit}`);
      return;
    }
    r.draw(this.video, map, this.ctx);
    this.upscaler = "bicubic per block (browser canvas, from the frame's scale map)";
    stats.frames_unpacked += 1;
    if (SELFTEST && !this.paritySent && stats.frames_unpacked >= PARITY_FRAME) this.sendParity(rend, meta);
    this.shown();
  }

  shown() {
    stats.frames_shown += 1;
    if (SELFTEST && stats.frames_shown >= SELFTEST) this.finish('frames');
  }

  sendParity(rend, meta) {
    this.paritySent = true;
    const q = new URLSearchParams({ rendition: rend.name, media_time: meta.mediaTime,
      first_media_time: stats.first_media_time, presented_frames: meta.presentedFrames });
    this.parityUpload = new Promise((resolve) => {
      this.screen.toBlob((blob) => post(`selftest/frame?${q}`, blob, 'image/png').then(resolve), 'image/png');
    });
  }

  // The figures so far: fps over the time from the first to the last presented frame; frames of the video between the
  // first and the last presented that the canvas did not show are dropped (the decoder's, the compositor's or
  // super-resolution's).
  summary() {
    const el = stats.first_frame_at === null ? 0 : (stats.last_frame_at - stats.first_frame_at) / 1000;
    const q = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    const inVideo = stats.first_media_time === null ? 0
      : Math.round((stats.last_media_time - stats.first_media_time) * this.fps) + 1;
    stats.sr_ms_median = this.speed.median();
    const rate = (n) => (el > 0 ? +(n / el).toFixed(2) : 0);
    return {
      ...stats, elapsed_s: +el.toFixed(3), fps_shown: rate(stats.frames_shown),
      fps_superresolved: rate(stats.frames_superresolved), frames_in_video: inVideo,
      frames_dropped: Math.max(0, inVideo - stats.frames_shown),
      frames_dropped_video: q ? q.droppedVideoFrames : null, cross_origin_isolated: self.crossOriginIsolated,
      wasm_threads: ort.env.wasm.numThreads, user_agent: navigator.userAgent,
    };
  }

  finish(why) {
    if (!SELFTEST || this.selftestSent) return;
    this.selftestSent = true;
    const result = JSON.stringify({ ...this.summary(), why });
    // the parity frame's upload first: the server takes the result as the end of the test
    (this.parityUpload || Promise.resolve()).then(() => post('selftest/result', result, 'application/json'));
  }

  overlay() {
    const r = this.current;
    const s = this.summary();
    const dropped = s.frames_dropped;
    $('overlay').textContent = r
      ? `${r.name} · ${r.kind} · ${Math.round(r.bitrate_kbps)} kbps · ${r.lr_width}x${r.lr_height} -> ${this.W}x${this.H}\n`
        + `upscaler ${this.upscaler || '-'}\n`
        + `shown ${s.fps_shown} fps · super-resolved ${s.fps_superresolved} fps · dropped ${dropped}`
        + ` · backend ${stats.backend}${stats.sr_fallbacks ? ` · SR fallbacks ${stats.sr_fallbacks}` : ''}`
      : 'loading...';
  }
}

async function main() {
  const base = streamBase(query.get('src'));
  const manifest = await loadManifest(base);
  ort.env.wasm.wasmPaths = new URL('lib/ort/', document.baseURI).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  stats.backend = await pickBackend(ort, query.get('backend') || 'auto');
  const page = new Page(manifest, base, new SR(ort, base, stats.backend));
  window.bbmrPage = page;
  page.start();
  if (SELFTEST) {
    window.bbmrSelftest = () => page.summary();
  }
}

main().catch((e) => {
  note(`cannot play: ${e.message || e}`);
  logError(e.message || e);
  if (SELFTEST) post('selftest/result', JSON.stringify({ ...stats, why: `error: ${e.message || e}` }),
    'application/json');
});
