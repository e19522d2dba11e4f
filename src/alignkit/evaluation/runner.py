"""`alignkit eval`: compute the evaluation metrics of a model on test data and write a report.

Steps: load the test records; resolve the model (a run directory, its `model/` dir — full
weights or a LoRA adapter — an HF id or "default") and its reference; decide which metrics
apply; score reference responses and test pairs with `SequenceScorer` (packed forward,
`score_dataset`); generate for a seeded sample of test prompts; score the generations with a
reward model and BLEU; write report.json (atomically), report.md and
report.generations.jsonl.

Under a launcher (`accelerate launch`, `torchrun`) the work is split over the processes and
merged in a fixed order, so N processes give the numbers of one: the policy and reference
log-probs by length-sorted batch (`score_dataset`: each process takes every N-th batch of the
one-process run), the generations and their rewards by generation batch
(`rewards.heldout` over `distributed.shard_map`: each batch is generated with its own seed,
whichever process runs it). Every process gets
every per-example value back and computes the metrics from them; the main process alone
writes the report files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.data import LoadSummary, Pair, Point, Prompt, Record, load_records
from alignkit.data.prompts import chat_records, distinct_prompts
from alignkit.data.tokenize import Encoded
from alignkit.distributed import Processes, distributed_state
from alignkit.errors import AlignkitError
from alignkit.evaluation import metrics as M
from alignkit.evaluation.config import DEFAULT_BETA, METRIC_NAMES, EvalConfig
from alignkit.io import atomic_write_jsonl, atomic_write_text
from alignkit.models import check_model_spec
from alignkit.objectives.metrics import implicit_reward_metrics
from alignkit.report import markdown_table
from alignkit.runs import ModelSpec

# ------------------------------------------------------------ models


def load_source(source: ModelSpec, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """(causal LM in eval mode, tokenizer) of a resolved model spec (an adapter stays an
    adapter: the reference is the model with it disabled)."""
    from alignkit.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(source.name, trust_remote_code=trust_remote_code)
    return model.eval(), load_tokenizer(source.name, trust_remote_code)


def reference_name(config: EvalConfig, source: ModelSpec) -> str | None:
    """What the implicit reward is measured against (None: nothing known)."""
    if config.ref:
        return config.ref
    if source.adapter:
        return f"{source.base} (the adapter disabled)"
    return source.base


def _check_same_vocab(tokenizer, other, name: str) -> None:
    if tokenizer.get_vocab() != other.get_vocab():
        raise AlignkitError(
            f"the reference {name!r} has another tokenizer than the model; implicit rewards "
            "need the same vocabulary (give --ref with the model's base)"
        )


# ------------------------------------------------------------ data


@dataclass
class PromptItem:
    """A distinct test prompt and its reference response (pair: chosen), if any."""

    prompt: Prompt
    reference: str | None


def reference_response(record: Record) -> str | None:
    """Pair: chosen; point: the completion of a high-quality point; multi: the best."""
    if isinstance(record, Pair):
        return record.chosen
    if isinstance(record, Point):
        return record.completion if record.high_quality else None
    best = max(range(len(record.scores)), key=lambda i: record.scores[i])
    return record.responses[best]


def prompt_items(records: list[Record]) -> list[PromptItem]:
    """The distinct prompts in data order, each with the first reference response seen."""
    items = []
    for prompt, group in distinct_prompts(records):
        reference = None
        for record in group:
            reference = reference or reference_response(record)
        items.append(PromptItem(prompt, reference))
    return items


def sample_prompts(items: list[PromptItem], n: int, seed: int) -> list[PromptItem]:
    """A seeded random sample of n items in data order (n = 0 or >= len: all)."""
    if n == 0 or n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


# ------------------------------------------------------------ planning


def unsupported(
    config: EvalConfig, records: list[Record], source: ModelSpec, prompts: list[PromptItem]
) -> dict[str, str | None]:
    """metric -> None when it can be computed, else why not."""
    n_pairs = sum(isinstance(r, Pair) for r in records)
    margins = None
    if not n_pairs:
        margins = f"needs preference pairs (prompt, chosen, rejected); none of the {len(records)} test records is a pair"
    elif reference_name(config, source) is None:
        margins = (
            "needs a reference model: give --ref (the model is neither a LoRA adapter nor the "
            "model of an `alignkit train` run whose summary.json names base_model)"
        )
    has_reference = any(reference_response(r) is not None for r in records)
    return {
        "perplexity": None
        if has_reference
        else "the data has no reference responses "
        "(chosen answers, demonstrations or high-quality points)",
        "margins": margins,
        "generate": None,
        "reward": None if config.reward_model else "needs --reward-model",
        "bleu": None
        if any(p.reference for p in prompts)
        else "the sampled prompts have no reference (chosen) response to compare with",
    }


def plan_metrics(requested: list[str], why_not: dict[str, str | None]) -> list[str]:
    """The metrics to compute: the requested ones (reward and bleu imply generate), each of
    which must be supported, or by default every supported one."""
    if not requested:
        return [m for m in METRIC_NAMES if why_not[m] is None]
    wanted = set(requested)
    if wanted & {"reward", "bleu"}:
        wanted.add("generate")
    for name in METRIC_NAMES:
        if name in wanted and why_not[name]:
            raise AlignkitError(f"metric {name!r} {why_not[name]}")
    return [m for m in METRIC_NAMES if m in wanted]


# ------------------------------------------------------------ scoring


@dataclass
class Context:
    """What every stage needs: the config, the model, its tokenizer, device, precision, and
    accelerate's process state (`rank` of `world` processes)."""

    config: EvalConfig
    model: nn.Module
    tokenizer: Any
    device: torch.device
    autocast: torch.dtype | None
    rank: int = 0
    world: int = 1

    @property
    def processes(self) -> Processes:
        return Processes(self.rank, self.world)


def score(ctx: Context, model: nn.Module, encoded: list[Encoded], k: int, desc: str) -> Tensor:
    """(n, K) summed response log-probs under `model` (packed forward); each process scores
    every world-th length-sorted batch and all get the whole table in the order of `encoded`."""
    from alignkit.scoring.dataset import score_dataset
    from alignkit.scoring.forward import SequenceScorer

    return score_dataset(
        SequenceScorer(model),
        encoded,
        batch_size=ctx.config.batch_size,
        pad_id=ctx.tokenizer.pad_token_id,
        device=ctx.device,
        autocast=ctx.autocast,
        rank=ctx.rank,
        world=ctx.world,
        desc=desc,
        k=k,
    )


def response_counts(encoded: list[Encoded], k: int) -> Tensor:
    """(n, K) response lengths in tokens (0 = no such response)."""
    counts = torch.zeros(len(encoded), k)
    for i, e in enumerate(encoded):
        counts[i, : len(e.responses)] = torch.tensor(
            [len(r) for r in e.responses], dtype=torch.float
        )
    return counts


def perplexity_of(encoded: list[Encoded], table: Tensor) -> tuple[dict, dict]:
    """Perplexity of the high-quality (reference) responses: (metrics, counts)."""
    k = table.shape[1]
    hq = torch.zeros(len(encoded), k, dtype=torch.bool)
    for i, e in enumerate(encoded):
        hq[i, : len(e.high_quality)] = torch.tensor(e.high_quality)
    counts = response_counts(encoded, k)
    value = M.perplexity(table[hq], counts[hq])
    return {"perplexity": value}, {
        "perplexity_responses": int(hq.sum()),
        "perplexity_tokens": int(counts[hq].sum()),
    }


def reference_table(ctx: Context, source: ModelSpec, pairs: list[Encoded]) -> Tensor:
    """(n, 2) log-probs of the test pairs under the reference: --ref, else the adapter
    disabled (LoRA), else the run's base model."""
    from alignkit.models import reference_context

    if not ctx.config.ref and source.adapter:
        with reference_context(ctx.model):
            return score(ctx, ctx.model, pairs, 2, "reference log-probs")
    ref = check_model_spec(ctx.config.ref or str(source.base))
    model, tokenizer = load_source(
        ref, ctx.config.trust_remote_code
    )  # every process loads it: each scores a share
    _check_same_vocab(ctx.tokenizer, tokenizer, ref.name)
    model.to(ctx.device)
    return score(ctx, model, pairs, 2, "reference log-probs")


def beta_of(config: EvalConfig, source: ModelSpec) -> float:
    """--beta, else the beta the run was trained with, else 0.1."""
    return config.beta or float(source.run_config.get("beta") or DEFAULT_BETA)


def margins_of(
    ctx: Context, records: list[Record], encoded: list[Encoded], table: Tensor, source: ModelSpec
) -> tuple[dict, dict]:
    """Implicit-reward margin, accuracy and DPO loss on the test pairs: (metrics, counts)."""
    rows = [i for i, e in enumerate(encoded) if isinstance(records[e.index], Pair)]
    ref = reference_table(ctx, source, [encoded[i] for i in rows])
    policy = table[rows]
    beta = beta_of(ctx.config, source)
    values = implicit_reward_metrics(policy[:, 0], policy[:, 1], ref[:, 0], ref[:, 1], beta)
    return values, {"pairs": len(rows)}


# ------------------------------------------------------------ generation


def generation_batches(prompts: Sequence[Prompt], tokenizer: Any, size: int) -> list[list[int]]:
    """The batches `generate` makes of these prompts (longest rendered prompt first, plain and
    chat-rendered prompts apart), as indices into `prompts`."""
    from alignkit.data.prompts import render_prompt

    texts = [render_prompt(p, tokenizer) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i][0]), reverse=True)
    groups = [[i for i in order if texts[i][1] == templated] for templated in (False, True)]
    return [group[i : i + size] for group in groups for i in range(0, len(group), size)]


def generate_for(ctx: Context, prompts: list[PromptItem]) -> list[dict[str, Any]]:
    """Rows {"prompt", "response", "chosen"?} for the sampled prompts (batched).

    Each batch is generated by one `generate` call seeded with --seed + its number, so a
    batch samples the same tokens whichever process generates it (and greedy batches are
    those of one `generate` call over every prompt)."""
    from alignkit.inference.generation import SamplingConfig
    from alignkit.inference.generators import HFGenerator
    from alignkit.rewards.heldout import generate_answers

    config = ctx.config
    sampling = SamplingConfig(
        max_new_tokens=config.max_new_tokens,
        do_sample=config.do_sample,
        temperature=config.temperature,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    texts = generate_answers(
        [p.prompt for p in prompts],
        HFGenerator(ctx.model, ctx.tokenizer, ctx.autocast, progress=False),
        sampling,
        batches=generation_batches([p.prompt for p in prompts], ctx.tokenizer, config.batch_size),
        state=ctx.processes,
        desc="generating",
    )
    rows = []
    for item, text in zip(prompts, texts, strict=True):
        row: dict[str, Any] = {"prompt": item.prompt, "response": text}
        if item.reference is not None:
            row["chosen"] = item.reference
        rows.append(row)
    return rows


def reward_of(ctx: Context, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean and std of the reward-model score of the generations (adds "reward" to rows).

    Scored in batches of --batch-size rows in prompt order, each process every world-th
    batch (one `score` call per batch, so the batches are the same for any number of
    processes); the mean and std are computed from all the gathered scores."""
    from alignkit.rewards.heldout import score_answers
    from alignkit.rewards.loading import load_reward_model

    config = ctx.config
    model = load_reward_model(
        config.reward_model,
        batch_size=config.batch_size,
        precision=config.precision,
        label=config.reward_label,
        output=config.reward_output,
        trust_remote_code=config.trust_remote_code,
    )
    scores = score_answers(
        [r["prompt"] for r in rows],
        [r["response"] for r in rows],
        model,
        batch_size=config.batch_size,
        state=ctx.processes,
        desc="reward",
    )
    for row, value in zip(rows, scores, strict=True):
        row["reward"] = value
    mean, std = M.mean_std(scores)
    return {"reward_mean": mean, "reward_std": std}


def bleu_of(rows: list[dict[str, Any]]) -> tuple[dict, dict]:
    """BLEU of the generations against the chosen responses, both definitions: corpus
    sacreBLEU on 0-100 (`bleu`) and the mean sentence BLEU on 0-1 (`bleu_sentence`, also
    added to each row); `M.BLEU_DEFINITIONS` says which is which.

    Not split over processes: corpus BLEU sums n-gram counts over all generations, so it is
    computed (cheaply, on every process) from the gathered generations."""
    scored = [r for r in rows if "chosen" in r]
    hypotheses, references = [r["response"] for r in scored], [r["chosen"] for r in scored]
    sentence = M.sentence_bleus(hypotheses, references)
    for row, value in zip(scored, sentence, strict=True):
        row["bleu_sentence"] = value
    values = {
        "bleu": M.corpus_bleu(hypotheses, references),
        "bleu_sentence": sum(sentence) / len(sentence),
    }
    return values, {"bleu_pairs": len(scored)}


METRIC_DEFINITIONS = {
    "perplexity": "exp(-sum log p / tokens) of the reference responses (token-weighted)",
    "margin": "mean(r_chosen - r_rejected), r = beta * (log pi - log pi_ref) (TRL/DPO units)",
    "accuracy": "mean(r_chosen > r_rejected) (a tie counts as wrong)",
    "dpo_loss": "mean(-log sigmoid(r_chosen - r_rejected))",
    "reward_chosen": "mean r_chosen = beta * (log pi - log pi_ref) of the chosen responses",
    "reward_rejected": "mean r_rejected = beta * (log pi - log pi_ref) of the rejected ones",
    "margin_unscaled": "mean(u_chosen - u_rejected), u = log pi - log pi_ref without beta "
    "(REAL Eq. 10 units; = margin / beta)",
    "reward_chosen_unscaled": "mean u_chosen = log pi - log pi_ref of the chosen responses",
    "reward_rejected_unscaled": "mean u_rejected = log pi - log pi_ref of the rejected ones",
    "reward_mean": "mean reward-model score of the generations",
    "reward_std": "population standard deviation of the reward-model scores",
    **M.BLEU_DEFINITIONS,
}


# ------------------------------------------------------------ run


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Evaluate, write the report files, and return the report."""
    from alignkit.models import autocast_dtype, load_tokenizer

    config.validate()
    state = distributed_state()
    records, loaded = load_test_records(config, state.is_main_process)
    source = check_model_spec(config.model)
    # prompts as the run was trained on them (--chat / --no-chat), for scoring and generation
    records = chat_records(
        records, load_tokenizer(config.model, config.trust_remote_code), config.chat
    )
    prompts = sample_prompts(prompt_items(records), config.num_prompts, config.seed)
    plan = plan_metrics(config.requested_metrics(), unsupported(config, records, source, prompts))
    model, tokenizer = load_source(source, config.trust_remote_code)
    device = state.device
    model.to(device)
    autocast = autocast_dtype(config.precision, device)
    ctx = Context(
        config, model, tokenizer, device, autocast, state.process_index, state.num_processes
    )
    values: dict[str, float] = {}
    counts: dict[str, Any] = {}
    _score_metrics(ctx, plan, records, source, values, counts)
    rows = _generation_metrics(ctx, plan, prompts, values, counts)
    report = _report(config, source, plan, values, counts, rows)
    if config.skip_invalid:
        report["rejected"] = {
            "records": len(loaded.rejected),
            "by_reason": loaded.rejected_by_reason(),
            "file": str(config.paths()["rejected"]),
        }
    if state.is_main_process:
        write_report(config, report, rows)
    state.wait_for_everyone()
    return report


def load_test_records(
    config: EvalConfig, main_process: bool = True
) -> tuple[list[Record], LoadSummary]:
    """The test records; with --skip-invalid the invalid ones are dropped and listed in
    REPORT.rejected.jsonl (by the main process)."""
    rejected = config.paths()["rejected"] if config.skip_invalid and main_process else None
    return load_records(
        config.data, config.data_format, skip_invalid=config.skip_invalid, rejected_path=rejected
    )


def _score_metrics(
    ctx: Context,
    plan: list[str],
    records: list[Record],
    source: ModelSpec,
    values: dict[str, float],
    counts: dict[str, Any],
) -> None:
    """Perplexity and implicit-reward margins (one policy scoring pass)."""
    from alignkit.data.tokenize import encode_records

    if "perplexity" not in plan and "margins" not in plan:
        return
    encoded, _ = encode_records(records, ctx.tokenizer, ctx.config.max_length, "truncate")
    k = max(len(e.responses) for e in encoded)
    table = score(ctx, ctx.model, encoded, k, "policy log-probs")
    results = []
    if "perplexity" in plan:
        results.append(perplexity_of(encoded, table))
    if "margins" in plan:
        results.append(margins_of(ctx, records, encoded, table, source))
    for metric_values, metric_counts in results:
        values.update(metric_values)
        counts.update(metric_counts)


def _generation_metrics(
    ctx: Context,
    plan: list[str],
    prompts: list[PromptItem],
    values: dict[str, float],
    counts: dict[str, Any],
) -> list[dict[str, Any]]:
    if "generate" not in plan:
        return []
    rows = generate_for(ctx, prompts)
    counts["prompts"] = len(rows)
    if "reward" in plan:
        values.update(reward_of(ctx, rows))
    if "bleu" in plan:
        bleu, bleu_counts = bleu_of(rows)
        values.update(bleu)
        counts.update(bleu_counts)
    return rows


def _report(
    config: EvalConfig,
    source: ModelSpec,
    plan: list[str],
    values: dict[str, float],
    counts: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    paths = config.paths()
    return {
        "model": config.model,
        "reference": reference_name(config, source) if "margins" in plan else None,
        "reward_model": config.reward_model or None,
        "data": list(config.data),
        "computed": plan,
        "metrics": values,
        "definitions": {
            name: METRIC_DEFINITIONS[name] for name in values if name in METRIC_DEFINITIONS
        },
        "counts": counts,
        "settings": {
            "beta": beta_of(config, source) if "margins" in plan else None,
            "max_new_tokens": config.max_new_tokens,
            "do_sample": config.do_sample,
            "temperature": config.temperature if config.do_sample else None,
            "num_prompts": config.num_prompts,
            "seed": config.seed,
            "max_length": config.max_length,
            "precision": config.precision,
        },
        "generations": str(paths["generations"]) if rows else None,
    }


def write_report(config: EvalConfig, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """report.json (atomic), report.md and, if anything was generated, the generations."""
    paths = config.paths()
    if rows:
        atomic_write_jsonl(paths["generations"], rows)
    atomic_write_text(paths["markdown"], markdown(report))
    atomic_write_text(paths["json"], json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table of metrics, then the counts."""
    lines = [f"# alignkit eval: `{report['model']}`", ""]
    lines.append(f"- data: {', '.join(f'`{d}`' for d in report['data'])}")
    for key in ("reference", "reward_model", "generations"):
        if report.get(key):
            lines.append(f"- {key.replace('_', ' ')}: `{report[key]}`")
    if report.get("rejected"):
        dropped = report["rejected"]
        reasons = ", ".join(f"{reason}: {n}" for reason, n in dropped["by_reason"].items())
        lines.append(
            f"- invalid records dropped (--skip-invalid): {dropped['records']}"
            + (f" ({reasons}), listed in `{dropped['file']}`" if dropped["records"] else "")
        )
    definitions = report.get("definitions", {})
    metric_rows = [
        (name, f"{value:.4f}", definitions.get(name, ""))
        for name, value in report["metrics"].items()
    ]
    lines += ["", markdown_table(("metric", "value", "definition"), metric_rows, align="lrl")]
    if report["counts"]:
        count_rows = [(name, str(value)) for name, value in report["counts"].items()]
        lines += ["", markdown_table(("count", "value"), count_rows, align="lr")]
    return "\n".join(lines) + "\n"
