"""The consumer scan page: what a phone shows when someone scans a product's code.

One self-contained HTML response (inline CSS, no scripts, fonts or images from elsewhere), so it
loads on a weak rural signal; Chinese or English by Accept-Language or ?lang=, with a switch.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from idnode.core.provenance import ProductView
from idnode.core.records import Record, Value
from idnode.core.scans import ScanCount

#: Consumers read times in China Standard Time.
CST = timezone(timedelta(hours=8))
#: Events shown at most; the JSON trace has them all.
MAX_EVENTS_SHOWN = 200
MAX_ATTR_CHARS = 200

#: Texts by language. Keys ending _1 are the singular of the key without it (English; Chinese
#: has no plural), _0 the wording for none: see `_say`.
_T: dict[str, dict[str, str]] = {
    "zh": {
        "lang": "zh-CN", "switch": "English", "switch_to": "en",
        "verified": "已验证", "verified_sub": "产品记录与 {n} 条溯源事件均经节点签名核验，未被篡改",
        "verified_sub_0": "产品记录经节点签名核验，未被篡改",
        "failed": "验证失败", "failed_sub": "以下数据与节点签名的记录不符，可能已被篡改：{what}",
        "recalled": "已召回", "recalled_sub": "此产品已被召回，请勿食用或销售。原因：{reason}",
        "producer": "生产者", "origin": "产地", "grade": "等级", "variety": "品种",
        "harvest": "收获日期", "weight": "净含量", "licence": "生产许可证", "code": "标识码",
        "timeline": "溯源记录", "no_events": "暂无溯源事件",
        "first_scan": "这是此码的首次查询。",
        "scanned": "此码此前已被查询 {count} 次，来自 {places} 个地点。",
        "event_no": "第 {n} 条",
        "suspicious": "此码查询次数异常，可能被复制于仿冒产品上。请核对包装与购买渠道。",
        "via": "来源", "corrected_by": "已被第 {n} 条更正", "corrects": "更正第 {n} 条",
        "event_ok": "已核验", "event_bad": "不符", "record_bad": "产品记录",
        "head_bad": "日志签名", "attachment": "附件",
        "footer": "由标识解析二级节点 {node} 提供", "details": "技术详情",
        "log": "签名的溯源日志共 {size} 条事件（含其他产品），此页事件均在其中。",
        "log_untraced": "此产品暂无溯源事件；节点的溯源日志共 {size} 条事件。",
        "why": "核验失败原因", "check": "可离线核验：",
        "more": "另有 {n} 条事件未显示",
    },
    "en": {
        "lang": "en", "switch": "中文", "switch_to": "zh",
        "verified": "Verified", "verified_sub":
        "The product record and all {n} trace events are signed by the node and unchanged",
        "verified_sub_1":
        "The product record and its trace event are signed by the node and unchanged",
        "verified_sub_0": "The product record is signed by the node and unchanged",
        "failed": "Verification failed", "failed_sub":
        "This data does not match what the node signed; it may have been tampered with: {what}",
        "recalled": "Recalled", "recalled_sub":
        "This product has been recalled. Do not eat or sell it. Reason: {reason}",
        "producer": "Producer", "origin": "Origin", "grade": "Grade", "variety": "Variety",
        "harvest": "Harvested", "weight": "Net weight", "licence": "Licence", "code": "Code",
        "timeline": "Trace", "no_events": "No trace events yet",
        "first_scan": "This is the first time this code has been checked.",
        "scanned": "This code was checked {count} times before, from {places} places.",
        "scanned_1": "This code was checked once before, from 1 place.",
        "scanned_places_1": "This code was checked {count} times before, from 1 place.",
        "event_no": "#{n}",
        "suspicious": "This code has been checked unusually often: it may have been copied onto "
                      "counterfeits. Check the packaging and where you bought it.",
        "via": "from", "corrected_by": "corrected by #{n}",
        "corrects": "corrects #{n}", "event_ok": "verified", "event_bad": "mismatch",
        "record_bad": "product record", "head_bad": "log signature", "attachment": "attachment",
        "footer": "Served by secondary node {node}", "details": "Technical details",
        "log": "The signed trace log holds {size} events (of all products); this page's events "
               "are among them.",
        "log_1": "The signed trace log holds 1 event; this page's event is that one.",
        "log_untraced": "No trace events for this product yet; the node's trace log holds "
                        "{size} events.",
        "log_untraced_1": "No trace events for this product yet; the node's trace log holds "
                          "1 event.",
        "why": "Why verification failed", "check": "Check offline:",
        "more": "{n} more events not shown", "more_1": "1 more event not shown",
    },
}

_KINDS = {
    "planting": ("播种", "Planting"), "fertilising": ("施肥", "Fertilising"),
    "pesticide": ("用药", "Pesticide"), "irrigation": ("灌溉", "Irrigation"),
    "harvest": ("收获", "Harvest"), "inspection": ("检验检测", "Inspection"),
    "processing": ("加工", "Processing"), "packing": ("包装", "Packing"),
    "warehousing": ("仓储", "Warehousing"), "transport": ("运输", "Transport"),
    "retail": ("零售", "Retail"), "recall": ("召回", "Recall"), "note": ("备注", "Note"),
}

_ATTRS = {
    "crop": ("作物", "crop"), "variety": ("品种", "variety"), "field": ("地块", "field"),
    "area_mu": ("面积(亩)", "area (mu)"), "seed_lot": ("种子批号", "seed lot"),
    "product": ("产品", "product"), "kg_per_mu": ("用量(公斤/亩)", "kg per mu"),
    "amount_kg": ("用量(公斤)", "amount (kg)"), "organic": ("有机", "organic"),
    "active_ingredient": ("有效成分", "active ingredient"),
    "dose_ml_per_mu": ("剂量(毫升/亩)", "dose (ml per mu)"),
    "safety_interval_days": ("安全间隔期(天)", "safety interval (days)"),
    "water_source": ("水源", "water source"), "volume_m3": ("水量(立方米)", "volume (m³)"),
    "quantity_kg": ("数量(公斤)", "quantity (kg)"), "moisture": ("水分(%)", "moisture (%)"),
    "lab": ("检测机构", "laboratory"), "standard": ("标准", "standard"),
    "result": ("结论", "result"), "items": ("项目", "items"), "report_no": ("报告编号", "report"),
    "step": ("工序", "step"), "facility": ("工厂", "facility"), "yield_kg": ("出品(公斤)", "yield (kg)"),
    "package": ("包装", "package"), "net_weight_g": ("净含量(克)", "net weight (g)"),
    "units": ("件数", "units"), "warehouse": ("仓库", "warehouse"),
    "temperature_c": ("温度(℃)", "temperature (°C)"), "humidity": ("湿度(%)", "humidity (%)"),
    "carrier": ("承运方", "carrier"), "vehicle": ("车辆", "vehicle"), "from": ("起点", "from"),
    "to": ("终点", "to"), "store": ("门店", "store"), "price_cny": ("价格(元)", "price (CNY)"),
    "reason": ("原因", "reason"), "authority": ("发布机构", "authority"), "text": ("内容", "text"),
}
_VALUES = {"pass": ("合格", "pass"), "fail": ("不合格", "fail"), True: ("是", "yes"),
           False: ("否", "no")}

_CSS = (
    "*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,'PingFang SC',"
    "'Noto Sans CJK SC',sans-serif;color:#1d2329;background:#f4f6f8}main{max-width:40rem;"
    "margin:0 auto;padding:.75rem}header{display:flex;justify-content:space-between;"
    "align-items:flex-start;gap:.5rem}h1{font-size:1.35rem;margin:.2rem 0}h2{font-size:1.05rem;"
    "margin:1.2rem 0 .4rem}.code{color:#5b6670;font-size:.8rem;word-break:break-all}"
    ".lang{font-size:.85rem;white-space:nowrap;padding:.2rem .5rem;border:1px solid #b8c2cc;"
    "border-radius:1rem;color:#1d2329;text-decoration:none;background:#fff}"
    ".status{border-radius:.6rem;padding:.7rem .9rem;margin:.6rem 0;color:#fff}"
    ".status b{font-size:1.15rem;display:block}.ok{background:#1a7f37}.bad{background:#c62828}"
    ".recall{background:#8b0000}.warn{background:#fff4e5;color:#7a4100;border:1px solid "
    "#f0b35a}.card{background:#fff;border-radius:.6rem;padding:.6rem .9rem;margin:.6rem 0}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:0}dt{color:#5b6670}"
    "dd{margin:0;word-break:break-word}ol{list-style:none;padding:0;margin:0}"
    "li.ev{background:#fff;border-left:4px solid #1a7f37;border-radius:.4rem;padding:.5rem .7rem;"
    "margin:.5rem 0}li.ev.bad{border-color:#c62828;background:#fff0f0}li.ev.recall{border-color:"
    "#8b0000}li.ev.corrected{opacity:.6}li.ev.corrected .k{text-decoration:line-through}"
    ".k{font-weight:600}.n{float:left;margin-right:.4rem;color:#5b6670;font-weight:600}"
    "summary{cursor:pointer}.t{color:#5b6670;font-size:.85rem}.m{font-size:.8rem;float:right}"
    ".m.okm{color:#1a7f37}.m.badm{color:#c62828}.a{font-size:.9rem;margin:.2rem 0 0}"
    ".scans{font-size:.9rem}footer{color:#5b6670;font-size:.75rem;margin:1.2rem 0;"
    "word-break:break-all}a{color:#0b57d0}"
)


def language(accept_language: str, query_lang: str | None) -> str:
    """'zh' or 'en': ?lang= wins, then the first of the two the browser ranks highest."""
    if query_lang in _T:
        return query_lang
    best, best_q = "zh", -1.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = "zh" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang is not None and q > best_q:
            best, best_q = lang, q
    return best


def render(record: Record, values: Sequence[Value], view: ProductView, seen: ScanCount,
           suspicious: bool, lang: str, path: str, node: str) -> bytes:
    t = _T[lang]
    zh = lang == "zh"
    fields = {v.type: v.data for v in values}
    e = html.escape
    name = fields.get("product.name") or record.identifier
    trace = view.trace
    events = trace["events"]
    check = view.check
    # Events are numbered as the page shows them (#1 the oldest), and only so: a consumer
    # never sees a log position, so the status, the cards and corrections say the same #n.
    number = {ev["leaf"]: i for i, ev in enumerate(events, start=1)}
    corrected = {ev["corrects"]: ev["leaf"] for ev in events if ev.get("corrects") is not None}
    out: list[str] = [
        f'<!doctype html><html lang="{t["lang"]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{e(name)}</title><style>{_CSS}</style></head><body><main>'
        f'<header><div><h1>{e(name)}</h1><div class="code">{e(t["code"])} '
        f'{e(record.identifier)}</div></div><a class="lang" id="lang" '
        f'href="{e(quote(path))}?lang={t["switch_to"]}" hreflang="{t["switch_to"]}">'
        f'{t["switch"]}</a></header>']
    # Status: a recall first (it matters most to whoever holds the product), then the checks.
    recalls = view.recalls
    if recalls:
        reason = "; ".join(str((r.get("attrs") or {}).get("reason", "")) for r in recalls)
        out.append(f'<div class="status recall" id="recall" role="alert"><b>⚠ {t["recalled"]}'
                   f'</b>{e(t["recalled_sub"].format(reason=reason))}</div>')
    why: list[str] = []
    if view.verified:
        out.append(f'<div class="status ok" id="status" data-status="verified"><b>✓ '
                   f'{t["verified"]}</b>{e(_say(t, "verified_sub", len(events)))}</div>')
    else:
        what = []
        if not view.record_ok:
            what.append(t["record_bad"])
            why.append(f'{t["record_bad"]}: {view.record_problem}')
        if -1 in check.failures:
            what.append(t["head_bad"])
            why.append(f'{t["head_bad"]}: {check.failures[-1]}')
        kinds = {ev["leaf"]: ev["kind"] for ev in events}
        for leaf in sorted(check.failures):
            if leaf >= 0:
                label = (t["event_no"].format(n=number.get(leaf, "?")) + " "
                         + _KINDS.get(kinds.get(leaf, ""), ("", ""))[0 if zh else 1]).strip()
                what.append(label)
                why.append(f"{label}: {check.failures[leaf]}")
        out.append(f'<div class="status bad" id="status" data-status="failed" role="alert"><b>'
                   f'⚠ {t["failed"]}</b>{e(t["failed_sub"].format(what=", ".join(what)))}</div>')
    # Product facts.
    facts = [(t["producer"], view.producer), (t["origin"], fields.get("product.origin")),
             (t["variety"], fields.get("product.variety")),
             (t["grade"], fields.get("product.grade")),
             (t["harvest"], fields.get("batch.harvest_date")),
             (t["weight"], _grams(fields.get("product.net_weight_g"))),
             (t["licence"], fields.get("producer.licence"))]
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts if v)
    if rows:
        out.append(f'<section class="card"><dl>{rows}</dl></section>')
    # Scans.
    if seen.count == 0:
        out.append(f'<p class="scans" id="scans" data-count="0">{t["first_scan"]}</p>')
    else:
        key = ("scanned_1" if seen.count == 1 and "scanned_1" in t else
               "scanned_places_1" if seen.places == 1 and "scanned_places_1" in t else "scanned")
        out.append(f'<p class="scans" id="scans" data-count="{seen.count}">'
                   f'{e(t[key].format(count=seen.count, places=seen.places))}</p>')
    if suspicious:
        out.append(f'<div class="status warn" id="suspicious" role="alert"><b>⚠</b>'
                   f'{e(t["suspicious"])}</div>')
    # Timeline.
    out.append(f'<h2>{t["timeline"]}</h2>')
    if not events:
        out.append(f'<p>{t["no_events"]}</p>')
    out.append('<ol id="timeline">')
    for ev in events[-MAX_EVENTS_SHOWN:]:
        out.append(_event(ev, record.identifier, check.failures, corrected, number, t, zh))
    out.append("</ol>")
    if len(events) > MAX_EVENTS_SHOWN:
        out.append(f'<p class="t">{e(_say(t, "more", len(events) - MAX_EVENTS_SHOWN))}</p>')
    # What a consumer needs ends here; how to check it all is for whoever opens the details.
    api = "/api/trace/" + quote(record.identifier)
    log = _say(t, "log" if trace.get("tree_head") else "log_untraced", view.log_size)
    out.append(f'<footer>{e(t["footer"].format(node=node))}<details id="details"><summary>'
               f'{e(t["details"])}</summary><p id="log" data-size="{view.log_size}">{e(log)}</p>')
    if why:
        out.append(f'<p>{e(t["why"])}:</p><ul id="why">'
                   + "".join(f"<li>{e(w)}</li>" for w in why) + "</ul>")
    out.append(f'<p>{e(t["check"])} <a href="{e(api)}">{e(api)}</a> · <code>idnode verify</code>'
               "</p></details></footer></main></body></html>")
    return "".join(out).encode()


def _say(t: Mapping[str, str], key: str, n: int, **kw: object) -> str:
    """t[key] with n (and kw) filled in, in its form for none or one when the language has
    one (`key_0`, `key_1`)."""
    form = f"{key}_0" if n == 0 else f"{key}_1" if n == 1 else key
    return t.get(form, t[key]).format(n=n, size=n, **kw)


def render_unknown(identifier: str, lang: str) -> bytes:
    """A code this node never registered: for a consumer, a warning sign in itself."""
    zh = lang == "zh"
    title = "未找到此标识码" if zh else "Code not found"
    text = ("此码未在标识解析节点注册，产品可能是仿冒品。请向销售方或市场监管部门核实。" if zh else
            "This code is not registered with the identifier resolution node: the product may be "
            "counterfeit. Check with the seller or the market regulator.")
    return (f'<!doctype html><html lang="{_T[lang]["lang"]}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{title}</title><style>{_CSS}</style></head><body><main>'
            f'<h1>{title}</h1><div class="status bad" id="status" data-status="unknown" '
            f'role="alert"><b>⚠ {title}</b>{text}</div><div class="code">'
            f'{html.escape(identifier)}</div></main></body></html>').encode()


def _event(ev: Mapping[str, Any], identifier: str, failures: Mapping[int, Any],
           corrected: Mapping[int, int], number: Mapping[int, int], t: Mapping[str, str],
           zh: bool) -> str:
    e = html.escape
    leaf = ev["leaf"]
    kind_zh, kind_en = _KINDS.get(ev["kind"], (ev["kind"], ev["kind"]))
    classes = ["ev"]
    if leaf in failures:
        classes.append("bad")
    if ev["kind"] == "recall":
        classes.append("recall")
    if leaf in corrected:
        classes.append("corrected")
    mark = (f'<span class="m badm">✗ {t["event_bad"]}</span>' if leaf in failures
            else f'<span class="m okm">✓ {t["event_ok"]}</span>')
    when = _when(ev["occurred_at"])
    meta = [when] + ([ev["place"]] if ev.get("place") else [])
    if ev["identifier"] != identifier:
        meta.append(f'{t["via"]} {ev["identifier"]}')
    notes = []
    if leaf in corrected:
        notes.append(t["corrected_by"].format(n=number.get(corrected[leaf], "?")))
    if ev.get("corrects") is not None:
        notes.append(t["corrects"].format(n=number.get(ev["corrects"], "?")))
    attrs = "".join(
        f"<dt>{e(_ATTRS.get(k, (k, k))[0 if zh else 1])}</dt><dd>{e(_value(v, zh))}</dd>"
        for k, v in (ev.get("attrs") or {}).items())
    files = "".join(
        f'<a href="/api/attachments/{e(a["sha256"])}">{t["attachment"]} '
        f'({e(a["media_type"])}, {int(a["size"]) // 1024 + 1} KB)</a> '
        for a in ev.get("attachments") or ())
    shown = t["event_no"].format(n=number.get(leaf, "?"))
    return (f'<li class="{" ".join(classes)}" data-leaf="{leaf}">{mark}'
            f'<span class="n">{e(shown)}</span><div class="k">{e(kind_zh if zh else kind_en)}'
            '</div>'
            f'<div class="t">{e(" · ".join(meta))}</div>'
            + (f'<div class="t">{e("; ".join(notes))}</div>' if notes else "")
            + (f'<dl class="a">{attrs}</dl>' if attrs else "")
            + (f'<div class="a">{files}</div>' if files else "") + "</li>")


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(CST).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _value(v: Any, zh: bool) -> str:
    if isinstance(v, (bool, str)) and v in _VALUES:
        return _VALUES[v][0 if zh else 1]
    if isinstance(v, dict):
        text = ", ".join(f"{k}: {_value(x, zh)}" for k, x in v.items())
    elif isinstance(v, list):
        text = ", ".join(_value(x, zh) for x in v)
    else:
        text = str(v)
    return text if len(text) <= MAX_ATTR_CHARS else text[:MAX_ATTR_CHARS] + "…"


def _grams(text: str | None) -> str | None:
    if not text:
        return None
    try:
        grams = int(text)
    except ValueError:
        return text
    return f"{grams / 1000:g} kg" if grams >= 1000 else f"{grams} g"
