"""Demo data for `idnode serve --demo`: one cooperative, its prefix, a template and a few
agricultural products, registered through the same rules as any MES would be."""
from __future__ import annotations

from typing import TYPE_CHECKING

from idnode.core.audit import Actor
from idnode.core.records import Value
from idnode.core.registry import RecordInput

if TYPE_CHECKING:
    from idnode.node import Core

DEMO_PREFIX = "88.118.8"
DEMO_USCC = "91230100MA1C0DEM0X"
DEMO_IDS = ("88.118.8/RICE-2026-000001", "88.118.8/SOY-2026-000001", "88.118.8/CORN-2026-000001")


def _product(name: str, variety: str, origin: str, harvest: str, grade: str) -> list[Value]:
    return [
        Value(1, "product.name", name),
        Value(2, "product.variety", variety),
        Value(3, "product.origin", origin),
        Value(4, "batch.harvest_date", harvest),
        Value(5, "product.grade", grade),
        Value(6, "producer.licence", "SC10123010000001"),
        Value(7, "producer.contact", "+86 451 0000 0000", private=True),
        Value(100, "URL", "https://example.com/trace"),
    ]


DEMO_RECORDS = (
    RecordInput(DEMO_IDS[0], _product("五常大米 Wuchang rice", "稻花香2号", "黑龙江省五常市",
                                      "2026-09-28", "一级")),
    RecordInput(DEMO_IDS[1], _product("黑河大豆 Heihe soybean", "黑河43", "黑龙江省黑河市",
                                      "2026-09-20", "二级")),
    RecordInput(DEMO_IDS[2], _product("绥化玉米 Suihua corn", "先玉335", "黑龙江省绥化市",
                                      "2026-10-05", "一级")),
)


async def load(core: Core, operator: Actor) -> str | None:
    """Loads the demo once; returns the cooperative's write key the first time, else None."""
    if await core.prefix_store.get(DEMO_PREFIX) is not None:
        return None
    t = core.tenancy
    coop = await t.create_enterprise(operator, "五常市稻花香种植合作社 (demo)", DEMO_USCC,
                                     "demo@example.com")
    await t.allocate_prefix(operator, coop.id, DEMO_PREFIX)
    await t.set_template(operator, DEMO_PREFIX, "agri-product-unit", None)
    issued = await t.issue_key(operator, coop.id, ["read", "write", "admin"], label="demo MES")
    mes = Actor(await core.authenticator.from_token(issued.api_key), "local")
    await core.registry.register_batch(mes, "idnode-demo-v1", list(DEMO_RECORDS))
    return issued.api_key
