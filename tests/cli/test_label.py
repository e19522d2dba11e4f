"""The labelling loop end to end on the tiny random model, through `alignkit.cli.main`:
prompts -> generate 4 answers each -> select 50% (easy) -> a person labels them in the real
browser page -> the server is killed -> import -> DPO. Every hand-over is checked with numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from conftest import expect, on_screen, serving, write_jsonl

from alignkit.cli import main
from alignkit.labelling.pairs import pair_id, prompt_id, read_verdicts

PROMPTS = [
    "how do I bake a cake?",
    "explain water and fire",
    "is the sun safe to look at?",
    "sort a list in python",
    "say thanks to a kind dog",
    "can a cat help with code?",
]
K, BUDGET, ANNOTATOR = 4, 3, "lena"


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def label_like_a_person(page: Any, pairs: list[dict[str, Any]]) -> dict[str, str]:
    """Type a name, then for every pair press the key of the side showing the longer answer
    (by characters; `t` when both are as long). The verdict meant for each pair, in a/b."""
    page.click("#annotator")
    page.keyboard.type(ANNOTATOR)
    page.keyboard.press("Enter")
    meant: dict[str, str] = {}
    keys = ["a", "ArrowRight", "ArrowLeft", "b"]  # a person mixes letters and arrows
    for n in range(len(pairs)):
        expect(page.locator("#progress-text")).to_have_text(f"{n} / {len(pairs)} labelled")
        row, left = on_screen(page, pairs)
        assert row["pair_id"] == pairs[n]["pair_id"]  # the page goes in pairs-file order
        right = "b" if left == "a" else "a"
        longer_on_left = len(row[left]) > len(row[right])
        if len(row["a"]) == len(row["b"]):
            page.keyboard.press("t")
            meant[row["pair_id"]] = "tie"
            continue
        key = keys[n % 4]
        if key in ("a", "ArrowLeft") and not longer_on_left:
            key = {"a": "b", "ArrowLeft": "ArrowRight"}[key]
        elif key in ("b", "ArrowRight") and longer_on_left:
            key = {"b": "a", "ArrowRight": "ArrowLeft"}[key]
        page.keyboard.press(key)
        meant[row["pair_id"]] = left if longer_on_left else right
    expect(page.locator("#progress-text")).to_have_text(f"{len(pairs)} / {len(pairs)} labelled")
    expect(page.locator("#finished")).to_be_visible()
    return meant


def test_prompts_to_dpo_through_the_browser(tiny_model, tmp_path, browser):  # noqa: F811
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    pool, pairs = tmp_path / "pool.jsonl", tmp_path / "pairs.jsonl"
    verdicts, prefs, run = tmp_path / "verdicts.jsonl", tmp_path / "prefs.jsonl", tmp_path / "dpo"

    # generate: 6 prompts x 4 answers
    argv = ["generate", "--model", tiny_model, "--prompts", prompts, "--num-responses", str(K)]
    argv += ["--max-new-tokens", "8", "--seed", "0", "--output", str(pool)]
    assert main(argv) == 0
    pool_rows = rows_of(pool)
    assert len(pool_rows) == len(PROMPTS)
    assert [r["prompt"][-1]["content"] for r in pool_rows] == PROMPTS  # as a user message
    assert all(len(r["responses"]) == K and len(r["finished"]) == K for r in pool_rows)
    by_prompt = {r["prompt_id"]: r for r in pool_rows}
    assert set(by_prompt) == {prompt_id(r["prompt"]) for r in pool_rows}

    # select 50% of the prompts' pairs, easy (least similar answers first)
    def select(output: Path) -> list[dict[str, Any]]:
        argv = ["label", "select", "--pool", str(pool), "--strategy", "easy", "--budget"]
        argv += [str(BUDGET), "--model", tiny_model, "--precision", "fp32"]
        argv += ["--cache-dir", str(tmp_path / "cache"), "--output", str(output)]
        assert main(argv) == 0
        return rows_of(output)

    pair_rows = select(pairs)
    assert len(pair_rows) == BUDGET == len(PROMPTS) // 2
    assert [r["pair_id"] for r in select(tmp_path / "again.jsonl")] == [
        r["pair_id"] for r in pair_rows
    ]  # stable: the same pool gives the same pairs
    scores = [r["score"] for r in pair_rows]
    assert scores == sorted(scores)  # easy: lowest similarity first
    assert len({prompt_id(r["prompt"]) for r in pair_rows}) == BUDGET  # one pair per prompt
    for r in pair_rows:
        assert r["pair_id"] == pair_id(r["prompt"], r["a"], r["b"])
        responses = by_prompt[prompt_id(r["prompt"])]["responses"]
        assert r["a"] != r["b"] and {r["a"], r["b"]} <= set(responses)
        assert responses.index(r["a"]) < responses.index(r["b"])  # a comes first in the pool

    # label in the page; leaving `serving` kills the server: only the file remains
    with serving(pairs, verdicts) as server:
        page = browser.new_page()
        page.goto(server.url)
        meant = label_like_a_person(page, pair_rows)
        page.close()
    lines = rows_of(verdicts)
    assert len(lines) == BUDGET and not any(line.get("undo") for line in lines)
    assert {line["annotator"] for line in lines} == {ANNOTATOR}
    assert {v.pair_id: v.verdict for v in read_verdicts(verdicts)} == meant
    ties = sum(v == "tie" for v in meant.values())

    # import -> prompt/chosen/rejected, the longer answer chosen
    assert main(["label", "import", str(verdicts), "--output", str(prefs)]) == 0
    imported = rows_of(prefs)
    assert len(imported) == BUDGET - ties
    by_texts = {(json.dumps(r["prompt"]), r["a"], r["b"]): r for r in pair_rows}
    for row in imported:
        key = json.dumps(row["prompt"])
        pair = by_texts.get((key, row["chosen"], row["rejected"]))
        pair = pair or by_texts[(key, row["rejected"], row["chosen"])]
        assert meant[pair["pair_id"]] != "tie"
        assert row["chosen"] == max(pair["a"], pair["b"], key=len)
        assert len(row["chosen"]) > len(row["rejected"])

    # DPO on the imported pairs
    argv = ["train", "--method", "dpo", "--model", tiny_model, "--data", str(prefs)]
    argv += ["--output", str(run), "--precision", "fp32", "--max-length", "64"]
    argv += ["--batch-size", "2", "--epochs", "1"]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == math.ceil(len(imported) / 2)
    assert math.isfinite(summary["final_metrics"]["loss"])
