"""The papers behind each method: what a model trained with alignkit should cite (the model
card of `alignkit export`). One entry per paper; `papers_for` picks those of a run.

Every entry: first author as "X et al.", year of the first arXiv version, title, arXiv id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    key: str
    authors: str  # "First et al." as the docs cite it
    year: int
    title: str
    arxiv: str = ""

    def citation(self) -> str:
        """One markdown line: authors (year), *title*, arXiv link when known."""
        link = f", [arXiv:{self.arxiv}](https://arxiv.org/abs/{self.arxiv})" if self.arxiv else ""
        return f"{self.authors} ({self.year}). *{self.title}*{link}"


PAPERS: dict[str, Paper] = {
    p.key: p
    for p in [
        Paper("deft", "Zhu et al.", 2026, "DEFT: Distribution-guided Efficient Fine-Tuning for Human Alignment", "2604.01787"),
        Paper("ulma", "Cai et al.", 2023, "ULMA: Unified Language Model Alignment with Human Demonstration and Point-wise Preference", "2312.02554"),
        Paper("ple", "Liu et al.", 2024, "Progressively Label Enhancement for Large Language Model Alignment (ICML 2025)", "2408.02599"),
        Paper("real", "Zhang et al.", 2024, "REAL: Response Embedding-based Alignment for LLMs", "2409.17169"),
        Paper("dpo", "Rafailov et al.", 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model", "2305.18290"),
        Paper("rrhf", "Yuan et al.", 2023, "RRHF: Rank Responses to Align Language Models with Human Feedback without tears", "2304.05302"),
        Paper("raft", "Dong et al.", 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment", "2304.06767"),
        Paper("rloo", "Ahmadian et al.", 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs", "2402.14740"),
        Paper("ppo", "Schulman et al.", 2017, "Proximal Policy Optimization Algorithms", "1707.06347"),
        Paper("rlhf", "Ouyang et al.", 2022, "Training language models to follow instructions with human feedback", "2203.02155"),
        Paper("unlikelihood", "Welleck et al.", 2020, "Neural Text Generation with Unlikelihood Training", "1908.04319"),
        Paper("unlearning", "Jang et al.", 2022, "Knowledge Unlearning for Mitigating Privacy Risks in Language Models", "2210.01504"),
        Paper("lora", "Hu et al.", 2021, "LoRA: Low-Rank Adaptation of Large Language Models", "2106.09685"),
    ]
}  # fmt: skip

# method (of `alignkit train`, an online verb, or the reward model) -> its papers
METHOD_PAPERS: dict[str, list[str]] = {
    "sft": [],
    "dpo": ["dpo"],
    "pointwise-dpo": ["ulma", "dpo"],
    "pointwise-mse": ["ulma", "dpo"],
    "ulma": ["ulma", "dpo"],
    "positive-dpo": ["ulma", "dpo"],
    "negative-dpo": ["ulma", "dpo"],
    "unlearning": ["ulma", "unlearning"],
    "unlikelihood": ["ulma", "unlikelihood"],
    "rrhf": ["rrhf"],
    "ple": ["ple"],
    "raft": ["raft", "ple"],
    "rrhf-online": ["rrhf", "ple"],
    "rloo": ["rloo"],
    "ppo": ["ppo", "rlhf"],
    "bradley-terry": ["rlhf"],
}


def papers_for(method: str, deft: bool = False, lora: bool = False) -> list[Paper]:
    """The papers to cite for a run of `method` (unknown methods: none of their own), with
    DEFT when the run used its guidance term or R_Q, and LoRA when it trained an adapter."""
    keys = list(METHOD_PAPERS.get(method, []))
    keys += ["deft"] if deft else []
    keys += ["lora"] if lora else []
    return [PAPERS[k] for k in dict.fromkeys(keys)]
