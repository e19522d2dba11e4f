"""`alignkit export`: a LoRA run merged into a full model that transformers loads with the
same logits as alignkit's own loading, the adapter export, the model card, and
`--push-to-hub` against a local stand-in of the Hub API (never the network)."""

from __future__ import annotations

import base64
import json
import re
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import JSONHandler, pair_rows, serve_in_thread, write_jsonl

from alignkit.cli import main
from alignkit.models import load_inference_model


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    """A LoRA DPO run (2 steps at a high learning rate: the adapter is not a no-op)."""
    root = tmp_path_factory.mktemp("export")
    data = write_jsonl(root / "prefs.jsonl", pair_rows(8))
    out = root / "run"
    args = ["train", "--model", tiny_model, "--data", data, "--eval-data", data]
    args += ["--output", str(out), "--lora", "--lr", "5e-2", "--max-steps", "2"]
    assert main([*args, "--precision", "fp32", "--batch-size", "4"]) == 0
    return out


def logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("hello kind cat", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


def test_a_merged_lora_run_loads_with_from_pretrained(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert main(["export", str(lora_run), "--merge", "--output", str(out)]) == 0
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ours = load_inference_model(str(lora_run))
    assert torch.allclose(logits(model, tokenizer), logits(ours.model, ours.tokenizer), atol=1e-5)
    # the adapter changed the model: merging it is not the base model saved again
    base = load_inference_model(ours.description.split("base model ")[-1])
    assert not torch.allclose(
        logits(model, tokenizer), logits(base.model, base.tokenizer), atol=1e-4
    )


def test_a_lora_run_without_merge_exports_the_adapter(lora_run, tmp_path):
    from peft import AutoPeftModelForCausalLM

    out = tmp_path / "adapter"
    assert main(["export", str(lora_run), "--output", str(out)]) == 0
    assert (out / "adapter_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "model.safetensors").exists()
    model = AutoPeftModelForCausalLM.from_pretrained(out).merge_and_unload().eval()
    ours = load_inference_model(str(lora_run))
    assert torch.allclose(
        logits(model, ours.tokenizer), logits(ours.model, ours.tokenizer), atol=1e-5
    )
    assert "library_name: peft" in (out / "README.md").read_text()


def test_the_model_card_says_what_was_trained_and_what_to_cite(lora_run, tmp_path):
    out = tmp_path / "merged"
    assert main(["export", str(lora_run), "--merge", "--output", str(out)]) == 0
    card = (out / "README.md").read_text()
    summary = json.loads((lora_run / "summary.json").read_text())
    accuracy = summary["eval_after"]["eval/rewards/accuracies"]
    assert "| method | `dpo` |" in card
    assert "| data | `prefs.jsonl` | 8 records |" in card  # 8 pairs written above
    assert f"| eval/rewards/accuracies | after training | {accuracy:.4g} |" in card
    assert "| precision | training=fp32" in card and "| alignkit | " in card
    assert "Rafailov et al. (2023)" in card and "arXiv:2305.18290" in card  # DPO
    assert "Hu et al. (2021)" in card  # LoRA
    assert "| lr | 0.05 |" in card


def test_export_refuses_a_non_empty_output_and_a_bad_run(lora_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert main(["export", str(lora_run), "--output", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep"
    assert main(["export", str(lora_run), "--output", str(out), "--overwrite"]) == 0
    assert not (out / "mine.txt").exists() and (out / "adapter_config.json").exists()
    assert main(["export", str(tmp_path / "nothing"), "--output", str(tmp_path / "x")]) == 2
    assert (
        main(["export", str(lora_run), "--output", str(tmp_path / "y"), "--push-to-hub", "bad"])
        == 2
    )
    assert "give a repository id user/name" in capsys.readouterr().err


# ------------------------------------------------------------ the Hub, stood in for


class HubStandIn(JSONHandler):
    """The endpoints huggingface_hub calls for `create_repo` and `upload_folder` (without
    hf_xet: the README's metadata validated, preupload, then one commit with every file
    inline): repos and files in memory, every other request answered 404 and recorded."""

    repos: dict[str, dict[str, Any]]
    unknown: list[str]
    validated: list[str]

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path == "/api/repos/create":
            payload = json.loads(body)
            repo = f"{payload['organization']}/{payload['name']}"
            self.repos.setdefault(repo, {"files": {}, "create": payload, "auth": None})
            self.repos[repo]["auth"] = self.headers.get("authorization")
            return self._reply(200, {"url": f"{base}/{repo}"})
        if self.path == "/api/validate-yaml":  # the model card's front matter, checked first
            self.validated.append(json.loads(body)["content"])
            return self._reply(200, {"errors": [], "warnings": []})
        match = re.fullmatch(r"/api/models/(.+)/(preupload|commit)/main", self.path)
        if not match or match.group(1) not in self.repos:
            self.unknown.append(f"POST {self.path}")
            return self._reply(404, {"error": "not found"})
        repo, what = match.groups()
        if what == "preupload":
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            return self._reply(200, {"files": modes})
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                self.repos[repo]["files"][value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "header":
                self.repos[repo]["message"] = item["value"]["summary"]
        reply = {"commitUrl": f"{base}/{repo}/commit/c0ffee", "commitOid": "c0ffee"}
        return self._reply(200, {**reply, "pullRequestUrl": None})

    def do_GET(self) -> None:  # noqa: N802
        self.unknown.append(f"GET {self.path}")
        self._reply(404, {"error": "not found"})


@pytest.fixture
def hub(monkeypatch):
    """The stand-in Hub on a free port of 127.0.0.1 (offline mode lifted for it alone, and
    uploads through the classic commit API, as without hf_xet)."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    handler = type("Hub", (HubStandIn,), {"repos": {}, "unknown": [], "validated": []})
    yield from serve_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), handler))


def test_push_to_hub_uploads_the_export(lora_run, tmp_path, hub, capsys):
    url = f"http://127.0.0.1:{hub.server_address[1]}"
    out = tmp_path / "merged"
    args = ["export", str(lora_run), "--merge", "--output", str(out)]
    assert main([*args, "--push-to-hub", "team/tiny-dpo", "--hub-endpoint", url, "--private"]) == 0
    handler = hub.RequestHandlerClass
    assert handler.unknown == []
    repo = handler.repos["team/tiny-dpo"]
    assert repo["create"]["visibility"] == "private" or repo["create"].get("private") is True
    assert repo["auth"] == "Bearer hf_test_token"
    local = {p.name: p.read_bytes() for p in out.iterdir()}
    assert repo["files"] == local  # every file, byte for byte
    assert set(handler.validated) == {local["README.md"].decode()}
    assert "team/tiny-dpo/commit/c0ffee" in capsys.readouterr().out


def test_push_to_hub_honours_hf_endpoint(lora_run, tmp_path, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_address[1]}")
    out = tmp_path / "adapter"
    assert main(["export", str(lora_run), "--output", str(out), "--push-to-hub", "me/a"]) == 0
    assert set(hub.RequestHandlerClass.repos["me/a"]["files"]) == {p.name for p in out.iterdir()}


def test_a_hub_error_is_a_clear_error(lora_run, tmp_path, hub, capsys):
    hub.RequestHandlerClass.do_POST = lambda self: self._reply(403, {"error": "no write access"})
    url = f"http://127.0.0.1:{hub.server_address[1]}"
    args = ["export", str(lora_run), "--output", str(tmp_path / "a"), "--push-to-hub", "me/a"]
    assert main([*args, "--hub-endpoint", url]) == 2
    assert "refused" in capsys.readouterr().err
