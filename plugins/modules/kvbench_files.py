#!/usr/bin/python
"""Write many text files in one module run, with every secret replaced before anything reaches the disk."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kvbench_files
short_description: Write a set of files, secrets redacted, optionally checksummed into SHA256SUMS
description:
  - Writes every file of O(files) whose content differs (atomically, through a temporary file in the same
    folder), creating missing parent folders. Reports the paths it changed.
  - O(moves) redacts files another module left in a staging path (kubernetes.core.k8s_cp copies) into their
    final path and removes the staging file, so the final path never holds an unredacted byte.
  - Every value of O(redact) (and its JSON-escaped and URL-quoted forms) is replaced by C(<redacted>) in the
    content before it is written; the values are never logged.
  - With O(sums_dir), the sha256 of every file written is recorded in O(sums_dir)/SHA256SUMS through
    kvbench.render.update_sums (the run directory's one checksum writer).
options:
  files:
    description: Path -> text content. Paths must be absolute.
    type: dict
    default: {}
  moves:
    description: Staging path -> final path (absolute). A missing staging file is an error unless
      O(missing_ok).
    type: dict
    default: {}
  missing_ok:
    description: Skip O(moves) entries whose staging file does not exist.
    type: bool
    default: false
  redact:
    description: Secret values replaced by C(<redacted>) in everything written.
    type: list
    elements: str
    default: []
  mode:
    description: Permission bits of the files written.
    type: str
    default: "0644"
  keep:
    description: Files left as they are (binary archives that hold no secret), only set to O(mode) and
      recorded in SHA256SUMS with the others.
    type: list
    elements: str
    default: []
  sums_dir:
    description: Run directory whose SHA256SUMS records the files written and kept; empty for none.
    type: str
    default: ""
author: kvbench
"""

import json  # noqa: E402 (Ansible modules start with their documentation)
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

REDACTED = b"<redacted>"


def secret_forms(secrets: list[str]) -> list[bytes]:
    """Each secret as it may appear in a log: raw, JSON-escaped and URL-quoted; longest first."""
    forms: set[bytes] = set()
    for secret in secrets:
        if not secret:
            continue
        for form in (secret, json.dumps(secret)[1:-1], quote(secret, safe="")):
            forms.add(form.encode())
    return sorted(forms, key=len, reverse=True)


def redact(data: bytes, forms: list[bytes]) -> bytes:
    for form in forms:
        data = data.replace(form, REDACTED)
    return data


def write_if_changed(path: str, data: bytes, mode: int) -> bool:
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                os.chmod(path, mode)
                return False
    except FileNotFoundError:
        pass
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kvbench-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "dict", "default": {}},
            "moves": {"type": "dict", "default": {}},
            "missing_ok": {"type": "bool", "default": False},
            "redact": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "mode": {"type": "str", "default": "0644"},
            "keep": {"type": "list", "elements": "str", "default": []},
            "sums_dir": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    files, moves = module.params["files"], module.params["moves"]
    paths = [*files, *moves, *moves.values(), *module.params["keep"]]
    relative = sorted(str(p) for p in paths if not os.path.isabs(str(p)))
    if relative:
        module.fail_json(msg=f"kvbench_files: paths must be absolute: {', '.join(relative)}")
    forms = secret_forms(module.params["redact"])
    mode = int(module.params["mode"], 8)
    planned: dict[str, bytes | str] = {}
    for path, content in files.items():
        planned[path] = redact((content if isinstance(content, str) else str(content)).encode(), forms)
    staged: list[str] = []
    for src, dest in moves.items():
        try:
            with open(src, "rb") as handle:
                planned[str(dest)] = redact(handle.read(), forms)
            staged.append(src)
        except FileNotFoundError:
            if not module.params["missing_ok"]:
                module.fail_json(msg=f"kvbench_files: nothing to move at {src}")
        except OSError as exc:
            module.fail_json(msg=f"kvbench_files: cannot read {src}: {exc.strerror}")
    if module.check_mode:
        module.exit_json(changed=bool(planned), written=sorted(planned))
    changed, written = [], []
    for path in sorted(planned):
        try:
            if write_if_changed(path, planned[path], mode):
                changed.append(path)
            written.append(path)
        except OSError as exc:
            module.fail_json(msg=f"kvbench_files: cannot write {path}: {exc.strerror}")
    for src in staged:
        if src not in planned:
            os.unlink(src)
    for path in module.params["keep"]:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            module.fail_json(msg=f"kvbench_files: cannot keep {path}: {exc.strerror}")
        written.append(path)
    if module.params["sums_dir"] and written:
        try:
            from kvbench.render import update_sums  # the controller's harness package
        except ImportError as exc:
            module.fail_json(msg=f"kvbench_files: sums_dir needs the kvbench package in this Python: {exc}")
        run_dir = Path(module.params["sums_dir"])
        inside = [Path(p) for p in written if Path(p).resolve().is_relative_to(run_dir.resolve())]
        update_sums(run_dir.resolve(), [p.resolve() for p in inside])
    module.exit_json(changed=bool(changed or staged), written=changed)


if __name__ == "__main__":
    main()
