"""engine.orgs and engine.demo_org against a real database: SQLite always, PostgreSQL when DATABASE_URL
is set (each PostgreSQL test gets a freshly recreated ``public`` schema)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, func, literal, select

from engine import orgs
from engine.demo_org import DEMO_PASSWORD_ENV, PEOPLE, load_demo_org
from engine.errors import Conflict, InvalidInput, NotFound
from engine.store.db import Database
from engine.store.models import case, membership, org_unit, person

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
PASSWORD = "demo-pass-123"


def _fixed(_person_id: str) -> str:
    return PASSWORD


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-person argon2 hashes at production cost take ~0.15 s each; tests that need many use less."""
    monkeypatch.setattr(orgs, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def demo(db: Database) -> Database:
    with db.write() as conn:
        load_demo_org(conn, now=NOW, password_for=_fixed)
    return db


# ------------------------------------------------------------------------------------------- demo org


def test_demo_org_loads_the_required_units_by_kind(demo: Database) -> None:
    with demo.read() as conn:
        counts: dict[str, int] = dict(
            conn.execute(select(org_unit.c.kind, func.count()).group_by(org_unit.c.kind)).all()
        )
        depts = set(conn.execute(select(org_unit.c.id).where(org_unit.c.kind == "department")).scalars())
    assert counts == {
        "district": 1,
        "street": 2,
        "community": 4,
        "grid": 8,
        "micro_grid": 16,
        "department": 7,
    }
    assert depts == {
        "dept_civil_affairs",
        "dept_market",
        "dept_fire",
        "dept_urban",
        "dept_police",
        "dept_justice",
        "dept_environment",
    }


def test_demo_org_has_someone_for_every_role(demo: Database) -> None:
    with demo.read() as conn:
        roles = set(conn.execute(select(membership.c.role).distinct()).scalars())
    assert roles == set(orgs.ROLES)


def test_demo_org_staffs_every_grid_community_street_and_department(demo: Database) -> None:
    with demo.read() as conn:
        for g in range(1, 9):
            assert orgs.candidates(conn, role="grid_worker", org_unit_id=f"g{g}")
            assert orgs.candidates(conn, role="grid_leader", org_unit_id=f"g{g}")
        for c in range(1, 5):
            assert orgs.candidates(conn, role="community", org_unit_id=f"c{c}")
        for s in ("s1", "s2"):
            assert orgs.candidates(conn, role="street", org_unit_id=s)
            assert orgs.candidates(conn, role="mediator", org_unit_id=s)
            assert orgs.candidates(conn, role="supervisor", org_unit_id=s)
        for dept in conn.execute(select(org_unit.c.id).where(org_unit.c.kind == "department")).scalars():
            assert orgs.candidates(conn, role="department", org_unit_id=dept), dept
        assert orgs.candidates(conn, role="judicial_office", org_unit_id="dept_justice") == ["judicial_1"]
        for role in ("command_centre", "satisfaction_caller", "process_owner", "supervisor"):
            assert orgs.candidates(conn, role=role, org_unit_id="district"), role


def test_demo_org_returns_each_login_once_with_its_password(db: Database, cheap_hashing: None) -> None:
    with db.write() as conn:
        printed = load_demo_org(conn, now=NOW, password_for=lambda pid: f"pw-{pid}")
    logins = [row[0] for row in printed]
    assert len(logins) == len(set(logins)) == len({p[0] for p in PEOPLE})
    assert ("resident_1", "彭德明", "居民（桃园社区第一网格）", "pw-resident_1") in printed
    with db.read() as conn:
        assert orgs.verify_password(conn, "gw_g3", "pw-gw_g3")
        assert not orgs.verify_password(conn, "gw_g3", "pw-gw_g4")


def test_loading_the_demo_org_twice_is_a_no_op(demo: Database) -> None:
    with demo.write() as conn:
        assert load_demo_org(conn, now=NOW, password_for=_fixed) == []
    with demo.read() as conn:
        assert conn.execute(select(func.count()).select_from(person)).scalar() == len({p[0] for p in PEOPLE})


def test_demo_password_env_gives_everyone_the_same_password(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEMO_PASSWORD_ENV, "shared-secret-1")
    with db.write() as conn:
        printed = load_demo_org(conn, now=NOW)
    assert {row[3] for row in printed} == {"shared-secret-1"}
    with db.read() as conn:
        assert orgs.verify_password(conn, "cc_1", "shared-secret-1")


def test_random_demo_passwords_differ_per_person(
    db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashing: None
) -> None:
    monkeypatch.delenv(DEMO_PASSWORD_ENV, raising=False)
    with db.write() as conn:
        printed = load_demo_org(conn, now=NOW)
    passwords = [row[3] for row in printed]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) >= 12 for p in passwords)
    with db.read() as conn:
        assert orgs.verify_password(conn, printed[0][0], printed[0][3])
        assert not orgs.verify_password(conn, printed[0][0], printed[1][3])


# ----------------------------------------------------------------------------------- hierarchy, people


def test_unit_path_is_built_from_the_parent(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.get_unit(conn, "g1_m2") == orgs.UnitRow(
            id="g1_m2", name="桃园社区第一网格2号楼栋", kind="micro_grid", parent_id="g1",
            path="/district/s1/c1/g1/g1_m2/",
        )  # fmt: skip
        assert orgs.get_unit(conn, "dept_urban").path == "/district/dept_urban/"


def test_ancestors_are_nearest_first_and_include_the_unit_itself(demo: Database) -> None:
    with demo.read() as conn:
        assert [u.id for u in orgs.ancestors(conn, "g3_m1")] == ["g3_m1", "g3", "c2", "s1", "district"]
        assert [u.id for u in orgs.ancestors(conn, "district")] == ["district"]
        with pytest.raises(NotFound) as err:
            orgs.ancestors(conn, "nowhere")
    assert err.value.code == "org.unit_not_found"


def test_ancestors_are_not_confused_by_underscores_in_ids(db: Database) -> None:
    with db.write() as conn:
        orgs.add_unit(conn, id="d", name="区", kind="district", parent_id=None, now=NOW)
        orgs.add_unit(conn, id="s_1", name="甲街道", kind="street", parent_id="d", now=NOW)
        orgs.add_unit(conn, id="sx1", name="乙街道", kind="street", parent_id="d", now=NOW)
        orgs.add_unit(conn, id="g", name="网格", kind="grid", parent_id="sx1", now=NOW)
        assert [u.id for u in orgs.ancestors(conn, "g")] == ["g", "sx1", "d"]


def test_get_person_and_memberships(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.get_person(conn, "gw_g1") == orgs.PersonRow(
            id="gw_g1", name="王建国", phone=orgs.get_person(conn, "gw_g1").phone, active=True
        )
        assert orgs.memberships_of(conn, "supervisor_s1") == [
            orgs.Membership("supervisor_s1", "s1", "leader"),
            orgs.Membership("supervisor_s1", "s1", "supervisor"),
        ]
        with pytest.raises(NotFound) as err:
            orgs.get_person(conn, "nobody")
    assert err.value.code == "person.not_found"


def test_password_verifies_true_for_the_right_one_and_false_otherwise(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.verify_password(conn, "gw_g1", PASSWORD)
        assert not orgs.verify_password(conn, "gw_g1", "wrong")
        assert not orgs.verify_password(conn, "no_such_person", PASSWORD)
        stored = conn.execute(select(person.c.password_hash).where(person.c.id == "gw_g1")).scalar()
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored


def test_person_without_password_or_inactive_cannot_log_in(demo: Database) -> None:
    with demo.write() as conn:
        orgs.add_person(conn, id="nopass", name="无密码", phone=None, password=None, now=NOW)
        conn.execute(person.update().where(person.c.id == "gw_g2").values(active=False))
    with demo.read() as conn:
        assert not orgs.verify_password(conn, "nopass", "")
        assert not orgs.verify_password(conn, "gw_g2", PASSWORD)


def test_phone_is_masked_in_the_middle() -> None:
    assert orgs.mask_phone("13812345678") == "138****5678"
    assert orgs.mask_phone("12345") == "***45"
    assert orgs.mask_phone("") == ""


# ------------------------------------------------------------------------------------------- bad input


def test_unknown_kind_missing_parent_and_duplicate_unit_are_refused(demo: Database) -> None:
    with demo.write() as conn:
        with pytest.raises(InvalidInput) as err:
            orgs.add_unit(conn, id="x1", name="x", kind="province", parent_id="district", now=NOW)
        assert err.value.code == "org.unknown_kind"
        with pytest.raises(InvalidInput) as err:
            orgs.add_unit(conn, id="x1", name="x", kind="grid", parent_id="c9", now=NOW)
        assert err.value.code == "org.parent_not_found"
        with pytest.raises(Conflict) as conflict:
            orgs.add_unit(conn, id="g1", name="x", kind="grid", parent_id="c1", now=NOW)
        assert conflict.value.code == "org.duplicate_unit"
        with pytest.raises(InvalidInput) as err:
            orgs.add_unit(conn, id="a/b", name="x", kind="grid", parent_id="c1", now=NOW)
        assert err.value.code == "org.invalid_id"


def test_unknown_role_duplicate_person_and_duplicate_membership_are_refused(demo: Database) -> None:
    with demo.write() as conn:
        with pytest.raises(InvalidInput) as err:
            orgs.add_membership(conn, person_id="gw_g1", org_unit_id="g1", role="mayor")
        assert err.value.code == "org.unknown_role"
        with pytest.raises(Conflict) as conflict:
            orgs.add_membership(conn, person_id="gw_g1", org_unit_id="g1", role="grid_worker")
        assert conflict.value.code == "org.duplicate_membership"
        with pytest.raises(NotFound) as missing:
            orgs.add_membership(conn, person_id="ghost", org_unit_id="g1", role="grid_worker")
        assert missing.value.code == "person.not_found"
        with pytest.raises(NotFound) as missing:
            orgs.add_membership(conn, person_id="gw_g1", org_unit_id="g99", role="grid_worker")
        assert missing.value.code == "org.unit_not_found"
        with pytest.raises(Conflict) as conflict:
            orgs.add_person(conn, id="gw_g1", name="重名", phone=None, password="x", now=NOW)
        assert conflict.value.code == "person.duplicate"
        with pytest.raises(InvalidInput) as err:
            orgs.resolve_assignment(conn, role="mayor", grid_id="g1")
        assert err.value.code == "org.unknown_role"
        with pytest.raises(NotFound) as missing:
            orgs.resolve_assignment(conn, role="community", grid_id="g99")
        assert missing.value.code == "org.unit_not_found"


# ------------------------------------------------------------------------------------------ assignment


def test_resolve_assignment_walks_up_from_grid_to_community_to_street_to_district(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="grid_worker", grid_id="g3") == "g3"
        assert orgs.resolve_assignment(conn, role="community", grid_id="g3") == "c2"
        assert orgs.resolve_assignment(conn, role="street", grid_id="g3") == "s1"
        assert orgs.resolve_assignment(conn, role="mediator", grid_id="g6") == "s2"
        assert orgs.resolve_assignment(conn, role="command_centre", grid_id="g3") == "district"
        assert orgs.resolve_assignment(conn, role="grid_worker", grid_id="g3_m2") == "g3"


def test_resolve_assignment_takes_the_nearest_unit_when_several_levels_have_the_role(
    demo: Database,
) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="supervisor", grid_id="g5") == "s2"


def test_resolve_assignment_skips_units_whose_only_holders_are_inactive(demo: Database) -> None:
    with demo.write() as conn:
        conn.execute(person.update().where(person.c.id == "community_c1").values(active=False))
        assert orgs.resolve_assignment(conn, role="community", grid_id="g1") is None
        orgs.add_person(conn, id="street_helper", name="街道帮办", phone=None, password=None, now=NOW)
        orgs.add_membership(conn, person_id="street_helper", org_unit_id="s1", role="community")
        assert orgs.resolve_assignment(conn, role="community", grid_id="g1") == "s1"


def test_unit_hint_routes_a_department_task_to_the_dispatched_department(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="department", grid_id="g2", unit_hint="dept_urban") == (
            "dept_urban"
        )
        assert orgs.resolve_assignment(
            conn, role="department", grid_id="g2", unit_hint="dept_environment"
        ) == ("dept_environment")


def test_unit_hint_without_a_holder_of_the_role_falls_back_to_the_walk(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="community", grid_id="g2", unit_hint="dept_urban") == "c1"
        assert orgs.resolve_assignment(conn, role="community", grid_id="g2", unit_hint="nowhere") == "c1"


def test_nobody_with_the_role_gives_none(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="department", grid_id="g2") is None
        assert orgs.resolve_assignment(conn, role="judicial_office", grid_id="g4") is None


def test_candidates_are_the_active_holders_of_the_role_in_that_unit(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.candidates(conn, role="grid_worker", org_unit_id="g1") == ["gw_g1", "gw_g1_2"]
        assert orgs.candidates(conn, role="grid_worker", org_unit_id="c1") == []


def test_may_act_holder_of_the_role_in_the_unit(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.may_act(conn, person_id="dept_urban_1", role="department", org_unit_id="dept_urban")
        assert not orgs.may_act(conn, person_id="dept_urban_1", role="department", org_unit_id="dept_fire")
        assert not orgs.may_act(conn, person_id="gw_g1", role="community", org_unit_id="c1")
        assert not orgs.may_act(conn, person_id="community_c1", role="community", org_unit_id="c2")


def test_may_act_supervisor_of_an_ancestor_may_take_over_but_not_elsewhere(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.may_act(conn, person_id="supervisor_s1", role="community", org_unit_id="c2")
        assert orgs.may_act(conn, person_id="supervisor_s1", role="street", org_unit_id="s1")
        assert not orgs.may_act(conn, person_id="supervisor_s1", role="community", org_unit_id="c3")
        assert not orgs.may_act(conn, person_id="supervisor_s1", role="department", org_unit_id="dept_urban")
        assert orgs.may_act(conn, person_id="supervisor_d", role="department", org_unit_id="dept_urban")
        assert not orgs.may_act(conn, person_id="street_s1", role="community", org_unit_id="c1")


def test_inactive_person_may_not_act(demo: Database) -> None:
    with demo.write() as conn:
        conn.execute(person.update().where(person.c.id == "gw_g1").values(active=False))
        assert not orgs.may_act(conn, person_id="gw_g1", role="grid_worker", org_unit_id="g1")


# ---------------------------------------------------------------------------------------------- scopes


def test_scope_paths_follow_memberships(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.scope_paths(conn, "gw_g1") == ["/district/s1/c1/g1/"]
        assert orgs.scope_paths(conn, "community_c3") == ["/district/s2/c3/"]
        assert orgs.scope_paths(conn, "supervisor_s2") == ["/district/s2/"]
        assert orgs.scope_paths(conn, "supervisor_d") == ["/district/"]
        assert orgs.scope_paths(conn, "dept_urban_1") == ["/district/dept_urban/"]


def test_resident_and_unknown_people_get_no_scope(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.scope_paths(conn, "resident_1") == []
        assert orgs.scope_paths(conn, "nobody") == []


def test_scope_paths_drop_paths_inside_another(demo: Database) -> None:
    with demo.write() as conn:
        orgs.add_membership(conn, person_id="supervisor_s1", org_unit_id="g1", role="grid_leader")
        orgs.add_membership(conn, person_id="supervisor_s1", org_unit_id="c3", role="community")
        assert orgs.scope_paths(conn, "supervisor_s1") == ["/district/s1/", "/district/s2/c3/"]


def test_in_scope_filters_unit_paths_by_subtree_without_underscore_wildcards(demo: Database) -> None:
    expected = {
        "/district/s1/c1/g1/": True,
        "/district/s1/c1/g1/g1_m1/": True,
        "/district/s1/c1/g2/": False,
        "/district/s1/c1/gxg1/": False,
    }
    scope = ["/district/s1/c1/g_1/", "/district/s1/c1/g1/"]
    with demo.read() as conn:
        seen = {p: bool(conn.execute(select(orgs.in_scope(literal(p), scope))).scalar()) for p in expected}
        nothing = conn.execute(
            select(func.count()).select_from(case).where(orgs.in_scope(case.c.unit_path, []))
        )
        assert nothing.scalar() == 0
    assert seen == expected


def test_a_district_wide_role_off_the_grid_path_is_found_only_when_asked(demo: Database) -> None:
    with demo.read() as conn:
        assert orgs.resolve_assignment(conn, role="judicial_office", grid_id="g5") is None
        assert orgs.resolve_assignment(conn, role="judicial_office", grid_id="g5", within_district=True) == (
            "dept_justice"
        )
        # units on the grid's own path still win over the rest of the district
        assert orgs.resolve_assignment(conn, role="mediator", grid_id="g5", within_district=True) == "s2"


# ------------------------------------------------------------------- lookups up the tree, against paths


def _random_org(conn: Connection, seed: int) -> dict[str, str]:
    """Two districts of random depth and fan-out (ids with ``_`` and ``-``), departments, random
    memberships (some holders inactive) and random working hours; returns unit id → path."""
    rng = random.Random(seed)
    paths: dict[str, str] = {}

    def unit(uid: str, kind: str, parent: str | None) -> None:
        orgs.add_unit(conn, id=uid, name=uid, kind=kind, parent_id=parent, now=NOW)
        paths[uid] = f"{paths[parent] if parent else '/'}{uid}/"

    for d in ("d_1", "d-2"):
        unit(d, "district", None)
        unit(f"{d}_dept", "department", d)
        for s in range(rng.randint(1, 3)):
            sid = f"{d}_s{s}"
            unit(sid, "street", d)
            for c in range(rng.randint(1, 3)):
                cid = f"{sid}_c{c}"
                unit(cid, "community", sid)
                for g in range(rng.randint(1, 3)):
                    gid = f"{cid}_g{g}"
                    unit(gid, "grid", cid)
                    if rng.random() < 0.3:
                        unit(f"{gid}_m", "micro_grid", gid)
    roles = ["grid_worker", "community", "street", "department", "mediator", "judicial_office"]
    for n, uid in enumerate(sorted(paths)):
        if rng.random() < 0.3:
            hours = rng.choice(["08:00-12:00", "09:00-17:00", "08:30-12:00,13:30-17:30"])
            orgs.set_working_hours(conn, uid, hours)
        for k in range(rng.randint(0, 2)):
            pid = f"p{n}_{k}"
            orgs.add_person(conn, id=pid, name=pid, phone=None, password=None, now=NOW)
            orgs.add_membership(conn, person_id=pid, org_unit_id=uid, role=rng.choice(roles))
            if rng.random() < 0.2:
                conn.execute(person.update().where(person.c.id == pid).values(active=False))
    return paths


def _reference(conn: Connection, paths: dict[str, str]) -> tuple[set[tuple[str, str]], dict[str, str | None]]:
    """(unit, role) pairs with an active holder, and each unit's own working hours, read plainly."""
    held = {
        (r.org_unit_id, r.role)
        for r in conn.execute(
            select(membership.c.org_unit_id, membership.c.role)
            .join(person, person.c.id == membership.c.person_id)
            .where(person.c.active.is_(True))
        )
    }
    rows = conn.execute(select(org_unit.c.id, org_unit.c.working_hours))
    hours: dict[str, str | None] = {r.id: r.working_hours for r in rows}
    return held, hours


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lookups_up_the_tree_agree_with_the_materialized_paths(db: Database, seed: int) -> None:
    """``ancestors``, ``working_hours_of`` and ``resolve_assignment`` walk ``parent_id``; the paths are
    the definition. Every unit × role × option of a random organisation is checked against them."""
    with db.write() as conn:
        paths = _random_org(conn, seed)
    with db.read() as conn:
        held, own_hours = _reference(conn, paths)
        roles = [*sorted({role for _unit, role in held}), "leader"]
        for uid, path in sorted(paths.items()):
            up = path.strip("/").split("/")[::-1]  # the unit, then its ancestors, nearest first
            assert [u.id for u in orgs.ancestors(conn, uid)] == up
            assert [u.path for u in orgs.ancestors(conn, uid)] == [paths[a] for a in up]
            assert orgs.working_hours_of(conn, uid) == next((own_hours[a] for a in up if own_hours[a]), None)
            district = f"/{up[-1]}/"
            in_district = sorted((p, u) for u, p in paths.items() if p.startswith(district))
            for role in roles:
                on_path = next((a for a in up if (a, role) in held), None)
                wide = on_path or next((u for _p, u in in_district if (u, role) in held), None)
                assert orgs.resolve_assignment(conn, role=role, grid_id=uid) == on_path, (uid, role)
                assert orgs.resolve_assignment(conn, role=role, grid_id=uid, within_district=True) == wide
                for hint in (f"{up[-1]}_dept", "d_1_s0", "nowhere"):
                    expected = hint if (hint, role) in held else on_path
                    assert orgs.resolve_assignment(conn, role=role, grid_id=uid, unit_hint=hint) == expected
        assert orgs.working_hours_of(conn, None) is None
        with pytest.raises(NotFound):
            orgs.ancestors(conn, "nowhere")


def test_lookups_up_the_tree_read_no_whole_table(db: Database) -> None:
    """SQLite's plan for every lookup run per new task or clock start: index searches only, no scan of
    ``org_unit``, ``membership`` or ``person`` (a district has thousands of units and members)."""
    if db.dialect != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    statements = [orgs._HOURS, orgs._ANCESTORS] + [
        orgs._assignment_statement(hinted, wide) for hinted in (False, True) for wide in (False, True)
    ]
    params = {"unit": "g", "role": "community", "hint": "h"}
    with db.read() as conn:
        for statement in statements:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql, params)]
            allowed = ("SCAN up", "SCAN c", "SCAN CONSTANT ROW")  # the walk's rows, the reach, the hint
            scans = [step for step in plan if step.startswith("SCAN") and step not in allowed]
            assert not scans, (statement.sql, plan)
            assert any("USING" in step for step in plan)
            # the holder test looks each reached unit up, not every holder of the role
            holders = [step for step in plan if step.startswith("SEARCH m ")]
            assert all("org_unit_id=?" in step for step in holders), plan
