#!/usr/bin/python
"""Write many small text files in one module run (render-only mode writes dozens per playbook)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: kvbench_files
short_description: Write a set of text files, creating their folders
description:
  - Writes every file of O(files) whose content differs (atomically, through a temporary file in the same
    folder), creating missing parent folders. Reports the paths it changed.
options:
  files:
    description: Path -> content. Paths must be absolute.
    type: dict
    required: true
  mode:
    description: Permission bits of the files written.
    type: str
    default: "0644"
author: kvbench
"""

import os  # noqa: E402 (Ansible modules start with their documentation)
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def write_if_changed(path: str, content: str, mode: int) -> bool:
    data = content.encode()
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
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
            "files": {"type": "dict", "required": True},
            "mode": {"type": "str", "default": "0644"},
        },
        supports_check_mode=True,
    )
    files = module.params["files"]
    relative = [p for p in files if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg=f"kvbench_files: paths must be absolute: {', '.join(sorted(relative))}")
    mode = int(module.params["mode"], 8)
    changed = []
    for path in sorted(files):
        content = files[path] if isinstance(files[path], str) else str(files[path])
        if module.check_mode:
            try:
                with open(path, encoding="utf-8") as handle:
                    same = handle.read() == content
            except (FileNotFoundError, UnicodeDecodeError):
                same = False
            if not same:
                changed.append(path)
            continue
        try:
            if write_if_changed(path, content, mode):
                changed.append(path)
        except OSError as exc:
            module.fail_json(msg=f"kvbench_files: cannot write {path}: {exc.strerror}")
    module.exit_json(changed=bool(changed), written=changed)


if __name__ == "__main__":
    main()
