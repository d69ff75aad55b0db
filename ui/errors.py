"""The one place where the UI turns paperchat errors into messages on the page.

Handlers are wrapped with :func:`reports_errors`: a ``PaperchatError`` becomes a
``gr.Error`` toast with the same wording the CLI prints (``str(err)``); anything else is a
bug and propagates (Gradio logs it and shows a generic error).

A streaming handler may pass ``on_error``: then the event does not fail (Gradio would mark
every output as failed and hide the conversation); the message is shown as a warning toast
and ``on_error(message, *args)`` gives the last outputs (the chat shows it inline).
"""

from __future__ import annotations

import functools
import html
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gradio as gr

from core.errors import PaperchatError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
ERROR_SECONDS = 30.0


def message(err: PaperchatError) -> str:
    """The one-line message, exactly as the CLI shows it after 'error: '."""
    return str(err)


def to_gradio(err: PaperchatError) -> gr.Error:
    log.warning("%s", message(err))
    return gr.Error(html.escape(message(err)), duration=ERROR_SECONDS, print_exception=False)


def warn(text: str) -> None:
    """A problem that does not fail the event (an item that failed, arXiv offline, a chat
    answer that could not be made): a warning toast."""
    log.info("%s", text)
    gr.Warning(html.escape(text), duration=ERROR_SECONDS)


def reports_errors(fn: F, on_error: Callable[..., Any] | None = None) -> F:
    """Wrap a handler (function or generator function) so PaperchatError reaches the page."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except PaperchatError as err:
                if on_error is None:
                    raise to_gradio(err) from err
                warn(message(err))
                yield on_error(message(err), *args, **kwargs)
        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PaperchatError as err:
            raise to_gradio(err) from err
    return wrapper  # type: ignore[return-value]
