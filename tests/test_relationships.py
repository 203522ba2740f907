"""datasets.relationships: the five databases, pair normalisation and sha256-checked caching (offline)."""

from __future__ import annotations

import pandas as pd
import pooch
import pytest

from scsemiclip import datasets
from scsemiclip._utils import normalize_pairs


@pytest.mark.parametrize("source", datasets.SOURCES)
def test_pairs_undirected_without_self_pairs_or_duplicates(shared_data, source):
    df = datasets.relationships(source)
    assert list(df.columns) == ["entity1", "entity2"]
    assert len(df) > 1000
    assert (df.entity1 < df.entity2).all()  # one orientation per pair, hence no self-pair
    assert not df.duplicated().any()
    raw = pd.read_csv(shared_data / "relationships" / f"{source}.txt")
    unordered = {frozenset(p) for p in zip(raw.entity1.astype(str), raw.entity2.astype(str), strict=True)}
    assert len(df) == sum(len(p) == 2 for p in unordered)


def test_normalize_pairs():
    df = pd.DataFrame({"entity1": ["B", "A", "C", "A", "D"], "entity2": ["A", "B", "C", "B", "A"], "x": range(5)})
    out = normalize_pairs(df)
    assert out.to_dict("list") == {"entity1": ["A", "A"], "entity2": ["B", "D"]}
    with pytest.raises(KeyError, match="entity2"):
        normalize_pairs(df.drop(columns="entity2"))


def test_unknown_source():
    with pytest.raises(ValueError, match="Unknown relationship source 'GO'"):
        datasets.relationships("GO")


class _FakeDownloader:
    """Stands in for pooch's HTTP downloader: records the URLs, writes ``content`` or fails, never goes online."""

    def __init__(self, content: bytes | None):
        self.content = content
        self.urls: list[str] = []

    def download(self, url: str, output_file: str) -> None:
        self.urls.append(url)
        if self.content is None:
            raise ConnectionError("offline (test)")
        with open(output_file, "wb") as fh:
            fh.write(self.content)


def _cache_with(tmp_path, monkeypatch, content: bytes | None, downloaded: bytes | None) -> _FakeDownloader:
    """A cache directory holding ``content`` as CORUM.txt (if given), and a fake downloader serving ``downloaded``."""
    monkeypatch.setenv("SCSEMICLIP_DATA_DIR", str(tmp_path))
    fake = _FakeDownloader(downloaded)
    monkeypatch.setattr(
        pooch.HTTPDownloader, "__call__", lambda _self, url, output_file, *_: fake.download(url, output_file)
    )
    if content is not None:
        (tmp_path / "relationships").mkdir()
        (tmp_path / "relationships" / "CORUM.txt").write_bytes(content)
    return fake


def test_valid_cached_file_is_used_without_download(shared_data, tmp_path, monkeypatch):
    content = (shared_data / "relationships" / "CORUM.txt").read_bytes()
    fake = _cache_with(tmp_path, monkeypatch, content, downloaded=None)
    assert len(datasets.relationships("CORUM")) > 1000
    assert fake.urls == []


def test_corrupted_file_and_tampered_download_give_hash_error(tmp_path, monkeypatch):
    fake = _cache_with(tmp_path, monkeypatch, b"entity1,entity2\nA,B\n", downloaded=b"entity1,entity2\nX,Y\n")
    with pytest.raises(ValueError, match="(?i)hash"):
        datasets.relationships("CORUM")
    assert len(fake.urls) == 1 and fake.urls[0].endswith("CORUM.txt")  # re-download attempted, then rejected


def test_corrupted_file_offline_is_not_used(tmp_path, monkeypatch):
    fake = _cache_with(tmp_path, monkeypatch, b"entity1,entity2\nA,B\n", downloaded=None)
    with pytest.raises(OSError, match="SCSEMICLIP_DATA_DIR") as info:
        datasets.relationships("CORUM")
    assert "offline" in str(info.value.__cause__)
    assert len(fake.urls) == 1


def test_missing_file_is_downloaded_and_checked(shared_data, tmp_path, monkeypatch):
    fake = _cache_with(
        tmp_path, monkeypatch, None, downloaded=(shared_data / "relationships" / "SIGNOR.txt").read_bytes()
    )
    df = datasets.relationships("SIGNOR")
    assert fake.urls and fake.urls[0].endswith("SIGNOR.txt")
    assert (tmp_path / "relationships" / "SIGNOR.txt").is_file()
    pd.testing.assert_frame_equal(df, normalize_pairs(pd.read_csv(shared_data / "relationships" / "SIGNOR.txt")))
