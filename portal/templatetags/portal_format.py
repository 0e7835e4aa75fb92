"""How the portal writes model numbers: two decimals, but never a rounded certainty.

A probability of 0.996 printed as "1.00" reads as certainty the model does
not have; it is shown as ">0.99" (and 0.004 as "<0.01").
"""

from django import template

register = template.Library()


@register.filter
def probability(value):
    if value is None or value == "":
        return "—"
    value = float(value)
    if value > 0.99:
        return ">0.99"
    if value < 0.01:
        return "<0.01"
    return f"{value:.2f}"
