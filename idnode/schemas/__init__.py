"""The XML schemas idnode speaks (EPP, escrow deposits), as versioned files beside this module
(README.md names each one's source), and the validators made from them."""
from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

DIR = Path(__file__).parent

EPP = "urn:ietf:params:xml:ns:epp-1.0"
EPPCOM = "urn:ietf:params:xml:ns:eppcom-1.0"
IID = "urn:idnode:params:xml:ns:iid-1.0"
ENT = "urn:idnode:params:xml:ns:ent-1.0"
RDE = "urn:ietf:params:xml:ns:rde-1.0"
RDE_HEADER = "urn:ietf:params:xml:ns:rdeHeader-1.0"
RDE_IID = "urn:idnode:params:xml:ns:rdeIid-1.0"
RDE_ENT = "urn:idnode:params:xml:ns:rdeEnt-1.0"
RDE_REPORT = "urn:idnode:params:xml:ns:rdeReport-1.0"

_FILES = {EPP: "epp-1.0.xsd", EPPCOM: "eppcom-1.0.xsd", IID: "iid-1.0.xsd",
          ENT: "ent-1.0.xsd", RDE: "rde-1.0.xsd", RDE_HEADER: "rdeHeader-1.0.xsd",
          RDE_IID: "rdeIid-1.0.xsd", RDE_ENT: "rdeEnt-1.0.xsd",
          RDE_REPORT: "rdeReport-1.0.xsd"}


class SchemaViolation(ValueError):
    """A document that the schemas refuse; the message names the line and the rule."""


#: Untrusted XML from the wire: no DTDs, no entities, no network, no huge trees.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                         huge_tree=False, remove_blank_text=True)


def parse(data: bytes) -> etree._Element:
    """A document from the wire or a file; SchemaViolation when it is not well-formed XML."""
    try:
        return etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError as exc:
        raise SchemaViolation(f"not well-formed XML: {exc}") from None


@functools.cache
def _schema(*namespaces: str) -> etree.XMLSchema:
    # One driver schema importing each namespace's file: `any` wildcards in EPP and the
    # escrow framework are then checked strictly against the object mappings.
    imports = "".join(f'<xs:import namespace="{ns}" schemaLocation="{_FILES[ns]}"/>'
                      for ns in namespaces)
    driver = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
              f'targetNamespace="urn:idnode:driver">{imports}</xs:schema>')
    doc = etree.fromstring(driver.encode(), base_url=(DIR / "driver.xsd").as_uri())
    return etree.XMLSchema(doc)


def epp_schema() -> etree.XMLSchema:
    return _schema(EPP, IID, ENT)


def rde_schema() -> etree.XMLSchema:
    return _schema(RDE, RDE_HEADER, RDE_IID, RDE_ENT)


def report_schema() -> etree.XMLSchema:
    return _schema(RDE_REPORT)


def check(doc: etree._Element, schema: etree.XMLSchema) -> None:
    """Raises SchemaViolation unless `doc` is valid."""
    if not schema.validate(doc):
        err = schema.error_log.last_error
        raise SchemaViolation(f"line {err.line}: {err.message}" if err else "invalid")
