"""Demo data for `idnode serve --demo`: one cooperative, its prefix, a template, a few
agricultural products and one rice batch traced from its two fields to the shop shelf
(一品一码), all written through the same rules as any MES would use."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from idnode.core.audit import Actor
from idnode.core.records import Value
from idnode.core.registry import RecordInput
from idnode.core.trace import Attachment, EventInput

if TYPE_CHECKING:
    from idnode.node import Core

DEMO_PREFIX = "0.118.8"
DEMO_USCC = "91230100MA1C0DEM0X"
DEMO_IDS = ("0.118.8/RICE-2026-000001", "0.118.8/SOY-2026-000001", "0.118.8/CORN-2026-000001")


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


#: The traced rice: two field lots harvested into one batch, milled, packed into bags.
FIELDS = ("0.118.8/FIELD-WC-A07", "0.118.8/FIELD-WC-B12")
BATCH = "0.118.8/RICE-2026-B001"
UNITS = (DEMO_IDS[0], "0.118.8/RICE-2026-000002", "0.118.8/RICE-2026-000003")
ORIGIN = "黑龙江省五常市民乐乡"

TRACE_RECORDS = (
    RecordInput(FIELDS[0], _product("稻田 A07 地块 Paddy field A07", "稻花香2号", ORIGIN,
                                    "2026-09-28", "一级")),
    RecordInput(FIELDS[1], _product("稻田 B12 地块 Paddy field B12", "稻花香2号", ORIGIN,
                                    "2026-09-29", "一级")),
    RecordInput(BATCH, _product("五常大米 批次 B001 Wuchang rice batch", "稻花香2号", ORIGIN,
                                "2026-09-29", "一级")),
    *(RecordInput(u, _product("五常大米 5kg Wuchang rice", "稻花香2号", ORIGIN, "2026-09-29",
                              "一级")) for u in UNITS[1:]),
)

#: A test report, kept with the inspection event (its hash is in the signed log).
LAB_REPORT = ("黑龙江省农产品质量安全检测中心 检测报告 HLJ-2026-10-0412\n"
              "样品: 五常大米 批次 B001\n农药残留 (GB 2763-2021): 未检出 / not detected\n"
              "重金属 镉 Cd: 0.02 mg/kg (限量 0.2)\n结论: 合格 PASS\n").encode()


def _at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(f"2026-{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


def _ev(ident: str, kind: str, day: str, place: str, attrs: dict[str, Any],
        **kw: Any) -> EventInput:
    return EventInput(ident, kind, _at(day), place, attrs, **kw)


def trace_events() -> list[EventInput]:
    """Planting to retail, in time order."""
    a, b = FIELDS
    field_a, field_b = f"{ORIGIN} A07", f"{ORIGIN} B12"
    return [
        _ev(a, "planting", "05-12", field_a, {"crop": "水稻", "variety": "稻花香2号",
                                              "area_mu": 86, "seed_lot": "WC-S-2026-031"}),
        _ev(b, "planting", "05-13", field_b, {"crop": "水稻", "variety": "稻花香2号",
                                              "area_mu": 64}),
        _ev(a, "fertilising", "06-02", field_a, {"product": "有机肥 organic manure",
                                                 "kg_per_mu": 300, "organic": True}),
        _ev(a, "irrigation", "06-20", field_a, {"water_source": "拉林河 Lalin river",
                                                "volume_m3": 5200}),
        _ev(a, "pesticide", "07-15", field_a, {"product": "井冈霉素 validamycin",
                                               "active_ingredient": "validamycin A",
                                               "dose_ml_per_mu": 50,
                                               "safety_interval_days": 14}),
        _ev(b, "pesticide", "07-16", field_b, {"product": "井冈霉素 validamycin",
                                               "active_ingredient": "validamycin A",
                                               "dose_ml_per_mu": 45,
                                               "safety_interval_days": 14}),
        _ev(BATCH, "harvest", "09-29", ORIGIN, {"quantity_kg": 96_000, "moisture": 14.5},
            inputs=FIELDS),
        _ev(BATCH, "inspection", "10-04", "哈尔滨市", {
            "lab": "黑龙江省农产品质量安全检测中心", "standard": "GB 2763-2021",
            "result": "pass", "report_no": "HLJ-2026-10-0412"},
            attachments=(Attachment("text/plain; charset=utf-8", LAB_REPORT),)),
        _ev(BATCH, "processing", "10-08", "五常市稻花香米业加工厂", {
            "step": "脱壳 抛光 色选 hulling, polishing, colour sorting",
            "facility": "五常市稻花香米业加工厂", "yield_kg": 62_400}),
        *(_ev(u, "packing", "10-10", "五常市稻花香米业加工厂", {
            "package": "真空袋 vacuum bag", "net_weight_g": 5000}, inputs=(BATCH,))
          for u in UNITS),
        _ev(UNITS[0], "warehousing", "10-11", "五常市", {"warehouse": "五常低温库 3号",
                                                        "temperature_c": 12}),
        _ev(UNITS[0], "transport", "10-14", "五常市 → 北京市", {
            "carrier": "顺丰冷运", "from": "五常市", "to": "北京市", "temperature_c": 15}),
        _ev(UNITS[0], "retail", "10-16", "北京市朝阳区", {"store": "北京朝阳区 盒马鲜生",
                                                       "price_cny": 89.0}),
    ]


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
    await core.registry.register_batch(mes, "idnode-demo-trace-v1", list(TRACE_RECORDS))
    await core.trace.append(mes, trace_events())
    return issued.api_key
