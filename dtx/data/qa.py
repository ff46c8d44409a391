"""QA features: (question, passage window) segments with the answer as a token span, SQuAD style.

Long passages become overlapping windows (the segmenter's stride, as SQuAD readers make them);
an answer is located in the passage text, then mapped to the tokens of each window through the
tokenizer's offset mapping. A window that does not hold the whole answer, and every window of an
unanswerable question, points at slot 0 ([CLS]): the SQuAD 2.0 convention for "no answer".

Answers are located by character position where the data gives one (SQuAD JSON `answer_start`),
otherwise by search after removing whitespace on both sides: Disfl-QA's passages are tokenized
text ("40 , 000") while its answers are not ("40,000").
"""

from __future__ import annotations

from dataclasses import dataclass

from dtx.data.pairs import Pair
from dtx.errors import DtxError
from dtx.model.decode import NO_ANSWER
from dtx.model.segments import PairSegmenter, Segment


@dataclass
class QAFeature:
    example: int  # index of the pair it came from
    window: int
    question: Segment
    passage: Segment
    start: int  # answer's first token in the passage segment, or NO_ANSWER
    end: int  # last token, inclusive, or NO_ANSWER


def locate_answer(answer: str, passage: str, start: int | None = None) -> tuple[int, int] | None:
    """Character span [s, e) of `answer` in `passage`: at `start` if given and right, else by whitespace-free search."""
    if start is not None and passage[start : start + len(answer)] == answer:
        return start, start + len(answer)
    keep = [i for i, c in enumerate(passage) if not c.isspace()]
    flat = "".join(passage[i] for i in keep)
    needle = "".join(c for c in answer if not c.isspace())
    if not needle:
        return None
    at = flat.find(needle)
    if at < 0:
        at = flat.lower().find(needle.lower())
    if at < 0:
        return None
    return keep[at], keep[at + len(needle) - 1] + 1


def token_span(offsets: list[tuple[int, int]], chars: tuple[int, int]) -> tuple[int, int]:
    """First and last token of a segment overlapping `chars`, or NO_ANSWER if the segment does not hold all of it."""
    s, e = chars
    inside = [j for j, (a, b) in enumerate(offsets) if b > a and b > s and a < e]
    if not inside or offsets[inside[0]][0] > s or offsets[inside[-1]][1] < e:
        return NO_ANSWER, NO_ANSWER
    return inside[0], inside[-1]


def qa_features(pairs: list[Pair], segmenter: PairSegmenter, where: str) -> list[QAFeature]:
    """Every window of every pair; an answer that is not in its passage is an error naming the example."""
    features = []
    for n, pair in enumerate(pairs):
        chars = None
        if pair.answers:
            chars = locate_answer(pair.answers[0], pair.passage, pair.answer_start)
            if chars is None:
                raise DtxError(f"{where}: example {pair.id or n + 1}: answer {pair.answers[0]!r} is not in its passage; fix or drop the example")
        question = segmenter.question(pair.question)
        for w, window in enumerate(segmenter.passage(pair.passage)):
            start, end = token_span(window.offsets, chars) if chars else (NO_ANSWER, NO_ANSWER)
            features.append(QAFeature(n, w, question, window, start, end))
    return features
