"""Prompts: building them, rendering them to text, and writing them as keys or JSON.

A prompt is plain text or a tuple of chat messages `{"role", "content"}` (`records.Prompt`).
Rendered for a model it is the chat template's text (with the generation prompt) or the plain
text itself: `render_prompt`. Some readers need a different text, and each has its function:

- `render_prompt`: model input; a chat prompt needs the tokenizer's chat template.
- `prompt_token_text`: the text whose tokens `alignkit data inspect` counts; like
  `render_prompt`, but without a chat template a chat prompt counts as `prompt_contents`.
- `render_conversation`: a prompt and its response as one text, for reward models that read
  the whole conversation (the template without a generation prompt, or the contents + response).
- `prompt_transcript`: "role: content" lines, shown to an LLM judge inside its own question.

Everything here is plain Python: it takes any Hugging Face tokenizer, and imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from alignkit.data.records import Message, Prompt, Record
from alignkit.errors import AlignkitError

# ------------------------------------------------------------------ building prompts


HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def hh_messages(text: str) -> Prompt | None:
    """An Anthropic HH-RLHF transcript prompt ("\\n\\nHuman: q\\n\\nAssistant: a ...
    \\n\\nHuman: q2\\n\\nAssistant:") as its chat turns (user, assistant, ..., user),
    the final empty "Assistant:" being the generation prompt; None for any other text."""
    parts = HH_TURN.split(text)
    if len(parts) < 5 or parts[0].strip() or parts[-2] != "Assistant" or parts[-1].strip():
        return None
    roles, contents = parts[1:-2:2], parts[2:-2:2]
    if any(role != ("Human", "Assistant")[i % 2] for i, role in enumerate(roles)):
        return None
    return tuple(
        {"role": HH_ROLES[role], "content": content.strip()}
        for role, content in zip(roles, contents, strict=True)
    )


def as_prompt(text_or_messages: Prompt | str, chat: bool) -> Prompt:
    """A user query as a prompt: wrapped as a chat message when `chat` is True (an HH-RLHF
    transcript becomes its turns, `hh_messages`)."""
    if chat and isinstance(text_or_messages, str):
        turns = hh_messages(text_or_messages)
        return turns or ({"role": "user", "content": text_or_messages},)
    return text_or_messages


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_records(records: list[Record], tokenizer: Any, chat: bool) -> list[Record]:
    """`records` with their plain-text prompts as a user chat message (`as_prompt`) when
    `chat` and the tokenizer has a chat template (the rule of every verb: `--chat`), else
    unchanged."""
    if not (chat and has_chat_template(tokenizer)):
        return records
    return [dataclasses.replace(r, prompt=as_prompt(r.prompt, True)) for r in records]


def messages_to_prompt(messages: list[dict[str, str]], tokenizer: Any) -> Prompt:
    """Chat messages as a prompt: rendered by the chat template when the tokenizer has one,
    else as an HH-style transcript ("\\n\\nHuman: ...\\n\\nAssistant:") as in alignkit's data."""
    if getattr(tokenizer, "chat_template", None):
        return tuple(messages)
    speaker = {"user": "Human", "assistant": "Assistant"}
    parts = [
        m["content"] if m["role"] == "system" else f"\n\n{speaker[m['role']]}: {m['content']}"
        for m in messages
    ]
    return "".join(parts) + "\n\nAssistant:"


def conversation(prompt: Prompt, response: str) -> list[Message]:
    """The prompt + response as chat messages (plain-text prompts become one user turn)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return messages + [{"role": "assistant", "content": response}]


# ------------------------------------------------------------------ rendering to text


def render_prompt(prompt: Prompt, tokenizer: Any) -> tuple[str, bool]:
    """The prompt as model input text, and whether it was rendered by the chat template
    (such text already holds its special tokens: tokenize it with `add_special_tokens=False`).

    A chat prompt with a tokenizer that has no chat template is an error."""
    if isinstance(prompt, str):
        return prompt, False
    if not getattr(tokenizer, "chat_template", None):
        raise AlignkitError(
            "the data has chat-message prompts but the tokenizer has no chat template; "
            "use a chat model or give plain-text prompts"
        )
    text = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)
    return text, True


def prompt_contents(prompt: Prompt) -> str:
    """The prompt's text without roles: the text itself, or the messages' contents joined
    by newlines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(message["content"] for message in prompt)


def prompt_token_text(prompt: Prompt, tokenizer: Any) -> str:
    """The prompt's text for counting its tokens: `render_prompt`'s text, except that a chat
    prompt with a tokenizer without a chat template is `prompt_contents` (no error)."""
    if isinstance(prompt, str) or not getattr(tokenizer, "chat_template", None):
        return prompt_contents(prompt)
    return render_prompt(prompt, tokenizer)[0]


def render_conversation(prompt: Prompt, response: str, tokenizer: Any) -> str:
    """The prompt and its response as one text: the chat template over `conversation`
    (no generation prompt) when the tokenizer has one, else `prompt_contents` directly
    followed by the response."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(conversation(prompt, response), tokenize=False)
    return prompt_contents(prompt) + response


def prompt_transcript(prompt: Prompt) -> str:
    """The prompt as one string for a reader, not a model: the text itself, or one
    "role: content" line per chat message (no chat template)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


# ------------------------------------------------------------------ keys and JSON


def prompt_key(prompt: Prompt) -> str:
    """A string that is equal for equal prompts: the text itself, or the messages as JSON
    with sorted keys. Judge caches hash it: changing it invalidates every cache."""
    return prompt if isinstance(prompt, str) else json.dumps(list(prompt), sort_keys=True)


def prompt_json(prompt: Prompt) -> str | list[dict[str, str]]:
    """A prompt as it is written to JSON: the text, or the list of chat messages."""
    return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]


def distinct_prompts(records: Iterable[Record]) -> list[tuple[Prompt, list[Record]]]:
    """The records' distinct prompts (equal `prompt_key`) in first-seen order, each with its
    records in data order."""
    groups: dict[str, tuple[Prompt, list[Record]]] = {}
    for record in records:
        groups.setdefault(prompt_key(record.prompt), (record.prompt, []))[1].append(record)
    return list(groups.values())
