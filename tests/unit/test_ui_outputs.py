"""Paragraph outputs split into text, %table and %html parts as Zeppelin's display reads them."""

from adapters.http.ui.outputs import MAX_TABLE_ROWS, output_parts


def test_plain_output_is_one_text_part() -> None:
    """Output without a display marker is text, kept as it is."""
    assert output_parts("python", "a\nb\n") == [{"type": "TEXT", "data": "a\nb\n"}]


def test_table_marker_gives_columns_and_rows() -> None:
    """%table data is tab-separated with a header row; text before it stays text."""
    parts = output_parts("python", "loaded\n%table name\tsize\nx\t1\ny\t2\n")
    assert parts == [
        {"type": "TEXT", "data": "loaded\n"},
        {"type": "TABLE", "columns": ["name", "size"], "rows": [["x", "1"], ["y", "2"]]},
    ]


def test_markers_switch_types_in_order() -> None:
    """%html then %text: each part has the type of the marker before it."""
    parts = output_parts("python", "%html <b>hi</b>\n%text after\n")
    assert parts == [
        {"type": "HTML", "data": "<b>hi</b>\n"},
        {"type": "TEXT", "data": "after\n"},
    ]


def test_marker_only_counts_at_a_line_start() -> None:
    """A %table inside a line is ordinary text."""
    assert output_parts("python", "100 %table of it\n") == [
        {"type": "TEXT", "data": "100 %table of it\n"}
    ]


def test_html_interpreter_output_is_html_as_a_whole() -> None:
    """%html and %angular paragraphs are HTML even without a marker; empty output has no part."""
    assert output_parts("html", "<p>x</p>") == [{"type": "HTML", "data": "<p>x</p>"}]
    assert output_parts("angular", "<p>{{x}}</p>")[0]["type"] == "HTML"
    assert output_parts("html", "  \n") == []


def test_huge_tables_are_cut_with_a_count() -> None:
    """Rows beyond the limit are counted, not sent."""
    rows = "".join(f"{i}\n" for i in range(MAX_TABLE_ROWS + 5))
    [part] = output_parts("python", f"%table n\n{rows}")
    assert len(part["rows"]) == MAX_TABLE_ROWS
    assert part["omittedRows"] == 5
