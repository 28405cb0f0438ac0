"""Lossless compression with probabilistic circuits (Liu, Mandt and Van den Broeck, "Lossless Compression
with Probabilistic Circuits", ICLR 2022; official code Tractables/PressedJuice.jl, Julia), rebuilt on
scikit-learn's digits (1797 real 8x8 images, 17 grey levels 0..16) and their binarised version.

The paper's scheme (sec. 3): a tractable model p(x) over D discrete pixels codes x_1, ..., x_D in a
fixed order with a streaming entropy coder driven by the conditionals

    P(X_i = v | x_<i) = P(x_<i, X_i = v) / P(x_<i),   P(X_i < v | x_<i) = sum_{u < v} P(X_i = u | x_<i)

where P(x_<i, X_i = v) is a *marginal* (x_>i summed out). A probabilistic circuit (PC) computes any
marginal in one feed-forward pass by setting the leaves of the summed-out variables to 1. The paper's
speed trick: coding x_1..x_D needs D marginals, but going from step i to i+1 changes one leaf, so only
the units above that leaf are re-evaluated (O(log D |p|) per image instead of O(D |p|)).

Our PC is a hidden Chow-Liu tree (HCLT, the paper's structure). Each pixel i has a latent Z_i with K
states; the Z's form the Chow-Liu tree of the pixels (maximum spanning tree of the pairwise mutual
information on the training images, rooted at the tree's centre r):

    p(x) = sum_z pi(z_r) prod_{i != r} T_i(z_pa(i), z_i) prod_i E_i(z_i, x_i)

As a circuit: for every node i and state k a product unit  E_i(k, x_i) * prod_{c in ch(i)} S_c(k),
and for every child c and parent state k a sum unit  S_c(k) = sum_k' T_c(k, k') [product unit (c, k')];
the root sum unit mixes the root's product units with weights pi. The circuit is smooth and
decomposable, so a marginal is this same pass with the leaves E_i(k, .) of unobserved pixels set to 1.
The mixture of K factorised categoricals, p(x) = sum_k pi_k prod_i E_i(k, x_i), is the special case
T_i = identity (one latent shared by all pixels: a sum unit over K product units of categorical
leaves); we use it as the simpler PC and as the "K components" axis of the plot.

Marginals by message passing over the tree (lambda: upward, "out": downward, all rows renormalised,
which leaves every conditional unchanged):

    lambda_i(k) = L_i(k) prod_{c in ch(i)} m_c(k),   m_c(k) = sum_k' T_c(k, k') lambda_c(k'),
    L_i(k) = E_i(k, x_i) if x_i is observed else 1 (the PC's leaf set to 1),
    P(X_i = v | evidence) ∝ sum_k out_i(k) [prod_{c in ch(i)} m_c(k)] E_i(k, v),

with out_i the downward message along the root-to-i path. Coding pixel i computes out_i along that path
(depth x K^2 per image), the whole pmf over the V values at once, then observes x_i and re-evaluates
only lambda and m on the path from i to the root: the paper's incremental evaluation.

Learning is full-batch EM (expected counts from the up/down passes; M-step with a Dirichlet pseudocount
alpha added to every count). EM is not gradient training, so it does not go through
``recurlab/train/loop.py``; no recurlab recurrent unit fits a PC, so the model is written here (numpy).

The coder is a real rANS (64-bit state, 32-bit words, ryg_rans-style, as in PressedJuice's rANS) written
here with Python integers: each conditional pmf is quantised to an exact integer frequency table summing
to 2^precision with every symbol >= 1 count, so any pixel value stays decodable. The whole test set is
one stream, coded pixel-major (pixel 1 of every image, then pixel 2, ...) so that the decoder evaluates
the PC for all images at once, step by step, in exactly the encoder's arithmetic (bit-identical tables).
The bits reported are the stream's length (32 bits per word, including the 64-bit final state).

Choices where the paper differs or is open (also in docs/recipes/pc_compress.md):
- data: sklearn digits (8x8, 17 levels) instead of MNIST (28x28, 256 levels); split 1197 train /
  200 validation / 400 test; K of each family chosen by validation log-likelihood;
- HCLT learning: the paper (Juice) clusters the data to initialise the latents and runs mini-batch EM on
  a GPU; we initialise emissions from K random training images blended with the pixel histograms,
  transitions near the identity, and run full-batch EM with pseudocount alpha;
- coding order is raster order (the paper also codes in a fixed variable order);
- one rANS stream per test set rather than one per image (per-image flushing of the 64-bit state would
  add up to 1 bit/dim to 64-pixel images); the model's size is not counted, as in the paper;
- speed is of a numpy/Python implementation on one CPU thread, not comparable to the paper's GPU code.
"""

from __future__ import annotations

import bisect
import bz2
import gzip
import io
import lzma
import struct
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .common import RecipeResult, ResultRow

PAPER = "Liu, Mandt, Van den Broeck, Lossless Compression with Probabilistic Circuits, ICLR 2022"

RANS_L = 1 << 31  # lower end of the rANS state interval [L, L * 2^32)
MASK32 = (1 << 32) - 1

# ----------------------------------------------------------------------------- rANS coder


def quantize(probs: np.ndarray, precision: int) -> np.ndarray:
    """Integer frequency tables from probabilities: probs (T, V) -> freqs (T, V) int64, every entry >= 1,
    every row summing to exactly 2**precision (the remainder goes to the row's most probable symbol)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probs must be (T, V) with V >= 1, got shape {probs.shape}")
    if not isinstance(precision, (int, np.integer)) or not 1 <= precision <= 31:
        raise ValueError(f"precision must be an int in [1, 31], got {precision!r}")
    total, v = 1 << int(precision), probs.shape[1]
    if total < 2 * v:
        raise ValueError(f"precision {precision} is too small for {v} symbols: need 2**precision >= {2 * v}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probs must be finite and non-negative")
    sums = probs.sum(1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("every row of probs must have a positive sum")
    freqs = 1 + np.floor(probs / sums * (total - v)).astype(np.int64)
    deficit = total - freqs.sum(1)
    freqs[np.arange(len(freqs)), probs.argmax(1)] += deficit
    return freqs


def rans_encode(symbols: np.ndarray, freqs: np.ndarray, precision: int) -> np.ndarray:
    """Encode symbols (T,) with their frequency tables (T, V) (rows summing to 2**precision) into a
    stream of 32-bit words (uint32); decode with :class:`RansDecoder` in the same order."""
    symbols, freqs = np.asarray(symbols), np.asarray(freqs)
    if symbols.ndim != 1 or freqs.ndim != 2 or len(symbols) != len(freqs):
        raise ValueError(f"symbols must be (T,) and freqs (T, V), got {symbols.shape} and {freqs.shape}")
    total = 1 << precision
    if len(freqs) and (np.any(freqs.sum(1) != total) or np.any(freqs < 0)):
        raise ValueError(f"every row of freqs must be non-negative and sum to 2**precision = {total}")
    if len(symbols) and (symbols.min() < 0 or symbols.max() >= freqs.shape[1]):
        raise ValueError(f"symbols must lie in [0, {freqs.shape[1]})")
    starts = (np.cumsum(freqs, 1) - freqs)[np.arange(len(symbols)), symbols].tolist()
    fs = freqs[np.arange(len(symbols)), symbols].tolist()
    x, words, bound = RANS_L, [], (RANS_L >> precision) << 32
    for t in range(len(symbols) - 1, -1, -1):  # rANS is a stack: encode backwards, decode forwards
        f = fs[t]
        if f == 0:
            raise ValueError(f"symbol {int(symbols[t])} at position {t} has frequency 0")
        if x >= bound * f:
            words.append(x & MASK32)
            x >>= 32
        x = ((x // f) << precision) + (x % f) + starts[t]
    words += [x & MASK32, x >> 32]
    return np.asarray(words, dtype=np.uint32)


class RansDecoder:
    """Reads symbols back from :func:`rans_encode`'s words, one ``decode(cum)`` per symbol, where cum is the
    symbol's cumulative frequency table [0, f_0, f_0 + f_1, ..., 2**precision] (length V + 1)."""

    def __init__(self, words: np.ndarray, precision: int):
        self.words = [int(w) for w in np.asarray(words, dtype=np.uint32)]
        if len(self.words) < 2:
            raise ValueError(f"a rANS stream has at least 2 words (the final state), got {len(self.words)}")
        self.precision, self.mask = precision, (1 << precision) - 1
        self.x = (self.words[-1] << 32) | self.words[-2]
        self.pos = len(self.words) - 2

    def decode(self, cum: list[int]) -> int:
        slot = self.x & self.mask
        s = bisect.bisect_right(cum, slot) - 1
        start, f = cum[s], cum[s + 1] - cum[s]
        self.x = f * (self.x >> self.precision) + slot - start
        if self.x < RANS_L:
            self.pos -= 1
            if self.pos < 0:
                raise ValueError("rANS stream exhausted: more symbols decoded than were encoded")
            self.x = (self.x << 32) | self.words[self.pos]
        return s

    def finished(self) -> bool:
        """True when every word was read and the state is back at its initial value (an integrity check)."""
        return self.pos == 0 and self.x == RANS_L


# ----------------------------------------------------------------------------- the probabilistic circuit


def _normalise(a: np.ndarray, axis: int = -1) -> np.ndarray:
    s = a.sum(axis, keepdims=True)
    n = a.shape[axis]
    return np.where(s > 0, a / np.where(s > 0, s, 1.0), 1.0 / n)


class LatentTreePC:
    """A PC over D categorical variables with V values: a tree of K-state latents (HCLT), or with
    ``mixture=True`` the mixture of K factorised categoricals (all transitions fixed to the identity).

    Parameters: ``prior`` (K,), ``trans`` (D, K, K) with trans[c][parent state, child state] (the root's
    entry is unused), ``emit`` (D, K, V). ``parent[i]`` is i's parent node, -1 for the one root.
    """

    def __init__(self, parent, n_latent: int, n_values: int, mixture: bool = False):
        parent = np.asarray(parent, dtype=np.int64)
        if parent.ndim != 1 or len(parent) < 1:
            raise ValueError(f"parent must be a 1-d array of length D >= 1, got shape {parent.shape}")
        if not isinstance(n_latent, (int, np.integer)) or n_latent < 1:
            raise ValueError(f"n_latent must be a positive int, got {n_latent!r}")
        if not isinstance(n_values, (int, np.integer)) or n_values < 2:
            raise ValueError(f"n_values must be an int >= 2, got {n_values!r}")
        d = len(parent)
        roots = np.flatnonzero(parent == -1)
        if len(roots) != 1 or np.any((parent < -1) | (parent >= d)):
            raise ValueError(f"parent must name exactly one root (-1) and parents in [0, {d}), got {parent.tolist()}")
        self.D, self.K, self.V, self.mixture = d, int(n_latent), int(n_values), bool(mixture)
        self.parent, self.root = parent, int(roots[0])
        self.children: list[list[int]] = [[] for _ in range(d)]
        for i, p in enumerate(parent):
            if p >= 0:
                self.children[p].append(i)
        self.order = [self.root]  # breadth-first: every parent before its children
        for i in self.order:
            self.order.extend(self.children[i])
        if len(self.order) != d:
            raise ValueError("parent does not describe a tree (a cycle, or nodes not reachable from the root)")
        self.path = []  # node i up to the root, i first
        for i in range(d):
            p, up = [i], i
            while parent[up] >= 0:
                up = int(parent[up])
                p.append(up)
            self.path.append(p)
        k, v = self.K, self.V
        self.prior = np.full(k, 1.0 / k)
        self.trans = np.tile(np.eye(k), (d, 1, 1))
        self.emit = np.full((d, k, v), 1.0 / v)

    # -- evaluation ---------------------------------------------------------------------------------

    def _message(self, c: int, lam: np.ndarray) -> np.ndarray:
        """Sum units of child c for every parent state: m_c(k) = sum_k' T_c(k, k') lambda_c(k')."""
        return lam if self.mixture else lam @ self.trans[c].T

    def _leaves(self, x: np.ndarray, observed: np.ndarray | None) -> list[np.ndarray]:
        leaves = []
        for i in range(self.D):
            leaf = self.emit[i][:, x[:, i]].T
            if observed is not None:
                leaf = np.where(observed[:, i:i + 1], leaf, 1.0)
            leaves.append(leaf)
        return leaves

    def _upward(self, leaves: list[np.ndarray]):
        n = len(leaves[0])
        lam, msg, logz = [None] * self.D, [None] * self.D, np.zeros(n)
        for i in reversed(self.order):
            v = leaves[i].copy()
            for c in self.children[i]:
                v *= msg[c]
            s = v.sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                logz += np.log(s)
                lam[i] = v / s[:, None]
            if i != self.root:
                msg[i] = self._message(i, lam[i])
        with np.errstate(divide="ignore"):
            logp = logz + np.log(lam[self.root] @ self.prior)
        return lam, msg, logp

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.D:
            raise ValueError(f"x must be (N, {self.D}), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.integer) or x.min(initial=0) < 0 or x.max(initial=0) >= self.V:
            raise ValueError(f"x must hold integers in [0, {self.V})")
        return x

    def log_marginal(self, x: np.ndarray, observed: np.ndarray | None = None) -> np.ndarray:
        """ln P(x_observed) per row, (N,): x (N, D) ints in [0, V); observed (N, D) bool (None: all),
        computed in one pass with the leaves of unobserved variables set to 1."""
        x = self._check_x(x)
        if observed is not None:
            observed = np.asarray(observed, dtype=bool)
            if observed.shape != x.shape:
                raise ValueError(f"observed must have x's shape {x.shape}, got {observed.shape}")
        return self._upward(self._leaves(x, observed))[2]

    # -- learning -----------------------------------------------------------------------------------

    def init_params(self, x: np.ndarray, rng: np.random.Generator, blend: float = 0.5) -> None:
        """Emissions of state k: the one-hot pixels of a random training image blended with the pixel
        histograms; transitions near the identity (0.5 I + 0.5 random rows); uniform prior."""
        x = self._check_x(x)
        hist = np.stack([np.bincount(x[:, i], minlength=self.V) for i in range(self.D)]).astype(float) + 1.0
        hist /= hist.sum(1, keepdims=True)
        picks = rng.choice(len(x), size=self.K, replace=len(x) < self.K)
        onehot = np.eye(self.V)[x[picks]]  # (K, D, V)
        self.emit = _normalise(blend * onehot.transpose(1, 0, 2) + (1 - blend) * hist[:, None, :])
        self.prior = np.full(self.K, 1.0 / self.K)
        if not self.mixture:
            self.trans = 0.5 * np.eye(self.K) + 0.5 * _normalise(rng.random((self.D, self.K, self.K)))

    def em_step(self, x: np.ndarray, pseudocount: float = 0.1) -> float:
        """One full-batch EM update; returns the mean ln p(x) per row under the parameters *before* it.
        The M-step adds ``pseudocount`` to every expected count (MAP under a Dirichlet prior)."""
        x = self._check_x(x)
        if pseudocount < 0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        leaves = self._leaves(x, None)
        lam, msg, logp = self._upward(leaves)
        n, k = len(x), self.K
        out = [None] * self.D
        out[self.root] = np.broadcast_to(self.prior, (n, k))
        emit_counts = np.zeros_like(self.emit)
        trans_counts = np.zeros_like(self.trans)
        prior_counts = None
        for p in self.order:
            q = _normalise(out[p] * lam[p])  # posterior of Z_p given x
            if p == self.root:
                prior_counts = q.sum(0)
            for v in range(self.V):
                emit_counts[p, :, v] = q[x[:, p] == v].sum(0)
            ch = self.children[p]
            if not ch:
                continue
            base = out[p] * leaves[p]
            # exclusive products of the children's messages (prefix x suffix), renormalised as they grow
            prefix, acc = [], np.ones((n, k))
            for c in ch:
                prefix.append(acc)
                acc = _normalise(acc * msg[c])
            acc = np.ones((n, k))
            for j in range(len(ch) - 1, -1, -1):
                c = ch[j]
                alpha = _normalise(base * prefix[j] * acc)  # everything at p except c's subtree
                acc = _normalise(acc * msg[c])
                if self.mixture:
                    out[c] = alpha
                else:
                    out[c] = alpha @ self.trans[c]
                    z = (alpha * msg[c]).sum(1, keepdims=True)
                    trans_counts[c] = self.trans[c] * ((alpha / z).T @ lam[c])
        self.prior = _normalise(prior_counts + pseudocount)
        self.emit = _normalise(emit_counts + pseudocount)
        if not self.mixture:
            for c in range(self.D):
                if c != self.root:
                    self.trans[c] = _normalise(trans_counts[c] + pseudocount)
        return float(logp.mean())

    def fit(self, x: np.ndarray, iters: int, pseudocount: float, seed: int, progress: bool = False,
            desc: str = "EM") -> list[float]:
        """init_params then ``iters`` EM steps; returns the training bits/dim before each step and after the last."""
        from tqdm.auto import tqdm

        self.init_params(x, np.random.default_rng(seed))
        curve = []
        bar = tqdm(range(iters), desc=desc, disable=not progress, leave=False)
        for _ in bar:
            curve.append(-self.em_step(x, pseudocount) / np.log(2) / self.D)
            bar.set_postfix(bpd=f"{curve[-1]:.4f}")
        curve.append(float(-self.log_marginal(x).mean() / np.log(2) / self.D))
        return curve


class MarginalCoderState:
    """The conditional-marginal pass for coding n rows in one variable order: ``distribution(i)`` gives
    P(X_i = . | everything observed so far) (n, V); ``observe(i, values)`` sets pixel i's leaves and
    re-evaluates only the units on the path from i to the root."""

    def __init__(self, pc: LatentTreePC, n: int):
        self.pc, self.n = pc, n
        self.leaves = [np.ones((n, pc.K)) for _ in range(pc.D)]  # nothing observed: every leaf is 1
        self.lam, self.msg, _ = pc._upward(self.leaves)
        self.observed = np.zeros(pc.D, dtype=bool)

    def _excluding(self, p: int, c: int) -> np.ndarray:
        a = self.leaves[p].copy()
        for c2 in self.pc.children[p]:
            if c2 != c:
                a *= self.msg[c2]
        return a

    def distribution(self, i: int) -> np.ndarray:
        pc = self.pc
        if self.observed[i]:
            raise ValueError(f"variable {i} is already observed")
        path = pc.path[i][::-1]  # root ... i
        out = np.broadcast_to(pc.prior, (self.n, pc.K))
        for p, c in zip(path, path[1:]):
            alpha = _normalise(out * self._excluding(p, c))
            out = alpha if pc.mixture else alpha @ pc.trans[c]
        inner = out * self._excluding(i, -1)  # leaf i is still 1 here
        return _normalise(inner @ pc.emit[i])

    def observe(self, i: int, values) -> None:
        pc = self.pc
        values = np.asarray(values, dtype=np.int64)
        self.leaves[i] = pc.emit[i][:, values].T
        self.observed[i] = True
        for node in pc.path[i]:
            v = self._excluding(node, -1)
            self.lam[node] = _normalise(v)
            if node != pc.root:
                self.msg[node] = pc._message(node, self.lam[node])


def pc_encode(pc: LatentTreePC, x: np.ndarray, precision: int = 24) -> tuple[np.ndarray, float]:
    """Compress x (N, D) into one rANS stream, coding pixel-major in raster order. Returns the words and
    the model's code length sum_i -log2 P(x_i | x_<i) in bits (the bound the stream approaches)."""
    x = pc._check_x(x)
    n = len(x)
    state = MarginalCoderState(pc, n)
    freqs = np.empty((pc.D, n, pc.V), dtype=np.int64)
    model_bits = 0.0
    for i in range(pc.D):
        p = state.distribution(i)
        model_bits -= float(np.log2(p[np.arange(n), x[:, i]]).sum())
        freqs[i] = quantize(p, precision)
        state.observe(i, x[:, i])
    return rans_encode(x.T.reshape(-1), freqs.reshape(-1, pc.V), precision), model_bits


def pc_decode(pc: LatentTreePC, words: np.ndarray, n: int, precision: int = 24) -> np.ndarray:
    """Inverse of :func:`pc_encode`: the (n, D) images; raises if the stream does not end exactly."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    decoder = RansDecoder(words, precision)
    state = MarginalCoderState(pc, n)
    x = np.empty((n, pc.D), dtype=np.int64)
    zero = np.zeros((n, 1), dtype=np.int64)
    for i in range(pc.D):
        cum = np.concatenate([zero, np.cumsum(quantize(state.distribution(i), precision), 1)], 1).tolist()
        x[:, i] = [decoder.decode(cum[j]) for j in range(n)]
        state.observe(i, x[:, i])
    if not decoder.finished():
        raise ValueError("rANS stream did not end in its initial state: corrupted stream or wrong model")
    return x


# ----------------------------------------------------------------------------- structure learning


def mutual_information(x: np.ndarray, n_values: int, smoothing: float = 0.01) -> np.ndarray:
    """Pairwise mutual information (nats) between the columns of x (N, D) ints in [0, n_values): (D, D)."""
    n, d = x.shape
    onehot = np.eye(n_values)[x].reshape(n, d * n_values)
    joint = (onehot.T @ onehot).reshape(d, n_values, d, n_values).transpose(0, 2, 1, 3) + smoothing
    joint /= joint.sum((2, 3), keepdims=True)
    pi, pj = joint.sum(3, keepdims=True), joint.sum(2, keepdims=True)
    mi = (joint * np.log(joint / (pi * pj))).sum((2, 3))
    np.fill_diagonal(mi, 0.0)
    return mi


def chow_liu_parents(x: np.ndarray, n_values: int) -> np.ndarray:
    """The Chow-Liu tree of x's columns (maximum spanning tree of their mutual information, Prim's
    algorithm) rooted at its centre (the node of least eccentricity): parent array, -1 at the root."""
    mi = mutual_information(x, n_values)
    d = len(mi)
    in_tree, best, link = np.zeros(d, bool), mi[0].copy(), np.zeros(d, np.int64)
    in_tree[0] = True
    adj: list[list[int]] = [[] for _ in range(d)]
    for _ in range(d - 1):
        j = int(np.argmax(np.where(in_tree, -np.inf, best)))
        adj[j].append(int(link[j]))
        adj[int(link[j])].append(j)
        in_tree[j] = True
        better = (mi[j] > best) & ~in_tree
        best[better], link[better] = mi[j][better], j

    def bfs(start: int) -> np.ndarray:
        dist, queue = np.full(d, -1), [start]
        dist[start] = 0
        for u in queue:
            for w in adj[u]:
                if dist[w] < 0:
                    dist[w] = dist[u] + 1
                    queue.append(w)
        return dist

    root = int(np.argmin([bfs(s).max() for s in range(d)]))
    parent, dist = np.full(d, -1), bfs(root)
    for u in range(d):
        for w in adj[u]:
            if dist[w] == dist[u] + 1:
                parent[w] = u
    return parent


def hclt(x: np.ndarray, n_latent: int, n_values: int) -> LatentTreePC:
    return LatentTreePC(chow_liu_parents(x, n_values), n_latent, n_values)


def mixture_of_categoricals(d: int, n_latent: int, n_values: int) -> LatentTreePC:
    """sum_k pi_k prod_i E_i(k, x_i): a star of identity transitions (one latent shared by all pixels)."""
    return LatentTreePC(np.array([-1] + [0] * (d - 1)), n_latent, n_values, mixture=True)


# ----------------------------------------------------------------------------- data and baselines


def digits_data(binary: bool, threshold: int = 8) -> np.ndarray:
    """scikit-learn's 1797 digits as (1797, 64) int64: grey levels 0..16, or 1 where level >= threshold."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.int64)
    if binary:
        if not 1 <= threshold <= 16:
            raise ValueError(f"threshold must be in [1, 16], got {threshold}")
        x = (x >= threshold).astype(np.int64)
    return x


def pack_bits(x: np.ndarray, depth: int) -> bytes:
    """The values of x (ints in [0, 2**depth)) written MSB-first at ``depth`` bits each, zero-padded to a byte."""
    flat = np.asarray(x, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << depth):
        raise ValueError(f"values must lie in [0, {1 << depth}) for depth {depth}")
    bits = (flat[:, None] >> np.arange(depth - 1, -1, -1)) & 1
    return np.packbits(bits.reshape(-1).astype(np.uint8)).tobytes()


def minimal_png(image: np.ndarray, bit_depth: int) -> bytes:
    """A greyscale PNG (colour type 0) of image (H, W) ints at ``bit_depth`` (1, 2, 4 or 8) bits per pixel,
    rows with filter 0 (none), one zlib level-9 IDAT."""
    if bit_depth not in (1, 2, 4, 8):
        raise ValueError(f"bit_depth must be 1, 2, 4 or 8, got {bit_depth}")
    h, w = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & MASK32)

    raw = b"".join(b"\x00" + pack_bits(row, bit_depth) for row in image)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def classical_sizes(x: np.ndarray, n_values: int) -> dict[str, dict]:
    """Bytes written by gzip / bz2 / lzma (xz) / PNG for the whole set x (N, 64), the images one after the
    other in raster order. gzip/bz2/lzma get both one byte per pixel and the pixels packed at the minimal
    bit depth (1 for binary, 5 for 17 levels) and keep the smaller; PNG is one 8-wide, 8N-tall greyscale
    image at the smallest PNG depth that holds the values (1 bit, or 8 for 17 levels), the smaller of our
    minimal writer and Pillow's optimised writer (when Pillow is installed)."""
    depth = int(np.ceil(np.log2(n_values)))
    reps = {"1 byte/pixel": x.astype(np.uint8).tobytes(), f"{depth} bits/pixel": pack_bits(x, depth)}
    coders = {"gzip": lambda b: gzip.compress(b, compresslevel=9, mtime=0), "bz2": lambda b: bz2.compress(b, 9),
              "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)}
    out = {}
    for name, fn in coders.items():
        sizes = {rep: len(fn(data)) for rep, data in reps.items()}
        best = min(sizes, key=sizes.get)
        out[name] = {"bytes": sizes[best], "input": best, "all": sizes}
    strip = x.reshape(-1, 8)
    png_depth = 1 if n_values == 2 else 8
    sizes = {"minimal writer": len(minimal_png(strip, png_depth))}
    try:
        from PIL import Image

        buf = io.BytesIO()
        img = Image.fromarray(strip.astype(bool) if n_values == 2 else strip.astype(np.uint8))
        img.save(buf, format="PNG", optimize=True)
        sizes["Pillow optimize"] = len(buf.getvalue())
    except ImportError:
        pass
    best = min(sizes, key=sizes.get)
    out["PNG"] = {"bytes": sizes[best], "input": f"{png_depth}-bit greyscale, {best}", "all": sizes}
    return out


# ----------------------------------------------------------------------------- the recipe


@dataclass
class Config:
    n_test: int = 400
    n_val: int = 200
    n_train: int = 0  # 0: all remaining images (1197)
    mixture_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    hclt_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    em_iters: int = 60
    pseudocount: float = 0.1
    precision: int = 24
    threshold: int = 8  # binarised digits: 1 where the grey level >= threshold
    datasets: tuple[str, ...] = ("digits", "binary")

    @classmethod
    def quick(cls) -> "Config":
        return cls(mixture_ks=(1, 4, 16), hclt_ks=(2, 8), em_iters=20)

    @classmethod
    def full(cls) -> "Config":
        return cls()

    def check(self) -> None:
        if self.n_test < 1 or self.n_val < 1 or self.n_train < 0:
            raise ValueError(f"n_test and n_val must be >= 1 and n_train >= 0, got {self.n_test}, {self.n_val}, "
                             f"{self.n_train}")
        if self.n_test + self.n_val + max(self.n_train, 1) > 1797:
            raise ValueError(f"n_test + n_val + n_train must leave room in the 1797 digits, got {self.n_test} + "
                             f"{self.n_val} + {self.n_train}")
        for name in ("mixture_ks", "hclt_ks"):
            ks = getattr(self, name)
            if not ks or any(k < 1 for k in ks):
                raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {ks}")
        if self.em_iters < 1:
            raise ValueError(f"em_iters must be >= 1, got {self.em_iters}")
        if not 8 <= self.precision <= 31:
            raise ValueError(f"precision must be in [8, 31], got {self.precision}")
        if not self.datasets or any(d not in ("digits", "binary") for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of ('digits', 'binary'), got {self.datasets}")


DATASET_NAMES = {"digits": "digits (17 levels)", "binary": "binarised digits"}


def _bpd(logp_nats: np.ndarray, d: int) -> float:
    return float(-np.mean(logp_nats) / np.log(2) / d)


def compress_and_check(pc: LatentTreePC, x: np.ndarray, precision: int) -> dict:
    """Encode x, decode it, check the round trip; rates in bits/dim and speeds in pixels/s."""
    start = time.perf_counter()
    words, model_bits = pc_encode(pc, x, precision)
    t_enc = time.perf_counter() - start
    start = time.perf_counter()
    back = pc_decode(pc, words, len(x), precision)
    t_dec = time.perf_counter() - start
    exact = (back == x).all(1)
    return {"written_bpd": 32 * len(words) / x.size, "model_bpd": model_bits / x.size,
            "direct_bpd": _bpd(pc.log_marginal(x), pc.D), "bytes": 4 * len(words),
            "exact_fraction": float(exact.mean()), "encode_pixels_per_s": x.size / t_enc,
            "decode_pixels_per_s": x.size / t_dec, "encode_s": t_enc, "decode_s": t_dec}


def _run_dataset(name: str, x_all: np.ndarray, cfg: Config, seed: int, progress: bool) -> dict:
    from tqdm.auto import tqdm

    n_values = 17 if name == "digits" else 2
    perm = np.random.default_rng(seed).permutation(len(x_all))
    test, val = x_all[perm[:cfg.n_test]], x_all[perm[cfg.n_test:cfg.n_test + cfg.n_val]]
    rest = perm[cfg.n_test + cfg.n_val:]
    train = x_all[rest[:cfg.n_train] if cfg.n_train else rest]
    d = x_all.shape[1]
    parents = chow_liu_parents(train, n_values)
    depth = max(len(p) - 1 for p in LatentTreePC(parents, 1, n_values).path)
    families = {"mixture": cfg.mixture_ks, "hclt": cfg.hclt_ks}
    sweep: dict[str, dict[int, dict]] = {f: {} for f in families}
    models: dict[str, dict[int, LatentTreePC]] = {f: {} for f in families}
    jobs = [(f, k) for f, ks in families.items() for k in ks]
    for j, (family, k) in enumerate(tqdm(jobs, desc=f"{name}: fit and code", disable=not progress, leave=False)):
        pc = (mixture_of_categoricals(d, k, n_values) if family == "mixture" else LatentTreePC(parents, k, n_values))
        curve = pc.fit(train, cfg.em_iters, cfg.pseudocount, seed=seed * 1000 + j, progress=progress,
                       desc=f"{name} {family} K={k} EM")
        coded = compress_and_check(pc, test, cfg.precision)
        sweep[family][k] = {"train_bpd": curve[-1], "val_bpd": _bpd(pc.log_marginal(val), d), "em_curve": curve,
                            **coded}
        models[family][k] = pc
    selected = {f: min(sweep[f], key=lambda k: sweep[f][k]["val_bpd"]) for f in families}
    classical = classical_sizes(test, n_values)
    for v in classical.values():
        v["bpd"] = 8 * v["bytes"] / test.size
    return {"n_values": n_values, "sizes": {"train": len(train), "val": len(val), "test": len(test)},
            "tree_depth": depth, "tree_root": int(np.flatnonzero(parents == -1)[0]),
            "sweep": {f: {str(k): v for k, v in s.items()} for f, s in sweep.items()}, "selected": selected,
            "classical": classical, "raw_bpd": float(np.ceil(np.log2(n_values)))}


def _plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(6.5 * len(names), 8.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        r = results[name]
        h = r["sweep"]["hclt"][str(r["selected"]["hclt"])]
        m = r["sweep"]["mixture"][str(r["selected"]["mixture"])]
        labels = [f"PC HCLT\nK={r['selected']['hclt']}", f"PC mixture\nK={r['selected']['mixture']}",
                  *r["classical"]]
        values = [h["written_bpd"], m["written_bpd"], *[v["bpd"] for v in r["classical"].values()]]
        bars = ax.bar(range(len(values)), values, color=["C0", "C2"] + ["C7"] * len(r["classical"]))
        for b, v in zip(bars, values):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        ax.axhline(h["model_bpd"], color="C3", ls="--", lw=1, label=f"HCLT model -log2 p = {h['model_bpd']:.3f}")
        ax.axhline(r["raw_bpd"], color="k", ls=":", lw=1, label=f"raw, {r['raw_bpd']:.0f} bits/pixel")
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_ylabel("bits per pixel (test set, one file)")
        ax.set_title(f"{DATASET_NAMES[name]}: rate written per method", fontsize=9)
        ax.legend(fontsize=7, loc="upper center")
        ax.grid(alpha=0.3, axis="y")
    for ax, name in zip(axes[1], names):
        for family, color in (("hclt", "C0"), ("mixture", "C2")):
            s = results[name]["sweep"][family]
            ks = sorted(int(k) for k in s)
            label = "HCLT" if family == "hclt" else "mixture"
            ax.plot(ks, [s[str(k)]["written_bpd"] for k in ks], "-", marker="o", color=color,
                    label=f"{label}: test, bits written")
            ax.plot(ks, [s[str(k)]["val_bpd"] for k in ks], "--", marker="x", color=color, alpha=0.6,
                    label=f"{label}: validation -log2 p")
            ax.plot(ks, [s[str(k)]["train_bpd"] for k in ks], ":", color=color, alpha=0.6,
                    label=f"{label}: train -log2 p")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (mixture components / latent states per HCLT node)")
        ax.set_ylabel("bits per pixel")
        ax.set_title(f"{DATASET_NAMES[name]}: rate vs K", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(quick: bool = False, out_dir=None, seed: int = 0, progress: bool = True, config: Config | None = None
        ) -> RecipeResult:
    cfg = config if config is not None else (Config.quick() if quick else Config.full())
    cfg.check()
    results = {}
    for name in cfg.datasets:
        results[name] = _run_dataset(name, digits_data(name == "binary", cfg.threshold), cfg, seed, progress)
    rows = []
    for name, r in results.items():
        ds, sz = DATASET_NAMES[name], r["sizes"]
        scale = (f"sklearn digits 8x8, {sz['train']}/{sz['val']}/{sz['test']} train/val/test images, test set coded "
                 f"as one file, EM {cfg.em_iters} iterations (paper: MNIST 28x28)")
        kh, km = r["selected"]["hclt"], r["selected"]["mixture"]
        h, m = r["sweep"]["hclt"][str(kh)], r["sweep"]["mixture"][str(km)]
        best = min(r["classical"], key=lambda c: r["classical"][c]["bpd"])
        rows += [
            ResultRow(f"{ds}: bits/dim written, PC HCLT (K={kh})", h["written_bpd"], "-", scale),
            ResultRow(f"{ds}: model -log2 p bits/dim, PC HCLT", h["model_bpd"], "-", scale),
            ResultRow(f"{ds}: written - model bits/dim, PC HCLT", h["written_bpd"] - h["model_bpd"],
                      "near 0 (claim)", scale),
            ResultRow(f"{ds}: bits/dim written, PC mixture (K={km})", m["written_bpd"], "-", scale),
            ResultRow(f"{ds}: bits/dim, best classical ({best})", r["classical"][best]["bpd"], "-", scale),
            ResultRow(f"{ds}: encode speed, PC HCLT (pixels/s)", h["encode_pixels_per_s"],
                      "5-40x faster than neural codecs (claim)", scale + "; numpy + Python rANS, 1 thread", ".0f"),
            ResultRow(f"{ds}: decode speed, PC HCLT (pixels/s)", h["decode_pixels_per_s"], "-",
                      scale + "; numpy + Python rANS, 1 thread", ".0f"),
            ResultRow(f"{ds}: test images decoded exactly, all models (fraction)",
                      min(v["exact_fraction"] for s in r["sweep"].values() for v in s.values()), "1 (lossless)",
                      scale, ".3f"),
        ]
    result = RecipeResult(recipe="pc_compress", quick=quick, seed=seed, rows=rows,
                          details={"config": asdict(cfg), "datasets": results})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "pc_compress_rates.png"
        _plot(results, path)
        result.files.append(str(path))
    return result
