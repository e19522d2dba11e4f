"""The principles of PLE (`alignkit.online.principles`): the papers' text, files, modes."""

from __future__ import annotations

import pytest
from conftest import chat

from alignkit.errors import AlignkitError
from alignkit.online.config import PLEConfig
from alignkit.online.principles import apply_principle, builtin_principles, load_principle

# ------------------------------------------------------------------ principles


# The PLE paper's principle prompts, copied from the paper by hand (not from the package):
# appendix A.3 "Principle prompts for IMDb and TL;DR" (p. 16), verbatim, and sec. 4.1's HH
# rules (p. 3; four line starts cut off in the extracted text are restored, see
# src/alignkit/principles/README.md).
PAPER_IMDB = (
    "Write a positive and enthusiastic review with a natural and sincere tone. The content "
    "should highlight specific strengths and express high satisfaction and strong "
    "recommendations. Input text:"
)
PAPER_TLDR = (
    "You are an expert summarizer. Your task is to create a concise TL;DR summary for the "
    "provided text. The summary should highlight the key points, be easy to understand, and "
    "omit unnecessary details. Input Text:"
)
PAPER_HH = (
    "Your answers should follow these rules:\n"
    "1. Ethical: You should actively refrain users on illegal, immoral, or harmful topics.\n"
    "2. Informative: You should provide users with accurate, relevant, and up-to-date "
    "information in responses.\n"
    "3. Helpful: Your responses should be positive, interesting, helpful and engaging."
)


def test_builtin_principles_are_the_papers_text() -> None:
    found = builtin_principles()
    assert set(found) == {"hh", "imdb", "tldr", "general"}
    assert found["imdb"] == PAPER_IMDB  # character for character
    assert found["tldr"] == PAPER_TLDR
    assert found["hh"] == PAPER_HH
    assert load_principle("imdb") == PAPER_IMDB
    assert found["general"] != PAPER_HH  # alignkit's own wording, kept next to the paper's
    defaults = PLEConfig()
    assert (defaults.principle, defaults.principle_mode) == ("hh", "prefix")  # paper: [p, x]
    # [p, x] for the IMDb task: the principle, a blank line, then the review prefix
    assert apply_principle("I rented this movie", PAPER_IMDB, "prefix") == (
        PAPER_IMDB + "\n\nI rented this movie"
    )


def test_principle_from_file_and_errors(tmp_path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("  Be brief.\n")
    assert load_principle(str(path)) == "Be brief."
    (tmp_path / "empty.txt").write_text(" \n")
    with pytest.raises(AlignkitError, match="empty"):
        load_principle(str(tmp_path / "empty.txt"))
    with pytest.raises(AlignkitError, match="neither a built-in"):
        load_principle("no-such-principle")


def test_principle_modes() -> None:
    assert apply_principle(chat("hi"), "P", "system") == (
        {"role": "system", "content": "P"},
        {"role": "user", "content": "hi"},
    )
    with_system = ({"role": "system", "content": "S"}, *chat("hi"))
    assert apply_principle(with_system, "P", "system")[0] == {"role": "system", "content": "P\n\nS"}
    turns = (*chat("one"), {"role": "assistant", "content": "ok"}, *chat("two"))
    prefixed = apply_principle(turns, "P", "prefix")  # [p, x]: before the whole dialogue
    assert prefixed[0]["content"] == "P\n\none" and prefixed[2]["content"] == "two"
    assert apply_principle(with_system, "P", "prefix") == (
        {"role": "system", "content": "S"},
        {"role": "user", "content": "P\n\nhi"},
    )
    assert apply_principle("Q:", "P", "prefix") == "P\n\nQ:"
    with pytest.raises(AlignkitError, match="prefix"):
        apply_principle("Q:", "P", "system")
