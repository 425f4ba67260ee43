"""engine.diagram: every shipped process draws as a well-formed SVG with its lanes and user tasks named."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from engine.diagram import SVG, render_file, render_svg
from engine.errors import InvalidInput
from engine.spiff import BPMN_NS, safe_xml_parser

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = sorted((ROOT / "workflows").glob("*/*.bpmn"))
NS = {"s": SVG}
LABELLED = {
    "sequenceFlow",
    "startEvent",
    "endEvent",
    "boundaryEvent",
    "intermediateThrowEvent",
    "exclusiveGateway",
}


def _svg(text: str) -> etree._Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return etree.fromstring(text.encode(), parser=safe_xml_parser())


def _group(svg: etree._Element, element_id: str) -> etree._Element:
    found = svg.xpath("//s:g[@data-id=$id]", namespaces=NS, id=element_id)
    assert len(found) == 1, f"{element_id}: {len(found)} groups"
    return found[0]


def _shown(group: etree._Element, css: str) -> str:
    """The text drawn in the group (wrapped lines joined), as a reader sees it."""
    texts = group.xpath("s:text[@class=$css]", namespaces=NS, css=css)
    return "".join("".join(t.itertext()) for t in texts).replace(" ", "")


def test_the_shipped_processes_are_found() -> None:
    assert {p.stem for p in PROCESSES} >= {"work_order", "mediation", "grid_event", "demo"}


@pytest.mark.parametrize("path", PROCESSES, ids=lambda p: p.stem)
def test_each_process_draws_its_lanes_and_user_tasks(path: Path) -> None:
    bpmn = etree.fromstring(path.read_bytes(), parser=safe_xml_parser())
    svg = _svg(render_file(path))
    assert etree.QName(svg).localname == "svg" and svg.get("viewBox")
    assert "Noto Sans CJK SC" in svg.get("style", "")
    lanes = list(bpmn.iter(f"{{{BPMN_NS}}}lane"))
    user_tasks = list(bpmn.iter(f"{{{BPMN_NS}}}userTask"))
    assert lanes and user_tasks
    for lane in lanes:
        group = _group(svg, lane.get("id"))
        assert group.findtext(f"{{{SVG}}}title") == lane.get("name")
        assert _shown(group, "band-text") == lane.get("name")
    for task in user_tasks:
        group = _group(svg, task.get("id"))
        assert "userTask" in group.get("class", "").split()
        assert group.findtext(f"{{{SVG}}}title") == task.get("name")
        assert _shown(group, "name") == task.get("name").replace(" ", "")
    flows = list(bpmn.iter(f"{{{BPMN_NS}}}sequenceFlow"))
    for flow in flows:
        assert _group(svg, flow.get("id")).find(f"{{{SVG}}}polyline").get("marker-end") == "url(#arrow)"
    named = [
        el for el in bpmn.iter(f"{{{BPMN_NS}}}*") if el.get("name") and etree.QName(el).localname in LABELLED
    ]
    for el in named:  # flows, events and gateways carry their name as a label outside the shape
        labels = svg.xpath("//s:text[@class='label'][@data-id=$id]", namespaces=NS, id=el.get("id"))
        assert ["".join(t.itertext()).replace(" ", "") for t in labels] == [el.get("name").replace(" ", "")]


def test_output_is_deterministic() -> None:
    path = ROOT / "workflows" / "work_order" / "work_order.bpmn"
    assert render_file(path) == render_file(path)


@pytest.mark.parametrize("name", ["work_order", "mediation", "grid_event"])
def test_the_pictures_in_the_docs_are_up_to_date(name: str) -> None:
    picture = ROOT / "workflows" / "docs" / f"{name}.svg"
    fresh = render_file(ROOT / "workflows" / name / f"{name}.bpmn")
    assert picture.read_text(encoding="utf-8") == fresh, (
        f"regenerate it: gridcase diagram workflows/{name}/{name}.bpmn -o workflows/docs/{name}.svg"
    )


def test_highlighted_elements_get_their_class_or_colour() -> None:
    path = ROOT / "workflows" / "work_order" / "work_order.bpmn"
    svg = _svg(render_file(path, highlight={"handle": "current", "claim": "overdue", "flow_claimed": "done"}))
    assert "current" in _group(svg, "handle").get("class", "").split()
    assert "overdue" in _group(svg, "claim").get("class", "").split()
    assert "done" in _group(svg, "flow_claimed").get("class", "").split()
    assert "current" not in _group(svg, "accept").get("class", "").split()
    coloured = _svg(render_file(path, highlight={"verify": "#ff8800"}))
    group = _group(coloured, "verify")
    assert "highlight" in group.get("class", "").split()
    assert "#ff8800" in group.find(f"{{{SVG}}}rect").get("style", "")


@pytest.mark.parametrize(
    ("highlight", "code"),
    [
        ({"no_such_task": "current"}, "diagram.unknown_element"),
        ({"handle": "bad class!"}, "diagram.bad_highlight"),
    ],
)
def test_bad_highlights_are_refused(highlight: dict[str, str], code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        render_file(ROOT / "workflows" / "demo" / "demo.bpmn", highlight=highlight)
    assert err.value.code == code


def _without_di(path: Path) -> bytes:
    tree = etree.fromstring(path.read_bytes(), parser=safe_xml_parser())
    for diagram in tree.findall("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNDiagram"):
        tree.remove(diagram)
    return etree.tostring(tree)


def test_a_bpmn_without_di_is_refused_clearly() -> None:
    with pytest.raises(InvalidInput) as err:
        render_svg(_without_di(ROOT / "workflows" / "demo" / "demo.bpmn"))
    assert err.value.code == "diagram.no_di"
    assert "diagram interchange" in err.value.message


@pytest.mark.parametrize(
    ("source", "code"),
    [
        (b"<definitions", "diagram.invalid_xml"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "diagram.not_bpmn"),
        (b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', "diagram.doctype"),
    ],
)
def test_what_is_not_a_bpmn_diagram_is_refused(source: bytes, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        render_svg(source)
    assert err.value.code == code
