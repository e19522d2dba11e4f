"""Judges (`alignkit.evaluation.judges`): the messages and templates, criteria, the HTTP
judge's retries against a scripted server, and function judges by spec."""

from __future__ import annotations

import json

import pytest
from conftest import SCRIPTED, _url

from alignkit.errors import AlignkitError
from alignkit.evaluation.judges import (
    CRITERION_TEMPLATE,
    DEFAULT_TEMPLATE,
    KNOWN_CRITERIA,
    TEMPLATE_ID,
    Criterion,
    FunctionJudge,
    HttpJudge,
    JudgeUnavailable,
    Question,
    Template,
    build_judge,
    judge_messages,
    load_template,
    parse_criterion,
)
from alignkit.evaluation.win_rate import (
    Item,
    judge_pairs,
)


def test_judge_messages_show_answers_in_order():
    q = Question("Say hi", "first answer", "second answer")
    user = judge_messages(q)[1]["content"]
    assert user.index("first answer") < user.index("second answer")
    assert "[Answer A]\nfirst answer" in user and "Say hi" in user


def test_default_template_and_cache_keys_are_unchanged():
    """Caches written before templates existed stay valid: the default template has the
    same id, and a question without a criterion has the same key (hash of the judge name,
    the prompt and the answers in order)."""
    import hashlib

    assert DEFAULT_TEMPLATE.id == TEMPLATE_ID
    expected = hashlib.sha256(json.dumps(["j", "p", "x", "y"]).encode()).hexdigest()
    assert Question("p", "x", "y").key("j") == expected
    helpful, harmless = parse_criterion("helpfulness"), parse_criterion("harmlessness")
    keys = {Question("p", "x", "y", c).key("j") for c in (None, helpful, harmless)}
    assert len(keys) == 3  # a criterion is part of the question


def test_templates_render_and_missing_placeholders_are_refused(tmp_path):
    template = Template("Q: {prompt}\n1: {first}\n2: {second}\nOn {criterion}? {{json}}")
    question = Question(" Say hi ", " one ", "two", Criterion("h", "helpfulness"))
    assert template.messages(question) == [
        {"role": "user", "content": "Q: Say hi\n1: one\n2: two\nOn helpfulness? {json}"}
    ]
    template.check(criteria=True)
    with pytest.raises(AlignkitError, match=r"asks for \{criterion\}: give --criteria"):
        template.check(criteria=False)
    refused = {
        "{prompt} {first}": r"lacks \{second\}",
        "{prompt} {first} {second}": r"lacks \{criterion\}",  # criteria given
        "{prompt} {first} {second} {criterion} {answer}": r"unknown placeholder\(s\) \{answer\}",
        "{prompt} {} {second} {criterion}": "is not a placeholder",
        "{prompt} {first} {second} {criterion} {": "literal braces",
    }
    for text, message in refused.items():
        with pytest.raises(AlignkitError, match=message):
            Template(text, source="t.txt").check(criteria=True)
    CRITERION_TEMPLATE.check(criteria=True)
    DEFAULT_TEMPLATE.check(criteria=False)
    # files: text = the user message, no system message; .json = system + user
    (tmp_path / "t.txt").write_text("{prompt}|{first}|{second}")
    assert load_template(str(tmp_path / "t.txt")) == Template(
        "{prompt}|{first}|{second}", None, str(tmp_path / "t.txt")
    )
    (tmp_path / "t.json").write_text(json.dumps({"system": "Be fair.", "user": "{prompt}"}))
    loaded = load_template(str(tmp_path / "t.json"))
    assert (loaded.system, loaded.user) == ("Be fair.", "{prompt}")
    for bad in ('{"user": 3}', '{"user": "x", "extra": 1}', "[1]", "{oops"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(AlignkitError, match="bad.json"):
            load_template(str(tmp_path / "bad.json"))
    with pytest.raises(AlignkitError, match="cannot read judge template"):
        load_template(str(tmp_path / "missing.txt"))


def test_criteria_specs():
    assert parse_criterion("harmlessness") == Criterion(
        "harmlessness", KNOWN_CRITERIA["harmlessness"]
    )
    assert KNOWN_CRITERIA["helpfulness"].startswith("Helpful, which means")  # ULMA App. B
    assert parse_criterion("style=concise and clear") == Criterion("style", "concise and clear")
    assert parse_criterion("honesty") == Criterion("honesty", "honesty")
    for bad in ("=x", "name="):
        with pytest.raises(AlignkitError, match="NAME or NAME=DESCRIPTION"):
            parse_criterion(bad)


def test_retries_with_backoff_then_success(scripted):
    scripted.script = [(503, 0), (429, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=2, retry_wait=0.01)
    assert judge.ask(Question("p", "x", "y")) == "[[A]]" and scripted.requests == 3


def test_refused_key_is_fatal_at_once(scripted):
    scripted.script = [(401, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=3, retry_wait=0.01)
    with pytest.raises(JudgeUnavailable, match="--api-key-env"):
        judge.ask(Question("p", "x", "y"))
    assert scripted.requests == 1


def test_bad_request_counts_as_unparseable(scripted):
    scripted.script = [(400, 0)]
    judge = HttpJudge(_url(scripted), model="m", retries=0)
    report = judge_pairs([Item("p", "x", "y")], judge, concurrency=1)
    assert report["unparseable"] == 1 and report["questions"]["rejected"] == 1


def test_build_function_judge():
    judge = build_judge(SCRIPTED)
    assert isinstance(judge, FunctionJudge) and judge.name == f"function:{SCRIPTED}"
    assert judge.ask(Question("p", "kind", "rude")) == "A"
    with pytest.raises(AlignkitError, match="cannot import the function"):
        build_judge("alignkit_no_such_module:judge")
