"""Diagrams: draw a BPMN file's diagram interchange (DI) as one standalone, deterministic SVG.

Pools and lanes (names read top to bottom in their header band), tasks (rounded boxes with a small
user / script / business-rule glyph), events (circles: end events thick, boundary and intermediate
events doubled, timer and message glyphs), gateways (diamonds with ×, + or ○) and sequence flows
(polylines with arrowheads), each labelled with its ``name``. ``highlight`` maps element ids to a CSS
class (``current``, ``overdue``, ``warning``, ``done`` have colours here; any other class name is kept
for the page's own stylesheet) or to a ``#rrggbb`` colour, so a page can show where a case stands.

Only lxml with the entity-free parser of ``engine.spiff``; a file without DI is refused with
``diagram.no_di``. Each element is a ``<g>`` with ``data-id`` and a ``<title>`` holding its name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from lxml import etree

from engine.errors import InvalidInput
from engine.spiff import BPMN_NS, safe_xml_parser

BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
SVG = "http://www.w3.org/2000/svg"
FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'Microsoft YaHei', sans-serif"
MARGIN = 20
HEADER = 30  # width of a pool's or lane's name band
STYLE = f"""
text {{ font-family: {FONT}; fill: #222; }}
.shape {{ fill: #fff; stroke: #222; stroke-width: 1.5; }}
.pool > .shape, .lane > .shape {{ fill: none; stroke: #555; stroke-width: 1.2; }}
.pool > .band {{ fill: #e8eef6; stroke: #555; stroke-width: 1.2; }}
.lane > .band {{ fill: #f5f7fa; stroke: #555; stroke-width: 1.2; }}
.subprocess > .shape {{ fill: #fcfcfc; }}
.end > .shape {{ stroke-width: 4; }}
.glyph {{ fill: none; stroke: #222; stroke-width: 1.2; }}
.solid {{ fill: #222; stroke: #fff; stroke-width: 1; }}
.line {{ fill: none; stroke: #222; stroke-width: 1.5; stroke-linejoin: round; }}
.message-flow > .line {{ stroke-dasharray: 8 5; }}
.association > .line {{ stroke-dasharray: 2 4; }}
.dashed > .shape {{ stroke-dasharray: 5 3; }}
.label {{ font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }}
.name {{ font-size: 12px; }}
.band-text {{ font-size: 14px; font-weight: bold; }}
.current > .shape {{ fill: #e3f0ff; stroke: #1565c0; stroke-width: 3; }}
.current > .line {{ stroke: #1565c0; stroke-width: 3; }}
.overdue > .shape {{ fill: #fdecea; stroke: #c62828; stroke-width: 3; }}
.overdue > .line {{ stroke: #c62828; stroke-width: 3; }}
.warning > .shape {{ fill: #fff8e1; stroke: #f9a825; stroke-width: 3; }}
.warning > .line {{ stroke: #f9a825; stroke-width: 3; }}
.done > .shape {{ fill: #e8f5e9; stroke: #2e7d32; stroke-width: 2; }}
.done > .line {{ stroke: #2e7d32; stroke-width: 2; }}
"""
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,40}$")
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{3}([0-9A-Fa-f]{3})?$")
_TOKENS = re.compile(r"[\u2e80-\uffff]|[^\u2e80-\uffff\s]+|\s+")
_NO_LINE_START = set("，。、）》」』？！：；,.;:!?)")
TASKS = {
    "task",
    "userTask",
    "scriptTask",
    "businessRuleTask",
    "manualTask",
    "serviceTask",
    "sendTask",
    "receiveTask",
    "callActivity",
}
EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAYS = {
    "exclusiveGateway": "×",
    "parallelGateway": "+",
    "inclusiveGateway": "○",
    "eventBasedGateway": "",
    "complexGateway": "*",
}
TASK_LETTERS = {
    "manualTask": "M",
    "serviceTask": "S",
    "sendTask": "✉",
    "receiveTask": "✉",
    "callActivity": "C",
}


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def render_file(path: Path, *, highlight: Mapping[str, str] | None = None) -> str:
    """The SVG of the BPMN file at ``path``."""
    return render_svg(path.read_bytes(), highlight=highlight)


def render_svg(source: bytes, *, highlight: Mapping[str, str] | None = None) -> str:
    """The SVG text of a BPMN document's first diagram; raises ``InvalidInput`` for what it cannot draw."""
    root = _parse(source)
    plane = root.find(f"{{{BPMNDI}}}BPMNDiagram/{{{BPMNDI}}}BPMNPlane")
    shapes = (
        [] if plane is None else [e for e in plane if etree.QName(e).localname in ("BPMNShape", "BPMNEdge")]
    )
    if not shapes:
        raise InvalidInput(
            "diagram.no_di",
            "the BPMN file has no diagram interchange (DI) to draw: open and "
            "save it in Camunda Modeler or bpmn.io to lay it out",
            {},
        )
    model = {el.get("id"): el for el in root.iter(f"{{{BPMN_NS}}}*") if el.get("id")}
    drawn = {e.get("bpmnElement") for e in shapes}
    marks = dict(highlight or {})
    for element_id, mark in marks.items():
        if element_id not in drawn:
            raise InvalidInput(
                "diagram.unknown_element",
                f"'{element_id}' is not drawn in this diagram",
                {"element_id": element_id},
            )
        if not (_CLASS.match(mark) or _COLOUR.match(mark)):
            raise InvalidInput(
                "diagram.bad_highlight",
                f"'{mark}' is neither a CSS class name nor a #rrggbb colour",
                {"element_id": element_id},
            )
    xs: list[float] = []
    ys: list[float] = []
    for el in plane.iter(f"{{{DC}}}Bounds", f"{{{DI}}}waypoint") if plane is not None else []:
        b = _box(el) if etree.QName(el).localname == "Bounds" else Box(_num(el, "x"), _num(el, "y"), 0, 0)
        xs += [b.x, b.x + b.w]
        ys += [b.y, b.y + b.h]
    view = Box(
        min(xs) - MARGIN, min(ys) - MARGIN, max(xs) - min(xs) + 2 * MARGIN, max(ys) - min(ys) + 2 * MARGIN
    )
    svg = etree.Element(
        f"{{{SVG}}}svg",
        nsmap={None: SVG},
        version="1.1",
        width=_f(view.w),
        height=_f(view.h),
        viewBox=" ".join(_f(v) for v in (view.x, view.y, view.w, view.h)),
        style=f"font-family: {FONT}",
    )
    title = next(
        (
            e.get("name")
            for e in root.iter(f"{{{BPMN_NS}}}participant", f"{{{BPMN_NS}}}process")
            if e.get("name")
        ),
        None,
    )
    etree.SubElement(svg, f"{{{SVG}}}title").text = title or "BPMN"
    defs = etree.SubElement(svg, f"{{{SVG}}}defs")
    etree.SubElement(defs, f"{{{SVG}}}style").text = STYLE
    marker = etree.SubElement(
        defs,
        f"{{{SVG}}}marker",
        id="arrow",
        viewBox="0 0 10 10",
        refX="10",
        refY="5",
        markerWidth="9",
        markerHeight="9",
        orient="auto",
        markerUnits="userSpaceOnUse",
    )
    etree.SubElement(marker, f"{{{SVG}}}path", d="M0,0 L10,5 L0,10 z", fill="#222")
    etree.SubElement(
        svg, f"{{{SVG}}}rect", x=_f(view.x), y=_f(view.y), width=_f(view.w), height=_f(view.h), fill="#fff"
    )

    def layer(el: etree._Element) -> int:
        kind = etree.QName(model[el.get("bpmnElement")]).localname if el.get("bpmnElement") in model else ""
        if etree.QName(el).localname == "BPMNEdge":
            return 3
        return {"participant": 0, "lane": 1, "subProcess": 2, "transaction": 2, "boundaryEvent": 5}.get(
            kind, 4
        )

    for di in sorted(shapes, key=layer):  # sorted() is stable: document order within a layer
        element = model.get(di.get("bpmnElement"))
        if element is None:
            continue
        mark = marks.get(element.get("id", ""), "")
        if etree.QName(di).localname == "BPMNEdge":
            _edge(svg, di, element, mark)
        else:
            _shape(svg, di, element, mark)
    text = etree.tostring(svg, encoding="unicode", pretty_print=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text


def _parse(source: bytes) -> etree._Element:
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", source, re.IGNORECASE):
        raise InvalidInput("diagram.doctype", "DOCTYPE and entity declarations are not allowed", {})
    try:
        root = etree.fromstring(source, parser=safe_xml_parser())
    except etree.XMLSyntaxError as err:
        raise InvalidInput(
            "diagram.invalid_xml", f"not well-formed XML: {err.msg}", {"line": err.lineno}
        ) from None
    if root is None or etree.QName(root) != etree.QName(BPMN_NS, "definitions"):
        raise InvalidInput("diagram.not_bpmn", "not a BPMN 2.0 document (root must be bpmn:definitions)", {})
    return root


def _group(parent: etree._Element, element: etree._Element, css: str, mark: str) -> etree._Element:
    classes = [css, "highlight" if _COLOUR.match(mark) else mark]
    g = etree.SubElement(
        parent, f"{{{SVG}}}g", {"class": " ".join(filter(None, classes)), "data-id": element.get("id", "")}
    )
    etree.SubElement(g, f"{{{SVG}}}title").text = element.get("name") or element.get("id", "")
    return g


def _colour(g: etree._Element, mark: str, first: etree._Element) -> None:
    """A ``#rrggbb`` highlight paints the element's outline (classes are left to the stylesheet)."""
    if _COLOUR.match(mark):
        first.set("style", f"stroke: {mark}; stroke-width: 3")


def _shape(svg: etree._Element, di: etree._Element, element: etree._Element, mark: str) -> None:
    bounds = di.find(f"{{{DC}}}Bounds")
    if bounds is None:
        return
    box, kind, name = _box(bounds), etree.QName(element).localname, element.get("name") or ""
    label = di.find(f"{{{BPMNDI}}}BPMNLabel/{{{DC}}}Bounds")
    label_box = _box(label) if label is not None else None
    if kind in ("participant", "lane"):
        g = _group(svg, element, "pool" if kind == "participant" else "lane", mark)
        horizontal = di.get("isHorizontal", "true") != "false"
        band = Box(box.x, box.y, HEADER, box.h) if horizontal else Box(box.x, box.y, box.w, HEADER)
        _colour(g, mark, _rect(g, box, "shape"))
        _rect(g, band, "band")
        if horizontal:
            _vertical_text(g, name, band)
        else:
            _text(g, [name], band.cx, band.cy, "band-text")
    elif kind in TASKS or kind in ("subProcess", "transaction", "adHocSubProcess"):
        sub = kind not in TASKS
        g = _group(svg, element, "subprocess" if sub else f"task {kind}", mark)
        _colour(g, mark, _rect(g, box, "shape", radius=10))
        if sub:
            _text(
                g, _wrap(name, box.w - 20, 12), box.x + 10, box.y + 18, "name", anchor="start", middle=False
            )
        else:
            size = 12.0
            lines = _wrap(name, box.w - 12, size)
            while len(lines) * size * 1.25 > box.h - 18 and size > 9:
                size -= 1
                lines = _wrap(name, box.w - 12, size)
            _text(g, lines, box.cx, box.cy + 4, "name", size=size)
            _task_glyph(g, kind, box)
        loop = element.find(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics")
        if loop is not None:
            x, y = box.cx, box.y + box.h - 16
            sequential = loop.get("isSequential") == "true"
            for i in (-4, 0, 4):
                d = f"M{_f(x - 6)},{_f(y + 6 + i)} h12" if sequential else f"M{_f(x + i)},{_f(y)} v12"
                etree.SubElement(g, f"{{{SVG}}}path", {"class": "glyph", "d": d, "style": "stroke-width: 2"})
    elif kind in EVENTS:
        interrupting = element.get("cancelActivity", "true") != "false"
        css = "event end" if kind == "endEvent" else "event" + ("" if interrupting else " dashed")
        g = _group(svg, element, css, mark)
        r = box.w / 2
        _colour(g, mark, _circle(g, box.cx, box.cy, r, "shape"))
        if kind in ("intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"):
            _circle(g, box.cx, box.cy, r - 3, "glyph")
        _event_glyph(g, element, box, solid=kind in ("endEvent", "intermediateThrowEvent"))
        _label(g, name, label_box or Box(box.cx - 50, box.y + box.h + 4, 100, 14))
    elif kind in GATEWAYS:
        g = _group(svg, element, "gateway", mark)
        points = [(box.cx, box.y), (box.x + box.w, box.cy), (box.cx, box.y + box.h), (box.x, box.cy)]
        _colour(
            g,
            mark,
            etree.SubElement(
                g,
                f"{{{SVG}}}polygon",
                {"class": "shape", "points": " ".join(f"{_f(x)},{_f(y)}" for x, y in points)},
            ),
        )
        symbol = GATEWAYS[kind]
        if symbol == "○":
            _circle(g, box.cx, box.cy, box.w / 4.5, "glyph").set("style", "stroke-width: 2.5")
        elif symbol:
            _text(g, [symbol], box.cx, box.cy + 9, "name", size=28 if symbol == "×" else 30)
        else:
            _circle(g, box.cx, box.cy, box.w / 4, "glyph")
            _circle(g, box.cx, box.cy, box.w / 4 - 3, "glyph")
        _label(g, name, label_box or Box(box.cx - 50, box.y - 18, 100, 14))
    else:
        g = _group(svg, element, f"other {kind}", mark)
        _colour(g, mark, _rect(g, box, "shape"))
        _label(g, name, label_box or box)


def _edge(svg: etree._Element, di: etree._Element, element: etree._Element, mark: str) -> None:
    points = [(_num(w, "x"), _num(w, "y")) for w in di.iter(f"{{{DI}}}waypoint")]
    if len(points) < 2:
        return
    kind = etree.QName(element).localname
    css = {"messageFlow": "message-flow", "association": "association"}.get(kind, "sequence-flow")
    g = _group(svg, element, css, mark)
    line = etree.SubElement(
        g, f"{{{SVG}}}polyline", {"class": "line", "points": " ".join(f"{_f(x)},{_f(y)}" for x, y in points)}
    )
    if kind != "association":
        line.set("marker-end", "url(#arrow)")
    _colour(g, mark, line)
    name = element.get("name") or ""
    label = di.find(f"{{{BPMNDI}}}BPMNLabel/{{{DC}}}Bounds")
    if label is not None:
        _label(g, name, _box(label))
    elif name:
        (x1, y1), (x2, y2) = max(
            pairwise(points), key=lambda s: abs(s[1][0] - s[0][0]) + abs(s[1][1] - s[0][1])
        )
        _text(g, [name], (x1 + x2) / 2, (y1 + y2) / 2 - 5, "label")


def _task_glyph(g: etree._Element, kind: str, box: Box) -> None:
    x, y = box.x + 7, box.y + 6
    path = {
        "userTask": f"M{_f(x + 7)},{_f(y + 6)} m-3.5,0 a3.5,3.5 0 1,0 7,0 a3.5,3.5 0 1,0 -7,0 "
        f"M{_f(x)},{_f(y + 17)} c0,-7 14,-7 14,0 z",
        "scriptTask": f"M{_f(x + 2)},{_f(y)} h10 c-3,4 3,8 0,16 h-10 c3,-8 -3,-12 0,-16 z "
        f"M{_f(x + 3)},{_f(y + 5)} h6 M{_f(x + 4)},{_f(y + 9)} h6 M{_f(x + 4)},{_f(y + 13)} h5",
        "businessRuleTask": f"M{_f(x)},{_f(y + 2)} h16 v12 h-16 z M{_f(x)},{_f(y + 6)} h16 "
        f"M{_f(x + 5)},{_f(y + 6)} v8 M{_f(x)},{_f(y + 10)} h16",
    }.get(kind)
    if path:
        etree.SubElement(g, f"{{{SVG}}}path", {"class": "glyph", "d": path})
    elif kind in TASK_LETTERS:
        _text(g, [TASK_LETTERS[kind]], x + 6, y + 12, "label", anchor="start")


def _event_glyph(g: etree._Element, element: etree._Element, box: Box, *, solid: bool) -> None:
    definition = next((c for c in element if etree.QName(c).localname.endswith("EventDefinition")), None)
    if definition is None:
        return
    kind = etree.QName(definition).localname.removesuffix("EventDefinition")
    cx, cy = box.cx, box.cy
    if kind == "timer":
        _circle(g, cx, cy, box.w / 2 - 7, "glyph")
        etree.SubElement(
            g,
            f"{{{SVG}}}path",
            {"class": "glyph", "d": f"M{_f(cx)},{_f(cy - 7)} V{_f(cy)} L{_f(cx + 5)},{_f(cy + 3)}"},
        )
    elif kind == "message":
        css = "solid" if solid else "glyph"
        etree.SubElement(
            g, f"{{{SVG}}}path", {"class": css, "d": f"M{_f(cx - 8)},{_f(cy - 5.5)} h16 v11 h-16 z"}
        )
        flap = f"M{_f(cx - 8)},{_f(cy - 5.5)} L{_f(cx)},{_f(cy + 1)} L{_f(cx + 8)},{_f(cy - 5.5)}"
        etree.SubElement(g, f"{{{SVG}}}path", {"class": "glyph", "d": flap}).set(
            "style", "stroke: #fff" if solid else "stroke: #222"
        )
    else:
        _text(g, [kind[:1].upper()], cx, cy + 5, "name", size=13)


def _label(g: etree._Element, name: str, box: Box) -> None:
    if name:
        lines = _wrap(name, max(box.w, 44) + 4, 11)
        _text(g, lines, box.cx, box.y + 11, "label", middle=False)


def _vertical_text(g: etree._Element, name: str, band: Box) -> None:
    """A name read top to bottom, one upright character per line (CJK style), centred in the band."""
    size, step = 14.0, 16.0
    if len(name) * step > band.h - 8:
        step = max(9.0, (band.h - 8) / max(len(name), 1))
        size = step - 1
    text = etree.SubElement(
        g,
        f"{{{SVG}}}text",
        {"class": "band-text", "text-anchor": "middle", "style": f"font-size: {_f(size)}px"},
    )
    top = band.cy - step * len(name) / 2 + size * 0.85
    for i, char in enumerate(name):
        etree.SubElement(text, f"{{{SVG}}}tspan", x=_f(band.cx), y=_f(top + i * step)).text = char


def _text(
    g: etree._Element,
    lines: list[str],
    x: float,
    y: float,
    css: str,
    *,
    size: float | None = None,
    anchor: str = "middle",
    middle: bool = True,
) -> None:
    """Lines of text at (x, y): ``middle`` centres the block vertically on y, else y is the first baseline."""
    if not lines:
        return
    height = size or (11 if css == "label" else 12)
    first = y - (len(lines) - 1) * height * 1.25 / 2 if middle else y
    attrs = {"class": css, "text-anchor": anchor}
    if size:
        attrs["style"] = f"font-size: {_f(size)}px"
    text = etree.SubElement(g, f"{{{SVG}}}text", attrs)
    for i, line in enumerate(lines):
        etree.SubElement(text, f"{{{SVG}}}tspan", x=_f(x), y=_f(first + i * height * 1.25)).text = line


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Greedy line breaking: CJK characters one by one, Latin words whole, no line opening with ，。）？."""
    lines: list[str] = []
    current, used = "", 0.0
    for token in _TOKENS.findall(text.strip()):
        w = _width(token, size)
        if current and used + w > width and not token.isspace() and token[0] not in _NO_LINE_START:
            lines.append(current.rstrip())
            current, used = "", 0.0
            if token.isspace():
                continue
        current += token
        used += w
    if current.strip():
        lines.append(current.rstrip())
    return lines


def _width(text: str, size: float) -> float:
    return sum(size if ord(c) >= 0x2E80 else size * 0.56 for c in text)


def _rect(g: etree._Element, box: Box, css: str, radius: float = 0) -> etree._Element:
    attrs = {"class": css, "x": _f(box.x), "y": _f(box.y), "width": _f(box.w), "height": _f(box.h)}
    if radius:
        attrs["rx"] = _f(radius)
    return etree.SubElement(g, f"{{{SVG}}}rect", attrs)


def _circle(g: etree._Element, cx: float, cy: float, r: float, css: str) -> etree._Element:
    return etree.SubElement(g, f"{{{SVG}}}circle", {"class": css, "cx": _f(cx), "cy": _f(cy), "r": _f(r)})


def _box(el: etree._Element) -> Box:
    return Box(_num(el, "x"), _num(el, "y"), _num(el, "width"), _num(el, "height"))


def _num(el: etree._Element, name: str) -> float:
    try:
        return float(el.get(name) or 0)
    except ValueError:
        raise InvalidInput(
            "diagram.bad_bounds",
            f"{name}='{el.get(name)}' is not a number (line {el.sourceline})",
            {"line": el.sourceline},
        ) from None


def _f(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
