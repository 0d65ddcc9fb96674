"""models.inference.tiled_sr: tiles give the whole-plane result where the receptive field fits the overlap,
and the number of tiles per forward call (the peak memory) is bounded."""

import pytest
import torch
from torch import nn

from models.inference import tile_spans, tiled_sr


class Spy(nn.Module):
    """Two 3x3 convs (receptive radius 2) + PixelShuffle x2; records the batch shapes it is called with."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1),
                                 nn.PixelShuffle(2))
        self.calls = []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.net(x)


@pytest.mark.parametrize("n,tile", [(1088, 1024), (1087, 1024), (100, 32), (33, 32), (32, 32), (7, 32)])
def test_tile_spans_cover_evenly(n, tile):
    spans = tile_spans(n, tile)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    sizes = [e - s for s, e in spans]
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1 and len(spans) == -(-n // tile)


@pytest.mark.parametrize("h,w", [(70, 100), (67, 131), (40, 40)])
@pytest.mark.parametrize("batch", [1, 3])
def test_tiles_equal_whole_plane_and_calls_are_bounded(h, w, batch):
    m = Spy().eval()
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        ref = m.net(x)
    out = tiled_sr(m, x, 2, tile=24, overlap=4, batch=batch)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert len(m.calls) > 1
    assert all(s[0] <= batch and s[2] <= 24 + 8 and s[3] <= 24 + 8 for s in m.calls)


def test_plane_that_fits_goes_through_in_one_piece():
    m = Spy().eval()
    x = torch.rand(1, 3, 30, 50)
    out = tiled_sr(m, x, 2, tile=42, overlap=4)
    assert m.calls == [(1, 3, 30, 50)]
    torch.testing.assert_close(out, m.net(x).detach())
