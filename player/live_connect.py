"""Signalling and connection of the live viewer: one ``RTCPeerConnection`` that receives video (the codec
asked for preferred, RTX allowed) and opens an ordered data channel for the maps; the offer is POSTed as JSON
to ``URL/offer`` (aiortc's examples/server signalling) and the answer applied. The encoded bytes handed to
the decoder are counted per connection (``bbmr_stream.rtc.count_decoded_bytes``)."""

from __future__ import annotations

from typing import Callable

from bbmr_stream.rtc import count_decoded_bytes

CODECS = {"h264": "video/h264", "vp8": "video/vp8"}


def split_token(url: str) -> tuple[str, str | None]:
    """(the sender's base URL ending in ``/``, the ``token`` of its query or None): a sender on a non-loopback
    address prints its URL as ``http://HOST:PORT/?token=...``."""
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(url)
    token = parse_qs(parts.query).get("token", [None])[0]
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), token


class Connection:
    """The viewer's peer connection to the sender at ``url``; ``bytes`` counts the encoded video bytes
    decoded, ``stream`` is the sender's description (source size in pixels, fps, block, scales, overall)."""

    def __init__(self, url: str, codec: str = "h264", token: str | None = None) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec {codec!r}: one of {', '.join(CODECS)}")
        self.url, query_token = split_token(url)
        self.token = token or query_token  # sent as Authorization: Bearer (bbmr_stream.webguard)
        self.codec = codec
        self.bytes = 0
        self.stream: dict = {}
        self.pc = None

    def _count(self, n: int) -> None:
        self.bytes += n

    async def open(self, on_track: Callable[[object], None], on_message: Callable[[object], None]) -> dict:
        """Connect: ``on_track(track)`` for the remote video track, ``on_message(message)`` for each
        data-channel message. Returns the sender's stream description. ConnectionError when the sender
        refuses the offer, OSError when it cannot be reached."""
        from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        self.pc = pc = RTCPeerConnection()
        pc.createDataChannel("maps", ordered=True).on("message", on_message)
        tr = pc.addTransceiver("video", direction="recvonly")
        count_decoded_bytes(tr.receiver, self._count)
        caps = RTCRtpSender.getCapabilities("video").codecs
        want = CODECS[self.codec]
        tr.setCodecPreferences([c for c in caps if c.mimeType.lower() == want]
                               + [c for c in caps if c.mimeType.lower() == "video/rtx"])
        pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._post_offer(pc.localDescription.sdp, pc.localDescription.type)
        self.stream = answer.get("bbmr") or {}
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return self.stream

    async def _post_offer(self, sdp: str, kind: str) -> dict:
        import aiohttp

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession() as s:
            async with s.post(self.url + "offer", json={"sdp": sdp, "type": kind}, headers=headers) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise ConnectionError(f"{self.url}offer: HTTP {r.status}: {body.get('error', body)}")
        return body

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
