"""axe-core in the browser tests: the vendored engine (tests/portal/vendor/), run on a page.

``add_axe(context)`` makes ``window.axe`` exist on every page of a browser
context (an init script: the page's Content-Security-Policy does not apply
to it, and the CSP stays as strict as in production). ``blocking_problems``
returns readable lines for every serious or critical axe violation, and for
every aria-describedby that names an id the page does not have.
"""

from pathlib import Path

AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
BLOCKING = ("serious", "critical")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.slice(0, 4).map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
    count: v.nodes.length,
  }));
}"""

_MISSING_DESCRIBEDBY = """() => Array.from(document.querySelectorAll("[aria-describedby]")).flatMap((el) =>
  el.getAttribute("aria-describedby").split(/\\s+/).filter((id) => id && !document.getElementById(id))
    .map((id) => `${el.tagName.toLowerCase()}#${el.id || "?"} names missing id "${id}"`))"""


def add_axe(context):
    context.add_init_script(path=str(AXE_JS))


def blocking_problems(page, where):
    """Readable lines, one per problem, for the page now shown; empty if none."""
    lines = []
    for violation in page.evaluate(_RUN):
        if violation["impact"] not in BLOCKING:
            continue
        lines.append(
            f"{where}: [{violation['impact']}] {violation['id']}: {violation['help']} "
            f"({violation['count']} element(s); {violation['helpUrl']})"
        )
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    at {node['target']}: {summary[:300]}")
    for problem in page.evaluate(_MISSING_DESCRIBEDBY):
        lines.append(f"{where}: [serious] aria-describedby: {problem}")
    return lines
