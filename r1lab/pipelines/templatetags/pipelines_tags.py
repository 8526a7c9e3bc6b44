from django import template

from r1lab.pipelines.selectors import format_parameters

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`{{ d|get_item:k }}`: a dict lookup by a variable key."""
    return mapping.get(key, "") if mapping else ""


@register.filter
def parameters(n):
    """`{{ 28096|parameters }}` → 28.1k."""
    return format_parameters(n)
