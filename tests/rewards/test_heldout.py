"""alignkit.rewards.heldout: answers to held-out prompts and their rewards, by hand, with a
scripted generator and reward model; one process and two fake processes agree."""

from __future__ import annotations

from conftest import FakeProcesses

import alignkit.distributed
from alignkit.data.queries import Query
from alignkit.distributed import Processes
from alignkit.inference.generation import Completion, SamplingConfig
from alignkit.rewards.heldout import (
    generate_answers,
    heldout_metrics,
    heldout_rows,
    score_answers,
)


class Echo:
    """Answers "re: <prompt>"; records the prompts and the sampling of every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, SamplingConfig]] = []

    def generate(self, prompts, sampling, n=1):
        self.calls.append((list(prompts), sampling))
        return [
            [Completion(f"re: {p if isinstance(p, str) else p[-1]['content']}")] for p in prompts
        ]

    def sync(self, model) -> None:
        pass


class Length:
    """Reward = the number of characters of the response; records every batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def score(self, prompts, responses):
        self.batches.append(list(responses))
        return [float(len(r)) for r in responses]


QUERIES = [
    Query("ab", "math"),
    Query(({"role": "user", "content": "cdef"},), "chat"),
    Query("g", "math"),
    Query("hijk", ""),
]


def test_heldout_rows_and_metrics_by_hand():
    generator, reward = Echo(), Length()
    sampling = SamplingConfig(max_new_tokens=4, do_sample=True, seed=3)
    rows = heldout_rows(QUERIES, generator, reward, sampling)
    # "re: ab" 6 chars, "re: cdef" 8, "re: g" 5, "re: hijk" 8
    assert [r["reward"] for r in rows] == [6.0, 8.0, 5.0, 8.0]
    assert rows[1] == {
        "prompt": [{"role": "user", "content": "cdef"}],
        "category": "chat",
        "response": "re: cdef",
        "reward": 8.0,
    }
    # one greedy call (seed kept as given) and one reward call over all queries
    assert len(generator.calls) == 1 and generator.calls[0][1].do_sample is False
    assert generator.calls[0][1].seed == 3 and len(reward.batches) == 1
    assert heldout_metrics(rows) == {
        "eval/reward": (6 + 8 + 5 + 8) / 4,  # 6.75
        "eval/reward/chat": 8.0,
        "eval/reward/math": (6 + 5) / 2,  # 5.5; "" is no category
    }
    assert heldout_rows([], generator, reward, sampling) == [] and heldout_metrics([]) == {}


def test_without_a_reward_model_the_rows_are_the_answers():
    rows = heldout_rows(QUERIES[:2], Echo(), None, SamplingConfig())
    assert rows == [
        {"prompt": "ab", "response": "re: ab"},
        {"prompt": [{"role": "user", "content": "cdef"}], "response": "re: cdef"},
    ]


def test_batches_are_seeded_by_their_number_and_scattered_back():
    generator = Echo()
    answers = generate_answers(
        ["a", "b", "c"], generator, SamplingConfig(seed=5), batches=[[2, 0], [1]]
    )
    assert answers == ["re: a", "re: b", "re: c"]
    assert [(prompts, s.seed) for prompts, s in generator.calls] == [(["c", "a"], 5), (["b"], 6)]
    reward = Length()
    scores = score_answers(["a", "b", "c"], ["x", "yy", "zzz"], reward, batch_size=2)
    assert scores == [1.0, 2.0, 3.0] and reward.batches == [["x", "yy"], ["zzz"]]


def test_two_processes_give_the_rows_of_one(monkeypatch):
    """With a state, batches of `sampling.batch_size` queries (here [0, 1, 2] and [3]) are
    shared out; each fake process generates and scores its batch, all get every row."""
    sampling = SamplingConfig(batch_size=3)
    one = heldout_rows(QUERIES, Echo(), Length(), sampling, state=Processes(0, 1))
    assert [r["reward"] for r in one] == [6.0, 8.0, 5.0, 8.0]
    fake = FakeProcesses(2)
    monkeypatch.setattr(alignkit.distributed, "gather_object", fake.gather_object)
    generators = [Echo(), Echo()]

    def on_process(rank: int) -> list:
        state = Processes(rank, 2)
        return heldout_rows(QUERIES, generators[rank], Length(), sampling, state=state)

    assert fake.run(on_process) == [one, one]
    assert [prompts for prompts, _ in generators[1].calls] == [["hijk"]]
    assert fake.calls == [2, 2]  # one gather for the answers, one for the rewards
