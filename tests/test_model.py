import math

import numpy as np
import pytest
import torch

from aaedetect import model as M
from aaedetect import neighbors as N
from aaedetect.config import NetConfig, size_network
from aaedetect.scoring import PART_CAP, Calibration
from aaedetect.preprocess import TabularPreprocessor
from aaedetect.priors import GaussianPrior, MixturePrior, UniformPrior, make_prior


@pytest.fixture(scope="module")
def pre(table):
    return TabularPreprocessor.fit(table)


def encode(pre, df):
    num, cat = pre.transform(df)
    return M.FeatureEncoder(pre)(torch.from_numpy(num), torch.from_numpy(cat))


def test_feature_layout(pre, table):
    x = encode(pre, table)
    fe = M.FeatureEncoder(pre)
    # 4 numeric + 1 indicator (c has missing values) + one-hot of kind (3 categories + other slot)
    assert fe.n_features == 4 + 1 + 4 == x.shape[1]
    assert x.dtype == torch.float32
    onehot = x[:, 5:]
    assert torch.all(onehot.sum(1) == 1)


def test_missing_values_become_median_plus_indicator(pre, table):
    df = table.head(2).copy()
    df.loc[0, "c"] = np.nan
    df.loc[1, "c"] = pre.numeric[2].center
    x = encode(pre, df)
    assert x[0, 2] == 0 and x[1, 2] == 0  # both at the median after scaling
    assert x[0, 4] == 1 and x[1, 4] == 0  # the indicator tells them apart


def test_soft_clip_keeps_extremes_finite_and_ordered(pre, table):
    df = table.head(6).copy()
    df["a"] = [1e3, 1e10, 1e300, np.inf, -np.inf, -1e300]
    x = encode(pre, df)[:, 0]
    assert torch.isfinite(x).all()
    assert x[0] < x[1] < x[2] <= x[3]
    assert x[4] <= x[5] < 0
    assert x[2] < 750  # log growth: even the largest doubles map to moderate values
    assert x[3] == 1000 and x[4] == -1000  # inf: a fixed, finite stand-in beyond every double


def test_soft_clip_is_identity_inside_the_clip(pre, table):
    df = table.head(1).copy()
    col = pre.numeric[0]
    df["a"] = col.center + 2.5 * col.scale
    assert encode(pre, df)[0, 0].item() == pytest.approx(2.5)


def test_column_errors_zero_for_perfect_reconstruction(pre, table):
    fe = M.FeatureEncoder(pre)
    x = encode(pre, table.head(20))
    # A perfect decoder: the values themselves, and very confident logits for the 0/1 parts.
    out = x.clone()
    out[:, 4:] = (x[:, 4:] * 2 - 1) * 50
    err = fe.column_errors(x, out)
    assert err.shape == (20, 5)
    assert err.max().item() < 1e-6
    worse = fe.column_errors(x, out + torch.randn_like(out))
    assert (worse.sum(1) > err.sum(1)).all()


def test_network_sizes():
    cfg = size_network(25, "auto", "auto", 0.0)
    assert cfg.hidden == (128, 64) and cfg.latent_dim == 7
    big = size_network(300, "auto", "auto", 0.0)
    assert big.hidden == (512, 256) and big.latent_dim == 32
    fixed = size_network(10, (20, 10), 3, 0.1)
    assert fixed.hidden == (20, 10) and fixed.latent_dim == 3
    assert NetConfig.from_dict(fixed.to_dict()) == fixed


@pytest.mark.parametrize("spec", ["gaussian", "uniform", "mixture:4"])
def test_priors_sample_and_density(spec):
    prior = make_prior(spec, 3)
    torch.manual_seed(0)
    z = prior.sample(5000)
    assert z.shape == (5000, 3)
    if spec in ("gaussian", "uniform"):  # both have unit variance per dimension
        assert z.var(0).mean().item() == pytest.approx(1.0, abs=0.1)
    logp = prior.log_prob(z)
    assert torch.isfinite(logp).all()
    far = torch.full((1, 3), 50.0)
    assert prior.log_prob(far).item() < logp.min().item()  # far away is less likely


def test_gaussian_log_prob_matches_torch():
    z = torch.randn(10, 4)
    expected = torch.distributions.Normal(0, 1).log_prob(z).sum(1)
    torch.testing.assert_close(GaussianPrior(4).log_prob(z), expected)


def test_mixture_log_prob_is_a_density_in_1d():
    prior = MixturePrior(1, 3)
    grid = torch.linspace(-8, 8, 20001)[:, None]
    total = torch.exp(prior.log_prob(grid)).sum() * (16 / 20000)
    assert total.item() == pytest.approx(1.0, abs=1e-3)


def test_uniform_density_inside_is_flat():
    prior = UniformPrior(2)
    inside = torch.tensor([[0.0, 0.0], [1.0, -1.5]])
    logp = prior.log_prob(inside)
    assert logp[0].item() == pytest.approx(logp[1].item()) == pytest.approx(-2 * math.log(2 * math.sqrt(3)))


def test_bad_prior_name():
    from aaedetect.errors import OptionError

    with pytest.raises(OptionError):
        make_prior("cauchy", 2)


@pytest.mark.parametrize("signal", ["density", "discriminator"])
def test_scoring_graph_is_deterministic_and_calibrated(pre, table, signal):
    torch.manual_seed(0)
    fe = M.FeatureEncoder(pre)
    cfg = size_network(fe.n_features, "auto", "auto", 0.0)
    aae = M.AAE(cfg, GaussianPrior(cfg.latent_dim))
    num, cat = pre.transform(table)
    num, cat = torch.from_numpy(num), torch.from_numpy(cat)
    with torch.no_grad():
        x = fe(num, cat)
        bank = N.Neighbors(x[::2], N.hidden64(aae.encoder.body, x[::2]), pre.feature_fold())
    graph = M.ScoringGraph(fe, aae, signal, neighbors=bank).eval()
    with torch.no_grad():
        recon_raw, latent_raw, near_x, near_h, _, _ = graph.raw_parts(num, cat)
    cal = Calibration.fit(recon_raw.numpy(), latent_raw.numpy(), latent_log=graph.latent_log,
                          latent_weight=0.25, neighbor_raw=(near_x.numpy(), near_h.numpy()),
                          neighbor_weight=2.0)
    graph = M.ScoringGraph(fe, aae, signal, cal, bank).eval()
    with torch.no_grad():
        a1, r1, l1, n1, e1, g1 = graph(num, cat)
        a2, *_ = graph(num, cat)
    assert torch.equal(a1, a2)
    # Calibrated on these rows: medians near 0.
    assert abs(r1.median().item()) < 0.05 and abs(l1.median().item()) < 0.05
    assert abs(n1.median().item()) < 0.3  # the mean of two z-scores, each with median 0
    torch.testing.assert_close(a1, r1 + 0.25 * l1.clamp(0, PART_CAP) + 2.0 * n1.clamp(max=PART_CAP))
    assert e1.shape == (len(num), 5) and g1.shape == (len(num), 5)


def distances(query, bank, k):
    query, bank = torch.as_tensor(query), torch.as_tensor(bank).float()
    return N.mean_neighbor_distance(query, bank, bank.double().pow(2).sum(1), k).numpy()


def test_mean_neighbor_distance_matches_brute_force():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    bank = rng.normal(size=(300, 7)).astype(np.float32).astype(np.float64)
    query = rng.normal(size=(50, 7)) * 2
    expected = NearestNeighbors(n_neighbors=5).fit(bank).kneighbors(query)[0].mean(1)
    # float32 out: one rounding of the mean distance
    np.testing.assert_allclose(distances(query, bank, 5), expected, rtol=2.0 ** -23)


def test_a_reference_row_leaves_itself_out():
    """Fit a table, score the same table: a reference row scores as if it were not among them."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(1)
    bank = rng.normal(size=(200, 4)).astype(np.float32).astype(np.float64)
    # What PyOD's kNN reports for its training rows: the k nearest other rows.
    others = NearestNeighbors(n_neighbors=4).fit(bank).kneighbors(bank[:20])[0][:, 1:].mean(1)
    np.testing.assert_allclose(distances(bank[:20], bank, 3), others, rtol=2.0 ** -23)
    # A second copy of a row still counts: one copy is left out, the other is at distance 0.
    doubled = np.concatenate([bank, bank[:1]])
    d = NearestNeighbors(n_neighbors=3).fit(bank).kneighbors(bank[:1])[0][0]  # itself, then 2 others
    assert distances(bank[:1], doubled, 3)[0] == pytest.approx(d.sum() / 3, rel=2.0 ** -23)


def test_same_row_cut_off_is_relative_to_the_vectors():
    """Rows that differ by float32 rounding are the same row, at any magnitude; rows that differ
    by more are not."""
    rng = np.random.default_rng(2)
    for size in (1e-3, 1.0, 1e3):
        bank = (rng.normal(size=(50, 6)) * size).astype(np.float32).astype(np.float64)
        itself = distances(bank[:5], bank, 3)  # the 3 nearest other rows
        nudged = bank[:5] * (1 + 2.0 ** -22)  # a few float32 steps away: still the same row
        np.testing.assert_allclose(distances(nudged, bank, 3), itself, rtol=2.0 ** -18)
        moved = bank[:5] * (1 + 2.0 ** -12)  # another row, very close: it counts, at ~0
        assert (distances(moved, bank, 3) < 0.9 * itself).all()


def test_neighbors_refuse_bad_banks():
    with pytest.raises(ValueError):
        N.Neighbors(torch.zeros(1, 3), torch.zeros(1, 4))  # a row needs another to be compared with
    with pytest.raises(ValueError):
        N.Neighbors(torch.zeros(5, 3), torch.zeros(4, 4))
    assert N.Neighbors(torch.zeros(3, 3), torch.zeros(3, 4)).k == 2  # fewer rows than NEIGHBORS


def test_hidden64_is_the_encoder_body_in_float64():
    import copy

    torch.manual_seed(0)
    body = M.Encoder(size_network(12, "auto", "auto", 0.3)).body.eval()
    x = torch.randn(40, 12)
    with torch.no_grad():
        h64 = N.hidden64(body, x)
        expected = copy.deepcopy(body).double()(x.double())
    assert h64.dtype == torch.float64 and h64.shape == (40, 64 // 2)
    torch.testing.assert_close(h64, expected, rtol=1e-12, atol=1e-12)  # float64 rounding only


def test_neighbour_buffers_live_on_the_banks_device():
    """Fitting on a GPU builds the banks there: every buffer derived from them (the squared lengths,
    the column fold) must follow them, or the first search mixes devices. The meta device stands in
    for CUDA here; the forward pass must run on it too."""
    x_bank, h_bank = torch.empty(8, 3, device="meta"), torch.empty(8, 5, device="meta")
    bank = N.Neighbors(x_bank, h_bank, np.eye(3)[:, :2])
    assert {name: b.device.type for name, b in bank.named_buffers()} == dict.fromkeys(
        ("x_bank", "h_bank", "x_sq", "h_sq", "fold"), "meta")
    near_x, near_h, columns = bank(torch.empty(4, 3, device="meta"),
                                   torch.empty(4, 5, device="meta", dtype=torch.float64))
    assert columns.shape == (4, 2) and columns.device.type == "meta"
