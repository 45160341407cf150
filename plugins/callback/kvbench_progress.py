"""kvbench_progress: a readable console for sweep.yml, with Ansible's full output in the run directory.

For sweep.yml (at verbosity 0, unless KVBENCH_CONSOLE=full) the screen shows the plan, one line per
scenario start, one line per recorded point (scenario, concurrency, repetition, status, done/failed/left,
ETA from the phases measured so far: kvbench.status) and every failure with its message; everything the
default callback prints goes to <run dir>/ansible.log. Any other playbook, or -v, prints as the default.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: kvbench_progress
    type: stdout
    short_description: one line per load point on screen, the full Ansible log in the run directory
    description:
      - For sweep.yml, shows the plan, each scenario start, one line per recorded point with progress and
        ETA, and failures; writes the default callback's whole output to <run dir>/ansible.log.
      - Any other playbook, a run with -v, or KVBENCH_CONSOLE=full prints as the default callback.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout_callback in ansible.cfg
"""

LOG_NAME = "ansible.log"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _LogDisplay:
    """Stands in for Ansible's Display inside the default callback: its output goes to the run's log file
    (kept in memory until the run directory is known); anything else (verbosity, warnings) is the screen's."""

    def __init__(self, screen: Any) -> None:
        self._screen = screen
        self._pending: list[str] = []
        self._file: Any = None
        # Also show on screen: everything until the run directory is known (the preflight, and whatever
        # stops it, prints as the default callback would), then only the recap.
        self.echo = True

    def attach(self, path: Path) -> None:
        if self._file is None:
            self._file = path.open("a", encoding="utf-8")
            self._file.writelines(self._pending)
            self._file.flush()
            self._pending = []
            self.echo = False

    def _write(self, text: str) -> None:
        text = ANSI.sub("", text)
        if self._file is None:
            self._pending.append(text)
        else:
            self._file.write(text)
            self._file.flush()

    def display(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if self.echo:
            self._screen.display(msg, *args, **kwargs)
        if not kwargs.get("screen_only"):
            self._write(msg + ("\n" if kwargs.get("newline", True) else ""))

    def banner(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if self.echo:
            self._screen.banner(msg, *args, **kwargs)
        self._write(f"\n{msg} {'*' * max(3, 79 - len(msg))}\n")

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        # A failed task's error: the log has it in full, the screen gets the one FAILED line.
        if self.echo:
            self._screen.error(msg, *args, **kwargs)
        self._write(f"[ERROR]: {msg}\n")

    def _error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.echo:
            self._screen._error(msg, *args, **kwargs)
        self._write(f"[ERROR]: {getattr(msg, 'message', msg)}\n")

    def error_as_warning(self, msg: Any, exception: Any = None, *args: Any, **kwargs: Any) -> None:
        if self.echo:
            self._screen.error_as_warning(msg, exception, *args, **kwargs)
        self._write(f"[WARNING]: {msg} {exception or ''}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._screen, name)


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "kvbench_progress"

    def __init__(self) -> None:
        super().__init__()
        self._screen = self._display
        self._log: _LogDisplay | None = None
        self._run_dir: Path | None = None

    # -- the switch -------------------------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook: Any) -> None:
        name = os.path.basename(getattr(playbook, "_file_name", "") or "")
        if (
            name == "sweep.yml"
            and self._screen.verbosity == 0
            and os.environ.get("KVBENCH_CONSOLE") != "full"
        ):
            self._log = _LogDisplay(self._screen)
            self._display = self._log
        super().v2_playbook_on_start(playbook)

    def _say(self, text: str, color: str | None = None) -> None:
        self._screen.display(text, color=color)

    # -- what the screen shows --------------------------------------------------------------------------
    def v2_runner_on_ok(self, result: Any) -> None:
        super().v2_runner_on_ok(result)
        if self._log is None:
            return
        data = result.result
        run_dir = (data.get("ansible_facts") or {}).get("kvbench_run_dir")
        if run_dir and self._run_dir is None:
            self._run_dir = Path(run_dir)
            self._log.attach(self._run_dir / LOG_NAME)
            self._say(f"kvbench: full Ansible log in {self._run_dir / LOG_NAME}")
        task = result.task
        name = task.get_name() if hasattr(task, "get_name") else ""
        message = data.get("msg") if isinstance(data.get("msg"), str) else None
        if message and task.action in ("debug", "ansible.builtin.debug"):
            shown = ("Show the plan", "Show what the round adds")
            progress = name.endswith("Show progress") and message.startswith("[")
            if any(name.endswith(s) for s in shown) or progress or message.startswith(("NOTE", "WARNING")):
                self._say(f"kvbench: {message.strip()}")
            return
        argv = (data.get("invocation") or {}).get("module_args", {}).get("argv") or data.get("cmd") or []
        if isinstance(argv, list) and "record" in argv and "point" in argv and "--run-dir" in argv:
            self._point_line(Path(argv[argv.index("--run-dir") + 1]), data.get("stdout") or "")

    def _point_line(self, run_dir: Path, stdout: str) -> None:
        try:
            recorded = json.loads(stdout)
        except ValueError:
            recorded = {}
        try:
            from kvbench.ingest.timing import read_run_timing
            from kvbench.status import progress_line, progress_of

            progress = progress_of(read_run_timing(run_dir, server_logs=False))
            point = None
            if recorded.get("path"):
                folder = Path(recorded["path"]).parent
                scenario, _, tail = f"{folder.parent.name}/{folder.name}".partition("/")
                found = re.match(r"c(\d+)-r(\d+)$", tail)
                if found:
                    point = {
                        "scenario": scenario,
                        "concurrency": int(found[1]),
                        "repetition": int(found[2]),
                        "status": recorded.get("status"),
                        "reason": recorded.get("reason"),
                    }
            line = progress_line(progress, point)
        except Exception as exc:  # the console must never stop a sweep
            line = f"{recorded.get('path', '?')}: {recorded.get('status', '?')} (no progress: {exc})"
        color = None if recorded.get("status") in ("ok", "skipped") else "bright red"
        self._say(line, color=color)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        super().v2_runner_on_failed(result, ignore_errors)
        if self._log is None or self._log.echo or ignore_errors:
            return
        data = result.result
        text = str(data.get("msg") or "")
        for item in data.get("results") or []:
            if isinstance(item, dict) and item.get("failed") and item.get("msg"):
                text += f" | {item['msg']}"
        if data.get("stderr"):
            text += f" {str(data['stderr'])[-1500:]}"
        elif not text and data.get("stdout"):
            text = str(data["stdout"])[-1500:]
        self._say(f"FAILED {result.host.get_name()}: {result.task.get_name()}: {text.strip()[:3000]}", "red")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        super().v2_runner_on_unreachable(result)
        if self._log is not None and not self._log.echo:
            self._say(f"UNREACHABLE {result.host.get_name()}: {result.result.get('msg', '')}", "red")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        echo = self._log is not None and self._log.echo
        if self._log is not None:
            self._log.echo = True
        super().v2_playbook_on_stats(stats)
        if self._log is not None:
            self._log.echo = False
            if self._run_dir is not None and not echo:
                self._say(f"kvbench: full Ansible log in {self._run_dir / LOG_NAME}")
            self._log.close()
