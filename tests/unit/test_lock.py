"""The lock, pyproject's ranges and the layers' requirements agree, so what ships is what the suite passed with.

`make lock` writes requirements/dev.lock from pyproject.toml and each layer's requirements.txt from the lock
(docs/dependencies.md); these tests fail when one of them is edited or regenerated without the others.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.lock"
LAYERS = {"loyalty": "", "analytics": "analytics"}  # layer -> pyproject extra it ships ("" = the dependencies)
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(path: Path) -> dict[str, tuple[set[str], list[str]]]:
    """name -> (versions, lines) of a uv-compiled requirements file; each line must be `name==version` with hashes."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    text = re.sub(r"\s*\\\n\s*", " ", path.read_text())  # one line per requirement, its hashes included
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line.split(" --hash=")[0])
        (version,) = (spec.version for spec in requirement.specifier if spec.operator == "==")
        versions, lines = found.setdefault(canonicalize_name(requirement.name), (set(), []))
        versions.add(version)
        lines.append(line)
    return found


def declared(extra: str) -> list[Requirement]:
    listed = PROJECT["optional-dependencies"][extra] if extra else PROJECT["dependencies"]
    return [Requirement(line) for line in listed]


def test_every_line_is_an_exact_pin_with_hashes() -> None:
    files = [LOCK, ROOT / "requirements" / "cdnow.lock", ROOT / "requirements" / "uv.txt"]
    files += [ROOT / "layers" / layer / "requirements.txt" for layer in LAYERS]
    for path in files:
        found = pins(path)
        assert found, path
        for name, (_, lines) in found.items():
            for line in lines:
                assert " --hash=sha256:" in line, (path.name, name)


def test_the_lock_satisfies_every_range_in_pyproject() -> None:
    # A range changed in pyproject.toml without `make lock` fails here rather than installing the old pin.
    locked = pins(LOCK)
    for extra in ("", "analytics", "dev"):
        for requirement in declared(extra):
            name = canonicalize_name(requirement.name)
            if name == canonicalize_name(PROJECT["name"]):
                continue  # the project's own extras, checked through their own lists
            assert name in locked, f"{name} is not in {LOCK.name}: run `make lock LOCK_ARGS=`"
            versions, _ = locked[name]
            assert all(requirement.specifier.contains(v, prereleases=True) for v in versions), (name, versions)


def test_the_lock_has_one_version_of_each_package() -> None:
    # The suite runs on Python 3.11, Lambda on 3.12: a second version for 3.12 would ship untested (`make lock` asks uv
    # for --fork-strategy fewest).
    forked = {name: versions for name, (versions, _) in pins(LOCK).items() if len(versions) > 1}
    assert not forked


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_pins_the_locked_versions(layer: str) -> None:
    locked = pins(LOCK)
    shipped = pins(ROOT / "layers" / layer / "requirements.txt")
    for name, (versions, _) in shipped.items():
        assert name in locked, f"layers/{layer} ships {name}, which the lock does not pin"
        assert versions <= locked[name][0], f"layers/{layer} pins {name} {versions}, the lock {locked[name][0]}"
    for requirement in declared(LAYERS[layer]):
        assert canonicalize_name(requirement.name) in shipped, f"layers/{layer} lacks {requirement.name}"


def test_the_layers_ship_only_their_own_closure() -> None:
    # The analytics layer shares the function's 250 MB with the loyalty layer: nothing of one belongs in the other.
    loyalty = set(pins(ROOT / "layers" / "loyalty" / "requirements.txt"))
    analytics = set(pins(ROOT / "layers" / "analytics" / "requirements.txt"))
    assert not loyalty & analytics
    assert {"pytest", "moto", "pandas"}.isdisjoint(loyalty | analytics)


def test_uv_and_the_data_set_are_pinned_where_the_makefile_says() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (uv_version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert pins(ROOT / "requirements" / "uv.txt")["uv"][0] == {uv_version}
    (lifetimes,) = re.findall(r"echo 'lifetimes==(\S+)'", makefile)
    assert pins(ROOT / "requirements" / "cdnow.lock")["lifetimes"][0] == {lifetimes}
