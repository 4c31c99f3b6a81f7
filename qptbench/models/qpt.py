"""QPT, the quantum pre-trained transformer (Mathiasen et al.), readable top to bottom.

One token per atomic orbital.  Input = token embedding + a projection of the token's position
(Fourier features).  A pre-LN transformer whose attention logits are biased by DFT matrices of the
minao density (quantum-biased attention, two heads per matrix, remaining heads free).  The output
is one more attention map, symmetric, added to H_init = F(D_minao):  H = H_init + A.  The network
runs in float32; A is cast to float64 at the boundary and everything after is DFT.

Output heads (``QPTConfig.head``), both from one projection Q = W LN(x) (N, d):

- ``"psd"`` (default, the paper's): Q = K, A = Q Qᵀ / √d.  Positive semi-definite for every input,
  so H = H_init + A can only raise H along every direction: vᵀHv ≥ vᵀH_init v for every v, so
  (Courant–Fischer, S positive definite) every orbital energy, the k-th eigenvalue of (H, S), is
  at least H_init's k-th.  A correction that must lower any of them is out of its reach.
- ``"signed"``: A = Q diag(s) Qᵀ / √d with a learned vector s (d,), initialised to alternating
  +1, −1.  Exactly symmetric; with p positive and n negative entries of s it represents any
  symmetric A with at most p positive and n negative eigenvalues, i.e. A = P Pᵀ − M Mᵀ (Sylvester);
  s is learned (1-D, so ``training.loop`` does not weight-decay it): the split can move.  We
  chose it over the symmetrised (Q Kᵀ + K Qᵀ) / 2√d, the same form with s fixed at ±1 on 2d channels
  (Q Kᵀ + K Qᵀ = ½[(Q+K)(Q+K)ᵀ − (Q−K)(Q−K)ᵀ]), because it keeps the psd head's parameters and
  initialisation and adds only d numbers: setting every s_k = +1 gives back the psd head exactly,
  so the two heads differ in the sign freedom and nothing else.  Initialisation: Q as for the psd
  head (entries of variance out_init_ha / √d), so every entry of A starts at ~out_init_ha / √d and
  the diagonal at zero mean (the psd head's diagonal starts at +out_init_ha): training starts from
  H ≈ H_init for both.

Deliberate departures from the authors' code (docs/qpt-method.md §2, §5): softmax over keys (theirs
normalised over queries); position bias from raw canonical positions (theirs: learned
embeddings); no dead weights in the output layer; the output map starts near zero, so training
starts from H_init instead of ~10 Ha away from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qptbench.models.qpt_inputs import QPTSample


@dataclass(frozen=True)
class QPTConfig:
    vocab_size: int
    d_model: int = 128
    n_layers: int = 4        # biased blocks; the output head is one more (Q = K) attention map
    n_heads: int = 16        # heads 0..13 carry the 7 bias matrices, two each
    d_ff_mult: int = 4
    n_fourier: int = 16      # sin/cos features per axis at wavelengths 1..32 Å (geometric)
    out_init_ha: float = 1e-2  # typical |A_ii| at initialisation (psd head), Hartree
    head: str = "psd"          # output map: "psd" (Q = K, the paper's) or "signed" (see above)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown QPT output head {self.head!r}; choose from "
                             f"{', '.join(HEADS)}")


HEADS = ("psd", "signed")


PRESETS = {
    "tiny": dict(d_model=128, n_layers=4, n_heads=16),
    "small": dict(d_model=256, n_layers=8, n_heads=16),
    # GPT-medium as in the paper: d 1024, 16 heads, 24 layers counting the output layer.
    "gpt-medium": dict(d_model=1024, n_layers=23, n_heads=16),
}


def preset_config(name: str, vocab_size: int, **overrides) -> QPTConfig:
    """The named preset; ``overrides`` set other fields, e.g. ``head="signed"``."""
    if name not in PRESETS:
        raise ValueError(f"unknown QPT preset {name!r}; choose from {', '.join(PRESETS)}")
    return QPTConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


def fourier_features(pos: torch.Tensor, n: int) -> torch.Tensor:
    """(L, 3) Å -> (L, 3 + 6n): raw coordinates and sin/cos at wavelengths 1..32 Å."""
    wavelengths = torch.logspace(0, 5, n, base=2.0, device=pos.device, dtype=pos.dtype)
    angles = 2 * math.pi * pos[:, :, None] / wavelengths                       # (L, 3, n)
    return torch.cat([pos, angles.sin().flatten(1), angles.cos().flatten(1)], dim=1)


def head_biases(biases: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(7, L, L) matrices -> (n_heads, L, L) additive logits: matrix b on heads 2b and 2b + 1."""
    per_head = biases.repeat_interleave(2, dim=0)[:n_heads]
    free = n_heads - per_head.shape[0]
    return torch.cat([per_head, per_head.new_zeros(free, *per_head.shape[1:])])


class BiasedSelfAttention(nn.Module):
    def __init__(self, cfg: QPTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length, d = x.shape                                                     # (L, d)
        q, k, v = self.qkv(x).split(d, dim=-1)
        heads = lambda t: t.view(length, self.n_heads, -1).transpose(0, 1)  # noqa: E731 (h, L, dh)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
        return self.proj(y.transpose(0, 1).reshape(length, d))                  # (L, d)


class Block(nn.Module):
    def __init__(self, cfg: QPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = BiasedSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff_mult * cfg.d_model),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.d_ff_mult * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class QPT(nn.Module):
    def __init__(self, cfg: QPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_proj = nn.Linear(3 + 6 * cfg.n_fourier, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_out = nn.LayerNorm(cfg.d_model)
        self.q_out = nn.Linear(cfg.d_model, cfg.d_model)
        if cfg.head == "signed":  # only then: psd checkpoints keep their state-dict keys
            self.out_sign = nn.Parameter(torch.empty(cfg.d_model))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embed.weight, std=self.cfg.d_model**-0.5)
        # q entries of variance s² give A_ii ≈ d·s²/√d; pick s for |A_ii| ≈ out_init_ha.
        s = math.sqrt(self.cfg.out_init_ha / math.sqrt(self.cfg.d_model))
        nn.init.normal_(self.q_out.weight, std=s / math.sqrt(self.cfg.d_model))
        nn.init.zeros_(self.q_out.bias)
        if self.cfg.head == "signed":
            with torch.no_grad():
                self.out_sign.copy_(1.0 - 2.0 * (torch.arange(self.cfg.d_model) % 2))  # +1, -1, …

    def correction(self, tokens: torch.Tensor, positions: torch.Tensor,
                   biases: torch.Tensor) -> torch.Tensor:
        """A (N, N), symmetric, in the network's dtype (float32 unless converted)."""
        dtype = self.pos_proj.weight.dtype
        positions, biases = positions.to(dtype), biases.to(dtype)
        x = self.embed(tokens) + self.pos_proj(fourier_features(positions, self.cfg.n_fourier))
        mask = head_biases(biases, self.cfg.n_heads)  # the same in every biased layer
        for block in self.blocks:
            x = block(x, mask)                                                  # (N, d)
        q = self.q_out(self.ln_out(x))                                          # (N, d)
        k = q * self.out_sign if self.cfg.head == "signed" else q               # Q diag(s) or Q
        a = k @ q.T / math.sqrt(self.cfg.d_model)                               # (N, N)
        return 0.5 * (a + a.T)  # float32 matmul is not bitwise symmetric; make A = Aᵀ exact

    def forward(self, sample: QPTSample) -> torch.Tensor:
        """H = H_init + A (N, N), float64."""
        a = self.correction(sample.tokens, sample.positions, sample.biases)
        return sample.h_init + a.to(torch.float64)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
