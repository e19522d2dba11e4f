"""Options of the online verbs (`alignkit ple`, `raft`, `rrhf-online`, `rloo`, `ppo`), as
dataclasses.

`OnlineConfig` holds what they share; `PLEConfig`, `RAFTConfig`, `RRHFOnlineConfig`,
`RLOOConfig` and `PPOConfig` add their own, so each verb's --help lists only flags that have
an effect for it. Training options keep the names of `alignkit train` (`TrainConfig`) and are
handed to the core `Trainer` through `train_config()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from alignkit.errors import AlignkitError
from alignkit.inference.config import SAMPLING, EndpointOptions, SamplingOptions
from alignkit.inference.openai_client import is_url
from alignkit.model_options import CHAT_HELP
from alignkit.objectives.base import RankForm, Reduction
from alignkit.online.principles import PrincipleMode
from alignkit.options import REDACTED, check_ranges, opt, to_dict, warn_deprecated
from alignkit.rewards.options import RewardOptions
from alignkit.runs import chat_format
from alignkit.train.config import (
    LORA_PRESET_HELP,
    LoraPreset,
    Scheduler,
    TrainConfig,
    TrainingOptions,
)

Replay = Literal["none", "all"]
ValueInit = Literal["auto", "zero", "reward-model"]  # PPO's value head at the start

if TYPE_CHECKING:  # torch: imported when a run starts, not by `--help`
    from alignkit.inference.generation import SamplingConfig

Selection = Literal["per-prompt", "global"]  # which samples RAFT keeps


@dataclass
class OnlineConfig(RewardOptions, EndpointOptions, SamplingOptions, TrainingOptions):
    """Options shared by the online methods: `TrainingOptions` (some of whose defaults
    differ: the PLE paper's LoRA recipe, a constant learning rate), the option groups
    `SamplingOptions`, `EndpointOptions` (a server that samples) and `RewardOptions`, and the
    loop's own. Old spellings: --generator-api-key, --generator-concurrency, ... (`ALIASES`),
    and --generator URL for --endpoint URL."""

    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {
        name: ("--generator-" + name.replace("_", "-"),)
        for name in ("api_key", "concurrency", "timeout", "retries", "retry_wait")
    }

    queries: str = opt(
        "",
        "queries file (jsonl/json/parquet): records with a 'prompt' (text or chat "
        "messages) and an optional 'category'",
        metavar="PATH",
    )
    output: str = opt("", "run directory: generations/, metrics.jsonl, checkpoints/, model/")
    model: str = opt(
        "default", "policy: HF model id, local path, or 'default' (embedded SmolLM2-135M-Instruct)"
    )
    sft_data: list[str] = opt(
        [],
        "optional demonstrations or pairs for an initial SFT of the policy (the paper's "
        "first step; `alignkit train --method sft` into OUTPUT/sft, skipped when done)",
        metavar="PATH",
    )
    sft_epochs: float = opt(1.0, "epochs of the initial SFT on --sft-data")
    skip_invalid: bool = opt(
        False,
        "drop invalid records of --sft-data instead of stopping; they are listed with their "
        "file:line in OUTPUT/sft/rejected.jsonl",
    )
    iterations: int = opt(10, "online iterations, each: sample -> score -> train")
    queries_per_iteration: int = opt(
        16, "queries per iteration, drawn from seeded passes over the query set"
    )
    max_prompt_tokens: int = opt(
        256, "drop queries longer than this many tokens, and report how many (0 = keep all)"
    )
    chat: bool | None = opt(None, CHAT_HELP)
    generator: str = opt(
        "auto",
        "who samples without --endpoint: hf (transformers generate on the policy), vllm (an "
        "engine in this process, needs vllm, a GPU and one process), auto (vllm when "
        "usable, else hf). With --endpoint URL (an OpenAI-compatible server: vLLM, SGLang, "
        "`alignkit serve`) sampling runs on other machines; a server samples with its own "
        "weights, not the policy being trained, unless --generator-sync-url updates it. "
        "(--generator URL: the old spelling of --endpoint URL)",
        metavar="auto|hf|vllm",
    )
    generator_model: str = opt(
        "",
        "--endpoint: the model name sent (default: the only one the server's /models lists)",
        metavar="NAME",
    )
    generator_sync_url: str = opt(
        "",
        "--endpoint: after every iteration, save the trained LoRA adapter (--lora) to "
        "OUTPUT/sync/ and POST it to this vLLM endpoint, e.g. "
        "http://HOST:8000/v1/load_lora_adapter (vLLM started with --enable-lora and "
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; it must read OUTPUT/sync/ and serve --model "
        "as its base); later samples then come from the policy. Without it the server's "
        "weights never change: samples come from the server's fixed weights (off-policy), "
        "as a warning says",
        metavar="URL",
    )
    generation_batch_size: int = opt(16, "prompts per generate call (hf backend)")
    vllm_gpu_memory_utilization: float = opt(
        0.3, "fraction of GPU memory the vLLM engine may reserve (vllm backend)"
    )
    reward_batch_size: int = opt(16, "responses per forward pass of a model reward")
    missing_eos_penalty: float = opt(
        0.0,
        "subtract this from the reward of every training sample that was cut at "
        "--max-new-tokens without EOS (TRL's missing_eos_penalty; 0 = off): discourages the "
        "over-long answers a length-favouring reward model would pay for. The generations "
        "file keeps the penalised reward; held-out evaluation is not penalised",
    )
    replay: Replay = opt(
        "none",
        "train each iteration on its own samples (none) or on every sample generated "
        "so far (all: the PLE paper's growing D_train)",
    )
    eval_queries: str = opt(
        "",
        "held-out queries: mean reward of greedy unguided responses before training, "
        "after it and every --eval-every iterations",
        metavar="PATH",
    )
    eval_every: int = opt(0, "evaluate --eval-queries every N iterations (0 = before and after)")
    lora_preset: LoraPreset = opt("ple", LORA_PRESET_HELP)
    lr: float = opt(1e-5, "learning rate (AdamW)")
    lr_scheduler: Scheduler = opt("constant", "learning-rate schedule over all iterations' steps")
    warmup_ratio: float = opt(0.0, "fraction of steps of linear warm-up (cosine, linear)")
    batch_size: int = opt(4, "queries (with all their responses) per device per micro-batch")
    max_length: int = opt(1024, "max tokens of prompt + one response when training")
    reduction: Reduction = opt("sum", "sum or mean of token log-probs in the SFT terms")
    seed: int = opt(42, "random seed (query order, sampling, LoRA init)")
    save_every: int = opt(1, "save a resumable checkpoint every N iterations (0 = off)")
    save_model: bool = opt(True, "save the final policy (save_pretrained) into OUTPUT/model")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.chat = chat_format(self.chat, self.model)  # config.json records the format

    def validate(self) -> None:
        if not self.queries:
            raise AlignkitError("no queries: give --queries PATH")
        self.validate_training()
        if self.reward_model:  # fail before any model is loaded or anything generated
            from alignkit.rewards.loading import check_reward_spec

            check_reward_spec(self.reward_model, self.reward_label, self.reward_output)
        self.check_sampling()
        check_ranges(
            positive={
                "iterations": self.iterations,
                "queries_per_iteration": self.queries_per_iteration,
                "generation_batch_size": self.generation_batch_size,
                "reward_batch_size": self.reward_batch_size,
                "sft_epochs": self.sft_epochs,
            },
            non_negative={
                "missing_eos_penalty": self.missing_eos_penalty,
                "max_prompt_tokens": self.max_prompt_tokens,
                "eval_every": self.eval_every,
                "save_every": self.save_every,
            },
            fractions={"vllm_gpu_memory_utilization": self.vllm_gpu_memory_utilization},
        )
        self.validate_generator()
        self.validate_method()

    @property
    def remote(self) -> bool:
        """Does an OpenAI-compatible server sample (--endpoint URL, or --generator URL)?"""
        return bool(self.endpoint) or is_url(self.generator)

    def validate_generator(self) -> None:
        """--generator is a backend name (a URL there is the old spelling of --endpoint); the
        options of a server are refused without one (they would have no effect)."""
        if is_url(self.generator):
            warn_deprecated("--generator URL", "--endpoint URL")
            if self.endpoint and self.endpoint != self.generator:
                raise AlignkitError("--generator URL and --endpoint URL are one option; give one")
            self.endpoint, self.generator = self.generator, "auto"
        from alignkit.inference.generators import BACKENDS

        if not self.remote:
            if self.generator not in BACKENDS:
                raise AlignkitError(
                    f"--generator {self.generator!r}: expected auto, hf, vllm or the URL of an "
                    "OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
                )
            defaults = {f.name: f.default for f in dataclasses.fields(OnlineConfig)}
            given = [n for n in REMOTE_OPTIONS if getattr(self, n) != defaults[n]]
            if given:
                flags = ", ".join("--" + n.replace("_", "-") for n in given)
                raise AlignkitError(f"{flags}: only for --endpoint URL (a server); drop it")
            return
        self.check_endpoint()
        if self.generator != "auto":
            raise AlignkitError(
                f"--generator {self.generator} picks a local backend: drop it with --endpoint"
            )
        if self.chat is False:
            raise AlignkitError("--no-chat: a server takes chat messages; drop --no-chat")
        if self.generator_sync_url:
            if not is_url(self.generator_sync_url):
                raise AlignkitError(
                    f"--generator-sync-url {self.generator_sync_url!r}: expected "
                    "http(s)://HOST:PORT/v1/load_lora_adapter"
                )
            if not self.lora:
                raise AlignkitError(
                    "--generator-sync-url loads the trained LoRA adapter into the server: add "
                    "--lora (vLLM documents no endpoint that reloads full weights)"
                )
            self.check_sync_start()

    def check_sync_start(self) -> None:
        """--generator-sync-url needs a policy that starts from --model's own weights: a start
        that is an adapter (--sft-data --lora, or an adapter --model) is merged and a fresh
        adapter is trained on the merged model (so that the reference is the start), which a
        server serving the base model cannot apply."""
        from alignkit.runs import resolve_model_spec

        if self.sft_data or resolve_model_spec(self.model).adapter:
            raise AlignkitError(
                "--generator-sync-url with --sft-data or an adapter --model: the trained adapter "
                "belongs to the starting model (the SFT adapter merged into its base), which "
                "the server does not serve; sample with --generator hf or vllm instead"
            )

    def public_dict(self) -> dict[str, Any]:
        """The options as config.json and trackers record them: without the API key, with
        the verb (`method`)."""
        values = to_dict(self)
        if values.get("api_key"):
            values["api_key"] = REDACTED
        # which verb ran (the card of `alignkit export`); not an option: skipped by --config
        verbs = [k for k, v in ONLINE_METHODS.items() if type(self) is v]
        values["method"] = verbs[0] if verbs else type(self).__name__
        return values

    def validate_method(self) -> None:
        """Checks of the method's own options (subclasses)."""

    def sampling(self, seed: int | None = None) -> SamplingConfig:
        """How the policy samples during training iterations."""
        return self.sampling_config(self.generation_batch_size, seed)

    def train_config(self, **overrides) -> TrainConfig:
        """The core `TrainConfig` carrying every training option of the same name."""
        ours = {f.name for f in dataclasses.fields(self)}  # TrainingOptions + objective options
        shared = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name in ours
        }
        values = {"method": "sft", "data": list(self.sft_data), **shared, **overrides}
        return TrainConfig(**values)


@dataclass
class PLEConfig(OnlineConfig):
    """PLE: progressively label enhancement."""

    replay: Replay = opt(
        "all",
        "train each iteration on every sample generated so far (all: Algorithm 1 of "
        "the PLE paper, D_train grows) or on the iteration's own samples only (none)",
    )
    principle: str = opt(
        "hh",
        "principle p: a built-in name (hh: the PLE paper's HH rules, sec. 4.1; imdb, tldr: "
        "its appendix A.3 prompts, verbatim; general: alignkit's HH wording) or a text file",
        metavar="NAME|FILE",
    )
    principle_mode: PrincipleMode = opt(
        "prefix",
        "how p is put before x for y_p: prefix (the paper's [p, x]: p, a blank line, then the "
        "query, or its first user message for chat queries; works for every model, so it is "
        "the default) or system (a system message; chat models with a system role only)",
    )
    tau0: float = opt(0.2, "initial threshold tau on s_p - s (rank loss above, weighted SFT below)")
    alpha: float = opt(0.9, "threshold decay per iteration: tau <- alpha * tau")
    rank_form: RankForm = opt(
        "paper",
        "ranking loss: paper (avg logp(y) - avg logp(y_p)) or hinge (RRHF's "
        "max(0, avg logp(y) - avg logp(y_p)))",
    )
    rank_loss: bool = opt(
        True,
        "--no-rank-loss: the paper's ablation 'w/o L_rank' (Tables 4, 5): no principle "
        "prompt (both responses are sampled from x alone) and no ranking loss (every example "
        "gets the weighted SFT, whatever tau)",
    )
    weighted_sft: bool = opt(
        True,
        "--no-weighted-sft: the paper's ablation 'w/o L_weighted-sft' (Tables 4, 5): examples "
        "with s_p - s <= tau add nothing to the loss (the ranking loss is unchanged)",
    )

    def validate_method(self) -> None:
        if not 0 < self.alpha <= 1:
            raise AlignkitError(f"--alpha must be in (0, 1], got {self.alpha}")
        if not (self.rank_loss or self.weighted_sft):
            raise AlignkitError(
                "--no-rank-loss with --no-weighted-sft leaves no loss to train; drop one"
            )


@dataclass
class RAFTConfig(OnlineConfig):
    """RAFT: reward-ranked fine-tuning."""

    num_samples: int = opt(4, "responses sampled per query (K; the PLE paper's RAFT: 4)")
    selection: Selection = opt(
        "per-prompt",
        "what to fine-tune on: the best sample of each query (per-prompt) or the "
        "top --top-fraction of all samples of the iteration (global)",
    )
    top_fraction: float = opt(0.25, "fraction of all samples kept by --selection global")

    def validate_method(self) -> None:
        if self.num_samples < 1:
            raise AlignkitError(f"--num-samples must be >= 1, got {self.num_samples}")
        if not 0 < self.top_fraction <= 1:
            raise AlignkitError(f"--top-fraction must be in (0, 1], got {self.top_fraction}")


@dataclass
class RRHFOnlineConfig(OnlineConfig):
    """Online RRHF: ranking + SFT on freshly sampled, scored responses."""

    num_samples: int = opt(4, "responses sampled and scored per query (K >= 2)")
    rrhf_sft_weight: float = opt(1.0, "weight of the SFT term on the best response")

    def validate_method(self) -> None:
        if self.num_samples < 2:
            raise AlignkitError(f"--num-samples must be >= 2 for RRHF, got {self.num_samples}")


def _check_on_policy(config: OnlineConfig, kl_coef: float) -> None:
    """RLOO and PPO learn from the current policy's own samples and sequence log-probs: their
    losses have no importance correction, so samples must come from exactly the distribution
    the loss scores, softmax(logits / temperature) of the policy being trained (checked after
    `validate_generator`, before any model loads)."""
    if config.remote and not config.generator_sync_url:
        raise AlignkitError(
            f"--endpoint {config.endpoint}: without --generator-sync-url the server samples "
            "with its own fixed weights, not the policy being trained; RLOO and PPO have no "
            "importance correction for such off-policy samples (their gradient would be "
            "biased). Add --lora --generator-sync-url URL (the trained adapter is loaded into "
            "the server after every iteration), or drop --endpoint to sample locally"
        )
    if config.top_p < 1 or config.top_k > 0:
        raise AlignkitError(
            f"--top-p {config.top_p} / --top-k {config.top_k}: RLOO and PPO score each sampled "
            "token with softmax(logits / temperature) of the policy; nucleus or top-k sampling "
            "draws from a truncated distribution instead, so the samples would not be from "
            "the policy the loss scores (TRL's PPO fixes top_p=1, top_k=0). Drop --top-p and "
            "--top-k (use --temperature)"
        )
    if config.replay != "none":
        raise AlignkitError(
            f"--replay {config.replay}: RLOO and PPO are on-policy (each iteration trains on "
            "its own samples); drop --replay"
        )
    if config.reduction != "sum":
        raise AlignkitError(
            "--reduction: RLOO and PPO use the sum of token log-probs (a sequence's log-prob, "
            "or per-token terms); drop --reduction"
        )
    if kl_coef < 0:
        raise AlignkitError(f"--kl-coef must be >= 0, got {kl_coef}")


@dataclass
class RLOOConfig(OnlineConfig):
    """RLOO: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024)."""

    num_samples: int = opt(4, "responses sampled per query (K >= 2; TRL: rloo_k, num_generations)")
    kl_coef: float = opt(
        0.05,
        "KL penalty: reward r_i - kl_coef * sum_t (log pi - log pi_ref) of each sample, the "
        "reference being the starting policy (TRL: kl_coef, beta)",
    )

    def validate_method(self) -> None:
        if self.num_samples < 2:
            raise AlignkitError(f"--num-samples must be >= 2 for RLOO, got {self.num_samples}")
        _check_on_policy(self, self.kl_coef)


@dataclass
class PPOSettings:
    """PPO's hyper-parameters, declared once: `PPOConfig` (the options of `alignkit ppo`)
    inherits them and `PPOStrategy` (`online/ppo.py`) takes them (option names as TRL's
    PPOConfig)."""

    kl_coef: float = opt(
        0.05,
        "per-token KL penalty: reward -kl_coef * (log pi - log pi_ref) at every token, the "
        "reward model's score added at the last one (OpenRLHF: init_kl_coef)",
    )
    whiten_rewards: bool = opt(
        False, "scale the per-token rewards to unit variance over the rollout (mean kept)"
    )
    gamma: float = opt(1.0, "discount factor of GAE")
    lam: float = opt(0.95, "lambda of GAE (OpenRLHF: lambd)")
    cliprange: float = opt(0.2, "clip range of the policy ratio pi / pi_old (OpenRLHF: eps_clip)")
    cliprange_value: float = opt(
        0.2,
        "clip range of the value head's change from its rollout estimate (OpenRLHF: value_clip)",
    )
    vf_coef: float = opt(0.1, "weight of the value loss: loss = policy loss + vf_coef * value loss")
    num_ppo_epochs: int = opt(
        4,
        "passes over each iteration's rollout, in mini-batches of --batch-size queries x "
        "--grad-accum (OpenRLHF: max_epochs)",
    )
    target_kl: float = opt(
        0.0,
        "stop an iteration's remaining PPO steps once the policy KL to the sampling policy "
        "of the step just taken, mean over its tokens of (log pi_old - log pi) (TRL's "
        "policy/policykl, measured before the step's update), exceeds 1.5 * target_kl "
        "(0 = never)",
    )
    value_init: ValueInit = opt(
        "auto",
        "the value head's start: reward-model (a copy of the reward model's linear score "
        "head: for a one-output --reward-model classifier, --reward-output raw, of the "
        "policy's architecture and hidden size, e.g. `alignkit train-rm` on the policy's "
        "base; it then reads the policy's hidden states), zero (V = 0), or auto "
        "(reward-model where it applies, else zero; OpenRLHF and TRL's example start the "
        "critic from the reward model)",
    )
    critic_lr: float = opt(
        1e-4,
        "learning rate of the value head (its own AdamW parameter group; the shared "
        "backbone keeps --lr; OpenRLHF: critic_learning_rate)",
    )
    critic_warmup_steps: int = opt(
        100,
        "before the first PPO update, fit the value head alone to the Monte-Carlo returns "
        "of the first rollout with this many full-batch Adam steps at --critic-lr on the "
        "policy's hidden states (the policy does not change), then compute the advantages "
        "with it (OpenRLHF: freezing_actor_steps; 0 = off)",
    )
    # SamplingOptions' temperature (same flag, help and group): log-probs use logits / it
    temperature: float = opt(1.0, "sampling temperature", group=SAMPLING)

    def ppo_settings(self) -> PPOSettings:
        """These settings alone (of a `PPOConfig`: without its other options)."""
        names = [f.name for f in dataclasses.fields(PPOSettings)]
        return PPOSettings(**{name: getattr(self, name) for name in names})


@dataclass
class _PPOSamples(OnlineConfig):
    """`PPOConfig` without its PPO settings (a base, so that --num-samples comes first)."""

    num_samples: int = opt(
        1, "responses sampled per query (each one is an episode; OpenRLHF: n_samples_per_prompt)"
    )


@dataclass
class PPOConfig(PPOSettings, _PPOSamples):
    """PPO with a value head (Ziegler et al. 2019; option names as TRL's PPOConfig): the
    online options, --num-samples and `PPOSettings`."""

    def validate_method(self) -> None:
        if self.num_samples < 1:
            raise AlignkitError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.num_ppo_epochs < 1:
            raise AlignkitError(f"--num-ppo-epochs must be >= 1, got {self.num_ppo_epochs}")
        if min(self.cliprange, self.cliprange_value) <= 0:
            raise AlignkitError("--cliprange and --cliprange-value must be > 0")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise AlignkitError("--gamma and --lam must be in [0, 1]")
        if min(self.vf_coef, self.target_kl) < 0:
            raise AlignkitError("--vf-coef and --target-kl must be >= 0")
        check_ranges(
            positive={"critic_lr": self.critic_lr},
            non_negative={"critic_warmup_steps": self.critic_warmup_steps},
        )
        _check_on_policy(self, self.kl_coef)


# options of --endpoint URL only (refused with a local backend)
REMOTE_OPTIONS = (
    "generator_model",
    "api_key",
    "concurrency",
    "timeout",
    "retries",
    "retry_wait",
    "generator_sync_url",
)

# the online verbs and their options (`alignkit ple|raft|rrhf-online|rloo|ppo`, study methods)
ONLINE_METHODS: dict[str, type[OnlineConfig]] = {
    "ple": PLEConfig,
    "raft": RAFTConfig,
    "rrhf-online": RRHFOnlineConfig,
    "rloo": RLOOConfig,
    "ppo": PPOConfig,
}
