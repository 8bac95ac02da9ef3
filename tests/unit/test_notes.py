"""Parsing Zeppelin notes and the run result models in ``schemas.notes``."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.notes import (
    MAX_ERROR_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_TRACEBACK_BYTES,
    TRUNCATED_MARKER,
    InvalidNote,
    Note,
    NoteRun,
    Paragraph,
    ParagraphResult,
    ParagraphStatus,
    apply_simple_forms,
    parse_note,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "notes"

# A legacy (Zeppelin 0.7/0.8) note.json: no defaultInterpreterGroup, old dates, `result`(s).
LEGACY_NOTE_JSON = """
{
  "paragraphs": [
    {
      "text": "%python\\nprint(1 + 1)",
      "user": "anonymous",
      "dateUpdated": "Dec 17, 2016 3:32:15 PM",
      "config": {
        "colWidth": 12.0,
        "editorMode": "ace/mode/python",
        "results": [{"graph": {"mode": "table"}}]
      },
      "settings": {"params": {}, "forms": {}},
      "jobName": "paragraph_1481988735398_1463128133",
      "id": "20161217-153215_1463128133",
      "result": {"code": "SUCCESS", "type": "TEXT", "msg": "2\\n"},
      "dateCreated": "Dec 17, 2016 3:32:15 PM",
      "status": "FINISHED",
      "progressUpdateIntervalMs": 500
    },
    {
      "title": "Old shell",
      "text": "%sh echo hello",
      "config": {"enabled": false},
      "id": "20161217-153300_90120312",
      "result": null,
      "results": {"code": "ERROR", "msg": [{"type": "TEXT", "data": "boom"}]},
      "status": "ERROR"
    },
    {
      "text": "x = 3",
      "config": {"enabled": null},
      "id": "20161217-153400_11111111",
      "status": "READY"
    }
  ],
  "name": "Legacy note",
  "id": "2C35YU814",
  "angularObjects": {"2C4HKDCQW:shared_process": []},
  "config": {"looknfeel": "default"},
  "info": {}
}
"""


def _note_json(**overrides: Any) -> str:
    note: dict[str, Any] = {
        "paragraphs": [{"id": "p1", "text": "%python\nprint(1)", "config": {}}],
        "name": "n",
        "id": "2ABCDEFGH",
        "defaultInterpreterGroup": "python",
    }
    note.update(overrides)
    return json.dumps(note)


def _paragraph(text: str, *, index: int = 0, title: str | None = None) -> Paragraph:
    return Paragraph(index=index, id=f"p{index}", title=title, text=text, enabled=True)


def _result(
    index: int, label: str, status: ParagraphStatus, error: str | None = None
) -> ParagraphResult:
    return ParagraphResult(
        index=index,
        id=f"p{index}",
        label=label,
        interpreter="python",
        status=status,
        output="",
        error=error,
        started_at=datetime(2024, 1, 1, tzinfo=UTC),
        finished_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def test_parses_zpln_fixture() -> None:
    """A Zeppelin 0.9+ .zpln keeps ids, titles, order and the default group."""
    note = parse_note((FIXTURES / "success.zpln").read_bytes())

    assert note.id == "2JQ6V2ZQX"
    assert note.name == "Success"
    assert note.default_interpreter_group == "python"
    assert [p.index for p in note.paragraphs] == [0, 1, 2, 3, 4]
    assert [p.interpreter for p in note.paragraphs] == ["md", "python", "python", "sh", "python"]
    assert note.paragraphs[1].title == "Compute total"
    assert note.paragraphs[1].id == "paragraph_1709629855012_1820347745"
    assert note.paragraphs[2].script.startswith("import os")
    assert all(p.enabled for p in note.paragraphs)
    assert note.paragraphs[4].script == ""


def test_parses_legacy_note_json_with_result_and_results() -> None:
    """A legacy note.json parses; stale `result`/`results`/`status` are ignored."""
    note = parse_note(LEGACY_NOTE_JSON)

    assert note.id == "2C35YU814"
    assert note.name == "Legacy note"
    assert len(note.paragraphs) == 3
    assert note.paragraphs[0].id == "20161217-153215_1463128133"
    assert note.paragraphs[0].script == "print(1 + 1)"
    assert note.paragraphs[1].script == "echo hello"
    assert not hasattr(note.paragraphs[0], "results")


def test_missing_default_group_means_python() -> None:
    """Without defaultInterpreterGroup (legacy notes) the embedded default, python, applies."""
    assert parse_note(LEGACY_NOTE_JSON).default_interpreter_group == "python"
    raw = json.loads(_note_json())
    del raw["defaultInterpreterGroup"]
    assert parse_note(json.dumps(raw)).default_interpreter_group == "python"
    assert (
        parse_note(_note_json(defaultInterpreterGroup="spark")).default_interpreter_group == "spark"
    )


def test_only_explicit_false_disables() -> None:
    """config.enabled false disables; missing, null, true or no config at all keep it enabled."""
    paragraphs = [
        {"id": "a", "text": "1", "config": {"enabled": False}},
        {"id": "b", "text": "2", "config": {"enabled": None}},
        {"id": "c", "text": "3", "config": {}},
        {"id": "d", "text": "4"},
        {"id": "e", "text": "5", "config": {"enabled": True}},
        {"id": "f", "text": "6", "config": None},
    ]
    note = parse_note(_note_json(paragraphs=paragraphs))
    assert [p.enabled for p in note.paragraphs] == [False, True, True, True, True, True]
    assert [p.enabled for p in parse_note(LEGACY_NOTE_JSON).paragraphs] == [True, False, True]


def test_accepts_bytes_with_bom_and_missing_text() -> None:
    """UTF-8 bytes (with BOM) parse; a paragraph without text is an empty paragraph."""
    raw = _note_json(paragraphs=[{"id": "p", "config": {}}]).encode("utf-8-sig")
    paragraph = parse_note(raw).paragraphs[0]
    assert paragraph.text == ""
    assert paragraph.script == ""
    assert paragraph.interpreter == ""


@pytest.mark.parametrize(
    ("text", "interpreter", "script"),
    [
        ("%python\nprint(1)", "python", "print(1)"),
        ("%python print(1)", "python", "print(1)"),
        ("  %sh\n\n  ls -l\n", "sh", "ls -l"),
        ("%md", "md", ""),
        ("%sh\n", "sh", ""),
        ("%python.ipython\nx = 1", "python.ipython", "x = 1"),
        ("%spark.pyspark\nsc.version", "spark.pyspark", "sc.version"),
        ("%my-interp_2\nrun", "my-interp_2", "run"),
        ("print('%python')", "", "print('%python')"),
        ("\n x = 1\n", "", "x = 1"),
        ("", "", ""),
        ("%spark(pool=p1) sc.version", "spark", "sc.version"),
        ('%sh(form=simple, label="a,b=c")\necho ${x}', "sh", "echo ${x}"),
    ],
)
def test_prefix_and_script(text: str, interpreter: str, script: str) -> None:
    """The interpreter prefix and local properties are split off the script as Zeppelin does."""
    paragraph = _paragraph(text)
    assert paragraph.interpreter == interpreter
    assert paragraph.script == script


def test_local_properties() -> None:
    """Local properties support quotes, escapes and bare flags."""
    paragraph = _paragraph('%jdbc(saveAs=bank, label="a,b=c", flag, tab=x\\ty)\nselect 1')
    assert paragraph.local_properties == {
        "saveAs": "bank",
        "label": "a,b=c",
        "flag": "flag",
        "tab": "x\ty",
    }
    assert paragraph.script == "select 1"
    assert _paragraph("%python\n(1, 2)").local_properties == {}


def test_unclosed_local_properties_are_an_invalid_note() -> None:
    """An unclosed `%name(` is reported with the paragraph's title."""
    paragraphs = [{"id": "p", "title": "Load", "text": "%spark(pool=p1\nsc.version"}]
    with pytest.raises(InvalidNote, match=r"paragraph 1 \('Load'\).*not closed"):
        parse_note(_note_json(paragraphs=paragraphs))
    with pytest.raises(ValidationError):
        _paragraph("%sh(a=1")


def test_label_is_title_or_one_based_number() -> None:
    """The label is the title when set, else "paragraph N" counting from 1."""
    assert _paragraph("x", index=0, title="Load data").label == "Load data"
    assert _paragraph("x", index=2).label == "paragraph 3"
    blank_title = [{"id": "p", "title": "  ", "text": "x"}]
    assert parse_note(_note_json(paragraphs=blank_title)).paragraphs[0].label == "paragraph 1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe not utf8", "not UTF-8"),
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"name": "n"}', "no 'paragraphs'"),
        ('{"paragraphs": {"a": 1}}', "'paragraphs' must be a list"),
        ('{"paragraphs": null}', "'paragraphs' must be a list"),
        ('{"paragraphs": [1]}', "paragraph 1 is not a JSON object"),
        ('{"paragraphs": [{"text": 5}]}', "'text' must be a string"),
        ('{"paragraphs": [], "defaultInterpreterGroup": 3}', "must be a string"),
    ],
)
def test_invalid_notes(raw: bytes | str, message: str) -> None:
    """Anything that is not a runnable note raises InvalidNote with a clear message."""
    with pytest.raises(InvalidNote, match=message):
        parse_note(raw)
    assert issubclass(InvalidNote, ValueError)


def test_models_are_frozen() -> None:
    """Notes and paragraphs are immutable."""
    note = parse_note(_note_json())
    assert isinstance(note, Note)
    with pytest.raises(ValidationError):
        note.paragraphs[0].text = "changed"  # type: ignore[misc]


def test_output_keeps_the_last_64_kib() -> None:
    """Long output is cut from the front, marked, and stays within the bound."""
    output = "".join(f"line {i}\n" for i in range(20000)) + "THE END"
    fields = _result(0, "paragraph 1", ParagraphStatus.FINISHED).model_dump()
    result = ParagraphResult(**{**fields, "output": output})

    assert len(result.output.encode()) <= MAX_OUTPUT_BYTES
    assert result.output.startswith(TRUNCATED_MARKER)
    assert result.output.endswith("line 19999\nTHE END")
    again = ParagraphResult.model_validate_json(result.model_dump_json())
    assert again.output == result.output


def test_short_output_is_untouched() -> None:
    """Output below the bound is kept as is, multi-byte characters included."""
    fields = _result(0, "p", ParagraphStatus.FINISHED).model_dump()
    result = ParagraphResult(**{**fields, "output": "héllo ✓\n"})
    assert result.output == "héllo ✓\n"


def test_note_run_failures_and_summary() -> None:
    """ERROR and ABORT count as failed; the summary names titles quoted and numbers plain."""
    run = NoteRun(
        paragraphs=(
            _result(0, "Load data", ParagraphStatus.ERROR, "ZeroDivisionError: division by zero"),
            _result(1, "paragraph 2", ParagraphStatus.FINISHED),
            _result(2, "paragraph 3", ParagraphStatus.ERROR, "ExitValue: 2"),
            _result(3, "paragraph 4", ParagraphStatus.SKIPPED),
            _result(4, "Stop me", ParagraphStatus.ABORT),
        )
    )
    assert [r.index for r in run.failed] == [0, 2, 4]
    assert not run.succeeded
    assert run.failure_summary() == (
        "Paragraph 'Load data' failed: ZeroDivisionError: division by zero; "
        "paragraph 3 failed: ExitValue: 2; paragraph 'Stop me' failed: ABORT"
    )


def test_note_run_without_failures() -> None:
    """A run with only FINISHED/SKIPPED paragraphs succeeded and has an empty summary."""
    run = NoteRun(
        paragraphs=(
            _result(0, "paragraph 1", ParagraphStatus.FINISHED),
            _result(1, "paragraph 2", ParagraphStatus.SKIPPED),
        )
    )
    assert run.succeeded
    assert run.failed == ()
    assert run.failure_summary() == ""
    assert ParagraphStatus("ABORT") is ParagraphStatus.ABORT


def test_error_details_default_to_none_and_are_bounded() -> None:
    """error_name/error_value/traceback are optional; long values are cut to their bounds."""
    plain = _result(0, "p", ParagraphStatus.ERROR, "ExitValue: 2")
    assert (plain.error_name, plain.error_value, plain.traceback) == (None, None, None)

    fields = plain.model_dump(by_alias=False)
    traceback = "".join(f"  frame {i}\n" for i in range(5000)) + "ValueError: boom\n"
    result = ParagraphResult(
        **{**fields, "error_name": "ValueError", "error_value": "v" * 20000, "traceback": traceback}
    )

    assert result.error_name == "ValueError"
    assert result.error_value is not None
    assert len(result.error_value.encode()) <= MAX_ERROR_BYTES
    assert result.traceback is not None
    assert len(result.traceback.encode()) <= MAX_TRACEBACK_BYTES
    assert result.traceback.startswith(TRUNCATED_MARKER)
    assert result.traceback.endswith("ValueError: boom\n")  # the end matters most
    assert ParagraphResult.model_validate_json(result.model_dump_json()) == result


PARAMS = {"inputFolder": "in-1", "jobId": "job-1", "empty": ""}


@pytest.mark.parametrize(
    ("script", "expanded"),
    [
        ("ls ${inputFolder}", "ls in-1"),
        ("${inputFolder=x} ${missing=x} ${missing}", "in-1 x "),
        ("${inputFolder(Input folder)=x} ${missing(Label)=dflt}", "in-1 dflt"),
        ("${empty=x}", ""),  # a value present but empty wins over the default
        ("${mode=fast,fast|slow(Slow)}", "fast"),  # select: the default is before the comma
        ("${checkbox:days=mon|tue,mon|tue|wed}", "mon,tue"),
        ("${checkbox( or ):days=mon|tue,mon|tue|wed}", "mon or tue"),
        ("${checkbox:jobId=a,a|b}", "job-1"),
        ("${password:jobId} ${password:missing}", "job-1 "),
        ("_${inputFolder} hidden", "in-1 hidden"),
        ("$${jobId} note form, $${missing=n}", "job-1 note form, n"),
        ("echo ${HOME:-x} $HOME ${#x}", "echo ${HOME:-x} $HOME "),  # unknown type kept
        ("no forms here", "no forms here"),
    ],
)
def test_simple_forms(script: str, expanded: str) -> None:
    """Dynamic forms expand like Zeppelin's SIMPLE forms, from the job's variables."""
    assert apply_simple_forms(script, PARAMS) == expanded
