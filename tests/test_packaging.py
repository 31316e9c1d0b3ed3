"""The package installs as `embodied_rl` with `envs/` mapped to `embodied_rl.envs`."""

from pathlib import Path

import tomllib

import embodied_rl

REPO = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared():
    """A subpackage missing from pyproject's list would vanish from a non-editable install."""
    found = {"embodied_rl.envs"} if (REPO / "envs" / "__init__.py").exists() else set()
    for init in (REPO / "embodied_rl").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(REPO).parts))
    assert found == _declared_packages()


def test_envs_is_a_subpackage_not_a_top_level_name():
    import importlib.util

    spec = importlib.util.find_spec("embodied_rl.envs")
    assert spec is not None and Path(spec.origin).parent == REPO / "envs"
    assert embodied_rl.__version__


def test_plain_wheel_holds_envs_inside_the_package(tmp_path):
    """`pip install .` installs what the wheel holds: embodied_rl/envs/*, and no top-level `envs`."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("embodied_rl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"embodied_rl", wheel.name.split("-py3")[0] + ".dist-info"}
    for module in ("envs/factory.py", "envs/distractors.py", "agents/sac.py", "trainers/online.py"):
        assert f"embodied_rl/{module}" in names
