"""The commands in README.md and docs/*.md still work as written: the static check of scripts/check_docs.py
(scripts exist, flags exist, Hydra overrides compose, python blocks import what exists, links resolve; nothing
is trained). `python scripts/check_docs.py --run` runs them at tiny budgets."""

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_docs():
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("check_docs", None)


def failures(results) -> str:
    return "\n".join(
        f"{r.command.where}: {r.command.short}\n    " + "\n    ".join(r.errors) for r in results if not r.ok
    )


def test_readme_and_docs_commands_pass_the_static_check(check_docs):
    files = check_docs.default_files()
    assert ROOT / "README.md" in files and len(files) > 5
    results = check_docs.check_files(files)
    assert len([r for r in results if r.command.kind != "link"]) > 40  # the extraction found the commands
    broken = failures(results)
    assert not broken, "commands in the docs that no longer work (file:line, command, why):\n" + broken


def test_a_broken_command_fails_naming_file_and_command(check_docs, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent(
            """\
            # A page

            ```bash
            python scripts/train.py experiment=sac_metaworld seed=1
            python scripts/train.py experiment=nosuch env.task=metaworld/reach-v3
            python scripts/train.py trainer.totl_steps=5
            python scripts/evaluate.py --scripted metaworld/drawer-open-v3 --episodez 3
            python scripts/make_datasets.py metaworld --tasks drawer-opne-v3
            bash scripts/test.sh -m slowest
            ```

            ```python
            from embodied_rl.agents import SAC, NoSuchAgent
            ```

            A [link](nosuch.md), an [anchor](#no-such-heading), a [good one](#a-page). Inline:
            `python scripts/train.py -m experiment=iql seed=1,2 trainer.dataset=medium trainer.nosuch=1`.
            """
        )
    )
    results = check_docs.check_files([page])
    by_text = {r.command.short: r for r in results}
    assert by_text["python scripts/train.py experiment=sac_metaworld seed=1"].ok
    nosuch = by_text["python scripts/train.py experiment=nosuch env.task=metaworld/reach-v3"]
    assert "experiment/nosuch" in " ".join(nosuch.errors)
    assert "trainer.totl_steps" in " ".join(by_text["python scripts/train.py trainer.totl_steps=5"].errors)
    assert any("--episodez" in e for r in results for e in r.errors)
    assert any("drawer-opne-v3" in e for r in results for e in r.errors)
    assert any("slowest" in e for r in results for e in r.errors)
    assert any("NoSuchAgent" in e for r in results for e in r.errors)
    assert any("nosuch.md" in e for r in results for e in r.errors)
    assert any("#no-such-heading" in e for r in results for e in r.errors)
    assert not any("#a-page" in e for r in results for e in r.errors)
    assert any("trainer.nosuch" in e for r in results for e in r.errors)  # inline commands are checked too
    text = check_docs.report(results, run=False, verbose=False)
    assert f"FAIL  {page}:5  python scripts/train.py experiment=nosuch" in text
    assert check_docs.main([str(page)]) == 1


def test_main_exits_0_on_a_good_page(check_docs, tmp_path):
    page = tmp_path / "good.md"
    page.write_text("# Good\n\n```bash\npython scripts/train.py experiment=iql trainer.dataset=mixed seed=2\n```\n")
    assert check_docs.main([str(page)]) == 0


def test_run_budget_replaces_the_commands_own_values(check_docs):
    checker = check_docs.Checker()
    args = check_docs.budget_overrides(
        "scripts/train.py", ["-m", "experiment=sac_metaworld", "seed=1,2,3", "trainer.total_steps=50000"], checker
    )
    assert args[0] == "-m" and "seed=1" in args and "trainer.total_steps=300" in args
    assert "trainer.total_steps=50000" not in args and "overwrite=true" in args
    assert not any(a.startswith("trainer.total_updates") for a in args)  # an online run has no total_updates
    args = check_docs.budget_overrides(
        "scripts/make_datasets.py", ["metaworld", "--tasks", "drawer-open-v3", "--episodes", "50"], checker
    )
    assert args[:3] == ["metaworld", "--tasks", "drawer-open-v3"] and args.count("--episodes") == 1
    assert args[args.index("--episodes") + 1] == "7"
