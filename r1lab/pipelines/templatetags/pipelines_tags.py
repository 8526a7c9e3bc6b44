from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """`{{ d|get_item:k }}`: a dict lookup by a variable key."""
    return mapping.get(key, "") if mapping else ""
