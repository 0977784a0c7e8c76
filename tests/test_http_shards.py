"""Shards over http for real: a local HTTP server in a thread, read by the loader, the gate and the tokenizer
(webdataset streams http(s) URLs through curl)."""

import functools
import logging
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mug.cli import main
from mug.data.gate.validate import validate_shards
from mug.data.loading.loader import LoaderConfig, make_loader
from mug.data.synthetic.corpus import NoiseConfig, synthesize_corpus
from mug.data.tokenizer_corpus import iter_captions
from mug.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset reads http(s) URLs with curl")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request on stderr would drown the test output
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(local train folder, its base URL): 2 clean shards of 4 samples behind http://127.0.0.1:PORT/train/."""
    root = tmp_path_factory.mktemp("www")
    synthesize_corpus(root, 8, 0, shard_size=4, noise=NoiseConfig(0, 0, 0, 0, 0), progress=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root / "train", f"http://127.0.0.1:{server.server_address[1]}/train"
    server.shutdown()
    server.server_close()
    thread.join()


def keys(urls) -> tuple[list[str], dict[str, int]]:
    loader = make_loader(LoaderConfig(urls, batch_size=3, image_size=32, train=False), None, 0, 1)
    return [key for batch in loader for key in batch["key"]], loader.stats.counts


def test_the_loader_reads_http_shards_like_local_ones(served):
    local, url = served
    over_http, counts = keys(f"{url}/{{00000..00001}}.tar")
    assert over_http == keys(str(local))[0] and len(over_http) == 8 and counts == {}


def test_a_url_that_404s_is_skipped_counted_and_named_at_once(served, caplog):
    _, url = served
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="mug.data"):
        got, counts = keys([f"{url}/00000.tar", f"{url}/missing.tar"])
    assert time.perf_counter() - start < 5  # curl retries transient errors only, not a 404
    assert len(got) == 4 and counts == {"unreadable_shard": 1}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unreadable_shard")]
    assert line.startswith(f"unreadable_shard {url}/missing.tar: OSError: the server answered") and "404" in line


def test_the_gate_scans_http_shards_and_names_a_missing_url(served, capsys):
    local, url = served
    result = validate_shards(f"{url}/{{00000..00001}}.tar", min_side=64, workers=1)
    assert result.passed and result.rows == 8
    assert main(["data", "validate", f"{url}/00000.tar", f"{url}/missing.tar", "--workers", "1"]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "unreadable_shards" in line]
    assert f"{url}/missing.tar: OSError: the server answered with an HTTP error (404" in line


def test_the_tokenizer_reads_captions_over_http(served):
    local, url = served
    assert list(iter_captions(f"{url}/{{00000..00001}}.tar")) == list(iter_captions(str(local)))
    with pytest.raises(UserError, match=rf"shard {url}/missing.tar \(OSError: the server answered .*404"):
        list(iter_captions(f"{url}/missing.tar"))
