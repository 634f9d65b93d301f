"""Every command in the ```bash blocks of README.md and examples/README.md runs verbatim, so the
README cannot drift from the code.

Which lines run (the marker policy). A command is a line, with `\\`-continued lines joined. It is
skipped only when its trailing comment (on its last line) holds one of MARKERS, or when its block's
first line is a comment holding one (the whole block is skipped):
- "needs a GPU", "needs Docker", "needs Kubernetes", "needs the released weights": none of these is on
  a CI machine;
- "runs the whole": a make target that runs a whole suite or the demo (`make test`, `make demo`,
  `make conformance`); CI and tests of their own run those, never recursively from here.
Every other command must exit 0; a command this test cannot run fails it. The commands a README
offers for a CPU are sized to be quick ("fast CPU try"), so this test runs them as they are.

Where they run: in a fresh temporary directory holding links to the checkout's top-level entries (so
`examples/...` resolves and what the commands write stays there), `.venv` linked to the virtual
environment running the tests, with bash and without the caller's UNIANIMATE_* settings.

Commands against the API (`http://127.0.0.1:8000`) run against the real stack on private ports
(tests/integration/stack.py). These substitutions are the only edits, and only in those commands:
- `http://127.0.0.1:8000` -> the stack's address;
- `JOB_ID` -> the `job_id` that the previous `POST /animate` printed;
- curl reads $CURL_HOME/.curlrc (CURL_CONFIG below): the stack's API key, and `--fail-with-body`,
  so an error status fails the command.
A command that fetches `/jobs/JOB_ID/video` runs once the job has succeeded (the README says so).
Afterwards every file a command names with `-o`, `--out` or `--strip` must exist and not be empty.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.stack import KEY_A, wait_for_status

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READMES = (REPO / "README.md", REPO / "examples" / "README.md")
MARKERS = ("needs a GPU", "needs Docker", "needs Kubernetes", "needs the released weights", "runs the whole")
API = "http://127.0.0.1:8000"
CURL_CONFIG = 'header = "Authorization: Bearer {key}"\nfail-with-body\n'
# Links the temporary directory does not get: run state, caches, and what the test links itself.
NOT_LINKED = {".git", ".run", ".venv", ".pytest_cache", ".ruff_cache", ".hypothesis", ".cache"}
OUTPUT_FLAGS = re.compile(r"(?:^|\s)(?:-o|--out|--strip)\s+(\S+)")
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class Command:
    text: str  # what bash runs: continuation lines joined, comments removed
    comment: str  # the trailing comment of its last line
    where: str  # file:line, for messages

    @property
    def skipped(self) -> bool:
        return any(marker in self.comment for marker in MARKERS)

    @property
    def uses_api(self) -> bool:
        return API in self.text


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment): a `#` starts a comment at the start of a line or after a blank, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def bash_blocks(path: Path) -> list[list[Command]]:
    """The commands of each ```bash block of a Markdown file; a block marked on its first line is empty."""
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        start, i = i + 1, i + 1
        while lines[i].strip() != "```":
            i += 1
        blocks.append(_commands(lines[start:i], f"{path.relative_to(REPO)}", start + 1))
        i += 1
    return blocks


def _commands(lines: list[str], name: str, first_line: int) -> list[Command]:
    code, comment = split_comment(lines[0]) if lines else ("", "")
    if not code and any(marker in comment for marker in MARKERS):
        return []  # the whole block is marked
    commands, parts, start = [], [], None
    for number, line in enumerate(lines, first_line):
        code, comment = split_comment(line)
        if not code and not parts:
            continue  # a comment line between commands
        start = start or number
        if code.endswith("\\"):
            parts.append(code[:-1].strip())
            continue
        parts.append(code.strip())
        commands.append(Command(" ".join(parts), comment, f"{name}:{start}"))
        parts, start = [], None
    assert not parts, f"{name}: a command ends with a continuation backslash"
    return commands


def all_commands() -> list[Command]:
    return [command for path in READMES for block in bash_blocks(path) for command in block]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for entry in REPO.iterdir():
        if entry.name not in NOT_LINKED and not entry.name.endswith(".egg-info"):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def environment(workdir: Path) -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("UNIANIMATE_")} | {
        "CURL_HOME": str(workdir)}


def run(command: Command, text: str, workdir: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-c", text], cwd=workdir, env=environment(workdir), capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    assert result.returncode == 0, (f"{command.where}: `{command.text}` exited {result.returncode}\n"
                                    f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
    return result


def check_outputs(command: Command, workdir: Path) -> None:
    for name in OUTPUT_FLAGS.findall(command.text):
        path = workdir / name
        assert path.is_file() and path.stat().st_size > 0, f"{command.where}: {name} was not written"


def test_the_readmes_have_commands_to_run():
    commands = all_commands()
    assert any(not c.skipped and not c.uses_api for c in commands), "no command runs without the stack"
    assert any(c.uses_api for c in commands), "no command against the API"


def test_local_commands_run_verbatim(workdir: Path):
    ran = [c for c in all_commands() if not c.skipped and not c.uses_api]
    for command in ran:
        run(command, command.text, workdir)
        check_outputs(command, workdir)


def test_api_commands_run_against_the_stack(stack, workdir: Path):
    (workdir / ".curlrc").write_text(CURL_CONFIG.format(key=KEY_A))
    job_id = None
    for command in (c for c in all_commands() if c.uses_api and not c.skipped):
        text = command.text.replace(API, stack.api)
        if "JOB_ID" in text:
            assert job_id, f"{command.where}: JOB_ID before any POST /animate printed a job id"
            text = text.replace("JOB_ID", job_id)
        if f"/jobs/{job_id}/video" in text:
            with stack.client() as client:
                job = wait_for_status(client, job_id, {"succeeded", "failed", "canceled"}, timeout_s=300)
            assert job["status"] == "succeeded", f"{command.where}: the job {job['status']}: {job.get('error')}"
        result = run(command, text, workdir)
        if "/animate" in text and "-F" in text:
            job_id = json.loads(result.stdout)["job_id"]
        check_outputs(command, workdir)
    assert job_id, "no README command submitted a job"
