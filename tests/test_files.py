"""File helpers: atomic writes."""


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    from mnistkit.files import atomic_write

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
