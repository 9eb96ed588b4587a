"""Each function laid out the way Lambda runs it, and its handler imported there in a fresh interpreter.

`sam build` packages a function's CodeUri (Lambda unpacks it in /var/task) and each layer's ContentUri under
`python/` together with the packages its requirements.txt names (Lambda unpacks layers in /opt, and puts /opt/python
on the path); the Python runtime itself brings boto3 and its dependencies. Nothing else is there: a module a handler
imports that neither its code, its layers nor the runtime ship fails at the first cold start, after a deploy.

`build_layout` makes that layout in a folder, from template.yaml (through devstack.template) and from the
distributions installed in this environment:

    task/        a copy of the function's CodeUri                         (/var/task)
    opt/python/  a copy of each layer's ContentUri, in the template's order (/opt/python)
    site/        symlinks to the installed distributions the layers' requirements name, with their dependency
                 closure (environment markers honoured), plus the runtime's own boto3 family

`probe` imports the handler there with `python -I -S -B` (no site-packages, no user paths, nothing written), the path
set to exactly [task, opt/python, site] and the standard library, the function's environment from the template, fake
credentials, and every socket connection refused, so an import that would reach AWS fails too.

What this does not reproduce: the interpreter is this environment's (Lambda runs the template's Runtime, built for its
Architectures), and the versions are the ones installed here, not the ones a build would resolve.

python -m devstack.lambda_layout [FunctionLogicalId ...]  prints, per function, where each imported module comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.markers import Marker, default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from devstack.template import Function, Resolver, Template, load_template

ROOT = Path(__file__).resolve().parents[1]

# What the Lambda Python runtime already holds (boto3 and its dependencies), whatever the layers ship.
LAMBDA_RUNTIME_DISTRIBUTIONS = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")

# What SAM leaves out when it copies a source folder into an artifact (and what a build never produces).
_IGNORED_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache", "*.egg-info")

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIALAYOUTTESTINGKEY",
    "AWS_SECRET_ACCESS_KEY": "layout-testing-secret",
    "AWS_SESSION_TOKEN": "layout-testing-token",
}


class LayoutError(Exception):
    """The layout cannot be built (a layer the template does not define, a requirement not installed here)."""


# --- requirements.txt ----------------------------------------------------------------------------------------------

_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(\[[^\]]*\])?")
_OPTION = re.compile(r"\s+--?[A-Za-z]")  # the start of a per-requirement option (--hash=..., --config-settings ...)


def _logical_lines(text: str) -> Iterable[str]:
    """Lines with `\\` continuations joined and comments (a `#` at the start or after white space) removed."""
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            yield line.strip()
    if pending.strip():
        yield pending.strip()


def parse_requirements(path: Path, _seen: frozenset[Path] = frozenset()) -> list[Requirement]:
    """The requirements a pip requirements file names: plain ranges, exact `==` pins with `--hash` lines, extras and
    environment markers all read; `-r other.txt` followed; other options (`--index-url`, `-c`, `-e`) skipped.
    Markers are kept on the result, not evaluated here."""
    path = path.resolve()
    if path in _seen or not path.is_file():
        return []
    requirements: list[Requirement] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        if line.startswith("-"):
            included = re.match(r"^(?:-r|--requirement)(?:\s+|=)(\S+)", line)
            if included:
                requirements += parse_requirements(path.parent / included.group(1), _seen | {path})
            continue
        option = _OPTION.search(line)
        spec = line[: option.start()] if option else line
        try:
            requirements.append(Requirement(spec))
        except InvalidRequirement:  # a URL or a path pip understands and packaging does not: keep the name, the marker
            name = _NAME.match(spec)
            if name is None:
                raise LayoutError(f"{path}: cannot read a package name in {line!r}") from None
            marker = spec.partition(";")[2].strip()
            requirements.append(Requirement(name.group(1) + (name.group(2) or "") + (f"; {marker}" if marker else "")))
    return requirements


# --- installed distributions ---------------------------------------------------------------------------------------


@cache
def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _applies(marker: Marker | None, environment: Mapping[str, str], extra: str = "") -> bool:
    return marker is None or marker.evaluate({**environment, "extra": extra})


def distribution_closure(
    requirements: Iterable[Requirement],
    environment: Mapping[str, str] | None = None,
    exclude: Collection[str] = (),
) -> dict[str, metadata.Distribution]:
    """Canonical name -> installed distribution, for `requirements` and everything they require in turn (extras
    followed, markers evaluated for `environment`, this interpreter's by default). `exclude` drops distributions
    (and what only they would bring). Raises LayoutError for a requirement that is not installed here."""
    env = {key: str(value) for key, value in default_environment().items()} | dict(environment or {})
    excluded = {canonicalize_name(name) for name in exclude}
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra); "" is the distribution without extras
    queue: list[tuple[Requirement, str]] = [(req, "requirements") for req in requirements]
    while queue:
        requirement, required_by = queue.pop()
        name = canonicalize_name(requirement.name)
        if name in excluded or not _applies(requirement.marker, env):
            continue
        distribution = found.get(name) or _installed(name)
        if distribution is None:
            raise LayoutError(f"{requirement.name} (required by {required_by}) is not installed in this environment")
        found[name] = distribution
        for extra in ("", *sorted(canonicalize_name(e) for e in requirement.extras)):
            if (name, extra) in done:
                continue
            done.add((name, extra))
            for line in distribution.requires or ():
                dependency = Requirement(line)
                if _applies(dependency.marker, env, extra):
                    dependency.marker = None  # evaluated here, with the extra that asked for it
                    queue.append((dependency, f"{distribution.metadata['Name']} {distribution.version}"))
    return found


@cache
def _top_level_entries(distribution: metadata.Distribution) -> dict[PurePosixPath, bool]:
    """The entries a distribution puts in site-packages: relative path -> True for a folder linked whole.

    A top-level folder with an `__init__.py` (a package), or the distribution's .dist-info, is linked whole; a folder
    without one (a namespace package other distributions share, or vendored libraries such as `numpy.libs`) is made
    real and its entries of this distribution linked one by one, so no other distribution's files come along."""
    files = distribution.files
    if files is None:  # no RECORD: top_level.txt names the importable names
        names = (distribution.read_text("top_level.txt") or "").split()
        if not names:
            raise LayoutError(f"{distribution.metadata['Name']}: no RECORD and no top_level.txt to find its modules")
        entries: dict[PurePosixPath, bool] = {}
        for name in names:
            for candidate in (name, f"{name}.py"):
                if Path(str(distribution.locate_file(candidate))).exists():
                    entries[PurePosixPath(candidate)] = True
        return entries
    paths = [PurePosixPath(str(f)) for f in files]
    paths = [
        p for p in paths if p.parts and p.parts[0] not in ("..", "__pycache__") and not p.parts[0].endswith(".data")
    ]
    packages = {p.parts[0] for p in paths if len(p.parts) == 2 and p.name == "__init__.py"}
    entries = {}
    for p in paths:
        top = p.parts[0]
        if len(p.parts) == 1:
            if not top.endswith(".pth"):
                entries[p] = False
        elif top in packages or top.endswith(".dist-info"):
            entries[PurePosixPath(top)] = True
        elif "__pycache__" not in p.parts:
            entries[PurePosixPath(*p.parts[:2])] = len(p.parts) > 2
    return entries


def link_distributions(distributions: Iterable[metadata.Distribution], site: Path) -> dict[str, str]:
    """Symlink each distribution's entries into `site`. Returns top-level name -> "name version" of its owner."""
    site.mkdir(parents=True, exist_ok=True)
    owners: dict[str, str] = {}
    for distribution in distributions:
        label = f"{distribution.metadata['Name']} {distribution.version}"
        for relative in sorted(_top_level_entries(distribution)):
            source = Path(str(distribution.locate_file(str(relative))))
            target = site.joinpath(*relative.parts)
            if not source.exists() or target.is_symlink() or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=source.is_dir())
            top = relative.parts[0]
            owners.setdefault(top.partition(".")[0] if not top.endswith(".dist-info") else top, label)
    return owners


# --- the layout ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    function: str
    handler: str
    root: Path
    layers: tuple[str, ...]
    requirements: tuple[str, ...]  # the requirements read from the layers and the function, as written
    distributions: dict[str, str]  # canonical name -> version, what site/ holds
    environment: dict[str, str]
    origins: dict[str, str] = field(default_factory=dict)  # top-level name -> what ships it

    @property
    def task(self) -> Path:
        return self.root / "task"

    @property
    def opt_python(self) -> Path:
        return self.root / "opt" / "python"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def sys_path(self) -> list[str]:
        return [str(self.task), str(self.opt_python), str(self.site)]


def _layer_id(function: Function, layer: Any) -> str:
    if isinstance(layer, dict) and set(layer) == {"Ref"}:
        return str(layer["Ref"])
    raise LayoutError(
        f"{function.logical_id}: layer {json.dumps(layer, default=str)} is not a layer of this template; "
        "its content cannot be laid out here"
    )


def function_environment(template: Template, function: Function, resolver: Resolver | None = None) -> dict[str, str]:
    """The environment Lambda gives the function: the template's variables (intrinsics resolved to local names),
    the runtime's own variables, fake credentials, and no path to any real AWS configuration."""
    resolver = resolver or Resolver(template, "lambda-layout")
    region = resolver.region
    variables: dict[str, str] = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
    }
    for name, value in function.environment.items():
        resolved = resolver.resolve(value)
        if resolved is None:
            continue
        variables[name] = resolved if isinstance(resolved, str) else json.dumps(resolved, default=str)
    variables.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime or 'python3.12'}",
            "AWS_LAMBDA_FUNCTION_NAME": f"{resolver.stack_name}-{function.logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{resolver.stack_name}-{function.logical_id}",
            "_HANDLER": function.handler,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            **FAKE_CREDENTIALS,
        }
    )
    return variables


def build_layout(
    template: Template,
    function_id: str,
    root: Path,
    *,
    layers: Sequence[str] | None = None,
    exclude_distributions: Collection[str] = (),
    resolver: Resolver | None = None,
) -> Layout:
    """Lay `function_id` out in `root` (an empty or missing folder). `layers` replaces the template's layer list
    (logical ids) and `exclude_distributions` leaves installed distributions out: both only to show a broken
    layout fails."""
    function = template.function(function_id)
    layer_ids = tuple(layers) if layers is not None else tuple(_layer_id(function, ref) for ref in function.layers)
    task = root / "task"
    opt = root / "opt"
    opt_python = opt / "python"
    opt_python.mkdir(parents=True, exist_ok=True)
    shutil.copytree(function.code_uri, task, ignore=_IGNORED_SOURCE)
    origins: dict[str, str] = {entry.name.partition(".")[0]: "function" for entry in task.iterdir()}

    requirements: list[Requirement] = parse_requirements(function.code_uri / "requirements.txt")
    for layer_id in layer_ids:
        layer = template.layers.get(layer_id)
        if layer is None:
            raise LayoutError(f"{function_id}: layer {layer_id} is not a layer of {template.path.name}")
        build_method = str((template.resources[layer_id].metadata or {}).get("BuildMethod", ""))
        # A layer built by SAM's python builder lands under python/; one without a build method is zipped as it is.
        destination = opt_python if build_method.startswith("python") else opt
        before = {entry.name for entry in opt_python.iterdir()}
        shutil.copytree(layer.content_uri, destination, ignore=_IGNORED_SOURCE, dirs_exist_ok=True)
        for entry in opt_python.iterdir():
            if entry.name not in before and entry.name != "requirements.txt":
                origins.setdefault(entry.name.partition(".")[0], f"layer {layer_id}")
        if build_method.startswith("python"):
            requirements += parse_requirements(layer.content_uri / "requirements.txt")

    runtime = [Requirement(name) for name in LAMBDA_RUNTIME_DISTRIBUTIONS]
    closure = distribution_closure([*requirements, *runtime], exclude=exclude_distributions)
    for name, owner in link_distributions(closure.values(), root / "site").items():
        origins.setdefault(name, owner)
    return Layout(
        function=function_id,
        handler=function.handler,
        root=root,
        layers=layer_ids,
        requirements=tuple(str(req) for req in requirements),
        distributions={name: dist.version for name, dist in sorted(closure.items())},
        environment=function_environment(template, function, resolver),
        origins=origins,
    )


# --- the import, in a fresh interpreter ----------------------------------------------------------------------------

PROBE = r"""
import importlib, json, socket, sys, time, traceback

paths, module_name, function_name = json.loads(sys.argv[1])
sys.path[:0] = paths
attempts = []

class NetworkRefused(BaseException):  # not an Exception: no SDK retry loop or broad except swallows it
    pass

def _refuse(what):
    def refuse(*args, **kwargs):
        attempts.append(what + " " + repr(args[1:2] if what == "connect" else args[:2])[:200])
        raise NetworkRefused(f"{what} refused: a handler may not reach the network as it imports")
    return refuse

socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect")
socket.create_connection = _refuse("create_connection")
socket.getaddrinfo = _refuse("getaddrinfo")

result = {"ok": False, "error": None, "error_type": None, "missing": None}
start = time.perf_counter()
try:
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name, None)
    if not callable(handler):
        result["error"] = f"{module_name}.{function_name} is not callable (found {type(handler).__name__})"
        result["error_type"] = "AttributeError"
    else:
        result["ok"] = True
except BaseException as error:
    result["error_type"] = type(error).__name__
    result["error"] = "".join(traceback.format_exception(error))[-4000:]
    result["missing"] = getattr(error, "name", None) if isinstance(error, ImportError) else None
result["seconds"] = time.perf_counter() - start
result["network"] = attempts
result["modules"] = {
    name: getattr(module, "__file__", None)
    for name, module in sorted(sys.modules.items())
    if "." not in name
}
print(json.dumps(result))
"""


@dataclass(frozen=True)
class ProbeResult:
    layout: Layout
    ok: bool
    error_type: str | None
    error: str | None
    missing: str | None  # ModuleNotFoundError.name (the module that could not be found)
    seconds: float  # the import itself
    wall_seconds: float  # the whole interpreter
    network: tuple[str, ...]  # connections the import tried (each one refused)
    modules: dict[str, str | None]  # top-level module -> its file

    def origin(self, module: str) -> str:
        """What ships a top-level module: the function, a layer, an installed distribution, or the runtime."""
        file = self.modules.get(module)
        if file is None:
            return "runtime (built in)"
        for area in (self.layout.task, self.layout.opt_python, self.layout.site):
            if Path(file).is_relative_to(area):
                if area == self.layout.task:
                    return "function"
                entry = Path(file).relative_to(area).parts[0]
                return self.layout.origins.get(entry.partition(".")[0], str(area.relative_to(self.layout.root)))
        if Path(file).is_relative_to(self.layout.root):
            return "layer (outside python/)"
        return "runtime (standard library)"

    @property
    def outside(self) -> dict[str, str]:
        """Modules loaded from neither the layout nor the standard library: a leak from the environment running
        the probe, which Lambda would not have."""
        stdlib = {Path(sysconfig.get_path(key)) for key in ("stdlib", "platstdlib")}
        return {
            module: file
            for module, file in self.modules.items()
            if file is not None
            and not Path(file).is_relative_to(self.layout.root)
            and not any(Path(file).is_relative_to(root) for root in stdlib)
        }


def probe(layout: Layout, *, python: str | None = None, timeout: float = 120) -> ProbeResult:
    """Import the layout's handler module in a fresh interpreter and check its handler is callable."""
    module_name, _, function_name = layout.handler.rpartition(".")
    started = time.perf_counter()
    completed = subprocess.run(
        [
            python or sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            PROBE,
            json.dumps([layout.sys_path, module_name, function_name]),
        ],
        cwd=layout.task,
        env=layout.environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - started
    try:
        data = json.loads(completed.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        data = {
            "ok": False,
            "error_type": "InterpreterFailed",
            "error": f"exit {completed.returncode}\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}",
        }
    return ProbeResult(
        layout=layout,
        ok=bool(data.get("ok")) and completed.returncode == 0,
        error_type=data.get("error_type"),
        error=data.get("error"),
        missing=data.get("missing"),
        seconds=float(data.get("seconds") or 0.0),
        wall_seconds=wall,
        network=tuple(data.get("network") or ()),
        modules=dict(data.get("modules") or {}),
    )


def probe_all(layouts: Sequence[Layout], workers: int | None = None) -> list[ProbeResult]:
    """`probe` for each layout, a few interpreters at a time."""
    workers = workers or max(1, min(len(layouts), os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(probe, layouts))


# --- python -m devstack.lambda_layout --------------------------------------------------------------------------------


def describe(result: ProbeResult) -> str:
    layout = result.layout
    lines = [
        f"{layout.function} ({layout.handler}): {'imports' if result.ok else 'FAILS'} in {result.seconds:.2f} s"
        f" (interpreter {result.wall_seconds:.2f} s)",
        f"  layers: {', '.join(layout.layers) or '-'}",
        f"  site: {', '.join(f'{name} {version}' for name, version in layout.distributions.items())}",
    ]
    if not result.ok:
        lines.append(f"  {result.error_type}: {(result.error or '').strip().splitlines()[-1:]}")
    if result.network:
        lines.append(f"  network attempts (refused): {', '.join(result.network)}")
    by_origin: dict[str, list[str]] = {}
    for module in result.modules:
        origin = result.origin(module)
        if not origin.startswith("runtime"):
            by_origin.setdefault(origin, []).append(module)
    for origin, modules in sorted(by_origin.items()):
        lines.append(f"  from {origin}: {', '.join(modules)}")
    shipped = {owner for owner in layout.origins.values() if owner != "function" and not owner.startswith("layer ")}
    unused = sorted(shipped - set(by_origin))
    if unused and result.ok:
        lines.append(f"  shipped, not imported at cold start: {', '.join(unused)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.lambda_layout", description=__doc__.split("\n")[0])
    parser.add_argument("functions", nargs="*", help="function logical ids (default: all)")
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    args = parser.parse_args(argv)
    template = load_template(args.template)
    names = args.functions or sorted(template.functions)
    with tempfile.TemporaryDirectory(prefix="lambda-layout-") as folder:
        layouts = [build_layout(template, name, Path(folder) / name) for name in names]
        results = probe_all(layouts)
    for result in results:
        print(describe(result))
    return 0 if all(r.ok and not r.network for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
