"""What every trainer of the book shares: the epoch loop over shuffled minibatches, the history it
records, the optimizer and the argument checks.

    for epoch = 1, ..., E:
        for each minibatch B of a fresh random permutation of the training set:    minibatches
            x_B <- transform(x_B)          (optional, e.g. a fresh binarization of each image)
            step(x_B)                      (the trainer's own gradient step: VAE, iterative, SIVI, ...)
        end_of_epoch(epoch)                (evaluate, record the history, save a checkpoint)

The trainers (``train_vae``, ``train_iterative``, ``train_hierarchical``, ``variational_em``,
``train_semi_implicit_vae``) differ only in their step and what they record; ``fit_semi_implicit``
has no data set and loops over iterations, with the same history, optimizer and checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ._progress import progress
from ._validate import check_positive, check_tensor

__all__ = ["History", "data_parallel", "average_gradients", "minibatches", "fit_epochs", "fit_epochs_elbo",
           "evaluation_generator", "adam", "check_counts", "check_rates", "prepare_data", "checked_transform"]

Transform = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


@dataclass(init=False)
class History:
    """What a trainer recorded: named columns of numbers, one value appended per record.

    Read a column as an attribute or an item, ``history.test_elbo`` or ``history["test_elbo"]`` (a
    list). The trainers on data record ``epochs`` (1, 2, ...), ``train_elbo`` and, when given a test
    set, ``test_elbo``, in nats per example; each trainer's docstring lists its other columns. A
    column the trainer has but did not fill (e.g. ``test_elbo`` without a test set) is empty.
    History(*names, **columns): empty columns ``names`` and filled ``columns``.
    """
    columns: dict[str, list]

    def __init__(self, *names: str, **columns):
        self.columns = {name: [] for name in names}
        self.columns.update({name: list(values) for name, values in columns.items()})

    def record(self, **values) -> None:
        """Append one value to each named column."""
        for name, value in values.items():
            if name not in self.columns:
                raise ValueError(f"record: this history has the columns {sorted(self.columns)}, got {name!r}")
            self.columns[name].append(value)

    def __getattr__(self, name: str):
        columns = self.__dict__.get("columns")
        if columns is not None and name in columns:
            return columns[name]
        raise AttributeError(f"History has no column {name!r}; its columns are {sorted(columns or {})}")

    def __getitem__(self, name: str) -> list:
        return self.columns[name]

    def as_dict(self) -> dict[str, list]:
        return {name: list(values) for name, values in self.columns.items()}


def data_parallel() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed's when a process group is initialized
    (e.g. under ``torchrun``), else (0, 1). With a world size above 1 every trainer runs data-parallel:
    ``minibatches`` gives each process its share of each minibatch and ``adam``'s optimizers average
    the gradients across processes before each step."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params) -> None:
    """Replace each parameter's gradient by its mean over the processes (one all-reduce of them all).

    What ``DistributedDataParallel`` does after ``backward()``; done here, in the optimizer's step,
    so that it also serves the trainers that take their gradients with ``torch.autograd.grad`` and
    set ``.grad`` themselves (the iterative ones), which DDP's backward hooks never see. Every
    process must hold gradients for the same parameters. Without a process group: nothing.
    """
    _, world = data_parallel()
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat.div_(world)
    for g, v in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(v.view_as(g))


def minibatches(n: int, batch_size: int, generator: torch.Generator | None, device) -> tuple[torch.Tensor, ...]:
    """One epoch's minibatches: a permutation of range(n) drawn from ``generator``, cut into index
    tensors of ``batch_size`` (the last one may be smaller).

    The one place where an epoch is cut into minibatches. Data-parallel (``data_parallel()`` with a
    world size W > 1), every process draws the same permutation (from equally seeded generators)
    and keeps its share of each minibatch, ``batch.tensor_split(W)[rank]``: the global minibatch is
    still ``batch_size``. A last minibatch of fewer than W examples is dropped (a process with no
    examples would have no gradient to average).
    """
    batches = torch.randperm(n, generator=generator, device=device).split(batch_size)
    rank, world = data_parallel()
    if world == 1:
        return batches
    return tuple(b.tensor_split(world)[rank] for b in batches if len(b) >= world)


def fit_epochs(step: Callable, x_train: torch.Tensor, *, epochs: int, batch_size: int,
               generator: torch.Generator | None, end_of_epoch: Callable, start: int = 0,
               transform: Transform | None = None, desc: str = "training", show_progress: bool = True) -> None:
    """The epoch loop: epochs ``start + 1, ..., epochs`` over shuffled minibatches of x_train (N, D).

    step(x_batch (B, D), idx (B,)) performs one gradient step and returns what the trainer wants
    to keep of it; end_of_epoch(epoch, outputs) gets the epoch's number (1-based) and the list of
    the step's returns, records what it wants, and may return a dict shown beside the progress bar.
    transform(x_batch, generator) -> x_batch, if given, replaces each minibatch before the step
    (drawing from the same generator), e.g. ``iai_core.data.dynamic_binarize``.
    """
    bar = progress(range(start, epochs), enabled=show_progress, desc=desc, total=max(epochs - start, 0))
    for epoch in bar:
        outputs = []
        for idx in minibatches(x_train.shape[0], batch_size, generator, x_train.device):
            x_batch = x_train[idx]
            if transform is not None:
                x_batch = transform(x_batch, generator)
            outputs.append(step(x_batch, idx))
        shown = end_of_epoch(epoch + 1, outputs)
        if shown and hasattr(bar, "set_postfix"):
            bar.set_postfix(**shown)


def fit_epochs_elbo(step: Callable, test_elbo: Callable, x_train: torch.Tensor, x_test: torch.Tensor | None, *,
                    epochs: int, batch_size: int, generator: torch.Generator | None, transform: Transform | None = None,
                    desc: str = "training", show_progress: bool = True) -> History:
    """``fit_epochs`` for a step(x_batch, idx) that returns its minibatch's mean ELBO (a 0-d tensor).

    Records epochs, train_elbo (the mean over the epoch's minibatches, as they were trained) and,
    with x_test, test_elbo (the mean of test_elbo(x_test) -> (M,) after each epoch), in nats.
    """
    history = History("epochs", "train_elbo", "test_elbo")

    def end_of_epoch(epoch, elbos):
        history.record(epochs=epoch, train_elbo=float(torch.stack(elbos).mean()))
        if x_test is not None:
            history.record(test_elbo=float(test_elbo(x_test).mean()))

    fit_epochs(step, x_train, epochs=epochs, batch_size=batch_size, generator=generator, end_of_epoch=end_of_epoch,
               transform=transform, desc=desc, show_progress=show_progress)
    return history


def evaluation_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """A fresh generator for an evaluation during training, seeded with ``generator``'s seed + 1.

    Made afresh for each evaluation, it draws the same noise every time, and evaluating never moves
    the training's own stream: a trainer given ``make_generator(s)`` evaluates with
    ``make_generator(s + 1)``. ``None`` (torch's global generator) gives None.
    """
    if generator is None:
        return None
    fresh = torch.Generator(device=generator.device)
    fresh.manual_seed(generator.initial_seed() + 1)
    return fresh


def adam(params, lr: float, *, fused: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam(params, lr)``. With ``fused``, its update runs as one kernel where this
    torch has one (CUDA, and the CPU since torch 2.4): the same rule, rounded differently, without a
    dozen passes over the parameters per step (the iterative trainers, whose steps are many and small).
    Data-parallel (``data_parallel``), the optimizer averages the gradients across processes before each step."""
    params = list(params)
    optimizer = None
    if fused:
        try:
            optimizer = torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    if optimizer is None:
        optimizer = torch.optim.Adam(params, lr=lr)
    if data_parallel()[1] > 1:       # data-parallel: each step first averages the gradients across processes
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: average_gradients(
            [p for group in opt.param_groups for p in group["params"]]))
    return optimizer


def check_counts(*, allow_zero: tuple[str, ...] = ("epochs",), **counts) -> None:
    """Check each keyword is a positive int (zero allowed for the names in ``allow_zero``)."""
    for name, value in counts.items():
        check_positive(name, value, integer=True, allow_zero=name in allow_zero)


def check_rates(**rates) -> None:
    """Check each keyword is a positive number (learning rates and the like)."""
    for name, value in rates.items():
        check_positive(name, value)


def checked_transform(transform: Transform | None, model) -> Transform | None:
    """``transform``, checked to be callable, whose first output is checked with ``model.check_x``
    (a transform that hands the model non-binary pixels fails loudly, once, at the first step)."""
    if transform is None:
        return None
    if not callable(transform):
        raise TypeError(f"transform must be None or a callable (x_batch, generator) -> x_batch, "
                        f"got {type(transform).__name__}")
    checked = []

    def run(x_batch, generator):
        x_batch = transform(x_batch, generator)
        if not checked:
            model.check_x(x_batch, "transform(x_batch)")
            checked.append(True)
        return x_batch

    return run


def prepare_data(model, x: torch.Tensor | None, name: str, like: torch.Tensor,
                 transform: Transform | None = None) -> torch.Tensor | None:
    """Validate a data set (N, D) for ``model`` and move it to the device and dtype of ``like``.

    Without a transform the data must be what the model observes (``model.check_x``: binary for a
    Bernoulli likelihood); with one, only its shape is checked here and the transformed minibatches
    are what the model sees.
    """
    if x is None:
        return None
    check_tensor(name, x, ndim=2)
    if transform is None:
        model.check_x(x, name)
    elif x.shape[-1] != model.x_dim:
        raise ValueError(f"{name} must have shape (N, {model.x_dim}) for this model, got {tuple(x.shape)}")
    return x.to(like.device, like.dtype)
