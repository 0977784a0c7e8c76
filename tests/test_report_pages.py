"""The report pages come from mug/templates with HTML escaping on: what the data says (captions, shard names,
keys) shows as text and never runs as markup, while the charts the code draws are inserted as they are."""

import numpy as np
import pandas as pd
from PIL import Image

from mug.data.gate.checks import Check, GateResult
from mug.data.gate.report import render_html as gate_page
from mug.data.gate.scan import ShardScan
from mug.evaluation.comparison import html_page
from mug.evaluation.report import render_html as evaluation_page
from mug.evaluation.results import Evaluation

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_a_caption_with_a_script_tag_is_text_in_the_evaluation_page():
    metrics = {"probe_cls/shape": 0.5, "floor/probe_cls/shape": 0.3, "transfer/score": 0.1}
    confusion = {"probe_cls/shape": {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]}}
    image = Image.new("RGB", (8, 8))
    ev = Evaluation("ckpt", "mug", ["a.tar"], 2, 0, metrics, confusion, {"shape": 0.5}, {"shape": None})
    ev.captions = [(image, SCRIPT, f"a red {SCRIPT}")]
    page = evaluation_page(ev)
    assert SCRIPT not in page and page.count(ESCAPED) == 3 and "<script" not in page
    assert 'alt="a red &lt;script&gt;' in page  # generated, reference, and the reference as alt text
    assert page.count('src="data:image/png;base64,') == 3 and "<i>(empty)</i>" not in page


def test_the_gate_page_escapes_samples_and_draws_its_histograms():
    table = pd.DataFrame({"min_side": np.arange(10.0)})
    example = {"key": "<k>", "shard": "a&b.tar", "value": SCRIPT}
    check = Check("min_side", "expect_column_min_to_be_between", 0, {"min": 32}, False, examples=[example])
    page = gate_page(GateResult([check], table, [ShardScan("<s>.tar", error=SCRIPT)], 1.0, 1.0, 1))
    assert SCRIPT not in page and page.count(ESCAPED) == 2
    assert "<code>a&amp;b.tar / &lt;k&gt;</code>" in page and "<code>&lt;s&gt;.tar</code>" in page
    assert page.count("<svg") == 1 and '<line x1="0" x2="320"' in page  # inserted as markup, not as text


def test_every_page_shares_the_base_style():
    results = [{"objective": "<b>mae</b>", "metrics": {"transfer/score": 0.1}}]
    page = html_page(results, "tiny & quick")
    assert "&lt;b&gt;mae&lt;/b&gt;" in page and "tiny &amp; quick" in page
    gate = gate_page(GateResult([], pd.DataFrame({"min_side": [1.0]}), [], 1.0, 1.0, 1))
    style = "th, td { text-align: left;"
    assert style in page and style in gate and page.startswith("<!doctype html>")
