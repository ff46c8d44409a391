"""The passage-representation store: one Lance dataset, one row per passage window.

Why Lance (docs/store.md has the measurement): every append is one atomic commit of a new
manifest, so a crash never shows a torn record; a B-tree index on `id` fetches K = 20 rows from a
million-row store in a few milliseconds; the same dataset opens from a local disk, a shared file
system or object storage (`s3://`, `gs://`, `az://` URIs with `storage_options`); and its inverted
index gives BM25 first-stage retrieval over the very same rows, so no second file can fall out of
step with the representations.

Row layout: `id`, `window` (0.. for long passages cut with the export's stride), `text` (on
window 0 only, so BM25 sees each passage once), `token_ids` and `offsets` (character span of each
token, flattened start, end pairs: what turns an answer span back into text), `length` (real
tokens; the row holds no padding, so the mask is `length` ones and is made at fetch time), `rep`
(the compressed input-component output, fp16 or int8 bytes), `scale` (float32 per token for
int8) and `checksum` (BLAKE2b-128 of all the row's other fields). The schema metadata names the
export (id, input graph sha256), the engine that encoded the rows (backend, precision, its input
graph's sha256) and rep_dim, and every reader checks them, so a store built by one model is never
read by another and one engine's rows are never mixed with another's. Every fetched row's
checksum is verified (K rows a query: microseconds), and `verify` checks them all, so flipped bytes
surface as an error naming the record, not as a wrong answer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from dtx.errors import DtxError, first_line
from dtx.store import quantize

os.environ.setdefault("LANCE_LOG", "error")  # Lance's Rust log would print a WARN for every new dataset

META_KEY = b"dtx.store"
FORMAT_VERSION = 2  # 2: per-row checksums, the indexing engine in the metadata
LOCK_FILE = "_dtx_writer.lock"


class StoreError(DtxError):
    """A store is missing, corrupted, locked, or belongs to another model."""


class MissingPassages(StoreError):
    """Ids asked for that the store does not hold (a client's mistake, not damage)."""


class NothingToSearch(StoreError):
    """A query with no word BM25 could match (only punctuation, or empty)."""


@dataclass(frozen=True)
class StoreInfo:
    """Identity of the representations in a store: which export made them, in which layout."""

    export_id: str
    input_sha256: str  # sha256 of the export's input.onnx
    rep_dim: int
    dtype: str
    task: str
    max_passage_len: int
    doc_stride: int
    engine: str = ""  # engine directory that indexed it (default for `dtx answer`)
    engine_backend: str = ""  # what encoded the rows: one engine per store (an fp32 and an int8 engine differ by ~10%)
    engine_precision: str = ""
    engine_input_sha256: str = ""  # sha256 of the engine's own input graph / package
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_engine(cls, engine, dtype: str) -> "StoreInfo":
        """What a store indexed by `engine` (an opened `dtx.engines.Engine`) records about it."""
        if dtype not in quantize.DTYPES:
            raise StoreError(f"--dtype {dtype} is not one of {', '.join(quantize.DTYPES)}")
        m = engine.manifest
        d = m.decoupling
        return cls(
            export_id=m.export_id,
            input_sha256=m.export_graphs_sha256["input"],
            rep_dim=m.export.rep_dim,
            dtype=dtype,
            task=d.task,
            max_passage_len=d.max_passage_len,
            doc_stride=d.doc_stride,
            engine=str(Path(engine.path).resolve()),
            engine_backend=m.backend,
            engine_precision=m.precision,
            engine_input_sha256=engine.input_identity,
        )

    @classmethod
    def from_dict(cls, uri: str, data: dict) -> "StoreInfo":
        """The store's metadata, typed, or a one-line error naming what is wrong with it."""
        if data.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{uri} is store format {data.get('format_version')}, this dtx reads {FORMAT_VERSION}; re-index it")
        known = {f.name for f in fields(cls)}
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.default is MISSING)
        if missing or set(data) - known:
            what = f"lacks {', '.join(missing)}" if missing else f"has unknown fields {', '.join(sorted(set(data) - known))}"
            raise StoreError(f"{uri}'s dtx metadata {what}; re-index it with this dtx")
        return cls(**data)

    def same_model(self, other: "StoreInfo") -> bool:
        return (self.export_id, self.input_sha256, self.rep_dim) == (other.export_id, other.input_sha256, other.rep_dim)

    def same_engine(self, other: "StoreInfo") -> bool:
        return (self.engine_backend, self.engine_precision, self.engine_input_sha256) == (other.engine_backend, other.engine_precision, other.engine_input_sha256)


def row_digest(pid: str, window: int, text: str | None, tokens: np.ndarray, offsets: np.ndarray, rep: bytes, scale: bytes) -> bytes:
    """The checksum of one row: every field, each length-prefixed so no two rows can collide by shifting bytes."""
    h = hashlib.blake2b(digest_size=16)
    for part in (pid.encode(), int(window).to_bytes(4, "little"), (text or "").encode(), np.asarray(tokens, np.int32).tobytes(), np.asarray(offsets, np.int32).tobytes(), rep, scale):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


def text_digest(text: str | None) -> bytes:
    return hashlib.blake2b((text or "").encode(), digest_size=16).digest()


def _lists(array) -> list[np.ndarray]:
    """An Arrow list<int32> column (or a Python list of lists) as one numpy array per row."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not isinstance(array, pa.Array):
        return [np.asarray(x, np.int32) for x in array]
    flat = array.flatten().to_numpy(zero_copy_only=False)
    bounds = array.offsets.to_numpy()
    return [flat[bounds[i] - bounds[0] : bounds[i + 1] - bounds[0]] for i in range(len(array))]


@dataclass
class CachedWindows:
    """Fetched windows, padded for the cross component: what `Runner.cross` takes as the passage side."""

    ids: list[str]  # passage id of each row
    windows: list[int]
    reps: np.ndarray  # (W, L, rep_dim) float32
    mask: np.ndarray  # (W, L) int64
    token_ids: list[np.ndarray]
    offsets: list[np.ndarray]  # (length, 2) per row
    texts: dict[str, str] = field(default_factory=dict)  # passage id -> text

    @classmethod
    def concat(cls, parts: list["CachedWindows"]) -> "CachedWindows":
        """Several window sets as one, in order, passages padded to the longest (one part is returned as it is)."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.mask.shape[1] for p in parts)
        return cls(
            ids=[i for p in parts for i in p.ids], windows=[w for p in parts for w in p.windows],
            reps=np.concatenate([np.pad(p.reps, ((0, 0), (0, width - p.reps.shape[1]), (0, 0))) for p in parts]),
            mask=np.concatenate([np.pad(p.mask, ((0, 0), (0, width - p.mask.shape[1]))) for p in parts]),
            token_ids=[t for p in parts for t in p.token_ids], offsets=[o for p in parts for o in p.offsets],
            texts={k: v for p in parts for k, v in p.texts.items()},
        )  # fmt: skip


def _arrow_schema(info: StoreInfo):
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("window", pa.int32()),
            ("text", pa.string()),
            ("token_ids", pa.list_(pa.int32())),
            ("offsets", pa.list_(pa.int32())),
            ("length", pa.int32()),
            ("rep", pa.large_binary()),
            ("scale", pa.binary()),
            ("checksum", pa.binary(16)),
        ],
        metadata={META_KEY: json.dumps(asdict(info)).encode()},
    )


def local_path(uri: str) -> Path | None:
    """The directory a local store URI names (a plain path or `file://...`), or None for object storage (s3://, gs://, ...)."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None if "://" in uri else Path(uri)


def _remote_exists(uri: str, storage_options: dict | None) -> bool:
    """Whether a dataset is committed at an object-storage URI (a missing one is a new store, anything else an error)."""
    import lance

    try:
        lance.dataset(uri, storage_options=storage_options)
        return True
    except Exception as e:  # Lance raises its own error types; a missing dataset says so
        text = str(e).lower()
        if "not found" in text or "does not exist" in text or "no such" in text:
            return False
        raise StoreError(f"cannot reach store {uri} ({first_line(e)}); check the URI and its credentials") from None


class PassageStore:
    """Open with `PassageStore.open(uri)` (read) or `PassageStore.create_or_open(uri, info)` (index)."""

    def __init__(self, uri: str, dataset, info: StoreInfo, storage_options: dict | None = None) -> None:
        self.uri = uri
        self.dataset = dataset
        self.info = info
        self.storage_options = storage_options

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str | Path, storage_options: dict | None = None) -> "PassageStore":
        import lance

        uri = str(uri)
        local = local_path(uri)
        if local is not None and not local.exists():
            raise StoreError(f"no store at {uri}; build one with `dtx index CORPUS --engine ENGINE_DIR -o {uri}`")
        if local is not None and not (local / "_versions").is_dir():
            raise StoreError(f"{uri} is not a dtx store (no Lance dataset in it); build one with `dtx index CORPUS --engine ENGINE_DIR -o NEW_DIR`")
        try:
            ds = lance.dataset(uri, storage_options=storage_options)
        except Exception as e:
            raise StoreError(f"{uri} is not a readable dtx store ({first_line(e)}); rebuild it with `dtx index`") from None
        raw = (ds.schema.metadata or {}).get(META_KEY)
        if raw is None:
            raise StoreError(f"{uri} is a Lance dataset but not a dtx store (no {META_KEY.decode()} metadata)")
        return cls(uri, ds, StoreInfo.from_dict(uri, json.loads(raw)), storage_options)

    @classmethod
    def create_or_open(cls, uri: str | Path, info: StoreInfo, storage_options: dict | None = None) -> "PassageStore":
        """The store at `uri` if it holds this model's representations in `info.dtype`, else a new empty one."""
        import lance
        import pyarrow as pa

        uri = str(uri)
        local = local_path(uri)
        if local is not None and local.exists() and not local.is_dir():
            raise StoreError(f"-o {uri} is an existing file, not a store; choose a directory")
        if local is None:
            committed = _remote_exists(uri, storage_options)
        else:
            committed = (local / "_versions").is_dir() and any((local / "_versions").iterdir())
        if committed:
            store = cls.open(uri, storage_options)
            store.require_model(info)
            if not store.info.same_engine(info):
                raise StoreError(
                    f"{uri} holds rows encoded by a {store.info.engine_backend} {store.info.engine_precision} engine ({store.info.engine}); "
                    f"this is a {info.engine_backend} {info.engine_precision} engine: index with that one, or into another -o"
                )
            if store.info.dtype != info.dtype:
                raise StoreError(f"{uri} holds {store.info.dtype} representations, not {info.dtype}; index into another -o or pass --dtype {store.info.dtype}")
            return store
        if local is not None and local.exists() and any(p.name not in ("data", "_versions", "_transactions", LOCK_FILE) for p in local.iterdir()):
            raise StoreError(f"{uri} exists and is not a dtx store; choose another -o")
        # An empty first commit records the identity before any data: a kill after it leaves a valid empty store.
        ds = lance.write_dataset(pa.Table.from_pylist([], schema=_arrow_schema(info)), uri, mode="overwrite", storage_options=storage_options)
        return cls(uri, ds, info, storage_options)

    def require_model(self, info: StoreInfo) -> None:
        """Refuse representations made by another export (the one-line error says which)."""
        if not self.info.same_model(info):
            raise StoreError(
                f"store {self.uri} was built from export {self.info.export_id[:8]} (rep_dim {self.info.rep_dim}), "
                f"but this engine is from export {info.export_id[:8]} (rep_dim {info.rep_dim}); re-index with this engine or use the store's own"
            )

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time (a second `dtx index` on the same local store is refused, not interleaved)."""
        local = local_path(self.uri)
        if local is None:
            yield
            return
        fd = os.open(local / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another `dtx index` is writing {self.uri}; wait for it or stop it first") from None
            yield
        finally:
            os.close(fd)

    def append(self, ids: list[str], windows: list[int], texts: list[str | None], token_ids: list[list[int]], offsets: list[list[tuple[int, int]]], reps: list[np.ndarray]) -> None:
        """Commit rows atomically: after a crash either all of them are in the store or none is."""
        values, scales = zip(*(quantize.encode(r, self.info.dtype) for r in reps)) if reps else ((), ())
        flat_offsets = [[int(x) for span in o for x in span] for o in offsets]
        self.append_encoded(ids, windows, texts, [list(map(int, t)) for t in token_ids], flat_offsets, list(values), list(scales))

    def append_encoded(self, ids: list[str], windows: list[int], texts: list[str | None], token_ids: list, offsets: list, values: list[bytes], scales: list[bytes]) -> None:
        """`append` for values already in the store's dtype (flattened offsets; lists or Arrow arrays); one atomic commit."""
        import lance
        import pyarrow as pa
        import pyarrow.compute as pc

        def ints(x):
            return x if isinstance(x, pa.Array) else pa.array(x, pa.list_(pa.int32()))

        tokens = ints(token_ids)
        spans = ints(offsets)
        checksums = [row_digest(*row) for row in zip(ids, windows, texts, _lists(tokens), _lists(spans), values, scales)]
        table = pa.table(
            {
                "id": ids,
                "window": pa.array(windows, pa.int32()),
                "text": texts,
                "token_ids": tokens,
                "offsets": spans,
                "length": pc.list_value_length(tokens).cast(pa.int32()),
                "rep": pa.array(values, pa.large_binary()),
                "scale": pa.array(scales, pa.binary()),
                "checksum": pa.array(checksums, pa.binary(16)),
            },
            schema=_arrow_schema(self.info),
        )
        self.dataset = lance.write_dataset(table, self.uri, mode="append", storage_options=self.storage_options)

    def build_indexes(self, text: bool = True) -> None:
        """(Re)build the id B-tree and (with `text`) the BM25 text index over everything committed so far."""
        if self.dataset.count_rows() == 0:
            return
        self.dataset.create_scalar_index("id", "BTREE", replace=True)
        if text:
            self.dataset.create_scalar_index("text", "INVERTED", replace=True)

    # -- reading ---------------------------------------------------------------------------
    def ids(self) -> set[str]:
        """Every passage id committed (read from the id column only)."""
        table = self._read("read", lambda: self.dataset.to_table(columns=["id"], filter="window = 0"))
        return set(table.column("id").to_pylist())

    def text_digests(self) -> dict[str, bytes]:
        """Passage id -> BLAKE2b of its stored text, read in batches (what a re-index compares new text with)."""

        def scan() -> dict[str, bytes]:
            out = {}
            for batch in self.dataset.to_batches(columns=["id", "text"], filter="window = 0", batch_size=8192):
                for pid, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
                    out[pid] = text_digest(text)
            return out

        return self._read("read", scan)

    def __len__(self) -> int:
        return self.dataset.count_rows(filter="window = 0")

    def probe(self) -> int:
        """Read what every request will read, once, cheaply: one column of every data file (counting the
        passages), one passage through the id index and one of its words through the BM25 index. Opening
        the dataset reads only its manifest, so a server on a store whose data file is gone would listen
        and fail every request; `dtx serve` calls this before it listens. Returns the passages."""
        passages = self._read("read", lambda: self.dataset.count_rows(filter="window = 0"))
        if passages:
            pid = self._read("read", lambda: self.dataset.to_table(columns=["id"], filter="window = 0", limit=1)).column("id")[0].as_py()
            words = "".join(c if c.isalnum() else " " for c in self.fetch([pid]).texts.get(pid) or "").split()
            word = max(words, key=len, default="")  # the longest: never a stop word the index leaves out
            if word and not self.search(word, 1):
                raise StoreError(f"store {self.uri}: the BM25 index finds nothing for {word!r}, a word of passage {pid!r}; run `dtx check-store {self.uri}`")
        return passages

    def fetch(self, ids: list[str], with_text: bool = True) -> CachedWindows:
        """All windows of `ids`, in the order given (windows in order), padded into arrays."""
        import pyarrow.compute as pc

        if not ids:
            raise StoreError("no passage ids to fetch")
        columns = ["id", "window", "token_ids", "offsets", "length", "rep", "scale", "text", "checksum"]  # text: the checksum covers it
        table = self._read("fetch from", lambda: self.dataset.to_table(columns=columns, filter=pc.field("id").isin(list(dict.fromkeys(ids)))))
        row_ids = table.column("id").to_pylist()
        found = set(row_ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise MissingPassages(f"{len(missing)} passage id(s) are not in store {self.uri}, e.g. {missing[0]!r}; index them first")
        windows = table.column("window").to_numpy()
        lengths = table.column("length").to_numpy()
        rank = {pid: n for n, pid in enumerate(dict.fromkeys(ids))}
        order = sorted(range(len(row_ids)), key=lambda r: (rank[row_ids[r]], windows[r]))
        tokens = np.split(table.column("token_ids").combine_chunks().flatten().to_numpy(), np.cumsum(lengths)[:-1])
        spans = np.split(table.column("offsets").combine_chunks().flatten().to_numpy().reshape(-1, 2), np.cumsum(lengths)[:-1])
        values, scales = table.column("rep").to_pylist(), table.column("scale").to_pylist()
        texts, sums = table.column("text").to_pylist(), table.column("checksum").to_pylist()
        for r in order:
            if row_digest(row_ids[r], windows[r], texts[r], tokens[r], spans[r].ravel(), values[r], scales[r]) != sums[r]:
                raise StoreError(f"store {self.uri}: record {row_ids[r]!r} window {windows[r]} is corrupt (checksum mismatch); run `dtx check-store {self.uri}` and re-index into a new store")
        d = self.info.rep_dim
        reps = np.zeros((len(order), int(lengths.max()), d), np.float32)
        mask = np.zeros(reps.shape[:2], np.int64)
        for row, r in enumerate(order):
            n = int(lengths[r])
            reps[row, :n] = quantize.decode(values[r], scales[r], n, d, self.info.dtype)
            mask[row, :n] = 1
        return CachedWindows(
            ids=[row_ids[r] for r in order],
            windows=[int(windows[r]) for r in order],
            reps=reps,
            mask=mask,
            token_ids=[tokens[r].astype(np.int64) for r in order],
            offsets=[spans[r].astype(np.int64) for r in order],
            texts={row_ids[r]: texts[r] for r in order if with_text and windows[r] == 0},
        )

    def _read(self, what: str, read):
        """Run a Lance read; a damaged or vanished store (deleted fragment, index file, dataset) is one line, not a traceback."""
        try:
            return read()
        except StoreError:
            raise
        except Exception as e:  # Lance raises OSError, ValueError or its own errors for damaged files
            first = first_line(e)
            raise StoreError(f"cannot {what} store {self.uri} ({first}); run `dtx check-store {self.uri}`, and re-index into a new store if it is damaged") from None

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """BM25 over passage texts (Lance's inverted index): the k best (id, score)."""
        terms = " ".join("".join(c if c.isalnum() else " " for c in query).split())
        if not terms:
            raise NothingToSearch(f"query {query!r} has no words to search for")
        table = self._read("search", lambda: self.dataset.to_table(columns=["id", "_score"], full_text_query=terms, limit=k))
        return list(zip(table.column("id").to_pylist(), table.column("_score").to_pylist()))

    def verify(self) -> dict:
        """Integrity check: Lance's own validation, then every row's lengths and the (id, window) set."""
        try:
            self.dataset.validate()
        except Exception as e:
            raise StoreError(f"store {self.uri} fails Lance validation ({first_line(e)}); re-index into a new store") from None
        per_token = self.info.rep_dim * (2 if self.info.dtype == "fp16" else 1)
        scale_bytes = 0 if self.info.dtype == "fp16" else 4
        windows: dict[str, list[int]] = {}
        problems: list[str] = []

        def scan() -> int:
            rows = 0
            for batch in self.dataset.to_batches(columns=["id", "window", "text", "token_ids", "offsets", "length", "rep", "scale", "checksum"], batch_size=4096):
                b = batch.to_pydict()
                for i, pid in enumerate(b["id"]):
                    rows += 1
                    n, w = b["length"][i], b["window"][i]
                    windows.setdefault(pid, []).append(w)
                    if len(b["token_ids"][i]) != n or len(b["offsets"][i]) != 2 * n or len(b["rep"][i]) != n * per_token or len(b["scale"][i]) != n * scale_bytes:
                        problems.append(f"record {pid!r} window {w} has inconsistent lengths")
                    elif row_digest(pid, w, b["text"][i], np.asarray(b["token_ids"][i]), np.asarray(b["offsets"][i]), b["rep"][i], b["scale"][i]) != b["checksum"][i]:
                        problems.append(f"record {pid!r} window {w} is corrupt (checksum mismatch)")
                    if w == 0 and not b["text"][i]:
                        problems.append(f"record {pid!r} has no text")
            return rows

        rows = self._read("read", scan)
        if windows:  # the id B-tree and the BM25 index must answer too (a deleted index file shows here)
            pid = next(iter(windows))
            text = self.fetch([pid]).texts.get(pid) or ""
            words = "".join(c if c.isalnum() else " " for c in text).split()
            if words and not self.search(words[0], 1):
                problems.append(f"the BM25 index finds nothing for {words[0]!r}, a word of passage {pid!r}")
        for pid, ws in windows.items():
            if sorted(ws) != list(range(len(ws))):
                problems.append(f"passage {pid!r} has windows {sorted(ws)} (duplicated or missing)")
        if problems:
            raise StoreError(f"store {self.uri}: {len(problems)} problem(s), first: {problems[0]}; re-index into a new store")
        return {"passages": len(windows), "rows": rows, "version": self.dataset.version, "dtype": self.info.dtype, "rep_dim": self.info.rep_dim}
