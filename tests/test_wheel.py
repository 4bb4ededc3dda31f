"""An installed wheel is a whole domainbert: recipes, the download catalogue and the web page ship as
package data, and a tiny quickstart runs from a directory outside the repository."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import REPO


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (no deps) and this environment's
    packages (torch and the rest) reused through a .pth file, so nothing is downloaded."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(root / "dist"), str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((root / "dist").glob("domainbert-*.whl"))
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Our site-packages after the wheel's: the wheel's domainbert wins, the editable install's hook
    # (a .pth inside our site-packages) is not run from a path added this way.
    ours = [p for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (purelib / "_reuse_test_env.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                                str(purelib), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return env


def test_the_wheel_ships_its_recipes_and_data(wheel_env: Path, tmp_path: Path) -> None:
    python = wheel_env / "bin" / "python"
    script = ("import domainbert, json; from domainbert.train.pretrain import RECIPES, load_recipe; "
              "from domainbert.data.sources import BLURB; from domainbert.serve.app import page_html; "
              "print(json.dumps([domainbert.__file__, list(RECIPES), load_recipe('small-cpu')['max_steps'], "
              "len(BLURB), len(page_html())]))")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    where, recipes, steps, blurb, page = yaml.safe_load(done.stdout)
    assert str(wheel_env) in where and str(REPO / "src") not in where  # the wheel, not the checkout
    assert recipes == ["mini-cpu", "pubmedbert-base", "pubmedbert-base-phase2", "small-cpu", "tiny"]
    assert steps == yaml.safe_load((REPO / "src/domainbert/train/recipes/small-cpu.yaml").read_text())["max_steps"]
    assert blurb == 14 and page > 1000  # an entry per BLURB dataset (13) and the BC5CDR release they share
    missing = subprocess.run([str(python), "-m", "domainbert", "pretrain", "--data", str(tmp_path), "--out",
                              str(tmp_path / "run"), "--recipe", "no-such-recipe"], capture_output=True, text=True,
                             cwd=tmp_path)
    assert missing.returncode == 1 and "recipe no-such-recipe not found" in missing.stderr


def test_a_tiny_quickstart_runs_from_the_wheel_outside_the_repository(wheel_env: Path, tmp_path: Path,
                                                                      shared_data: Path) -> None:
    out = tmp_path / "qs"
    cmd = [str(wheel_env / "bin" / "python"), "-m", "domainbert", "quickstart", "--mirror", str(shared_data),
           "--out", str(out), "--minutes", "0.1", "--model-size", "tiny", "--corpus-files", "1",
           "--vocab-size", "2000", "--dupe-factor", "1", "--limit", "50", "--finetune-steps", "4",
           "--tasks", "biosses", "--no-baseline", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # The mini-cpu recipe, read from the installed package (an installed wheel once fell back to
    # PretrainArgs' defaults silently, when the recipes lived outside the package).
    assert f"recipe mini-cpu ({wheel_env}" in done.stdout and "position init sinusoidal" in done.stdout
    assert "attention init local" in done.stdout
    assert (out / "blurb" / "report.md").is_file()
