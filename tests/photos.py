"""Real photographs that ship inside pip-installable packages (matplotlib, scikit-learn, scikit-image): pictures
nobody on this project made, for tests of the own-data path. Grey-scale ones are kept (they decode to RGB like any
user's scan); drawings, logos and synthetic patterns are left out."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
                  "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png",
                  "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg", "text.png")


def real_photos() -> list[Path]:
    """Every photo found among the installed packages (23 with matplotlib, scikit-learn and scikit-image)."""
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    found = [sample / "grace_hopper.jpg", sample / "Minduka_Present_Blue_Pack.png"]
    try:
        import sklearn

        found += sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
    except ImportError:
        pass
    try:
        import skimage

        found += [Path(skimage.__file__).parent / "data" / name for name in SKIMAGE_PHOTOS]
    except ImportError:
        pass
    return [p for p in found if p.is_file()]


def photo_shard(path: Path, photos: list[Path], corrupt: bool = True) -> Path:
    """A webdataset shard as img2dataset writes one (``<key>.<ext>`` + ``<key>.txt``), the original files' bytes
    unchanged, plus one corrupt sample that must be skipped and counted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i, p in enumerate(photos):
            add(f"{i:06d}{p.suffix.lower()}", p.read_bytes())
            add(f"{i:06d}.txt", f"a photo of {p.stem.replace('_', ' ')}".encode())
        if corrupt:
            add("999999.jpg", b"\xff\xd8 not a jpeg")
            add("999999.txt", b"a broken file")
    return path
