"""Rich display in Jupyter without a lower stage importing the report, and progress bars.

``CheckResult``, ``Suite`` and ``Incident`` define ``_repr_html_`` as :func:`html_of`,
which asks the renderer registered for the object's class. The report stage registers
them (:mod:`watchkeeper.report.notebook`, imported by ``import watchkeeper`` on first use
of a name that gives such objects), so the stages below it keep importing nothing above
them. With no renderer registered, ``_repr_html_`` returns None and Jupyter shows the
plain ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_RENDERERS: dict[type, Callable[[Any], str]] = {}


def register_html(cls: type, render: Callable[[Any], str]) -> None:
    """Render instances of ``cls`` (and its subclasses) as HTML with ``render``."""
    _RENDERERS[cls] = render


def html_of(obj: Any) -> str | None:
    """The HTML of ``obj`` from the renderer of its class, or None when none is registered.

    >>> class Note:
    ...     def __init__(self, text): self.text = text
    >>> html_of(Note("hi")) is None
    True
    >>> register_html(Note, lambda n: f"<p>{n.text}</p>")
    >>> html_of(Note("hi"))
    '<p>hi</p>'
    """
    for cls in type(obj).__mro__:
        render = _RENDERERS.get(cls)
        if render is not None:
            return render(obj)
    return None


def progress_bar(iterable: Any = None, *, progress: bool | None, **options: Any) -> Any:
    """A tqdm progress bar: shown when ``progress`` is True, never when False, and when it
    is None only if stderr is a terminal; the notebook widget in Jupyter. tqdm's automatic
    choice (``tqdm.auto``, which imports asyncio and ssl: ~45 ms of every start) is
    imported only for a bar that may show.

    >>> list(progress_bar(range(3), progress=False))
    [0, 1, 2]
    """
    if progress is False:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, disable=None if progress is None else not progress, **options)
