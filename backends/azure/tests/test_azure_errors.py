"""What goes wrong with Key Vault, as the real SDK reports it, and how the signer explains it."""

from __future__ import annotations

import socket
import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.keyvault.keys import KeyClient
from maskinporten_auth_azure import AzureKeyVaultSigner
from maskinporten_auth_azure import testing as fkv

from maskinporten_auth import ConfigurationError, SigningError


def new_caller(server, permissions, **kwargs) -> fkv.StaticTokenCredential:
    token = "akv-caller-" + uuid.uuid4().hex
    server.add_caller(token, permissions, **kwargs)
    return fkv.StaticTokenCredential(token)


def assert_no_secret(exc: BaseException, credential: fkv.StaticTokenCredential) -> None:
    assert credential.token not in str(exc)
    assert credential.token not in repr(exc)


@pytest.mark.parametrize("permissions", [set(), {"keys/get"}], ids=["no-role-at-all", "can-read-but-not-sign"])
def test_403_names_the_rbac_role_and_the_access_policy_permissions(
    akv_server, akv_rsa_key, akv_make_signer, permissions
):
    credential = new_caller(akv_server, permissions)
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), credential=credential)

    with pytest.raises(SigningError) as caught:
        akv_signer.sign(b"x")

    error = caught.value
    assert error.backend == "azure-key-vault"
    assert "access denied (403)" in error.message
    assert "Caller is not authorized" in error.message
    action = "keys/read" if not permissions else "keys/sign/action"
    assert f"(Action: 'Microsoft.KeyVault/vaults/{action}')" in error.message
    assert "Key Vault Crypto User" in error.hint
    assert "'sign' and 'get'" in error.hint
    assert error.key.startswith(akv_server.key_url(akv_rsa_key.name))
    assert_no_secret(error, credential)


@pytest.mark.asyncio
async def test_403_on_the_async_path_for_a_vault_with_access_policies(akv_server, akv_rsa_key, akv_make_signer):
    credential = new_caller(akv_server, {"keys/get"}, model="access-policy")
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), credential=credential)

    with pytest.raises(SigningError, match="does not have keys sign permission") as caught:
        await akv_signer.asign(b"x")

    assert "Key Vault Crypto User" in caught.value.hint
    assert_no_secret(caught.value, credential)


@pytest.mark.parametrize("versioned", [False, True])
def test_key_not_found(akv_server, akv_make_signer, versioned):
    key_id = akv_server.key_url("no-such-key") + ("/0123456789abcdef0123456789abcdef" if versioned else "")
    akv_signer = akv_make_signer(key_id)

    with pytest.raises(SigningError, match="key not found: A key with \\(name/id\\) no-such-key") as caught:
        akv_signer.sign(b"x")

    assert "check the vault URL" in caught.value.hint
    with pytest.raises(SigningError, match="key not found"):
        akv_signer.public_jwk()


@pytest.mark.asyncio
async def test_key_not_found_on_the_async_path(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name) + "/ffffffffffffffffffffffffffffffff")

    with pytest.raises(SigningError, match="key not found"):
        await akv_signer.asign(b"x")


def test_a_disabled_key_is_refused_before_signing(akv_server, akv_make_signer):
    key = akv_server.create_rsa_key("mp-disabled-" + uuid.uuid4().hex[:8], enabled=False)
    akv_signer = akv_make_signer(akv_server.key_url(key))
    signs_before = akv_server.sign_count

    with pytest.raises(SigningError, match="the key is disabled") as caught:
        akv_signer.sign(b"x")

    assert "--enabled true" in caught.value.hint
    assert akv_server.sign_count == signs_before


@pytest.mark.asyncio
async def test_a_key_disabled_after_first_use_gives_key_vaults_keydisabled(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))
    akv_signer.sign(b"while enabled")
    akv_server.set_enabled(akv_rsa_key, False)

    with pytest.raises(SigningError, match="the key is disabled"):
        akv_signer.sign(b"x")
    with pytest.raises(SigningError, match="the key is disabled"):
        await akv_signer.asign(b"x")


def test_a_key_without_the_sign_operation(akv_server, akv_make_signer):
    key = akv_server.create_rsa_key("mp-nosign-" + uuid.uuid4().hex[:8], key_ops=("encrypt", "decrypt"))
    akv_signer = akv_make_signer(akv_server.key_url(key))

    with pytest.raises(SigningError, match=r"does not permit the sign operation \(permitted: encrypt, decrypt\)") as c:
        akv_signer.sign(b"x")

    assert "--ops sign" in c.value.hint


@pytest.mark.asyncio
async def test_an_ec_key_is_not_for_maskinporten(akv_server, akv_make_signer):
    key = akv_server.create_ec_key("mp-ec-" + uuid.uuid4().hex[:8])
    akv_signer = akv_make_signer(akv_server.key_url(key))

    for attempt in (lambda: akv_signer.sign(b"x"), akv_signer.public_jwk):
        with pytest.raises(SigningError, match="the key type is EC; Maskinporten needs an RSA key") as caught:
            attempt()
        assert "--kty RSA-HSM" in caught.value.hint
    with pytest.raises(SigningError, match="key type is EC"):
        await akv_signer.asign(b"x")


def test_a_key_of_1024_bits_is_refused(akv_server, akv_make_signer):
    key = akv_server.create_rsa_key("mp-small-" + uuid.uuid4().hex[:8], size=1024)

    with pytest.raises(ConfigurationError, match="1024 bits; at least 2048"):
        akv_make_signer(akv_server.key_url(key)).sign(b"x")


def test_a_failing_credential_gives_a_credentials_hint(akv_server, akv_rsa_key, akv_make_signer):
    class NoCredential:
        def get_token(self, *scopes, **kwargs):
            raise ClientAuthenticationError(
                "DefaultAzureCredential failed to retrieve a token from the included credentials."
            )

    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), credential=NoCredential())

    with pytest.raises(SigningError, match="could not authenticate to Key Vault: DefaultAzureCredential") as caught:
        akv_signer.sign(b"x")

    assert "az login" in caught.value.hint
    assert "credential=" in caught.value.hint


@pytest.mark.asyncio
async def test_a_token_the_vault_does_not_accept(akv_server, akv_rsa_key, akv_make_signer):
    credential = fkv.StaticTokenCredential("akv-unknown-" + uuid.uuid4().hex)
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), credential=credential)

    with pytest.raises(SigningError, match="could not authenticate to Key Vault") as caught:
        await akv_signer.asign(b"x")

    assert_no_secret(caught.value, credential)


def test_the_sdk_refuses_a_challenge_from_outside_vault_azure_net(akv_server, akv_rsa_key, azure_credential):
    """Without verify_challenge_resource=False the SDK raises ValueError for a vault on loopback."""
    with (
        KeyClient(akv_server.vault_url, azure_credential, connection_verify=akv_server.ca_file) as client,
        pytest.raises(ValueError, match="verify_challenge_resource=False"),
    ):
        client.get_key(akv_rsa_key.name)


def test_the_signer_explains_the_challenge_valueerror(akv_server, akv_rsa_key, azure_credential):
    akv_signer = AzureKeyVaultSigner(
        akv_server.key_url(akv_rsa_key), credential=azure_credential, connection_verify=akv_server.ca_file
    )

    with pytest.raises(SigningError, match="does not match the requested domain") as caught:
        akv_signer.sign(b"x")

    assert isinstance(caught.value.__cause__, ValueError)
    assert "verify_challenge_resource=False" in caught.value.hint


def test_an_unreachable_vault(azure_credential, akv_client_kwargs):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    akv_signer = AzureKeyVaultSigner(
        f"https://127.0.0.1:{port}/keys/mp", credential=azure_credential, retry_total=0, **akv_client_kwargs
    )

    with pytest.raises(SigningError, match="could not reach Key Vault") as caught:
        akv_signer.sign(b"x")

    assert "network" in caught.value.hint


@pytest.mark.parametrize(
    ("key_id", "problem"),
    [
        ("", "must be a Key Vault URL"),
        ("http://myvault.vault.azure.net/keys/mp", "must be an https URL"),
        ("https://myvault.vault.azure.net/secrets/mp", "must look like"),
        ("https://myvault.vault.azure.net/keys", "must look like"),
        ("https://myvault.vault.azure.net/keys/mp/v1/extra", "must look like"),
        ("https://myvault.vault.azure.net/keys/mp?api-version=7.4", "must not have"),
        ("https://user:pw@myvault.vault.azure.net/keys/mp", "must not have credentials"),
        ("https://myvault.vault.azure.net/keys/my_key", "is not a Key Vault name"),
        ("https://myvault.vault.azure.net/keys/mp/v-1", "is not a Key Vault object version"),
    ],
)
def test_bad_key_ids_fail_at_construction(key_id, problem):
    with pytest.raises(ConfigurationError, match=problem) as caught:
        AzureKeyVaultSigner(key_id)

    assert caught.value.field == "key_id"
    assert "pw@" not in str(caught.value)


def test_other_settings_fail_at_construction():
    with pytest.raises(ConfigurationError, match="algorithm"):
        AzureKeyVaultSigner("https://myvault.vault.azure.net/keys/mp", algorithm="ES256")
    with pytest.raises(ConfigurationError, match="kid"):
        AzureKeyVaultSigner("https://myvault.vault.azure.net/keys/mp", kid=" ")
