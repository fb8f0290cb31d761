"""The README's configuration table has a row for every server option the parser accepts."""

from pathlib import Path

from server.config import _OPTIONS, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_configuration_table_lists_every_option():
    for flag, *_ in _OPTIONS:
        assert f"| `{flag}` | `{env_name(flag)}` |" in README, flag

