"""The built wheel, installed into a clean environment, works subpackage by subpackage.

The environment is a new virtual environment that holds the wheel and, linked from the running
one, exactly the distributions its core requirements pull in (torch, kornia, einops, numpy and
theirs): not the repository, not the test or example extras. Each subpackage is imported and run
there alone, in a fresh interpreter started in an empty folder with ``-I`` (no current folder,
no ``PYTHONPATH``, no user site).
"""

from __future__ import annotations

import ast
import email.parser
import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPOSITORY = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("occlusion_aug", "attention", "losses", "reid_eval")

#: What each subpackage runs in the clean environment: a small real computation with a known
#: result, printed as JSON by the last line.
SMOKE = {
    "occlusion_aug": """
import torch
from oamn.occlusion_aug import OcclusionAugmentation, band_mask
images, seed = torch.rand(4, 3, 32, 16), torch.Generator().manual_seed(0)
out = OcclusionAugmentation()(images, generator=seed)
half_band = int(band_mask([1], [0.5], 4, 2).sum())
result = [list(out.images.shape), out.location[::4].tolist(), half_band]
""",
    "attention": """
import torch
from oamn.attention import RGASpatial
m = RGASpatial(64, (16, 8))(torch.randn(2, 64, 16, 8))
result = [list(m.shape), bool(((m > 0) & (m < 1)).all())]
""",
    "losses": """
import torch
from oamn.losses import batch_hard_triplet_loss
features = torch.tensor([[0.0, 0.0], [0.0, 3.0], [4.0, 0.0], [4.0, 1.0]])
loss = batch_hard_triplet_loss(features, torch.tensor([0, 0, 1, 1]), margin=1.0)
result = [round(float(loss), 6)]
""",
    "reid_eval": """
import numpy as np
from oamn.reid_eval import evaluate_rank
m = evaluate_rank(np.arange(6.0)[None], np.array([7]), np.array([7, 2, 7, 3, 0, 7]),
                  np.array([0]), np.array([1, 1, 2, 1, 1, 2]), max_rank=3)
result = [round(m.mAP, 4), m.cmc.tolist()]
""",
}

#: The expected results: 5 views of 4 images, view-major; a half band of a 4x2 map has 4 pixels;
#: an attention map in (0, 1); the triplet loss computed in plain Python below; matches at ranks
#: 1, 3 and 6 give the AP (1 + 2/3 + 3/6) / 3.
EXPECTED = {
    "occlusion_aug": [[20, 3, 32, 16], [0, 1, 2, 3, 4], 4],
    "attention": [[2, 1, 16, 8], True],
    "losses": None,  # filled in below from an independent computation
    "reid_eval": [0.7222, [1.0, 1.0, 1.0]],
}


def _triplet_by_hand() -> float:
    points = [(0.0, 0.0), (0.0, 3.0), (4.0, 0.0), (4.0, 1.0)]
    labels = [0, 0, 1, 1]

    def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
        return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5

    terms = []
    for i, anchor in enumerate(points):
        positive = max(
            distance(anchor, p) for j, p in enumerate(points) if j != i and labels[j] == labels[i]
        )
        negative = min(distance(anchor, p) for j, p in enumerate(points) if labels[j] != labels[i])
        terms.append(max(0.0, positive - negative + 1.0))
    return round(sum(terms) / len(terms), 6)


EXPECTED["losses"] = [_triplet_by_hand()]


def _core_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's requirements outside any extra, for this interpreter."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        fields = email.parser.HeaderParser().parsestr(archive.read(name).decode())
    requirements = map(Requirement, fields.get_all("Requires-Dist") or [])
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(names: list[str]) -> set[str]:
    """The installed distributions ``names`` need, transitively (core requirements only)."""
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = metadata.distribution(pending.pop()).metadata["Name"]
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        requires = metadata.requires(name) or []
        for requirement in map(Requirement, requires):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (offline: the running environment's setuptools)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(folder), str(REPOSITORY)],
        check=True,
    )  # fmt: skip
    (built,) = folder.glob("oamn-*.whl")
    return built


@pytest.fixture(scope="module")
def clean_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a new virtual environment holding the wheel and its core needs only."""
    root = tmp_path_factory.mktemp("clean")
    environment = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = environment / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    requirements = _core_requirements(wheel)
    # Link in each needed distribution's top-level files (packages, modules, .dist-info, shared
    # library folders) from the running environment; nothing else is importable there.
    for name in sorted(_closure([r.name for r in requirements])):
        distribution = metadata.distribution(name)
        tops = {
            Path(str(f)).parts[0]
            for f in distribution.files or []
            if ".." not in Path(str(f)).parts
        }
        for top in sorted(tops):
            source = Path(distribution.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True,
    )  # fmt: skip
    return python


def test_wheel_holds_only_the_oamn_namespace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"oamn", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for package in SUBPACKAGES:
        assert f"oamn/{package}/__init__.py" in names
    assert "oamn/__init__.py" in names
    assert not any(name.startswith(("examples/", "tests/", "benchmarks/")) for name in names)


def test_every_core_requirement_is_imported_and_every_import_is_required(wheel: Path) -> None:
    """Both directions: no unused core requirement, no undeclared third-party import."""
    with zipfile.ZipFile(wheel) as archive:
        sources = {n: archive.read(n).decode() for n in archive.namelist() if n.endswith(".py")}
    requirements = _core_requirements(wheel)
    imported: set[str] = set()
    for source in sources.values():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"oamn", "__future__"}
    providers = metadata.packages_distributions()
    provided = {r.name.lower(): {m for m, d in providers.items() if r.name.lower() in
                                 {x.lower() for x in d}} for r in requirements}  # fmt: skip
    unused = sorted(name for name, modules in provided.items() if not modules & third_party)
    assert not unused, f"core requirements no installed subpackage imports: {unused}"
    declared = set().union(*provided.values())
    undeclared = sorted(third_party - declared)
    assert not undeclared, f"imported but not core requirements: {undeclared}"


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_each_subpackage_runs_alone_in_a_clean_environment(
    package: str, clean_python: Path, tmp_path: Path
) -> None:
    others = [f"oamn.{p}" for p in SUBPACKAGES if p != package]
    code = SMOKE[package] + (
        "import json, sys, oamn\n"
        f"loaded = sorted({{'.'.join(m.split('.')[:2]) for m in sys.modules}} & set({others!r}))\n"
        "print(json.dumps({'result': result, 'siblings': loaded, 'file': oamn.__file__,\n"
        "                  'version': oamn.__version__, 'path': sys.path}))\n"
    )
    completed = subprocess.run(
        [str(clean_python), "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["result"] == EXPECTED[package]
    assert report["siblings"] == []
    assert Path(report["file"]).is_relative_to(clean_python.parents[1])
    assert report["version"] == metadata.version("oamn")
    assert not any(str(REPOSITORY) == p or p.startswith(f"{REPOSITORY}/") for p in report["path"])


@pytest.mark.parametrize("bare_name", [*SUBPACKAGES, "examples", "torchvision"])
def test_the_clean_environment_has_no_bare_packages_nor_extras(
    bare_name: str, clean_python: Path, tmp_path: Path
) -> None:
    code = f"import importlib.util; print(importlib.util.find_spec({bare_name!r}) is None)"
    completed = subprocess.run(
        [str(clean_python), "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert completed.stdout.strip() == "True", completed.stderr
