import pytest
import torch

from iai_core import VAE, GaussianEncoder, History, LatentGaussianModel, load_digits, make_generator, train_vae
from iai_core.training import (adam, check_counts, check_rates, checked_transform, fit_epochs, minibatches,
                               prepare_data)


def test_history_columns_record_and_compare():
    h = History("epochs", "train_elbo", "test_elbo")
    h.record(epochs=1, train_elbo=-3.0)
    h.record(test_elbo=-4.0)
    assert h.epochs == [1] and h["train_elbo"] == [-3.0] and h.test_elbo == [-4.0]
    assert h == History(epochs=[1], train_elbo=[-3.0], test_elbo=[-4.0])
    assert h != History(epochs=[1], train_elbo=[-3.5], test_elbo=[-4.0])
    assert h.as_dict() == {"epochs": [1], "train_elbo": [-3.0], "test_elbo": [-4.0]}
    assert History("a").a == []
    with pytest.raises(ValueError, match=r"record: this history has the columns \['epochs', 'test_elbo', "):
        h.record(tset_elbo=1.0)
    with pytest.raises(AttributeError, match="History has no column 'tset_elbo'"):
        h.tset_elbo


def test_minibatches_partition_a_fresh_permutation(device):
    batches = minibatches(10, 4, make_generator(0, device), device)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = minibatches(10, 4, make_generator(0, device), device)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert batches[0].device.type == device.type


def test_fit_epochs_runs_each_minibatch_once_and_transforms_it():
    x = torch.arange(12.0).reshape(6, 2)
    seen, ends = [], []

    def step(xb, idx):
        seen.append((xb.clone(), idx.clone()))
        return len(idx)

    def end_of_epoch(epoch, outputs):
        ends.append((epoch, outputs))

    calls = []

    def transform(xb, generator):
        calls.append(generator)
        return -xb

    g = make_generator(1)
    fit_epochs(step, x, epochs=3, batch_size=4, generator=g, end_of_epoch=end_of_epoch, start=1,
               transform=transform, show_progress=False)
    assert [e for e, _ in ends] == [2, 3] and all(o == [4, 2] for _, o in ends)
    assert len(seen) == 4 and all(c is g for c in calls)
    for xb, idx in seen:
        torch.testing.assert_close(xb, -x[idx])            # the step sees the transformed minibatch
    first_epoch = torch.cat([idx for _, idx in seen[:2]])
    assert sorted(first_epoch.tolist()) == list(range(6))


def test_fused_adam_is_the_same_update_as_adam(device):
    g = make_generator(0, device)
    w0 = torch.randn(5, 3, generator=g, device=device)
    grads = [torch.randn(5, 3, generator=g, device=device) for _ in range(4)]
    out = []
    for make in (lambda p: torch.optim.Adam(p, lr=1e-2), lambda p: adam(p, 1e-2), lambda p: adam(p, 1e-2, fused=True)):
        w = torch.nn.Parameter(w0.clone())
        opt = make([w])
        for gr in grads:
            w.grad = gr.clone()
            opt.step()
        out.append(w.detach())
    assert torch.equal(out[0], out[1])                      # not fused: torch's Adam, bit for bit
    torch.testing.assert_close(out[0], out[2])
    assert not torch.equal(out[0], w0)


def test_argument_checks():
    check_counts(epochs=0, batch_size=1)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        check_counts(batch_size=0)
    with pytest.raises(TypeError, match="n_samples must be an int"):
        check_counts(n_samples=2.0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        check_rates(lr=0.0)
    model = LatentGaussianModel(4, 2, hidden=8, seed=0)
    with pytest.raises(TypeError, match="transform must be None or a callable"):
        checked_transform(3, model)
    assert checked_transform(None, model) is None
    probs = torch.full((5, 4), 0.3)
    with pytest.raises(ValueError, match="x_train must contain only 0s and 1s"):
        prepare_data(model, probs, "x_train", probs)
    assert prepare_data(model, probs, "x_train", probs, transform=lambda x, g: x) is not None   # shape only
    with pytest.raises(ValueError, match=r"x_train must have shape \(N, 4\)"):
        prepare_data(model, torch.zeros(5, 3), "x_train", probs, transform=lambda x, g: x)
    bad = checked_transform(lambda x, g: x, model)
    with pytest.raises(ValueError, match=r"transform\(x_batch\) must contain only 0s and 1s"):
        bad(probs, None)


def test_a_binarizing_transform_trains_on_fresh_draws_each_epoch():
    """Grey-level images binarized afresh in every minibatch (dynamic binarization): reproducible from
    the generator, and different from training on one fixed binarization."""
    probs = load_digits().x_train[:200] * 0.8 + 0.1

    def binarize(x, generator):
        return torch.bernoulli(x, generator=generator)

    def run(transform, x):
        vae = VAE(GaussianEncoder(64, 2, hidden=16, depth=1, seed=0), LatentGaussianModel(64, 2, hidden=16, depth=1,
                                                                                             seed=1))
        return train_vae(vae, x, epochs=2, batch_size=50, generator=make_generator(0), transform=transform,
                         show_progress=False)

    a, b = run(binarize, probs), run(binarize, probs)
    fixed = run(None, torch.bernoulli(probs, generator=make_generator(5)))
    assert a == b and a.train_elbo != fixed.train_elbo
    assert len(a.train_elbo) == 2
