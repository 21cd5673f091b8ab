from iai_core._progress import progress


def test_progress_can_be_silenced(monkeypatch):
    items = [1, 2, 3]
    assert progress(items, enabled=False) is items
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress(items, enabled=True) is items
    monkeypatch.delenv("TQDM_DISABLE")
    bar = progress(items, enabled=True, desc="x")
    assert list(bar) == items and bar is not items
