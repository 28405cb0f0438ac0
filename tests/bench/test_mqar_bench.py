import dataclasses

import pytest
import json

from recurlab.bench import harness
from recurlab.bench.mqar import BENCHMARK, MQARBenchConfig, jobs, render_markdown

TINY = dict(mixers=("attention", "baseconv"), d_models=(16, 32), seq_lens=(16,), vocab_size=32, lrs=(3e-3, 1e-2),
            train_examples=256, eval_examples=64, test_examples=48, max_steps=20, batch_size=16, eval_every=10)


def run_mqar_bench(cfg, out, progress=None):
    return harness.run(BENCHMARK, cfg, out, progress=False, echo=progress or (lambda m: None))


def test_tiny_sweep_writes_rows_table_plot_and_resumes(tmp_path):
    messages = []
    result = run_mqar_bench(MQARBenchConfig(**TINY), tmp_path, progress=messages.append)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {(r["mixer"], r["d_model"]) for r in rows} == {("attention", 16), ("attention", 32), ("baseconv", 16), ("baseconv", 32)}
    for r in rows:
        assert {"mixer", "d_model", "seq_len", "num_kv_pairs", "lr", "accuracy", "params", "seconds"} <= set(r)
        assert r["seq_len"] == 16 and r["num_kv_pairs"] == 1 and 0 <= r["accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    runs = [json.loads(line)["result"] for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    for r in rows:  # the best of the learning rates tried
        tried = [x["accuracy"] for x in runs if (x["mixer"], x["d_model"]) == (r["mixer"], r["d_model"])]
        assert r["accuracy"] == max(tried)
    table = (tmp_path / "results.md").read_text()
    assert "| attention |" in table and "48 held-out test examples" in table
    first_row = table.split("| attention |", 1)[1].splitlines()[0]
    assert f"{rows[0]['test_accuracy']:.3f}" in first_row  # the table reports the held-out test accuracy
    assert (tmp_path / "mqar.png").read_bytes()[:4] == b"\x89PNG"
    # a second run reuses every finished run
    messages.clear()
    again = run_mqar_bench(MQARBenchConfig(**TINY), tmp_path, progress=messages.append)
    assert again["rows"] == result["rows"] and messages == [f"reusing {len(runs)} finished jobs from {tmp_path / 'runs.jsonl'}"]


def test_a_solved_cell_skips_the_other_learning_rates(tmp_path):
    cfg = MQARBenchConfig(**{**TINY, "mixers": ("attention",), "d_models": (16,), "early_stop_accuracy": 0.01})
    run_mqar_bench(cfg, tmp_path)
    runs = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["job"]["lr"] for line in runs] == [3e-3]  # 1e-2 was not tried


def test_every_setting_is_in_the_key_and_the_sweep_axes_are_not():
    base = MQARBenchConfig(**TINY)
    keys = {harness.job_key(j) for j in jobs(base)}
    changed = dict(max_steps=30, kv_per_token=0.125, vocab_size=64, train_examples=128, eval_examples=32, test_examples=16,
                   batch_size=8,
                   eval_every=5, early_stop_accuracy=0.9, n_layers=3, seed=1, mixer_kwargs={"attention": {"heads": 2}},
                   layer_kwargs={"baseconv": [{}, {}, {}]}, protocol="zoology", epochs=3,
                   mixer_lrs={"attention": [1e-2]})
    assert set(changed) == {f.name for f in dataclasses.fields(base) if not f.metadata.get("axis")}
    for name, value in changed.items():  # every setting: no job of the sweep is reused
        assert not keys & {harness.job_key(j) for j in jobs(dataclasses.replace(base, **{name: value}))}, name
    # another set of mixers reuses the runs of the mixers both sweeps share
    fewer = {harness.job_key(j) for j in jobs(dataclasses.replace(base, mixers=("attention",)))}
    assert fewer < keys


def test_quick_is_the_demo_setting():
    q = MQARBenchConfig.quick()
    assert q.seq_lens == (64,) and q.d_models == (128,) and "attention" in q.mixers and "shortconv" in q.mixers
    assert q.num_kv_pairs(64) == 4 and q.mixer_kwargs == {"attention": {"n_heads": 2}}
    assert [j["lr"] for j in jobs(q)] == [3e-3, 1e-3, 3e-3, 1e-3, 3e-3]  # one rate each, gla and mingru 1e-3
    table = render_markdown({"config": vars(q) | {"kv_per_token": q.kv_per_token}, "rows": [
        {"mixer": "attention", "d_model": 128, "seq_len": 64, "num_kv_pairs": 4, "lr": 3e-3, "accuracy": 1.0,
         "params": 1, "steps": 1, "seconds": 1.0}]})
    assert "L=64 d=128" in table and "per mixer: gla 0.001; mingru 0.001" in table


def test_shortconv_is_baseconv_with_a_short_filter_in_every_layer():
    from recurlab.bench.mqar import bench_model

    cfg = MQARBenchConfig(vocab_size=32)
    model = bench_model(cfg, "shortconv", 16, 64)
    assert [(type(b.mixer).__name__, b.mixer.kernel_len) for b in model.depth.blocks] == [("BaseConv", 3)] * 2
    assert receptive_reach(model, 64, 32) == 0.0


def test_the_test_set_is_held_out_from_training_and_validation(tmp_path, monkeypatch):
    """Three sets from three seeds: the test set neither stops training nor picks the learning rate; the
    model is evaluated on it once, at the end of the run."""
    from recurlab.bench import mqar

    seeds, evaluated = [], []
    generate, evaluate = mqar.multi_query_associative_recall, mqar.evaluate
    monkeypatch.setattr(mqar, "multi_query_associative_recall", lambda n, cfg, seed: seeds.append(seed) or
                        generate(n, cfg, seed=seed))
    monkeypatch.setattr(mqar, "evaluate", lambda model, task, *a: evaluated.append(len(task)) or
                        evaluate(model, task, *a))
    cfg = MQARBenchConfig(**{**TINY, "mixers": ("attention",), "d_models": (16,), "lrs": (3e-3,)})
    run_mqar_bench(cfg, tmp_path)
    assert seeds == [1, 2, 3] and evaluated == [48]


def test_old_runs_without_a_test_set_say_their_accuracy_is_validation():
    row = {"mixer": "attention", "d_model": 64, "seq_len": 64, "num_kv_pairs": 4, "lr": 3e-3, "accuracy": 0.9,
           "params": 1, "steps": 1, "seconds": 1.0}
    config = vars(MQARBenchConfig.quick())
    assert "predate the held-out test set" in render_markdown({"config": config, "rows": [row]})
    assert "held-out test set of the model" in render_markdown({"config": config,
                                                                "rows": [{**row, "test_accuracy": 0.8}]})


def receptive_reach(model, seq_len: int, vocab_size: int) -> float:
    """|d logits at the last position / d embedding at position 0|: non-zero iff the last position sees the first."""
    import torch

    torch.manual_seed(0)
    x = model.embedding(torch.randint(1, vocab_size, (1, seq_len))).detach().requires_grad_(True)
    hidden, _ = model.depth(x, None)
    hidden[0, -1].pow(2).sum().backward()
    return x.grad[0, 0].abs().max().item()


def test_two_layer_baseconv_as_the_bench_builds_it_sees_the_whole_sequence():
    """Zoology's figure 2 BaseConv (kernel_size [3, -1]: short, then implicit long) reaches position 0 from the
    last position of an L=64 sequence; the old wiring (k=3 in both layers) sees 4 tokens back."""
    from recurlab.bench.mqar import bench_model

    cfg = MQARBenchConfig(mixers=("baseconv",), d_models=(16,), seq_lens=(64,), vocab_size=32)
    model = bench_model(cfg, "baseconv", 16, 64)
    kinds = [(b.mixer.kernel_len, b.mixer.implicit) for b in model.depth.blocks]
    assert kinds == [(3, False), (64, True)]
    assert receptive_reach(model, 64, 32) > 1e-6
    old = bench_model(dataclasses.replace(cfg, layer_kwargs={"baseconv": [{"kernel_size": 3}, {"kernel_size": 3}]}),
                      "baseconv", 16, 64)
    assert [b.mixer.kernel_len for b in old.depth.blocks] == [3, 3]
    assert receptive_reach(old, 64, 32) == 0.0


def test_bench_gives_each_mixer_zoologys_figure2_arguments():
    from recurlab.bench.mqar import bench_model

    cfg = MQARBenchConfig(vocab_size=32, mixer_kwargs={"hyena": {"filter_order": 8}})
    attention = bench_model(cfg, "attention", 128, 64)
    assert all(b.mixer.n_heads == 1 for b in attention.depth.blocks)  # Fig. 2: num_heads 1
    hyena = bench_model(cfg, "hyena", 16, 128)
    assert all(b.mixer.l_max == 128 for b in hyena.depth.blocks)  # Fig. 2: l_max = input_seq_len
    assert receptive_reach(hyena, 128, 32) > 1e-6
    gam = bench_model(cfg, "gam", 16, 64)  # not in Zoology: its authors' kernel 3 in every layer
    assert [b.mixer.kernel_size for b in gam.depth.blocks] == [3, 3]


def test_zoology_protocol_sets_the_published_recipe():
    import math

    import torch

    from recurlab.bench.mqar import ZOOLOGY, bench_model, train_config, zoology_batch_size

    cfg = MQARBenchConfig(protocol="zoology")
    assert (cfg.vocab_size, cfg.train_examples, cfg.eval_examples, cfg.batch_size, cfg.epochs) == (8192, 100_000, 3000, 512, 64)
    assert cfg.lrs == pytest.approx(tuple(10 ** x for x in (-4, -4 + 2 / 3, -4 + 4 / 3, -2)))
    assert MQARBenchConfig(protocol="zoology", vocab_size=256).vocab_size == 256  # a setting given is kept
    assert set(ZOOLOGY) <= {f.name for f in dataclasses.fields(cfg)}
    t = train_config(cfg, 64, 1e-3)
    assert (t.steps, t.eval_every, t.batch_size) == (64 * 195, 195, 512)  # 100k // 512 = 195 steps per epoch
    assert (t.betas, t.weight_decay, t.decay, t.schedule, t.grad_clip, t.warmup_steps) == \
        ((0.9, 0.999), 0.1, "all", "epoch_cosine", 0.0, 0)
    assert train_config(cfg, 256, 1e-3).batch_size == 256 == zoology_batch_size(256)
    torch.manual_seed(0)
    model = bench_model(dataclasses.replace(cfg, vocab_size=512), "attention", 128, 64)
    assert isinstance(model.final_norm, torch.nn.LayerNorm) and isinstance(model.depth.blocks[0].mixer_norm, torch.nn.LayerNorm)
    assert model.embed_dropout.p == 0.1
    assert all(type(b.channel_mixer).__name__ == "Identity" for b in model.depth.blocks)  # x + LN(x), as Zoology's
    mixer = model.depth.blocks[0].mixer
    assert mixer.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert mixer.o_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(4), rel=0.05)  # out-projections: 0.01
    assert model.embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    hyena = bench_model(dataclasses.replace(cfg, vocab_size=512), "hyena", 64, 64).depth.blocks[1].mixer
    assert hyena.out_proj.weight.std().item() == pytest.approx(0.01, rel=0.1) and not hyena.in_proj.bias.any()
    cpu = bench_model(MQARBenchConfig(vocab_size=512), "attention", 128, 64)
    assert isinstance(cpu.final_norm, torch.nn.RMSNorm) and cpu.embed_dropout.p == 0.0


def test_a_tiny_zoology_protocol_sweep_trains_by_epochs(tmp_path):
    cfg = MQARBenchConfig(protocol="zoology", mixers=("baseconv",), d_models=(16,), seq_lens=(16,), vocab_size=32,
                          lrs=(1e-2,), train_examples=64, eval_examples=32, test_examples=32, batch_size=16, epochs=3)
    run_mqar_bench(cfg, tmp_path)
    row = json.loads((tmp_path / "results.json").read_text())["rows"][0]
    assert row["steps"] in (4, 8, 12)  # whole epochs of 64 / 16 = 4 steps (fewer only by early stopping)


def test_the_demo_runs_its_groups_in_parallel_processes_and_reports_them_as_one_sweep(tmp_path, capsys):
    from recurlab.bench.mqar import demo

    cfg = MQARBenchConfig(**{**TINY, "mixers": ("attention", "mingru", "shortconv"), "d_models": (16,), "lrs": (3e-3,),
                             "mixer_lrs": {"mingru": [1e-2]}})
    result = demo(tmp_path, progress=False, cfg=cfg, groups=(("attention",), ("mingru", "shortconv")))
    assert {(r["mixer"], r["lr"]) for r in result["rows"]} == {("attention", 3e-3), ("mingru", 1e-2), ("shortconv", 3e-3)}
    printed = capsys.readouterr().out
    assert "What it measures" in printed and "| shortconv |" in printed and "finished in" in printed
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 3
