"""`cxr init`: recognise the native dataset layouts under a folder and write a commented run configuration."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import io
import json
import os
import posixpath
import re
from collections.abc import Callable

from components import features as F
from components import storage
from components.ingest.sources import RecordRef, Rejected, SourceConfig, make_source
from components.ingest.sources.base import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, UNREFERENCED_EXTENSIONS
from components.ingest.sources.chexpert import DEFAULT_CSVS as CHEXPERT_CSVS
from components.ingest.sources.covid import MASK_KINDS as COVID_MASK_KINDS
from components.ingest.sources.kermany import KERMANY_CLASSES, KERMANY_SPLITS
from components.ingest.sources.manifest import REQUIRED_COLUMNS as MANIFEST_COLUMNS
from components.ingest.sources.nlm import MontgomerySource, ShenzhenSource
from components.ingest.sources.tbx11k import TBX11K_CLASSES

MAX_DEPTH = 4  # folders this far below DATA_DIR are searched for datasets; deeper ones are reported unsearched
DICOM_SAMPLE = 3  # files whose DICM marker is checked before a folder counts as a DICOM folder
LOOSE_FILES_LISTED = 5  # names given of the loose files of one folder
_LISTING_ERRORS = (OSError, ValueError, KeyError)  # what an adapter's listing raises on a layout it cannot read


@dataclasses.dataclass(frozen=True)
class Detected:
    """One dataset found: the source to configure and what its adapter's listing said about it."""

    name: str  # the source name (unique, [a-z][a-z0-9_]*)
    kind: str  # the adapter (components.ingest.sources.SOURCE_KINDS)
    root: str  # the source root: an absolute local path or gs:// URI
    rel: str  # the root relative to DATA_DIR ("" for DATA_DIR itself)
    evidence: str  # what was recognised, e.g. "CXR_png/ + ManualMask/"
    options: dict[str, object]
    images: int  # records the adapter lists
    with_masks: int  # of them, records with a lung mask
    with_labels: int  # of them, records stating at least one label
    refused: int  # inputs the listing refused
    refused_reason: str  # the most frequent refusal reason ("" when none)


@dataclasses.dataclass(frozen=True)
class NotPlaced:
    """A file or folder under DATA_DIR that no recognised layout reads."""

    path: str  # relative to DATA_DIR; folders end with "/"
    files: int
    reason: str


@dataclasses.dataclass(frozen=True)
class Detection:
    """What `detect` found under one DATA_DIR."""

    root: str
    sources: list[Detected]
    not_placed: list[NotPlaced]


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A layout whose signature a folder shows, to be confirmed by its adapter's listing."""

    kind: str
    evidence: str
    options: dict[str, object] = dataclasses.field(default_factory=dict)
    # Only "might be": a missing file just means "not this layout" (the CSV-named layouts are tried on any CSV).
    probe: bool = False
    accept: Callable[[list[RecordRef]], str | None] | None = None  # an extra check of the listed records


def _join(a: str, b: str) -> str:
    return f"{a}/{b}" if a else b


class _Tree:
    """Every file under DATA_DIR, listed once (one listing also on gs://); the layout checks look here."""

    def __init__(self, root: str, files: list[str]):
        self.root = root
        # Hidden files and folders (.DS_Store, .git/) belong to no dataset and are not reported either.
        self.files = sorted(f for f in files if not any(p.startswith(".") for p in f.split("/")))
        self._dirs: dict[str, set[str]] = {"": set()}
        self._own: dict[str, list[str]] = collections.defaultdict(list)
        for rel in self.files:
            parts = rel.split("/")
            for i in range(len(parts) - 1):
                self._dirs.setdefault("/".join(parts[:i]), set()).add(parts[i])
                self._dirs.setdefault("/".join(parts[: i + 1]), set())
            self._own["/".join(parts[:-1])].append(parts[-1])

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def rel(self, path: str) -> str:
        return posixpath.normpath(storage.relpath(path, self.root))

    def isdir(self, rel: str) -> bool:
        return rel in self._dirs

    def subdirs(self, rel: str) -> list[str]:
        return sorted(self._dirs.get(rel, ()))

    def own_files(self, rel: str) -> list[str]:
        return self._own.get(rel, [])

    def under(self, rel: str) -> list[str]:
        """Files anywhere below folder `rel`, relative to DATA_DIR."""
        if not rel:
            return self.files
        prefix = rel + "/"
        start = bisect.bisect_left(self.files, prefix)
        end = bisect.bisect_left(self.files, prefix + "\U0010ffff")
        return self.files[start:end]


def _first_dir(tree: _Tree, rel: str, candidates: tuple[str, ...]) -> str | None:
    """The first of an adapter's candidate folders present in `rel` (as base.find_dir, without asking storage)."""
    return next((c for c in candidates if c and tree.isdir(_join(rel, c))), None)


def _both_lungs(refs: list[RecordRef]) -> str | None:
    sides = {F.MASK_RIGHT_LUNG, F.MASK_LEFT_LUNG}
    return None if any({v for _, v in r.mask_paths} == sides for r in refs) else "no image has both a left and a right lung mask"


def _montgomery(tree: _Tree, rel: str) -> list[_Candidate]:
    image_dir = _first_dir(tree, rel, MontgomerySource.image_dirs)
    return [_Candidate("montgomery", f"{image_dir}/ with left and right lung masks", accept=_both_lungs)] if image_dir else []


def _shenzhen(tree: _Tree, rel: str) -> list[_Candidate]:
    image_dir = _first_dir(tree, rel, ShenzhenSource.image_dirs)
    beside = _first_dir(tree, rel, ShenzhenSource.mask_dirs) or _first_dir(tree, rel, ShenzhenSource.readings_dirs)
    return [_Candidate("shenzhen", f"{image_dir}/ + {beside}/")] if image_dir and beside else []


def _kermany(tree: _Tree, rel: str) -> list[_Candidate]:
    splits = [s for s in KERMANY_SPLITS if set(tree.subdirs(_join(rel, s))) & set(KERMANY_CLASSES)]
    if not splits:
        return []
    return [_Candidate("kermany", f"{{{','.join(splits)}}}/{{{','.join(KERMANY_CLASSES)}}}/")]


def _tbx11k(tree: _Tree, rel: str) -> list[_Candidate]:
    for d in tree.subdirs(rel):
        classes = [c for c in TBX11K_CLASSES if tree.isdir(_join(rel, f"{d}/{c}"))]
        if classes:
            return [_Candidate("tbx11k", f"{d}/{{{','.join(classes)}}}/")]
    return []


def _csvs(tree: _Tree, rel: str) -> list[str]:
    return [n for n in tree.own_files(rel) if n.lower().endswith(".csv")]


def _named_csv_layouts(tree: _Tree, rel: str) -> list[_Candidate]:
    """CheXpert, the COVID-19 collection and NIH: each adapter knows its CSV names and columns; it is asked."""
    csvs = _csvs(tree, rel)
    if not csvs:
        return []
    masks = [k for k, (folder, _, _) in COVID_MASK_KINDS.items() if tree.isdir(_join(rel, folder))]
    covid_evidence = ", ".join(csvs) + "".join(f" + {COVID_MASK_KINDS[k][0]}/" for k in masks)
    if len(masks) > 1:
        covid_evidence += f"; masks: {masks[0]}, options.masks picks one of {' or '.join(masks)}"
    chexpert = ", ".join(c for c in csvs if c in CHEXPERT_CSVS)
    return [
        _Candidate("chexpert", chexpert, probe=True),
        _Candidate("covid", covid_evidence, {"masks": masks[0]} if masks else {}, probe=True),
        _Candidate("nih", ", ".join(csvs), probe=True),
    ]


def _manifests(tree: _Tree, rel: str) -> list[_Candidate]:
    """Any CSV with the manifest's required columns (the adapter then checks every column)."""
    out = []
    for name in _csvs(tree, rel):
        head = storage.read_bytes(tree.path(_join(rel, name))).decode("utf-8-sig", "replace").partition("\n")[0]
        if set(MANIFEST_COLUMNS) <= {c.strip() for c in head.split(",")}:
            out.append(_Candidate("manifest", f"{name} with columns {', '.join(MANIFEST_COLUMNS)}", {"csv": name}))
    return out


def _has_dicom_preamble(data: bytes) -> bool:
    """True when the bytes start with a DICOM Part 10 preamble and its DICM marker (pydicom's own check)."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_preamble

    try:
        read_preamble(io.BytesIO(data), force=False)
    except InvalidDicomError:
        return False
    return True


def _dicom(tree: _Tree, rel: str) -> list[_Candidate]:
    """A folder of DICOM files: no PNG/JPEG in it, and the DICM marker in some of its .dcm (or extensionless) files."""
    files = tree.under(rel)
    if not files or any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
        return []
    named = [f for f in files if f.lower().endswith(DICOM_EXTENSIONS)] or [f for f in files if "." not in posixpath.basename(f)]
    sample = named[:DICOM_SAMPLE]
    marked = sum(_has_dicom_preamble(storage.read_bytes(tree.path(f))) for f in sample)
    if not marked:
        return []
    return [_Candidate("dicom", f"{len(named)} DICOM files, the DICM marker in {marked} of {len(sample)} checked")]


# Most specific first: Montgomery before Shenzhen (whose mask folders include ManualMask/), the named CSVs
# before any-CSV manifests, and DICOM last (its adapter reads every file under its root).
_SIGNATURES: tuple[Callable[[_Tree, str], list[_Candidate]], ...] = (
    _montgomery, _shenzhen, _kermany, _tbx11k, _named_csv_layouts, _manifests, _dicom,
)  # fmt: skip


def _confirm(tree: _Tree, rel: str, c: _Candidate) -> tuple[Detected | None, set[str], str]:
    """Lists the candidate with its adapter: (the dataset or None, paths the listing used, why it is not this layout)."""
    try:
        refs, rejected = make_source(SourceConfig("init", c.kind, tree.path(rel), dict(c.options))).list_records()
    except _LISTING_ERRORS as e:
        return None, set(), "" if c.probe and isinstance(e, FileNotFoundError) else f"looks like {c.kind} but: {e}"
    problem = (c.accept(refs) if c.accept else None) or ("" if refs else _nothing_listed(rejected))
    if problem:
        return None, set(), f"looks like {c.kind} ({c.evidence}) but: {problem}"
    used = {tree.rel(r.image_path) for r in refs} | {tree.rel(p) for r in refs for p, _ in r.mask_paths}
    used |= {posixpath.normpath(_join(rel, r.rel_path)) for r in rejected}
    reasons = collections.Counter(r.reason for r in rejected).most_common(1)
    found = Detected(
        name="",
        kind=c.kind,
        root=tree.path(rel),
        rel=rel,
        evidence=c.evidence,
        options=dict(c.options),
        images=len(refs),
        with_masks=sum(bool(r.mask_paths) for r in refs),
        with_labels=sum(bool(r.labels) for r in refs),
        refused=len(rejected),
        refused_reason=reasons[0][0] if reasons else "",
    )
    return found, used, ""


def _nothing_listed(rejected: list[Rejected]) -> str:
    if not rejected:
        return "its adapter lists no image"
    return f"its adapter refuses all {len(rejected)} inputs (e.g. {rejected[0].rel_path}: {rejected[0].reason})"


def _walk(tree: _Tree, rel: str, depth: int) -> tuple[list[Detected], list[NotPlaced], str]:
    """Datasets at or below folder `rel`, what is left there unplaced, and why `rel` itself is no dataset."""
    why = ""
    for signature in _SIGNATURES:
        for candidate in signature(tree, rel):
            found, used, problem = _confirm(tree, rel, candidate)
            if found:
                return _rest_of_dataset(tree, found, used, depth)
            why = why or problem
    if depth >= MAX_DEPTH:
        return [], [], why or f"no known layout; its subfolders were not searched ({MAX_DEPTH} levels below DATA_DIR)"
    found_here: list[Detected] = []
    unplaced = _loose(rel, tree.own_files(rel), "outside any dataset")
    for d in tree.subdirs(rel):
        child = _join(rel, d)
        sub, sub_unplaced, sub_why = _walk(tree, child, depth + 1)
        found_here += sub
        if sub:
            unplaced += sub_unplaced
        else:
            unplaced.append(NotPlaced(child + "/", len(tree.under(child)), sub_why or "no known layout"))
    return found_here, unplaced, why


def _rest_of_dataset(tree: _Tree, found: Detected, used: set[str], depth: int) -> tuple[list[Detected], list[NotPlaced], str]:
    """The dataset, plus its folders holding images its adapter does not read: searched for datasets, else reported."""
    rel = found.rel
    unread = {f for f in tree.under(rel) if f.lower().endswith(UNREFERENCED_EXTENSIONS) and f not in used}
    reason = f"image files the {found.kind} source at {rel or '.'}/ does not read"
    detected = [found]
    unplaced = _loose(rel, sorted(posixpath.basename(f) for f in unread if posixpath.dirname(f) == rel), reason)
    for d in tree.subdirs(rel):
        child = _join(rel, d)
        inside = [f for f in tree.under(child) if f.lower().endswith(UNREFERENCED_EXTENSIONS)]
        missed = [f for f in inside if f in unread]
        if not missed:
            continue
        if len(missed) == len(inside) and depth < MAX_DEPTH:
            sub, sub_unplaced, _ = _walk(tree, child, depth + 1)
            if sub:
                detected += sub
                unplaced += sub_unplaced
                continue
        unplaced.append(NotPlaced(child + "/", len(missed), reason))
    return detected, unplaced, ""


def _loose(rel: str, names: list[str], reason: str) -> list[NotPlaced]:
    """One line for the loose files of a folder (a dataset's README and checksums stay one line)."""
    if len(names) == 1:
        return [NotPlaced(_join(rel, names[0]), 1, reason)]
    listed = ", ".join(names[:LOOSE_FILES_LISTED]) + (", ..." if len(names) > LOOSE_FILES_LISTED else "")
    return [NotPlaced(_join(rel, "*"), len(names), f"{reason}: {listed}")] if names else []


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug if slug[:1].isalpha() else f"data_{slug}".rstrip("_")


def _names(tree: _Tree, found: list[Detected]) -> list[Detected]:
    """Names each source after the outermost folder below DATA_DIR that holds nothing but its folder (files aside).

    E.g. kermany/chest_xray/ -> "kermany", montgomery/MontgomerySet/ -> "montgomery"; DATA_DIR itself -> its name.
    """
    taken: set[str] = set()
    named = []
    for d in found:
        folder = d.rel
        while posixpath.dirname(folder) and tree.subdirs(posixpath.dirname(folder)) == [posixpath.basename(folder)]:
            folder = posixpath.dirname(folder)
        base = _slug(posixpath.basename(folder or tree.root.rstrip("/")) or "data")
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        named.append(dataclasses.replace(d, name=name))
    return named


def detect(root: str) -> Detection:
    """Finds the datasets under `root` (a local folder or gs:// prefix) in the layouts the source adapters read.

    `root` is one dataset itself, or holds several side by side (at most MAX_DEPTH folders down). A folder is a
    dataset when a layout's signature is there and that layout's adapter lists at least one image from it. Folders
    of images that no found dataset's adapter reads are searched again, then reported; so are loose files outside
    any dataset.

    Raises:
      FileNotFoundError: nothing under `root`.
    """
    root = root.rstrip("/") if storage.is_gcs(root) else os.path.abspath(root)
    files = storage.list_files(root) if storage.is_gcs(root) or os.path.isdir(root) else []
    tree = _Tree(root, [storage.relpath(p, root) for p in files])
    if not tree.files:
        raise FileNotFoundError(f"no files under {root}: give the folder (or gs:// prefix) that holds the datasets")
    found, unplaced, why = _walk(tree, "", 0)
    if not found and why:
        unplaced = [NotPlaced("./", len(tree.files), why), *unplaced]
    return Detection(root, _names(tree, found), unplaced)


def _describe(d: Detected) -> str:
    text = f"{d.images} images"
    if d.with_masks:
        text += f", {d.with_masks} with lung masks"
    if d.with_labels < d.images:
        text += f", {d.images - d.with_labels} without labels"
    return text


def _tasks(found: Detection) -> tuple[list[str], str]:
    masked = [d.name for d in found.sources if d.with_masks]
    labelled = [d.name for d in found.sources if d.with_labels]
    tasks = (["segmentation"] if masked else []) + (["classification"] if labelled else [])
    why = "; ".join(
        f"{task}: {', '.join(names) if names else 'no source has ' + what}"
        for task, names, what in (("segmentation", masked, "lung masks"), ("classification", labelled, "labels"))
    )
    return tasks, why


def render(found: Detection) -> str:
    """The commented YAML config for `found`: pipeline_name, run_dir, one source each, tasks, a `not placed` block.

    Everything else (sizes, training, blessing) is left to the defaults of pipelines/config.py.
    """
    slug = _slug(posixpath.basename(found.root.rstrip("/")) or "data").replace("_", "-")
    lines = [
        f"# Written by `cxr init {found.root}`: one source per dataset found there. Check it, then:",
        "#",
        "#   .venv/bin/cxr run --config <this file>",
        "#",
        '# Sizes, training and blessing are the defaults of pipelines/config.py (README, "Configuration");',
        "# configs/*.yaml are tuned examples for real data.",
        f"pipeline_name: cxr-{slug}",
        f"run_dir: runs/{slug}",
        "sources:" if found.sources else "sources: []",
    ]
    for d in found.sources:
        lines.append(f"  # {d.rel or '.'}/: {d.kind} layout ({_one_line(d.evidence)}); {_describe(d)}")
        if d.refused:
            lines.append(f"  #   its adapter refuses {d.refused} input(s), mostly: {_one_line(d.refused_reason)}")
        # JSON strings and maps are valid YAML flow style, quoted wherever a path needs it.
        options = f", options: {json.dumps(d.options)}" if d.options else ""
        lines.append(f"  - {{name: {d.name}, kind: {d.kind}, root: {json.dumps(d.root)}{options}}}")
    tasks, why = _tasks(found)
    if tasks:
        lines.append(f"tasks: [{', '.join(tasks)}]   # {why}")
    else:
        lines.append(f"# tasks: left at both; {why}: add a labelled or masked source before `cxr run`")
    if found.not_placed:
        lines.append("# not placed (no recognised layout reads these; add a source by hand if they hold data):")
        lines += [f"#   {_not_placed(n)}" for n in found.not_placed]
    return "\n".join(lines) + "\n"


def summary(found: Detection) -> list[str]:
    """The terminal's account of `found`: one line per dataset and per thing not placed."""
    lines = [f"{len(found.sources)} datasets under {found.root}:"]
    width = max((len(d.name) for d in found.sources), default=0)
    lines += [f"  {d.name:<{width}}  {d.kind:<10}  {_describe(d):<40}  {d.rel or '.'}/" for d in found.sources]
    if found.not_placed:
        lines.append("not placed:")
        lines += [f"  {_not_placed(n)}" for n in found.not_placed]
    return lines


def _not_placed(n: NotPlaced) -> str:
    return f"{n.path} ({n.files} file{'s' if n.files != 1 else ''}): {_one_line(n.reason)}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
