"""README.md keeps the two commands a newcomer needs, and they name real commands."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO
from domainbert.cli import COMMANDS


def _code_after(text: str, marker: str) -> str:
    after = text.split(marker, 1)[1]
    return re.search(r"```bash\n(.*?)\n```", after, re.S).group(1).strip()


def test_readme_has_the_setup_and_test_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    main_cmd = _code_after(readme, "## On a fresh machine")
    assert main_cmd.startswith("bash .ci/setup")
    for used in re.findall(r"domainbert ((?:[a-z]+)(?: [a-z]+)?)", main_cmd):
        assert used in COMMANDS, f"README runs `domainbert {used}`, which is not a command"
    test_cmd = _code_after(readme, "<!-- test-command -->")
    extracted = subprocess.run(
        ["awk", '/<!-- test-command -->/{getline; while ($0 !~ /^```/) getline; getline; print; exit}',
         str(REPO / "README.md")], capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == test_cmd and "pytest" in test_cmd
    assert "bash .ci/setup" in (REPO / ".ci" / "run").read_text()
