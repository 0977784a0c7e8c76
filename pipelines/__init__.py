"""The versioned pipelines, by the name they are compiled, uploaded and run under."""

from pipelines.mug_benchmark import mug_benchmark
from pipelines.mug_pretrain import mug_pretrain
from pipelines.mug_retrain import mug_retrain

PIPELINES = {"mug-pretrain": mug_pretrain, "mug-benchmark": mug_benchmark, "mug-retrain": mug_retrain}
