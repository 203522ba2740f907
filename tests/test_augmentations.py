"""Training-time augmentations of the student (paper Figure 2b): registry, statistics of what each produces, fits."""

from __future__ import annotations

import hashlib
import warnings

import anndata as ad
import numpy as np
import pytest
import torch
from conftest import make_weakly_paired
from sklearn.neighbors import kneighbors_graph

import scsemiclip as ssc
from scsemiclip.module import AUGMENTATIONS, MDWGANGP, MWO, ScGFT, ScVIDenoise, build_augmentations
from scsemiclip.module._augmentations import knn_propagate


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _two_keys(n: int = 2000, d: int = 8, shift: float = 3.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _gen(1)
    keys = torch.arange(n) % 2
    means = torch.stack([torch.full((d,), -shift), torch.full((d,), shift)])
    return means[keys] + torch.randn((n, d), generator=g), keys, means


def _latent_hash(adata: ad.AnnData, key: str = "X_semiclipped") -> str:
    return hashlib.sha256(np.ascontiguousarray(adata.obsm[key]).tobytes()).hexdigest()


# ---- registry ----------------------------------------------------------------------------------------------------


def test_registry_names_and_building():
    assert {"mwo", "scvi_denoise", "mdwgan_gp", "scgft"} <= set(AUGMENTATIONS)
    objects, pea = build_augmentations(("scgft", MWO(p=0.2), "pea"), options={"scgft": {"n_components": 2}})
    assert pea and [type(a) for a in objects] == [ScGFT, MWO]
    assert objects[0].n_components == 2 and objects[1].p == 0.2
    assert objects[0].params() == {"p": 0.5, "n_components": 2}
    assert build_augmentations((), options=None) == ((), False)


@pytest.mark.parametrize(
    ("augmentations", "options", "error", "match"),
    [
        (("pea", "mwo"), None, ValueError, "must come last"),
        (("mwo", "mwo"), None, ValueError, "named twice"),
        (("mixup",), None, KeyError, "Unknown augmentation 'mixup'"),
        ((3,), None, TypeError, "names and Augmentation objects"),
        (("mwo",), {"scgft": {}}, ValueError, "not in `augmentations`"),
        (("mwo",), {"mwo": {"p": 1.5}}, ValueError, r"`p` must be a finite number in \[0, 1\]"),
        ((MWO(),), {"mwo": {"p": 0.1}}, ValueError, "set them on the object"),
        (("scgft",), {"scgft": {"n_components": 0}}, ValueError, "`n_components` must be >= 1"),
        (("scgft",), {"scgft": {"n_components": 1.5}}, TypeError, "`n_components` must be an integer"),
        (("mdwgan_gp",), {"mdwgan_gp": {"n_critic": 0}}, ValueError, "`n_critic` must be >= 1"),
        (("mdwgan_gp",), {"mdwgan_gp": {"n_steps": 2.0}}, TypeError, "`n_steps` must be an integer"),
    ],
)
def test_build_rejects_bad_sequences(augmentations, options, error, match):
    with pytest.raises(error, match=match):
        build_augmentations(augmentations, options=options)


# ---- MWO ---------------------------------------------------------------------------------------------------------


def test_mwo_mixes_within_key_and_shrinks_the_variance():
    x, keys, means = _two_keys()
    aug = MWO(p=1.0)
    aug.fit(x, keys, n_keys=2, generator=_gen())
    out = aug(x, batch=torch.zeros_like(keys), key=keys, generator=_gen(2))
    for k in (0, 1):
        rows = out[keys == k]
        # a within-key mixture keeps its key's mean; independent partners, w ~ U(0, 1): E[w^2 + (1-w)^2] = 2/3
        assert torch.allclose(rows.mean(0), means[k], atol=0.1)
        assert 0.6 < float(rows.var(0).mean()) < 0.73
    # every output lies on a segment between the sample and a same-key sample: never near the other key
    assert bool(((out - means[keys]).norm(dim=1) < (out - means[1 - keys]).norm(dim=1)).all())


def test_mwo_replaces_a_fraction_p():
    x, keys, _ = _two_keys()
    aug = MWO(p=0.3)
    aug.fit(x, keys, n_keys=2, generator=_gen())
    out = aug(x, batch=torch.zeros_like(keys), key=keys, generator=_gen(3))
    changed = (out != x).any(dim=1).float().mean()
    assert abs(float(changed) - 0.3) < 0.04


# ---- scGFT -------------------------------------------------------------------------------------------------------


def test_scgft_sd_is_the_reference_statistic():
    """sd_k: std (ddof 1) over the key's samples of the amplitudes scaled by their L2 norm over the key (RunScGFT)."""
    g = np.random.default_rng(0)
    x = g.normal(size=(31, 9))
    keys = np.r_[np.zeros(20, int), np.ones(10, int), [2]]
    aug = ScGFT()
    aug.fit(torch.as_tensor(x), torch.as_tensor(keys), n_keys=3, generator=_gen())
    for k in (0, 1):
        amp = np.abs(np.fft.rfft(x[keys == k], axis=1))
        scaled = amp / np.linalg.norm(amp, axis=0)
        np.testing.assert_allclose(aug.sd[k].numpy(), scaled.std(axis=0, ddof=1), rtol=1e-5)
    np.testing.assert_array_equal(aug.sd[2].numpy(), 1.0)  # a key of one sample: N(2, 1), as the reference code


@pytest.mark.parametrize("n_components", [1, 3])
def test_scgft_doubles_exactly_n_components_of_a_constant_group(n_components):
    """Identical samples: sd = 0, so a synthetic sample is its parent with n_components bins times exactly 2."""
    parent = torch.tensor([-2.0, 1.0, 0.5, -1.0, 3.0, -0.5, 2.0, -3.0, 1.5, 0.0])
    x = parent.repeat(6, 1)
    keys = torch.zeros(6, dtype=torch.long)
    aug = ScGFT(p=1.0, n_components=n_components)
    aug.fit(x, keys, n_keys=1, generator=_gen())
    out = aug(x, batch=keys, key=keys, generator=_gen(4))
    ratio = torch.fft.rfft(out.double(), dim=1) / torch.fft.rfft(parent.double())
    for row in ratio:
        modified = (row - 1).abs() > 1e-6
        assert int(modified.sum()) == n_components
        assert not modified[0] and not modified[-1]  # DC (mean) and Nyquist bins kept
        torch.testing.assert_close(
            row[modified].real, torch.full((n_components,), 2.0, dtype=torch.float64), rtol=0, atol=1e-5
        )
    assert bool((out < 0).any())  # no clipping of negative values


def test_scgft_multiplier_is_normal_around_two():
    """A key of one sample (known parent): the modified component's factor follows N(2, 1)."""
    parent = torch.randn(12, generator=_gen(5))
    aug = ScGFT(p=1.0)
    aug.fit(parent[None], torch.zeros(1, dtype=torch.long), n_keys=1, generator=_gen())
    key = torch.zeros(4000, dtype=torch.long)
    out = aug(parent.expand(4000, -1), batch=key, key=key, generator=_gen(6))
    ratio = (torch.fft.rfft(out.double(), dim=1) / torch.fft.rfft(parent.double())).real
    factor = ratio.gather(1, ((ratio - 1).abs().argmax(dim=1, keepdim=True))).squeeze(1)
    assert abs(float(factor.mean()) - 2.0) < 0.06
    assert abs(float(factor.std()) - 1.0) < 0.05


def test_scgft_needs_enough_components():
    with pytest.raises(ValueError, match="non-constant Fourier components"):
        ScGFT(n_components=2).fit(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), n_keys=1, generator=_gen())


# ---- scVI denoising ----------------------------------------------------------------------------------------------


def test_scvi_denoise_draws_have_the_posterior_scale():
    scale = torch.tensor([[0.1, 1.0, 2.0], [0.5, 0.5, 3.0]])
    aug = ScVIDenoise()
    aug.set_posterior(scale)
    n = 20000
    index = torch.arange(n) % 2
    x = torch.ones(n, 3)
    out = aug(x, batch=torch.zeros(n, dtype=torch.long), key=index, index=index, generator=_gen())
    for r in (0, 1):
        noise = out[index == r] - 1
        torch.testing.assert_close(noise.mean(0), torch.zeros(3), atol=0.05, rtol=0)
        torch.testing.assert_close(noise.std(0), scale[r], rtol=0.03, atol=0)


def test_scvi_denoise_noise_goes_through_the_input_correction():
    """Corrected input: the draw's noise is (sigma * eps) @ W_b, covariance W_b^T diag(sigma^2) W_b."""
    g = _gen(7)
    maps = torch.randn((2, 3, 3), generator=g)
    scale = torch.tensor([[0.5, 1.0, 2.0]])
    aug = ScVIDenoise()
    aug.set_posterior(scale, maps)
    n = 40000
    batch = torch.arange(n) % 2
    index = torch.zeros(n, dtype=torch.long)
    out = aug(torch.zeros(n, 3), batch=batch, key=index, index=index, generator=g)
    for b in (0, 1):
        expected = maps[b].T @ torch.diag(scale[0] ** 2) @ maps[b]
        torch.testing.assert_close(
            torch.cov(out[batch == b].T), expected, atol=0.08 * float(expected.abs().max()), rtol=0
        )


def test_scvi_denoise_rejects_a_bad_scale():
    with pytest.raises(ValueError, match="finite and non-negative"):
        ScVIDenoise().set_posterior(torch.tensor([[-1.0]]))


# ---- MDWGAN-GP ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_knn_propagation_matches_sklearn_graph(metric):
    x = np.random.default_rng(0).normal(size=(60, 5))
    a = kneighbors_graph(x, 4, metric=metric, include_self=False).toarray()
    a = np.maximum(a, a.T) + np.eye(60)
    d = a.sum(1) ** -0.5
    expected = d[:, None] * a * d[None] @ x
    np.testing.assert_allclose(knn_propagate(torch.as_tensor(x), n_neighbors=4, metric=metric).numpy(), expected)


def test_mdwgan_generates_samples_of_the_conditioning_key():
    x, keys, means = _two_keys(n=400, d=4)
    aug = MDWGANGP(p=1.0, n_steps=60, batch_size=128, hidden=32, lr=5e-3)  # a short, fast training
    aug.fit(x, keys, n_keys=2, generator=_gen())
    assert aug.state_dict() == {}  # training-only state, never saved
    key = torch.arange(2000) % 2
    out = aug(torch.zeros(2000, 4), batch=key, key=key, generator=_gen(8))
    for k in (0, 1):
        rows = out[key == k]
        # conditioned on key k, the samples sit near key k's mean, not the other's, and are not collapsed
        assert float((rows.mean(0) - means[k]).norm()) < 0.5 * float((rows.mean(0) - means[1 - k]).norm())
        assert float(rows.std(0).mean()) > 0.2


def test_mdwgan_is_deterministic_with_the_generator():
    x, keys, _ = _two_keys(n=100, d=4)
    outs = []
    for _ in range(2):
        aug = MDWGANGP(p=1.0, n_steps=3, batch_size=32, hidden=16)
        aug.fit(x, keys, n_keys=2, generator=_gen(9))
        outs.append(aug.generate(keys, _gen(10)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# ---- fits --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair():
    student, teacher, _ = make_weakly_paired(n_genes=30, n_rep=6)
    return student, teacher


def _fit(pair, **kwargs):
    student, teacher = pair
    adata = student.copy()
    kwargs = {"max_epochs": 1, "batch_size": 64, "accelerator": "cpu", "rng": 3, "enable_progress_bar": False, **kwargs}
    model = ssc.tl.fit_semiclipped(adata, teacher, student_rep=kwargs.pop("student_rep", "X_emb"), **kwargs)
    return adata, model


def test_naming_pea_is_the_pea_flag(pair):
    assert _latent_hash(_fit(pair)[0]) == _latent_hash(_fit(pair, augmentations=("pea",))[0])
    assert _latent_hash(_fit(pair, pea=False)[0]) == _latent_hash(_fit(pair, augmentations=())[0])


OPTIONS = {"mdwgan_gp": {"n_steps": 5, "batch_size": 64, "hidden": 16}}


@pytest.mark.parametrize("name", ["mwo", "scgft", "mdwgan_gp"])
@pytest.mark.parametrize("pea", [False, True])
def test_one_epoch_fit_with_each_augmentation(pair, name, pea):
    augmentations = (name, "pea") if pea else (name,)
    options = {k: v for k, v in OPTIONS.items() if k == name} or None
    adata, model = _fit(pair, augmentations=augmentations, augmentation_kwargs=options)
    again, _ = _fit(pair, augmentations=augmentations, augmentation_kwargs=options)
    plain, _ = _fit(pair, pea=pea)
    assert model.pea is pea
    assert np.isfinite(adata.obsm["X_semiclipped"]).all()
    assert _latent_hash(adata) == _latent_hash(again)  # same seed, same result
    assert _latent_hash(adata) != _latent_hash(plain)
    params = adata.uns["X_semiclipped"]["params"]
    assert list(params["augmentations"]) == list(augmentations)
    assert set(params["augmentation_kwargs"]) == {name}


def test_augmented_model_saves_and_loads(pair, tmp_path):
    adata, model = _fit(pair, augmentations=("mwo", "scgft", "pea"))
    model.save(tmp_path / "m")
    loaded = ssc.model.SemiClipped.load(tmp_path / "m", adata=pair[0].copy())
    np.testing.assert_array_equal(loaded.get_latent_representation(), adata.obsm["X_semiclipped"])
    adata.write_h5ad(tmp_path / "a.h5ad")  # the augmentation parameters in uns are h5ad-storable
    params = ad.read_h5ad(tmp_path / "a.h5ad").uns["X_semiclipped"]["params"]
    assert list(params["augmentations"]) == ["mwo", "scgft", "pea"]
    assert dict(params["augmentation_kwargs"]["scgft"]) == {"p": 0.5, "n_components": 1}


def test_fit_argument_errors(pair):
    with pytest.raises(ValueError, match="'pea' is named"):
        _fit(pair, pea=False, augmentations=("mwo", "pea"))
    with pytest.raises(ValueError, match="without `augmentations`"):
        _fit(pair, augmentation_kwargs={"mwo": {}})
    with pytest.raises(ValueError, match="must come last"):
        _fit(pair, augmentations=("pea", "mwo"))
    with pytest.raises(ValueError, match="scvi_model"):
        _fit(pair, augmentations=("scvi_denoise",))


@pytest.fixture(scope="module")
def scvi_pair(pair):
    """A student with counts, its scVI model (two epochs) and X_scVI = the model's posterior mean."""
    import scvi

    student, teacher = pair
    g = np.random.default_rng(0)
    rates = np.exp(0.3 * student.obsm["X_emb"] @ g.normal(size=(12, 50)) / np.sqrt(12) + 1.0)
    counts = ad.AnnData(g.poisson(rates).astype(np.float32), obs=student.obs.copy())
    scvi.model.SCVI.setup_anndata(counts)
    vae = scvi.model.SCVI(counts, n_latent=6, n_hidden=32)
    with warnings.catch_warnings():
        # torch's pytree deprecation raised inside Lightning's loop when scvi-tools trains (not our code)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        vae.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False, batch_size=128, log_every_n_steps=1)
    adata = student.copy()
    adata.obsm["X_scVI"] = vae.get_latent_representation()
    return adata, teacher, vae


@pytest.mark.parametrize("pea", [False, True])
def test_one_epoch_fit_with_scvi_denoise(scvi_pair, pea):
    adata, teacher, vae = scvi_pair
    augmentations = ("scvi_denoise", "pea") if pea else ("scvi_denoise",)
    options = {"scvi_denoise": {"scvi_model": vae}}
    out = [_fit((adata, teacher), student_rep="X_scVI", augmentations=augmentations, augmentation_kwargs=options)[0]]
    out.append(
        _fit((adata, teacher), student_rep="X_scVI", augmentations=augmentations, augmentation_kwargs=options)[0]
    )
    plain, _ = _fit((adata, teacher), student_rep="X_scVI", pea=pea)
    assert _latent_hash(out[0]) == _latent_hash(out[1])
    assert _latent_hash(out[0]) != _latent_hash(plain)
    assert dict(out[0].uns["X_semiclipped"]["params"]["augmentation_kwargs"]) == {"scvi_denoise": {"p": 1.0}}


def test_scvi_denoise_checks_the_embedding_and_the_rows(scvi_pair):
    adata, teacher, vae = scvi_pair
    options = {"scvi_denoise": {"scvi_model": vae}}
    wrong = adata.copy()
    wrong.obsm["X_scVI"] = wrong.obsm["X_scVI"] + 1.0
    with pytest.raises(ValueError, match="not the posterior mean"):
        _fit((wrong, teacher), student_rep="X_scVI", augmentations=("scvi_denoise",), augmentation_kwargs=options)
    renamed = adata.copy()
    renamed.obs_names = [f"other{i}" for i in range(renamed.n_obs)]
    with pytest.raises(ValueError, match="not in the scVI model's AnnData"):
        _fit((renamed, teacher), student_rep="X_scVI", augmentations=("scvi_denoise",), augmentation_kwargs=options)
