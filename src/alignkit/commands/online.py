"""`alignkit ple`, `raft`, `rrhf-online`, `rloo`, `ppo`: online alignment with a reward model.

The verbs share one loop (sample -> score with the reward model -> train -> repeat) and
one set of options; each adds its own. Users need only queries and a reward model: no
preference labels.
"""

from __future__ import annotations

import json
import textwrap

from alignkit.online.config import ONLINE_METHODS, OnlineConfig
from alignkit.options import CONFIG_NOTE, add_config_verb

OUTPUTS = """
run directory (--output):
  generations/iter-NNNN.jsonl  every query's responses, rewards (and PLE: branch, weights)
  metrics.jsonl                one row per iteration (step = iterations done; 0 = before)
  eval/iter-NNNN.jsonl         held-out greedy responses and rewards (--eval-queries)
  checkpoints/step-N           resumable state after iteration N (--resume)
  sft/                         the initial SFT run (--sft-data)
  model/, summary.json         the final policy
"""

VERBS: dict[str, tuple[str, str]] = {  # verb (a key of ONLINE_METHODS) -> help, description
    "ple": (
        "PLE: principle-guided sampling, reward scoring and a decaying threshold",
        "Progressively label enhancement (PLE paper). Per iteration and query x: sample y from "
        "x and y_p from the principle-guided [p, x], score both against x with the reward "
        "model; where s_p - s > tau, a ranking loss raises the length-normalised log-prob of "
        "y_p over y, elsewhere both are trained with the reward weights w = 2e^s/(e^s+e^s_p)-1 "
        "and w_p = -w. The policy is trained on x without p; then tau <- alpha * tau. "
        "Built-in principles: hh (the paper's, sec. 4.1), imdb and tldr (its appendix A.3). "
        "The paper's ablations: --no-rank-loss (no principle, no ranking loss) and "
        "--no-weighted-sft.",
    ),
    "raft": (
        "RAFT: sample K responses, fine-tune on the best by reward",
        "Reward-ranked fine-tuning (Dong et al. 2023). Per iteration: K samples per query, "
        "scored by the reward model; SFT on the best sample of every query (--selection "
        "per-prompt) or on the top --top-fraction of all samples (--selection global).",
    ),
    "rrhf-online": (
        "online RRHF: rank K fresh samples by reward (+ SFT on the best)",
        "RRHF (Yuan et al. 2023) on fresh samples. Per iteration: K samples per query, scored "
        "by the reward model, trained with the rrhf objective of `alignkit train`: a ranking "
        "loss over length-normalised log-probs + SFT on the best sample.",
    ),
    "rloo": (
        "RLOO: REINFORCE with a leave-one-out baseline over K samples, KL to the reference",
        "REINFORCE leave-one-out (Ahmadian et al. 2024, 'Back to Basics'). Per iteration: K "
        "samples per query, scored by the reward model; each sample's reward is r_i - kl_coef "
        "* sum_t (log pi - log pi_ref), the reference being the starting policy (the model "
        "with the LoRA adapter disabled, or a frozen copy); advantage A_i = reward_i - the "
        "mean reward of the query's other K-1 samples; one pass of REINFORCE steps on "
        "-mean(A_i * log pi(y_i|x)). The K samples of a query share one packed forward (the "
        "prompt encoded once); log-probs use logits / --temperature, as sampled. No critic, "
        "no ratio clipping. Samples must come from the policy itself: --top-p, --top-k and a "
        "server without --generator-sync-url are refused. Logs reward, rloo/kl, "
        "rloo/advantage_std and the loss per iteration.",
    ),
    "ppo": (
        "PPO: RLHF with a value head, per-token KL penalty, GAE and clipped losses",
        "PPO as in TRL's PPOTrainer (Ziegler et al. 2019). Per iteration: sample responses, "
        "score them with the reward model, then one no-gradient pass records the policy's "
        "and the reference's token log-probs and the value head's estimates; per-token "
        "reward -kl_coef * (log pi - log pi_ref) plus the score at the last token "
        "(--whiten-rewards: scaled to unit variance), GAE(--gamma, --lam) advantages "
        "(whitened) and returns; then --num-ppo-epochs passes of mini-batch steps on the "
        "clipped policy loss (--cliprange) + --vf-coef * the clipped value loss "
        "(--cliprange-value), stopped early when TRL's policy KL to the sampling policy, "
        "mean(log pi_old - log pi), exceeds 1.5 * --target-kl. The value head is a linear "
        "layer on the policy's last hidden state, sharing its backbone (and LoRA adapter): "
        "it starts from the reward model's score head where that applies (--value-init), "
        "learns at its own --critic-lr, and is first fitted alone to the first rollout's "
        "Monte-Carlo returns (--critic-warmup-steps); checkpoints hold it and the final "
        "model directory gets value_head.pt. Samples must come from the policy itself: "
        "--top-p, --top-k and a server without --generator-sync-url are refused. Log-probs "
        "use logits / --temperature, as sampled. Logs reward, ppo/kl, ppo/entropy, "
        "ppo/clipfrac, ppo/value_loss and ppo/explained_variance per iteration.",
    ),
}

EXAMPLES = {
    "ple": "alignkit ple --queries q.jsonl --reward-model runs/rm/model --iterations 10 "
    "--output runs/ple\n  alignkit ple --model gpt2 --no-chat --queries imdb.jsonl --principle "
    "imdb --reward-model IMDB_CLASSIFIER --reward-label 1 --output runs/ple-imdb",
    "raft": "alignkit raft --queries q.jsonl --reward-model runs/rm/model --num-samples 4 "
    "--output runs/raft",
    "rrhf-online": "alignkit rrhf-online --queries q.jsonl --reward-model mypkg.rewards:score "
    "--output runs/rrhf",
    "rloo": "alignkit rloo --queries q.jsonl --reward-model runs/rm/model --num-samples 4 "
    "--kl-coef 0.05 --lora --output runs/rloo",
    "ppo": "alignkit ppo --queries q.jsonl --reward-model runs/rm/model --lora "
    "--num-ppo-epochs 4 --target-kl 0.1 --output runs/ppo",
}


def register(subparsers) -> None:
    for verb, (short, description) in VERBS.items():
        add_config_verb(
            subparsers,
            verb,
            ONLINE_METHODS[verb],
            run,
            help=short,
            description=textwrap.fill(f"{description} {CONFIG_NOTE}", 88),
            epilog=OUTPUTS + f"\nexample:\n  {EXAMPLES[verb]}\n",
        )


def run(config: OnlineConfig) -> int:
    from alignkit.online.loop import OnlineTrainer

    result = OnlineTrainer(config).run()
    if result.eval_after:
        summary = {"eval_before": result.eval_before, "eval_after": result.eval_after}
        print(json.dumps(summary, indent=2))
    print(
        f"done: {config.iterations} iterations, {result.steps} optimizer steps, "
        f"run directory {result.output}"
    )
    return 0
