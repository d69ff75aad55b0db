"""The error hierarchy. Each error carries a one-line message that says what
happened and what to do; the CLI and the UI turn it into output in one place each."""

from __future__ import annotations


class PaperchatError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}".strip())


class ConfigError(PaperchatError):
    """Invalid settings or configuration file."""

    exit_code = 2


class UsageError(PaperchatError):
    """A command-line option has a malformed value."""

    exit_code = 2


class LibraryError(PaperchatError):
    """The library on disk cannot be used as asked."""


class EmptyLibraryError(LibraryError):
    def __init__(self) -> None:
        super().__init__(
            "The library is empty.", "Run `paperchat ingest` first to add papers."
        )


class LibraryMismatchError(LibraryError):
    """The library was built with another embedding model or chunking."""


class LibraryBusyError(LibraryError):
    """Another process is writing to the library."""


class DiskFullError(LibraryError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"No space left on the disk holding {path}; nothing was changed.",
            "Free some space and run the command again.",
        )


class IngestError(PaperchatError):
    """One item could not be ingested; other items go on."""


class SourceNotFoundError(IngestError):
    """An unknown arXiv id, a missing file, a 404."""


class NetworkError(IngestError):
    """arXiv or a PDF URL cannot be reached."""


class PdfError(IngestError):
    """A PDF that cannot be read: corrupt, encrypted, no text layer, not a PDF."""


class LLMError(PaperchatError):
    """The model server failed."""


class PromptTooLongError(LLMError):
    """The question (with its prompt) leaves no room in the served model's context."""


class LLMUnavailableError(LLMError):
    def __init__(self, url: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"The model server at {url} is not reachable{extra}.",
            "Start it with `paperchat serve-llm` or set PAPERCHAT_LLM_BASE_URL.",
        )
        self.url = url
        self.detail = detail


class EvalError(PaperchatError):
    """An evaluation cannot run as asked: a bad question file, output folder or options."""

    exit_code = 2
