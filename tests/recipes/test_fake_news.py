"""The fake_news (EDU4FD) recipe: segmenter, EDU graph, synthetic corpus, RGAT, model, and a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recurlab.recipes import edu, fake_news
from recurlab.recipes.edu import EDU, build_graph, make_corpus, segment

# ----------------------------------------------------------------------------- segmenter


def _texts(edus):
    return [e.text for e in edus]


def test_segment_cuts_at_markers_and_punctuation():
    edus = segment("The mayor resigned, which surprised nobody, because the audit failed.")
    assert _texts(edus) == ["The mayor resigned", "which surprised nobody", "because the audit failed"]
    assert [e.marker for e in edus] == [None, "which", "because"]
    assert [e.relation for e in edus] == ["continuation", "elaboration", "cause"]


def test_segment_strong_marker_without_comma_and_sentence_numbering():
    edus = segment("He left. She stayed although it rained!")
    assert _texts(edus) == ["He left", "She stayed", "although it rained"]
    assert [(e.sentence, e.position) for e in edus] == [(0, 0), (1, 0), (1, 1)]


def test_segment_weak_markers_only_after_punctuation():
    edus = segment("Bread and butter rose, and prices fell; so the bank cut rates.")
    assert _texts(edus) == ["Bread and butter rose", "and prices fell", "so the bank cut rates"]
    assert [e.marker for e in edus] == [None, "and", "so"]


def test_segment_joins_marker_only_and_short_pieces():
    assert _texts(segment("However, the minister denied it.")) == ["However the minister denied it"]
    assert segment("However, the minister denied it.")[0].marker == "however"
    assert _texts(segment("Prices, wages and rents rose.")) == ["Prices, wages and rents rose"]
    assert _texts(segment("The council met, twice.")) == ["The council met, twice"]


def test_segment_multiword_markers_and_word_boundaries():
    edus = segment("The plan failed, even though the council approved it.")
    assert _texts(edus) == ["The plan failed", "even though the council approved it"]
    assert edus[1].marker == "even though" and edus[1].relation == "contrast"
    assert _texts(segment("The sincere mayor spoke whichever way.")) == ["The sincere mayor spoke whichever way"]


def test_segment_rejects_bad_input():
    with pytest.raises(ValueError, match="text"):
        segment(3)
    with pytest.raises(ValueError, match="min_words"):
        segment("a b.", min_words=0)


# ----------------------------------------------------------------------------- graph


def test_build_graph_attaches_by_marker():
    edus = segment("The mayor resigned, which surprised nobody, because the audit failed. "
                   "Therefore, the council met. The budget grew, and taxes rose, if the minister agreed.")
    assert build_graph(edus) == [
        (0, 1, "elaboration"),   # which -> previous EDU
        (0, 2, "cause"),         # because -> head of its sentence, skipping the elaboration
        (0, 3, "result"),        # sentence-initial therefore -> head of the previous sentence
        (3, 4, "continuation"),  # unmarked sentence head -> previous EDU
        (4, 5, "continuation"),  # and -> previous EDU
        (4, 6, "condition"),     # if -> head of its sentence
    ]


def test_build_graph_validates_numbering():
    with pytest.raises(ValueError, match="no head"):
        build_graph([EDU("a b", 0, 1, None)])
    with pytest.raises(ValueError, match="two heads"):
        build_graph([EDU("a b", 0, 0, None), EDU("c d", 0, 0, None)])
    assert build_graph([]) == []


def test_relation_adjacency_has_inverses_and_self_loops():
    adj = fake_news.relation_adjacency([(0, 2, "cause")], n_edus=3, max_edus=4)
    r = edu.RELATIONS.index("cause")
    assert adj[r, 2, 0] and adj[len(edu.RELATIONS) + r, 0, 2]
    assert adj[fake_news.SELF_LOOP].sum() == 3 and not adj[fake_news.SELF_LOOP, 3, 3]
    assert adj.sum() == 5
    with pytest.raises(ValueError, match="outside"):
        fake_news.relation_adjacency([(0, 5, "cause")], n_edus=3, max_edus=6)


# ----------------------------------------------------------------------------- corpus

_POSITIVE = {pos for pos, _ in edu.POLARITY_VERBS}
_VERBS = {v for pair in edu.POLARITY_VERBS for v in pair}


def _structure_oracle(text: str) -> int:
    """1 (fake) iff some cause/result/contrast edge of the EDU graph is incoherent, read off the words."""
    edus = segment(text)

    def topic_sign(e):
        w = e.words()
        verb = next(x for x in w if x in _VERBS)
        return w[w.index(verb) - 1], verb in _POSITIVE

    for h, d, rel in build_graph(edus):
        (th, sh), (td, sd) = topic_sign(edus[h]), topic_sign(edus[d])
        if (rel == "cause" and th != td) or (rel == "result" and (th, sh) != (td, sd)) or \
                (rel == "contrast" and sh == sd):
            return 1
    return 0


def test_corpus_is_seeded_balanced_and_segmented_clause_by_clause():
    a, b = make_corpus(200, seed=3), make_corpus(200, seed=3)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert a.texts != make_corpus(200, seed=4).texts
    assert a.labels.sum() == 100
    for text in a.texts[:50]:  # every clause carries exactly one polarity verb: one EDU per clause
        edus = segment(text)
        assert all(sum(w in _VERBS for w in e.words()) == 1 for e in edus)
        assert len(edus) == sum(w in _VERBS for w in text.lower().replace(",", " ").replace(".", " ").split())


def test_corpus_label_is_carried_by_the_edu_graph():
    c = make_corpus(300, seed=0)
    for y, motifs in zip(c.labels, c.motifs):
        assert (y == 1) == any(not ok for _, ok in motifs)
    oracle = np.array([_structure_oracle(t) for t in c.texts])
    assert np.array_equal(oracle, c.labels)


def test_bag_of_words_is_near_chance():
    train, test = make_corpus(1500, seed=10), make_corpus(1000, seed=11)
    pred = fake_news.bag_of_words_baseline(train.texts, train.labels, test.texts)
    assert abs(np.mean(pred == test.labels) - 0.5) < 0.05


def test_make_corpus_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n must"):
        make_corpus(1, seed=0)
    with pytest.raises(ValueError, match="n_topics"):
        make_corpus(10, seed=0, n_topics=2)
    with pytest.raises(ValueError, match="min_sentences"):
        make_corpus(10, seed=0, min_sentences=3, max_sentences=2)


# ----------------------------------------------------------------------------- model parts


def test_rgat_single_neighbour_is_exact_and_isolated_nodes_get_zero():
    torch.manual_seed(0)
    layer = fake_news.RGATLayer(4, n_relations=2).double()
    h = torch.randn(1, 3, 4, dtype=torch.float64)
    adj = torch.zeros(1, 2, 3, 3, dtype=torch.bool)
    adj[0, 1, 0, 2] = True  # node 0 hears node 2 under relation 1 only
    adj[0, 0, 1, 0] = adj[0, 0, 1, 2] = True  # node 1 hears nodes 0 and 2 under relation 0
    out = layer(h, adj)
    assert torch.allclose(out[0, 0], torch.relu(h[0, 2] @ layer.weight[1]))
    assert torch.equal(out[0, 2], torch.zeros(4, dtype=torch.float64))
    z = h[0] @ layer.weight[0]
    s = torch.nn.functional.leaky_relu(z[1] @ layer.q[0] + z[[0, 2]] @ layer.k[0], 0.2)
    assert torch.allclose(out[0, 1], torch.relu(torch.softmax(s, 0) @ z[[0, 2]]))
    with pytest.raises(ValueError, match="adj"):
        layer(h, adj[:, :1])


def test_textcnn_sees_only_consecutive_edus():
    torch.manual_seed(0)
    cnn = fake_news.TextCNN(4, kernel_sizes=(2, 3))
    e = torch.randn(1, 6, 4)
    e2 = e.clone()
    e2[0, 0] += 1.0
    diff = (cnn(e) - cnn(e2)).abs().sum(-1)[0]
    assert diff[0] > 0 and diff[1] > 0 and torch.all(diff[2:] == 0)  # windows [i-1, i+1]
    with pytest.raises(ValueError, match="kernel_sizes"):
        fake_news.TextCNN(4, kernel_sizes=())


def test_model_ignores_padding_edus():
    c = make_corpus(4, seed=1)
    vocab = fake_news.build_vocab(c.texts)
    tight = fake_news.encode(c.texts, c.labels, vocab, max_words=8)
    padded = fake_news.encode(c.texts, c.labels, vocab, max_words=8, max_edus=tight.mask.shape[1] + 5)
    torch.manual_seed(0)
    model = fake_news.EDU4FD(len(vocab), d_model=8).eval()
    with torch.no_grad():
        a = model(tight.tokens, tight.mask, tight.adj)
        b = model(padded.tokens, padded.mask, padded.adj)
    assert a.shape == (4, 2) and torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="use_graph"):
        fake_news.EDU4FD(10, use_graph=False, use_seq=False)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    assert fake_news.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))
    assert fake_news.macro_f1(np.zeros(4), np.zeros(4)) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the recipe

_TINY = fake_news.Config(n_train=600, n_test=200, n_topics=6, words_per_topic=3, max_sentences=4,
                         max_fillers=1, d_model=16, rgat_layers=1, epochs=6, batch_size=16,
                         lr=5e-3, variants=("full",))


def test_tiny_run_learns_and_is_deterministic(tmp_path):
    r1 = fake_news.run(config=_TINY, out_dir=tmp_path, seed=0, progress=False)
    r2 = fake_news.run(config=_TINY, seed=0, progress=False)
    m = r1.details["metrics"]
    assert m["full"]["accuracy"] > r1.details["majority_class_accuracy"] + 0.1
    assert m == r2.details["metrics"]
    assert [row.ours for row in r1.rows] == [row.ours for row in r2.rows]
    assert len(r1.files) == 1 and (tmp_path / "fake_news_variants.png").stat().st_size > 0
    with pytest.raises(ValueError, match="variants"):
        fake_news.run(config=fake_news.Config(variants=("nope",)), progress=False)
