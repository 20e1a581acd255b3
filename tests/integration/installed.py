"""octoroute as a user installs it, and the deploy files read as their tools read them.

`install_wheel` builds the wheel from exactly the files the image's build stage
copies (deploy/Dockerfile), then installs it into a fresh virtual environment.
Dependencies are not fetched again: the fresh environment sees the test
environment's site-packages through a `.pth` line, which Python appends after
the environment's own site-packages, so `octoroute` itself comes from the wheel
(the test environment's editable install is a `.pth` hook of its own, and `.pth`
files of an appended directory are not run).

`dockerfile_instructions` splits a Dockerfile into its instructions (comments
dropped, continuation lines joined), enough to read COPY, CMD and HEALTHCHECK.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
NO_DEPS = ("--no-deps", "--no-index")  # the dependencies come from the test environment (see above)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, COPY, CMD, ...
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT (after any options)."""
        start = self.args.index("[")
        parsed = json.loads(self.args[start:])
        assert isinstance(parsed, list), self.args
        return [str(part) for part in parsed]


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, f"{path}: a continuation line without an end"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting at its FROM."""
    found: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def copy_sources(stage: list[Instruction]) -> list[str]:
    """What the stage's COPY instructions take from the build context (not --from another stage)."""
    sources: list[str] = []
    for instruction in stage:
        if instruction.keyword != "COPY" or "--from=" in instruction.args:
            continue
        words = [w for w in instruction.args.split() if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def octoroute(self) -> Path:
        return self.venv / "bin" / "octoroute"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        """The environment a user's shell would give: no PYTHONPATH into the repo."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["COLUMNS"] = "200"
        return env


def build_wheel(workdir: Path) -> Path:
    """The wheel built from a copy of the build stage's COPY sources only."""
    context = workdir / "context"
    context.mkdir()
    for source in copy_sources(stages(dockerfile_instructions())[0]):
        origin = REPO / source.rstrip("/")
        if origin.is_dir():
            shutil.copytree(origin, context / source.rstrip("/"), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)
    dist = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = dist.glob("octoroute-*.whl")
    return wheel


def install_wheel(wheel: Path, target: Path) -> Installed:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    site = next((target / "lib").glob("python3*/site-packages"))
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target / "bin" / "python"),
            "install",
            "-q",
            *NO_DEPS,
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Installed(wheel, target)


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def package_data_files() -> set[str]:
    """Every file under src/octoroute that is not Python source, as wheel paths."""
    package = REPO / "src"
    return {
        path.relative_to(package).as_posix()
        for path in (package / "octoroute").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


class ServerProcess:
    """A server command in its own process group; `wait_for` reads its stderr lines
    until a pattern matches (bounded), `stop` sends SIGTERM and returns the exit code."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd, env=env, start_new_session=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern.pattern}; got:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            if match := pattern.search(line):
                return match

    def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._pump.join(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code
