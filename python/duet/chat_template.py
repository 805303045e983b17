"""Chat prompt rendering: the GGUF's jinja2 chat template in a sandbox, as Hugging Face
transformers renders it, or ChatML when the file carries no template."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """A chat template refused the conversation (its raise_exception was called), or the
    model file's template is broken."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _to_json(value: Any, indent: int | None = None) -> str:
    # transformers' tojson keeps non-ASCII text as is, unlike jinja2's built-in filter.
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _to_json
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


def render_chatml(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """ChatML, as llama.cpp's built-in "chatml" template writes it."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def render_chat(template: str | None, messages: list[dict],
                add_generation_prompt: bool = True, **variables: Any) -> str:
    """Render messages ([{"role": ..., "content": ...}, ...]) through template, or
    through ChatML when template is None or empty."""
    for message in messages:
        if "role" not in message:
            raise ValueError(f"chat message without a role: {message!r}")
    if not template:
        return render_chatml(messages, add_generation_prompt)
    try:
        return _compile(template).render(messages=messages,
                                         add_generation_prompt=add_generation_prompt,
                                         **variables)
    except ChatTemplateError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as error:
        # The template is code from the model file: its failure is a bad file, not a bug here.
        raise ChatTemplateError(f"the model's chat template fails: {type(error).__name__}: {error}") from error
