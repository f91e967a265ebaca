"""The image's build files parsed (Dockerfile, .dockerignore, setup.py through its AST, constraints.txt) and the
project's import closure against this virtualenv's distributions: what tests/kubeflow/test_dockerfile.py checks."""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata as md
import posixpath
import re
import shlex
import sys
from pathlib import Path

from packaging.requirements import Requirement
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "kubeflow" / "Dockerfile"
DOCKERIGNORE = REPO / "kubeflow" / "Dockerfile.dockerignore"
CONSTRAINTS = REPO / "constraints.txt"
SETUP = REPO / "setup.py"
PYPROJECT = REPO / "pyproject.toml"
EXAMPLE_CONFIG = REPO / "kubeflow" / "config.example.yaml"
CONSTRAINTS_NAME = "constraints.txt"
BASE_IMAGE = re.compile(r"^apache/beam_python(?P<python>\d+\.\d+)_sdk:(?P<beam>[\w.]+)$")
# pip's own tooling: present in every Python image, and left out of `pip freeze` (so of constraints.txt).
PIP_TOOLING = {"pip", "setuptools", "wheel"}
# pip options that take a value as the next argument (the rest are flags or positional requirements).
PIP_VALUE_OPTIONS = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url", "-f"}
PIP_VALUE_OPTIONS |= {"--find-links", "-t", "--target", "--prefix", "--root", "--platform", "--python-version"}
SHELL_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "!"}


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- The files, parsed ---------------------------------------------------------------------------------------


@functools.cache
def constraints() -> dict[str, tuple[str, int]]:
    """constraints.txt: normalised name -> (version, line number); one `name==version` a line, comments allowed."""
    pins: dict[str, tuple[str, int]] = {}
    bad = []
    for number, raw in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if not match:
            bad.append(f"constraints.txt:{number}: {raw!r} is not `name==version`")
            continue
        name = norm(match[1])
        if name in pins:
            bad.append(f"constraints.txt:{number}: {match[1]} is pinned twice (first on line {pins[name][1]})")
        pins[name] = (match[2], number)
    assert not bad, "\n".join(bad)
    return pins


@dataclasses.dataclass(frozen=True)
class Setup:
    install_requires: list[str]
    extras_require: dict[str, list[str]]
    python_requires: str
    packages: list[str]  # what find_packages(include=..., exclude=...) finds, as `pip install .` does
    package_dir: dict[str, str]  # package -> its directory, relative to the repository root (setup.py's package_dir)

    def source(self, package: str) -> str:
        """The directory holding `package` (dotted), relative to the repository root, as setuptools maps it."""
        parts = package.split(".")
        for i in range(len(parts), 0, -1):
            mapped = self.package_dir.get(".".join(parts[:i]))
            if mapped is not None:
                return posixpath.join(mapped, *parts[i:])
        return posixpath.join(self.package_dir.get("", ""), *parts)


def _found_packages(node: ast.expr) -> list[str]:
    """The packages a find_packages(...) call (literal arguments) finds, re-run here."""
    assert isinstance(node, ast.Call) and getattr(node.func, "id", None) == "find_packages", (
        "setup.py: packages= is expected to list find_packages(...) results and names; update this test if that changed"
    )
    arguments = dict(zip(["where", "exclude", "include"], [ast.literal_eval(a) for a in node.args], strict=False))
    arguments.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
    where = arguments.pop("where", ".")
    return find_packages(where=str(REPO / where), **arguments)


@functools.cache
def setup_py() -> Setup:
    """setup.py's setup(...) keywords, read from its AST (literals only; find_packages is re-run with its arguments).

    packages= is one find_packages(...) call or a list of such calls (starred) and package names."""
    calls = [
        node
        for node in ast.walk(ast.parse(SETUP.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "setup"
    ]
    assert len(calls) == 1, f"setup.py: expected one setup(...) call, found {len(calls)}"
    keywords = {k.arg: k.value for k in calls[0].keywords}
    items = keywords["packages"].elts if isinstance(keywords["packages"], ast.List) else [ast.Starred(keywords["packages"])]
    packages = []
    for item in items:
        packages += _found_packages(item.value) if isinstance(item, ast.Starred) else [ast.literal_eval(item)]
    return Setup(
        install_requires=ast.literal_eval(keywords["install_requires"]),
        extras_require=ast.literal_eval(keywords.get("extras_require", ast.Dict(keys=[], values=[]))),
        python_requires=ast.literal_eval(keywords.get("python_requires", ast.Constant(""))),
        packages=sorted(packages),
        package_dir=ast.literal_eval(keywords.get("package_dir", ast.Dict(keys=[], values=[]))),
    )


@dataclasses.dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


@functools.cache
def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined (comment lines inside a continuation dropped)."""
    instructions = []
    pending, start = "", 0
    for number, raw in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
    assert not pending, "kubeflow/Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_args() -> dict[str, str]:
    """ARG defaults, for substituting into FROM."""
    defaults = {}
    for ins in dockerfile():
        if ins.keyword == "ARG":
            for item in shlex.split(ins.args):
                name, _, value = item.partition("=")
                defaults[name] = value
    return defaults


@dataclasses.dataclass(frozen=True)
class Copy:
    line: int
    source: str  # relative to the build context (the repository root)
    target: str  # absolute path in the image


@dataclasses.dataclass(frozen=True)
class Command:
    line: int  # the RUN instruction's first line
    argv: list[str]
    workdir: str


@dataclasses.dataclass(frozen=True)
class Image:
    copies: list[Copy]
    commands: list[Command]
    workdirs: list[str]


@functools.cache
def image() -> Image:
    """What the Dockerfile copies (source -> image path) and runs (simple shell commands, with their WORKDIR)."""
    workdir = "/"
    workdirs, copies, commands = [], [], []
    for ins in dockerfile():
        if ins.keyword == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, ins.args))
            workdirs.append(workdir)
        elif ins.keyword in ("COPY", "ADD"):
            assert not ins.args.startswith("["), f"Dockerfile:{ins.line}: JSON-form {ins.keyword} is not parsed here"
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            assert not any(w.startswith("--from") for w in shlex.split(ins.args)), f"Dockerfile:{ins.line}: COPY --from"
            *sources, target = words
            into_dir = target.endswith("/") or len(sources) > 1
            target = posixpath.normpath(posixpath.join(workdir, target))
            for source in sources:
                source = posixpath.normpath(source)
                copies.append(Copy(ins.line, source, posixpath.join(target, posixpath.basename(source)) if into_dir else target))
        elif ins.keyword == "RUN":
            assert not ins.args.startswith("["), f"Dockerfile:{ins.line}: JSON-form RUN is not parsed here"
            lexer = shlex.shlex(ins.args, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            argv: list[str] = []
            for token in [*lexer, ";"]:
                if token in SHELL_SEPARATORS:
                    if argv:
                        commands.append(Command(ins.line, argv, workdir))
                    argv = []
                elif token in SHELL_KEYWORDS and not argv:
                    continue
                else:
                    argv.append(token)
    return Image(copies, commands, workdirs)


def copied_before(path: str, line: int) -> bool:
    """Whether `path` (absolute, in the image) is in the image by Dockerfile line `line`, through a COPY of it or above."""
    return any(c.line < line and (path == c.target or path.startswith(c.target + "/")) for c in image().copies)


@dataclasses.dataclass(frozen=True)
class PipInstall:
    command: Command
    constraints: list[str]
    flags: set[str]
    targets: list[str]


def pip_installs() -> list[PipInstall]:
    """Every `pip install` the Dockerfile runs (`pip`, `pip3` or `python -m pip`)."""
    found = []
    for command in image().commands:
        argv = command.argv
        for i, word in enumerate(argv[:-1]):
            if posixpath.basename(word) in ("pip", "pip3") and argv[i + 1] == "install":
                rest = argv[i + 2 :]
                break
        else:
            continue
        constraint_files, flags, targets = [], set(), []
        words = iter(rest)
        for word in words:
            option, equals, value = word.partition("=")
            if word in PIP_VALUE_OPTIONS:
                value = next(words)
                if word in ("-c", "--constraint"):
                    constraint_files.append(value)
            elif word.startswith("--") and equals:
                if option == "--constraint":
                    constraint_files.append(value)
            elif word.startswith("-c") and len(word) > 2:
                constraint_files.append(word[2:])
            elif word.startswith("-"):
                flags.add(word)
            else:
                targets.append(word)
        found.append(PipInstall(command, constraint_files, flags, targets))
    return found


# --- What the code needs and what the image installs ---------------------------------------------------------


@functools.cache
def runtime_closure() -> dict[str, str]:
    """Every distribution `pip install .` brings in: install_requires and, walked, their requirements (with extras
    and environment markers as pip evaluates them here). Normalised name -> the requirement chain that reaches it."""
    reached: dict[str, str] = {}
    seen = set()
    stack = [(Requirement(r), "setup.py install_requires") for r in setup_py().install_requires]
    while stack:
        requirement, via = stack.pop()
        name = norm(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        reached.setdefault(name, via)
        try:
            requires = md.requires(requirement.name) or []
        except md.PackageNotFoundError:
            continue  # reported by test_runtime_closure_is_pinned_and_installed_here_at_its_pins
        for text in requires:
            child = Requirement(text)
            if child.marker and not any(child.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                continue
            stack.append((child, f"{via} -> {requirement.name}"))
    return reached


@functools.cache
def packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


@functools.cache
def first_party() -> set[str]:
    return {package.split(".")[0] for package in setup_py().packages}


@functools.cache
def modules_of(distribution: str) -> frozenset[str]:
    """The dotted names of the modules and regular packages (with an __init__) a distribution's RECORD lists;
    namespace directories (google, google.cloud) are not among them."""
    names = set()
    for file in md.distribution(distribution).files or []:
        parts = file.parts
        if not parts or ".." in parts or parts[0].endswith((".dist-info", ".egg-info", ".data")):
            continue
        if not parts[-1].endswith((".py", ".so", ".pyd", ".pyi")):
            continue
        stem = parts[-1].split(".", 1)[0]
        names.add(".".join(parts[:-1] if stem == "__init__" else [*parts[:-1], stem]))
    return frozenset(names)


def providers(module: str) -> set[str]:
    """The distributions that provide `module` (dotted; may name an attribute past the module), normalised.

    A top-level name one distribution owns is that distribution. A top-level name several share (the google
    namespace) resolves to the distributions with a module or regular package at the longest dotted prefix of
    `module`; none when only namespace directories match (google.cloud.firestore with no google-cloud-firestore)."""
    top = module.split(".")[0]
    candidates = packages_distributions().get(top, [])
    if len(set(map(norm, candidates))) <= 1:
        return set(map(norm, candidates))
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        owners = {norm(d) for d in candidates if prefix in modules_of(d)}
        if owners:
            return owners
    return set()


@functools.cache
def project_imports() -> dict[str, list[str]]:
    """Every absolute import in the shipped packages' .py files, module- and function-level: dotted name -> where.

    `from a.b import c` is recorded as a.b.c (c may be a submodule; for a namespace package it must be)."""
    found: dict[str, list[str]] = {}
    for package in setup_py().packages:
        for path in sorted((REPO / setup_py().source(package)).glob("*.py")):
            where = path.relative_to(REPO)
            for node in ast.walk(ast.parse(path.read_text(), str(where))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module if alias.name == "*" else f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for name in names:
                    found.setdefault(name, []).append(f"{where}:{node.lineno}")
    return found


def third_party_imports() -> dict[str, list[str]]:
    return {
        name: where
        for name, where in project_imports().items()
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] not in first_party()
    }
