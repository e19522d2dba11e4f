"""`alignkit export RUN --output DIR`: a run's model for sharing (merged, adapter or full),
with a model card, optionally pushed to the Hugging Face Hub."""

from __future__ import annotations

from alignkit.export import ExportConfig
from alignkit.options import add_config_verb

EPILOG = """\
what is written to --output:
  --merge on a LoRA run    the adapter merged into its base: a full model (safetensors) and
                           its tokenizer; AutoModelForCausalLM.from_pretrained(DIR), vLLM
                           (`vllm serve DIR`) and `alignkit serve --model DIR` load it
  a LoRA run               the adapter folder (adapter_config.json, adapter_model.safetensors)
                           and the tokenizer: AutoPeftModelForCausalLM.from_pretrained(DIR)
  a full-weights run       its model folder as it is
  always                   README.md, the model card: method, base model, data files and
                           record counts, metrics from summary.json, precision, alignkit
                           version, the papers to cite

--push-to-hub REPO uploads the folder with huggingface_hub (create_repo + upload_folder) to
--hub-endpoint, else $HF_ENDPOINT, else huggingface.co; the token is huggingface_hub's
($HF_TOKEN, or `hf auth login`).

examples:
  alignkit export runs/dpo --merge --output exports/dpo
  alignkit export runs/dpo --merge --output exports/dpo --push-to-hub me/smollm2-dpo --private
"""


def register(subparsers) -> None:
    add_config_verb(
        subparsers,
        "export",
        ExportConfig,
        run,
        help="export a run's model (LoRA merged, or the adapter) with a model card; push to the Hub",
        description="Write a run's model as the Hugging Face ecosystem loads it, with a "
        "README.md model card, and optionally upload it to the Hub.",
        epilog=EPILOG,
    )


def run(config: ExportConfig) -> int:
    from alignkit.export import export_run, hub_endpoint, push_folder

    exported = export_run(config)
    print(f"exported {exported.spec.describe()} ({exported.kind}) to {exported.folder}")
    if config.push_to_hub:
        url = push_folder(
            exported.folder,
            config.push_to_hub,
            hub_endpoint(config.hub_endpoint),
            config.private,
            f"alignkit export of {config.run}",
        )
        print(f"pushed to {config.push_to_hub}: {url}")
    return 0
