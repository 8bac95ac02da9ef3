"""The web UI served by the gateway at ``/`` and ``/ui/…``."""

from adapters.http.ui.routes import JobChanges, RecordReader, WebUi

__all__ = ["JobChanges", "RecordReader", "WebUi"]
