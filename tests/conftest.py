import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache."""
    monkeypatch.setenv("REALIGN_CACHE", str(tmp_path / "realign-cache"))


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face hub cache of this test's own, under a fresh HF_HOME (for processes it
    starts; huggingface_hub reads the variable once, at import, so its cache constant is
    pointed there too). :func:`realign.testing.tiny.cache_snapshot` puts models in it."""
    import huggingface_hub.constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"
