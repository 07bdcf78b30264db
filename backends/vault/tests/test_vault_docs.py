"""What docs/backends/vault.md tells people to do works as written."""

from __future__ import annotations

import json
import re

from maskinporten_auth_vault import policy

from maskinporten_auth.cli import main
from maskinporten_auth.jwk import public_key_from_jwk


def test_documented_policy_is_the_one_the_hints_give(vault_repo_root):
    page = (vault_repo_root / "docs" / "backends" / "vault.md").read_text()

    hcl_blocks = re.findall(r"```hcl\n(.*?)```", page, flags=re.DOTALL)

    assert hcl_blocks == [policy("transit", "maskinporten")]


def test_cli_exports_the_public_jwk_with_a_least_privilege_token(
    vault_env, vault_new_key, vault_least_privilege_token, vault_public_key, monkeypatch, capsys
):
    name = vault_new_key()
    monkeypatch.setenv("VAULT_TOKEN", vault_least_privilege_token(name))

    status = main(["jwk", f"vault-transit://transit/{name}?version=1", "--kid", "mp-2026-1"])

    jwk = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("mp-2026-1", "RS256", "sig")
    assert public_key_from_jwk(jwk).public_numbers() == vault_public_key(name).public_numbers()
