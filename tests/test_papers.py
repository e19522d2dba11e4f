"""The papers each method cites (the model card of `alignkit export`)."""

from __future__ import annotations

from alignkit.objectives.registry import METHODS
from alignkit.online.config import ONLINE_METHODS
from alignkit.papers import METHOD_PAPERS, PAPERS, papers_for
from alignkit.rewards.config import BT_NAME


def test_every_method_has_its_papers():
    assert set(METHODS) | set(ONLINE_METHODS) | {BT_NAME} <= set(METHOD_PAPERS)
    assert all(key in PAPERS for keys in METHOD_PAPERS.values() for key in keys)


def test_papers_for_a_run():
    assert [p.key for p in papers_for("ulma", deft=True, lora=True)] == [
        "ulma",
        "dpo",
        "deft",
        "lora",
    ]
    assert [p.key for p in papers_for("sft")] == []
    assert papers_for("dpo")[0].citation() == (
        "Rafailov et al. (2023). *Direct Preference Optimization: Your Language Model is "
        "Secretly a Reward Model*, [arXiv:2305.18290](https://arxiv.org/abs/2305.18290)"
    )
