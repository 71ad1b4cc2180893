"""Held-out figures of a theme model: on distinct phrases of a split, the ELBO's NLL
bound, the reconstruction NLL and teacher-forced accuracy at z = mu and at z = 0, KL,
active units and mutual information; on the split's stream, the decoder at z = 0
against the plain model it came from.  ``ostinato theme figures`` prints them; a
training run logs them at every validation.
"""
import numpy as np
import torch
from torch.nn import functional as F

from engine.theme.data import Phrases
from engine.theme.objective import active_units, kl_per_dim, mutual_information, phrase_ce


@torch.no_grad()
def stream_nll(model, dataset, split, seq_len=256, max_windows=None, batch_size=32):
    """NLL (nats per event) of a z-free generator (``MusicLSTM`` or ``ThemeDecoder`` at
    z = 0) on a split's stream, in non-overlapping windows; None if it is too short."""
    n = len(dataset.stream(split)[0])
    if n < 2:
        return None
    x, c, y = dataset.eval_windows(split, min(seq_len, n - 1))
    if max_windows:
        x, c, y = x[:max_windows], c[:max_windows], y[:max_windows]
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits, _ = model(torch.as_tensor(x[i:i + batch_size], device=device),
                          torch.as_tensor(c[i:i + batch_size], device=device))
        total += F.cross_entropy(logits.flatten(0, 1), torch.as_tensor(
            y[i:i + batch_size], device=device).flatten(), reduction="sum").item()
    model.train(was)
    return total / max(y.size, 1)


@torch.no_grad()
def theme_figures(model, dataset, split="valid", bars=(2, 4), n=256, seed=0, base=None,
                  stream_windows=None, max_tokens=512, batch_size=64):
    """Held-out figures of a ``ThemeVAE`` on distinct phrases of exactly each of ``bars``
    bars, the same ones for the same seed, under ``"{k}_bars"``: per token the ELBO's NLL
    bound (one z ~ q), the reconstruction NLL and the teacher-forced accuracy (argmax of
    the logits = the next token) at z = mu and at z = 0, per phrase the KL, and over the
    phrases the active units and the MI estimate; with ``base`` (the plain model it came
    from) that model's NLL on the same phrases.  Under ``"stream"``: the decoder's NLL at
    z = 0 on the split's stream (``stream_windows`` 256-token windows; 0: none, None: all)
    and, with ``base``, the base model's, for "within 2 % of the plain LSTM"."""
    vae, dec = model, model.decoder
    was = vae.training
    vae.eval()
    if base is not None:
        base.eval()
    device = next(vae.parameters()).device
    pool = Phrases(dataset, split, vae.cfg, max_tokens)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k in bars:
        rows, ks = pool.pick(np.random.default_rng([seed, k]), n, k, replace=False)
        if not len(rows):
            out[f"{k}_bars"] = dict(phrases=0)
            continue
        s = dict.fromkeys(("elbo", "ce_mu", "ce_z0", "ce_base", "kl", "hit_mu", "hit_z0"), 0.0)
        mus, logvars, tokens = [], [], 0
        for i in range(0, len(rows), batch_size):
            b = pool.batch(rows[i:i + batch_size], ks[i:i + batch_size]).to(device)
            m = b.mask
            mu, logvar = vae.encoder(b.tokens, b.lengths)
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen).to(device)
            kl = kl_per_dim(mu, logvar).sum(1)
            s["elbo"] += (phrase_ce(dec(b.inputs, b.controls, z, pos=b.pos)[0], b)
                          + kl).sum().item()
            s["kl"] += kl.sum().item()
            for name, zz in (("mu", mu), ("z0", None)):
                logits = dec(b.inputs, b.controls, zz, pos=b.pos)[0]
                s[f"ce_{name}"] += phrase_ce(logits, b).sum().item()
                s[f"hit_{name}"] += ((logits.argmax(-1) == b.tokens) & m).sum().item()
            if base is not None:
                s["ce_base"] += phrase_ce(base(b.inputs, b.controls)[0], b).sum().item()
            mus.append(mu)
            logvars.append(logvar)
            tokens += int(b.lengths.sum())
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        fig = dict(phrases=len(rows), tokens=tokens, nll_elbo=s["elbo"] / tokens,
                   nll_mu=s["ce_mu"] / tokens, nll_z0=s["ce_z0"] / tokens,
                   kl=s["kl"] / len(rows), active_units=active_units(mu), z_dim=vae.cfg.z_dim,
                   mi=mutual_information(mu, logvar, gen), accuracy_mu=s["hit_mu"] / tokens,
                   accuracy_z0=s["hit_z0"] / tokens)
        if base is not None:
            fig["nll_base"] = s["ce_base"] / tokens
        out[f"{k}_bars"] = fig
    if stream_windows != 0:
        st = dict(nll_z0=stream_nll(dec, dataset, split, max_windows=stream_windows))
        if base is not None:
            st["nll_base"] = stream_nll(base, dataset, split, max_windows=stream_windows)
            if st["nll_z0"] is not None and st["nll_base"]:
                st["z0_vs_base"] = st["nll_z0"] / st["nll_base"] - 1.0
        out["stream"] = st
    vae.train(was)
    return out


def format_figures(figs):
    """The figures as a few lines of text."""
    lines = []
    for key, f in figs.items():
        if key == "stream":
            if f.get("nll_z0") is None:
                continue
            line = f"stream: NLL at z = 0 {f['nll_z0']:.4f} nats/event"
            if f.get("nll_base") is not None:
                line += f", base model {f['nll_base']:.4f} ({100 * f.get('z0_vs_base', 0):+.2f} %)"
            lines.append(line)
        elif not f.get("phrases"):
            lines.append(f"{key.replace('_', ' ')}: no held-out phrases")
        else:
            lines.append(
                f"{key.replace('_', ' ')}: {f['phrases']} phrases, {f['tokens']} tokens; "
                f"NLL/token ELBO {f['nll_elbo']:.4f}, at z = mu {f['nll_mu']:.4f}, at z = 0 "
                f"{f['nll_z0']:.4f}" + (f", base {f['nll_base']:.4f}" if "nll_base" in f else "")
                + f"; KL {f['kl']:.2f} nats/phrase; active units {f['active_units']}/"
                f"{f['z_dim']}; MI {f['mi']:.3f} nats; accuracy at z = mu "
                f"{f['accuracy_mu']:.3f}, at z = 0 {f['accuracy_z0']:.3f}")
    return "\n".join(lines)
