"""The benchmark's fan-in: every objective's evaluation, ranked in one comparison."""

from kfp import dsl
from kfp.dsl import HTML, Input, Markdown, Metrics, Output

from components.base_image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def rank_objectives(evaluations: Input[list[Metrics]], budget: str, table: Output[Markdown], chart: Output[HTML]):
    """Rank the objectives by transfer score: a Markdown table and an HTML page with a bar chart."""
    from mug.evaluation.comparison import html_page, markdown_table
    from mug.steps import numbers

    results = [{"objective": e.metadata["objective"], "metrics": numbers(metadata=e.metadata)} for e in evaluations]
    with open(table.path, "w") as f:
        f.write(markdown_table(results))
    with open(chart.path, "w") as f:
        f.write(html_page(results, budget))
    print(markdown_table(results))
