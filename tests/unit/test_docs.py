"""The README documents what the code does: every server option, and the two commands."""

from pathlib import Path

from server.config import _OPTIONS, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_configuration_table_lists_every_option():
    for flag, *_ in _OPTIONS:
        assert f"| `{flag}` | `{env_name(flag)}` |" in README, flag


def test_readme_shows_the_two_commands():
    assert "make serve" in README and "make test" in README
