"""An NSG program on the wire (inside the host document) comes back as the same typed program."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import TypeAdapter, ValidationError

from isthmus.compile.security_rules import compile_nsg
from isthmus.model.documents import SecurityProgram, to_json
from isthmus.model.nsg import NsgContext
from tests.unit.test_security_rules import rule_sets

WIRE = TypeAdapter(SecurityProgram)
CONTEXT = NsgContext((ip_network("100.64.0.0/16"), ip_network("2001:db8:64::/48")), (ip_network("198.18.255.254/32"),))


@settings(max_examples=100, deadline=None)
@given(rules=rule_sets())
def test_compile_then_json_then_type_adapter_is_the_same_program(rules: list[dict[str, Any]]) -> None:
    program = compile_nsg(rules, CONTEXT)
    back = WIRE.validate_python(to_json(SecurityProgram("nsg", "vnet", program))).program
    assert back == program
    assert [type(p) for r in back.inbound for p in r.source_prefixes] == [
        type(p) for r in program.inbound for p in r.source_prefixes
    ]


def test_a_prefix_that_is_not_a_network_is_refused() -> None:
    wire = to_json(SecurityProgram("nsg", "vnet", compile_nsg([], CONTEXT)))
    for bad in ("100.64.1.1/16", "nonsense", 42):
        wire["program"]["inbound"][0]["sourcePrefixes"] = [bad]
        with pytest.raises(ValidationError):
            WIRE.validate_python(wire)
