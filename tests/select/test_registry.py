"""The selector registry (`alignkit.select.registry`): keep rules and budgets by hand, every
built-in selector against a hand computation on the tiny model, rm-margin with a scripted
reward, the score cache, and `alignkit select NAME` end to end (then `alignkit train`)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_tiny_model, make_tokenizer, pair_rows, write_jsonl

import alignkit.rewards.selection  # noqa: F401  (registers rm-margin)
from alignkit.cli import main
from alignkit.data import Pair, Point, load_records
from alignkit.data.prompts import chat_records
from alignkit.data.tokenize import encode_records
from alignkit.errors import AlignkitError
from alignkit.models import load_causal_lm, load_tokenizer
from alignkit.scoring.dataset import score_dataset
from alignkit.scoring.forward import SequenceScorer
from alignkit.select import registry
from alignkit.select.configs import DeftSelectConfig, RealSelectConfig, SelectConfig
from alignkit.select.outputs import Selection
from alignkit.select.pipeline import run_selection
from alignkit.select.registry import (
    SELECTORS,
    ScoreRequest,
    budget_count,
    get_selector,
    keep_indices,
    resolve_keep,
    score_records,
)


def word_reward(prompts, responses) -> list[float]:
    """Scripted reward for rm-margin: +1 per "sorry", -1 per "bomb", -0.01 per character."""
    return [r.count("sorry") - r.count("bomb") - 0.01 * len(r) for r in responses]


def varied_rows(n: int) -> list[dict]:
    """pair_rows with responses that differ between records, and an extra column."""
    rows = pair_rows(n)
    for i, row in enumerate(rows):
        row["chosen"] += " kind" * (i % 3)
        row["rejected"] += " word" * (i % 5)
        row["id"] = f"row-{i}"
    return rows


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[str, list]:
    path = write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", varied_rows(8))
    return path, load_records([path])[0]


def request(records, model: str = "default", **kwargs) -> ScoreRequest:
    return ScoreRequest(list(records), model=model, precision="fp32", batch_size=3, **kwargs)


def table_of(model_spec: str, records, tokenizer, k: int | None = None) -> np.ndarray:
    """(n, K) summed log-probs by score_dataset (the hand computation's log-probs), the
    prompts in the chat template as the selectors render them for a model without a recorded
    format (`runs.chat_format`)."""
    model = load_causal_lm(model_spec).eval()
    encoded, _ = encode_records(chat_records(records, tokenizer, True), tokenizer, 512, "truncate")
    if k == 1:
        encoded = [dataclasses.replace(e, responses=e.responses[:1]) for e in encoded]
    table = score_dataset(
        SequenceScorer(model),
        encoded,
        batch_size=2,
        pad_id=tokenizer.pad_token_id,
        device=torch.device("cpu"),
        autocast=None,
    )
    return table.double().numpy()


# ------------------------------------------------------------- keep rules and budgets


def test_keep_indices_lowest_highest_by_hand():
    scores = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    assert keep_indices(scores, 2, "lowest").tolist() == [1, 2]
    assert keep_indices(scores, 2, "highest").tolist() == [3, 4]
    assert keep_indices(scores, 5, "lowest").tolist() == [0, 1, 2, 3, 4]
    assert keep_indices(scores, 0, "highest").tolist() == []
    with pytest.raises(AlignkitError, match="cannot keep 6 of 5"):
        keep_indices(scores, 6, "lowest")
    with pytest.raises(AlignkitError, match="NaN"):
        keep_indices(np.array([1.0, math.nan]), 1, "lowest")
    with pytest.raises(AlignkitError, match="lowest / highest / near-zero"):
        keep_indices(scores, 1, "smallest")  # type: ignore[arg-type]


def test_keep_near_zero_takes_the_smallest_magnitudes():
    scores = np.array([-5.0, -0.02, 0.01, 3.0, -0.5, 0.4])
    assert keep_indices(scores, 2, "near-zero").tolist() == [1, 2]
    assert keep_indices(scores, 4, "near-zero").tolist() == [1, 2, 4, 5]
    # the review's case: keep 1 of [-5, -0.01, 0.01, 5] is one of the two pairs near 0
    tied = np.array([-5.0, -0.01, 0.01, 5.0])
    picks = {keep_indices(tied, 1, "near-zero", seed=s).tolist()[0] for s in range(12)}
    assert picks == {1, 2}  # a tie on |score|, ordered by the seed


def test_reward_gap_rules_keep_what_they_say():
    """Hand-made gaps: uncertain (the default) keeps the smallest |gap|, misranked the most
    negative (the model prefers the rejected answer), confident the most positive."""
    gaps = np.array([-5.0, -0.02, 0.01, 3.0, -0.5, 0.4])
    gap = get_selector("reward-gap")
    assert gap.keep_for({}) == "near-zero"
    rules = {
        None: [1, 2],  # the default = uncertain
        "uncertain": [1, 2],
        "near-zero": [1, 2],
        "misranked": [0, 4],
        "lowest": [0, 4],
        "confident": [3, 5],
        "highest": [3, 5],
    }
    for name, want in rules.items():
        assert keep_indices(gaps, 2, resolve_keep("reward-gap", {}, name)).tolist() == want
    assert get_selector("rm-margin").keep_for({}) == "highest"  # confident, as before
    assert resolve_keep("rm-margin", {}, "uncertain") == "near-zero"
    with pytest.raises(AlignkitError, match="misranked .= lowest"):
        resolve_keep("reward-gap", {}, "hardest")
    with pytest.raises(AlignkitError, match="keep must be lowest, highest, near-zero, got"):
        resolve_keep("length", {}, "misranked")  # names of a margin's rules: margins only


def test_ties_at_the_cut_follow_a_seeded_shuffle():
    scores = np.array([0.0, 0.0, 0.0, 0.0, 1.0, -1.0])
    seen = set()
    for seed in range(12):
        perm = np.random.default_rng(seed).permutation(6)
        tied = [int(i) for i in perm if scores[i] == 0.0]  # the ties in shuffled order
        want = sorted([5, *tied[:2]])
        got = keep_indices(scores, 3, "lowest", seed=seed).tolist()
        assert got == want
        assert keep_indices(scores, 3, "lowest", seed=seed).tolist() == got  # deterministic
        high = keep_indices(scores, 2, "highest", seed=seed).tolist()
        assert high == sorted([4, tied[0]])
        seen.add(tuple(got))
    assert len(seen) > 1  # ties do not always favour the low indices


def test_budget_count():
    assert budget_count(10, 0.25, None) == 3  # 2.5 rounds half up
    assert budget_count(10, None, 4) == 4
    assert budget_count(3, 0.05, None) == 1  # at least one
    assert budget_count(7, 1.0, None) == 7
    for fraction, count, message in (
        (0.5, 3, "not both"),
        (None, None, "give a budget"),
        (None, 0, "1..10"),
        (None, 11, "1..10"),
        (0.0, None, r"\(0, 1\]"),
        (1.5, None, r"\(0, 1\]"),
    ):
        with pytest.raises(AlignkitError, match=message):
            budget_count(10, fraction, count)
    with pytest.raises(AlignkitError, match="no records"):
        budget_count(0, 0.5, None)


# ------------------------------------------------------------- the registry itself


def test_registry_names_options_and_keep_rules():
    assert set(SELECTORS) >= {"random", "deft", "real", "reward-gap", "perplexity", "length"}
    assert "rm-margin" in SELECTORS  # registered by alignkit.rewards.selection
    with pytest.raises(AlignkitError, match="unknown selector 'best'; choose random, deft"):
        get_selector("best")
    real = get_selector("real")
    assert real.keep_for({}) == "lowest" and real.keep_for({"strategy": "hard"}) == "highest"
    assert callable(real.default_keep) and real.default_keep({"strategy": "hard"}) == "highest"
    assert resolve_keep("real", {"strategy": "hard"}, "lowest") == "lowest"  # --keep wins
    assert resolve_keep("length", {}) == "highest" and resolve_keep("deft", None) == "lowest"
    assert get_selector("deft").resolve_options({"form": "prob"}) == {
        "form": "prob",
        "score": "chosen",
    }
    with pytest.raises(AlignkitError, match="unknown option"):
        get_selector("deft").resolve_options({"strategy": "easy"})
    with pytest.raises(AlignkitError, match="choose easy, hard"):
        real.keep_for({"strategy": "centroid"})
    points = [Point("p", "y", 1.0, source="x:1")]
    with pytest.raises(AlignkitError, match="x:1 is a point"):
        score_records("deft", request(points))


def test_register_is_open(monkeypatch):
    monkeypatch.setitem(SELECTORS, "custom", SELECTORS["random"])
    selector = registry.Selector(
        "custom",
        "highest",
        False,
        lambda req: np.arange(len(req.records)) * 2.0,
        "doubles",
        reads_labels=False,
        label_use="it scores the record's position only",
    )
    registry.register(selector)
    records = [Pair("p", f"a{i}", "b", f"f:{i}") for i in range(4)]
    assert score_records("custom", request(records)).tolist() == [0.0, 2.0, 4.0, 6.0]
    assert get_selector("custom").keep_for() == "highest"


# ------------------------------------------------------------- every selector by hand


def test_random_is_seeded(pairs):
    _, records = pairs

    def subset(seed: int) -> list[int]:
        scores = score_records("random", request(records, seed=seed))
        assert ((scores >= 0) & (scores < 1)).all()
        return keep_indices(scores, 4, get_selector("random").keep_for(), seed).tolist()

    assert subset(1) == subset(1)
    assert subset(1) != subset(2)


def test_length_by_hand(pairs, tiny_model):
    _, records = pairs
    tokenizer = load_tokenizer(tiny_model)

    def n(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chosen = score_records("length", request(records, tiny_model))
    both = score_records("length", request(records, tiny_model, options={"what": "pair"}))
    assert chosen.tolist() == [n(r.chosen) for r in records]
    assert both.tolist() == [n(r.chosen) + n(r.rejected) for r in records]
    points = [Point("p", "one two", 1.0, source="x:1")]
    assert score_records("length", request(points, tiny_model)).tolist() == [n("one two")]


def test_perplexity_by_hand(pairs, tiny_model):
    _, records = pairs
    tokenizer = load_tokenizer(tiny_model)
    model = load_causal_lm(tiny_model).eval()
    # the prompts as training renders them: the chat template (tiny_model has one)
    encoded, _ = encode_records(chat_records(records, tokenizer, True), tokenizer, 512, "truncate")
    assert encoded[0].prompt != encode_records(records, tokenizer, 512, "truncate")[0][0].prompt
    want = []
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e.prompt + e.responses[0]])
            logps = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            token = logps.gather(1, ids[0, 1:, None]).squeeze(1)[len(e.prompt) - 1 :]
            want.append(math.exp(-float(token.sum()) / len(e.responses[0])))
    got = score_records("perplexity", request(records, tiny_model))
    assert np.allclose(got, want, rtol=1e-4)


@pytest.fixture(scope="module")
def other_models(tmp_path_factory, tiny_model) -> dict[str, str]:
    """A second random model, a LoRA adapter on tiny_model and a full fine-tuning run whose
    summary names tiny_model as its base."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("models")
    other = root / "other"
    make_tiny_model(other, len(make_tokenizer(other)), seed=1)
    adapter = root / "adapter"
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_causal_lm(tiny_model), lora).save_pretrained(adapter)
    run = root / "run"
    make_tiny_model(run / "model", len(make_tokenizer(run / "model")), seed=2)
    (run / "summary.json").write_text(json.dumps({"base_model": tiny_model}))
    return {"other": str(other), "adapter": str(adapter), "run": str(run)}


def test_reward_gap_by_hand(pairs, tiny_model, other_models):
    _, records = pairs
    tokenizer = load_tokenizer(tiny_model)
    base = table_of(tiny_model, records, tokenizer)
    other = table_of(other_models["other"], records, tokenizer)

    def gap(policy, ref=None):
        out = policy[:, 0] - policy[:, 1]
        return out if ref is None else out - (ref[:, 0] - ref[:, 1])

    # "none": no reference, for any model (warned: test_reward_gap_without_a_reference)
    none = request(records, other_models["other"], options={"ref": "none"})
    assert np.allclose(score_records("reward-gap", none), gap(other), atol=1e-4)
    # an explicit reference
    explicit = request(records, other_models["other"], options={"ref": tiny_model})
    assert np.allclose(score_records("reward-gap", explicit), gap(other, base), atol=1e-4)
    # a LoRA adapter: the reference is its base (adapter disabled)
    adapter = table_of(other_models["adapter"], records, tokenizer)
    assert not np.allclose(adapter, base, atol=1e-3)  # the adapter changes the model
    got = score_records("reward-gap", request(records, other_models["adapter"]))
    assert np.allclose(got, gap(adapter, base), atol=1e-4)
    # a full fine-tuning run: the reference is the base_model of its summary
    run = table_of(other_models["run"], records, tokenizer)
    got = score_records("reward-gap", request(records, other_models["run"]))
    assert np.allclose(got, gap(run, base), atol=1e-4)


def test_reward_gap_without_a_reference(pairs, tiny_model, caplog):
    """A model without a base and no --ref is refused (its gap would be a length-confounded
    log-prob difference); --ref none scores that difference, with a warning."""
    _, records = pairs
    for model in (tiny_model, "default"):  # a plain model folder; the embedded model
        with pytest.raises(AlignkitError, match="has no base model.*lengths.*--ref none"):
            score_records("reward-gap", request(records, model))
    with caplog.at_level("WARNING", logger="alignkit.select.scorers"):
        score_records("reward-gap", request(records, tiny_model, options={"ref": "none"}))
    assert "ref none" in caplog.text and "lengths dominate" in caplog.text


def test_deft_and_real_match_their_verbs(pairs, tiny_model, tmp_path):
    """The scores of the registry (the study's) are the ones `select deft|real` filter on."""
    path, records = pairs
    config = DeftSelectConfig(
        data=[path], output=str(tmp_path / "d"), model=tiny_model, precision="fp32"
    )
    deft = run_selection("deft", config)
    got = score_records("deft", request(records, tiny_model))
    assert np.allclose(got, [row["score"] for row in deft.scores], atol=1e-6)
    margin = score_records("deft", request(records, tiny_model, options={"score": "margin"}))
    assert not np.allclose(margin, got)
    cache = tmp_path / "cache"
    for strategy in ("easy", "hard"):
        config = RealSelectConfig(
            data=[path],
            output=str(tmp_path / strategy),
            model=tiny_model,
            strategy=strategy,
            precision="fp32",
            cache_dir=str(cache / "embeddings"),
        )
        real = run_selection("real", config)
        req = request(records, tiny_model, options={"strategy": strategy}, cache_dir=str(cache))
        sim = score_records("real", req)
        assert np.allclose(sim, [row["similarity"] for row in real.scores], atol=1e-6)
        keep = keep_indices(sim, 4, get_selector("real").keep_for({"strategy": strategy}))
        assert keep.tolist() == [row["index"] for row in real.scores if row["selected"]]


def test_a_select_hook_writes_its_own_rows_report_and_files(pairs, tmp_path, monkeypatch, capsys):
    """A selector's `select` hook replaces the default selection: `run_selection` (and the
    CLI) writes the rows, the report and the extra files of the `Selection` it returns."""
    path, records = pairs
    seen = []

    def select(recs: list, config: SelectConfig) -> Selection:
        seen.append((len(recs), config.count))
        first = {"prompt": recs[0].prompt, "n": len(recs)}
        return Selection(
            subset=[first],
            scores=[{"index": i} for i in range(len(recs))],
            dropped=[],
            summary={"kept": 1, "seconds": None, "extra": "section"},
            markdown=lambda s: f"# hooked: kept {s['kept']}, {s['extra']}\n",
            files={"extra.txt": lambda p: p.write_text("an extra file\n")},
            message="hooked selection done",
        )

    hooked = dataclasses.replace(SELECTORS["random"], name="hooked", select=select)
    monkeypatch.setitem(SELECTORS, "hooked", hooked)
    out = tmp_path / "hooked"
    assert main(["select", "hooked", "--data", path, "--output", str(out), "--count", "2"]) == 0
    assert capsys.readouterr().out == "hooked selection done\n"
    assert seen == [(len(records), 2)]
    assert lines(out / "subset.jsonl") == [{"prompt": records[0].prompt, "n": 8}]
    assert lines(out / "scores.jsonl") == [{"index": i} for i in range(8)]
    assert (out / "dropped.jsonl").read_text() == ""
    assert (out / "extra.txt").read_text() == "an extra file\n"
    report = json.loads((out / "report.json").read_text())
    assert report["extra"] == "section" and isinstance(report["seconds"], float)
    assert (out / "report.md").read_text() == "# hooked: kept 1, section\n"
    # without the hook, the same selector is the default selection of `random`
    plain = run_selection("random", SelectConfig(data=[path], output=str(tmp_path / "r"), count=2))
    assert sum(row["kept"] for row in plain.scores) == 2 and len(plain.subset) == 2
    assert set(plain.files) == {"scores_hist.png"} and "kept 2 of 8" in plain.message


def test_rm_margin_with_a_scripted_reward(pairs):
    _, records = pairs
    spec = f"{__name__}:word_reward"
    got = score_records("rm-margin", request(records, options={"reward_model": spec}))
    chosen = word_reward(None, [r.chosen for r in records])
    rejected = word_reward(None, [r.rejected for r in records])
    assert np.allclose(got, np.array(chosen) - np.array(rejected))
    assert get_selector("rm-margin").keep_for() == "highest"
    with pytest.raises(AlignkitError, match="needs a reward model"):
        score_records("rm-margin", request(records))


# ------------------------------------------------------------------------- the cache


def test_scores_are_cached_by_content(pairs, tiny_model, tmp_path, monkeypatch):
    _, records = pairs
    cache = str(tmp_path / "cache")
    first = score_records("perplexity", request(records, tiny_model, cache_dir=cache))
    assert len(list(Path(cache).glob("perplexity-*.npy"))) == 1

    def fail(req):
        raise AssertionError("the model ran again")

    monkeypatch.setitem(
        SELECTORS, "perplexity", dataclasses.replace(SELECTORS["perplexity"], score=fail)
    )
    again = score_records("perplexity", request(records, tiny_model, cache_dir=cache))
    assert np.array_equal(first, again) and again.dtype == np.float64
    moved = [dataclasses.replace(r, source=f"elsewhere:{i}") for i, r in enumerate(records)]
    same = score_records("perplexity", request(moved, tiny_model, cache_dir=cache, seed=7))
    assert np.array_equal(first, same)  # content, not file names; the seed does not matter
    with pytest.raises(AssertionError, match="ran again"):  # other records: computed
        score_records("perplexity", request(records[:-1], tiny_model, cache_dir=cache))
    with pytest.raises(AssertionError, match="ran again"):  # another max_length: computed
        score_records("perplexity", request(records, tiny_model, cache_dir=cache, max_length=16))
    # the random control depends on the seed, and only on it
    r1 = score_records("random", request(records, cache_dir=cache, seed=1))
    r2 = score_records("random", request(records, cache_dir=cache, seed=2))
    assert not np.array_equal(r1, r2)
    assert np.array_equal(r1, score_records("random", request(records, cache_dir=cache, seed=1)))


# ------------------------------------------------------------------------- the CLI


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_select_writes_everything_and_the_subset_trains(pairs, tiny_model, tmp_path, capsys):
    path, records = pairs
    rows = varied_rows(8)
    out = tmp_path / "gap"
    args = ["select", "reward-gap", "--data", path, "--model", tiny_model, "--output", str(out),
            "--count", "3", "--keep", "highest", "--precision", "fp32", "--seed", "1",
            "--ref", "none"]  # fmt: skip
    assert main(args) == 0
    assert "kept 3 of 8 records (reward-gap, highest scores" in capsys.readouterr().out
    for name in ("subset.jsonl", "scores.jsonl", "dropped.jsonl", "report.json", "report.md"):
        assert (out / name).is_file(), name
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "scores_hist.png")).ndim == 3
    subset, scores, dropped = (
        lines(out / f) for f in ("subset.jsonl", "scores.jsonl", "dropped.jsonl")
    )
    report = json.loads((out / "report.json").read_text())
    assert len(scores) == 8 and [s["index"] for s in scores] == list(range(8))
    assert [s["source"] for s in scores] == [f"{path}:{i + 1}" for i in range(8)]
    kept = [s for s in scores if s["kept"]]
    assert len(kept) == 3 and min(s["score"] for s in kept) >= max(
        s["score"] for s in scores if not s["kept"]
    )
    assert subset == [rows[s["index"]] for s in kept]  # original columns (id too), data order
    assert [d["index"] for d in dropped] == [s["index"] for s in scores if not s["kept"]]
    assert all(d["record"] == rows[d["index"]] and "score" in d for d in dropped)
    tokenizer = load_tokenizer(tiny_model)
    table = table_of(tiny_model, records, tokenizer)
    assert np.allclose([s["score"] for s in scores], table[:, 0] - table[:, 1], atol=1e-4)
    assert report["kept"] == 3 and report["keep"] == "highest" and report["count"] == 3
    assert report["cut"] == min(s["score"] for s in kept)
    assert "scores_hist.png" in (out / "report.md").read_text()
    run = tmp_path / "run"
    train = ["train", "--method", "dpo", "--data", str(out / "subset.jsonl"), "--model",
             tiny_model, "--output", str(run), "--max-steps", "1", "--batch-size", "2",
             "--no-save-model"]  # fmt: skip
    assert main(train) == 0 and (run / "metrics.jsonl").exists()


def test_cli_reward_gap_rules(pairs, tiny_model, tmp_path, capsys):
    """`select reward-gap`: the default keeps the pairs nearest 0, --keep misranked the
    lowest gaps; without a reference the verb refuses (exit 2) and names --ref."""
    path, _ = pairs
    base = ["select", "reward-gap", "--data", path, "--model", tiny_model, "--count", "3",
            "--precision", "fp32"]  # fmt: skip
    for keep, order in (([], abs), (["--keep", "misranked"], lambda g: g)):
        out = tmp_path / f"gap{len(keep)}"
        assert main([*base, *keep, "--ref", "none", "--output", str(out)]) == 0
        scores = lines(out / "scores.jsonl")
        gaps = [s["score"] for s in scores]
        assert len(set(gaps)) == 8  # no ties: the kept set is fixed
        want = sorted(sorted(range(8), key=lambda i: order(gaps[i]))[:3])
        assert [s["index"] for s in scores if s["kept"]] == want
        report = json.loads((out / "report.json").read_text())
        assert report["keep"] == ("lowest" if keep else "near-zero")
    assert "within +-" in (tmp_path / "gap0" / "report.md").read_text()  # the cut of |gap|
    capsys.readouterr()
    assert main([*base, "--output", str(tmp_path / "no")]) == 2
    assert "--ref none" in capsys.readouterr().err


def test_cli_model_free_selectors_and_errors(pairs, tiny_model, tmp_path, capsys):
    path, _ = pairs
    base = ["--data", path, "--output", str(tmp_path / "o")]
    assert main(["select", "random", *base, "--fraction", "0.5", "--seed", "3"]) == 0
    first = (tmp_path / "o" / "subset.jsonl").read_text()
    assert main(["select", "random", *base, "--fraction", "0.5", "--seed", "4"]) == 0
    assert (tmp_path / "o" / "subset.jsonl").read_text() != first
    spec = f"{__name__}:word_reward"
    assert main(["select", "rm-margin", *base, "--count", "2", "--reward-model", spec]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["selector"] == "rm-margin" and report["keep"] == "highest"
    assert report["options"]["reward_model"] == spec
    assert main(["select", "length", *base, "--model", tiny_model, "--count", "2",
                 "--what", "pair", "--keep", "lowest"]) == 0  # fmt: skip
    capsys.readouterr()
    for args, message in (
        (["random", *base], "give one budget"),
        (["random", *base, "--fraction", "0.5", "--count", "2"], "give one budget"),
        (["rm-margin", *base, "--count", "2"], "no reward model"),
        (["random", *base, "--count", "9"], "1..8"),
    ):
        assert main(["select", *args]) == 2
        assert message in capsys.readouterr().err


def test_deft_and_real_verbs_take_the_common_flags(pairs, tiny_model, tmp_path, capsys):
    path, _ = pairs
    out = tmp_path / "deft"
    args = ["select", "deft", "--data", path, "--model", tiny_model, "--output", str(out),
            "--precision", "fp32", "--fraction", "0.25", "--keep", "highest"]  # fmt: skip
    assert main(args) == 0
    assert "kept 2 of 8 examples (highest R_Q" in capsys.readouterr().out
    scores, dropped = lines(out / "scores.jsonl"), lines(out / "dropped.jsonl")
    kept = [s["score"] for s in scores if s["kept"]]
    assert len(kept) == 2 and min(kept) >= max(s["score"] for s in scores if not s["kept"])
    assert len(dropped) == 6 and all("record" in d and "score" in d for d in dropped)
    real = ["select", "real", "--data", path, "--model", tiny_model, "--precision", "fp32",
            "--cache-dir", str(tmp_path / "emb")]  # fmt: skip
    out = tmp_path / "real"
    assert main([*real, "--output", str(out), "--count", "3", "--keep", "highest"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["strategy"] == "hard" and report["selected"] == 3
    assert len(lines(out / "dropped.jsonl")) == 5
    capsys.readouterr()
    bad = [*real, "--output", str(out), "--strategy", "hard", "--keep", "lowest"]
    assert main(bad) == 2 and "contradicts --strategy hard" in capsys.readouterr().err
    both = [*real, "--output", str(out), "--count", "3", "--fraction", "0.5"]
    assert main(both) == 2 and "not both" in capsys.readouterr().err


# ------------------------------------------------------------- what a selector needs


def _option_sets(selector: registry.Selector) -> list[dict]:
    """Every combination of the selector's option choices (one empty set without choices)."""
    sets: list[dict] = [{}]
    for name, allowed in selector.choices.items():
        sets = [{**s, name: value} for s in sets for value in allowed]
    return sets


def _label_free() -> list[tuple[str, dict]]:
    return [
        (name, options)
        for name, selector in SELECTORS.items()
        for options in _option_sets(selector)
        if not selector.reads_labels_for(options)
    ]


def test_every_selector_declares_whether_it_reads_labels(monkeypatch):
    """Each registered selector says, for every choice of its options, whether it reads the
    pool's labels, and why; `register` refuses a selector that does not say."""
    for name, selector in SELECTORS.items():
        assert selector.label_use, name
        for options in _option_sets(selector):
            assert isinstance(selector.reads_labels_for(options), bool), (name, options)
    reads = {n: SELECTORS[n].reads_labels_for(o) for n, o in [(n, {}) for n in SELECTORS]}
    assert reads == {
        "random": False,
        "deft": True,
        "real": False,
        "reward-gap": True,
        "perplexity": True,
        "length": True,  # what=chosen
        "rm-margin": True,
    }
    assert not SELECTORS["length"].reads_labels_for({"what": "pair"})
    monkeypatch.setitem(SELECTORS, "custom", SELECTORS["random"])
    silent = registry.Selector("custom", "lowest", False, lambda r: np.zeros(1), "undeclared")
    with pytest.raises(AlignkitError, match="declare reads_labels"):
        registry.register(silent)
    with pytest.raises(AlignkitError, match="does not declare"):
        silent.reads_labels_for()


def _swapped(records: list) -> list:
    return [dataclasses.replace(r, chosen=r.rejected, rejected=r.chosen) for r in records]


def _subset(name: str, options: dict, records: list, model: str) -> list[int]:
    scores = score_records(name, request(records, model, options=options, seed=3))
    keep = get_selector(name).keep_for(options)
    return sorted(keep_indices(scores, 3, keep, seed=3).tolist())


@pytest.mark.parametrize(("name", "options"), _label_free(), ids=str)
def test_a_label_free_selector_keeps_the_same_pairs_when_the_labels_are_swapped(
    name, options, pairs, tiny_model
):
    """Swapping chosen and rejected in every pool pair leaves the subset unchanged: the
    selector could have picked these pairs before anyone labelled them."""
    _, records = pairs
    assert _subset(name, options, records, tiny_model) == _subset(
        name, options, _swapped(records), tiny_model
    )


def test_the_swap_test_catches_a_label_reading_selector(pairs, tiny_model):
    """The same check fails for `length` of the chosen answer (it reads the labels): the
    chosen answers have 0-2 extra words, the rejected ones 0-4, so the longest differ."""
    _, records = pairs
    assert _subset("length", {}, records, tiny_model) != _subset(
        "length", {}, _swapped(records), tiny_model
    )
