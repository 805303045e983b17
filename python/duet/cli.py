"""The `duet` command line.

Each subcommand is one `add_<name>_command(subparsers)` function that builds its parser and
sets `handler` to a function taking the parsed arguments and returning an exit code. To add
a subcommand, write such a function and list it in COMMANDS.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

from duet import __version__


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


# --- duet models ---------------------------------------------------------------------------


def _models_list(args: argparse.Namespace) -> int:
    from duet.memory import format_size
    from duet.models import default_pair, list_models

    defaults = set(default_pair())
    rows = [
        (s.name + (" *" if s.name in defaults else ""), s.role, format_size(s.size),
         "yes" if s.present else "no", str(s.path))
        for s in list_models()
    ]
    header = ("NAME", "ROLE", "SIZE", "PRESENT", "PATH")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print("* default pair (duet models pull with no name fetches both)")
    return 0


def _models_pull(args: argparse.Namespace) -> int:
    from duet.models import default_pair, pull

    for name in args.names or default_pair():
        path = pull(name, progress=not args.quiet)
        print(f"{name}: {path}")
    return 0


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list and download models")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show catalog models and whether they are downloaded")
    listing.set_defaults(handler=_models_list)
    pulling = actions.add_parser("pull", help="download models (default: the default target + drafter pair)")
    pulling.add_argument("names", nargs="*", metavar="NAME", help="catalog model names")
    pulling.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    pulling.set_defaults(handler=_models_pull)


# --- shared options of the commands that run a model ----------------------------------------


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _add_verbose_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand that is not given --verbose keeps `duet --verbose`'s value.
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="print the memory plan, and tracebacks on errors")


def _add_model_options(parser: argparse.ArgumentParser, budget_required: bool = False) -> None:
    parser.add_argument("-m", "--model", metavar="NAME|PATH", help="target model (default: the catalog's target)")
    parser.add_argument("-md", "--model-draft", metavar="NAME|PATH", help="drafter (default: the catalog's drafter)")
    parser.add_argument("--no-draft", action="store_true", help="target-only decoding, no drafter")
    parser.add_argument("-c", "--ctx-size", type=_positive_int, default=2048, metavar="N", help="context size in tokens")
    parser.add_argument("-t", "--threads", type=_positive_int, metavar="N", help="compute threads (default: all cores)")
    parser.add_argument("--budget", metavar="SIZE", required=budget_required,
                        help="peak memory of the process, e.g. 1GiB" + ("" if budget_required else " (default: no limit)"))
    parser.add_argument("--trie", action="store_true", help="also draft from an n-gram trie of prompt and output")
    parser.add_argument("--draft-vocab", type=_non_negative_int, metavar="N",
                        help="the drafter's head scores the first N token ids and the rarer ones it is fed "
                             "(default 65536; 0: the whole vocabulary). Changes speed, never the output")
    _add_verbose_option(parser)


def _add_sampling_options(parser: argparse.ArgumentParser, n_predict: int) -> None:
    parser.add_argument("-n", "--n-predict", type=_positive_int, default=n_predict, metavar="N",
                        help=f"tokens to generate at most (default {n_predict})")
    parser.add_argument("--temp", type=float, default=0.0, help="temperature; 0 is greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k likeliest tokens (0: off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    parser.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p x the likeliest (0: off)")
    parser.add_argument("--seed", type=int, help="sampling seed (default: random)")


def _sampling_options(args: argparse.Namespace) -> dict:
    return {"max_tokens": args.n_predict, "temperature": args.temp, "top_k": args.top_k,
            "top_p": args.top_p, "min_p": args.min_p, "seed": args.seed}


def _open_engine(args: argparse.Namespace):
    """The Engine the model options describe."""
    from duet.engine import DRAFT_VOCAB, Engine

    draft = None if args.no_draft else (args.model_draft or "default")
    draft_vocab = DRAFT_VOCAB if args.draft_vocab is None else (args.draft_vocab or None)
    return Engine(target=args.model, draft=draft, budget=args.budget, threads=args.threads,
                  n_ctx=args.ctx_size, trie=args.trie, draft_vocab=draft_vocab)


def _print_plan(engine, verbose: bool) -> None:
    if verbose:
        print(engine.describe_plan(), file=sys.stderr)


# --- duet run ------------------------------------------------------------------------------


def _read_prompt(args: argparse.Namespace) -> str:
    if args.file is not None:
        try:
            with open(args.file, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError as exc:
            raise CommandError(f"{args.file} is not UTF-8 text ({exc.reason})") from None
    if args.prompt == "-":
        return sys.stdin.read()
    if args.prompt is None:
        raise CommandError("no prompt: give -p TEXT, -p - (stdin) or -f FILE")
    return args.prompt


def _stream_to_stdout(engine, prompt, options: dict) -> list[int]:
    """Writes the text as it is generated, a flush per token; returns the token ids."""
    tokens, printed = [], 0
    for event in engine.stream(prompt, **options):
        tokens.append(event.token)
        sys.stdout.write(event.text)
        sys.stdout.flush()
        printed += len(event.text)
    # The stream holds back an unfinished character; the full decode has the rest.
    tail = engine.tokenizer.decode(tokens, special=False)[printed:]
    sys.stdout.write(tail)
    sys.stdout.flush()
    return tokens


def _timing_line(label: str, seconds: float, count: int, unit: str) -> str:
    ms = seconds * 1e3
    line = f"duet_perf: {label:>16} = {ms:10.2f} ms / {count:5d} {unit:<6}"
    if count and seconds > 0:
        line += f" ({ms / count:8.2f} ms per token, {count / seconds:8.2f} tokens per second)"
    return line


def format_run_summary(stats: dict, load_seconds: float) -> str:
    """llama.cpp's timing lines (load, prompt eval, eval, total), the drafter's acceptance
    and the memory figures, from engine.last_stats."""
    from duet.memory import format_size

    prompt_seconds = stats.get("prompt_seconds", 0.0)
    eval_seconds = max(stats["seconds"] - prompt_seconds, 0.0)
    lines = [
        f"duet_perf: {'load time':>16} = {load_seconds * 1e3:10.2f} ms",
        _timing_line("prompt eval time", prompt_seconds, stats["prompt_tokens"], "tokens"),
        _timing_line("eval time", eval_seconds, stats["generated_tokens"], "tokens"),
        f"duet_perf: {'total time':>16} = {(load_seconds + stats['seconds']) * 1e3:10.2f} ms / "
        f"{stats['prompt_tokens'] + stats['generated_tokens']:5d} tokens",
    ]
    if "passes" in stats:
        lines.append(f"duet_draft: passes = {stats['passes']}, drafted = {stats['drafted']}, "
                     f"accepted = {stats['accepted']} ({100 * stats['acceptance_rate']:.1f}%), "
                     f"mean accepted per pass = {stats['mean_accepted_per_pass']:.2f}")
    if "parking_switches" in stats:
        lines.append(f"duet_draft: drafter {'parked' if stats['drafter_parked'] else 'resident'} at the end, "
                     f"{stats['parking_switches']} switches so far")
    budget = format_size(stats["budget"]) if stats.get("budget") else "none"
    lines.append(f"duet_memory: peak = {format_size(stats['peak_memory'])}, budget = {budget}, "
                 f"bytes read = {format_size(stats['bytes_read'])}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    prompt = _read_prompt(args)
    start = time.perf_counter()
    with _open_engine(args) as engine:
        load_seconds = time.perf_counter() - start
        _print_plan(engine, args.verbose)
        _stream_to_stdout(engine, prompt, {**_sampling_options(args), "chat": args.chat})
        sys.stdout.write("\n")
        sys.stdout.flush()
        print(format_run_summary(engine.last_stats, load_seconds), file=sys.stderr)
    return 0


def add_run_command(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="generate text for one prompt (llama.cpp-style flags)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("-p", "--prompt", metavar="TEXT", help="the prompt; - reads it from stdin")
    source.add_argument("-f", "--file", metavar="PATH", help="read the prompt from a file")
    run.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    _add_model_options(run)
    _add_sampling_options(run, n_predict=256)
    run.set_defaults(handler=_run)


# --- duet chat -----------------------------------------------------------------------------


def _chat(args: argparse.Namespace) -> int:
    """Each message goes to a streaming session while it is typed (the models prefill
    as it arrives, and the earlier turns stay in the caches); Enter answers it."""
    from duet.chat_input import open_input, read_message
    from duet.sampling import Sampler

    options = _sampling_options(args)
    # Bad settings fail here, once, rather than on every turn below.
    Sampler(**{k: v for k, v in options.items() if k != "max_tokens"})
    with _open_engine(args) as engine, open_input(sys.stdin) as source:
        _print_plan(engine, args.verbose)
        messages = [{"role": "system", "content": args.system}] if args.system else []
        while True:
            session = engine.chat_session(messages)
            if sys.stdin.isatty():
                print("> ", end="", file=sys.stderr, flush=True)
            line = read_message(session, source)
            if line is None or line.strip() in ("/exit", "/quit"):
                return 0
            if not line.strip():
                continue
            try:
                tokens = _stream_to_stdout(engine, session, options)
            except ValueError as exc:  # e.g. the conversation outgrew the context: this turn only
                print(f"duet: error: {_one_line(exc)}", file=sys.stderr)
                continue
            sys.stdout.write("\n")
            sys.stdout.flush()
            messages += [{"role": "user", "content": line},
                         {"role": "assistant", "content": engine.tokenizer.decode(tokens, special=False)}]
            if args.verbose:
                print(format_run_summary(engine.last_stats, 0.0), file=sys.stderr)


def add_chat_command(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser(
        "chat", help="an interactive conversation over stdin (/exit or EOF ends it), prefilled while you type")
    chat.add_argument("--system", metavar="TEXT", help="a system message to start the conversation with")
    _add_model_options(chat)
    _add_sampling_options(chat, n_predict=512)
    chat.set_defaults(handler=_chat)


# --- duet plan -----------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    with _open_engine(args) as engine:
        print(engine.describe_plan())
    return 0


def add_plan_command(subparsers: argparse._SubParsersAction) -> None:
    plan = subparsers.add_parser("plan", help="show how the target's layers fit a memory budget")
    _add_model_options(plan, budget_required=True)
    plan.set_defaults(handler=_plan)


# --- duet bench ----------------------------------------------------------------------------

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _bench_scripts() -> list[Path]:
    """The source tree's bench/bench_*.py (absent from an installed package)."""
    return sorted(BENCH_DIR.glob("bench_*.py")) if BENCH_DIR.is_dir() else []


def _bench(args: argparse.Namespace) -> int:
    scripts = [] if args.quick else _bench_scripts()
    if not scripts:
        return _quick_bench(args)
    import subprocess

    for script in scripts:
        print(f"== {script.name}", flush=True)
        returncode = subprocess.run([sys.executable, str(script)], cwd=script.parent).returncode
        if returncode != 0:
            raise CommandError(f"{script.name} failed with exit code {returncode}")
    return 0


def _quick_bench(args: argparse.Namespace) -> int:
    """Decode speed of one fixed prompt, greedy, target-only and with the drafter."""
    with _open_engine(args) as engine:
        engine.generate(BENCH_PROMPT, max_tokens=4)  # warm: page faults of the first touch
        modes = [("target only", False)] + ([("with drafter", True)] if engine.draft is not None else [])
        for label, use_draft in modes:
            stats = engine.generate(BENCH_PROMPT, max_tokens=args.n_predict, use_draft=use_draft).stats
            print(f"{label:<13} {stats['tokens_per_second']:8.2f} tokens/s  {stats['generated_tokens']} tokens, "
                  f"peak {stats['peak_memory'] / 2**20:.0f} MiB")
    return 0


BENCH_PROMPT = 'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n'


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench", help="run bench/bench_*.py of a source checkout, else a quick built-in tokens/s measurement",
        description="In a source checkout, runs bench/bench_*.py (duet beside llama.cpp, real models). "
                    "Installed without the bench scripts, or with --quick: decodes one fixed prompt greedily, "
                    "target-only and with the drafter, and prints tokens per second. The model options apply "
                    "to the built-in measurement; the scripts run with their own defaults.")
    bench.add_argument("--quick", action="store_true", help="the built-in measurement even in a source checkout")
    _add_model_options(bench)
    bench.add_argument("-n", "--n-predict", type=_positive_int, default=64, metavar="N", help="tokens per measurement")
    bench.set_defaults(handler=_bench)


# --- duet profile --------------------------------------------------------------------------


def _profile(args: argparse.Namespace) -> int:
    from duet import profiler

    report = profiler.run_profile(profiler.ProfileRequest(
        target=args.model, draft=None if args.no_draft else (args.model_draft or "default"),
        budgets=profiler.parse_budgets(args.budgets), tree_sizes=profiler.parse_counts(args.tree_sizes),
        prompts=profiler.load_prompts(args.prompts_file, args.n_prompts), max_tokens=args.n_predict,
        threads=args.threads, n_ctx=args.ctx_size, llama_baseline=not args.no_llama,
    ), progress=not args.quiet)
    written = profiler.write_report(report, Path(args.out))
    for path in written:
        print(path)
    if not profiler.plotting_available():
        print("plots skipped: matplotlib is not installed (pip install 'duet-llm[plot]')", file=sys.stderr)
    elif not any(path.suffix == ".png" for path in written):
        print("plots skipped: no configuration ran to the end (see the errors in the table)", file=sys.stderr)
    return 0


def add_profile_command(subparsers: argparse._SubParsersAction) -> None:
    profile = subparsers.add_parser(
        "profile", help="sweep memory budgets and tree sizes; write JSON, Markdown and plots",
        description="Runs every (budget, tree size) configuration in a fresh process over a prompt set and "
                    "records tokens/s, peak / anonymous / file-backed memory, bytes read per token, acceptance "
                    "and the draft / read / verify time split. llama.cpp runs beside it (in a memory cgroup "
                    "when one can be made) if llama-cpp-python is installed.")
    profile.add_argument("-m", "--model", metavar="NAME|PATH", help="target model (default: the catalog's target)")
    profile.add_argument("-md", "--model-draft", metavar="NAME|PATH", help="drafter (default: the catalog's)")
    profile.add_argument("--no-draft", action="store_true", help="target-only decoding")
    profile.add_argument("--budgets", default="0.8GiB,1.1GiB,1.4GiB,none",
                         help="comma-separated sizes; none: no limit (default %(default)s)")
    profile.add_argument("--tree-sizes", default="8,24", help="comma-separated draft tree sizes (nodes)")
    profile.add_argument("--prompts-file", metavar="PATH",
                         help="one prompt per line, or a .jsonl(.gz) with a 'prompt' field (default: HumanEval)")
    profile.add_argument("--n-prompts", type=_positive_int, default=3, metavar="N", help="prompts per configuration")
    profile.add_argument("-n", "--n-predict", type=_positive_int, default=64, metavar="N", help="tokens per prompt")
    profile.add_argument("-c", "--ctx-size", type=_positive_int, default=1024, metavar="N",
                         help="context size (default %(default)s: room for a HumanEval prompt and its answer)")
    profile.add_argument("-t", "--threads", type=_positive_int, metavar="N", help="compute threads")
    profile.add_argument("--no-llama", action="store_true", help="skip the llama.cpp baseline")
    profile.add_argument("-o", "--out", default="profile-out", metavar="DIR", help="output folder")
    profile.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_verbose_option(profile)
    profile.set_defaults(handler=_profile)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_models_command, add_run_command, add_chat_command, add_plan_command, add_bench_command, add_profile_command,
]


# --- entry point ---------------------------------------------------------------------------


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (argparse prints the whole usage by default)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="duet", description="On-device LLM inference with a drafter/target pair.")
    parser.add_argument("--version", action="version", version=f"duet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_OneLineErrorParser)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from duet.models import ModelError

    try:
        return args.handler(args)
    except KeyboardInterrupt:
        # The text generated so far is already out (a flush per token); end its line.
        print(flush=True)
        print("duet: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ModelError, ValueError, OSError, ImportError) as exc:
        # ValueError covers bad GGUF files, budgets, sizes and sampling settings;
        # ImportError a missing compiled extension.
        if args.verbose:
            traceback.print_exc()
        print(f"duet: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ImportError) and "_core" in text:
        text += " (the compiled extension duet._core is missing: reinstall with `pip install .`)"
    return text
