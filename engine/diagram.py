"""Diagrams: draw a BPMN file's diagram interchange (DI) as one standalone, deterministic SVG.

Pools and lanes (names read top to bottom in their header band), tasks (rounded boxes with a small
user / script / business-rule glyph), events (circles: end events thick, boundary and intermediate
events doubled, timer and message glyphs), gateways (diamonds with ×, + or ○) and sequence flows
(polylines with arrowheads), each labelled with its ``name``. ``highlight`` maps element ids to a CSS
class (``current``, ``overdue``, ``warning``, ``done`` have colours here; any other class name is kept
for the page's own stylesheet) or to a ``#rrggbb`` colour, so a page can show where a case stands.

Only lxml with the entity-free parser of ``engine.spiff``; a file without DI is refused with
``diagram.no_di``. Each element is a ``<g>`` with ``data-id`` and a ``<title>`` holding its name;
outside labels (events, gateways, flows) are drawn last, in ``<g class="labels">``, to stay readable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TypeAlias

from lxml import etree

from engine.errors import InvalidInput
from engine.spiff import BPMN_NS, safe_xml_parser

BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
SVG = "http://www.w3.org/2000/svg"
FONT = "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'Microsoft YaHei', sans-serif"
MARGIN, HEADER = 20, 30  # around the picture; width of a pool's or lane's name band
HIGHLIGHTS = "current #1565c0 #e3f0ff, overdue #c62828 #fdecea, warning #f9a825 #fff8e1, done #2e7d32 #e8f5e9"
STYLE = f"""
text {{ font-family: {FONT}; fill: #222; }} .name {{ font-size: 12px; }}
.band-text {{ font-size: 14px; font-weight: bold; }}
.label {{ font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }}
.shape {{ fill: #fff; stroke: #222; stroke-width: 1.5; }} .subprocess > .shape {{ fill: #fcfcfc; }}
.pool > .shape, .lane > .shape {{ fill: none; stroke: #555; stroke-width: 1.2; }}
.pool > .band {{ fill: #e8eef6; stroke: #555; stroke-width: 1.2; }}
.lane > .band {{ fill: #f5f7fa; stroke: #555; stroke-width: 1.2; }}
.end > .shape {{ stroke-width: 4; }} .dashed > .shape {{ stroke-dasharray: 5 3; }}
.glyph {{ fill: none; stroke: #222; stroke-width: 1.2; }} .solid {{ fill: #222; stroke: #fff; }}
.line {{ fill: none; stroke: #222; stroke-width: 1.5; stroke-linejoin: round; }}
.message-flow > .line {{ stroke-dasharray: 8 5; }} .association > .line {{ stroke-dasharray: 2 4; }}
"""
STYLE += "".join(
    f".{c} > .shape {{ fill: {fill}; stroke: {s}; stroke-width: 3; }} .{c} > .line {{ stroke: {s}; }}\n"
    for c, s, fill in (mark.split() for mark in HIGHLIGHTS.split(","))
)
_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,40}$")
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{3}([0-9A-Fa-f]{3})?$")
_TOKENS = re.compile(r"（[^（）]{1,8}）|[\u2e80-\uffff]|[^\u2e80-\uffff\s]+|\s+")
_NO_LINE_START, _NO_LINE_END = set("，。、）》」』？！：；,.;:!?)"), set("（《「『(")
TASK_LETTERS = dict(task="", userTask="", scriptTask="", businessRuleTask="", manualTask="M", serviceTask="S")
TASK_LETTERS.update(sendTask="✉", receiveTask="✉", callActivity="C")
TASK_GLYPHS = {  # drawn at the top-left corner of the task
    "userTask": "M3.5,6 a3.5,3.5 0 1,0 7,0 a3.5,3.5 0 1,0 -7,0 M0,17 c0,-7 14,-7 14,0 z",
    "scriptTask": "M2,0 h10 c-3,4 3,8 0,16 h-10 c3,-8 -3,-12 0,-16 z M3,5 h6 M4,9 h6 M4,13 h5",
    "businessRuleTask": "M0,2 h16 v12 h-16 z M0,6 h16 M5,6 v8 M0,10 h16",
}
SUBPROCESSES = {"subProcess", "transaction", "adHocSubProcess"}
EVENTS = {"startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"}
GATEWAYS = dict(exclusiveGateway="×", parallelGateway="+", inclusiveGateway="○", complexGateway="*")
GATEWAYS.update(eventBasedGateway="")
LAYERS = {"participant": 0, "lane": 1, "subProcess": 2, "transaction": 2, "boundaryEvent": 5}
Element: TypeAlias = etree._Element


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
    shapes = [e for e in (plane if plane is not None else []) if _local(e) in ("BPMNShape", "BPMNEdge")]
    if plane is None or not shapes:
        hint = "lay it out in Camunda Modeler or bpmn.io"
        raise InvalidInput(
            "diagram.no_di", f"the BPMN file has no diagram interchange (DI) to draw: {hint}", {}
        )
    model = {el.get("id"): el for el in root.iter(f"{{{BPMN_NS}}}*") if el.get("id")}
    marks = dict(highlight or {})
    _check_marks(marks, {e.get("bpmnElement") for e in shapes})
    xs: list[float] = []
    ys: list[float] = []
    for el in plane.iter(f"{{{DC}}}Bounds", f"{{{DI}}}waypoint"):
        b = _box(el) if _local(el) == "Bounds" else Box(_num(el, "x"), _num(el, "y"), 0, 0)
        xs += [b.x, b.x + b.w]
        ys += [b.y, b.y + b.h]
    x, y = min(xs) - MARGIN, min(ys) - MARGIN
    w, h = max(xs) + MARGIN - x, max(ys) + MARGIN - y
    svg = etree.Element(f"{{{SVG}}}svg", nsmap={None: SVG}, version="1.1", width=_f(w), height=_f(h))
    svg.set("viewBox", " ".join(_f(v) for v in (x, y, w, h)))
    svg.set("style", f"font-family: {FONT}")
    names = [e.get("name") for e in root.iter(f"{{{BPMN_NS}}}participant", f"{{{BPMN_NS}}}process")]
    _el(svg, "title").text = next((n for n in names if n), "BPMN")
    defs = _el(svg, "defs")
    _el(defs, "style").text = STYLE
    marker = _el(defs, "marker", id="arrow", viewBox="0 0 10 10", refX="10", refY="5", orient="auto")
    marker.attrib.update({"markerWidth": "9", "markerHeight": "9", "markerUnits": "userSpaceOnUse"})
    _el(marker, "path", d="M0,0 L10,5 L0,10 z", fill="#222")
    _rect(svg, Box(x, y, w, h), "background").set("fill", "#fff")

    def layer(di: Element) -> int:
        element = model.get(di.get("bpmnElement"))
        if _local(di) == "BPMNEdge":
            return 3
        return LAYERS.get(_local(element), 4) if element is not None else 4

    for di in sorted(shapes, key=layer):  # sorted() is stable: document order within a layer
        element = model.get(di.get("bpmnElement"))
        if element is not None:
            draw = _edge if _local(di) == "BPMNEdge" else _shape
            draw(svg, di, element, marks.get(element.get("id", ""), ""))
    overlay = _el(svg, "g", {"class": "labels"})
    for label in [t for t in svg.iter(f"{{{SVG}}}text") if t.get("class") == "label"]:
        label.set("data-id", label.getparent().get("data-id", ""))
        overlay.append(label)
    text = etree.tostring(svg, encoding="unicode", pretty_print=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text


def _parse(source: bytes) -> Element:
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


def _check_marks(marks: Mapping[str, str], drawn: set[str | None]) -> None:
    for element_id, mark in marks.items():
        details = {"element_id": element_id}
        if element_id not in drawn:
            message = f"'{element_id}' is not drawn in this diagram"
            raise InvalidInput("diagram.unknown_element", message, details)
        if not (_CLASS.match(mark) or _COLOUR.match(mark)):
            message = f"'{mark}' is neither a CSS class name nor a #rrggbb colour"
            raise InvalidInput("diagram.bad_highlight", message, details)


def _group(parent: Element, element: Element, css: str, mark: str) -> Element:
    classes = " ".join(filter(None, [css, "highlight" if _COLOUR.match(mark) else mark]))
    g = _el(parent, "g", {"class": classes, "data-id": element.get("id", "")})
    _el(g, "title").text = element.get("name") or element.get("id", "")
    return g


def _outline(shape: Element, mark: str) -> None:
    """A ``#rrggbb`` highlight paints the element's outline (classes are left to the stylesheet)."""
    if _COLOUR.match(mark):
        shape.set("style", f"stroke: {mark}; stroke-width: 3")


def _shape(svg: Element, di: Element, element: Element, mark: str) -> None:
    bounds = di.find(f"{{{DC}}}Bounds")
    if bounds is None:
        return
    box, kind, name = _box(bounds), _local(element), element.get("name") or ""
    label = di.find(f"{{{BPMNDI}}}BPMNLabel/{{{DC}}}Bounds")
    label_box = _box(label) if label is not None else None
    if kind in ("participant", "lane"):
        g = _group(svg, element, "pool" if kind == "participant" else "lane", mark)
        horizontal = di.get("isHorizontal", "true") != "false"
        band = Box(box.x, box.y, HEADER, box.h) if horizontal else Box(box.x, box.y, box.w, HEADER)
        _outline(_rect(g, box, "shape"), mark)
        _rect(g, band, "band")
        if horizontal:
            _vertical_text(g, name, band)
        else:
            _text(g, [name], band.cx, band.cy, "band-text")
    elif kind in TASK_LETTERS or kind in SUBPROCESSES:
        g = _group(svg, element, "subprocess" if kind in SUBPROCESSES else f"task {kind}", mark)
        _outline(_rect(g, box, "shape", radius=10), mark)
        if kind in SUBPROCESSES:
            lines = _wrap(name, box.w - 20, 12)
            _text(g, lines, box.x + 10, box.y + 18, "name", anchor="start", middle=False)
        else:
            size = 12.0
            while len(lines := _wrap(name, box.w - 14, size)) * size * 1.25 > box.h - 24 and size > 9:
                size -= 1
            _text(g, lines, box.cx, box.cy + 7, "name", size=size)
            _task_glyph(g, kind, box)
        loop = element.find(f"{{{BPMN_NS}}}multiInstanceLoopCharacteristics")
        if loop is not None:  # ||| parallel, ≡ sequential
            x, y, sequential = box.cx, box.y + box.h - 16, loop.get("isSequential") == "true"
            for i in (-4, 0, 4):
                d = f"M{_f(x - 6)},{_f(y + 6 + i)} h12" if sequential else f"M{_f(x + i)},{_f(y)} v12"
                _el(g, "path", {"class": "glyph", "d": d, "style": "stroke-width: 2"})
    elif kind in EVENTS:
        interrupting = element.get("cancelActivity", "true") != "false"
        css = "event end" if kind == "endEvent" else "event" + ("" if interrupting else " dashed")
        g = _group(svg, element, css, mark)
        _outline(_circle(g, box.cx, box.cy, box.w / 2, "shape"), mark)
        if kind in ("intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"):
            _circle(g, box.cx, box.cy, box.w / 2 - 3, "glyph")
        _event_glyph(g, element, box, solid=kind in ("endEvent", "intermediateThrowEvent"))
        _label(g, name, label_box or Box(box.cx - 50, box.y + box.h + 4, 100, 14))
    elif kind in GATEWAYS:
        g = _group(svg, element, "gateway", mark)
        points = [(box.cx, box.y), (box.x + box.w, box.cy), (box.cx, box.y + box.h), (box.x, box.cy)]
        _outline(_el(g, "polygon", {"class": "shape", "points": _points(points)}), mark)
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
        _outline(_rect(g, box, "shape"), mark)
        _label(g, name, label_box or box)


def _edge(svg: Element, di: Element, element: Element, mark: str) -> None:
    points = [(_num(w, "x"), _num(w, "y")) for w in di.iter(f"{{{DI}}}waypoint")]
    if len(points) < 2:
        return
    kind = _local(element)
    css = {"messageFlow": "message-flow", "sequenceFlow": "sequence-flow"}.get(kind, kind)
    g = _group(svg, element, css, mark)
    line = _el(g, "polyline", {"class": "line", "points": _points(points)})
    if kind != "association":
        line.set("marker-end", "url(#arrow)")
    _outline(line, mark)
    name = element.get("name") or ""
    label = di.find(f"{{{BPMNDI}}}BPMNLabel/{{{DC}}}Bounds")
    if label is not None:
        _label(g, name, _box(label))
    elif name:  # no label position: above the middle of the longest segment
        (x1, y1), (x2, y2) = max(pairwise(points), key=lambda s: math.dist(*s))
        _text(g, [name], (x1 + x2) / 2, (y1 + y2) / 2 - 5, "label")


def _task_glyph(g: Element, kind: str, box: Box) -> None:
    if kind in TASK_GLYPHS:
        _glyph(g, TASK_GLYPHS[kind], box.x + 7, box.y + 6)
    elif TASK_LETTERS.get(kind):
        _text(g, [TASK_LETTERS[kind]], box.x + 13, box.y + 18, "name", anchor="start", size=11)


def _event_glyph(g: Element, element: Element, box: Box, *, solid: bool) -> None:
    definition = next((c for c in element if _local(c).endswith("EventDefinition")), None)
    if definition is None:
        return
    kind = _local(definition).removesuffix("EventDefinition")
    if kind == "timer":
        _circle(g, box.cx, box.cy, box.w / 2 - 7, "glyph")
        _glyph(g, "M0,-7 V0 L5,3", box.cx, box.cy)
    elif kind == "message":  # an envelope, filled when the event throws
        _glyph(g, "M-8,-5.5 h16 v11 h-16 z", box.cx, box.cy, "solid" if solid else "glyph")
        _glyph(g, "M-8,-5.5 L0,1 L8,-5.5", box.cx, box.cy).set(
            "style", f"stroke: {'#fff' if solid else '#222'}"
        )
    else:
        _text(g, [kind[:1].upper()], box.cx, box.cy + 5, "name", size=13)


def _glyph(g: Element, d: str, x: float, y: float, css: str = "glyph") -> Element:
    return _el(g, "path", {"class": css, "d": d, "transform": f"translate({_f(x)},{_f(y)})"})


def _label(g: Element, name: str, box: Box) -> None:
    if name:  # a one-line DI label box keeps its text on one line; others wrap with slack for the font
        lines = [name] if box.h < 20 else _wrap(name, max(box.w, 44) * 1.1 + 4, 11)
        _text(g, lines, box.cx, box.y + 11, "label", middle=False)


def _vertical_text(g: Element, name: str, band: Box) -> None:
    """A name read top to bottom, one upright character per line (CJK style), centred in the band."""
    size, step = 14.0, 16.0
    if len(name) * step > band.h - 8:
        step = max(9.0, (band.h - 8) / max(len(name), 1))
        size = step - 1
    text = _el(
        g, "text", {"class": "band-text", "text-anchor": "middle", "style": f"font-size: {_f(size)}px"}
    )
    text.text = ""  # keeps the serializer from indenting (adding spaces) between the characters
    top = band.cy - step * len(name) / 2 + size * 0.85
    for i, char in enumerate(name):
        _el(text, "tspan", x=_f(band.cx), y=_f(top + i * step)).text = char


def _text(
    g: Element, lines: list[str], x: float, y: float, css: str, *, size: float = 0, anchor: str = "middle",
    middle: bool = True,
) -> None:  # fmt: skip
    """Lines of text at (x, y): ``middle`` centres the block vertically on y, else y is the first baseline."""
    if not lines:
        return
    height = size or (11 if css == "label" else 12)
    first = y - (len(lines) - 1) * height * 1.25 / 2 if middle else y
    text = _el(g, "text", {"class": css, "text-anchor": anchor})
    if size:
        text.set("style", f"font-size: {_f(size)}px")
    text.text = ""
    for i, line in enumerate(lines):
        _el(text, "tspan", x=_f(x), y=_f(first + i * height * 1.25)).text = line


def _wrap(text: str, width: float, size: float) -> list[str]:
    """Greedy line breaking: CJK characters one by one, Latin words and a short （…） whole when they fit;
    no line opens with ，。）？ or ends with （; a lone last character takes one from the line above."""
    tokens = [
        t
        for token in _TOKENS.findall(text.strip())
        for t in (token if _width(token, size) > width else [token])
    ]
    lines: list[str] = []
    current, used = "", 0.0
    for token in tokens:
        w = _width(token, size)
        if current and used + w > width and not token.isspace() and token[0] not in _NO_LINE_START:
            carry = current[-1] if current[-1] in _NO_LINE_END and len(current) > 1 else ""
            lines.append(current[: len(current) - len(carry)].rstrip())
            current, used = carry, _width(carry, size)
        current += "" if token.isspace() and not current else token
        used += w
    if current.strip():
        lines.append(current.rstrip())
    if len(lines) > 1 and len(lines[-1]) == 1 and len(lines[-2]) > 2:
        lines[-2:] = [lines[-2][:-1], lines[-2][-1] + lines[-1]]
    return lines


def _width(text: str, size: float) -> float:
    return sum(size if ord(c) >= 0x2E80 else size * 0.56 for c in text)


def _el(parent: Element, tag: str, attrs: Mapping[str, str] | None = None, **more: str) -> Element:
    return etree.SubElement(parent, f"{{{SVG}}}{tag}", {**(attrs or {}), **more})


def _rect(g: Element, box: Box, css: str, radius: float = 0) -> Element:
    rect = _el(
        g, "rect", {"class": css, "x": _f(box.x), "y": _f(box.y), "width": _f(box.w), "height": _f(box.h)}
    )
    if radius:
        rect.set("rx", _f(radius))
    return rect


def _circle(g: Element, cx: float, cy: float, r: float, css: str) -> Element:
    return _el(g, "circle", {"class": css, "cx": _f(cx), "cy": _f(cy), "r": _f(r)})


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{_f(x)},{_f(y)}" for x, y in points)


def _local(el: Element) -> str:
    return etree.QName(el).localname


def _box(el: Element) -> Box:
    return Box(_num(el, "x"), _num(el, "y"), _num(el, "width"), _num(el, "height"))


def _num(el: Element, name: str) -> float:
    try:
        return float(el.get(name) or 0)
    except ValueError:
        message = f"{name}='{el.get(name)}' is not a number (line {el.sourceline})"
        raise InvalidInput("diagram.bad_bounds", message, {"line": el.sourceline}) from None


def _f(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
