"""Recursive Speculative Decoding (Jeon et al. 2024, "Recursive Speculative Decoding: Accelerating LLM
Inference via Sampling Without Replacement", arXiv:2402.14160).

The draft model q builds a *tree* of draft tokens whose siblings are sampled without replacement, and
the target p verifies the whole tree in one call with recursive rejection sampling, so the output has
exactly the target's distribution.

- RSD-C (:func:`rsd_c_generate`): constant branching per level, ``branching=(b_1, .., b_L)``; each node
  of level l - 1 gets b_l children by the Gumbel-top-k trick on its draft distribution (the b_l largest
  of log q(x) + Gumbel noise, in that order: a sample without replacement).
- RSD-S (:func:`rsd_s_generate`): stochastic beam search (Kool et al. 2019) of width W and depth L over
  draft *sequences*: every beam's children get perturbed scores G (the sequence's log q plus Gumbel
  noise, conditioned on the parent's G so that the maximum child keeps it), and the W best of all
  candidates of a level stay. Unlikely branches are cut early, so the tree has at most W nodes per level.
  Within one parent the children's order by G is their Gumbel-top-k order.

A level of the tree is drafted in one batched ``draft.step`` call from ``state.select(parents)``.

Recursive rejection sampling at a node with target distribution p and draft distribution q and its
children x_1..x_m in their sampled order: set p_1 = p, q_1 = q; accept x_i with probability
min(1, p_i(x_i) / q_i(x_i)), then continue at x_i's node; on rejection
p_{i+1} = norm(max(0, p_i - q_i)) and q_{i+1} = q_i with x_i removed and renormalised (x_{i+1} is a
draw from exactly that, given the earlier ones); when all m are rejected the token comes from p_{m+1};
at a node without children from p (the bonus token). (The team's notes swap the letters p and q. The
paper's Algorithm 1 could not be read line by line while this was built; exactness is checked by
tests/decoding/test_exactness.py against the enumerated target distribution.)

The target scores the tree in one call, in one of two ways. A target whose every block is full
softmax attention (``tree_attention``) takes the tree's nodes as one sequence with a tree mask
(recurlab/layers/tree.py: nodes + 1 token positions) and keeps the accepted path's keys and values
(``rewind.keep_path``). Any other target scores the tree as its root-to-leaf paths, one batch row each
(verify.py: P x (L + 1) positions for P leaves and depth L). ``tree_attention=None`` picks the first
when the target can; ``stats.target_positions`` counts what either cost. Batch 1 only. At temperature 0 the draft distribution is one-hot, so every node has one child and
both methods are chain speculative decoding with greedy drafts (output: greedy decoding).
"""

from __future__ import annotations

import dataclasses

import torch

from ..layers.tree import TokenTree
from ..state import State
from .common import DecodeStats, accept, check_args, draw, prefill, residual, sampling_probs
from .rewind import keep_path
from .verify import verify


@dataclasses.dataclass
class Level:
    """One level of the draft tree: n nodes."""

    tokens: list[int]  # (n,) each node's token
    parents: list[int]  # (n,) its parent's index in the level above (-1 at the root)
    probs: torch.Tensor | None = None  # (n, V) the draft's distribution of each node's children (None: last level)
    state: State | None = None  # batch n: the draft's state after each node's token (None: last level)


def gumbel(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel noise, float64."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1 - 1e-16)
    return -torch.log(-torch.log(u))


def gumbel_top_k(probs: torch.Tensor, k: int, generator: torch.Generator | None) -> list[int]:
    """min(k, support) tokens drawn without replacement from probs (V,), in the order drawn."""
    keys = probs.log() + gumbel(probs.shape, generator)  # -inf outside the support
    n = min(k, int((probs > 0).sum()))
    return torch.topk(keys, n).indices.tolist()


def log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, accurate at both ends."""
    return torch.where(a > -0.6931, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def conditioned_gumbel(parent: float, perturbed: torch.Tensor) -> torch.Tensor:
    """Kool et al. 2019 (eq. 23 in its appendix, in the stable form): Gumbels ``perturbed`` (n,) shifted so that
    their maximum equals ``parent`` and their order is kept: -log(exp(-parent) - exp(-max) + exp(-perturbed))."""
    z = perturbed.max()
    v = parent - perturbed + log1mexp(perturbed - z)
    return parent - v.clamp_min(0) - torch.log1p(torch.exp(-v.abs()))


def _step_level(draft, tokens: list[int], parent_state: State, parents: list[int], temperature, top_k, stats):
    """Run the draft over one tree level in one batched call: (probs (n, V), state of batch n)."""
    device = next(draft.parameters()).device
    logits, state = draft.step(torch.tensor(tokens, device=device), parent_state.select(parents))
    stats.draft_calls += 1
    return sampling_probs(logits, temperature, top_k), state


def draft_constant(draft, draft_state, pending, branching, temperature, top_k, generator, stats) -> list[Level]:
    """RSD-C's tree: levels[0] is the pending token; each node of level l - 1 gets branching[l - 1] children."""
    root = Level([pending], [-1])
    root.probs, root.state = _step_level(draft, [pending], draft_state, [0], temperature, top_k, stats)
    levels = [root]
    for depth, b in enumerate(branching, 1):
        above = levels[-1]
        tokens, parents = [], []
        for i in range(len(above.tokens)):
            children = gumbel_top_k(above.probs[i], b, generator)
            tokens += children
            parents += [i] * len(children)
        level = Level(tokens, parents)
        if depth < len(branching):
            level.probs, level.state = _step_level(draft, tokens, above.state, parents, temperature, top_k, stats)
        levels.append(level)
    return levels


def draft_beam(draft, draft_state, pending, beam_width, depth, temperature, top_k, generator, stats) -> list[Level]:
    """RSD-S's tree: stochastic beam search of width beam_width over depth levels."""
    root = Level([pending], [-1])
    root.probs, root.state = _step_level(draft, [pending], draft_state, [0], temperature, top_k, stats)
    levels = [root]
    log_q_path, scores = [0.0], [0.0]  # per node of the last level: log q of its sequence, its perturbed score G
    for d in range(1, depth + 1):
        above = levels[-1]
        candidates = []  # (G, parent, token, log q of the sequence)
        for i in range(len(above.tokens)):
            support = torch.nonzero(above.probs[i] > 0).flatten()
            phi = log_q_path[i] + above.probs[i][support].log()
            g = conditioned_gumbel(scores[i], phi + gumbel(phi.shape, generator))
            candidates += zip(g.tolist(), [i] * len(support), support.tolist(), phi.tolist())
        candidates.sort(key=lambda c: -c[0])
        kept = candidates[:beam_width]
        level = Level([c[2] for c in kept], [c[1] for c in kept])
        scores, log_q_path = [c[0] for c in kept], [c[3] for c in kept]
        if d < depth:
            level.probs, level.state = _step_level(draft, level.tokens, above.state, level.parents, temperature,
                                                   top_k, stats)
        levels.append(level)
    return levels


def tree_paths(levels: list[Level]) -> tuple[torch.Tensor, dict[tuple[int, int], int], dict]:
    """Root-to-leaf token paths (P, L + 1) padded with each leaf's token; for every node (level, index)
    a path row through it; and every node's children (indices in the next level, in their sampled order)."""
    children = {(d, i): [] for d, level in enumerate(levels) for i in range(len(level.tokens))}
    for d in range(1, len(levels)):
        for j, parent in enumerate(levels[d].parents):
            children[(d - 1, parent)].append(j)
    paths, row = [], {}
    for (d, i), kids in children.items():
        if kids:
            continue
        path, node = [], (d, i)
        while node[1] >= 0:
            path.append(levels[node[0]].tokens[node[1]])
            row.setdefault(node, len(paths))
            node = (node[0] - 1, levels[node[0]].parents[node[1]])
        path.reverse()
        paths.append(path + [path[-1]] * (len(levels) - len(path)))
    return torch.tensor(paths), row, children


def flat_tree(levels: list[Level]) -> tuple[torch.Tensor, torch.Tensor, dict[tuple[int, int], int]]:
    """The tree's nodes level by level as one sequence: tokens (N,), parents (N,) (-1 for the root), and
    every node's (level, index) -> its position in the sequence."""
    starts = [0]
    for level in levels:
        starts.append(starts[-1] + len(level.tokens))
    tokens = [t for level in levels for t in level.tokens]
    parents = [-1] + [starts[d - 1] + p for d in range(1, len(levels)) for p in levels[d].parents]
    position = {(d, i): starts[d] + i for d, level in enumerate(levels) for i in range(len(level.tokens))}
    return torch.tensor(tokens), torch.tensor(parents), position


def scores_trees(model) -> bool:
    """Whether ``model`` can score a token tree in one call: a stack of full softmax attention blocks."""
    from ..models.stack import Stack

    depth = getattr(model, "depth", None)
    return (type(depth) is Stack and not depth.shares_layers
            and all(b.mixer.tree_attention and b.mixer.window is None for b in depth.blocks))


def recursive_rejection(levels, children, p_of, generator) -> tuple[tuple[int, int], int]:
    """Walk the tree from the root: (the last accepted node (level, index), the token sampled after it).

    p_of(node): the target's distribution (V,) after the path to node (level, index)."""
    node = (0, 0)
    while True:
        p = p_of(node)
        kids = children[node]
        if not kids:
            return node, draw(p, generator)  # the bonus token
        p_res, q_res = p, levels[node[0]].probs[node[1]]
        for j in kids:
            token = levels[node[0] + 1].tokens[j]
            if accept(float(p_res[token]), float(q_res[token]), generator):
                node = (node[0] + 1, j)
                break
            p_res = residual(p_res, q_res)
            q_res = q_res.clone()
            q_res[token] = 0
            if q_res.sum() > 0:
                q_res = q_res / q_res.sum()
        else:
            return node, draw(p_res, generator)


@torch.no_grad()
def _rsd_generate(target, draft, input_ids, max_new_tokens, temperature, top_k, generator, build_tree,
                  tree_attention=None):
    check_args(input_ids, max_new_tokens, temperature, top_k)
    if tree_attention is None:
        tree_attention = scores_trees(target)
    elif tree_attention and not scores_trees(target):
        raise ValueError("tree_attention=True needs a target whose every block is full softmax attention")
    stats = DecodeStats()
    out = input_ids[0].tolist()
    target_state, draft_state = prefill(target, input_ids), prefill(draft, input_ids)
    pending, new, device = out[-1], 0, input_ids.device
    while new < max_new_tokens:
        levels = build_tree(draft_state, pending, stats)
        paths, row, children = tree_paths(levels)
        stats.target_calls += 1
        if tree_attention:  # the nodes as one sequence with a tree mask
            tokens, parents, position = flat_tree(levels)
            logits, end = target(tokens.to(device).unsqueeze(0), target_state, tree=TokenTree(parents.to(device)))
            stats.target_positions += len(tokens)
            p_flat = sampling_probs(logits[0], temperature, top_k)
            node, extra = recursive_rejection(levels, children, lambda n: p_flat[position[n]], generator)
            on_path, walk = [], node
            while walk[1] >= 0:
                on_path.append(position[walk])
                walk = (walk[0] - 1, levels[walk[0]].parents[walk[1]])
            target_state = keep_path(target_state, end, on_path[::-1])
        else:  # the root-to-leaf paths as rows of a batch
            v = verify(target, target_state, paths.to(device))
            stats.target_positions += paths.numel()
            p_paths = sampling_probs(v.logits, temperature, top_k)
            node, extra = recursive_rejection(levels, children, lambda n: p_paths[row[n], n[0]], generator)
            target_state = v.state_after(1 + node[0], row=row[node])
            stats.target_rerun_tokens += v.rerun_tokens
            stats.target_reruns += v.reruns
            stats.target_rewinds += v.rewound
            stats.target_prefix_states += v.from_prefix
        depth, index = node
        stats.accepted.append(depth)
        if levels[depth].state is not None:
            draft_state = levels[depth].state.select([index])
        else:  # a leaf of the last level: the draft has not run its token yet
            parent = levels[depth].parents[index]
            _, draft_state = _step_level(draft, [levels[depth].tokens[index]], levels[depth - 1].state, [parent],
                                         temperature, top_k, stats)
        accepted = []
        while node[0] > 0:
            accepted.append(levels[node[0]].tokens[node[1]])
            node = (node[0] - 1, levels[node[0]].parents[node[1]])
        emitted = accepted[::-1] + [extra]
        out += emitted
        new += len(emitted)
        pending = extra
    total = input_ids.shape[1] + max_new_tokens
    return torch.tensor([out[:total]], device=device), stats


def rsd_c_generate(target, draft, input_ids: torch.Tensor, max_new_tokens: int, branching: tuple[int, ...] = (2, 2),
                   temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
                   tree_attention: bool | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """RSD-C: the prompt (1, T) followed by max_new_tokens tokens sampled from ``target``, and the run's stats.

    branching (b_1, .., b_L): children per node at each level (a tree of depth L with up to b_1 ... b_L
    leaves). generator: every random draw comes from it. tree_attention: score the tree with a tree
    mask (None: whenever the target is all full attention; False: as root-to-leaf paths)."""
    branching = tuple(branching)
    if not branching or min(branching) < 1:
        raise ValueError(f"branching must be a non-empty tuple of ints >= 1, got {branching}")
    return _rsd_generate(target, draft, input_ids, max_new_tokens, temperature, top_k, generator,
                         lambda state, pending, stats: draft_constant(draft, state, pending, branching, temperature,
                                                                      top_k, generator, stats), tree_attention)


def rsd_s_generate(target, draft, input_ids: torch.Tensor, max_new_tokens: int, beam_width: int = 3, depth: int = 2,
                   temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None,
                   tree_attention: bool | None = None) -> tuple[torch.Tensor, DecodeStats]:
    """RSD-S: as :func:`rsd_c_generate`, with a stochastic beam search tree of beam_width nodes per level and
    ``depth`` levels (at most beam_width leaves)."""
    if beam_width < 1 or depth < 1:
        raise ValueError(f"beam_width and depth must be >= 1, got {beam_width} and {depth}")
    return _rsd_generate(target, draft, input_ids, max_new_tokens, temperature, top_k, generator,
                         lambda state, pending, stats: draft_beam(draft, state, pending, beam_width, depth,
                                                                  temperature, top_k, generator, stats), tree_attention)
