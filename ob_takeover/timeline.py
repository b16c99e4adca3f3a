"""A takeover's timeline as an SVG picture, from OCP's task JSON: one row per subtask and node, a bar from
its start to its finish, coloured by status, on a time axis. No dependency beyond the standard library."""

from __future__ import annotations

from datetime import datetime
from html import escape

from contracts.task_view import SubtaskView, TaskView

COLOURS = {
    "SUCCESSFUL": "#3f9c35",
    "FAILED": "#d0342c",
    "RUNNING": "#2b7bb9",
    "CANCELING": "#e08a00",
    "PENDING": "#b9b9b9",
    "READY": "#b9b9b9",
}
ROW, LABEL, WIDTH, TOP = 18, 330, 1100, 46


def _moment(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _label(subtask: SubtaskView) -> str:
    return f"{subtask.name} · {subtask.node}" if subtask.node else subtask.name


def render_timeline(task: TaskView) -> str:
    """The SVG document of `task`'s timeline (subtasks that never started are listed without a bar)."""
    spans = [(s, _moment(s.start_time), _moment(s.finish_time)) for s in task.subtasks]
    starts = [start for _, start, _ in spans if start is not None]
    begin = min(starts, default=0.0)
    end = max([finish for _, _, finish in spans if finish is not None] + starts + [begin + 1])
    scale = (WIDTH - LABEL - 20) / max(end - begin, 1e-3)
    height = TOP + ROW * len(spans) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(task.name)} — task {task.id}, '
        f"{escape(task.status.value)}, {end - begin:.1f} s</text>",
    ]
    # The time axis: ten ticks.
    for tick in range(11):
        seconds = (end - begin) * tick / 10
        x = LABEL + seconds * scale
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{height - 24}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP - 12}" text-anchor="middle" fill="#666666">{seconds:.1f}s</text>')
    for row, (subtask, start, finish) in enumerate(spans):
        y = TOP + row * ROW
        colour = COLOURS.get(subtask.status.value, "#888888")
        parts.append(f'<text x="10" y="{y + 12}">{escape(_label(subtask))[:60]}</text>')
        if start is None:
            continue
        stop = finish if finish is not None else end
        x, width = LABEL + (start - begin) * scale, max((stop - start) * scale, 2.0)
        title = f"{_label(subtask)}: {subtask.status.value}, {stop - start:.2f} s"
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW - 6}" rx="2" fill="{colour}">'
            f"<title>{escape(title)}</title></rect>"
        )
    legend_y = height - 10
    for index, (status, colour) in enumerate(list(COLOURS.items())[:4]):
        x = LABEL + index * 110
        parts.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{legend_y}">{status}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
