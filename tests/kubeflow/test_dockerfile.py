"""kubeflow/Dockerfile, the one image for every Kubeflow task and Dataflow worker, against what the project declares.

No Docker here: the Dockerfile, its .dockerignore, setup.py (through its AST, never executed) and constraints.txt
are parsed, and the project's imports are checked against the distributions installed in this virtualenv, which
`make` installs from the same constraints as the image. Drift between any of them fails here, naming the line.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import posixpath
import re
import sys
import tomllib

import yaml
from image_files import (
    BASE_IMAGE,
    CONSTRAINTS_NAME,
    DOCKERIGNORE,
    EXAMPLE_CONFIG,
    PIP_TOOLING,
    PYPROJECT,
    REPO,
    constraints,
    copied_before,
    dockerfile,
    dockerfile_args,
    first_party,
    image,
    modules_of,
    norm,
    packages_distributions,
    pip_installs,
    providers,
    runtime_closure,
    setup_py,
    third_party_imports,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

# --- The tests ---------------------------------------------------------------------------------------------


def test_base_image_is_the_beam_sdk_of_the_pinned_beam_on_the_projects_python():
    froms = [ins for ins in dockerfile() if ins.keyword == "FROM"]
    assert len(froms) == 1, f"kubeflow/Dockerfile: expected one FROM (one stage), found lines {[f.line for f in froms]}"
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: dockerfile_args().get(m[1], m[0]), froms[0].args.split()[0])
    match = BASE_IMAGE.match(base)
    assert match, f"Dockerfile:{froms[0].line}: the base image {base!r} is not apache/beam_python<X.Y>_sdk:<beam version>"

    beam_pin = constraints()["apache-beam"][0]
    assert match["beam"] == beam_pin, (
        f"Dockerfile:{froms[0].line}: base image {base} is Beam {match['beam']}, but constraints.txt pins "
        f"apache-beam=={beam_pin}; Dataflow workers must run the SDK the pipeline was built with"
    )

    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    ruff_target = tomllib.loads(PYPROJECT.read_text())["tool"]["ruff"]["target-version"]
    declared = f"{ruff_target[2]}.{ruff_target[3:]}"
    assert match["python"] == declared, (
        f"Dockerfile:{froms[0].line}: base image is Python {match['python']}, pyproject.toml targets {ruff_target}"
    )
    assert match["python"] == running, (
        f"Dockerfile:{froms[0].line}: base image is Python {match['python']}, but constraints.txt and these tests run "
        f"on Python {running}"
    )
    assert SpecifierSet(setup_py().python_requires).contains(match["python"] + ".0"), (
        f"setup.py python_requires={setup_py().python_requires!r} excludes the image's Python {match['python']}"
    )


def test_every_pip_install_uses_the_constraints_copied_before_it():
    installs = pip_installs()
    assert installs, "kubeflow/Dockerfile runs no `pip install`"
    problems = []
    for pip in installs:
        at = f"Dockerfile:{pip.command.line}: `{' '.join(pip.command.argv)}`"
        if [posixpath.basename(c) for c in pip.constraints] != [CONSTRAINTS_NAME]:
            problems.append(f"{at} does not install with `-c {CONSTRAINTS_NAME}` (constraints: {pip.constraints})")
        for constraint in pip.constraints:
            path = posixpath.normpath(posixpath.join(pip.command.workdir, constraint))
            if not copied_before(path, pip.command.line):
                problems.append(f"{at} uses {path}, which no COPY before it puts in the image")
        if "--ignore-requires-python" not in pip.flags:
            problems.append(f"{at} lacks --ignore-requires-python (TFX 1.16 declares Requires-Python < 3.11)")
        for target in pip.targets:
            if target == ".":
                for needed in ("setup.py", "pyproject.toml"):
                    path = posixpath.join(pip.command.workdir, needed)
                    if not copied_before(path, pip.command.line):
                        problems.append(f"{at} installs the project, but no COPY before it puts {path} in the image")
            elif not re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^]]*\])?(\s*[=<>!~].*)?$", target):
                problems.append(f"{at}: {target!r} is not a requirement this test can check against constraints.txt")
            elif norm(Requirement(target).name) not in constraints():
                problems.append(f"{at} installs {target}, which constraints.txt does not pin")
    assert not problems, "\n".join(problems)

    project = [p for p in installs if "." in p.targets]
    assert project, "kubeflow/Dockerfile never runs `pip install .`: the project's dependencies would be missing"


def test_gpu_build_installs_tensorflow_and_cuda_under_the_same_constraints():
    assert "GPU" in dockerfile_args(), "kubeflow/Dockerfile declares no `ARG GPU` (Makefile passes --build-arg GPU=)"
    gpu = [p for p in pip_installs() if any(t.replace(" ", "") == "tensorflow[and-cuda]" for t in p.targets)]
    assert gpu, "kubeflow/Dockerfile has no `pip install ... tensorflow[and-cuda]` for GPU=1 (the Trainers' GPUs)"
    for pip in gpu:
        run = next(ins for ins in dockerfile() if ins.line == pip.command.line)
        assert re.search(r"\$\{?GPU\}?", run.args), f"Dockerfile:{run.line}: tensorflow[and-cuda] is not conditional on GPU"
        assert [posixpath.basename(c) for c in pip.constraints] == [CONSTRAINTS_NAME], (
            f"Dockerfile:{run.line}: tensorflow[and-cuda] is not installed with -c {CONSTRAINTS_NAME}"
        )
    assert "and-cuda" in (md.metadata("tensorflow").get_all("Provides-Extra") or []), (
        f"tensorflow=={constraints()['tensorflow'][0]} (constraints.txt) has no `and-cuda` extra"
    )
    # The CUDA wheels are not in constraints.txt (not installed here); the GPU image is still determined when
    # TensorFlow's extra pins each one exactly, or constraints.txt does.
    cuda = [Requirement(r) for r in md.requires("tensorflow") or [] if "and-cuda" in r]
    loose = [
        str(r)
        for r in cuda
        if norm(r.name) not in constraints() and not (len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==")
    ]
    assert not loose, f"tensorflow[and-cuda] requirements neither pinned exactly by TensorFlow nor in constraints.txt: {loose}"


def test_every_shipped_package_and_the_schemas_are_copied_into_the_workdir():
    workdirs = image().workdirs
    assert workdirs, "kubeflow/Dockerfile sets no WORKDIR"
    workdir = workdirs[-1]
    project_install = max(p.command.line for p in pip_installs() if "." in p.targets)
    problems = []
    for package in setup_py().packages:
        source = setup_py().source(package)  # `pip install .` in the workdir finds it where setup.py says
        expected = posixpath.join(workdir, source)
        covering = [c for c in image().copies if source == c.source or source.startswith(c.source + "/")]
        if not covering:
            problems.append(f"setup.py ships package {package}, but no COPY in kubeflow/Dockerfile copies {source}/")
        for copy in covering:
            landed = posixpath.normpath(posixpath.join(copy.target, posixpath.relpath(source, copy.source)))
            if landed != expected:
                problems.append(f"Dockerfile:{copy.line}: package {package} lands at {landed}, not {expected}")
            if copy.line > project_install:
                problems.append(f"Dockerfile:{copy.line}: {source} is copied after the project's `pip install .`")

    schemas = [c for c in image().copies if c.source == "schemas"]
    schema_dir = yaml.safe_load(EXAMPLE_CONFIG.read_text())["kubeflow"]["schema_dir"]
    if not schemas:
        problems.append("kubeflow/Dockerfile does not COPY schemas/ (kubeflow.schema_dir points into the image)")
    for copy in schemas:
        if copy.target != schema_dir:
            problems.append(
                f"Dockerfile:{copy.line}: schemas/ lands at {copy.target}; config.example.yaml's schema_dir is {schema_dir}"
            )
    assert not problems, "\n".join(problems)


def dockerignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match, plus ** for any number of directories) as a regex."""
    out, i = "", 0
    pattern = posixpath.normpath(pattern.lstrip("/"))
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def test_dockerignore_keeps_everything_the_image_copies():
    rules = []
    for number, raw in enumerate(DOCKERIGNORE.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((number, line.startswith("!"), dockerignore_regex(line.lstrip("!").strip())))

    def excluded_by(path: str) -> int | None:
        """The line of the rule that excludes `path` (the last matching rule wins; a rule matching a parent counts)."""
        parents = [posixpath.join(*path.split("/")[:i]) for i in range(1, path.count("/") + 2)]
        verdict = None
        for number, negated, regex in rules:
            if any(regex.match(p) for p in parents):
                verdict = None if negated else number
        return verdict

    problems = []
    for copy in image().copies:
        source = REPO / copy.source
        if not source.exists():
            problems.append(f"Dockerfile:{copy.line}: COPY source {copy.source} does not exist")
            continue
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            line = excluded_by(relative)
            if line is not None:
                problems.append(
                    f"Dockerfile.dockerignore:{line} keeps {relative} out of the build context; Dockerfile:{copy.line} copies it"
                )
    assert not problems, "\n".join(problems[:30])


def test_install_requires_and_test_extras_are_pinned():
    pins = constraints()
    problems = []
    for group, requirements in [("install_requires", setup_py().install_requires), *setup_py().extras_require.items()]:
        for text in requirements:
            requirement = Requirement(text)
            name = norm(requirement.name)
            if name not in pins:
                problems.append(f"setup.py {group}: {text} is not pinned in constraints.txt")
            elif requirement.specifier and not requirement.specifier.contains(pins[name][0], prereleases=True):
                problems.append(f"setup.py {group}: {text} excludes constraints.txt:{pins[name][1]} ({name}=={pins[name][0]})")
    assert not problems, "\n".join(problems)


def test_runtime_closure_is_pinned_and_installed_here_at_its_pins():
    """The image resolves `pip install .` under the constraints; every distribution that brings in must be pinned
    (so the image gets what this virtualenv was tested with) and installed here at that pin."""
    pins = constraints()
    problems = []
    for name, via in sorted(runtime_closure().items()):
        if name in PIP_TOOLING:
            continue
        if name not in pins:
            problems.append(f"{name} (via {via}) is not pinned in constraints.txt")
            continue
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            problems.append(f"{name} (via {via}) is pinned at {pins[name][0]} but not installed here")
            continue
        if installed != pins[name][0]:
            problems.append(f"{name} is installed here at {installed}; constraints.txt:{pins[name][1]} pins {pins[name][0]}")
    assert not problems, "\n".join(problems)


def test_every_third_party_import_is_installed_by_the_image():
    closure = runtime_closure()
    problems = []
    for module, where in sorted(third_party_imports().items()):
        owners = providers(module)
        if not owners:
            problems.append(f"{where[0]}: imports {module}, which no installed distribution provides")
        elif not owners & set(closure):
            problems.append(
                f"{where[0]}: imports {module} (from {', '.join(sorted(owners))}), which neither setup.py's "
                "install_requires nor their requirements bring into the image"
            )
    assert not problems, "\n".join(problems)


def test_shipped_code_imports_no_test_only_package():
    test_only = {norm(Requirement(r).name) for r in setup_py().extras_require.get("test", [])} - set(runtime_closure())
    problems = [
        f"{where[0]}: imports {module}, which comes from the test extra ({', '.join(sorted(providers(module)))})"
        for module, where in sorted(third_party_imports().items())
        if providers(module) and providers(module) <= test_only
    ]
    assert not problems, "\n".join(problems)


def test_the_images_import_check_names_existing_modules():
    checks = [c for c in image().commands if posixpath.basename(c.argv[0]).startswith("python") and c.argv[1:2] == ["-c"]]
    assert checks, 'kubeflow/Dockerfile has no `python -c "import ..."` check of the built image'
    project_install = max(p.command.line for p in pip_installs() if "." in p.targets)
    packages = set(setup_py().packages)
    closure = set(runtime_closure())
    problems = []
    for check in checks:
        if check.line < project_install:
            problems.append(f"Dockerfile:{check.line}: the import check runs before the project is installed")
        modules = []
        for node in ast.walk(ast.parse(check.argv[2])):
            if isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules.append(node.module)
        assert modules, f"Dockerfile:{check.line}: `python -c {check.argv[2]!r}` imports nothing"
        for module in modules:
            parts = module.split(".")
            if parts[0] in first_party():
                path = REPO / setup_py().source(module)
                if (path / "__init__.py").is_file():
                    shipped = module in packages
                else:
                    shipped = path.with_suffix(".py").is_file() and ".".join(parts[:-1]) in packages
                if not shipped:
                    problems.append(f"Dockerfile:{check.line}: imports {module}, which is not a module setup.py ships")
            else:
                owners = {d for d in packages_distributions().get(parts[0], []) if module in modules_of(d)}
                if not owners:
                    problems.append(f"Dockerfile:{check.line}: imports {module}, which no installed distribution has")
                elif not {norm(o) for o in owners} & closure:
                    problems.append(f"Dockerfile:{check.line}: imports {module}, from {owners}, which the image lacks")
    assert not problems, "\n".join(problems)


def test_parsers_see_the_dockerfile_as_written():
    """Guards the parsing above: a Dockerfile this test misreads would pass everything vacuously."""
    copies = {c.source for c in image().copies}
    assert {"setup.py", "pyproject.toml", CONSTRAINTS_NAME, "schemas"} <= copies, sorted(copies)
    assert {"components", "pipelines", "cxr_kubeflow"} <= first_party(), first_party()
    assert len(pip_installs()) >= 2, [p.command.argv for p in pip_installs()]
    assert "apache_beam" in {m.split(".")[0] for m in third_party_imports()}, sorted(third_party_imports())
    assert {"tfx", "apache-beam", "tensorflow"} <= set(runtime_closure()), sorted(runtime_closure())
