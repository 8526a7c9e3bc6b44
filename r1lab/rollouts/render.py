"""A completion card as HTML, built in Python because a step page holds 1,024 of them: the
Django template engine took ~1.7 s for that (benchmarks/rollouts.py), this takes a few ms.

Every piece of text that goes in, model output above all, passes through `escape()`; the only
unescaped strings are the literal markup below and our own css class names. The result is a
SafeString (it is HTML we made), so templates print it without `|safe`. tests/rollouts and
tests/e2e/test_rollouts.py check a `<script>` completion stays text.
"""
from __future__ import annotations

from functools import lru_cache
from html import escape  # what django.utils.html.escape calls, without the SafeString per piece
from urllib.parse import quote

from django.utils.safestring import SafeString, mark_safe

from r1lab.rollouts.text import segments


@lru_cache(maxsize=256)
def _dt(name: str) -> str:
    """The opening of a reward component's cell; a page repeats a handful of names a thousand times."""
    return f"<div><dt>{escape(name)}</dt><dd>"


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def completion_html(c, *, send: bool = False, show_index: bool = True) -> SafeString:
    """The card of a rollouts.selectors.CompletionView (a Sample or an RSRow inside)."""
    o = c.obj
    classes = f"completion adv-{c.adv_sign}" + ("" if c.matched else " dim") + (" long collapsed" if c.long else "")
    parts = [f'<article class="{classes}" id="s{o.pk}" data-sample="{o.pk}"><header class="c-head">']
    if show_index and hasattr(o, "index"):
        parts.append(f'<span class="c-idx">#{o.index}</span>')
    parts.append(f'<span class="c-reward" title="total reward">R {_num(o.reward)}</span>')
    adv = getattr(o, "advantage", None)
    if adv is not None:
        parts.append(f'<span class="c-adv adv-{c.adv_sign}" title="advantage" data-advantage="{adv!r}">A {_num(adv)}</span>')
    parts.append(f'<span class="c-len" title="length">len {int(o.length)}</span>')
    if o.truncated:
        parts.append('<span class="badge flag-trunc">truncated</span>')
    if o.correct is True:
        parts.append('<span class="badge flag-ok">correct</span>')
    elif o.correct is False:
        parts.append('<span class="badge flag-bad">incorrect</span>')
    if o.reflection_count:
        n = int(o.reflection_count)
        parts.append(f'<span class="badge flag-refl">{n} reflection{"" if n == 1 else "s"}</span>')
    if o.language_mixed:
        parts.append('<span class="badge flag-mixed">language-mixed</span>')
    parts.append("</header>")
    if c.components:
        parts.append('<dl class="components">')
        rewards = o.rewards or {}
        parts.extend(f"{_dt(name)}{_num(rewards.get(name))}</dd></div>" for name in c.components)
        parts.append("</dl>")
    parts.append('<pre class="completion-text" data-text>')
    parts.extend(f'<span class="{cls}">{escape(text)}</span>' for cls, text in segments(o.completion, o.reflection_count))
    parts.append('</pre><footer class="c-actions">')
    if c.long:
        parts.append('<button type="button" class="link" data-show-all>show all</button>')
    parts.append('<button type="button" class="link" data-copy>copy</button>')
    if send:
        parts.append(f'<button class="link send" name="sample" value="{o.pk}" data-send>Send to curation</button>')
    parts.append("</footer></article>")
    return mark_safe("".join(parts))  # noqa: S308 - every inserted text is escape()d above


def attach_cards(views, *, send: bool = False, show_index: bool = True) -> None:
    """Set `.card` (the HTML above) on each CompletionView, for templates to print as {{ c.card }}."""
    for c in views:
        c.card = completion_html(c, send=send, show_index=show_index)


def group_html(g, *, prompt_url: str, send: bool = False) -> SafeString:
    """A GRPO group (rollouts.selectors.GroupView): its header, prompt and its G completion cards.
    `prompt_url` is the prompt-across-steps URL, to which `?prompt_id=` is added."""
    parts = [f'<section class="card group{" zero-std" if g.zero_std else ""}" id="g{g.group}" data-group="{g.group}">',
             f'<header class="g-head"><h2>group {g.group}</h2><span>reward {g.reward_mean:.3f} ± {g.reward_std:.3f}</span>']
    if g.graded:
        parts.append(f"<span>{g.correct}/{g.graded} correct</span>")
    parts.append(f"<span>G = {g.size}</span>")
    if g.zero_std:
        parts.append('<span class="badge flag-zstd" title="all rewards equal: no learning signal">zero variance</span>')
    if g.prompt_id:
        parts.append(f'<a href="{escape(prompt_url)}?prompt_id={escape(quote(g.prompt_id, safe=""))}">prompt {escape(g.prompt_id)} across steps</a>')
    parts.append('<button type="button" class="link" data-copy-prompt>copy prompt</button></header>')
    parts.append(f'<pre class="prompt" data-prompt>{escape(g.prompt)}</pre><div class="completions">')
    parts.extend(completion_html(c, send=send) for c in g.completions)
    parts.append("</div></section>")
    return mark_safe("".join(parts))  # noqa: S308 - every inserted text is escape()d above
