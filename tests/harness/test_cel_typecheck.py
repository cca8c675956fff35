"""CRD rules that kube-apiserver refuses to compile are refused by the emulator too, with the same
message (tests/harness/cel_check.py).

Every expected message below is what kube-apiserver 1.36 (shared/k8s) answered for the same CRD,
with the random `selfType<N>` type name replaced by `selfType`; tests/e2e/test_crds_e2e.py applies
the same CRDs to a real server and checks that it still answers so.
"""

# ruff: noqa: E501  (the expected messages are the server's, line for line)

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import Configuration

from deep_platform import kube as k
from tests.harness import cel_check
from tests.harness.apiserver import ApiServer

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

#: the schema of the probe CRD's spec: one field of each kind the CEL type model treats apart
SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # a map of untyped values: no CEL type, the field is dropped (the TrainingJob CRD's hole)
        "hp": {"type": "object", "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}},
        # an object with no declared fields: no field can be read, size() has no overload
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "untyped": {"x-kubernetes-preserve-unknown-fields": True},
        "empty": {"type": "object"},
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "integer"}}}},
        "ios": {"x-kubernetes-int-or-string": True},
        "when": {"type": "string", "format": "date-time"},
        "my-field": {"type": "string"},
    },
}

#: rules tried at the resource root rather than on spec
ROOT_RULES = ("self.metadata.name == 'a'", "self.metadata.labels.a == 'b'", "self.kind == 'Probe'")


def probe_crd(rule: str, name: str = "probes.example.com") -> dict[str, Any]:
    """A CRD whose second rule is `rule` (on spec, or on the root for ROOT_RULES)."""
    spec = copy.deepcopy(SPEC_SCHEMA)
    root: dict[str, Any] = {"type": "object", "properties": {"spec": spec}}
    (root if rule in ROOT_RULES else spec)["x-kubernetes-validations"] = [{"rule": "true"}, {"rule": rule}]
    plural, group = name.split(".", 1)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": "Probe"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": root}}
            ],
        },
    }


def expected_message(rule: str, detail: str, name: str = "probes.example.com") -> str:
    where = "spec.validation.openAPIV3Schema" + ("" if rule in ROOT_RULES else ".properties[spec]")
    return (
        f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
        f"{where}.x-kubernetes-validations[1].rule: Invalid value: {cel_check.go_rule({'rule': rule})}: {detail}"
    )


def normalized(message: str) -> str:
    return re.sub(r"selfType\d+", "selfType", message)


def refusal(api: k.Kube, crd: dict[str, Any]) -> tuple[int, str] | None:
    """(status, message) of a dry-run create of the CRD, None when it is accepted."""
    try:
        api.request("POST", CRDS, crd, query={"dryRun": "All"})
    except k.ApiError as e:
        return e.status, normalized(e.message)
    return None


#: rule -> what kube-apiserver 1.36 answers after "Invalid value: <the rule>: "
BAD_RULES: dict[str, str] = {
    "has(self.hp)": (
        "compilation failed: ERROR: <input>:1:4: undefined field 'hp'\n"
        " | has(self.hp)\n"
        " | ...^"
    ),
    "self.hp.size() == 0": (
        "compilation failed: ERROR: <input>:1:5: undefined field 'hp'\n"
        " | self.hp.size() == 0\n"
        " | ....^"
    ),
    "size(self.free) == 0": (
        "compilation failed: ERROR: <input>:1:5: found no matching overload for 'size' applied to '(selfType.free)'\n"
        " | size(self.free) == 0\n"
        " | ....^"
    ),
    "self.free.size() == 0": (
        "compilation failed: ERROR: <input>:1:15: found no matching overload for 'size' applied to 'selfType.free.()'\n"
        " | self.free.size() == 0\n"
        " | ..............^"
    ),
    "self.free.x == 1": (
        "compilation failed: ERROR: <input>:1:10: undefined field 'x'\n"
        " | self.free.x == 1\n"
        " | .........^"
    ),
    "self.untyped == 1": (
        "compilation failed: ERROR: <input>:1:5: undefined field 'untyped'\n"
        " | self.untyped == 1\n"
        " | ....^"
    ),
    "self.nosuch == 1": (
        "compilation failed: ERROR: <input>:1:5: undefined field 'nosuch'\n"
        " | self.nosuch == 1\n"
        " | ....^"
    ),
    "has(self.empty.x)": (
        "compilation failed: ERROR: <input>:1:4: undefined field 'x'\n"
        " | has(self.empty.x)\n"
        " | ...^"
    ),
    "self.items.all(x, x.w > 0)": (
        "compilation failed: ERROR: <input>:1:20: undefined field 'w'\n"
        " | self.items.all(x, x.w > 0)\n"
        " | ...................^"
    ),
    "self.items[0].w == 1": (
        "compilation failed: ERROR: <input>:1:14: undefined field 'w'\n"
        " | self.items[0].w == 1\n"
        " | .............^"
    ),
    "self.metadata.labels.a == 'b'": (
        "compilation failed: ERROR: <input>:1:14: undefined field 'labels'\n"
        " | self.metadata.labels.a == 'b'\n"
        " | .............^"
    ),
    "has(self.name.x)": (
        "compilation failed: ERROR: <input>:1:4: type 'string' does not support field selection\n"
        " | has(self.name.x)\n"
        " | ...^"
    ),
    "self.items.w == 1": (
        "compilation failed: ERROR: <input>:1:11: type 'list(selfType.items.@idx)' does not support field selection\n"
        " | self.items.w == 1\n"
        " | ..........^"
    ),
    "size(self.count) == 1": (
        "compilation failed: ERROR: <input>:1:5: found no matching overload for 'size' applied to '(int)'\n"
        " | size(self.count) == 1\n"
        " | ....^"
    ),
    "self.count.size() > 0": (
        "compilation failed: ERROR: <input>:1:16: found no matching overload for 'size' applied to 'int.()'\n"
        " | self.count.size() > 0\n"
        " | ...............^"
    ),
    "self.name.startsWith(1)": (
        "compilation failed: ERROR: <input>:1:21: found no matching overload for 'startsWith' applied to 'string.(int)'\n"
        " | self.name.startsWith(1)\n"
        " | ....................^"
    ),
    "self.count + 'a' == 'b'": (
        "compilation failed: ERROR: <input>:1:12: found no matching overload for '_+_' applied to '(int, string)'\n"
        " | self.count + 'a' == 'b'\n"
        " | ...........^"
    ),
    "self.count == 1.0": (
        "compilation failed: ERROR: <input>:1:12: found no matching overload for '_==_' applied to '(int, double)'\n"
        " | self.count == 1.0\n"
        " | ...........^"
    ),
    "self.name == null": (
        "compilation failed: ERROR: <input>:1:11: found no matching overload for '_==_' applied to '(string, null)'\n"
        " | self.name == null\n"
        " | ..........^"
    ),
    "!self.count": (
        "compilation failed: ERROR: <input>:1:1: found no matching overload for '!_' applied to '(int)'\n"
        " | !self.count\n"
        " | ^"
    ),
    "-self.name == 1": (
        "compilation failed: ERROR: <input>:1:1: found no matching overload for '-_' applied to '(string)'\n"
        " | -self.name == 1\n"
        " | ^"
    ),
    "self.count == 1 ? 'a' : 1": (
        "compilation failed: ERROR: <input>:1:17: found no matching overload for '_?_:_' applied to '(bool, string, int)'\n"
        " | self.count == 1 ? 'a' : 1\n"
        " | ................^"
    ),
    "self.name[0] == 'a'": (
        "compilation failed: ERROR: <input>:1:10: found no matching overload for '_[_]' applied to '(string, int)'\n"
        " | self.name[0] == 'a'\n"
        " | .........^"
    ),
    "'a' in self.name": (
        "compilation failed: ERROR: <input>:1:5: found no matching overload for '@in' applied to '(string, string)'\n"
        " | 'a' in self.name\n"
        " | ....^"
    ),
    "self.count < 'a'": (
        "compilation failed: ERROR: <input>:1:12: found no matching overload for '_<_' applied to '(int, string)'\n"
        " | self.count < 'a'\n"
        " | ...........^"
    ),
    "self.items.all(x, x.v == 'a')": (
        "compilation failed: ERROR: <input>:1:23: found no matching overload for '_==_' applied to '(int, string)'\n"
        " | self.items.all(x, x.v == 'a')\n"
        " | ......................^"
    ),
    "nosuchfn(self.name)": (
        "compilation failed: ERROR: <input>:1:9: undeclared reference to 'nosuchfn' (in container '')\n"
        " | nosuchfn(self.name)\n"
        " | ........^"
    ),
    "self.foo(1)": (
        "compilation failed: ERROR: <input>:1:9: undeclared reference to 'foo' (in container '')\n"
        " | self.foo(1)\n"
        " | ........^"
    ),
    "self.nosuch == 1 && self.other == 2": (
        "compilation failed: ERROR: <input>:1:5: undefined field 'nosuch'\n"
        " | self.nosuch == 1 && self.other == 2\n"
        " | ....^\n"
        "ERROR: <input>:1:25: undefined field 'other'\n"
        " | self.nosuch == 1 && self.other == 2\n"
        " | ........................^"
    ),
    "self.name": (
        "cel expression must evaluate to a bool"
    ),
    "self.ios": (
        "cel expression must evaluate to a bool"
    ),
    "self.name ==": (
        "compilation failed: ERROR: <input>:1:13: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n"
        " | self.name ==\n"
        " | ............^"
    ),
    "(self.name": (
        "compilation failed: ERROR: <input>:1:11: Syntax error: missing ')' at '<EOF>'\n"
        " | (self.name\n"
        " | ..........^"
    ),
    "self.name b": (
        "compilation failed: ERROR: <input>:1:11: Syntax error: extraneous input 'b' expecting <EOF>\n"
        " | self.name b\n"
        " | ..........^"
    ),
    "1 +* 2": (
        "compilation failed: ERROR: <input>:1:4: Syntax error: extraneous input '*' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n"
        " | 1 +* 2\n"
        " | ...^"
    ),
    "self.name = 'a'": (
        "compilation failed: ERROR: <input>:1:11: Syntax error: token recognition error at: '= '\n"
        " | self.name = 'a'\n"
        " | ..........^\n"
        "ERROR: <input>:1:13: Syntax error: extraneous input ''a'' expecting <EOF>\n"
        " | self.name = 'a'\n"
        " | ............^"
    ),
    "has(self)": (
        "compilation failed: ERROR: <input>:1:5: invalid argument to has() macro\n"
        " | has(self)\n"
        " | ....^"
    ),
    "has(self.name[0])": (
        "compilation failed: ERROR: <input>:1:14: invalid argument to has() macro\n"
        " | has(self.name[0])\n"
        " | .............^"
    ),
}

#: rules kube-apiserver 1.36 compiles
GOOD_RULES: list[str] = [
    "self.items.all(x, x.v > 0)",
    "self.labels.foo == 'a'",
    "has(self.labels.foo)",
    "self.ios == 1",
    "self.my__dash__field == 'a'",
    "self.metadata.name == 'a'",
    "self.kind == 'Probe'",
    "self.count > 1.0",
    "self.ratio > 1",
    "self.name.matches('a') && self.name.size() < 3",
    "has(self.name) ? self.name.size() > 1 : true",
    "self.name in ['a', 'b']",
    "self.name in self.labels",
    "self.count in [1, 2]",
    "self.items[0].v == 1",
    "self.labels['a'] == 'b'",
    "!self.flag",
    "self.name.lowerAscii() == 'a'",
    "int(self.name) == 1",
    "self.?name.orValue('') == ''",
    "0x10 == 16 && 1e3 > 1.0 && r'a\\d' != '' && b'x' != b'y'",
    "{'a': 1}['a'] == 1",
    "self.items.size() > 0 && size(self.labels) > 0 && self.name.size() > 0",
    "self.labels.all(k, k.startsWith('a'))",
    "self.free == null",
    "type(self.ios) == string",
    "self.when < timestamp('2020-01-01T00:00:00Z')",
    "self.items == []",
    "self == oldSelf",
    "self.name == oldSelf.name",
    "has(self.items) && self.items.exists_one(x, x.v == 1)",
    "self.labels.a.size() > 1",
    "self.labels.exists(k, self.labels[k] == 'x')",
    "self.name.split('-').size() > 0",
    "quantity('1Gi').isGreaterThan(quantity('1Mi'))",
    "url('http://x').getHost() == 'x'",
    "isURL(self.name)",
]


@pytest.fixture(scope="module")
def emulator() -> Iterator[k.Kube]:
    with ApiServer.running() as server:
        configuration = Configuration()
        configuration.host = server.url
        yield k.Kube(configuration, component="test")


@pytest.mark.parametrize("rule", list(BAD_RULES))
def test_emulator_refuses_a_rule_the_real_server_cannot_compile(emulator: k.Kube, rule: str) -> None:
    assert refusal(emulator, probe_crd(rule)) == (422, expected_message(rule, BAD_RULES[rule]))


@pytest.mark.parametrize("rule", GOOD_RULES)
def test_emulator_accepts_a_rule_the_real_server_compiles(emulator: k.Kube, rule: str) -> None:
    assert refusal(emulator, probe_crd(rule)) is None


def trainingjob_crd_with_the_hole() -> dict[str, Any]:
    """The TrainingJob CRD as before 8b7c738: hyperparameters a map of untyped values, named by a rule."""
    from deep_platform.api.crdgen import KINDS, crd

    hole = copy.deepcopy(crd(next(kind for kind in KINDS if kind.crd.kind == "TrainingJob")))
    for version in hole["spec"]["versions"]:
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["hyperparameters"] = {
            "type": "object",
            "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True},
        }
        spec["x-kubernetes-validations"].append(
            {"rule": "!has(self.command) || !has(self.hyperparameters) || size(self.hyperparameters) == 0"}
        )
    return hole


def test_the_trainingjob_crd_of_issue_12_is_refused_and_the_generated_ones_accepted(emulator: k.Kube) -> None:
    from deep_platform.api.crdgen import KINDS, crd

    for kind in KINDS:
        assert refusal(emulator, crd(kind)) is None
    refused = refusal(emulator, trainingjob_crd_with_the_hole())
    assert refused is not None and refused[0] == 422
    assert "compilation failed: ERROR: <input>:1:27: undefined field 'hyperparameters'" in refused[1]
    assert "ERROR: <input>:1:62: undefined field 'hyperparameters'" in refused[1]


def test_an_update_is_checked_too(emulator: k.Kube) -> None:
    created = emulator.request("POST", CRDS, probe_crd("self.count > 0", "updprobes.example.com"))
    try:
        bad = copy.deepcopy(created)
        rules = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "x-kubernetes-validations"
        ]
        rules[1]["rule"] = "size(self.free) == 0"
        with pytest.raises(k.ApiError) as refused:
            emulator.request("PUT", f"{CRDS}/updprobes.example.com", bad)
        assert refused.value.status == 422
        assert "found no matching overload for 'size' applied to '(selfType" in refused.value.message
    finally:
        emulator.request("DELETE", f"{CRDS}/updprobes.example.com")


def test_versions_with_different_schemas_are_reported_under_spec_versions() -> None:
    crd = probe_crd("self.nosuch == 1")
    v2 = copy.deepcopy(crd["spec"]["versions"][0])
    v2.update(name="v2", storage=False)
    v2["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = []
    crd["spec"]["versions"].append(v2)
    assert [where for where, _ in cel_check.check_crd(crd)] == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[1].rule"
    ]


def test_schema_types_follow_the_apiserver() -> None:
    t = cel_check.schema_type(SPEC_SCHEMA, "selfType1")
    assert t is not None and t.kind == "object"
    assert "hp" not in t.fields and "untyped" not in t.fields  # no type: dropped
    assert str(t.fields["free"]) == "selfType1.free" and not t.fields["free"].fields
    assert str(t.fields["labels"]) == "map(string, string)"
    assert str(t.fields["items"]) == "list(selfType1.items.@idx)"
    assert str(t.fields["when"]) == "google.protobuf.Timestamp"
    assert str(t.fields["ios"]) == "dyn"
    assert "my__dash__field" in t.fields
