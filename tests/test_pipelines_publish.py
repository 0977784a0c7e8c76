"""Publishing pipelines: cron validation, parameters, versioned compile, and upload/run/schedule against a local
stand-in of the KFP v2beta1 REST API that records what the real kfp client sends."""

import email.parser
import json
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kfp import dsl

import mug
from mug.cli import main
from mug.errors import UserError
from pipelines import publish


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def scale(x: float, factor: int) -> float:
    return x * factor


@dsl.pipeline(name="toy", description="Scales a number.")
def toy(x: float, factor: int = 2, objectives: list = ["mae"], tag: str = "v1", fast: bool = False):  # noqa: B006
    scale(x=x, factor=factor)


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setattr(publish, "registry", lambda: {"mug-toy": toy})


# ---------------------------------------------------------------------------------------------- cron


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 3 * * *",
        "*/30 * * * * *",
        "0 15,45 9-17 ? * MON-FRI",
        "0 0 0 1 jan,jul *",
        "0 0 */2 1-15/3 * 0",
        "@daily",
        "@every 1h30m",
    ],
)
def test_valid_cron(cron):
    assert publish.validate_cron(cron) == cron


def test_five_field_cron_says_what_kfp_means():
    with pytest.raises(UserError) as err:
        publish.validate_cron("0 3 * * *")
    assert str(err.value) == "cron has 5 fields: KFP uses six, seconds first; did you mean '0 0 3 * * *'?"


@pytest.mark.parametrize(
    "cron, words",
    [
        ("0 0 3 * *  * 1", "has 7 fields"),
        ("60 0 3 * * *", "seconds field '60' is out of range: seconds is 0-59"),
        ("0 0 24 * * *", "hours field '24' is out of range"),
        ("0 0 3 0 * *", "day of month field '0' is out of range: day of month is 1-31"),
        ("0 0 3 * 13 *", "month field '13'"),
        ("0 0 3 * * 7", "day of week field '7' is out of range: day of week is 0-6"),
        ("0 0 3 * * FUNDAY", "is not a number or SUN-SAT"),
        ("0 0 3 * FOO *", "is not a number or JAN-DEC"),
        ("0 */0 3 * * *", "step that is not a positive number"),
        ("0 0 5-3 * * *", "runs backwards"),
        ("? 0 3 * * *", "seconds field '?'"),
        ("0 0 3 1,,2 * *", "day of month field ''"),
        ("@fortnightly", "unknown descriptor"),
    ],
)
def test_bad_cron_names_the_field(cron, words):
    with pytest.raises(UserError, match="cron") as err:
        publish.validate_cron(cron)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- parameters


def test_params_typed_as_declared():
    declared = publish.declared_params("mug-toy")
    assert declared["x"] == publish.Param("float", None, True)
    assert declared["objectives"] == publish.Param("list", ["mae"], False)
    args = publish.parse_params(
        ["x=1e-3", "factor=3", 'objectives=["mae","mug"]', "tag=0123", "fast=True"], declared, "mug-toy"
    )
    assert args == {"x": 0.001, "factor": 3, "objectives": ["mae", "mug"], "tag": "0123", "fast": True}
    assert publish.parse_params(["x=2", "objectives=[mae, mug]"], declared, "mug-toy")["objectives"] == ["mae", "mug"]


@pytest.mark.parametrize(
    "pairs, message",
    [
        (["x=1", "epochs=3"], "unknown parameter 'epochs' for mug-toy; known: factor, fast, objectives, tag, x"),
        (["x=1", "factor=2.5"], "--param factor: expected int, got '2.5'"),
        (["x=1", "objectives=mae"], "--param objectives: expected list, got 'mae'"),
        (["x=1", "fast=maybe"], "--param fast: expected bool, got 'maybe'"),
        (["x"], "--param 'x': expected key=value"),
        (["factor=1"], "mug-toy needs a value for x (--param key=value)"),
    ],
)
def test_bad_params(pairs, message):
    with pytest.raises(UserError) as err:
        publish.parse_params(pairs, publish.declared_params("mug-toy"), "mug-toy")
    assert str(err.value) == message


def test_unknown_pipeline_lists_the_known():
    with pytest.raises(UserError, match=r"unknown pipeline 'nope'; known: mug-toy"):
        publish.declared_params("nope")


def test_list_shows_parameters_and_defaults(capsys):
    assert main(["pipelines", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "mug-toy  Scales a number."
    assert "    x: float (required)" in out
    assert "    objectives: list = ['mae']" in out
    assert "    factor: int = 2" in out


def test_run_local_passes_typed_arguments(monkeypatch, capsys):
    calls = []

    def run_local(name, arguments, pipeline_root="runs/pipelines", verbose=False):
        calls.append((name, arguments, pipeline_root))
        return "mug-toy: SUCCEEDED"

    monkeypatch.setitem(sys.modules, "pipelines.local", types.SimpleNamespace(run_local=run_local))
    code = main(
        [
            "pipelines",
            "run-local",
            "mug-toy",
            "--param",
            "x=1.5",
            "--param",
            "objectives=[a]",
            "--pipeline-root",
            "/tmp/roots",
        ]
    )
    assert code == 0
    assert calls == [("mug-toy", {"x": 1.5, "objectives": ["a"]}, "/tmp/roots")]
    assert capsys.readouterr().out == "mug-toy: SUCCEEDED\n"
    assert main(["pipelines", "run-local", "mug-toy", "--param", "y=1"]) == 2
    assert "unknown parameter 'y'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- compile


def _head_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=Path(publish.__file__).parent, capture_output=True, text=True
    ).stdout.strip()


def test_compile_writes_versioned_yaml_with_the_commit(tmp_path, capsys):
    assert main(["pipelines", "compile", "--all", "--out", str(tmp_path)]) == 0
    path = tmp_path / "mug-toy" / f"{mug.__version__}.yaml"
    assert capsys.readouterr().out == f"{path}\n"
    assert sorted(p.name for p in (tmp_path / "mug-toy").iterdir()) == [path.name]  # no partial file left
    text = path.read_text()
    spec = yaml.safe_load(text)
    assert spec["pipelineInfo"]["name"] == "mug-toy"
    wanted = f"Scales a number. (mug {mug.__version__}, commit {_head_commit()}"
    assert spec["pipelineInfo"]["description"].startswith(wanted)
    assert f"# Description: {wanted}" in text
    assert toy.description == "Scales a number."  # the registered pipeline is left as it was
    assert publish.package_params(path)["objectives"] == publish.Param("list", ["mae"], False)


def test_compile_needs_names_or_all(tmp_path, capsys):
    assert main(["pipelines", "compile", "--out", str(tmp_path)]) == 2
    assert "name the pipelines to take, or pass --all" in capsys.readouterr().err
    assert main(["pipelines", "compile", "nope", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- the KFP stand-in


class FakeKFP:
    """The v2beta1 endpoints kfp.Client calls, answering with the smallest JSON it accepts; records requests."""

    def __init__(self):
        self.requests = []
        self.pipelines = {}  # display name -> {"id": ..., "versions": [version ids, oldest first]}
        self.experiments = {}  # display name -> id
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer(fake.handle("GET", self))

            def do_POST(self):
                self._answer(fake.handle("POST", self))

            def _answer(self, payload):
                status, body = payload
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def handle(self, method, request):
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        record = {
            "method": method,
            "path": url.path,
            "query": query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
        }
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            record["files"] = {
                part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                for part in message.get_payload()
            }
        elif raw:
            record["json"] = json.loads(raw)
        self.requests.append(record)
        return self.route(method, url.path, query, record)

    def route(self, method, path, query, record):
        api = "/apis/v2beta1"
        if (method, path) == ("GET", f"{api}/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", f"{api}/pipelines"):
            name = json.loads(query["filter"])["predicates"][0]["stringValue"]
            found = self.pipelines.get(name)
            return 200, {"pipelines": [{"pipeline_id": found["id"], "display_name": name}]} if found else {}
        if (method, path) == ("POST", f"{api}/pipelines/upload"):
            pid = f"pipeline-{len(self.pipelines) + 1}"
            self.pipelines[query["name"]] = {"id": pid, "versions": [f"{pid}-v1"]}
            return 200, {"pipeline_id": pid, "display_name": query["name"]}
        if (method, path) == ("POST", f"{api}/pipelines/upload_version"):
            entry = next(p for p in self.pipelines.values() if p["id"] == query["pipelineid"])
            entry["versions"].append(f"{entry['id']}-v{len(entry['versions']) + 1}")
            return 200, {"pipeline_id": entry["id"], "pipeline_version_id": entry["versions"][-1]}
        if method == "GET" and path.startswith(f"{api}/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[-2]
            entry = next(p for p in self.pipelines.values() if p["id"] == pid)
            newest = [
                {"pipeline_id": pid, "pipeline_version_id": v, "display_name": f"name of {v}"}
                for v in reversed(entry["versions"])
            ]
            return 200, {"pipeline_versions": newest[: int(query.get("page_size", 10))]}
        if (method, path) == ("GET", f"{api}/experiments"):
            name = json.loads(query["filter"])["predicates"][0]["stringValue"]
            found = self.experiments.get(name)
            return 200, {"experiments": [{"experiment_id": found, "display_name": name}]} if found else {}
        if (method, path) == ("POST", f"{api}/experiments"):
            self.experiments[record["json"]["display_name"]] = eid = f"experiment-{len(self.experiments) + 1}"
            return 200, {"experiment_id": eid, "display_name": record["json"]["display_name"]}
        if (method, path) == ("POST", f"{api}/runs"):
            return 200, {"run_id": "run-1", "display_name": record["json"]["display_name"]}
        if (method, path) == ("POST", f"{api}/recurringruns"):
            return 200, {"recurring_run_id": "recurring-1", "display_name": record["json"]["display_name"]}
        return 404, {"error": f"no route {method} {path}", "code": 5, "message": f"no route {method} {path}"}

    def calls(self):
        return [(r["method"], r["path"]) for r in self.requests]


@pytest.fixture
def kfp_api():
    fake = FakeKFP()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


API = "/apis/v2beta1"


def test_upload_creates_then_adds_versions(kfp_api, tmp_path, capsys):
    out = str(tmp_path / "dist")
    assert main(["pipelines", "upload", "mug-toy", "--host", kfp_api.url, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "mug-toy: created pipeline pipeline-1, version name of pipeline-1-v1 (pipeline-1-v1)" in printed
    compiled = (tmp_path / "dist" / "mug-toy" / f"{mug.__version__}.yaml").read_bytes()
    upload = next(r for r in kfp_api.requests if r["path"] == f"{API}/pipelines/upload")
    assert upload["files"]["uploadfile"] == compiled
    assert upload["query"]["name"] == "mug-toy"
    assert f"commit {_head_commit()}" in upload["query"]["description"]
    assert kfp_api.calls() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload"),
        ("GET", f"{API}/pipelines/pipeline-1/versions"),
    ]

    kfp_api.requests.clear()
    result = publish.upload("mug-toy", publish.Server(kfp_api.url, existing_token="s3cret"), out)
    assert (result.pipeline_id, result.version_id, result.created) == ("pipeline-1", "pipeline-1-v2", False)
    assert kfp_api.calls() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/pipelines"),
        ("POST", f"{API}/pipelines/upload_version"),
    ]
    version = kfp_api.requests[-1]
    assert version["query"]["pipelineid"] == "pipeline-1"
    assert version["query"]["name"].startswith(f"mug-toy-{mug.__version__}-{_head_commit()}")
    assert version["query"]["name"] == result.version_name
    assert version["files"]["uploadfile"] == compiled
    assert all(r["headers"].get("authorization") == "Bearer s3cret" for r in kfp_api.requests)
    assert "s3cret" not in capsys.readouterr().out


def test_run_uploaded_and_from_package(kfp_api, tmp_path, capsys):
    kfp_api.pipelines["mug-toy"] = {"id": "p-7", "versions": ["p-7-old", "p-7-new"]}
    code = main(
        [
            "pipelines",
            "run",
            "mug-toy",
            "--host",
            kfp_api.url,
            "--experiment",
            "nightly",
            "--param",
            "x=0.5",
            "--param",
            'objectives=["mae","mug"]',
            "--run-name",
            "try",
        ]
    )
    assert code == 0
    assert "mug-toy: run run-1" in capsys.readouterr().out
    assert kfp_api.calls() == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/pipelines"),
        ("GET", f"{API}/pipelines/p-7/versions"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    assert kfp_api.requests[2]["query"] == {"page_size": "1", "sort_by": "created_at desc"}
    assert kfp_api.requests[4]["json"]["display_name"] == "nightly"
    body = kfp_api.requests[-1]["json"]
    assert body["experiment_id"] == "experiment-1"
    assert body["display_name"] == "try"
    assert body["pipeline_version_reference"] == {"pipeline_id": "p-7", "pipeline_version_id": "p-7-new"}
    assert body["runtime_config"]["parameters"] == {"x": 0.5, "objectives": ["mae", "mug"]}
    assert "pipeline_spec" not in body

    kfp_api.requests.clear()
    package = publish.compile_pipeline("mug-toy", tmp_path)
    code = main(
        [
            "pipelines",
            "run",
            "mug-toy",
            "--host",
            kfp_api.url,
            "--experiment",
            "nightly",
            "--package",
            str(package),
            "--param",
            "x=2",
        ]
    )
    assert code == 0
    assert kfp_api.calls() == [("GET", f"{API}/healthz"), ("GET", f"{API}/experiments"), ("POST", f"{API}/runs")]
    body = kfp_api.requests[-1]["json"]
    assert body["experiment_id"] == "experiment-1"  # found this time, not created again
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "mug-toy"
    assert body["runtime_config"]["parameters"] == {"x": 2.0}
    assert "pipeline_version_reference" not in body


def test_run_of_a_pipeline_not_uploaded(kfp_api, capsys):
    assert main(["pipelines", "run", "mug-toy", "--host", kfp_api.url, "--param", "x=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"mug pipelines: error: pipeline mug-toy is not on {kfp_api.url}: mug pipelines upload mug-toy --host ..."
    )


@pytest.mark.parametrize("version", ["latest", "pinned"])
def test_schedule(kfp_api, version, capsys):
    kfp_api.pipelines["mug-toy"] = {"id": "p-7", "versions": ["p-7-old", "p-7-new"]}
    kfp_api.experiments["retrain"] = "e-3"
    code = main(
        [
            "pipelines",
            "schedule",
            "mug-toy",
            "--host",
            kfp_api.url,
            "--cron",
            "0 0 3 * * *",
            "--version",
            version,
            "--experiment",
            "retrain",
            "--param",
            "x=1",
            "--param",
            "tag=0042",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    following = "pinned to version p-7-new" if version == "pinned" else "following the newest version"
    assert f"mug-toy: recurring run recurring-1 (0 0 3 * * *), {following}" in captured.out
    assert "warning: mug-toy caches scale" in captured.err  # the toy leaves caching on
    assert kfp_api.calls()[-1] == ("POST", f"{API}/recurringruns")
    body = kfp_api.requests[-1]["json"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["experiment_id"] == "e-3"
    assert body["runtime_config"]["parameters"] == {"x": 1.0, "tag": "0042"}
    assert "pipeline_spec" not in body
    reference = (
        {"pipeline_id": "p-7", "pipeline_version_id": "p-7-new"} if version == "pinned" else {"pipeline_id": "p-7"}
    )
    assert body["pipeline_version_reference"] == reference


def test_schedule_rejects_five_field_cron_before_connecting(capsys):
    code = main(
        ["pipelines", "schedule", "mug-toy", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * *", "--param", "x=1"]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        "mug pipelines: error: cron has 5 fields: KFP uses six, seconds first; did you mean '0 0 3 * * *'?\n"
    )


def test_unreachable_host_is_one_line(tmp_path, capsys):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_port  # bound then closed: nothing listens there
    code = main(
        ["pipelines", "upload", "mug-toy", "--host", f"http://user:pw@127.0.0.1:{port}", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"mug pipelines: error: cannot reach the KFP API at http://127.0.0.1:{port}: ")
    assert "Connection refused" in err
    assert "pw" not in err


def test_api_error_is_one_line(kfp_api, capsys):
    kfp_api.route = lambda *args: (403, {"error": "forbidden", "code": 7, "message": "user x may not list\nmore"})
    assert main(["pipelines", "run", "mug-toy", "--host", kfp_api.url, "--param", "x=1"]) == 2
    err = capsys.readouterr().err
    assert err == f"mug pipelines: error: the KFP API at {kfp_api.url} answered 403 Forbidden: user x may not list\n"
    assert kfp_api.calls() == [("GET", f"{API}/healthz")]  # one try, not kfp's five tries 5 s apart


def test_no_host(monkeypatch, capsys):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    assert main(["pipelines", "run", "mug-toy", "--param", "x=1"]) == 2
    assert "no KFP host: pass --host URL or set KF_PIPELINES_ENDPOINT" in capsys.readouterr().err
