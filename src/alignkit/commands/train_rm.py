"""`alignkit train-rm`: train a Bradley–Terry reward model on preference pairs."""

from __future__ import annotations

import json

from alignkit.options import add_config_verb
from alignkit.rewards.config import RewardTrainConfig

EPILOG = """\
The model is an AutoModelForSequenceClassification with one output (a causal LM given as
--model gets a new scalar head). Each pair is one packed row prompt|chosen|rejected; the
reward of a response is the score head at its last token (EOS). OUTPUT/model loads with
alignkit.rewards.loading.load_reward_model(path) and `alignkit eval --reward-model OUTPUT/model`.

examples:
  alignkit train-rm --data pairs.jsonl --eval-data heldout.jsonl --output runs/rm
  alignkit train-rm --data pairs.jsonl --model default --lora --lr 1e-4 --output runs/rm-lora
"""


def register(subparsers) -> None:
    add_config_verb(
        subparsers,
        "train-rm",
        RewardTrainConfig,
        run,
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model R(x, y) with -log sigmoid(R(x, chosen) - R(x, rejected)). "
        "Options come from --config (YAML), overridden by flags; they are those of "
        "`alignkit train` without the policy-objective ones.",
        epilog=EPILOG,
    )


def run(config: RewardTrainConfig) -> int:
    from alignkit.rewards.training import RewardTrainer, pair_accuracy

    result = RewardTrainer(config).run()
    before, after = pair_accuracy(result.eval_before), pair_accuracy(result.eval_after)
    if after is not None:
        print(
            json.dumps(
                {"eval_before": result.eval_before, "eval_after": result.eval_after}, indent=2
            )
        )
        print(f"held-out pair accuracy: {before:.3f} -> {after:.3f}")
    where = f"{result.output}/model" if config.save_model else str(result.output)
    print(f"done: {result.steps} steps, reward model in {where}")
    return 0
