"""Codec degradation for codec-aware SR training (NAS-style): an LR picture through x264 and back, as the
client would decode it.

:func:`code_picture` encodes one RGB picture as a single H.264 IDR frame with the packager's x264 settings
(``preset``, CRF ``crf + p_offset``: streams are mostly P/B frames, which x264 codes about 3 QP coarser than the
I frame at the same CRF, ipratio 1.4) and decodes it back with the project's exact YUV <-> RGB conversion
(BT.709, limited range, 4:2:0).
"""

from __future__ import annotations

import io

import numpy as np

from bbmr_stream.colour import frame_to_rgb, video_frame
from bbmr_stream.x264 import with_asm

P_OFFSET = 3.0  # CRF offset: an I frame at CRF c + 3 looks like the P/B frames of a CRF c stream


def code_picture(rgb: np.ndarray, crf: float, preset: str = "medium", p_offset: float = P_OFFSET,
                 matrix: str = "bt709") -> np.ndarray:
    """(h, w, 3) uint8 RGB -> the same picture after H.264 at ``crf`` (+ ``p_offset``) and decoding."""
    import av

    h, w = rgb.shape[:2]
    even = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = even.shape[1], even.shape[0], "yuv420p"
        s.codec_context.options = with_asm({"crf": f"{crf + p_offset:g}", "preset": preset})
        s.codec_context.colorspace, s.codec_context.color_range = 1, 1
        f = video_frame(even, matrix, False)
        f.pts = 0
        for p in s.encode(f):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    buf.seek(0)
    with av.open(buf, format="h264") as c:
        fr = next(c.decode(video=0))
    return np.ascontiguousarray(frame_to_rgb(fr, matrix, False)[0][:h, :w])
