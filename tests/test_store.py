"""The passage store, `dtx index`, retrieval and answers read from cached representations."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dtx.cli import main
from dtx.engines import load_engine
from dtx.engines.manifest import read_engine_export
from dtx.query import QueryPipeline
from dtx.store import PassageStore
from dtx.store import quantize
from dtx.store.corpus import read_corpus
from dtx.store.indexer import index_corpus
from helpers import texts


def write_corpus(path: Path, n: int, seed: int = 0, long_every: int = 7) -> list[dict]:
    """n passages as JSONL; every `long_every`-th is long enough for several windows."""
    rng = random.Random(seed)
    rows = [{"id": f"doc-{i}", "text": texts(seed * 100_000 + i, 1, 150, 220)[0] if i % long_every == 0 else texts(seed * 100_000 + i, 1, 5, 40)[0]} for i in range(n)]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def cli_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    return path, write_corpus(path, 60)


@pytest.fixture(scope="module")
def stores(engine, corpus, tmp_path_factory):
    """fp16 and int8 stores of the tiny corpus, built by the bert/2/2 QA engine."""
    _, engine_dir = engine()
    root = tmp_path_factory.mktemp("stores")
    for dtype in ("fp16", "int8"):
        index_corpus(corpus[0], engine_dir, root / dtype, dtype=dtype, batch=8, chunk=16, progress=False)
    return engine_dir, root


def test_quantize_round_trip_on_random_values():
    rng = np.random.default_rng(1)
    rep = rng.normal(size=(40, 48)).astype(np.float32) * rng.uniform(0.01, 30, size=(40, 1)).astype(np.float32)
    values, scales = quantize.encode(rep, "int8")
    back = quantize.decode(values, scales, 40, 48, "int8")
    per_token_scale = np.abs(rep).max(-1, keepdims=True) / 127
    assert np.all(np.abs(back - rep) <= per_token_scale / 2 + 1e-6)  # within half a level of its own token's scale
    assert len(scales) == 40 * 4
    values, _ = quantize.encode(rep, "fp16")
    np.testing.assert_array_equal(quantize.decode(values, b"", 40, 48, "fp16"), rep.astype(np.float16).astype(np.float32))


def test_store_holds_every_passage_and_window_once(stores, corpus):
    engine_dir, root = stores
    seg = read_engine_export(engine_dir).segmenter()
    expected_windows = sum(len(seg.passage(r["text"])) for r in corpus[1])
    assert expected_windows > len(corpus[1])  # the long passages really were cut into windows
    for dtype in ("fp16", "int8"):
        report = PassageStore.open(root / dtype).verify()
        assert report["passages"] == len(corpus[1]) and report["rows"] == expected_windows


def test_fetched_representations_equal_on_the_fly_ones(stores, corpus):
    engine_dir, root = stores
    store = PassageStore.open(root / "fp16")
    ids = [r["id"] for r in corpus[1][:20]]
    cached = store.fetch(ids)
    seg = read_engine_export(engine_dir).segmenter()
    segments = [w for r in corpus[1][:20] for w in seg.passage(r["text"])]
    assert [list(t) for t in cached.token_ids] == [s.input_ids for s in segments]  # same windows, in the order asked
    with load_engine(engine_dir) as runner:
        fresh = runner.encode(seg.pad(segments))
    real = cached.mask.astype(bool)
    assert cached.reps.shape == fresh.shape
    err = np.abs(cached.reps - fresh)[real]
    assert err.max() <= np.abs(fresh[real]).max() * 2**-11  # fp16 rounding, nothing more
    assert np.all(cached.reps[~real] == 0)


def test_answers_from_the_store_equal_answers_on_the_fly(stores, corpus):
    engine_dir, root = stores
    rng = random.Random(3)
    for dtype, tol in (("fp16", 5e-3), ("int8", 5e-2)):
        with QueryPipeline.open(root / dtype) as pipe:
            for row in rng.sample(corpus[1], 8):
                query = " ".join(row["text"].split()[:4])
                cached = pipe.answer(query, k=10)
                fresh = pipe.answer(query, k=10, ids=[c.id for c in cached.candidates], on_the_fly=True)
                scores = {c.id: c.score for c in fresh.candidates}
                assert max(abs(c.score - scores[c.id]) for c in cached.candidates) < tol
                if dtype == "fp16":
                    assert [(c.id, c.answer) for c in cached.candidates] == [(c.id, c.answer) for c in fresh.candidates]
                assert set(cached.timings_ms) == {"input", "retrieve", "fetch", "cross", "total"}


def test_cross_calls_by_window_length_change_no_answer(stores, corpus):
    """Windows sorted by length into 1, 2 or 3 cross calls, each cut to its own longest window: the same
    candidates, answers, offsets and scores (the corpus mixes 5-word and several-window passages)."""

    engine_dir, root = stores
    rng = random.Random(5)
    queries = [" ".join(row["text"].split()[:4]) for row in rng.sample(corpus[1], 6)]
    with QueryPipeline.open(root / "fp16") as pipe:
        assert pipe.length_buckets == 3  # the CPU default
        lengths = set()
        results = {}
        for buckets in (1, 2, 3):
            pipe.length_buckets = buckets
            results[buckets] = pipe.answer_many(queries, k=12)
            lengths |= {int(m) for m in pipe.store.fetch([c.id for c in results[buckets][0].candidates]).mask.sum(1)}
        assert len(lengths) > 3  # windows of many lengths: the buckets really cut
        for buckets in (2, 3):
            for one, cut in zip(results[1], results[buckets]):
                assert [(c.id, c.answer, c.start, c.end) for c in one.candidates] == [(c.id, c.answer, c.start, c.end) for c in cut.candidates]
                assert np.allclose([c.score for c in one.candidates], [c.score for c in cut.candidates], atol=1e-4), buckets


def test_bm25_finds_the_passage_with_a_rare_phrase(stores, corpus):
    _, root = stores
    store = PassageStore.open(root / "fp16")
    # a distinctive query: the first eight words of one passage
    for row in corpus[1][:5]:
        hits = store.search(" ".join(row["text"].split()[:8]), 5)
        assert row["id"] in [h[0] for h in hits]


def test_answer_spans_are_text_of_the_passage(stores, corpus):
    _, root = stores
    texts_by_id = {r["id"]: r["text"] for r in corpus[1]}
    with QueryPipeline.open(root / "fp16") as pipe:
        result = pipe.answer(" ".join(corpus[1][0]["text"].split()[:3]), k=20)
    spans = [c for c in result.candidates if c.answer]
    assert spans, "a random head should still beat no-answer somewhere"
    for c in spans:
        assert c.answer in texts_by_id[c.id]


def test_rerank_pair_model_orders_by_label_log_probability(engine, corpus, tmp_path):
    _, engine_dir = engine(task="pair")
    index_corpus(corpus[0], engine_dir, tmp_path / "s", batch=8, chunk=64, limit=12, progress=False)
    ids = [r.id for r in read_corpus(corpus[0], 12)]
    result = CliRunner().invoke(main, ["rerank", str(tmp_path / "s"), "the cat", "--ids", ",".join(ids), "--top", "12", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "r.json").read_text())
    scores = [c["score"] for c in out["candidates"]]
    assert sorted(scores, reverse=True) == scores and len(scores) == 12
    assert all(s <= 0 for s in scores)  # log-probabilities
    assert "stage timings" in result.output
    assert "not a QA reader" in cli_error(["answer", str(tmp_path / "s"), "the cat"])


def test_index_resumes_and_stores_each_passage_once(engine, corpus, tmp_path):
    _, engine_dir = engine()
    first = index_corpus(corpus[0], engine_dir, tmp_path / "s", batch=8, chunk=8, limit=20, progress=False)
    second = index_corpus(corpus[0], engine_dir, tmp_path / "s", batch=8, chunk=8, progress=False)
    third = index_corpus(corpus[0], engine_dir, tmp_path / "s", batch=8, chunk=8, progress=False)
    assert (first.indexed, second.already_stored, second.indexed, third.indexed) == (20, 20, len(corpus[1]) - 20, 0)
    assert PassageStore.open(tmp_path / "s").verify()["passages"] == len(corpus[1])


def test_sigkill_at_random_points_then_resume(engine, tmp_path):
    """Kill `dtx index` with SIGKILL several times mid-run; the resumed store holds every passage exactly once."""
    _, engine_dir = engine()
    corpus = tmp_path / "big.jsonl"
    rows = write_corpus(corpus, 5000, seed=5, long_every=50)  # long enough that no run finishes before its kill
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "dtx.cli", "index", str(corpus), "--engine", str(engine_dir), "-o", str(store), "--batch", "8", "--chunk", "16", "--threads", "1"]
    rng = random.Random(11)
    partial = []
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        start = time.time()
        # wait until this run has committed something new (however long this machine takes), then kill it at a random moment soon after
        before = len(PassageStore.open(store)) if (store / "_versions").exists() else 0
        committed = False
        while not committed and proc.poll() is None and time.time() < start + 600:
            time.sleep(0.05)
            committed = (store / "_versions").exists() and len(PassageStore.open(store)) > before
        assert committed, "the indexer ended or stalled before committing anything"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial.append(len(PassageStore.open(store)))
    assert any(0 < n < len(rows) for n in partial), f"no kill landed mid-run: {partial}"
    assert partial == sorted(partial)  # nothing committed was ever lost
    result = CliRunner().invoke(main, cmd[3:])
    assert result.exit_code == 0, result.output
    report = PassageStore.open(store).verify()
    assert report["passages"] == len(rows)
    assert PassageStore.open(store).ids() == {r["id"] for r in rows}


def test_store_from_another_export_is_refused_and_kept(stores, exported, tmp_path, corpus):
    from dtx.engines.build import BuildOptions, build_engine

    engine_dir, root = stores
    _, other_export = exported("bert", 3, 2)
    other_engine = tmp_path / "other"
    build_engine(other_export, other_engine, BuildOptions(), progress=False)
    before = PassageStore.open(root / "fp16").verify()
    err = cli_error(["index", str(corpus[0]), "--engine", str(other_engine), "-o", str(root / "fp16")])
    assert "was built from export" in err and "re-index" in err
    assert "was built from export" in cli_error(["answer", str(root / "fp16"), "the cat", "--engine", str(other_engine)])
    assert "holds fp16" in cli_error(["index", str(corpus[0]), "--engine", str(engine_dir), "-o", str(root / "fp16"), "--dtype", "int8"])
    assert PassageStore.open(root / "fp16").verify() == before


def test_bad_corpus_and_missing_store_are_one_line_errors(stores, tmp_path):
    engine_dir, root = stores
    no_text = tmp_path / "no_text.jsonl"
    no_text.write_text('{"id": "a", "text": "the cat"}\n{"id": "b"}\n')
    assert f"{no_text}:2" in cli_error(["index", str(no_text), "--engine", str(engine_dir), "-o", str(root / "fp16")])
    dup = tmp_path / "dup.tsv"
    dup.write_text("a\tthe cat\nb\tthe dog\na\tthe bird\n")
    err = cli_error(["index", str(dup), "--engine", str(engine_dir), "-o", str(tmp_path / "new")])
    assert f"{dup}:3" in err and "'a'" in err and f"{dup}:1" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "empty" in cli_error(["index", str(empty), "--engine", str(engine_dir), "-o", str(tmp_path / "new")])
    assert "no store at" in cli_error(["answer", str(tmp_path / "missing"), "the cat"])
    assert "not a dtx store" in cli_error(["check-store", str(tmp_path)])
    assert "dtx index" in cli_error(["check-store", str(tmp_path / "missing")])


def test_squad_json_corpus(tmp_path):
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "the cat sat.", "qas": []}, {"context": "the dog ran.", "qas": []}, {"context": "the cat sat.", "qas": []}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(doc))
    passages = read_corpus(path)
    assert [p.text for p in passages] == ["the cat sat.", "the dog ran."]  # the same paragraph once


def test_ray_index_writes_the_same_representations(engine, corpus, stores, tmp_path):
    pytest.importorskip("ray", reason="ray is installed by .ci/run; this checkout lacks it")
    engine_dir, root = stores
    report = index_corpus(corpus[0], engine_dir, tmp_path / "ray", dtype="fp16", batch=8, chunk=16, use_ray=True, threads=1, progress=False)
    assert report.backend == "ray" and report.indexed == len(corpus[1])
    local, ray_store = PassageStore.open(root / "fp16"), PassageStore.open(tmp_path / "ray")
    assert ray_store.verify()["rows"] == local.verify()["rows"]
    ids = [r["id"] for r in corpus[1]]
    a, b = local.fetch(ids), ray_store.fetch(ids)
    assert a.ids == b.ids and a.windows == b.windows
    # the same engine on differently composed batches: equal up to one fp16 rounding step
    assert np.abs(a.reps - b.reps).max() <= np.abs(a.reps).max() * 2**-10


def test_check_store_agreement_and_plan_from_index_rate(stores, corpus, tmp_path):
    engine_dir, root = stores
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"question": " ".join(r["text"].split()[:4]), "passage": r["text"]}) + "\n" for r in corpus[1][:6]))
    result = CliRunner().invoke(main, ["check-store", str(root / "fp16"), "--queries", str(queries), "-k", "5", "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["passages"] == len(corpus[1]) and report["agreement"]["queries"] == 6
    assert report["agreement"]["same top answer %"] == 100.0 and report["agreement"]["max |score diff|"] < 5e-3
    result = CliRunner().invoke(main, ["index", str(corpus[0]), "--engine", str(engine_dir), "-o", str(tmp_path / "s"), "--limit", "10", "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    rate = json.loads((tmp_path / "i.json").read_text())["passages_per_s"]
    result = CliRunner().invoke(main, ["plan", "--passages", "1000000", "--bench-json", str(tmp_path / "i.json")])
    assert result.exit_code == 0 and f"{rate:.3g} passages/s" in result.output


def test_coupled_teacher_reads_the_same_windows(stores, corpus, exported):
    """`rerank_coupled` scores a stored window as the Hugging Face teacher scores tokenizer(question, passage)."""
    import torch

    from dtx.model.checkpoint import load_checkpoint
    from dtx.model.decode import top_span

    _, root = stores
    ckpt = load_checkpoint(exported("bert", 2, 2)[0])
    teacher, tok = ckpt.teacher().eval(), ckpt.tokenizer()
    short = [r for r in corpus[1] if len(r["text"].split()) < 30][:4]
    with QueryPipeline.open(root / "fp16") as pipe:
        for row in short:
            query = " ".join(row["text"].split()[1:5])
            (cand,) = pipe.rerank_coupled(query, [row["id"]]).candidates
            enc = tok(query, row["text"], return_tensors="pt", return_offsets_mapping=True)
            offsets = enc.pop("offset_mapping")[0]
            with torch.no_grad():
                out = teacher(**enc)
            start, end = out.start_logits[0].numpy(), out.end_logits[0].numpy()
            allowed = np.array([s == 1 for s in enc.sequence_ids()]) & (offsets[:, 1] > offsets[:, 0]).numpy()
            span, best = top_span(start, end, allowed)
            null = float(start[0] + end[0])
            assert abs(cand.score - (best - null)) < 1e-3
            expected = row["text"][int(offsets[span[0]][0]) : int(offsets[span[1]][1])] if best > null else None
            assert cand.answer == expected


def test_open_domain_eval_reads_dev_paragraphs_only(engine, tmp_path):
    """A store of the held-out paragraphs (`--split dev`), asked every held-out question: student and teacher side by side."""
    from dtx.data.pairs import read_pairs
    from dtx.data.splits import split_by_passage
    from dtx.model.checkpoint import read_meta
    from dtx.query.open_domain import candidates_digest, open_domain_eval

    _, engine_dir = engine()
    passages = texts(77, 60, 12, 30)
    examples = []
    for i, p in enumerate(passages):
        words = p.split()
        answer = "unknown" if i % 3 == 0 else " ".join(words[5:7])
        examples.append({"input": f"{' '.join(words[:6])} ? \ncontext: {p}", "target": answer})
    data = tmp_path / "task.json"
    data.write_text(json.dumps({"name": "disfl_qa", "examples": examples}))
    dev = split_by_passage(read_pairs(data))[1]
    assert dev, "the fixture needs held-out paragraphs"
    first = next(i for i, p in enumerate(passages) if p == dev[0].passage)
    examples[first]["input"] = f"? \ncontext: {passages[first]}"  # a question with no word to search for (Disfl-QA has one)
    data.write_text(json.dumps({"name": "disfl_qa", "examples": examples}))
    store = tmp_path / "dev-store"
    result = CliRunner().invoke(main, ["index", str(data), "--engine", str(engine_dir), "-o", str(store), "--split", "dev"])
    assert result.exit_code == 0, result.output
    assert len(PassageStore.open(store).ids()) == len({p.passage for p in dev})
    report = open_domain_eval(store, data, k=5, progress=False)
    assert report["questions"] == len(dev) and report["nothing_retrieved"] == 1
    assert report["gold_passage_retrieved"] == (len(dev) - 1) / len(dev)  # every question with words finds its paragraph
    for side in ("student", "teacher"):
        assert report[side]["total"] == len(dev) and report[side]["p50_ms"] > 0
        assert report[side]["HasAns_total"] + report[side]["NoAns_total"] == len(dev)
    # without the teacher: the same student answers over the same candidates, which BM25 alone reproduces
    alone = open_domain_eval(store, data, k=5, progress=False, teacher=False)
    assert alone["teacher"] is None and alone["agreement"] is None
    assert {m: alone["student"][m] for m in ("exact", "f1")} == {m: report["student"][m] for m in ("exact", "f1")}
    assert alone["candidates_digest"] == report["candidates_digest"] == candidates_digest(store, data, k=5)
    teacher_meta = read_meta(read_engine_export(engine_dir).checkpoint.path)
    assert report["teacher_sha256"] == alone["teacher_sha256"] == dict(teacher_meta.teacher_sha256) and report["teacher_sha256"]
    assert report["teacher_source"] == alone["teacher_source"] == teacher_meta.source
    assert candidates_digest(store, data, k=4) != report["candidates_digest"], "the digest must see the candidates"
    bad = CliRunner().invoke(main, ["eval-store", str(store), "--data", str(data), "-k", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "-k" in bad.output


def test_file_uri_opens_the_same_store_and_creates_new_ones(engine, corpus, tmp_path):
    """`-o file:///path` of an existing store resumes it (it used to be rewritten to 0 rows); of a new path, creates one."""
    _, engine_dir = engine()
    plain = tmp_path / "store"
    index_corpus(corpus[0], engine_dir, plain, batch=8, chunk=16, limit=10, progress=False)
    rows = len(PassageStore.open(plain))
    again = index_corpus(corpus[0], engine_dir, plain.resolve().as_uri(), batch=8, chunk=16, limit=10, progress=False)
    assert again.already_stored == 10 and again.indexed == 0 and len(PassageStore.open(plain)) == rows
    fresh = tmp_path / "new store"
    index_corpus(corpus[0], engine_dir, fresh.resolve().as_uri(), batch=8, chunk=16, limit=4, progress=False)
    assert len(PassageStore.open(fresh.resolve().as_uri()).ids()) == 4 and len(PassageStore.open(fresh).ids()) == 4
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    assert "existing file" in cli_error(["index", str(corpus[0]), "--engine", str(engine_dir), "-o", str(a_file)])
    assert a_file.read_text() == "keep me"


def test_a_nan_score_never_ranks_first(stores, corpus, monkeypatch):
    """Corrupt stored values give NaN scores: such a candidate sorts last, never first."""
    _, root = stores
    with QueryPipeline.open(root / "fp16") as pipe:
        query = " ".join(corpus[1][0]["text"].split()[:4])
        clean = pipe.answer(query, k=10)
        poisoned_id = clean.candidates[0].id
        real_fetch = pipe.store.fetch

        def corrupt_fetch(ids, *a, **k):
            cached = real_fetch(ids, *a, **k)
            for row, pid in enumerate(cached.ids):
                if pid == poisoned_id:
                    cached.reps[row] = np.nan
            return cached

        monkeypatch.setattr(pipe.store, "fetch", corrupt_fetch)
        ranked = pipe.answer(query, k=10).candidates
    assert ranked[-1].id == poisoned_id and np.isnan(ranked[-1].score)
    assert not any(np.isnan(c.score) for c in ranked[:-1])


def _damaged_copy(root: Path, tmp_path: Path, name: str) -> Path:
    import shutil

    copy = tmp_path / name
    shutil.copytree(root / "fp16", copy)
    return copy


def _one_line_or_ok(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit)), result.output
    if result.exit_code:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return result.exit_code, result.output


def test_a_row_whose_bytes_changed_is_named_by_check_store_and_refused_by_answer(stores, corpus, tmp_path):
    """A committed row whose stored values no longer match its checksum (silent corruption): never a wrong answer."""
    import lance
    import pyarrow as pa

    _, root = stores
    store = _damaged_copy(root, tmp_path, "flipped")
    ds = lance.dataset(str(store))
    victim = corpus[1][0]["id"]
    table = ds.to_table(filter=f"id = '{victim}' AND window = 0")
    rep = bytearray(table.column("rep")[0].as_py())
    rep[10] ^= 0xFF
    ds.delete(f"id = '{victim}' AND window = 0")
    lance.write_dataset(table.set_column(table.schema.get_field_index("rep"), "rep", pa.array([bytes(rep)], pa.large_binary())), str(store), mode="append")
    code, out = _one_line_or_ok(["check-store", str(store)])
    assert code == 1 and "checksum mismatch" in out and victim in out
    code, out = _one_line_or_ok(["answer", str(store), corpus[1][0]["text"], "--ids", victim])
    assert code == 1 and "corrupt" in out


@pytest.mark.parametrize("damage", ["truncated data file", "flipped bytes in a data file", "deleted index files"])
def test_damaged_store_files_are_named_not_tracebacks(stores, corpus, tmp_path, damage):
    import shutil

    _, root = stores
    store = _damaged_copy(root, tmp_path, "damaged")
    data = max((store / "data").glob("*.lance"), key=lambda p: p.stat().st_size)
    if damage == "truncated data file":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "flipped bytes in a data file":
        raw = bytearray(data.read_bytes())
        for i in range(len(raw) // 4, len(raw) // 2, 97):
            raw[i] ^= 0xFF
        data.write_bytes(bytes(raw))
    else:
        shutil.rmtree(store / "_indices")
    code, _ = _one_line_or_ok(["check-store", str(store)])
    assert code == 1, f"check-store passed a store with {damage}"
    for row in corpus[1][:3]:
        _one_line_or_ok(["answer", str(store), " ".join(row["text"].split()[:4])])


def test_reindexing_an_id_with_changed_text_is_refused(engine, tmp_path):
    _, engine_dir = engine()
    first = tmp_path / "c1.jsonl"
    first.write_text(json.dumps({"id": "a", "text": "the river city king"}) + "\n" + json.dumps({"id": "b", "text": "music water light"}) + "\n")
    index_corpus(first, engine_dir, tmp_path / "s", batch=8, chunk=16, progress=False)
    second = tmp_path / "c2.jsonl"
    second.write_text(json.dumps({"id": "a", "text": "a completely different passage"}) + "\n")
    assert "already in" in cli_error(["index", str(second), "--engine", str(engine_dir), "-o", str(tmp_path / "s")])
    assert PassageStore.open(tmp_path / "s").fetch(["a"]).texts["a"] == "the river city king"


def test_a_store_takes_rows_from_one_engine_only(engine, corpus, tmp_path):
    """Two engines of the same export (here ort fp32 and torch fp32; int8 rows differ by ~10%): one store refuses the second."""
    _, fp32 = engine()
    index_corpus(corpus[0], fp32, tmp_path / "s", batch=8, chunk=16, limit=5, progress=False)
    _, torch_engine = engine(backend="torch")
    msg = cli_error(["index", str(corpus[0]), "--engine", str(torch_engine), "-o", str(tmp_path / "s")])
    assert "ort fp32 engine" in msg and "torch fp32 engine" in msg
    assert len(PassageStore.open(tmp_path / "s")) == 5
