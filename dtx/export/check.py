"""`dtx export --check`: re-validate an export directory, most specific problem first.

Order: manifest -> every file present -> sizes (a truncated copy) -> each graph parses and says
it is the graph it should be, at this export's split (metadata written at export) -> tensor
names, dtypes and fixed dims against the spec -> rep_dim agreeing between input.onnx and
cross.onnx -> every graph from this very export (its id) -> onnx.checker -> sha256 ->
optionally the checkpoint it was made from.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from dtx.atomic import sha256_file
from dtx.errors import DtxError, first_line
from dtx.export.manifest import ExportManifest, GraphEntry, read_manifest
from dtx.export.spec import CROSS, GRAPHS, INPUT

ONNX_DTYPES = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


class ExportCheckError(DtxError):
    """An export directory is incomplete, corrupted or mixed up with another export."""


def _signature(values) -> list[tuple[str, str, list]]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
        out.append((v.name, ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), dims))
    return out


def _check_graph(export_dir: Path, graph: str, entry: GraphEntry, manifest: ExportManifest) -> onnx.ModelProto:
    path = export_dir / entry.file
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ExportCheckError(f"{path} is not a readable ONNX file ({type(e).__name__}); re-run `dtx export`") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("dtx.graph") != graph:
        raise ExportCheckError(f"{path} holds the {meta.get('dtx.graph', 'unknown')!r} graph, not {graph!r}; re-run `dtx export`")
    split = str(manifest.decoupling.split)
    if graph != "coupled" and meta.get("dtx.split") != split:
        raise ExportCheckError(f"{path} was exported at split {meta.get('dtx.split')}, this export is split {split}: a file from another export")
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        got = _signature(values)
        want = entry.inputs if kind == "input" else entry.outputs
        if [g[0] for g in got] != [w["name"] for w in want]:
            raise ExportCheckError(f"{path} {kind}s are {[g[0] for g in got]}, the manifest says {[w['name'] for w in want]}")
        for (name, dtype, dims), w in zip(got, want):
            fixed = [(i, d) for i, d in enumerate(w["shape"]) if isinstance(d, int)]
            if dtype != w["dtype"] or any(i >= len(dims) or dims[i] != d for i, d in fixed):
                hint = f" (rep_dim {dims[-1]} vs {manifest.rep_dim}: a file from another export)" if name.endswith("hidden") else ""
                raise ExportCheckError(f"{path} {kind} {name} is {dtype}{dims}, the manifest says {w['dtype']}{w['shape']}{hint}")
    return model


def check_export(export_dir: str | Path, ckpt_dir: str | Path | None = None) -> ExportManifest:
    """Validate an export directory; returns the manifest, raises ExportCheckError with one line."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    for rel, entry in manifest.files.items():
        path = export_dir / rel
        if not path.is_file():
            raise ExportCheckError(f"{path} is missing; re-run `dtx export`")
        if path.stat().st_size != entry.bytes:
            raise ExportCheckError(f"{path} is truncated or altered ({path.stat().st_size} of {entry.bytes} bytes); re-run `dtx export`")
    models = {g: _check_graph(export_dir, g, manifest.graphs[g], manifest) for g in GRAPHS}
    rep_out = _signature(models[INPUT].graph.output)[0][2][-1]
    rep_in = _signature(models[CROSS].graph.input)[0][2][-1]
    if rep_out != rep_in or rep_out != manifest.rep_dim:
        raise ExportCheckError(f"input.onnx emits rep_dim {rep_out} but cross.onnx takes {rep_in} (manifest {manifest.rep_dim}): files from different exports")
    for g, model in models.items():
        export_id = {p.key: p.value for p in model.metadata_props}.get("dtx.export_id", "?")
        if export_id != manifest.export_id:
            raise ExportCheckError(f"{manifest.graphs[g].file} comes from another export (id {export_id[:8]}); re-run `dtx export`")
    for g in GRAPHS:
        try:
            onnx.checker.check_model(str(export_dir / manifest.graphs[g].file))
        except onnx.checker.ValidationError as e:
            raise ExportCheckError(f"{manifest.graphs[g].file} fails onnx.checker: {first_line(e, 300)}") from None
    for rel, entry in manifest.files.items():
        if sha256_file(export_dir / rel) != entry.sha256:
            raise ExportCheckError(f"{export_dir / rel} does not match the manifest's sha256; re-run `dtx export`")
    if ckpt_dir is not None:
        _check_against_checkpoint(manifest, Path(ckpt_dir))
    return manifest


def _check_against_checkpoint(manifest: ExportManifest, ckpt_dir: Path) -> None:
    from dtx.model.checkpoint import read_meta

    meta = read_meta(ckpt_dir)
    if meta.weights_sha256 != manifest.checkpoint.weights_sha256:
        raise ExportCheckError(f"this export was made from other weights than {ckpt_dir}; re-run `dtx export {ckpt_dir}`")
    for key in ("split", "compress", "task", "hidden_size"):
        ours, theirs = getattr(manifest.decoupling, key), getattr(meta.decoupling, key)
        if ours != theirs:
            raise ExportCheckError(f"{key} is {ours} in the export but {theirs} in {ckpt_dir}")
