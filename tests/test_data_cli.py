"""`mug data synth | tokenizer | validate` end to end, as a user (or a DVC stage) runs them."""

import json

import pytest

from mug.cli import main
from mug.tokenizer import CaptionTokenizer


@pytest.mark.slow
def test_synth_then_tokenizer_then_a_passing_gate(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["data", "synth", "--out", str(out), "--train", "300", "--eval", "100", "--shard-size", "100"]) == 0
    assert "wrote 300 train and 100 eval samples in 4 shards" in capsys.readouterr().out
    assert len(list((out / "train").glob("*.tar"))) == 3 and len(list((out / "eval").glob("*.parquet"))) == 1

    tok = tmp_path / "tokenizer.json"
    assert main(["data", "tokenizer", str(out / "train"), "--out", str(tok), "--min-frequency", "1"]) == 0
    tokenizer = CaptionTokenizer.from_file(tok)
    assert tokenizer.decode(tokenizer.encode(["a red circle"], 8)[0].tolist()) == "a red circle"

    report = tmp_path / "report"
    code = main(["data", "validate", str(out / "train"), "--tokenizer", str(tok), "--out", str(report)])
    assert code == 0 and "data gate passed" in capsys.readouterr().out
    assert json.loads((report / "validation.json").read_text())["passed"] is True
    assert "<html" in (report / "validation.html").read_text().lower()


def test_a_corrupt_corpus_fails_the_gate_naming_the_check(tmp_path, capsys):
    out = tmp_path / "corpus"
    main(["data", "synth", "--out", str(out), "--train", "200", "--eval", "0", "--corrupt-rate", "0.1"])
    capsys.readouterr()
    assert main(["data", "validate", str(out / "train"), "--workers", "1"]) == 1
    assert "decode_failure_rate: observed" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "00000.tar").write_bytes(b"not a tar at all" * 100)
    assert main(["data", "tokenizer", str(tmp_path / "00000.tar"), "--out", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "00000.tar" in err and len(err.splitlines()) == 1
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--train", "-5"]) == 2
    assert "train_samples" in capsys.readouterr().err
