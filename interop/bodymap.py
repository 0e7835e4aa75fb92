"""A small front/back body outline as an SVG image, the lesion's region shaded (for the PDF report).

The regions follow ``cases.models.AnatomicalSite`` and the portal's body map
(templates/portal/_body_map.html); fills are greys, so the map prints in
black and white.
"""

from xml.sax.saxutils import escape

from cases.models import AnatomicalSite

S = AnatomicalSite
# (site, SVG element) in drawing order.
SHAPES = [
    (S.HEAD_NECK, '<circle cx="55" cy="22" r="16"/>'),
    (S.HEAD_NECK, '<rect x="48" y="37" width="14" height="8"/>'),
    (S.ANTERIOR_TORSO, '<rect x="37" y="46" width="36" height="64" rx="4"/>'),
    (S.LATERAL_TORSO, '<rect x="29" y="50" width="8" height="56"/>'),
    (S.LATERAL_TORSO, '<rect x="73" y="50" width="8" height="56"/>'),
    (S.ORAL_GENITAL, '<rect x="45" y="110" width="20" height="14" rx="3"/>'),
    (S.ORAL_GENITAL, '<circle cx="55" cy="29" r="3"/>'),
    (S.UPPER_EXTREMITY, '<rect x="14" y="48" width="13" height="72" rx="5"/>'),
    (S.UPPER_EXTREMITY, '<rect x="83" y="48" width="13" height="72" rx="5"/>'),
    (S.UPPER_EXTREMITY, '<rect x="174" y="48" width="13" height="72" rx="5"/>'),
    (S.UPPER_EXTREMITY, '<rect x="243" y="48" width="13" height="72" rx="5"/>'),
    (S.LOWER_EXTREMITY, '<rect x="37" y="126" width="15" height="92" rx="5"/>'),
    (S.LOWER_EXTREMITY, '<rect x="58" y="126" width="15" height="92" rx="5"/>'),
    (S.LOWER_EXTREMITY, '<rect x="197" y="112" width="15" height="106" rx="5"/>'),
    (S.LOWER_EXTREMITY, '<rect x="218" y="112" width="15" height="106" rx="5"/>'),
    (S.PALMS_SOLES, '<ellipse cx="20" cy="127" rx="7" ry="6"/>'),
    (S.PALMS_SOLES, '<ellipse cx="90" cy="127" rx="7" ry="6"/>'),
    (S.PALMS_SOLES, '<ellipse cx="204" cy="226" rx="9" ry="5"/>'),
    (S.PALMS_SOLES, '<ellipse cx="226" cy="226" rx="9" ry="5"/>'),
    (S.HEAD_NECK, '<circle cx="215" cy="22" r="16"/>'),
    (S.HEAD_NECK, '<rect x="208" y="37" width="14" height="8"/>'),
    (S.POSTERIOR_TORSO, '<rect x="189" y="46" width="52" height="64" rx="4"/>'),
]
MARKED = 'fill="#555555" stroke="#000000" stroke-width="2"'
PLAIN = 'fill="#eeeeee" stroke="#777777" stroke-width="1"'


def body_map_svg(site: str) -> str:
    shapes = []
    for region, element in SHAPES:
        attributes = MARKED if region == site else PLAIN
        shapes.append(element[:-2] + f" {attributes}/>")
    label = escape(AnatomicalSite(site).label if site in AnatomicalSite.values else site)
    unknown = (
        '<text x="150" y="246" text-anchor="middle" font-size="11">site unknown</text>' if site == S.UNKNOWN else ""
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 260" width="300" height="260">'
        f"<title>Body map: {label}</title>"
        + "".join(shapes)
        + '<text x="55" y="238" text-anchor="middle" font-size="11" font-family="DejaVu Sans">Front</text>'
        '<text x="215" y="238" text-anchor="middle" font-size="11" font-family="DejaVu Sans">Back</text>'
        + unknown
        + "</svg>"
    )
