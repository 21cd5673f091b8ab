"""iai_core: approximate inference in latent variable models, in PyTorch.

The package reads top-down like the book: one module per idea, public names re-exported here.

    gmm          Ch. 1  Gaussian mixtures and EM
    gaussian     Ch. 2  diagonal Gaussians: log densities, KL, reparameterization
    models       Ch. 2  the latent Gaussian model p(z) p(x | z) with an MLP decoder
    elbo         Ch. 2  ELBO estimators and their gradients w.r.t. lambda = (mu, logvar)
    local_opt    Ch. 2  per-example gradient ascent on lambda (SGD, momentum, RMSprop, Adam)
    encoders     Ch. 3  amortized Gaussian inference models lambda = f(x; phi)
    importance   Ch. 3  importance-sampled log p(x) (IWAE bound)
    data                the embedded binarized digits and an IDX loader for (Fashion-)MNIST
    devices             which devices exist here
    checks, assign      exercise checks and the instructor's student/grade tool
"""
from ._random import make_generator, seeded
from .data import Dataset, load_dataset, load_digits, load_mnist, read_idx
from .devices import available_devices, default_device

# Chapter 1
from .gmm import (EMResult, GaussianMixture, component_log_prob, e_step, fit_gmm, fit_gmm_gradient, init_gmm,
                  log_likelihood, m_step, responsibilities)

# Chapter 2
from .gaussian import kl_normal_standard, log_normal_diag, log_standard_normal, reparameterize
from .models import LatentGaussianModel, mlp
from .elbo import check_lambda, elbo, elbo_grad
from .local_opt import OPTIMIZERS, LocalOptResult, optimize_lambda

# Chapter 3
from .encoders import GaussianEncoder
from .importance import log_importance_weights, log_marginal_is

# Chapter 4

# Chapter 5

__version__ = "0.1.0"
