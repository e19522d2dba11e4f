"""Online alignment (PLE, RAFT, online RRHF): principles, queries, strategies, generators,
the shared loop (records, metrics, checkpoints, resume) and the CLI verbs.

A scripted reward counts keywords in the response, so every number is predictable; the
policy is the tiny random Llama of conftest (milliseconds per step)."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from alignkit.cli import main
from alignkit.data.queries import drop_long, iteration_indices, load_queries, read_queries
from alignkit.data.records import Multi, Point
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError, DataError
from alignkit.inference import generators as G
from alignkit.inference.generation import Completion, SamplingConfig, finished_rows
from alignkit.objectives import ObjectiveConfig, SeqLogps
from alignkit.objectives.losses import rrhf_loss
from alignkit.objectives.ple import ple_branch, ple_objective
from alignkit.online.config import OnlineConfig, PLEConfig, RAFTConfig, RRHFOnlineConfig
from alignkit.online.loop import OnlineTrainer, make_strategy, sample_seed
from alignkit.online.ple import PLEStrategy
from alignkit.online.principles import apply_principle, builtin_principles, load_principle
from alignkit.online.ranked import RAFTStrategy, RRHFStrategy, n_selected, raft_select
from alignkit.online.samples import Sampled
from alignkit.scoring.packing import collate
from alignkit.train.config import TrainConfig

KEYWORDS = ("a", "e", "the")


def keyword_reward(prompts, responses) -> list[float]:
    """Scripted reward: how often the keywords occur in the response (prompt ignored)."""
    return [float(sum(r.count(k) for k in KEYWORDS)) for r in responses]


def chat(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


@pytest.fixture
def queries_file(tmp_path) -> str:
    rows = [
        {"prompt": f"how to bake a cake {i}", "category": "benign" if i % 2 else "harmful"}
        for i in range(8)
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def small(cls: type[OnlineConfig], queries: str, output: Path, model: str, **kw) -> OnlineConfig:
    """A config that runs in seconds on the tiny model."""
    values = dict(
        queries=queries,
        output=str(output),
        model=model,
        iterations=2,
        queries_per_iteration=4,
        max_new_tokens=8,
        batch_size=2,
        lr=1e-3,
        precision="fp32",
    )
    values.update(kw)
    config = cls(**values)
    config.validate()
    return config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ principles


# The PLE paper's principle prompts, copied from the paper by hand (not from the package):
# appendix A.3 "Principle prompts for IMDb and TL;DR" (p. 16), verbatim, and sec. 4.1's HH
# rules (p. 3; four line starts cut off in the extracted text are restored, see
# src/alignkit/principles/README.md).
PAPER_IMDB = (
    "Write a positive and enthusiastic review with a natural and sincere tone. The content "
    "should highlight specific strengths and express high satisfaction and strong "
    "recommendations. Input text:"
)
PAPER_TLDR = (
    "You are an expert summarizer. Your task is to create a concise TL;DR summary for the "
    "provided text. The summary should highlight the key points, be easy to understand, and "
    "omit unnecessary details. Input Text:"
)
PAPER_HH = (
    "Your answers should follow these rules:\n"
    "1. Ethical: You should actively refrain users on illegal, immoral, or harmful topics.\n"
    "2. Informative: You should provide users with accurate, relevant, and up-to-date "
    "information in responses.\n"
    "3. Helpful: Your responses should be positive, interesting, helpful and engaging."
)


def test_builtin_principles_are_the_papers_text() -> None:
    found = builtin_principles()
    assert set(found) == {"hh", "imdb", "tldr", "general"}
    assert found["imdb"] == PAPER_IMDB  # character for character
    assert found["tldr"] == PAPER_TLDR
    assert found["hh"] == PAPER_HH
    assert load_principle("imdb") == PAPER_IMDB
    assert found["general"] != PAPER_HH  # alignkit's own wording, kept next to the paper's
    defaults = PLEConfig()
    assert (defaults.principle, defaults.principle_mode) == ("hh", "prefix")  # paper: [p, x]
    # [p, x] for the IMDb task: the principle, a blank line, then the review prefix
    assert apply_principle("I rented this movie", PAPER_IMDB, "prefix") == (
        PAPER_IMDB + "\n\nI rented this movie"
    )


def test_principle_from_file_and_errors(tmp_path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("  Be brief.\n")
    assert load_principle(str(path)) == "Be brief."
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(AlignkitError, match="empty"):
        load_principle(str(tmp_path / "empty.txt"))
    with pytest.raises(AlignkitError, match="neither a built-in"):
        load_principle("no-such-principle")


def test_principle_modes() -> None:
    assert apply_principle(chat("hi"), "P", "system") == (
        {"role": "system", "content": "P"},
        {"role": "user", "content": "hi"},
    )
    with_system = ({"role": "system", "content": "S"}, *chat("hi"))
    assert apply_principle(with_system, "P", "system")[0] == {"role": "system", "content": "P\n\nS"}
    turns = (*chat("one"), {"role": "assistant", "content": "ok"}, *chat("two"))
    prefixed = apply_principle(turns, "P", "prefix")  # [p, x]: before the whole dialogue
    assert prefixed[0]["content"] == "P\n\none" and prefixed[2]["content"] == "two"
    assert apply_principle(with_system, "P", "prefix") == (
        {"role": "system", "content": "S"},
        {"role": "user", "content": "P\n\nhi"},
    )
    assert apply_principle("Q:", "P", "prefix") == "P\n\nQ:"
    with pytest.raises(AlignkitError, match="prefix"):
        apply_principle("Q:", "P", "system")


# --------------------------------------------------------------------- queries


def test_read_queries_text_chat_and_no_chat(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [{"prompt": "plain", "category": "c"}, {"prompt": [{"role": "user", "content": "m"}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    as_chat = read_queries(str(path), chat=True)
    assert as_chat[0].prompt == chat("plain") and as_chat[0].category == "c"
    assert as_chat[1].prompt == chat("m") and as_chat[1].category == ""
    assert read_queries(str(path), chat=False)[0].prompt == "plain"


@pytest.mark.parametrize(
    "row, message",
    [({"text": "x"}, "needs a 'prompt'"), ({"prompt": " "}, "empty"), ({"prompt": 3}, "string")],
)
def test_bad_query_names_the_line(tmp_path, row, message) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as err:
        read_queries(str(path), chat=False)
    assert err.value.where == f"{path}:2"


def test_long_queries_are_dropped_and_counted(tiny_model, tmp_path) -> None:
    from alignkit.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    path = tmp_path / "q.jsonl"
    rows = [{"prompt": "cat"}, {"prompt": " ".join(["the dog"] * 40)}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = load_queries(str(path), tok, chat=False, max_prompt_tokens=20)
    assert (len(found.queries), found.total, found.dropped) == (1, 2, 1)
    assert "1 dropped" in found.describe(20)
    assert drop_long(read_queries(str(path), False), tok, 0).dropped == 0  # 0 = keep all
    path.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(AlignkitError, match="no query is left"):
        load_queries(str(path), tok, chat=False, max_prompt_tokens=20)


def test_iteration_schedule_is_seeded_passes() -> None:
    first_pass = iteration_indices(8, 4, 0, 0) + iteration_indices(8, 4, 0, 1)
    assert sorted(first_pass) == list(range(8))  # every query once per pass
    assert iteration_indices(8, 4, 0, 3) == iteration_indices(8, 4, 0, 3)  # pure function
    assert iteration_indices(8, 4, 0, 0) != iteration_indices(8, 4, 1, 0)
    crossing = iteration_indices(5, 3, 0, 1)  # queries 3,4 of pass 0 + query 0 of pass 1
    assert len(crossing) == 3


# ----------------------------------------------------------------- PLE strategy


def ple(tau0: float = 0.2, alpha: float = 0.9, form: str = "paper", reduction: str = "sum"):
    return PLEStrategy("P", "system", tau0, alpha, form, reduction)  # type: ignore[arg-type]


def samples_with(scores: list[tuple[float, float]]) -> list[Sampled]:
    return [Sampled(chat(f"q{i}"), [f"y{i}", f"yp{i}"], list(s)) for i, s in enumerate(scores)]


def test_branches_follow_tau_and_tau_decays() -> None:
    strategy = ple(tau0=0.2, alpha=0.9)
    samples = samples_with([(0.0, 0.5), (0.0, 0.19), (1.0, 1.1), (0.0, -0.5)])
    assert [r["branch"] for r in strategy.rows(samples)] == ["rank", "sft", "sft", "sft"]
    metrics = strategy.sample_metrics(samples)
    assert (metrics["ple/n_rank"], metrics["ple/n_sft"], metrics["ple/tau"]) == (1, 3, 0.2)
    assert metrics["ple/gap"] == pytest.approx((0.5 + 0.19 + 1.1 - 0.5) / 4 - 0.25)
    strategy.end_iteration()
    assert strategy.tau == pytest.approx(0.18)
    assert [r["branch"] for r in strategy.rows(samples)] == ["rank", "rank", "sft", "sft"]
    strategy.end_iteration()
    assert strategy.tau == pytest.approx(0.162)
    cut = Sampled(chat("q"), ["y", "yp"], [0.0, 1.0], [False, True])
    (record,), _ = strategy.build([cut])
    assert isinstance(record, Multi) and record.unfinished == (True, False)
    assert strategy.rows([cut])[0]["finished"] == [False, True]
    assert Sampled.from_dict(cut.to_dict()) == cut
    assert Sampled.from_dict({"prompt": "q", "responses": ["a"], "scores": [1]}).finished == [True]
    restored = ple(tau0=5.0)
    restored.load_state_dict(strategy.state_dict())
    assert restored.tau == pytest.approx(0.162)


def test_weights_match_the_paper_formula() -> None:
    strategy = ple(tau0=10.0)  # every example in the weighted-SFT branch
    pairs = [(0.3, -1.2), (2.0, 2.5), (-4.0, 3.0)]
    for row, (s, s_p) in zip(strategy.rows(samples_with(pairs)), pairs, strict=True):
        e, e_p = math.exp(s), math.exp(s_p)
        assert row["w"] == pytest.approx(2 * e / (e + e_p) - 1, rel=1e-5)
        assert row["w_p"] == pytest.approx(2 * e_p / (e + e_p) - 1, rel=1e-5)
        assert (row["s"], row["s_p"], row["y"], row["y_p"]) == (s, s_p, row["y"], row["y_p"])
    rank_row = ple(tau0=0.0).rows(samples_with([(0.0, 1.0)]))[0]
    assert rank_row["branch"] == "rank" and rank_row["w"] is None


def seq(sums: list[list[float]], counts: list[list[int]]) -> SeqLogps:
    return SeqLogps(torch.tensor(sums, requires_grad=True), torch.tensor(counts))


@pytest.mark.parametrize("form", ["paper", "hinge"])
def test_ple_objective_on_hand_numbers(form) -> None:
    # example 0: gap 1 > tau -> rank; example 1: gap 0.1 -> weighted SFT
    policy = seq([[-4.0, -9.0], [-6.0, -2.0]], [[2, 3], [3, 1]])
    scores = torch.tensor([[0.0, 1.0], [0.5, 0.6]])
    loss, metrics = ple_objective(policy, scores, 0.2, form, "sum")
    diff = (-4.0 / 2) - (-9.0 / 3)  # avg logp(y) - avg logp(y_p) = 1.0
    rank = diff if form == "paper" else max(diff, 0.0)
    w = math.tanh((0.5 - 0.6) / 2)
    sft = -(w * -6.0 + (-w) * -2.0)
    assert float(metrics["loss/rank"]) == pytest.approx(rank / 2)
    assert float(metrics["loss/sft"]) == pytest.approx(sft / 2, rel=1e-5)
    assert float(loss.detach()) == pytest.approx((rank + sft) / 2, rel=1e-5)
    mean_loss, _ = ple_objective(policy, scores, 0.2, form, "mean")
    sft_mean = -(w * -6.0 / 3 + (-w) * -2.0 / 1)
    assert float(mean_loss.detach()) == pytest.approx((rank + sft_mean) / 2, rel=1e-5)
    negative = seq([[-9.0, -1.0]], [[3, 1]])  # y_p already far more likely: hinge is 0
    hinge, _ = ple_objective(negative, torch.tensor([[0.0, 1.0]]), 0.2, "hinge", "sum")
    assert float(hinge.detach()) == 0.0


def test_ple_ablations_change_the_loss_as_the_paper_states() -> None:
    """Tables 4/5: 'w/o L_rank' trains every example with the weighted SFT (no rank part);
    'w/o L_weighted-sft' keeps only the rank part. Same numbers as the test above."""
    policy = seq([[-4.0, -9.0], [-6.0, -2.0]], [[2, 3], [3, 1]])
    scores = torch.tensor([[0.0, 1.0], [0.5, 0.6]])  # gaps 1.0 (> tau) and 0.1 (<= tau)
    rank0 = (-4.0 / 2) - (-9.0 / 3)  # example 0's rank loss: avg logp(y) - avg logp(y_p) = 1
    w0, w1 = math.tanh((0.0 - 1.0) / 2), math.tanh((0.5 - 0.6) / 2)  # w = tanh((s - s_p)/2)
    sft0 = -(w0 * -4.0 + (-w0) * -9.0)  # = -5 * w0 = 2.3106: y_p (better) pushed up
    sft1 = -(w1 * -6.0 + (-w1) * -2.0)  # = 4 * w1 = -0.1997

    full, _ = ple_objective(policy, scores, 0.2, "paper", "sum")
    assert float(full.detach()) == pytest.approx((rank0 + sft1) / 2, rel=1e-5)  # 0.4002

    no_rank, m = ple_objective(policy, scores, 0.2, "paper", "sum", rank_loss=False)
    assert float(m["loss/rank"]) == 0.0
    assert float(no_rank.detach()) == pytest.approx((sft0 + sft1) / 2, rel=1e-5)  # 1.0555
    assert float(no_rank.detach()) == pytest.approx(1.05547, abs=1e-4)

    no_sft, m = ple_objective(policy, scores, 0.2, "paper", "sum", weighted_sft=False)
    assert float(m["loss/sft"]) == 0.0
    assert float(no_sft.detach()) == pytest.approx(rank0 / 2)  # 0.5: example 1 adds nothing
    no_sft.backward()
    assert policy.sum.grad[1].abs().sum() == 0  # and gets no gradient
    # d/d logp(y_p) of -(avg y_p)/B with |y_p| = 3, B = 2 -> -1/6; of +(avg y)/B -> +1/4
    assert policy.sum.grad[0].tolist() == pytest.approx([1 / 4, -1 / 6])


class _RecordingGenerator:
    def __init__(self) -> None:
        self.calls: list = []

    def generate(self, prompts, sampling, k):
        self.calls.append((list(prompts), k))
        return [[Completion(f"{p}#{j}", True) for j in range(k)] for p in prompts]


def test_ple_ablation_flags_reach_sampling_and_branches() -> None:
    sampling = SamplingConfig(max_new_tokens=4)
    full = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum")
    gen = _RecordingGenerator()
    assert full.generate(["x"], gen, sampling) == [[Completion("x#0"), Completion("P\n\nx#0")]]
    assert gen.calls == [(["x", "P\n\nx"], 1)]
    no_rank = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum", rank_loss=False)
    gen = _RecordingGenerator()
    out = no_rank.generate(["x"], gen, sampling)  # no principle: two samples from x
    assert gen.calls == [(["x"], 2)] and out == [[Completion("x#0"), Completion("x#1")]]
    samples = samples_with([(0.0, 1.0), (0.5, 0.6)])
    assert [r["branch"] for r in full.rows(samples)] == ["rank", "sft"]
    assert [r["branch"] for r in no_rank.rows(samples)] == ["sft", "sft"]
    no_sft = PLEStrategy("P", "prefix", 0.2, 0.9, "paper", "sum", weighted_sft=False)
    rows = no_sft.rows(samples)
    assert [r["branch"] for r in rows] == ["rank", "none"] and rows[1]["w"] is None
    metrics = no_sft.sample_metrics(samples)
    assert (metrics["ple/n_rank"], metrics["ple/n_sft"]) == (1, 0)
    made = make_strategy(PLEConfig(rank_loss=False), ObjectiveConfig())
    assert isinstance(made, PLEStrategy) and not made.rank_loss and made.weighted_sft
    with pytest.raises(AlignkitError, match="no loss"):
        PLEConfig(queries="q", output="o", rank_loss=False, weighted_sft=False).validate()


def test_ple_branch_is_strict() -> None:
    s, s_p = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.25])
    assert ple_branch(s, s_p, 0.25).tolist() == [True, False]


# ----------------------------------------------------------- RAFT and RRHF


def test_raft_selection() -> None:
    scores = [[0.1, 0.9, 0.9], [2.0, 1.0, 0.0]]
    assert raft_select(scores, "per-prompt", 1.0) == [(0, 1), (1, 0)]  # ties: first
    assert raft_select(scores, "global", 0.5) == [(0, 1), (1, 0), (1, 1)]  # 0.9 tie: first
    assert n_selected(6, 0.5) == 3 and n_selected(6, 0.01) == 1 and n_selected(8, 0.25) == 2
    objective = ObjectiveConfig()
    strategy = RAFTStrategy(3, "global", 0.5, objective)
    samples = [Sampled(chat(f"q{i}"), ["a", "b", "c"], s) for i, s in enumerate(scores)]
    records, metrics = strategy.build(samples)
    assert all(isinstance(r, Point) and r.high_quality and r.label == 1.0 for r in records)
    assert [r.completion for r in records] == ["b", "a", "b"]
    assert len(records) == strategy.examples(2)
    assert metrics["raft/selected_reward"] == pytest.approx((0.9 + 2.0 + 1.0) / 3)
    cut = [dataclasses.replace(x, finished=[True, False, True]) for x in samples]
    assert [r.unfinished for r in strategy.build(cut)[0]] == [True, False, True]  # type: ignore[union-attr]
    assert strategy.rows(samples)[1]["selected"] == [True, True, False]
    assert RAFTStrategy(3, "per-prompt", 0.5, objective).examples(2) == 2


def test_rrhf_uses_the_core_objective(tiny_model) -> None:
    from alignkit.models import load_tokenizer

    tok = load_tokenizer(tiny_model)
    strategy = RRHFStrategy(3, ObjectiveConfig(rrhf_sft_weight=0.5))
    samples = [Sampled(chat("q"), ["a", "b b", "c"], [0.0, 2.0, 1.0])]
    records, _ = strategy.build(samples)
    assert isinstance(records[0], Multi) and records[0].scores == (0.0, 2.0, 1.0)
    assert records[0].unfinished == (False, False, False)
    cut = Sampled(chat("q"), ["a", "b b", "c"], [0.0, 2.0, 1.0], [True, False, True])
    assert strategy.build([cut])[0][0].unfinished == (False, True, False)  # type: ignore[union-attr]
    batch = collate(encode_records(records, tok)[0], tok.pad_token_id)
    policy = seq([[-3.0, -1.0, -4.0]], batch.counts.tolist())
    loss, metrics = strategy.loss(lambda b, autocast: policy, batch, None, None)
    avg = policy.reduced("mean")
    expected, _, _ = rrhf_loss(avg, policy.sum, batch.labels, batch.mask, 0.5)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()))
    assert "loss/rank" in metrics and strategy.rows(samples)[0]["best"] == 1


# ------------------------------------------------------------------ generators


def test_hf_generator_returns_n_samples_per_prompt(tiny_model) -> None:
    from alignkit.models import load_causal_lm, load_tokenizer

    gen = G.HFGenerator(load_causal_lm(tiny_model), load_tokenizer(tiny_model), None, False)
    sampling = SamplingConfig(max_new_tokens=4, do_sample=True, seed=0, batch_size=3)
    out = gen.generate([chat("a"), chat("b b")], sampling, 3)
    assert [len(group) for group in out] == [3, 3]
    assert gen.generate([chat("a")], sampling, 1) == gen.generate([chat("a")], sampling, 1)


def test_finished_rows_by_hand() -> None:
    new = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 8], [2, 0, 0, 0]])  # eos 2, pad 0
    assert finished_rows(new, [2]) == [True, False, True]
    assert finished_rows(new, [8, 2]) == [True, True, True]
    assert finished_rows(new, []) == [False, False, False]


def test_hf_generator_marks_cut_off_samples(tiny_model) -> None:
    from alignkit.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(tiny_model), load_tokenizer(tiny_model)
    sampling = SamplingConfig(max_new_tokens=3)
    first = model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=1, do_sample=False)
    tok.eos_token_id = int(first[0, -1])  # the greedy first token now ends the answer
    (stopped,) = G.HFGenerator(model, tok, None, False).generate(["hi"], sampling, 1)[0]
    assert stopped.finished
    tok.eos_token_id = len(tok) - 1 if int(first[0, -1]) != len(tok) - 1 else 0
    new = model.generate(**tok(["hi"], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    (cut,) = G.HFGenerator(model, tok, None, False).generate(["hi"], sampling, 1)[0]
    assert cut.finished == (tok.eos_token_id in new[0, -3:].tolist())


def test_vllm_sampling_params_mapping() -> None:
    sampled = SamplingConfig(max_new_tokens=7, do_sample=True, temperature=0.7, top_p=0.9, seed=3)
    assert G.sampling_params_kwargs(sampled, 4) == {
        "n": 4, "max_tokens": 7, "seed": 3, "skip_special_tokens": True,
        "temperature": 0.7, "top_p": 0.9, "top_k": -1,
    }  # fmt: skip
    top_k = dataclasses.replace(sampled, top_k=20)
    assert G.sampling_params_kwargs(top_k, 1)["top_k"] == 20
    greedy = G.sampling_params_kwargs(G.greedy(sampled), 1)
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, -1)
    engine = G.engine_kwargs("/m", 0.4, 5, 300)
    assert engine["model"] == "/m" and engine["gpu_memory_utilization"] == 0.4
    assert engine["seed"] == 5 and engine["max_model_len"] == 300


def test_choose_backend() -> None:
    assert G.choose_backend("hf", 1, True, True) == "hf"
    assert G.choose_backend("auto", 1, True, True) == "vllm"
    assert G.choose_backend("auto", 1, False, True) == "hf"
    assert G.choose_backend("auto", 2, True, True) == "hf"
    assert G.choose_backend("vllm", 1, True, True) == "vllm"
    with pytest.raises(AlignkitError, match="vllm package, a CUDA GPU"):
        G.choose_backend("vllm", 1, False, False)


class _FakeLLM:
    def __init__(self) -> None:
        self.calls: list = []
        self.loaded: dict = {}
        self.eos: int | None = None
        model = types.SimpleNamespace(load_weights=lambda w: self.loaded.update(dict(w)))
        runner = types.SimpleNamespace(model=model)
        executor = types.SimpleNamespace(driver_worker=types.SimpleNamespace(model_runner=runner))
        self.llm_engine = types.SimpleNamespace(model_executor=executor)

    def generate(self, inputs, params, use_tqdm):
        self.calls.append((inputs, params))
        outs = [
            types.SimpleNamespace(  # vLLM's CompletionOutput: a finished one ends with EOS
                text=f" r{j} ",
                finish_reason="length" if j else "stop",
                token_ids=[13, 14] if j else [11, 12, self.eos],
            )
            for j in range(params.kwargs["n"])
        ]
        return [types.SimpleNamespace(outputs=outs) for _ in inputs]


def test_vllm_generator_with_a_fake_engine(tiny_model, monkeypatch) -> None:
    from alignkit.data.tokenize import tokenize_prompts
    from alignkit.models import load_tokenizer

    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: types.SimpleNamespace(kwargs=kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    tok = load_tokenizer(tiny_model)
    llm = _FakeLLM()
    llm.eos = tok.eos_token_id
    gen = G.VLLMGenerator(tok, {}, llm=llm)
    out = gen.generate([chat("a"), chat("b")], SamplingConfig(max_new_tokens=5, do_sample=True), 2)
    # "length" = cut off; the sampled ids without EOS
    row = [Completion("r0", True, (11, 12)), Completion("r1", False, (13, 14))]
    assert out == [row, row]
    inputs, sampling_params = llm.calls[0]
    assert inputs[0]["prompt_token_ids"] == tokenize_prompts([chat("a")], tok)[0]
    assert sampling_params.kwargs["n"] == 2 and sampling_params.kwargs["max_tokens"] == 5


def test_vllm_sync_pushes_merged_lora_weights(tiny_model) -> None:
    from alignkit.models import LoraSettings, load_causal_lm

    llm = _FakeLLM()
    gen = G.VLLMGenerator(None, {}, llm=llm)
    lora = load_causal_lm(tiny_model, lora=LoraSettings(target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero adapter, so merging changes q_proj
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    gen.sync(lora)
    base = load_causal_lm(tiny_model).state_dict()
    assert set(llm.loaded) == set(base)  # plain checkpoint names, no adapter tensors
    q = "model.layers.0.self_attn.q_proj"
    params = dict(lora.named_parameters())
    lora_a = params[f"base_model.model.{q}.lora_A.default.weight"]
    delta = 0.1 * lora_a.sum(0, keepdim=True) * (32 / 8)  # scale * B @ A with B = 0.1
    assert torch.allclose(llm.loaded[f"{q}.weight"], base[f"{q}.weight"] + delta, atol=1e-6)
    up = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(llm.loaded[up], base[up])
    # the trained model itself is left exactly as it was
    assert torch.equal(params[f"base_model.model.{q}.base_layer.weight"], base[f"{q}.weight"])
    gen.sync(load_causal_lm(tiny_model))
    assert torch.equal(llm.loaded[up], base[up])


@pytest.mark.skipif(
    not (G.vllm_available() and torch.cuda.is_available()), reason="needs vllm and a GPU"
)
def test_vllm_backend_generates(tiny_model) -> None:  # pragma: no cover - GPU CI only
    from alignkit.models import load_tokenizer

    engine = G.engine_kwargs(tiny_model, 0.2, 0, 256)
    gen = G.VLLMGenerator(load_tokenizer(tiny_model), engine)
    out = gen.generate([chat("a")], SamplingConfig(max_new_tokens=4, do_sample=True, seed=0), 2)
    assert len(out[0]) == 2


# ---------------------------------------------------------- config mapping


def test_train_options_reach_the_core_trainer() -> None:
    shared = {f.name for f in dataclasses.fields(TrainConfig)} & {
        f.name for f in dataclasses.fields(RRHFOnlineConfig)
    }
    assert {"lr", "lora_r", "batch_size", "rrhf_sft_weight", "precision", "resume"} <= shared
    assert "gradient_checkpointing" in shared
    values = {}
    for f in dataclasses.fields(RRHFOnlineConfig):
        if f.name in shared:
            default = getattr(RRHFOnlineConfig(), f.name)
            values[f.name] = _changed(default)
    config = RRHFOnlineConfig(sft_data=["d.jsonl"], **values)
    train = config.train_config()
    assert train.method == "sft" and train.data == ["d.jsonl"]
    for name, value in values.items():
        assert getattr(train, name) == value, name


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, "x"]
    return value + "-x" if value not in ("sum", "auto", "constant", "ple") else {
        "sum": "mean", "auto": "fp32", "constant": "linear", "ple": "ulma"
    }[value]  # fmt: skip


def test_sampling_and_lora_settings() -> None:
    config = PLEConfig(
        max_new_tokens=9, temperature=0.5, top_p=0.8, top_k=7, generation_batch_size=3
    )
    s = config.sampling(seed=11)
    assert (s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.batch_size, s.seed) == (
        9, 0.5, 0.8, 7, 3, 11,
    )  # fmt: skip
    assert s.do_sample and config.lora_settings() is None
    lora = PLEConfig(lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0).lora_settings()
    assert lora is not None and lora.peft_targets() == "all-linear"
    assert (lora.r, lora.alpha, lora.dropout) == (4, 8, 0.0)
    assert PLEConfig(lora=True, lora_targets=["q_proj"]).lora_settings().target_modules == [
        "q_proj"
    ]


def parsed(verb: str, cls: type, *flags: str, config_file: str | None = None):
    """The config `alignkit VERB FLAGS` builds (flags < YAML < defaults as the CLI does)."""
    from alignkit.cli import build_parser
    from alignkit.options import build_config

    args = build_parser().parse_args([verb, *flags])
    return build_config(cls, args, config_file)


def test_lora_presets_fill_only_what_is_not_given(tiny_model, tmp_path) -> None:
    base = ("--data", "d.jsonl", "--output", str(tmp_path / "o"), "--model", tiny_model)
    default = parsed("train", TrainConfig, *base).lora_settings()
    assert default is None  # --lora is off by default
    default = parsed("train", TrainConfig, *base, "--lora").lora_settings()
    assert (default.r, default.alpha, default.dropout) == (16, 32, 0.05)
    assert default.peft_targets() == "all-linear"  # every linear layer
    ulma = parsed("train", TrainConfig, *base, "--lora", "--lora-preset", "ulma").lora_settings()
    assert (ulma.r, ulma.alpha, ulma.dropout, ulma.target_modules) == (
        8, 32, 0.1, ["q_proj", "v_proj"],
    )  # fmt: skip
    # an explicit flag wins over the preset, even when it equals the default preset's value
    mixed = parsed("train", TrainConfig, *base, "--lora-preset", "ulma", "--lora-r", "16")
    assert (mixed.lora_r, mixed.lora_alpha, mixed.lora_targets) == (16, 32, ["q_proj", "v_proj"])
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lora_preset: ulma\nlora_alpha: 8\n")
    from_file = parsed(
        "train", TrainConfig, *base, "--lora-dropout", "0", config_file=str(yaml_file)
    )
    assert (from_file.lora_r, from_file.lora_alpha, from_file.lora_dropout) == (8, 8, 0.0)
    # the online verbs default to the PLE paper's recipe; config.json shows the values used
    ple_config = PLEConfig()
    assert ple_config.lora_preset == "ple"
    assert (ple_config.lora_r, ple_config.lora_alpha, ple_config.lora_targets) == (
        8, 16, ["all-linear"],
    )  # fmt: skip
    assert dataclasses.asdict(ple_config.train_config())["lora_alpha"] == 16
    with pytest.raises(AlignkitError, match="--lora-preset"):
        TrainConfig(**{"lora_preset": "qlora"})


@pytest.mark.parametrize(
    "cls, bad, message",
    [
        (PLEConfig, {"alpha": 1.5}, "--alpha"),
        (PLEConfig, {"iterations": 0}, "--iterations"),
        (PLEConfig, {"top_p": 0.0}, "--top-p"),
        (PLEConfig, {"save_every": -1}, "--save-every"),
        (RAFTConfig, {"top_fraction": 0.0}, "--top-fraction"),
        (RAFTConfig, {"num_samples": 0}, "--num-samples"),
        (RRHFOnlineConfig, {"num_samples": 1}, "--num-samples"),
        (PLEConfig, {"queries": ""}, "--queries"),
    ],
)
def test_invalid_options(cls, bad, message) -> None:
    values = {"queries": "q.jsonl", "output": "out", **bad}
    with pytest.raises(AlignkitError, match=message):
        cls(**values).validate()


def test_method_options_reach_the_strategies(tmp_path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("Be kind.")
    config = PLEConfig(
        principle=str(path), principle_mode="prefix", tau0=0.5, alpha=0.5,
        rank_form="hinge", reduction="mean",
    )  # fmt: skip
    s = make_strategy(config, ObjectiveConfig())
    assert isinstance(s, PLEStrategy)
    assert (s.principle, s.mode, s.tau, s.alpha, s.form, s.reduction) == (
        "Be kind.", "prefix", 0.5, 0.5, "hinge", "mean",
    )  # fmt: skip
    assert s.guided("Q") == "Be kind.\n\nQ"
    r = make_strategy(
        RAFTConfig(num_samples=3, selection="global", top_fraction=0.5), ObjectiveConfig()
    )
    assert isinstance(r, RAFTStrategy) and (r.k, r.selection, r.fraction) == (3, "global", 0.5)
    rr = make_strategy(RRHFOnlineConfig(num_samples=5), ObjectiveConfig(rrhf_sft_weight=0.3))
    assert isinstance(rr, RRHFStrategy) and rr.k == 5 and rr.objective.rrhf_sft_weight == 0.3
    trainer_objective = OnlineTrainer(
        RRHFOnlineConfig(queries="q", output=str(tmp_path), rrhf_sft_weight=0.3),
        reward=keyword_reward,
    ).strategy.objective
    assert trainer_objective.rrhf_sft_weight == 0.3


# ------------------------------------------------------------------- the loop


def logps_of(session, tokenizer, records) -> torch.Tensor:
    batch = collate(encode_records(records, tokenizer)[0], tokenizer.pad_token_id)
    with torch.no_grad():
        return session.scorer(batch).reduced("mean")


@pytest.mark.parametrize("scores, raised", [((0.0, 1.0), 1), ((1.0, 0.0), 0)])
def test_a_ple_step_moves_log_probs_the_right_way(
    tiny_model, queries_file, tmp_path, scores, raised
) -> None:
    """Rank branch (s_p >> s): y_p's mean log-prob rises, y's falls. Weighted-SFT branch with
    s > s_p: the better-scored y rises, y_p falls."""
    config = small(
        PLEConfig, queries_file, tmp_path / "run", tiny_model, tau0=0.5 if raised else 5.0
    )
    trainer = OnlineTrainer(config, reward=keyword_reward)
    session = trainer.setup()
    modes = []
    loss = trainer.strategy.loss
    trainer.strategy.loss = lambda scorer, *a, **kw: (  # type: ignore[method-assign]
        modes.append(scorer.training) or loss(scorer, *a, **kw)
    )
    samples = [
        Sampled(chat(f"cake {i}"), ["the dog", "sorry I can not"], list(scores)) for i in range(4)
    ]
    records, _ = trainer.strategy.build(samples)
    before = logps_of(session, session.tokenizer, records)
    for _ in range(3):
        metrics = trainer.train_on(session, samples)
    after = logps_of(session, session.tokenizer, records)
    assert modes and all(modes)  # trained in train mode (dropout on)
    part = "loss/rank" if raised else "loss/sft"
    assert metrics["train/n_rank"] == (4 if raised else 0) and part in metrics
    lowered = 1 - raised
    assert (after[:, raised] > before[:, raised]).all()
    assert (after[:, lowered] < before[:, lowered]).all()


def test_ple_loop_records_metrics_and_checkpoints(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ple"
    config = small(
        PLEConfig, queries_file, out, tiny_model, eval_queries=queries_file, eval_every=1
    )
    result = OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "generations" / "iter-0001.jsonl")
    assert len(rows) == 4
    assert set(rows[0]) >= {"prompt", "y", "y_p", "s", "s_p", "branch", "w", "w_p", "tau"}
    for row in rows:  # the branch follows tau; the scores are the scripted reward's
        assert row["s"] == keyword_reward([], [row["y"]])[0]
        rank = torch.tensor(row["s_p"]) - torch.tensor(row["s"]) > row["tau"]
        assert row["branch"] == ("rank" if rank else "sft")
    metrics = read_jsonl(out / "metrics.jsonl")
    iters = [m for m in metrics if "ple/tau" in m]
    assert [m["step"] for m in iters] == [1, 2]
    assert [m["ple/tau"] for m in iters] == [0.2, 0.18]
    for i, m in enumerate(iters, start=1):
        # the logged curves are the means over this iteration's generations file (4 rows,
        # not the replay buffer), gap = mean(s_p - s): fails on s and s_p swapped, on the
        # sign of the gap, or on means over the replay buffer (8 examples at iteration 2)
        gens = read_jsonl(out / "generations" / f"iter-{i:04d}.jsonl")
        s = [row["s"] for row in gens]
        s_p = [row["s_p"] for row in gens]
        assert len(gens) == 4 and s != s_p  # the check can see a swap
        assert m["ple/s"] == pytest.approx(sum(s) / 4, abs=1e-5)
        assert m["ple/s_p"] == pytest.approx(sum(s_p) / 4, abs=1e-5)
        gaps = [b - a for a, b in zip(s, s_p, strict=True)]
        assert m["ple/gap"] == pytest.approx(sum(gaps) / 4, abs=1e-5)
        assert m["ple/n_rank"] == sum(row["branch"] == "rank" for row in gens)
        assert m["ple/n_rank"] + m["ple/n_sft"] == 4
        assert {"loss", "loss/rank", "loss/sft", "reward/mean", "lr"} <= set(m)
    assert [m["train/examples"] for m in iters] == [4, 8]  # --replay all (the default for ple)
    evals = [m["step"] for m in metrics if "eval/reward" in m]
    assert evals == [0, 1, 2]  # before, every iteration (--eval-every 1), after
    assert {"eval/reward/benign", "eval/reward/harmful"} <= set(metrics[0])
    assert len(read_jsonl(out / "eval" / "iter-0000.jsonl")) == 8
    assert (out / "checkpoints" / "step-1").is_dir() and (out / "model" / "config.json").exists()
    assert result.steps == 2 + 4 and json.loads((out / "summary.json").read_text())["steps"] == 6
    assert json.loads((out / "config.json").read_text())["tau0"] == 0.2


def test_replay_none_saves_nothing_extra(tiny_model, queries_file, tmp_path) -> None:
    out = tmp_path / "ple"
    config = small(
        PLEConfig, queries_file, out, tiny_model, replay="none", save_every=0, save_model=False
    )
    OnlineTrainer(config, reward=keyword_reward).run()
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["train/examples"] for m in metrics] == [4, 4]
    assert not (out / "checkpoints").exists() and not (out / "model").exists()


class _Killed(Exception):
    pass


class _Killer:
    """The scripted reward, but the run 'dies' at the `die_at`-th scoring call."""

    def __init__(self, die_at: int) -> None:
        self.calls = 0
        self.die_at = die_at

    def __call__(self, prompts, responses):
        self.calls += 1
        if self.calls == self.die_at:
            raise _Killed("killed")
        return keyword_reward(prompts, responses)


def test_a_killed_run_resumes_at_its_iteration(tiny_model, queries_file, tmp_path) -> None:
    whole = small(PLEConfig, queries_file, tmp_path / "whole", tiny_model)
    OnlineTrainer(whole, reward=keyword_reward).run()
    out = tmp_path / "killed"
    config = small(PLEConfig, queries_file, out, tiny_model)
    with pytest.raises(_Killed):
        OnlineTrainer(config, reward=_Killer(die_at=2)).run()  # dies in iteration 2
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == [1]
    counter = _Killer(die_at=0)
    OnlineTrainer(dataclasses.replace(config, resume=True), reward=counter).run()
    assert counter.calls == 1  # only iteration 2 was run again
    rows = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in rows] == [1, 2]
    assert rows[1]["ple/tau"] == pytest.approx(0.18)  # tau came back with the checkpoint
    assert rows[1]["train/examples"] == 8  # and so did the replay buffer
    reference = read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    for key in ("ple/s", "ple/s_p", "loss", "ple/n_rank", "optimizer_steps"):
        assert rows[1][key] == pytest.approx(reference[1][key], rel=1e-4, abs=1e-5), key
    same = read_jsonl(tmp_path / "whole" / "generations" / "iter-0002.jsonl")
    assert read_jsonl(out / "generations" / "iter-0002.jsonl") == same


def test_raft_loop_with_lora_and_initial_sft(
    tiny_model, queries_file, tmp_path, pairs_file
) -> None:
    out = tmp_path / "raft"
    config = small(
        RAFTConfig, queries_file, out, tiny_model, num_samples=3, selection="global",
        top_fraction=0.5, lora=True, sft_data=[pairs_file], sft_epochs=0.25,
    )  # fmt: skip
    trainer = OnlineTrainer(config, reward=keyword_reward)
    trainer.run()
    assert json.loads((out / "sft" / "config.json").read_text())["epochs"] == 0.25
    assert trainer.policy_source() == (tiny_model, str(out / "sft" / "model"))
    assert (out / "model" / "adapter_config.json").exists()  # LoRA: the adapter is saved
    rows = read_jsonl(out / "generations" / "iter-0001.jsonl")
    assert len(rows) == 4 and all(len(r["responses"]) == 3 for r in rows)
    assert sum(sum(r["selected"]) for r in rows) == 6  # half of 12 samples
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["train/examples"] for m in metrics] == [6, 6]
    assert all("raft/selected_reward" in m and "loss" in m for m in metrics)


def test_online_gradient_checkpointing_trains_the_same_policy(
    tiny_model, queries_file, tmp_path
) -> None:
    from safetensors.torch import load_file

    weights = []
    for flag in (False, True):
        out = tmp_path / f"raft-{flag}"
        config = small(
            RAFTConfig, queries_file, out, tiny_model, num_samples=2, iterations=1,
            gradient_checkpointing=flag,
        )  # fmt: skip
        trainer = OnlineTrainer(config, reward=keyword_reward)
        assert trainer.config.gradient_checkpointing is flag
        trainer.run()
        weights.append(load_file(out / "model" / "model.safetensors"))
    a, b = weights
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_rrhf_online_cli_with_a_yaml_config(tiny_model, queries_file, tmp_path, capsys) -> None:
    out = tmp_path / "rrhf"
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("iterations: 1\nqueries-per-iteration: 2\nnum_samples: 2\n")
    code = main(
        [
            "rrhf-online", "--config", str(yaml_file), "--queries", queries_file,
            "--model", tiny_model, "--reward-model", f"{__name__}:keyword_reward",
            "--output", str(out), "--max-new-tokens", "6", "--precision", "fp32",
            "--no-save-model",
        ]
    )  # fmt: skip
    assert code == 0 and "1 iterations" in capsys.readouterr().out
    row = read_jsonl(out / "metrics.jsonl")[0]
    assert {"loss/rank", "loss/sft", "rrhf/best_reward", "reward/mean"} <= set(row)
    assert len(read_jsonl(out / "generations" / "iter-0001.jsonl")[0]["responses"]) == 2
    bad = main(["ple", "--queries", queries_file, "--output", str(out), "--alpha", "2"])
    assert bad == 2 and "--alpha" in capsys.readouterr().err


def test_schedule_spans_all_iterations(tiny_model, queries_file, tmp_path) -> None:
    config = small(
        PLEConfig, queries_file, tmp_path / "o", tiny_model, iterations=3, batch_size=2,
        grad_accum=2, lr_scheduler="linear", warmup_ratio=0.5,
    )  # fmt: skip
    trainer = OnlineTrainer(config, reward=keyword_reward)
    # replay all: 4, 8, 12 examples -> 2, 4, 6 micro-batches -> 1, 2, 3 steps
    assert trainer.planned_steps() == 6
    # one formula with `alignkit train`: 6 examples = 3 micro-batches -> 3 // 2 = 1 step
    assert trainer.steps_per_epoch(6) == 1
    assert (
        OnlineTrainer(
            dataclasses.replace(config, replay="none"), reward=keyword_reward
        ).planned_steps()
        == 3
    )
    scorer = trainer.build_scorer(None)
    optimizer, scheduler = trainer.build_optimizer(scorer, trainer.planned_steps())
    assert scheduler.get_last_lr()[0] == 0.0  # warm-up starts at 0
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-3)  # peak after 3 = 0.5 * 6 steps


def test_setup_passes_reward_and_generator_options(tiny_model, queries_file, tmp_path, monkeypatch):
    import alignkit.online.loop as loop
    from alignkit.rewards.loading import CallableReward

    seen: dict = {}  # what reaches HFReward

    def fake_load(spec, **kwargs):
        seen.update(kwargs)
        return CallableReward(keyword_reward)

    monkeypatch.setattr(loop, "load_reward_model", fake_load)
    monkeypatch.setattr(loop, "choose_backend", lambda *a: "vllm")
    monkeypatch.setattr(loop, "VLLMGenerator", lambda tok, engine: ("vllm", engine))
    rows = read_jsonl(Path(queries_file)) + [{"prompt": " ".join(["the dog"] * 60)}]
    queries = tmp_path / "with_long.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = small(
        PLEConfig, str(queries), tmp_path / "o", tiny_model, reward_batch_size=3,
        vllm_gpu_memory_utilization=0.6, reward_model="some/model", max_prompt_tokens=40,
        reward_label=1, reward_output="sigmoid",
    )  # fmt: skip
    session = OnlineTrainer(config).setup()
    assert seen["batch_size"] == 3 and seen["precision"] == "fp32"
    assert (seen["label"], seen["output"]) == (1, "sigmoid")
    assert session.generator[1]["gpu_memory_utilization"] == 0.6  # type: ignore[index]
    assert (len(session.queries.queries), session.queries.dropped) == (8, 1)


def test_missing_reward_and_cpu_vllm_are_usage_errors(tiny_model, queries_file, tmp_path) -> None:
    config = small(PLEConfig, queries_file, tmp_path / "o", tiny_model)
    with pytest.raises(AlignkitError, match="--reward-model"):
        OnlineTrainer(config)
    if not torch.cuda.is_available():
        forced = dataclasses.replace(config, generator="vllm")
        with pytest.raises(AlignkitError, match="--generator vllm needs"):
            OnlineTrainer(forced, reward=keyword_reward).setup()


def test_sample_seed_differs_per_iteration_and_rank() -> None:
    seeds = {sample_seed(1, it, rank) for it in range(3) for rank in range(2)}
    assert len(seeds) == 6


# ----------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "verb, cls", [("ple", PLEConfig), ("raft", RAFTConfig), ("rrhf-online", RRHFOnlineConfig)]
)
def test_help_explains_every_option(verb, cls, capsys) -> None:
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in text, f.name
        assert f.metadata["help"].split()[0] in text
    assert "generations/iter-NNNN.jsonl" in text


@pytest.mark.slow
def test_ple_on_the_embedded_model(tmp_path) -> None:
    """Two PLE iterations on SmolLM2-135M-Instruct with the scripted reward (a smoke run:
    real text, the chat template, the paper's HH principle as a [p, x] prefix)."""
    from alignkit.commands.demo import demo_file

    out = tmp_path / "ple"
    config = small(
        PLEConfig, demo_file("heldout_prompts.jsonl"), out, "default", queries_per_iteration=2,
        max_new_tokens=12, lr=1e-5, precision="auto", save_model=False, save_every=0,
        replay="none",
    )  # fmt: skip
    OnlineTrainer(config, reward=keyword_reward).run()
    rows = read_jsonl(out / "generations" / "iter-0002.jsonl")
    assert len(rows) == 2 and all(r["y"] and r["y_p"] for r in rows)
    assert [m["ple/tau"] for m in read_jsonl(out / "metrics.jsonl")] == [0.2, 0.18]


def test_skip_invalid_reaches_the_initial_sft() -> None:
    """--skip-invalid of an online verb applies to its --sft-data (the core trainer's load)."""
    config = PLEConfig(queries="q.jsonl", output="out", sft_data=["d.jsonl"], skip_invalid=True)
    assert config.train_config().skip_invalid and not PLEConfig().train_config().skip_invalid
