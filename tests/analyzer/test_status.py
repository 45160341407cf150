"""`kvbench status RESULTS_DIR` and the progress line the console callback prints, on canned records."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kvbench.cli import main
from kvbench.ingest.timing import read_run_timing
from kvbench.status import progress_line, progress_of
from tests.analyzer.test_timing import canned_run
from tests.records.builders import checked, record


def status(path: Path):
    return CliRunner().invoke(main, ["status", str(path)], env={"COLUMNS": "200"})


def test_a_finished_run_is_done(tmp_path):
    run_dir, _ = canned_run(tmp_path)
    result = status(run_dir.parent)  # the results directory: its latest run
    assert result.exit_code == 0, result.output
    assert run_dir.name in result.output and "complete" in result.output
    assert "[4/4]" in result.output and "ok 4, failed 0, skipped 0, left 0 | done" in result.output


def test_a_running_sweep_shows_what_is_left_and_an_eta(tmp_path):
    run_dir, _ = canned_run(tmp_path)
    (run_dir / "llm-d-redis" / "c0004-r1" / "point.json").unlink()
    checked(record("manifest", run_dir, [], {"status": "running"}))
    progress = progress_of(read_run_timing(run_dir, server_logs=False))
    assert (progress.total, progress.ok, progress.left, progress.starts_left) == (4, 3, 1, 1)
    assert progress.next_point == "llm-d-redis/c0004-r1"
    assert progress.point_s == 28.0  # every canned point span is 28 s
    assert progress.eta_s is not None and progress.eta_s > progress.point_s  # a point and a server start
    result = status(run_dir)
    assert result.exit_code == 0, result.output
    assert "llm-d-redis/c0004-r1" in result.output and "left 1" in result.output and "ETA" in result.output


def test_a_failed_point_line_names_the_reason(tmp_path):
    run_dir, _ = canned_run(tmp_path)
    progress = progress_of(read_run_timing(run_dir, server_logs=False))
    point = {
        "scenario": "no-offload",
        "concurrency": 4,
        "repetition": 1,
        "status": "failed",
        "reason": "vLLM died",
    }
    line = progress_line(progress, point)
    assert line.startswith("[4/4] no-offload c=4 r=1 failed") and line.endswith("- vLLM died")


def test_status_of_a_directory_that_is_no_run_names_it(tmp_path):
    result = status(tmp_path)
    assert result.exit_code == 2
    assert str(tmp_path) in result.output and "plan.json" in result.output


FAKE_SWEEP = """\
- name: The sweep's console, with one real record
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Keep the plan for every later play
      ansible.builtin.set_fact:
        kvbench_run_dir: "{run_dir}"
    - name: An ordinary task the screen does not show
      ansible.builtin.debug:
        msg: nothing to see
    - name: Write point.json of no-offload/c0001-r1
      ansible.builtin.command:
        argv: ["{python}", -m, kvbench, record, point, --run-dir, "{run_dir}", --point, no-offload/c0001-r1]
        stdin: '{outcome}'
      changed_when: true
"""


def test_the_console_callback_prints_one_line_per_point_and_logs_everything(tmp_path):
    import json
    import sys

    from tests.conftest import run_playbook
    from tests.records.builders import point_outcome

    run_dir, _ = canned_run(tmp_path)
    playbook = tmp_path / "sweep.yml"
    outcome = json.dumps(point_outcome())
    playbook.write_text(FAKE_SWEEP.format(run_dir=run_dir, python=sys.executable, outcome=outcome))
    result = run_playbook(playbook, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}")
    assert result.returncode == 0, result.stdout + result.stderr
    screen = result.stdout
    assert f"kvbench: full Ansible log in {run_dir / 'ansible.log'}" in screen
    assert "[4/4] no-offload c=1 r=1 ok" in screen and "left 0 | done" in screen
    assert "nothing to see" not in screen and "TASK [An ordinary task" not in screen
    log = (run_dir / "ansible.log").read_text()
    assert "TASK [An ordinary task the screen does not show]" in log and "nothing to see" in log
