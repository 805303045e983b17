"""duet.chat_template: sandboxed jinja2 rendering and the ChatML fallback, the latter
checked against llama.cpp's built-in chatml template (marked `real`)."""

import ctypes
import os

import jinja2.exceptions
import pytest

from duet.chat_template import ChatTemplateError, render_chat, render_chatml

MODEL_PATH = "/root/.cache/duet/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"

CONVERSATION = [
    {"role": "system", "content": "You write Python."},
    {"role": "user", "content": "Sort a list, café ☕.\n\nThanks"},
    {"role": "assistant", "content": "sorted(xs)"},
    {"role": "user", "content": "And reversed?"},
]


def test_loop_controls_are_available():
    template = ("{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
                "{{ m.content }};{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}")
    assert render_chat(template, CONVERSATION) == \
        "".join(m["content"] + ";" for m in CONVERSATION[1:3])


def test_raise_exception_surfaces_as_python_error():
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="user first"):
        render_chat(template, CONVERSATION)
    assert render_chat(template, CONVERSATION[1:]) == ""


def test_template_sees_generation_flag_and_extra_variables():
    template = "{{ bos_token }}{% if add_generation_prompt %}GO{% endif %}"
    assert render_chat(template, [], True, bos_token="<s>") == "<s>GO"
    assert render_chat(template, [], False, bos_token="<s>") == "<s>"


def test_tojson_keeps_unicode():
    assert render_chat("{{ messages[1].content | tojson }}", CONVERSATION) == \
        '"Sort a list, café ☕.\\n\\nThanks"'


def test_template_is_sandboxed():
    for escape in ("{{ messages.append(1) }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}"):
        with pytest.raises(ChatTemplateError, match="SecurityError") as error:
            render_chat(escape, CONVERSATION)
        assert isinstance(error.value.__cause__, jinja2.exceptions.SecurityError)


@pytest.mark.parametrize("broken", ["{% endif %}", "{{ messages[0]['content'] + 1 }}", "{{ 1 / 0 }}"])
def test_broken_template_is_a_clear_error(broken):
    # A model file's template that does not compile or fails while rendering (found by fuzzing).
    with pytest.raises(ChatTemplateError, match="chat template fails"):
        render_chat(broken, CONVERSATION)


def test_missing_template_falls_back_to_chatml():
    assert render_chat(None, CONVERSATION) == render_chatml(CONVERSATION)
    assert render_chat("", CONVERSATION, False) == render_chatml(CONVERSATION, False)


def test_chatml_wraps_each_turn():
    text = render_chatml(CONVERSATION, add_generation_prompt=True)
    turns = text.split("<|im_start|>")[1:]
    assert [t.split("\n", 1)[0] for t in turns] == [m["role"] for m in CONVERSATION] + ["assistant"]
    assert [t.split("\n", 1)[1] for t in turns[:-1]] == \
        [m["content"] + "<|im_end|>\n" for m in CONVERSATION]
    assert turns[-1] == "assistant\n"


def test_message_without_role_is_rejected():
    with pytest.raises(ValueError, match="role"):
        render_chat(None, [{"content": "hi"}])


def llama_cpp_chatml(messages, add_generation_prompt):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    keep = [(m["role"].encode(), m["content"].encode()) for m in messages]
    chat = (llama_cpp.llama_chat_message * len(keep))(
        *[llama_cpp.llama_chat_message(role=r, content=c) for r, c in keep])
    buffer = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(b"chatml", chat, len(keep), add_generation_prompt,
                                            buffer, len(buffer))
    assert 0 <= n <= len(buffer)
    return buffer.raw[:n].decode()


@pytest.mark.real
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chatml_matches_llama_cpp(add_generation_prompt):
    assert render_chatml(CONVERSATION, add_generation_prompt) == \
        llama_cpp_chatml(CONVERSATION, add_generation_prompt)


@pytest.mark.real
def test_qwen_template_renders_chatml_when_a_system_turn_is_given():
    if not os.path.exists(MODEL_PATH):
        pytest.skip(f"model file {MODEL_PATH} not present")
    from gguf_metadata import read_tokenizer_metadata
    from duet.tokenizer import Tokenizer
    tokenizer = Tokenizer.from_metadata(read_tokenizer_metadata(MODEL_PATH))
    assert tokenizer.chat_template
    for flag in (True, False):
        assert tokenizer.apply_chat_template(CONVERSATION, flag) == render_chatml(CONVERSATION, flag)
