"""What is new since production: the decision a scheduled mug-retrain run makes before it spends any compute."""

from mug.changes import since_production
from mug.registry import production_lineage, register_model
from tests.test_registry import checkpoint, empty_registry, scored, uri  # noqa: F401 (fixtures)

TRAINED = {"data_md5": "aaa.dir", "data_revision": "c0ffee", "data_ref": "v1", "code_version": "0.1.0+g1234567"}


def test_nothing_new_skips_unless_forced(checkpoint, uri):  # noqa: F811 (fixtures)
    register_model(checkpoint, scored(0.5), TRAINED, uri=uri)
    assert production_lineage(uri=uri) == (1, TRAINED)
    data = {key: TRAINED[key] for key in ("data_md5", "data_revision", "data_ref")}
    change = since_production(data, "mug-encoder", uri, code=TRAINED["code_version"])
    assert not change.retrain and change.trigger == ""
    assert change.status.startswith("nothing new since production v1: data aaa.dir at v1 (c0ffee) and code ")
    assert change.status.endswith("force=True retrains anyway")
    forced = since_production(data, "mug-encoder", uri, force=True, code=TRAINED["code_version"])
    assert forced.retrain and forced.trigger == "forced" and "nothing new since production v1" in forced.status


def test_new_data_or_new_code_retrains_and_names_the_trigger(checkpoint, uri):  # noqa: F811 (fixtures)
    register_model(checkpoint, scored(0.5), TRAINED, uri=uri)
    new_data = {"data_md5": "bbb.dir", "data_revision": "d00d", "data_ref": "v2"}
    change = since_production(new_data, "mug-encoder", uri, code=TRAINED["code_version"])
    assert change.retrain and change.trigger == "data v2 (d00d)"
    assert change.status == "retrain: new data bbb.dir at v2 (d00d) (production v1: aaa.dir at v1 (c0ffee))"
    same_data = {key: TRAINED[key] for key in ("data_md5", "data_revision")}  # plain data: no ref
    change = since_production(same_data, "mug-encoder", uri, code="0.1.0+g7654321")
    assert change.retrain and change.trigger == "code 0.1.0+g7654321"


def test_without_production_there_is_nothing_to_compare_with(uri):  # noqa: F811 (fixtures)
    change = since_production({"data_md5": "x"}, "mug-encoder", uri)
    assert change.retrain and "no production version" in change.status


def test_a_retrained_version_records_its_trigger(checkpoint, uri):  # noqa: F811 (fixtures)
    from mug.steps import register

    metadata = {"objective": "mug", "data_md5": "bbb.dir", "data_revision": "d00d", "data_ref": "v2", "steps": 3}
    register(checkpoint, scored(0.5), metadata, "run-9", "mug-encoder", uri, trigger="data v2 (d00d)")
    assert production_lineage(uri=uri)[1]["trigger"] == "data v2 (d00d)"
