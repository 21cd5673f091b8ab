"""The variational autoencoder: an encoder q_phi(z | x) and a decoder p_theta(x | z) trained together.

    max_{theta, phi}  sum_i ELBO(x_i, f(x_i; phi); theta)

by stochastic gradient ascent on minibatches, with reparameterized samples z = mu + sigma * eps
(Kingma & Welling, 2014; Rezende et al., 2014). ``train_vae`` draws from a given generator, shows a progress bar,
records the mean ELBO on the training and test sets (and a validation set) after each epoch, can stop
early and keep the parameters of the epoch with the best validation ELBO, and can save a checkpoint
every epoch (``state_dict`` files only, loaded with ``weights_only=True``) from which training
resumes bit for bit.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._validate import check_generator, check_positive
from .elbo import elbo as elbo_fn
from .encoders import GaussianEncoder
from .models import LatentGaussianModel
from .training import (History, adam, check_counts, check_rates, checked_transform, evaluation_generator, fit_epochs,
                       prepare_data)

__all__ = ["VAE", "train_vae", "save_checkpoint", "load_checkpoint", "mean_elbo"]


class VAE(nn.Module):
    """An amortized inference model composed with the generative model.

    encoder: a ``GaussianEncoder`` (phi), x -> (mu, logvar); model: a ``LatentGaussianModel`` (theta).
    forward(x: (batch, D)) -> (mu, logvar), each (batch, d).
    """

    def __init__(self, encoder: GaussianEncoder, model: LatentGaussianModel):
        super().__init__()
        if not isinstance(encoder, GaussianEncoder):
            raise TypeError(f"encoder must be a GaussianEncoder, got {type(encoder).__name__}")
        if not isinstance(model, LatentGaussianModel):
            raise TypeError(f"model must be a LatentGaussianModel, got {type(model).__name__}")
        if encoder.x_dim != model.x_dim or encoder.z_dim != model.z_dim:
            raise ValueError(f"encoder and model must agree on (x_dim, z_dim): encoder has "
                             f"({encoder.x_dim}, {encoder.z_dim}), model has ({model.x_dim}, {model.z_dim})")
        self.encoder, self.model = encoder, model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The amortized variational parameters lambda = f(x; phi): (mu, logvar), each (batch, d)."""
        return self.encoder(x)

    def elbo(self, x: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None,
             analytic_kl: bool = True) -> torch.Tensor:
        """The amortized ELBO of each example in nats, (batch,); differentiable in theta and phi."""
        self.model.check_x(x)
        mu, logvar = self.encoder(x)
        return elbo_fn(self.model, x, mu, logvar, n_samples=n_samples, analytic_kl=analytic_kl,
                       generator=generator, validate=False)


def _check_vae(vae) -> None:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a VAE, got {type(vae).__name__}")


@torch.no_grad()
def mean_elbo(vae: VAE, x: torch.Tensor, *, batch_size: int = 1000, n_samples: int = 1,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean amortized ELBO over the rows of x (N, D), in nats, computed in chunks: a 0-d tensor."""
    _check_vae(vae)
    check_positive("batch_size", batch_size, integer=True)
    total = torch.zeros((), device=x.device, dtype=x.dtype)
    for xb in x.split(batch_size):
        total = total + vae.elbo(xb, n_samples=n_samples, generator=generator).sum()
    return total / x.shape[0]


def save_checkpoint(path, vae: VAE, optimizer: torch.optim.Optimizer, history: History, epoch: int,
                    generator: torch.Generator, best: dict | None = None) -> None:
    """Write everything needed to resume training to ``path`` (tensors, numbers and lists only).

    ``best``: the early-stopping state of ``train_vae`` (the best epoch, its validation ELBO and
    parameters), saved with the rest. The file is written to a temporary name and renamed, so an
    interrupted save never leaves a half-written checkpoint behind.
    """
    _check_vae(vae)
    check_positive("epoch", epoch, integer=True, allow_zero=True)
    check_generator("generator", generator)
    if generator is None:
        raise TypeError("generator must be the torch.Generator used for shuffling, got None")
    state = {"vae": vae.state_dict(), "optimizer": optimizer.state_dict(), "history": history.as_dict(),
             "epoch": epoch, "generator": generator.get_state()}
    if best is not None:
        state["best"] = best
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, vae: VAE, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None, *, with_best: bool = False):
    """Restore a checkpoint written by ``save_checkpoint`` into ``vae`` (and ``optimizer``, ``generator``).

    Loads with ``torch.load(..., weights_only=True)``: only tensors and plain containers are read,
    never arbitrary pickled code. Returns (epoch, history), or (epoch, history, best) with
    ``with_best`` (best: the early-stopping state saved with the checkpoint, or None).
    """
    _check_vae(vae)
    check_generator("generator", generator)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    vae.load_state_dict(state["vae"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if generator is not None:
        generator.set_state(state["generator"])
    history = History(**{name: [int(v) if name == "epochs" else float(v) for v in values]
                         for name, values in state["history"].items()})
    if with_best:
        return int(state["epoch"]), history, state.get("best")
    return int(state["epoch"]), history


class _Stop(Exception):
    """Raised at the end of an epoch to stop training early (caught by ``train_vae``)."""


def train_vae(vae: VAE, x_train: torch.Tensor, x_test: torch.Tensor | None = None, *, epochs: int,
              batch_size: int = 100, lr: float = 1e-3, n_samples: int = 1,
              generator: torch.Generator | None = None, transform=None, show_progress: bool = True,
              checkpoint_path=None, resume: bool = False, eval_batch_size: int = 1000,
              x_valid: torch.Tensor | None = None, patience: int | None = None,
              keep_best: bool = False) -> History:
    """Train encoder and decoder jointly with Adam on the minibatch ELBO; return the ELBO curves.

    x_train: (N, D), x_test: (M, D) or None; both are moved to the device and dtype of vae's
    parameters. ``generator`` (on that device; None: torch's global generator) shuffles the
    minibatches and draws the reparameterization noise; the end-of-epoch evaluation draws from
    its own (``training.evaluation_generator``: the seed + 1, afresh each epoch), so evaluating
    never changes the training trajectory.
    ``transform(x_batch, generator)``: applied to each training minibatch (see ``training.fit_epochs``)
    and, with the evaluation generator, to the training set before its end-of-epoch ELBO.
    ``checkpoint_path``: save a checkpoint after every epoch. ``resume=True``: continue from that
    checkpoint up to ``epochs`` in total, exactly as if training had never stopped (both need a
    generator: its state is part of the checkpoint).
    Early stopping on a validation set ``x_valid`` (V, D), held out from x_train (not the test set
    whose results are reported): its mean ELBO is recorded after each epoch (column ``valid_elbo``);
    ``patience``: stop when it has not improved for ``patience`` epochs; ``keep_best``: end with
    the parameters of the epoch of the highest validation ELBO, ``history.epochs[argmax(valid_elbo)]``.
    Records the columns epochs, train_elbo, test_elbo and valid_elbo: the mean ELBO (nats) of the
    training, test and validation sets after each epoch (a set not given leaves its column empty).
    """
    _check_vae(vae)
    check_counts(epochs=epochs, batch_size=batch_size, n_samples=n_samples, eval_batch_size=eval_batch_size)
    check_rates(lr=lr)
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs checkpoint_path, got None")
    if patience is not None:
        check_counts(patience=patience, allow_zero=())
    if (patience is not None or keep_best) and x_valid is None:
        raise ValueError(f"patience and keep_best need a validation set x_valid, got None "
                         f"(patience={patience!r}, keep_best={keep_best!r})")
    p = next(vae.parameters())
    check_generator("generator", generator, p.device)
    if checkpoint_path is not None and generator is None:
        raise TypeError("checkpoint_path needs a generator (its state is saved, to resume bit for bit), got None")
    transform = checked_transform(transform, vae.model)
    x_train = prepare_data(vae.model, x_train, "x_train", p, transform)
    x_test = prepare_data(vae.model, x_test, "x_test", p)
    x_valid = prepare_data(vae.model, x_valid, "x_valid", p)

    optimizer = adam(vae.parameters(), lr)
    history, start = History("epochs", "train_elbo", "test_elbo", "valid_elbo"), 0
    best = None                                      # {"epoch", "valid_elbo", "state"} of the best epoch so far
    if resume:
        start, history, best = load_checkpoint(checkpoint_path, vae, optimizer, generator, with_best=True)
        history.columns.setdefault("valid_elbo", [])

    def step(x, idx):
        loss = -vae.elbo(x, n_samples=n_samples, generator=generator).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def end_of_epoch(epoch, _):
        nonlocal best
        vae.eval()
        eval_gen = evaluation_generator(generator)
        x_seen = x_train if transform is None else transform(x_train, eval_gen)
        history.record(epochs=epoch, train_elbo=float(mean_elbo(vae, x_seen, batch_size=eval_batch_size,
                                                                  generator=eval_gen)))
        if x_test is not None:
            history.record(test_elbo=float(mean_elbo(vae, x_test, batch_size=eval_batch_size, generator=eval_gen)))
        if x_valid is not None:
            valid = float(mean_elbo(vae, x_valid, batch_size=eval_batch_size,
                                    generator=evaluation_generator(generator)))
            history.record(valid_elbo=valid)
            if best is None or valid > best["valid_elbo"]:
                best = {"epoch": epoch, "valid_elbo": valid,
                        "state": {k: v.detach().clone() for k, v in vae.state_dict().items()} if keep_best else {}}
        vae.train()
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, vae, optimizer, history, epoch, generator, best=best)
        if patience is not None and epoch - best["epoch"] >= patience:
            raise _Stop
        return {"train": f"{history.train_elbo[-1]:.1f}",
                "test": f"{history.test_elbo[-1]:.1f}" if history.test_elbo else "-"}

    vae.train()
    try:
        if not (patience is not None and best is not None and start - best["epoch"] >= patience):
            fit_epochs(step, x_train, epochs=epochs, batch_size=batch_size, generator=generator,
                       end_of_epoch=end_of_epoch, start=start, transform=transform, desc="training the VAE",
                       show_progress=show_progress)
    except _Stop:
        pass
    if keep_best and best is not None and best["state"]:
        vae.load_state_dict(best["state"])
    vae.eval()
    return history
