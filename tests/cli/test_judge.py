"""`alignkit judge` end to end: against a real `alignkit serve` (the tiny model in a thread) and a
scripted HTTP server, local and function judges, `--against-chosen`, the label-agreement
report, usage errors and the help of `serve` and `judge`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import SCRIPTED, _url, free_port, write_gens

from alignkit.cli import main
from alignkit.evaluation.judges import (
    KNOWN_CRITERIA,
    HttpJudge,
)

# ------------------------------------------------------------------ judge: against a real server


@pytest.fixture
def gens(tmp_path) -> tuple[str, str]:
    prompts = [f"question {i} about cats" for i in range(3)]
    a = write_gens(tmp_path / "a.jsonl", [(p, f"kind answer {i}") for i, p in enumerate(prompts)])
    b = write_gens(
        tmp_path / "b.jsonl", [(p, f"rude answer {i}") for i, p in enumerate(prompts)][::-1]
    )
    return a, b


def run_judge(gens, out: Path, *extra: str) -> int:
    return main(["judge", "--a", gens[0], "--b", gens[1], "--output", str(out), *extra])


def test_http_judge_against_served_tiny_model(served, gens, tmp_path, capsys):
    served.chat.reset()
    out = tmp_path / "judge"
    assert run_judge(gens, out, "--judge", f"http:{served.url}", "--max-tokens", "4") == 0
    report = json.loads((out / "judge.json").read_text())
    total = report["wins"] + report["ties"] + report["losses"] + report["unparseable"]
    assert report["prompts"] == total == 3 and len(report["per_prompt"]) == 3
    assert served.chat.calls == 6 and served.chat.last_params.max_tokens == 4
    assert served.chat.last_params.temperature == 0.0
    assert "model=tiny" in report["judge"]  # discovered from /v1/models
    assert report["questions"] == {"asked": 6, "cached": 0, "rejected": 0}
    assert "3 prompts" in capsys.readouterr().out
    # rerun: everything comes from the cache, no new requests
    assert run_judge(gens, out, "--judge", f"http:{served.url}", "--max-tokens", "4") == 0
    assert served.chat.calls == 6
    rerun = json.loads((out / "judge.json").read_text())
    assert rerun["questions"] == {"asked": 0, "cached": 6, "rejected": 0}
    assert rerun["per_prompt"] == report["per_prompt"]


def test_http_judge_model_name_cache_path_and_bare_url(served, gens, tmp_path):
    served.chat.reset()
    cache = tmp_path / "shared" / "cache.jsonl"
    args = ["--judge", served.url, "--judge-model", "named", "--cache", str(cache)]
    assert run_judge(gens, tmp_path / "o1", *args) == 0
    assert cache.exists() and not (tmp_path / "o1" / "judge_cache.jsonl").exists()
    assert "model=named" in json.loads((tmp_path / "o1" / "judge.json").read_text())["judge"]
    assert run_judge(gens, tmp_path / "o2", *args) == 0  # another output, same cache
    assert served.chat.calls == 6


@pytest.mark.parametrize(("concurrency", "low", "high"), [(1, 1, 1), (3, 2, 3)])
def test_http_concurrency_flag(served, gens, tmp_path, concurrency, low, high):
    served.chat.reset()
    args = ["--judge", f"http:{served.url}", "--concurrency", str(concurrency), "--max-tokens", "2"]
    assert run_judge(gens, tmp_path / "c", *args) == 0
    assert low <= served.chat.peak <= high


def test_api_key_is_sent_but_never_written(served, gens, tmp_path, monkeypatch, capsys, caplog):
    secret = "sk-test-4f9a8e7d6c5b"
    monkeypatch.setenv("ALIGNKIT_TEST_KEY", secret)
    judge = HttpJudge(served.url, model="m", api_key=secret)
    req = judge.request("/chat/completions", {"x": 1})
    assert req.get_header("Authorization") == f"Bearer {secret}"
    assert secret not in repr(judge) and secret not in judge.name
    out = tmp_path / "judge"
    args = ["--judge", f"http:{served.url}", "--api-key-env", "ALIGNKIT_TEST_KEY"]
    assert run_judge(gens, out, *args) == 0
    printed = capsys.readouterr()
    for text in [printed.out, printed.err, caplog.text] + [p.read_text() for p in out.iterdir()]:
        assert secret not in text
    monkeypatch.delenv("ALIGNKIT_TEST_KEY")
    assert run_judge(gens, out, *args) == 2
    assert "ALIGNKIT_TEST_KEY is not set" in capsys.readouterr().err


def test_unreachable_endpoint_fails_after_retries(gens, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    args = ["--judge", f"http:{url}", "--judge-model", "m", "--concurrency", "1"]
    assert run_judge(gens, tmp_path / "j", *args, "--retries", "2", "--retry-wait", "0.3") == 2
    assert 0.3 + 0.6 <= time.monotonic() - start < 30  # backoff: 0.3 s, then 0.6 s
    err = capsys.readouterr().err
    assert "did not answer after 3 attempts" in err and "Connection refused" in err


def test_http_judge_sends_the_template(scripted, gens, tmp_path):
    """--template and --criteria reach the endpoint: the rendered user message of a text
    template (no system message), one request per criterion and order."""
    template = tmp_path / "ulma.txt"
    template.write_text("[Criteria] {criterion}\n[Q] {prompt}\n[1] {first}\n[2] {second}")
    args = ["--judge", _url(scripted), "--judge-model", "m", "--template", str(template)]
    args += ["--criteria", "harmlessness", "brevity=short answers", "--concurrency", "1"]
    assert run_judge(gens, tmp_path / "t", *args) == 0
    assert scripted.requests == 3 * 2 * 2  # prompts x criteria x orders
    sent = [b["messages"] for b in scripted.bodies]
    assert all(len(m) == 1 and m[0]["role"] == "user" for m in sent)
    first = "[Criteria] short answers\n[Q] question 0 about cats\n[1] kind answer 0\n"
    assert {"role": "user", "content": first + "[2] rude answer 0"} in [m[0] for m in sent]
    assert sum(KNOWN_CRITERIA["harmlessness"] in m[0]["content"] for m in sent) == 6
    report = json.loads((tmp_path / "t" / "judge.json").read_text())
    assert report["template"]["source"] == str(template)
    assert f"template={report['template']['id']}" in report["judge"]
    assert report["criterion_texts"]["brevity"] == "short answers"
    # the scripted server always answers [[A]]: every prompt ties in both orders
    assert report["criteria"]["brevity"]["ties"] == report["criteria"]["harmlessness"]["ties"] == 3


def test_timeout_flag(scripted, gens, tmp_path, capsys):
    scripted.script = [(200, 2.0)] * 4
    args = ["--judge", _url(scripted), "--judge-model", "m", "--timeout", "0.2", "--retries", "0"]
    assert run_judge(gens, tmp_path / "t", *args, "--concurrency", "1") == 2
    assert "timed out" in capsys.readouterr().err


# ------------------------------------------------------------------ judge: local, CLI errors


def test_local_judge_cli(tiny_model, gens, tmp_path):
    out = tmp_path / "local"
    assert run_judge(gens, out, "--judge", f"local:{tiny_model}", "--max-tokens", "2") == 0
    report = json.loads((out / "judge.json").read_text())
    total = report["wins"] + report["ties"] + report["losses"] + report["unparseable"]
    assert total == report["prompts"] == 3 and report["questions"]["asked"] == 6
    assert report["a"] == gens[0] and report["judge"].startswith(f"local:{tiny_model}|max_tokens=2")


def test_cli_against_the_datasets_chosen_answers(tmp_path, capsys):
    """B = the chosen answer of the data for the same prompt (ULMA), in any row order; with
    --orders one and --criteria, as ULMA's appendix B."""
    data = tmp_path / "test.jsonl"
    rows = [
        {"prompt": "q1", "chosen": "kind reply", "rejected": "rude reply"},
        {"prompt": "q2 same", "chosen": "fine", "rejected": "bad"},
        {"prompt": "q3", "chosen": "rude chosen", "rejected": "bad"},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # A: rude vs kind chosen -> loss; tie; kind vs rude chosen -> win
    gens = write_gens(tmp_path / "a.jsonl", [("q3", "kind"), ("q1", "rude"), ("q2 same", "ok")])
    out = tmp_path / "vs-chosen"
    args = ["judge", "--a", gens, "--against-chosen", str(data), "--judge", SCRIPTED]
    assert main([*args, "--output", str(out)]) == 0
    report = json.loads((out / "judge.json").read_text())
    assert report["mode"] == "against-chosen" and report["b"] == f"chosen of {data}"
    rows_by_prompt = {r["prompt"]: r for r in report["per_prompt"]}
    assert rows_by_prompt["q1"]["response_b"] == "kind reply"
    assert [report[k] for k in ("wins", "ties", "losses", "tie_replies")] == [1, 1, 1, 2]
    assert "A wins 1, ties 1, loses 1" in capsys.readouterr().out
    out1 = tmp_path / "ulma"
    assert (
        main([*args, "--output", str(out1), "--orders", "one", "--criteria", "harmlessness"]) == 0
    )
    one = json.loads((out1 / "judge.json").read_text())
    assert one["orders"] == "one" and one["questions"]["asked"] == 3
    assert one["criteria"]["harmlessness"]["wins"] == 1
    # a prompt the data does not have
    other = write_gens(tmp_path / "b.jsonl", [("q1", "x"), ("q9", "y")])
    assert main(["judge", "--a", other, "--against-chosen", str(data), "--judge", SCRIPTED]) == 2
    assert "no chosen answer for 1 prompt(s)" in capsys.readouterr().err


def test_cli_label_agreement_per_subset_and_order(tmp_path, capsys):
    """REAL Fig. 3: which of chosen / rejected does the judge prefer, per subset, both
    orders. The scripted judge prefers "kind" and otherwise the answer shown first.
    clean: 2 pairs, chosen kind, rejected rude: agreement 1 in both orders.
    noisy: pair 1 mislabelled (chosen rude, rejected kind): disagrees in both orders;
    pair 2 neither kind: picks the answer shown first, agrees only with chosen first;
    pair 3 "same": tie replies (no agreement in either order, half a point each).
    chosen first: agrees 1 of 3 parsed; rejected first: 0 of 3; mean 1/6."""
    clean = tmp_path / "clean.jsonl"
    noisy = tmp_path / "noisy.jsonl"
    clean.write_text(
        "".join(
            json.dumps({"prompt": f"c{i}", "chosen": "kind", "rejected": "rude"}) + "\n"
            for i in range(2)
        )
    )
    noisy_rows = [("n1", "rude", "kind"), ("n2", "meh", "also meh"), ("n3 same", "x", "y")]
    noisy.write_text(
        "".join(
            json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n" for p, c, r in noisy_rows
        )
    )
    out = tmp_path / "agree"
    args = ["judge", "--agreement", f"clean={clean}", f"noisy={noisy}", "--judge", SCRIPTED]
    assert main([*args, "--output", str(out)]) == 0
    report = json.loads((out / "judge.json").read_text())
    assert report["mode"] == "agreement" and list(report["subsets"]) == ["clean", "noisy"]
    c, n = report["subsets"]["clean"], report["subsets"]["noisy"]
    assert c["pairs"] == 2 and c["agreement_mean"] == 1.0 and c["agree_both"] == 2
    assert n["agreement_chosen_first"] == pytest.approx(1 / 3, abs=1e-6)
    assert n["agreement_rejected_first"] == 0.0
    assert n["agreement_mean"] == pytest.approx(1 / 6, abs=1e-6)
    # n2 agrees in one order, n3 ties in both: 1 point of 2 each ("half")
    assert [n[k] for k in ("agree_both", "agree_half", "agree_none", "tie_replies")] == [0, 2, 1, 2]
    agrees = {p["prompt"]: p["agrees"] for p in n["per_pair"]}
    assert agrees == {"n1": "none", "n2": "half", "n3 same": "half"}
    assert report["questions"]["asked"] == 10
    printed = capsys.readouterr().out
    assert "clean: 2 pairs, agreement 100.0%" in printed and "noisy: 3 pairs" in printed
    # per criterion: the same numbers (the scripted judge ignores the criterion)
    assert main([*args, "--output", str(tmp_path / "k"), "--criteria", "harmlessness"]) == 0
    by_criterion = json.loads((tmp_path / "k" / "judge.json").read_text())["subsets"]
    assert by_criterion["noisy"]["criteria"]["harmlessness"]["agreement_mean"] == pytest.approx(
        1 / 6, abs=1e-6
    )
    assert "noisy [harmlessness]: 3 pairs" in capsys.readouterr().out
    # a seeded sample per subset (REAL re-labels 200 pairs per subset)
    assert main([*args, "--output", str(tmp_path / "s"), "--max-pairs", "1"]) == 0
    sampled = json.loads((tmp_path / "s" / "judge.json").read_text())["subsets"]
    assert sampled["clean"]["pairs"] == sampled["noisy"]["pairs"] == 1
    # an invalid record (empty rejected answer, as in real HH files): strict by default,
    # dropped and listed with --skip-invalid
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        clean.read_text() + json.dumps({"prompt": "b", "chosen": "kind", "rejected": ""}) + "\n"
    )
    assert main(["judge", "--agreement", str(broken), "--judge", SCRIPTED]) == 2
    assert "broken.jsonl:3" in capsys.readouterr().err
    out = tmp_path / "skip"
    skip = ["judge", "--agreement", str(broken), "--judge", SCRIPTED, "--skip-invalid"]
    assert main([*skip, "--output", str(out)]) == 0
    skipped = json.loads((out / "judge.json").read_text())
    assert skipped["subsets"][str(broken)]["pairs"] == 2
    assert skipped["skipped_invalid"]["records"] == 1
    [row] = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert row["where"] == f"{broken}:3"
    # points are not pairs
    points = tmp_path / "points.jsonl"
    points.write_text(json.dumps({"prompt": "p", "completion": "c", "label": 1}) + "\n")
    assert main(["judge", "--agreement", str(points), "--judge", SCRIPTED]) == 2
    assert "not preference pairs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--judge", "local:x", "--judge-model", "m"], "--judge-model: only for http judges"),
        (["--judge", "local:x", "--timeout", "3"], "--timeout: only for http judges"),
        (["--judge", "local:"], "needs a model"),
        (["--judge", "ftp://x"], "expected local:MODEL, http:BASE_URL or package.module:function"),
        (["--judge", "http://x", "--concurrency", "0"], "--concurrency must be at least 1"),
        (["--judge", "http://x", "--retries", "-1"], "--retries must not be negative"),
        (["--judge", "http://x", "--retry-wait", "-1"], "--retry-wait must not be negative"),
        (["--judge", "http://x", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--judge", SCRIPTED, "--timeout", "3"], "--timeout: only for http judges"),
        (["--judge", SCRIPTED, "--criteria", "x", "--template", "{T}"], r"lacks {criterion}"),
        (["--judge", SCRIPTED, "--template", "{T}"], "missing.txt"),
        (["--judge", SCRIPTED, "--max-pairs", "3"], "--max-pairs: only with --agreement"),
        (["--judge", SCRIPTED, "--skip-invalid"], "--skip-invalid: only with --against-chosen"),
    ],
)
def test_judge_cli_usage_errors(gens, tmp_path, capsys, args, message):
    (tmp_path / "t.txt").write_text("{prompt} {first} {second}")
    if "{T}" in args:
        name = "missing.txt" if "missing.txt" in message else "t.txt"
        args = [str(tmp_path / name) if a == "{T}" else a for a in args]
    assert run_judge(gens, tmp_path / "e", *args) == 2
    assert message in capsys.readouterr().err


def test_judge_cli_mode_errors(gens, tmp_path, capsys):
    pairs = write_gens(tmp_path / "p.jsonl", [("p", "x")])
    cases = [
        (["--b", gens[1]], "give --a"),
        (["--a", gens[0], "--agreement", pairs], "drop --a"),
        (["--agreement", pairs, "--orders", "one"], "drop --orders one"),
    ]
    for args, message in cases:
        assert main(["judge", *args, "--judge", SCRIPTED]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the modes exclude each other
        main(["judge", "--a", gens[0], "--b", gens[1], "--agreement", pairs, "--judge", "x"])


def test_judge_cli_mismatched_files(tmp_path, capsys):
    a = write_gens(tmp_path / "a.jsonl", [("p1", "x")])
    b = write_gens(tmp_path / "b.jsonl", [("p2", "x")])
    assert main(["judge", "--a", a, "--b", b, "--judge", "http://127.0.0.1:1/v1"]) == 2
    assert "'p1'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["serve", "judge"])
def test_help_explains_every_option(verb, capsys):
    import argparse

    from alignkit.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser = sub.choices[verb]
    for action in parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0 and "examples:" in capsys.readouterr().out
