"""Building notes in tests without writing Zeppelin JSON."""

from schemas.notes import Note, Paragraph


def make_note(*texts: str | tuple[str, bool], default_group: str = "python") -> Note:
    """A note from paragraph texts; ``(text, False)`` makes a disabled paragraph."""
    paragraphs = []
    for index, item in enumerate(texts):
        text, enabled = item if isinstance(item, tuple) else (item, True)
        paragraphs.append(
            Paragraph(index=index, id=f"p{index}", title=None, text=text, enabled=enabled)
        )
    return Note(
        id="2TESTNOTE",
        name="test",
        default_interpreter_group=default_group,
        paragraphs=tuple(paragraphs),
    )
