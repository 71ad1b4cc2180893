"""The theme model's objective, and what shows posterior collapse.

Training maximises the ELBO, E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), on phrases that
start at bar lines of the training pieces: the KL weight beta rises linearly from 0 to 1
over ``kl_anneal_steps``, and free bits (Kingma et al. 2016) count each latent
dimension's batch-mean KL as at least ``free_bits`` nats, so no dimension gains by
collapsing onto the prior.  A share of every batch (``theme_dropout``) is decoded with
z = 0 and scored by cross-entropy alone: the plain language-model objective, which keeps
free composition as good as the shipped model.  Posterior collapse shows in the log: KL,
active units (Burda et al. 2016: unit i is active when Var_x(E_q[z_i|x]) > 0.01) and an
estimate of the mutual information I(x; z) (Hoffman & Johnson 2016, as Kim et al. 2018
compute it on a batch).
"""
import math

import torch
from torch.nn import functional as F


def kl_per_dim(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, 1)) per row and latent dimension, [B, Z]."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def free_bits_kl(kl_mean, free_bits):
    """sum_i max(KL_i, lambda) over the batch-mean KL of each dimension, [Z] (Kingma et al.
    2016): a dimension below lambda counts as lambda and gets no gradient."""
    return torch.clamp(kl_mean, min=free_bits).sum()


def beta_at(step, anneal_steps):
    """The KL weight at a step: rising linearly from 0 to 1 over ``anneal_steps``."""
    return 1.0 if anneal_steps <= 0 else min(1.0, step / anneal_steps)


def phrase_ce(logits, batch):
    """Reconstruction cross-entropy of each phrase, summed over its real positions, [B]."""
    ce = F.cross_entropy(logits.transpose(1, 2), batch.tokens, reduction="none")
    return (ce * batch.mask).sum(1)


def theme_loss(vae, batch, drop, beta, free_bits, generator=None):
    """The training loss of one batch and its parts.

    Rows where ``drop`` is true are decoded with z = 0 and cost their cross-entropy only;
    the others with z ~ q(z | phrase) (reparameterised) and cost cross-entropy + beta *
    free-bits KL.  Per phrase: the cross-entropy summed over its tokens, averaged over
    the batch; the KL term is over the theme rows' batch-mean KL per dimension, weighted
    by their share of the batch, so each theme row carries its own KL once.
    """
    B = len(batch.lengths)
    keep = ~drop.to(batch.tokens.device)
    n = int(keep.sum())
    z = batch.controls.new_zeros(B, vae.cfg.z_dim)
    kl_term = kl = batch.controls.new_zeros(())
    mu = logvar = None
    if n:
        mu, logvar = vae.encoder(batch.tokens[keep], batch.lengths[keep])
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z[keep] = mu + (0.5 * logvar).exp() * eps
        kld = kl_per_dim(mu, logvar)
        kl = kld.sum(1).mean()
        kl_term = free_bits_kl(kld.mean(0), free_bits) * (n / B)
    logits, _ = vae.decoder(batch.inputs, batch.controls, z, pos=batch.pos)
    ce = phrase_ce(logits, batch)
    loss = ce.mean() + beta * kl_term
    return loss, dict(ce=ce.mean().item(), tokens=int(batch.lengths.sum()), ce_sum=ce.sum().item(),
                      kl=kl.item(), kl_fb=kl_term.item(), mu=mu, logvar=logvar)


def active_units(mu, threshold=0.01):
    """Latent units whose posterior mean varies over the phrases: Var_x(mu_i) > threshold."""
    if len(mu) < 2:
        return 0
    return int((mu.var(0) > threshold).sum())


def mutual_information(mu, logvar, generator=None):
    """I(x; z) under q on a batch: E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)], q(z) the
    batch's aggregate posterior (Kim et al. 2018's estimator; it equals
    E_x[KL(q(z|x) || p(z))] - KL(q(z) || p(z))).  At most log B; 0 when z ignores x."""
    B, Z = mu.shape
    log2pi = math.log(2 * math.pi)
    neg_entropy = (-0.5 * Z * log2pi - 0.5 * (1 + logvar).sum(-1)).mean()
    eps = torch.randn(mu.shape, generator=generator).to(mu.device)
    z = mu + (0.5 * logvar).exp() * eps  # one z per phrase, each from its own posterior
    dev = z[:, None, :] - mu[None, :, :]  # [B (z of phrase j), B (posterior of phrase k), Z]
    log_q = -0.5 * (dev.pow(2) / logvar.exp()[None]).sum(-1) \
        - 0.5 * (Z * log2pi + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_q, dim=1) - math.log(B)
    return float(neg_entropy - log_qz.mean())
