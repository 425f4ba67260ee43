"""The demo organisation loaded on first start (``gridcase serve``) and used by the tests.

Owns the demo data only (the tables below) and loads it through ``engine.orgs``. Must not import flask,
api or celery. Every name and phone number is fictional.

Passwords: ``password_for(person_id)`` when given (tests), else the value of the environment variable
``GRIDCASE_DEMO_PASSWORD`` for everyone when it is set (handy for a shared demo), else a random
``secrets.token_urlsafe(9)`` per person. ``load_demo_org`` returns the logins and passwords so the
caller can print them once; they are stored only as argon2id hashes.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, select

from engine import orgs
from engine.store.models import org_unit

__all__ = ["DEMO_PASSWORD_ENV", "DISTRICT_ID", "PEOPLE", "UNITS", "load_demo_org"]

DEMO_PASSWORD_ENV = "GRIDCASE_DEMO_PASSWORD"
DISTRICT_ID = "district"

# fmt: off
# (id, name, kind, parent). Every grid also gets two micro-grids (楼栋), see MICRO_GRIDS_PER_GRID.
UNITS: tuple[tuple[str, str, str, str | None], ...] = (
    ("district",            "示范区",           "district",   None),
    ("s1",                  "青山街道",         "street",     "district"),
    ("s2",                  "绿水街道",         "street",     "district"),
    ("c1",                  "桃园社区",         "community",  "s1"),
    ("c2",                  "柳岸社区",         "community",  "s1"),
    ("c3",                  "杏林社区",         "community",  "s2"),
    ("c4",                  "荷塘社区",         "community",  "s2"),
    ("g1",                  "桃园社区第一网格", "grid",       "c1"),
    ("g2",                  "桃园社区第二网格", "grid",       "c1"),
    ("g3",                  "柳岸社区第一网格", "grid",       "c2"),
    ("g4",                  "柳岸社区第二网格", "grid",       "c2"),
    ("g5",                  "杏林社区第一网格", "grid",       "c3"),
    ("g6",                  "杏林社区第二网格", "grid",       "c3"),
    ("g7",                  "荷塘社区第一网格", "grid",       "c4"),
    ("g8",                  "荷塘社区第二网格", "grid",       "c4"),
    ("dept_civil_affairs",  "区民政局",         "department", "district"),
    ("dept_market",         "区市场监管局",     "department", "district"),
    ("dept_fire",           "区消防救援大队",   "department", "district"),
    ("dept_urban",          "区城管执法局",     "department", "district"),
    ("dept_police",         "青山派出所",       "department", "district"),
    ("dept_justice",        "青山司法所",       "department", "district"),
    ("dept_environment",    "区生态环境分局",   "department", "district"),
)
MICRO_GRIDS_PER_GRID = 2  # ids g1_m1, g1_m2 …, names 桃园社区第一网格1号楼栋 …

# (person id = login, name, role, unit). A person listed twice holds two memberships.
PEOPLE: tuple[tuple[str, str, str, str], ...] = (
    ("gw_g1",                "王建国", "grid_worker",         "g1"),
    ("gw_g1_2",              "刘桂兰", "grid_worker",         "g1"),   # 兼职网格员: 一格多员
    ("gw_g2",                "李秀英", "grid_worker",         "g2"),
    ("gw_g3",                "张伟",   "grid_worker",         "g3"),
    ("gw_g4",                "刘洋",   "grid_worker",         "g4"),
    ("gw_g5",                "陈静",   "grid_worker",         "g5"),
    ("gw_g6",                "杨磊",   "grid_worker",         "g6"),
    ("gw_g7",                "赵敏",   "grid_worker",         "g7"),
    ("gw_g8",                "黄海涛", "grid_worker",         "g8"),
    ("gl_g1",                "周志刚", "grid_leader",         "g1"),
    ("gl_g2",                "吴丽华", "grid_leader",         "g2"),
    ("gl_g3",                "徐明",   "grid_leader",         "g3"),
    ("gl_g4",                "孙红梅", "grid_leader",         "g4"),
    ("gl_g5",                "马国强", "grid_leader",         "g5"),
    ("gl_g6",                "朱玉兰", "grid_leader",         "g6"),
    ("gl_g7",                "胡建华", "grid_leader",         "g7"),
    ("gl_g8",                "郭淑珍", "grid_leader",         "g8"),
    ("community_c1",         "何晓燕", "community",           "c1"),
    ("community_c2",         "高俊",   "community",           "c2"),
    ("community_c3",         "林美玲", "community",           "c3"),
    ("community_c4",         "罗志勇", "community",           "c4"),
    ("street_s1",            "梁文博", "street",              "s1"),
    ("street_s2",            "宋佳",   "street",              "s2"),
    ("dept_civil_affairs_1", "郑春华", "department",          "dept_civil_affairs"),
    ("dept_market_1",        "谢东升", "department",          "dept_market"),
    ("dept_fire_1",          "韩立军", "department",          "dept_fire"),
    ("dept_urban_1",         "唐志明", "department",          "dept_urban"),
    ("dept_police_1",        "冯建军", "department",          "dept_police"),
    ("dept_justice_1",       "于海燕", "department",          "dept_justice"),
    ("dept_environment_1",   "董青松", "department",          "dept_environment"),
    ("mediator_s1",          "萧永福", "mediator",            "s1"),
    ("mediator_s2",          "程素琴", "mediator",            "s2"),
    ("judicial_1",           "曹振宇", "judicial_office",     "dept_justice"),
    ("cc_1",                 "袁晓峰", "command_centre",      "district"),
    ("caller_1",             "邓丽娟", "satisfaction_caller", "district"),
    ("owner_1",              "许文静", "process_owner",       "district"),
    ("supervisor_d",         "傅国庆", "supervisor",          "district"),
    ("supervisor_d",         "傅国庆", "leader",              "district"),
    ("supervisor_s1",        "沈卫东", "supervisor",          "s1"),
    ("supervisor_s1",        "沈卫东", "leader",              "s1"),
    ("supervisor_s2",        "曾秀梅", "supervisor",          "s2"),
    ("supervisor_s2",        "曾秀梅", "leader",              "s2"),
    ("resident_1",           "彭德明", "resident",            "g1"),
)
# fmt: on


def _micro_grids() -> list[tuple[str, str, str, str]]:
    grids = [(uid, name) for uid, name, kind, _ in UNITS if kind == "grid"]
    return [
        (f"{gid}_m{n}", f"{gname}{n}号楼栋", "micro_grid", gid)
        for gid, gname in grids
        for n in range(1, MICRO_GRIDS_PER_GRID + 1)
    ]


def _choose_password(person_id: str, password_for: Callable[[str], str] | None) -> str:
    if password_for is not None:
        return password_for(person_id)
    shared = os.environ.get(DEMO_PASSWORD_ENV)
    if shared:
        return shared
    return secrets.token_urlsafe(9)


def load_demo_org(
    conn: Connection, *, now: datetime, password_for: Callable[[str], str] | None = None
) -> list[tuple[str, str, str, str]]:
    """Load the demo organisation; returns ``(login, name, roles, password)`` per person, to print once.

    Does nothing and returns ``[]`` when the district already exists (safe on every start).
    """
    if conn.execute(select(org_unit.c.id).where(org_unit.c.id == DISTRICT_ID)).first() is not None:
        return []
    unit_names: dict[str, str] = {}
    for uid, name, kind, parent in (*UNITS, *_micro_grids()):
        orgs.add_unit(conn, id=uid, name=name, kind=kind, parent_id=parent, now=now)
        unit_names[uid] = name

    roles: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for pid, name, role, unit in PEOPLE:
        names.setdefault(pid, name)
        roles.setdefault(pid, []).append(f"{orgs.ROLES[role]}（{unit_names[unit]}）")

    hashes: dict[str, str] = {}  # one argon2 run per distinct password: a shared password loads fast
    result: list[tuple[str, str, str, str]] = []
    for n, (pid, name) in enumerate(names.items(), start=1):
        password = _choose_password(pid, password_for)
        if password not in hashes:
            hashes[password] = orgs.hash_password(password)
        orgs.add_person(
            conn,
            id=pid,
            name=name,
            phone=f"1390000{n:04d}",
            password=None,
            password_hash=hashes[password],
            now=now,
        )
        result.append((pid, name, "、".join(roles[pid]), password))

    for pid, _name, role, unit in PEOPLE:
        orgs.add_membership(conn, person_id=pid, org_unit_id=unit, role=role)
    return result
