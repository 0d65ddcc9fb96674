
import pytest
import torch

from bbmr_stream.errors import WeightsError
from models.archs import get_arch
from models.omnisr import OmniSR, OmniSRConfig, count_params
from models.registry import SRModel, load_model, load_official_omnisr, load_registry, load_state_dict_file, sha256_file

REG = load_registry()


@pytest.mark.parametrize("wid", sorted(REG) or [pytest.param(None, marks=pytest.mark.skip("no weights yet"))])
def test_shipped_weights_match_registry(wid):
    e = REG[wid]
    assert e.path.exists()
    assert sha256_file(e.path) == e.sha256
    m = load_model(wid)
    assert count_params(m) == e.num_params
    assert "convention" in e.metrics and "Set5" in e.metrics
    assert e.training["iterations"] > 0 and e.training["data"]
    assert get_arch(e.arch).scales(e.config) == e.scales
    if get_arch(e.arch).per_scale:  # one network per scale, wrapped with its input range
        assert isinstance(m, SRModel) and m.scale == e.scales[0]
        x = torch.rand(1, 3, 24, 24)
        with torch.no_grad():
            y = m(x)
        assert y.shape == (1, 3, 24 * e.scales[0], 24 * e.scales[0])


def test_official_pth_round_trip(tmp_path):
    """An official-style checkpoint (thop counters included, input in [-1, 1]) loads without unpickling code."""
    torch.manual_seed(0)
    net = OmniSR(OmniSRConfig(scale=2, res_num=1))
    sd = net.state_dict()
    sd["total_ops"] = torch.zeros(1, dtype=torch.float64)
    sd["residual_layer.0.total_params"] = torch.zeros(1, dtype=torch.float64)
    p = tmp_path / "epoch1_OmniSR.pth"
    torch.save(sd, p)
    m = load_official_omnisr(p, scale=2, res_num=1)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(x), (net(x * 2 - 1) + 1) / 2)
    assert isinstance(m, SRModel) and m.input_range == "-1,1"


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, p)
    with pytest.raises(WeightsError):
        load_state_dict_file(p)


def test_missing_id():
    with pytest.raises(WeightsError, match="no weights"):
        load_model("no-such-weights")
