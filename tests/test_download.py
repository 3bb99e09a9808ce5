"""The Colab data path for Tiny-ImageNet (issue 17): one checked download with resume, and only
the first 20 classes decoded. A local HTTP server on the loopback address serves a small archive
with the standard tiny-imagenet-200 layout."""
import hashlib
import http.server
import io
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from unlearnlib import data as data_mod
from unlearnlib.data import DataError, fetch


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive():
    """21 classes (the 21st must be left out), 2 train images each, 3 val images."""
    wnids = [f"n{i:08d}" for i in range(21)][::-1]  # unsorted in wnids.txt, as in the real file
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
        for w in wnids:
            for k in range(2):
                z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{k}.JPEG", _jpeg(10 * int(w[1:]) + k))
        z.writestr("tiny-imagenet-200/val/val_annotations.txt",
                   "val_0.JPEG\tn00000003\t0\t0\t1\t1\nval_1.JPEG\tn00000020\t0\t0\t1\t1\nval_2.JPEG\tn00000000\t0\t0\t1\t1\n")
        for k in range(3):
            z.writestr(f"tiny-imagenet-200/val/images/val_{k}.JPEG", _jpeg(200 + k))
    return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    ranges = True
    requests: list = []

    def do_GET(self):
        rng = self.headers.get("Range")
        self.requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if (rng and self.ranges) else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(archive):
    _Handler.payload, _Handler.ranges, _Handler.requests = archive, True, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/tiny-imagenet-200.zip"
    httpd.shutdown()


def test_download_is_checked_and_only_the_first_20_classes_are_decoded(server, archive, tmp_path, monkeypatch):
    md5 = hashlib.md5(archive).hexdigest()
    monkeypatch.setattr(data_mod, "TINY_IMAGENET_URL", server)
    monkeypatch.setattr(data_mod, "TINY_IMAGENET_MD5", md5)
    monkeypatch.setattr(data_mod, "TINY_IMAGENET_BYTES", len(archive))
    monkeypatch.setattr(data_mod, "find_data_dir", lambda data_dir=None: None)  # no offline archive: download
    train, classes = data_mod.load_dataset("tiny-imagenet-20", "train", cache=tmp_path)
    assert classes == [f"n{i:08d}" for i in range(20)]  # sorted, the 21st class left out
    assert len(train) == 40 and train.images.shape[1:] == (3, 64, 64)
    assert train.labels.tolist() == [i // 2 for i in range(40)]
    # each image is its own class's: class c's images were filled with 10*c (+k), JPEG-rounded
    assert np.allclose(train.images[:, 0, 32, 32].float().numpy(), [10 * (i // 2) + i % 2 for i in range(40)], atol=3)
    val, _ = data_mod.load_dataset("tiny-imagenet-20", "val", cache=tmp_path)
    assert val.labels.tolist() == [3, 0]  # val_1 (class 20) is not one of the 20
    assert val.source == "tiny-imagenet-200.zip download"
    assert len(_Handler.requests) == 1  # downloaded once, then reused for the val part


@pytest.mark.parametrize("ranges", [True, False])
def test_an_interrupted_download_resumes_or_restarts_cleanly(server, archive, tmp_path, ranges):
    _Handler.ranges = ranges
    dest = tmp_path / "t.zip"
    (tmp_path / "t.zip.part").write_bytes(archive[:1000])  # a download cut off after 1000 bytes
    fetch(server, dest, hashlib.md5(archive).hexdigest(), len(archive), progress=False)
    assert dest.read_bytes() == archive and not (tmp_path / "t.zip.part").exists()
    assert _Handler.requests == ["bytes=1000-"]  # asked to resume; a server without ranges restarts it


def test_a_bad_checksum_says_so_and_leaves_nothing(server, archive, tmp_path):
    dest = tmp_path / "t.zip"
    with pytest.raises(DataError, match="failed its check.*md5.*expected.*deleted"):
        fetch(server, dest, "0" * 32, len(archive), progress=False)
    assert not dest.exists() and not (tmp_path / "t.zip.part").exists()
