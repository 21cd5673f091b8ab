"""Variational Bayes for the Gaussian mixture against scikit-learn, a closed-form evidence and Monte Carlo."""
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import BayesianGaussianMixture

from iai_core.vb_gmm import (NormalWishartPrior, default_prior, fit_vb_gmm, vb_e_step, vb_elbo, vb_m_step)


def blobs(n=400, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]], dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.3], [0.5, 1.2], [0.8, 0.8]], dtype=torch.float64)
    k = torch.arange(n) % 3
    return (centers[k] + scales[k] * torch.randn(n, 2, generator=g, dtype=torch.float64)).to(device)


def test_matches_sklearn_bayesian_gaussian_mixture(device):
    """Same data, priors and start: the same q(theta) and q(Z) at every iteration, and an ELBO that
    differs from scikit-learn's lower_bounds_ (which drops constants) by one constant."""
    x = blobs(device=device)
    k, seed = 5, 3
    labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x.cpu().numpy()).labels_   # scikit-learn's own start
    resp0 = torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), k).double().to(device)
    res = fit_vb_gmm(x, k, n_iterations=60, tol=0.0, reg=0.0, init_resp=resp0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_distribution",
                                     max_iter=60, tol=0.0, reg_covar=0.0, init_params="kmeans",
                                     random_state=seed).fit(x.cpu().numpy())
    post = res.posterior
    for ours, theirs in ((post.alpha, sk.weight_concentration_), (post.beta, sk.mean_precision_),
                         (post.m, sk.means_), (post.nu, sk.degrees_of_freedom_), (post.covariances, sk.covariances_),
                         (res.resp, sk.predict_proba(x.cpu().numpy()))):
        np.testing.assert_allclose(ours.cpu().numpy(), theirs, rtol=1e-9, atol=1e-9)
    offset = res.elbo.cpu().numpy() - np.asarray(sk.lower_bounds_)
    assert offset.max() - offset.min() < 1e-8


def test_single_component_elbo_is_the_exact_log_evidence():
    """With K = 1, q(theta) is the exact Normal-Wishart posterior and the ELBO equals log p(X),
    which is closed-form (Murphy, 2007, eq. 266)."""
    x = blobs(50, seed=1)
    n, d = x.shape
    prior = NormalWishartPrior(alpha0=2.0, beta0=0.5, m0=torch.tensor([0.5, -0.2], dtype=torch.float64),
                               W0=torch.tensor([[0.8, 0.1], [0.1, 0.5]], dtype=torch.float64), nu0=3.5)
    res = fit_vb_gmm(x, 1, prior=prior, n_iterations=3, tol=0.0, reg=0.0,
                     init_resp=torch.ones(n, 1, dtype=torch.float64))
    xbar = x.mean(0)
    scatter = (x - xbar).T @ (x - xbar)
    beta_n, nu_n = prior.beta0 + n, prior.nu0 + n
    dm = (xbar - prior.m0)[:, None]
    w_n_inv = torch.linalg.inv(prior.W0) + scatter + prior.beta0 * n / beta_n * dm @ dm.T
    log_evidence = (-n * d / 2 * math.log(math.pi) + torch.mvlgamma(torch.tensor(nu_n / 2, dtype=torch.float64), d)
                    - torch.mvlgamma(torch.tensor(prior.nu0 / 2, dtype=torch.float64), d)
                    + prior.nu0 / 2 * torch.logdet(torch.linalg.inv(prior.W0)) - nu_n / 2 * torch.logdet(w_n_inv)
                    + d / 2 * math.log(prior.beta0 / beta_n))
    torch.testing.assert_close(res.elbo[-1], log_evidence.double(), rtol=0, atol=1e-9)


def test_elbo_constants_against_monte_carlo():
    """The ELBO with every constant equals E_q[log p(X, Z, theta) - log q(Z, theta)] estimated by sampling
    theta from q with torch.distributions (Z summed exactly)."""
    x = blobs(60, seed=2)
    prior = default_prior(x, 3)
    res = fit_vb_gmm(x, 3, prior=prior, n_iterations=5, tol=0.0, generator=torch.Generator().manual_seed(0),
                     keep_history=True)
    resp, post = res.history[-1]
    D = torch.distributions
    torch.manual_seed(0)
    s = 4000
    q_pi = D.Dirichlet(post.alpha)
    q_lam = D.Wishart(df=post.nu, covariance_matrix=post.W)
    pi, lam = q_pi.sample((s,)), q_lam.sample((s,))                                  # (S, K), (S, K, D, D)
    cov_mu = torch.linalg.inv(post.beta[:, None, None] * lam)
    mu = D.MultivariateNormal(post.m, covariance_matrix=cov_mu).sample()             # (S, K, D)
    p_pi = D.Dirichlet(torch.full((3,), prior.alpha0, dtype=torch.float64))
    p_lam = D.Wishart(df=torch.tensor(prior.nu0, dtype=torch.float64), covariance_matrix=prior.W0)
    p_mu = D.MultivariateNormal(prior.m0, precision_matrix=prior.beta0 * lam)
    lik = D.MultivariateNormal(mu[:, None], precision_matrix=lam[:, None]).log_prob(x[None, :, None, :])  # (S, N, K)
    log_p = ((resp * (pi.log()[:, None, :] + lik)).sum((1, 2)) + p_pi.log_prob(pi) + p_lam.log_prob(lam).sum(1)
             + p_mu.log_prob(mu).sum(1))
    log_q = (torch.xlogy(resp, resp).sum() + q_pi.log_prob(pi) + q_lam.log_prob(lam).sum(1)
             + D.MultivariateNormal(post.m, covariance_matrix=cov_mu).log_prob(mu).sum(1))
    est = log_p - log_q
    se = est.std() / math.sqrt(s)
    assert abs(float(est.mean() - vb_elbo(x, resp, post, prior))) < 5 * float(se)


def test_elbo_never_decreases_and_pruning():
    """Each VB-E/VB-M pair raises the ELBO; surplus components keep only the prior's weight."""
    x = blobs(300, seed=4)
    res = fit_vb_gmm(x, 6, prior=default_prior(x, 6, alpha0=1e-3), n_iterations=300, tol=1e-9,
                     generator=torch.Generator().manual_seed(2))
    assert (res.elbo.diff() > -1e-8).all()
    weights = res.posterior.weights.sort(descending=True).values
    assert (weights[:3] > 0.2).all() and (weights[3:] < 1e-3).all()


def test_e_step_rows_sum_to_one_and_m_step_counts():
    x = blobs(100)
    prior = default_prior(x, 3)
    resp = torch.softmax(torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 1)
    post = vb_m_step(x, resp, prior, reg=0.0)
    torch.testing.assert_close(post.alpha - prior.alpha0, resp.sum(0))
    torch.testing.assert_close(post.nu - prior.nu0, resp.sum(0))
    torch.testing.assert_close(vb_e_step(x, post).sum(1), torch.ones(100, dtype=torch.float64))


def test_bad_input():
    x = blobs(30)
    prior = default_prior(x, 2)
    with pytest.raises(ValueError, match="nu0 must be > D - 1"):
        vb_m_step(x, torch.ones(30, 2, dtype=torch.float64) / 2, NormalWishartPrior(1.0, 1.0, prior.m0, prior.W0, 0.5))
    with pytest.raises(ValueError, match="m0 and W0 must have shapes"):
        vb_m_step(x, torch.ones(30, 2, dtype=torch.float64) / 2,
                  NormalWishartPrior(1.0, 1.0, prior.m0[:1], prior.W0, 3.0))
    with pytest.raises(TypeError, match="prior must be a NormalWishartPrior"):
        vb_m_step(x, torch.ones(30, 2, dtype=torch.float64) / 2, {"alpha0": 1.0})
    with pytest.raises(ValueError, match="resp must have one row per point"):
        vb_m_step(x, torch.ones(29, 2, dtype=torch.float64) / 2, prior)
    with pytest.raises(ValueError, match="init_resp must have shape"):
        fit_vb_gmm(x, 2, init_resp=torch.ones(30, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_components must be at most"):
        fit_vb_gmm(x, 31)
    with pytest.raises(ValueError, match="reg must be >= 0"):
        fit_vb_gmm(x, 2, reg=-1.0)
