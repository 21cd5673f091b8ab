import pytest
import torch

from iai_core import (VAE, GaussianEncoder, History, LatentGaussianModel, elbo, load_checkpoint,
                      load_digits, make_generator, mean_elbo, save_checkpoint, train_vae)


def small_vae(seed=0, x_dim=64, z_dim=4, hidden=32):
    return VAE(GaussianEncoder(x_dim, z_dim, hidden=hidden, depth=1, seed=seed),
               LatentGaussianModel(x_dim, z_dim, hidden=hidden, depth=1, seed=seed + 1))


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.x_train[:300], data.x_test[:100]


def test_forward_and_elbo_match_the_parts(device):
    vae = small_vae().to(device)
    x = torch.bernoulli(torch.full((5, 64), 0.3), generator=make_generator(0)).to(device)
    mu, logvar = vae(x)
    assert mu.shape == logvar.shape == (5, 4) and mu.device.type == device.type
    got = vae.elbo(x, n_samples=3, generator=make_generator(1, device))
    want = elbo(vae.model, x, *vae.encoder(x), n_samples=3, generator=make_generator(1, device))
    assert got.shape == (5,)
    torch.testing.assert_close(got, want)
    # differentiable in both theta and phi
    got.sum().backward()
    assert vae.encoder.net[0].weight.grad.abs().sum() > 0
    assert vae.model.decoder[0].weight.grad.abs().sum() > 0


def test_training_raises_the_elbo_and_records_curves(digits, device):
    x_train, x_test = (x.to(device) for x in digits)
    vae = small_vae().to(device)
    before = float(mean_elbo(vae, x_train, generator=make_generator(1, device)))
    hist = train_vae(vae, x_train, x_test, epochs=5, batch_size=50, lr=3e-3, generator=make_generator(0, device),
                     show_progress=False)
    assert isinstance(hist, History)
    assert hist.epochs == [1, 2, 3, 4, 5]
    assert len(hist.train_elbo) == len(hist.test_elbo) == 5
    assert all(isinstance(v, float) for v in hist.train_elbo + hist.test_elbo)
    assert hist.train_elbo[-1] > before + 5
    assert hist.train_elbo[-1] > hist.train_elbo[0]
    # the recorded value is the mean ELBO with the evaluation generator (seed + 1)
    again = float(mean_elbo(vae, x_train, generator=make_generator(1, device)))
    assert again == pytest.approx(hist.train_elbo[-1], abs=1e-4)


def test_no_test_set_gives_empty_test_curve(digits):
    hist = train_vae(small_vae(), digits[0][:100], epochs=1, show_progress=False)
    assert hist.test_elbo == [] and len(hist.train_elbo) == 1


def test_training_is_reproducible_from_the_seed(digits):
    a, b, c = small_vae(), small_vae(), small_vae()
    ha = train_vae(a, digits[0], epochs=2, generator=make_generator(3), show_progress=False)
    hb = train_vae(b, digits[0], epochs=2, generator=make_generator(3), show_progress=False)
    train_vae(c, digits[0], epochs=2, generator=make_generator(4), show_progress=False)
    assert ha == hb
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path, digits, device):
    x = digits[1][:20].to(device)
    vae = small_vae().to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    loss = -vae.elbo(x, generator=make_generator(0, device)).mean()
    loss.backward()
    opt.step()
    gen = make_generator(7, device)
    torch.randn(3, generator=gen, device=device)
    hist = History(epochs=[1], train_elbo=[-30.0], test_elbo=[-31.0])
    path = tmp_path / "ck.pt"
    save_checkpoint(path, vae, opt, hist, 1, gen)

    other = small_vae(seed=10).to(device)
    opt2 = torch.optim.Adam(other.parameters(), lr=1e-3)
    gen2 = make_generator(0, device)
    epoch, hist2 = load_checkpoint(path, other, opt2, gen2)
    assert epoch == 1 and hist2 == hist
    for p1, p2 in zip(vae.parameters(), other.parameters()):
        assert torch.equal(p1, p2) and p2.device.type == device.type
    assert torch.equal(torch.randn(5, generator=gen, device=device), torch.randn(5, generator=gen2, device=device))
    mu1, lv1 = vae(x)
    mu2, lv2 = other(x)
    assert torch.equal(mu1, mu2) and torch.equal(lv1, lv2)
    # identical continued training: one more Adam step on both
    for v, o in ((vae, opt), (other, opt2)):
        o.zero_grad()
        (-v.elbo(x, generator=make_generator(2, device)).mean()).backward()
        o.step()
    for p1, p2 in zip(vae.parameters(), other.parameters()):
        assert torch.equal(p1, p2)


def test_checkpoint_is_loadable_with_weights_only(tmp_path, digits):
    path = tmp_path / "ck.pt"
    train_vae(small_vae(), digits[0][:100], epochs=1, checkpoint_path=path, generator=make_generator(0),
              show_progress=False)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"vae", "optimizer", "history", "epoch", "generator"}
    assert not (tmp_path / "ck.pt.part").exists()


def test_resume_is_bit_identical_to_straight_training(tmp_path, digits, device):
    x_train, x_test = (x.to(device) for x in digits)
    straight = small_vae().to(device)
    h_straight = train_vae(straight, x_train, x_test, epochs=4, generator=make_generator(1, device),
                           show_progress=False)

    path = tmp_path / "ck.pt"
    first = small_vae().to(device)
    train_vae(first, x_train, x_test, epochs=2, generator=make_generator(1, device), checkpoint_path=path,
              show_progress=False)
    resumed = small_vae(seed=99).to(device)        # different initial weights: all state must come from the file
    h_resumed = train_vae(resumed, x_train, x_test, epochs=4, generator=make_generator(1, device), checkpoint_path=path,
                          resume=True,
                          show_progress=False)
    for p1, p2 in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p1, p2)
    assert h_resumed == h_straight
    assert load_checkpoint(path, small_vae())[0] == 4


def test_gaussian_likelihood_vae_trains(device):
    g = make_generator(0)
    x = (torch.randn(200, 2, generator=g) @ torch.randn(2, 6, generator=g)).to(device)
    vae = VAE(GaussianEncoder(6, 2, hidden=16, depth=1, seed=0),
              LatentGaussianModel(6, 2, depth=0, likelihood="gaussian", seed=1)).to(device)
    hist = train_vae(vae, x, epochs=20, batch_size=50, lr=1e-2, show_progress=False)
    assert hist.train_elbo[-1] > hist.train_elbo[0]


def test_vae_bad_inputs(tmp_path, digits):
    enc, model = GaussianEncoder(64, 4, hidden=8, seed=0), LatentGaussianModel(64, 4, hidden=8, seed=0)
    with pytest.raises(TypeError, match="encoder"):
        VAE(model, model)
    with pytest.raises(TypeError, match="model"):
        VAE(enc, enc)
    with pytest.raises(ValueError, match="z_dim"):
        VAE(GaussianEncoder(64, 3, hidden=8), model)
    vae = VAE(enc, model)
    x = digits[0][:50]
    with pytest.raises(TypeError, match="vae"):
        train_vae(model, x, epochs=1)
    with pytest.raises(TypeError, match="epochs"):
        train_vae(vae, x, epochs=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        train_vae(vae, x, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        train_vae(vae, x, epochs=1, lr=-1.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        train_vae(vae, x, epochs=1, generator=0)
    with pytest.raises(TypeError, match="checkpoint_path needs a generator"):
        train_vae(vae, x, epochs=1, checkpoint_path=tmp_path / "b.pt")
    with pytest.raises(ValueError, match="x_train"):
        train_vae(vae, x[:, :10], epochs=1)
    with pytest.raises(ValueError, match="x_train"):
        train_vae(vae, x * 0.5 + 0.25, epochs=1)
    with pytest.raises(ValueError, match="x_test"):
        train_vae(vae, x, x[:, :10], epochs=1)
    with pytest.raises(TypeError, match="x_train"):
        train_vae(vae, x.numpy(), epochs=1)
    with pytest.raises(ValueError, match="checkpoint_path"):
        train_vae(vae, x, epochs=1, resume=True)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train_vae(vae, x, epochs=1, resume=True, checkpoint_path=tmp_path / "missing.pt", generator=make_generator(0))
    with pytest.raises(ValueError, match="x"):
        vae.elbo(x * 0.5 + 0.25)
    with pytest.raises(TypeError, match="generator"):
        save_checkpoint(tmp_path / "a.pt", vae, torch.optim.Adam(vae.parameters()), History(), 0, None)
    with pytest.raises(TypeError, match="vae"):
        load_checkpoint(tmp_path / "a.pt", model)


def test_progress_bar_path_runs(digits, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    hist = train_vae(small_vae(), digits[0][:100], digits[1][:50], epochs=2, show_progress=True)
    assert hist.epochs == [1, 2]


def overfitting_setup(device):
    """A VAE that overfits 40 digits within a few dozen epochs, so its validation ELBO peaks early."""
    data = load_digits()
    x_train, x_valid = data.x_train[:40].to(device), data.x_train[1000:1200].to(device)
    return (lambda: small_vae(hidden=64).to(device)), x_train, x_valid


def test_keep_best_ends_with_the_parameters_of_the_best_validation_epoch(device):
    make, x_train, x_valid = overfitting_setup(device)
    vae = make()
    hist = train_vae(vae, x_train, epochs=60, batch_size=20, lr=1e-2, generator=make_generator(0, device),
                     x_valid=x_valid, keep_best=True, show_progress=False)
    assert len(hist.valid_elbo) == len(hist.epochs) == 60
    best = hist.epochs[max(range(60), key=hist.valid_elbo.__getitem__)]
    assert best < 50, "the setting must overfit for this test to mean anything"
    # the final parameters are those of a straight run stopped at the best epoch
    straight = make()
    train_vae(straight, x_train, epochs=best, batch_size=20, lr=1e-2, generator=make_generator(0, device),
              show_progress=False)
    for p1, p2 in zip(vae.parameters(), straight.parameters()):
        assert torch.equal(p1, p2)
    again = float(mean_elbo(vae, x_valid, generator=make_generator(1, device)))
    assert again == pytest.approx(max(hist.valid_elbo), abs=1e-4)
    # without keep_best, the last epoch's parameters stay
    last = make()
    train_vae(last, x_train, epochs=60, batch_size=20, lr=1e-2, generator=make_generator(0, device),
              x_valid=x_valid, show_progress=False)
    assert not all(torch.equal(p1, p2) for p1, p2 in zip(last.parameters(), vae.parameters()))


def test_patience_stops_after_that_many_epochs_without_improvement(device):
    make, x_train, x_valid = overfitting_setup(device)
    hist = train_vae(make(), x_train, epochs=200, batch_size=20, lr=1e-2, generator=make_generator(0, device),
                     x_valid=x_valid, patience=5, show_progress=False)
    v = hist.valid_elbo
    best = max(range(len(v)), key=v.__getitem__)
    assert len(v) < 200 and len(v) == best + 1 + 5
    assert all(v[i] <= v[best] for i in range(len(v)))
    # it stops at the first epoch that is 5 epochs past the best so far, not earlier
    best_so_far = 0
    for i in range(len(v)):
        if v[i] > v[best_so_far]:
            best_so_far = i
        assert (i - best_so_far >= 5) == (i == len(v) - 1)


def test_early_stopping_resumes_from_a_checkpoint(tmp_path, device):
    make, x_train, x_valid = overfitting_setup(device)
    straight = make()
    h_straight = train_vae(straight, x_train, epochs=60, batch_size=20, lr=1e-2, x_valid=x_valid, patience=8,
                           keep_best=True, generator=make_generator(2, device), show_progress=False)
    path = tmp_path / "ck.pt"
    first = make()
    train_vae(first, x_train, epochs=10, batch_size=20, lr=1e-2, x_valid=x_valid, patience=8, keep_best=True,
              generator=make_generator(2, device), checkpoint_path=path, show_progress=False)
    resumed = make()
    h_resumed = train_vae(resumed, x_train, epochs=60, batch_size=20, lr=1e-2, x_valid=x_valid, patience=8,
                          keep_best=True, generator=make_generator(2, device), checkpoint_path=path, resume=True,
                          show_progress=False)
    assert h_resumed == h_straight
    for p1, p2 in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p1, p2)


def test_early_stopping_bad_inputs(digits):
    vae, x = small_vae(), digits[0][:50]
    with pytest.raises(ValueError, match="x_valid"):
        train_vae(vae, x, epochs=1, patience=3)
    with pytest.raises(ValueError, match="x_valid"):
        train_vae(vae, x, epochs=1, keep_best=True)
    with pytest.raises(ValueError, match="patience"):
        train_vae(vae, x, epochs=1, x_valid=x, patience=0)
    with pytest.raises(ValueError, match="x_valid"):
        train_vae(vae, x, epochs=1, x_valid=x[:, :10])
