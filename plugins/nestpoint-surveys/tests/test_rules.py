"""The question types' rules without the server: any answer is taken or refused by name."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from nestpoint_surveys import service
from nestpoint_surveys.answers import check_settings, tags_earned
from nestpoint_surveys.models import SurveyRound
from nestpoint_surveys.questions import BUILT_IN

from nestpoint.plugins.api import Invalid

TYPES = {f"surveys.{qt.key}": qt for qt in BUILT_IN}
CHOICES = [{"key": k, "label": k} for k in ("a", "b", "c")]
QUESTIONS = [
    ("q1", "surveys.single", {"choices": CHOICES}),
    ("q2", "surveys.multiple", {"choices": CHOICES, "max_choices": 2}),
    ("q3", "surveys.rating", {"max": 5}),
    ("q4", "surveys.nps", {}),
    ("q5", "surveys.text", {"max_length": 20}),
]
ROUND = SurveyRound(
    questions=[
        {
            "key": key,
            "type": type_key,
            "title": key,
            "help": "",
            "required": key != "q5",
            "settings": check_settings(TYPES[type_key], raw, "settings"),
            "tags": [],
        }
        for key, type_key, raw in QUESTIONS
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ANSWER = (
    st.dictionaries(
        st.sampled_from(["choice", "choices", "score", "text", "other"]), JSON, max_size=3
    )
    | st.fixed_dictionaries({"choice": st.sampled_from(["a", "b", "d", ""])})
    | st.fixed_dictionaries({"score": st.integers(-2, 12)})
    | JSON
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from(["q1", "q2", "q3", "q4", "q5", "zz"]), ANSWER))
def test_any_answers_are_taken_or_refused_naming_their_question(raw: dict[str, Any]) -> None:
    for strict in (True, False):
        try:
            stored, tags = service._checked_answers(TYPES, ROUND, raw, strict=strict)
        except Invalid as refused:
            fields = [e.field for e in refused.errors]
        else:
            assert set(stored) <= {"q1", "q2", "q3", "q4", "q5"}
            assert tags == []
            continue
        assert fields
        assert all(f == "answers" or f.startswith("answers.") for f in fields)


def test_tag_rules_match_choices_and_score_ranges() -> None:
    question = {
        "tags": [
            {"tag": "early", "choice": "yes"},
            {"tag": "promoter", "min_score": 9, "max_score": None},
            {"tag": "detractor", "min_score": None, "max_score": 6},
        ]
    }
    assert tags_earned(question, {"choice": "yes"}, None) == ["early"]
    assert tags_earned(question, {"choices": ["no", "yes"]}, None) == ["early"]
    assert tags_earned(question, {"score": 9}, 9.0) == ["promoter"]
    assert tags_earned(question, {"score": 6}, 6.0) == ["detractor"]
    assert tags_earned(question, {"score": 7}, 7.0) == []
    assert tags_earned(question, "not an object", None) == []
