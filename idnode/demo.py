"""Demo data for `idnode serve --demo`: one enterprise prefix and a few agricultural products."""
from __future__ import annotations

from idnode.core.errors import AlreadyExists
from idnode.core.records import Value
from idnode.core.registry import RecordInput, Registry
from idnode.store.prefixes import PrefixStore

DEMO_PREFIX = "88.118.8"
DEMO_IDS = ("88.118.8/RICE-2026-000001", "88.118.8/SOY-2026-000001", "88.118.8/CORN-2026-000001")


def _product(name: str, variety: str, origin: str, harvest: str, grade: str) -> list[Value]:
    return [
        Value(1, "product.name", name),
        Value(2, "product.variety", variety),
        Value(3, "product.origin", origin),
        Value(4, "batch.harvest_date", harvest),
        Value(5, "product.grade", grade),
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


async def load(registry: Registry, prefixes: PrefixStore) -> None:
    """Idempotent: running it twice changes nothing."""
    try:
        await prefixes.create(DEMO_PREFIX)
    except AlreadyExists:
        pass
    try:
        await registry.register_batch("idnode-demo-v1", list(DEMO_RECORDS))
    except AlreadyExists:
        pass  # registered earlier under another key
