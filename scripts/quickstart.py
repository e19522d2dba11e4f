"""Run the README's quick start as written, top to bottom, and stop at the first failure.

    python scripts/quickstart.py                          # full size, in a fresh temporary folder
    python scripts/quickstart.py --workdir runs/qs        # ... in this folder (runs/ go inside)
    python scripts/quickstart.py --tiny --workdir DIR     # tiny step counts (what the tests run)
    python scripts/quickstart.py --print                  # show the commands it would run

The commands are the fenced block between `<!-- quickstart -->` and `<!-- /quickstart -->` in
README.md: this script reads them from there, so the README and what is tested cannot drift.
bash runs them as one script (`set -euo pipefail`) in --workdir, with this checkout's
`alignkit` first on PATH. What changes, all shown by --print:

- the `source .venv/bin/activate` line is left out: the `alignkit` on PATH is this checkout's
  (`python -m alignkit` with this interpreter and this checkout's package);
- `D=src/alignkit/demo_data` names this checkout's demo data by its absolute path;
- port 8000 becomes a free port (a server already on 8000 cannot break the run);
- with --tiny, $D is a folder of the first --tiny-lines records of each data file the block
  reads, and each verb gets the flags of TINY_FLAGS appended: argparse keeps the last value of
  a flag, so the README's own flags stay on the line and only the amounts shrink;
- a line whose verb is planned but not in this version's CLI (PLANNED_VERBS) is skipped with a
  note, so the README can show it before it lands.

The helpers that split a Markdown file into shell commands (`code_blocks`, `logical_lines`,
`alignkit_argv`) are also what tests/test_readme_commands.py parses every README command with.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- quickstart -->", "<!-- /quickstart -->"
DATA_LINE = re.compile(r"^D=src/alignkit/demo_data\s*(#.*)?$")
SETUP_LINE = re.compile(r"^source \.venv/bin/activate\b")
README_PORT = "8000"

# verb (and sub-verb) -> flags appended with --tiny; the longest matching key wins
TINY_FLAGS: dict[str, list[str]] = {
    "demo": "--train-pairs 8 --heldout-pairs 8 --max-steps 2 --max-new-tokens 8 --max-length 64".split(),
    "select": "--count 8".split(),
    "train": "--max-steps 2".split(),
    "eval": "--num-prompts 2 --max-new-tokens 8".split(),
    "serve": "--max-new-tokens 8".split(),
}
# verbs the README may show before they exist; a line of one is skipped until the CLI has it
PLANNED_VERBS: set[str] = set()


# ------------------------------------------------------------------ reading Markdown


def code_blocks(markdown: str, languages: tuple[str, ...] = ("bash", "sh", "")) -> list[str]:
    """The text of every fenced code block whose info string is one of `languages`."""
    blocks, current, lang = [], None, ""
    for line in markdown.splitlines():
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if fence and current is None:
            current, lang = [], fence.group(1)
        elif fence and current is not None:
            if lang in languages:
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def quickstart_block(markdown: str) -> str:
    """The one fenced block between the quick-start markers."""
    if markdown.count(BEGIN) != 1 or markdown.count(END) != 1:
        raise SystemExit(f"README.md must hold {BEGIN} and {END} exactly once each")
    inside = markdown.split(BEGIN, 1)[1].split(END, 1)[0]
    blocks = code_blocks(inside)
    if len(blocks) != 1:
        raise SystemExit(
            f"expected one bash block between the quick-start markers, got {len(blocks)}"
        )
    return blocks[0]


def logical_lines(block: str) -> list[str]:
    """Shell lines with backslash continuations joined; blank and comment-only lines dropped."""
    lines, pending = [], ""
    for raw in block.splitlines():
        raw = raw.strip() if pending else raw.rstrip()
        if raw.endswith("\\"):
            pending += raw[:-1].rstrip() + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def split_comment(line: str) -> tuple[str, str]:
    """(command, trailing `# comment` or ''): a `#` outside quotes after a space starts it."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line, ""


def alignkit_argv(line: str) -> list[str] | None:
    """The arguments after `alignkit` (or `python -m alignkit`, `accelerate launch ... -m
    alignkit`, `torchrun ... -m alignkit`) of a shell line, or None for another command.
    A trailing `&` and comment are dropped."""
    command, _ = split_comment(line)
    command = re.sub(r"\s*&$", "", command)
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if words and words[0] == "alignkit":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "alignkit":
            return words[i + 2 :]
    return None


# ------------------------------------------------------------------ rewriting the block


def tiny_flags(argv: list[str]) -> list[str]:
    """The TINY_FLAGS of the longest verb key `argv` starts with."""
    best: list[str] = []
    best_len = 0
    for key, flags in TINY_FLAGS.items():
        words = key.split()
        if argv[: len(words)] == words and len(words) > best_len:
            best, best_len = flags, len(words)
    return best


def with_flags(line: str, flags: list[str]) -> str:
    """`line` with `flags` inserted before its trailing `&` and comment."""
    if not flags:
        return line
    command, comment = split_comment(line)
    background = command.endswith("&")
    command = command[:-1].rstrip() if background else command
    command += " " + shlex.join(flags) + (" &" if background else "")
    return f"{command}  {comment}" if comment else command


def known_verbs() -> set[str]:
    from alignkit.cli import VERBS

    return set(VERBS)


def rewrite(block: str, data_dir: Path, port: int, tiny: bool) -> str:
    """The quick-start block as this script runs it (see the module docstring)."""
    verbs = known_verbs()
    out = []
    for line in logical_lines(block):
        argv = alignkit_argv(line)
        if SETUP_LINE.match(line):
            out.append(f"# left out: {line}")
            continue
        if DATA_LINE.match(line):
            line = f"D={shlex.quote(str(data_dir))}"
        elif argv is not None and argv and argv[0] in PLANNED_VERBS and argv[0] not in verbs:
            out.append(f"echo {shlex.quote(f'quickstart: skipped (not in this version): {line}')}")
            continue
        elif argv is not None and tiny:
            line = with_flags(line, tiny_flags(argv))
        out.append(
            line.replace(f":{README_PORT}", f":{port}").replace(
                f"--port {README_PORT}", f"--port {port}"
            )
        )
    return "\n".join(out) + "\n"


def tiny_data(block: str, source: Path, target: Path, lines: int) -> Path:
    """A folder with the first `lines` records of each `$D/FILE` the block reads."""
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(set(re.findall(r"\$D/([\w.-]+)", block))):
        records = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (target / name).write_text("".join(records[:lines]), encoding="utf-8")
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ running


PRELUDE = """\
set -euo pipefail
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT   # a server the block started stops with it
set -x
"""


def alignkit_on_path(bin_dir: Path) -> dict[str, str]:
    """An environment whose `alignkit` is this interpreter running this checkout's package."""
    import alignkit

    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "alignkit"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m alignkit "$@"\n')
    shim.chmod(0o755)
    package_root = str(Path(alignkit.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run(script: str, workdir: Path, env: dict[str, str], timeout: float | None) -> int:
    """bash runs `script` in `workdir` in its own process group (killed whole on timeout)."""
    path = workdir / "quickstart.sh"
    path.write_text(PRELUDE + script)
    proc = subprocess.Popen(["bash", str(path)], cwd=workdir, env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: `finally` still runs
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"quickstart: stopped after {timeout:.0f} s", file=sys.stderr)
        return 124
    finally:
        try:  # nothing the block started outlives it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", help="where runs/ is written (default: a new temp folder)")
    parser.add_argument("--tiny", action="store_true", help="tiny data and step counts")
    parser.add_argument("--tiny-lines", type=int, default=16, help="records per file (--tiny)")
    parser.add_argument("--readme", default=str(README), help="the README to read")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    parser.add_argument("--print", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)

    block = quickstart_block(Path(args.readme).read_text(encoding="utf-8"))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="alignkit-quickstart-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = ROOT / "src" / "alignkit" / "demo_data"
    if args.tiny:
        data_dir = tiny_data(block, data_dir, workdir / "tiny_data", args.tiny_lines)
    script = rewrite(block, data_dir, free_port(), args.tiny)
    print(f"quickstart: in {workdir}\n{script}", flush=True)
    if args.print:
        return 0
    env = alignkit_on_path(workdir / ".bin")
    return run(script, workdir, env, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
