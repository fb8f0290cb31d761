"""--expect-sts: the fp32 export's STS-B Spearman must match a known score, else nothing is published."""

from __future__ import annotations

import json

import pytest

from export.__main__ import main
from export.config import ExportConfig
from export.errors import InputError
from export.pipeline import plan
from export.steps import sts_gate
from server.repository import REPORT_FILE

from .helpers import loadable


def test_gate_passes_within_the_tolerance_on_either_side():
    assert sts_gate(83.44, 83.42, 0.05)["expected_passed"]
    assert sts_gate(83.37, 83.42, 0.05)["expected_passed"]
    assert sts_gate(83.47, 83.42, 0.05)["expected_passed"], "the bound itself passes"
    missed = sts_gate(83.30, 83.42, 0.05)
    assert not missed["expected_passed"]
    assert missed["expected_difference"] == pytest.approx(-0.12)


def test_negative_tolerance_is_bad_input(tiny_bert, tmp_path):
    config = ExportConfig(
        source=str(tiny_bert), repository=tmp_path, expect_sts=80.0, expect_sts_tolerance=-1
    )
    with pytest.raises(InputError, match="--expect-sts-tolerance must be >= 0"):
        plan(config)


def test_missing_sts_data_is_bad_input_without_int8(tiny_bert, tmp_path):
    config = ExportConfig(
        source=str(tiny_bert), repository=tmp_path, expect_sts=80.0, sts_data=tmp_path / "absent.tsv"
    )
    with pytest.raises(InputError, match="--expect-sts gated on STS-B"):
        plan(config)


def test_a_score_far_from_the_expected_one_publishes_nothing(tiny_bert, tmp_path, capsys):
    repository = tmp_path / "models"
    args = ["--model", str(tiny_bert), "--repository", str(repository), "--expect-sts", "99.5"]
    assert main(args) == 3
    error = capsys.readouterr().err
    assert "fp32 STS-B Spearman" in error and "not within 0.05 of the expected 99.50" in error
    assert "nothing published" in error
    assert loadable(repository) == {}


def test_the_gate_is_recorded_in_the_report(tiny_bert, tmp_path):
    repository = tmp_path / "models"
    args = ["--model", str(tiny_bert), "--name", "bert", "--repository", str(repository)]
    assert main([*args, "--expect-sts", "0", "--expect-sts-tolerance", "200"]) == 0
    sts = json.loads((repository / "bert" / "1" / REPORT_FILE).read_text())["sts"]
    assert sts["pairs"] == 1379 and sts["expected"] == 0.0 and sts["expected_tolerance"] == 200.0
    assert sts["expected_passed"] is True
    assert sts["expected_difference"] == pytest.approx(sts["spearman"])
