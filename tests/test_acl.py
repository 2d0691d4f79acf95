"""consim.acl: Consul's decisions and exact refusal texts (acl/errors.go)."""

from __future__ import annotations

import json

import pytest

from consim.acl import (
    ANONYMOUS_ACCESSOR_ID,
    ACLConfig,
    ACLConfigError,
    ACLNotFound,
    PermissionDenied,
)

OPS = "8f4b2a6e-0000-4000-8000-000000000001"
SUFFIX = ". The anonymous token is used implicitly when a request does not specify a token."


def config(**over) -> ACLConfig:
    obj = {
        "enabled": True,
        "default_policy": "deny",
        "initial_management": "root",
        "tokens": [
            {
                "accessor_id": OPS,
                "secret_id": "ops",
                "description": "operators",
                "operator": "write",
                "keyring": "read",
                "key_prefix": {"": "read", "app/": "write", "app/secret/": "deny", "l/": "list"},
            }
        ],
    }
    obj.update(over)
    return ACLConfig.from_dict(obj)


def denied(cfg: ACLConfig, token: str, *args) -> str:
    with pytest.raises(PermissionDenied) as info:
        cfg.resolve(token).require(*args)
    return info.value.message


def test_named_token_text():
    assert denied(config(), "ops", "keyring", "write") == (
        f"Permission denied: token with AccessorID '{OPS}' lacks permission 'keyring:write'"
    )


def test_anonymous_text():
    assert denied(config(), "", "keyring", "read") == (
        "Permission denied: anonymous token lacks permission 'keyring:read'" + SUFFIX
    )
    assert denied(config(), "", "operator", "write") == (
        "Permission denied: anonymous token lacks permission 'operator:write'" + SUFFIX
    )


def test_key_texts_name_the_key():
    assert denied(config(), "ops", "key", "write", "other") == (
        f"Permission denied: token with AccessorID '{OPS}' lacks permission 'key:write' on \"other\""
    )
    assert denied(config(), "", "key", "read", "foo") == (
        "Permission denied: anonymous token lacks permission 'key:read' on \"foo\"" + SUFFIX
    )


def test_unknown_token():
    with pytest.raises(ACLNotFound) as info:
        config().resolve("nope")
    assert info.value.message == "ACL not found" == str(info.value)


def test_write_implies_read():
    authz = config().resolve("ops")
    authz.require("operator", "read")
    authz.require("operator", "write")
    authz.require("keyring", "read")
    assert not authz.allowed("keyring", "write")


def test_longest_prefix_wins():
    authz = config().resolve("ops")
    assert authz.allowed("key", "read", "x")
    assert not authz.allowed("key", "write", "x")
    assert authz.allowed("key", "write", "app/x")
    assert not authz.allowed("key", "read", "app/secret/x")
    assert authz.allowed("key", "write", "app/secre")
    # Consul's enforce: list grants list and read; read does not grant list.
    assert authz.allowed("key", "list", "l/a") and authz.allowed("key", "read", "l/a")
    assert not authz.allowed("key", "list", "x")
    assert not authz.key_write_prefix("app/")  # a deny beneath the prefix
    assert authz.key_write_prefix("app/x/")


@pytest.mark.parametrize(("policy", "expected"), [("allow", True), ("deny", False)])
def test_default_policy(policy, expected):
    cfg = config(default_policy=policy)
    anon = cfg.resolve("")
    assert anon.allowed("operator", "write") is expected
    assert anon.allowed("key", "write", "k") is expected
    # A rule beats the default policy.
    assert cfg.resolve("ops").allowed("keyring", "write") is False
    assert cfg.resolve("ops").allowed("operator", "write") is True


def test_anonymous_token_rules():
    cfg = config(
        tokens=[
            {"accessor_id": ANONYMOUS_ACCESSOR_ID, "secret_id": "anonymous", "operator": "read"}
        ]
    )
    assert cfg.resolve("").allowed("operator", "read")
    assert not cfg.resolve("").allowed("operator", "write")


def test_disabled_allows_everything_even_unknown_tokens():
    cfg = config(enabled=False)
    for token in ("", "nope", "ops"):
        cfg.resolve(token).require("operator", "write")
        cfg.resolve(token).require("key", "write", "app/secret/x")
    assert ACLConfig().resolve("x").allowed("keyring", "write")


def test_initial_management_has_every_right():
    authz = config().resolve("root")
    for resource in ("operator", "keyring"):
        authz.require(resource, "write")
    authz.require("key", "write", "app/secret/x")
    assert authz.key_write_prefix("")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"default_policy": "maybe"}, "acl.default_policy"),
        ({"enabled": "yes"}, "acl.enabled"),
        ({"bogus": 1}, "acl.bogus"),
        ({"tokens": [{"secret_id": "s"}]}, "acl.tokens[0].accessor_id"),
        ({"tokens": [{"accessor_id": "a", "secret_id": "s", "operator": "all"}]}, "acl.tokens[0].operator"),
        ({"tokens": [{"accessor_id": "a", "secret_id": "s", "key_prefix": {"x": "rw"}}]}, "acl.tokens[0].key_prefix.'x'"),
        ({"tokens": [{"accessor_id": "a", "secret_id": "root"}]}, "acl.tokens[0].secret_id"),
        ({"tokens": [{"accessor_id": "a", "secret_id": "s", "extra": 1}]}, "acl.tokens[0].extra"),
    ],
)  # fmt: skip
def test_from_dict_errors_name_the_field(change, field):
    with pytest.raises(ACLConfigError) as info:
        config(**change)
    assert f": {field}:" in str(info.value)


def test_load_json(tmp_path):
    path = tmp_path / "acl.json"
    path.write_text(
        json.dumps(
            {
                "enabled": True,
                "default_policy": "deny",
                "tokens": [{"accessor_id": "a1", "secret_id": "s1", "keyring": "write"}],
            }
        )
    )
    cfg = ACLConfig.load(path)
    assert cfg.resolve("s1").allowed("keyring", "write")
    assert not cfg.resolve("").allowed("keyring", "read")


def test_load_toml_with_acl_table(tmp_path):
    path = tmp_path / "scenario.toml"
    path.write_text(
        """
name = "x"
[acl]
enabled = true
default_policy = "deny"
initial_management = "root"

[[acl.tokens]]
accessor_id = "a1"
secret_id = "s1"
key_prefix = { "" = "read", "app/" = "write" }
"""
    )
    cfg = ACLConfig.load(path)
    assert cfg.resolve("s1").allowed("key", "write", "app/1")
    assert cfg.resolve("root").allowed("operator", "write")


def test_load_toml_bad_field(tmp_path):
    path = tmp_path / "acl.toml"
    path.write_text(
        'enabled = true\n[[tokens]]\naccessor_id = "a"\nsecret_id = "s"\nkeyring = "admin"\n'
    )
    with pytest.raises(ACLConfigError) as info:
        ACLConfig.load(path)
    assert str(path) in str(info.value) and "acl.tokens[0].keyring" in str(info.value)


def test_load_bad_syntax(tmp_path):
    path = tmp_path / "acl.json"
    path.write_text("{nope")
    with pytest.raises(ACLConfigError, match="acl.json"):
        ACLConfig.load(path)


def test_agent_and_node_prefix_rules():
    acl = ACLConfig.from_dict(
        {
            "enabled": True,
            "default_policy": "deny",
            "tokens": [
                {
                    "accessor_id": OPS,
                    "secret_id": "t",
                    "agent_prefix": {"": "read", "dc1-s1": "write"},
                    "node_prefix": {"dc1-": "read", "dc1-s3": "deny"},
                }
            ],
        }
    )
    a = acl.resolve("t")
    assert a.allowed("agent", "read", "dc2-s9") and not a.allowed("agent", "write", "dc2-s9")
    assert a.allowed("agent", "write", "dc1-s1")
    assert a.allowed("node", "read", "dc1-s2") and not a.allowed("node", "read", "dc1-s3")
    assert not a.allowed("node", "read", "dc2-s1")  # no rule: default deny
    with pytest.raises(PermissionDenied) as info:
        a.require("agent", "write", "dc1-s2")
    assert str(info.value) == (
        f"Permission denied: token with AccessorID '{OPS}' lacks permission 'agent:write' on \"dc1-s2\""
    )


@pytest.mark.parametrize("name", ["agent_prefix", "node_prefix"])
def test_agent_and_node_prefix_levels_exclude_list(name):
    bad = {"accessor_id": OPS, "secret_id": "t", name: {"": "list"}}
    with pytest.raises(ACLConfigError) as info:
        ACLConfig.from_dict({"enabled": True, "tokens": [bad]})
    assert str(info.value) == (
        f"acl config: acl.tokens[0].{name}.'': must be one of read, write, deny, not 'list'"
    )


def test_key_write_prefix_and_filtering():
    a = config().resolve("ops")
    assert not a.key_write_prefix("app/")  # app/secret/ beneath is deny
    assert a.key_write_prefix("app/other/")
    assert not a.key_write_prefix("")  # "" is read only
    with pytest.raises(PermissionDenied) as info:
        a.require_key_write_prefix("app/")
    assert str(info.value).endswith("lacks permission 'key:write' on \"app/\"")
    keys = ["app/a", "app/secret/pw", "l/x", "zzz"]
    assert a.filter_keys(keys) == ["app/a", "l/x", "zzz"]
    assert config().resolve("root").filter_keys(keys) == keys


def test_readme_acl_file_example_loads(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### ACL file", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "acl.toml"
    path.write_text(example)
    acl = ACLConfig.load(path)
    token = acl.resolve("ops-secret")
    assert token.allowed("agent", "read", "dc1-s1") and token.allowed("node", "read", "dc1-s2")
    assert not token.key_write_prefix("app/")
