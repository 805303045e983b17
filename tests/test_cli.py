"""The duet command line: `python -m duet ...` in a subprocess over tiny models (run,
chat, plan, bench, errors, Ctrl-C), and main() in process."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from duet import cli, models
from duet.engine import Engine
from duet_subprocess import duet_env, run_duet, sigint_default, streaming_budget, tiny_pair, wide_target  # noqa: F401 (fixtures)


def test_models_list_in_a_subprocess(tmp_path):
    result = run_duet("models", "list", home=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    for status in models.list_models():
        (row,) = [r for r in rows if r.startswith(status.name + " ")]
        assert status.role in row and str(tmp_path / Path(status.path).name) in row
        assert row.split()[-2] == "no"  # empty DUET_HOME: nothing downloaded


@pytest.mark.parametrize("args", [("bogus",), ("models",), ("models", "frobnicate")])
def test_bad_usage_is_one_line_on_stderr(tmp_path, args):
    result = run_duet(*args, home=tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("duet")


def test_unknown_model_pull_is_one_line_and_exit_1(tmp_path):
    result = run_duet("models", "pull", "no-such-model", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "no-such-model" in result.stderr and "qwen2.5-coder-0.5b" in result.stderr


def test_verbose_shows_the_traceback(tmp_path):
    result = run_duet("--verbose", "models", "pull", "no-such-model", home=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_pull_without_names_fetches_the_default_pair(monkeypatch, tmp_path, capsys):
    pulled = []
    monkeypatch.setattr(models, "pull", lambda name, progress=True: pulled.append((name, progress)) or tmp_path / name)
    assert cli.main(["models", "pull", "--quiet"]) == 0
    assert pulled == [(name, False) for name in models.default_pair()]
    assert capsys.readouterr().out.count(str(tmp_path)) == 2


# --- duet run / chat / plan / bench on tiny models -------------------------------------------

PROMPT = "def below_zero(operations):"
N_TOKENS = 16


def pair_args(pair) -> list[str]:
    target, draft = pair
    return ["-m", str(target), "-md", str(draft), "-c", "256", "-t", "1"]


def engine_text(target, draft=None, prompt=PROMPT, **options) -> str:
    """The reference: the same generation through the Python API, in this process."""
    with Engine(target=target, draft=draft, threads=1, n_ctx=256) as engine:
        return engine.generate(prompt, max_tokens=N_TOKENS, **options).text


def assert_summary(stderr: str, with_draft: bool) -> None:
    for label in ("load time", "prompt eval time", "eval time", "total time", "tokens per second", "peak =",
                  "budget =", "bytes read ="):
        assert label in stderr, label
    assert ("mean accepted per pass" in stderr) == with_draft


def test_run_streams_the_engine_text_and_a_summary(tiny_pair):
    result = run_duet("run", *pair_args(tiny_pair), "-p", PROMPT, "-n", str(N_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == engine_text(*tiny_pair) + "\n"
    assert_summary(result.stderr, with_draft=True)


def test_run_without_draft_gives_the_same_greedy_text(tiny_pair):
    result = run_duet("run", *pair_args(tiny_pair), "--no-draft", "-p", PROMPT, "-n", str(N_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == engine_text(tiny_pair[0]) + "\n"
    assert_summary(result.stderr, with_draft=False)


def test_prompt_from_stdin_and_from_file(tiny_pair, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text(PROMPT, encoding="utf-8")
    from_stdin = run_duet("run", *pair_args(tiny_pair), "-p", "-", "-n", str(N_TOKENS), stdin=PROMPT)
    from_file = run_duet("run", *pair_args(tiny_pair), "-f", str(prompt_file), "-n", str(N_TOKENS))
    expected = engine_text(*tiny_pair) + "\n"
    assert (from_stdin.returncode, from_stdin.stdout) == (0, expected), from_stdin.stderr
    assert (from_file.returncode, from_file.stdout) == (0, expected), from_file.stderr


@pytest.mark.parametrize("draft_vocab", ["40", "0"])
def test_draft_vocabulary_changes_no_text(tiny_pair, draft_vocab):
    result = run_duet("run", *pair_args(tiny_pair), "--draft-vocab", draft_vocab, "-p", PROMPT, "-n", str(N_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == engine_text(tiny_pair[0]) + "\n"
    assert_summary(result.stderr, with_draft=True)


def test_chat_flag_wraps_the_prompt_in_the_template(tiny_pair):
    result = run_duet("run", *pair_args(tiny_pair), "--chat", "-p", "hello there", "-n", str(N_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == engine_text(*tiny_pair, prompt="hello there", chat=True) + "\n"


def test_sampling_flags_reach_the_engine(tiny_pair):
    # Target-only: with a drafter, the trees follow measured costs, so which random
    # draws a seed feeds depends on the machine's speed (the distribution does not).
    flags = ["--temp", "0.8", "--top-k", "40", "--top-p", "0.9", "--min-p", "0.05", "--seed", "3"]
    result = run_duet("run", "-m", str(tiny_pair[0]), "--no-draft", "-p", PROMPT, "-n", str(N_TOKENS), *flags)
    assert result.returncode == 0, result.stderr
    options = dict(temperature=0.8, top_k=40, top_p=0.9, min_p=0.05, seed=3)
    assert result.stdout == engine_text(tiny_pair[0], **options) + "\n"
    assert result.stdout != engine_text(tiny_pair[0]) + "\n"  # not the greedy text


def test_budget_that_streams_keeps_the_text(wide_target):
    budget = streaming_budget(wide_target, "--no-draft", "-c", "256")
    model = ["-m", str(wide_target), "--no-draft", "-c", "256", "-t", "1"]
    plan = run_duet("plan", *model, "--budget", str(budget))
    assert plan.returncode == 0, plan.stderr
    streamed = [line for line in plan.stdout.splitlines() if line.startswith("streamed layers")]
    assert streamed and "none" not in streamed[0], plan.stdout
    result = run_duet("run", *model, "--budget", str(budget), "-p", PROMPT, "-n", str(N_TOKENS))
    assert result.returncode == 0, result.stderr
    assert result.stdout == engine_text(wide_target) + "\n"
    assert "bytes read = 0 B" not in result.stderr and "bytes read =" in result.stderr


def test_plan_with_room_for_everything(tiny_pair):
    result = run_duet("plan", *pair_args(tiny_pair), "--budget", "4GiB")
    assert result.returncode == 0, result.stderr
    assert "planned peak" in result.stdout and "everything resident" in result.stdout
    assert "drafter" in result.stdout  # the drafter is one of the fixed costs


def test_chat_over_piped_input_keeps_the_conversation(tiny_pair):
    target, draft = tiny_pair
    result = run_duet("chat", *pair_args(tiny_pair), "-n", "8", stdin="hello\nhow are you\n/exit\nnever read\n")
    assert result.returncode == 0, result.stderr
    messages, expected = [], ""
    with Engine(target=target, draft=draft, threads=1, n_ctx=256) as engine:
        for line in ("hello", "how are you"):
            messages.append({"role": "user", "content": line})
            answer = engine.chat(messages, max_tokens=8).text
            messages.append({"role": "assistant", "content": answer})
            expected += answer + "\n"
    assert result.stdout == expected


def test_chat_over_a_pipe_takes_text_as_it_arrives(tiny_pair):
    """Pieces written with pauses between them, a message split across them, CRLF and
    blank lines, and a last message with no line end: answered as whole lines are, the
    first one before the input goes on."""
    import select

    expected = chat_answers(tiny_pair, ["hello", "how are you"], 8)
    process = subprocess.Popen([sys.executable, "-m", "duet", "chat", *pair_args(tiny_pair), "-n", "8"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=duet_env())
    for piece in (b"hel", b"lo\r", b"\n"):
        process.stdin.write(piece)
        process.stdin.flush()
        time.sleep(0.2)
    assert select.select([process.stdout], [], [], 120)[0], "no answer to a whole line while the input is open"
    first = process.stdout.readline().decode()
    for piece in (b"\n   \nhow a", b"re you"):
        process.stdin.write(piece)
        process.stdin.flush()
        time.sleep(0.2)
    out, err = process.communicate(timeout=120)   # closes stdin: the end of the input
    assert process.returncode == 0, err.decode()
    assert first + out.decode() == "".join(answer + "\n" for answer in expected)


def test_chat_ends_at_end_of_input(tiny_pair):
    result = run_duet("chat", *pair_args(tiny_pair), "-n", "4", stdin="")
    assert (result.returncode, result.stdout) == (0, "")


def test_quick_bench_measures_both_modes(tiny_pair):
    result = run_duet("bench", "--quick", *pair_args(tiny_pair), "-n", "8")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["target", "with"]
    assert all(float(line.split("tokens/s")[0].split()[-1]) > 0 for line in lines)


def bad_gguf(tmp_path) -> str:
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    return str(path)


@pytest.mark.parametrize("case", ["unknown model", "zero threads", "tiny budget", "small context", "not a gguf",
                                  "no prompt", "missing prompt file", "bad temperature", "negative draft vocabulary"])
def test_bad_arguments_are_one_line_without_traceback(tiny_pair, tmp_path, case):
    target = ["-m", str(tiny_pair[0]), "--no-draft", "-t", "1"]
    args = {
        "unknown model": ["run", "-m", "no-such-model", "--no-draft", "-p", "x"],
        "zero threads": ["run", *target, "-t", "0", "-p", "x"],
        "tiny budget": ["run", *target, "--budget", "1KiB", "-p", "x"],
        "small context": ["run", *target, "-c", "8", "-p", PROMPT * 3],
        "not a gguf": ["run", "-m", bad_gguf(tmp_path), "--no-draft", "-p", "x"],
        "no prompt": ["run", *target],
        "missing prompt file": ["run", *target, "-f", str(tmp_path / "absent.txt")],
        "bad temperature": ["run", *target, "--temp", "-1", "-p", "x"],
        "negative draft vocabulary": ["run", *target, "--draft-vocab", "-5", "-p", "x"],
    }[case]
    result = run_duet(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("duet")
    assert result.stdout == ""
    expected_words = {"unknown model": "no-such-model", "tiny budget": "at least", "small context": "context size",
                      "not a gguf": "not a GGUF", "zero threads": "at least 1"}
    assert expected_words.get(case, "") in result.stderr


def test_verbose_run_error_shows_the_traceback(tiny_pair):
    result = run_duet("run", "-m", str(tiny_pair[0]), "--no-draft", "--budget", "1KiB", "-p", "x", "--verbose")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "BudgetTooSmallError" in result.stderr


def test_ctrl_c_stops_cleanly_with_130(tiny_pair):
    # Long enough (thousands of tokens) that the interrupt lands mid-generation.
    command = [sys.executable, "-m", "duet", "run", "-m", str(tiny_pair[0]), "--no-draft", "-t", "1",
               "-c", "8192", "-n", "8000", "-p", "class Counter:"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=duet_env(),
                               preexec_fn=sigint_default)
    first = process.stdout.read(1)  # generation has started: text is flushed per token
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in stderr.decode() and "interrupted" in stderr.decode()
    assert len(first + rest) > 0


def test_cli_and_import_duet_stay_light(tiny_pair):
    """`import duet` loads neither numpy nor the engine; a whole run never imports
    matplotlib or llama_cpp (neither exists on a bare Termux install)."""
    code = (
        "import sys, duet\n"
        "assert 'numpy' not in sys.modules and 'duet.engine' not in sys.modules\n"
        "from duet.engine import Engine\n"
        "assert duet.Engine is Engine\n"
        "from duet import cli\n"
        f"assert cli.main(['run', *{pair_args(tiny_pair)!r}, '-p', 'x', '-n', '2']) == 0\n"
        "assert cli.main(['plan', *" + repr(pair_args(tiny_pair)) + ", '--budget', '4GiB']) == 0\n"
        "heavy = [m for m in ('matplotlib', 'llama_cpp') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=duet_env(), timeout=120)
    assert result.returncode == 0, result.stderr


def test_chat_turn_that_outgrows_the_context_is_refused_alone(tiny_pair):
    target, draft = tiny_pair
    # Room for the first turn and its draft trees, not for the second, long one.
    args = ["-m", str(target), "-md", str(draft), "-c", "96", "-t", "1", "-n", "8"]
    long_line = "please write a function that counts the operations below zero " * 2
    result = run_duet("chat", *args, stdin=f"hello\n{long_line}\n")
    assert result.returncode == 0, result.stderr
    with Engine(target=target, draft=draft, threads=1, n_ctx=96) as engine:
        first = engine.chat([{"role": "user", "content": "hello"}], max_tokens=8).text
    assert result.stdout == first + "\n"
    assert len(result.stderr.strip().splitlines()) == 1 and "context size" in result.stderr


def test_bench_runs_the_bench_scripts_of_a_checkout(monkeypatch, tmp_path, capsys):
    for name in ("bench_a.py", "bench_b.py", "helper.py"):
        (tmp_path / name).write_text(f"open('{name}.ran', 'w').close()\n")
    monkeypatch.setattr(cli, "BENCH_DIR", tmp_path)
    assert cli.main(["bench"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ran")) == ["bench_a.py.ran", "bench_b.py.ran"]
    (tmp_path / "bench_c.py").write_text("raise SystemExit(3)\n")
    assert cli.main(["bench"]) == 1
    assert "bench_c.py failed with exit code 3" in capsys.readouterr().err


def test_without_the_extension_models_works_and_run_says_why_not(tmp_path):
    """A package copy with no compiled duet._core: `duet models list` works; `duet run`
    fails with one line naming the missing extension."""
    import shutil

    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "python" / "duet", tmp_path / "python" / "duet",
                    ignore=shutil.ignore_patterns("_core*", "__pycache__"))
    shutil.copytree(repo / "models", tmp_path / "models")
    env = {**duet_env(tmp_path / "home"), "PYTHONPATH": str(tmp_path / "python")}
    for args, expected_rc in ((["models", "list"], 0), (["run", "-p", "x"], 1)):
        result = subprocess.run([sys.executable, "-m", "duet", *args], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == expected_rc, result.stderr
    assert "_core" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- duet chat on a terminal: keystrokes through a pseudo-terminal ---------------------------


def _take_the_terminal() -> None:
    """In the child (a new session): stdin, the pty, becomes its controlling terminal,
    so that Ctrl-C typed there is SIGINT to it."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    sigint_default()


class ChatOnATerminal:
    """`duet chat` with a pseudo-terminal as stdin and pipes as stdout and stderr."""

    def __init__(self, *args: str):
        import termios

        self.master, self.slave = os.openpty()
        self.mode_before = termios.tcgetattr(self.slave)
        self.process = subprocess.Popen([sys.executable, "-m", "duet", "chat", *args], stdin=self.slave,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=duet_env(),
                                        start_new_session=True, preexec_fn=_take_the_terminal)
        self._wait_for_keystroke_mode()

    def _wait_for_keystroke_mode(self, timeout: float = 120) -> None:
        """Until the chat has put the terminal in non-canonical mode: keys typed before
        would be edited by the terminal's own line discipline, not by duet."""
        import termios

        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.slave)[3] & termios.ICANON:
            assert self.process.poll() is None, self.process.communicate()[1].decode()
            assert time.monotonic() < deadline, "duet chat never switched the terminal to keystroke mode"
            time.sleep(0.05)

    def type(self, keys: str) -> None:
        for key in keys:                   # a key at a time, as a person types
            os.write(self.master, key.encode())
            time.sleep(0.01)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        import termios

        out, err = self.process.communicate(timeout=timeout)
        restored = termios.tcgetattr(self.slave) == self.mode_before
        os.close(self.master)
        os.close(self.slave)
        assert restored, "the terminal's mode was not restored"
        return self.process.returncode, out.decode(), err.decode()


def chat_answers(pair, turns: list[str], n_tokens: int) -> list[str]:
    """The reference: each turn answered by engine.chat from scratch, greedy."""
    messages, answers = [], []
    with Engine(target=pair[0], draft=pair[1], threads=1, n_ctx=256) as engine:
        for text in turns:
            messages.append({"role": "user", "content": text})
            answers.append(engine.chat(messages, max_tokens=n_tokens).text)
            messages.append({"role": "assistant", "content": answers[-1]})
    return answers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as on Linux")
def test_chat_on_a_terminal_answers_the_edited_text(tiny_pair):
    chat = ChatOnATerminal(*pair_args(tiny_pair), "-n", "8")
    # Backspace (DEL, what terminals send) mends a typo; Ctrl-U erases a whole line;
    # Return ends a message; Ctrl-D on an empty line ends the chat.
    chat.type("hellp\x7fo there\r")
    chat.type("scrap that\x15how are you\r")
    chat.type("\x04")
    returncode, out, err = chat.finish()
    assert returncode == 0, err
    expected = chat_answers(tiny_pair, ["hello there", "how are you"], 8)
    assert out == "".join(answer + "\n" for answer in expected)
    assert chat_answers(tiny_pair, ["hellpo there"], 8)[0] != expected[0]   # the edit mattered
    assert "hellp" in err and "\b \b" in err and "Traceback" not in err     # echoed, and erased, by duet


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as on Linux")
@pytest.mark.parametrize("when", ["typing", "answering"])
def test_ctrl_c_on_a_terminal_ends_the_chat_with_130(tiny_pair, when):
    chat = ChatOnATerminal("-m", str(tiny_pair[0]), "--no-draft", "-t", "1", "-c", "8192", "-n", "8000")
    chat.type("class Counter:")
    if when == "answering":
        chat.type("\r")
        assert chat.process.stdout.read(1)      # the answer has started: text is flushed per token
    chat.type("\x03")
    returncode, _, err = chat.finish()
    assert returncode == 130
    assert "interrupted" in err and "Traceback" not in err
