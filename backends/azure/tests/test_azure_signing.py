"""Signing with the real azure-keyvault-keys SDK against the TLS fake vault; every signature verified outside it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws
from maskinporten_auth_azure import AzureKeyVaultSigner, signer
from maskinporten_auth_azure import testing as fkv

from maskinporten_auth import ConfigurationError

ALGORITHMS = ["RS256", "RS384", "RS512"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sync_signatures_verify_outside_key_vault(akv_server, akv_rsa_key, akv_make_signer, algorithm):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), algorithm=algorithm)

    signature = akv_signer.sign(b"header.claims")

    fkv.verify_signature(akv_rsa_key.public_key(), algorithm, b"header.claims", signature)
    assert akv_signer.public_key().public_numbers() == akv_rsa_key.public_key().public_numbers()


@pytest.mark.asyncio
@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_async_signatures_verify_outside_key_vault(akv_server, akv_rsa_key, akv_make_signer, algorithm):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), algorithm=algorithm)

    signature = await akv_signer.asign(b"header.claims")

    fkv.verify_signature(akv_rsa_key.public_key(), algorithm, b"header.claims", signature)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_compact_jws_verifies_with_python_jose_and_the_public_jwk(
    akv_server, akv_rsa_key, akv_make_signer, algorithm
):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), algorithm=algorithm)
    public_jwk = akv_signer.public_jwk()
    signing_input = fkv.b64url(b'{"alg":"' + algorithm.encode() + b'","kid":"akv-kid"}') + "." + fkv.b64url(b"{}")

    token = signing_input + "." + fkv.b64url(akv_signer.sign(signing_input.encode()))

    assert jws.verify(token, jwk.construct(public_jwk, algorithm), algorithms=[algorithm]) == b"{}"
    assert public_jwk["kid"] == "akv-kid"
    assert public_jwk["alg"] == algorithm
    assert set(public_jwk) == {"kty", "n", "e", "use", "kid", "alg"}


def test_first_request_is_answered_with_a_challenge_then_signs_with_a_token(tmp_path, azure_credential):
    # A vault of its own: the SDK remembers a vault's challenge per address, for the whole process.
    with fkv.FakeKeyVault(tmp_path) as vault:
        vault.add_caller(azure_credential.token)
        key = vault.create_rsa_key("mp-challenge")
        akv_signer = AzureKeyVaultSigner(
            vault.key_url(key),
            credential=azure_credential,
            kid="k",
            connection_verify=vault.ca_file,
            verify_challenge_resource=False,
        )
        akv_signer.sign(b"x")
        akv_signer.close()

    key_path = f"/keys/{key.name}/{key.version}"
    assert [(r.method, r.path, r.authorized) for r in vault.requests] == [
        ("GET", key_path, False),
        ("GET", key_path, True),
        ("POST", key_path + "/sign", True),
    ]


@pytest.mark.asyncio
async def test_no_token_in_the_sdk_debug_log(akv_server, akv_rsa_key, akv_make_signer, azure_credential, caplog):
    caplog.set_level(logging.DEBUG)
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))

    akv_signer.sign(b"x")
    await akv_signer.asign(b"y")

    assert "'Authorization': 'REDACTED'" in caplog.text  # the SDK logged the headers, the token redacted
    assert azure_credential.token not in caplog.text


def test_sdk_network_tracing_is_refused_because_it_logs_the_token(akv_server, akv_rsa_key):
    with pytest.raises(ConfigurationError, match="bearer token") as caught:
        AzureKeyVaultSigner(akv_server.key_url(akv_rsa_key), logging_enable=True)

    assert caught.value.field == "logging_enable"


def test_unversioned_key_is_pinned_to_its_current_version_across_a_rotation(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name))
    first = akv_signer.sign(b"before")
    pinned_jwk = akv_signer.public_jwk()

    rotated = akv_server.create_rsa_key(akv_rsa_key.name)  # a new current version
    after = akv_signer.sign(b"after")

    fkv.verify_signature(akv_rsa_key.public_key(), "RS256", b"before", first)
    fkv.verify_signature(akv_rsa_key.public_key(), "RS256", b"after", after)
    assert akv_signer.public_jwk() == pinned_jwk
    assert akv_signer.key_id == akv_server.key_url(akv_rsa_key)
    assert akv_server.sign_paths()[-1] == f"/keys/{akv_rsa_key.name}/{akv_rsa_key.version}/sign"
    fresh = akv_make_signer(akv_server.key_url(akv_rsa_key.name))
    fkv.verify_signature(rotated.public_key(), "RS256", b"new", fresh.sign(b"new"))


@pytest.mark.asyncio
async def test_async_path_pins_the_unversioned_key_as_well(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name))
    await akv_signer.asign(b"before")

    akv_server.create_rsa_key(akv_rsa_key.name)
    signature = await akv_signer.asign(b"after")

    fkv.verify_signature(akv_rsa_key.public_key(), "RS256", b"after", signature)
    assert akv_signer.key_id == akv_server.key_url(akv_rsa_key)


@pytest.mark.asyncio
async def test_asign_never_blocks_the_event_loop(akv_server, akv_rsa_key, akv_make_signer, monkeypatch):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))
    await akv_signer.asign(b"warm up")  # the first call also looks the key up
    monkeypatch.setattr(akv_server, "sign_delay", 0.5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await akv_signer.asign(b"slow")
    finally:
        task.cancel()

    assert ticks >= 20  # the loop kept running while Key Vault took 0.5 s


def test_concurrent_threads_share_one_pinned_key(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name))
    inputs = [f"grant-{i}".encode() for i in range(24)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(akv_signer.sign, inputs))

    for signing_input, signature in zip(inputs, signatures, strict=True):
        fkv.verify_signature(akv_rsa_key.public_key(), "RS256", signing_input, signature)
    assert akv_signer.key_id == akv_server.key_url(akv_rsa_key)


@pytest.mark.asyncio
async def test_concurrent_tasks_sign_correctly(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name), algorithm="RS512")
    inputs = [f"grant-{i}".encode() for i in range(16)]

    signatures = await asyncio.gather(*(akv_signer.asign(i) for i in inputs))

    for signing_input, signature in zip(inputs, signatures, strict=True):
        fkv.verify_signature(akv_rsa_key.public_key(), "RS512", signing_input, signature)


def test_the_signer_works_from_several_event_loops(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))

    for n in range(3):
        signature = asyncio.run(akv_signer.asign(b"loop %d" % n))
        fkv.verify_signature(akv_rsa_key.public_key(), "RS256", b"loop %d" % n, signature)


def test_the_key_is_looked_up_once(akv_server, akv_rsa_key, akv_make_signer):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))
    before = len(akv_server.requests)

    for n in range(5):
        akv_signer.sign(b"%d" % n)
    akv_signer.public_jwk()

    gets = [r for r in akv_server.requests[before:] if r.method == "GET" and r.authorized]
    assert len(gets) == 1


def test_default_credential_is_created_when_first_needed_and_closed_with_the_signer(
    akv_server, akv_rsa_key, akv_client_kwargs, azure_credential, monkeypatch
):
    created: list[fkv.StaticTokenCredential] = []

    def fake_default() -> fkv.StaticTokenCredential:
        created.append(fkv.StaticTokenCredential(azure_credential.token))
        return created[-1]

    monkeypatch.setattr(signer, "default_credential", fake_default)
    akv_signer = AzureKeyVaultSigner(akv_server.key_url(akv_rsa_key), kid="k", **akv_client_kwargs)
    assert created == []

    akv_signer.sign(b"x")
    akv_signer.sign(b"y")
    akv_signer.close()

    assert len(created) == 1
    assert created[0].closed


def test_a_credential_passed_in_stays_open(akv_server, akv_rsa_key, akv_make_signer, azure_credential):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key))
    akv_signer.sign(b"x")

    akv_signer.close()

    assert not azure_credential.closed


def test_repr_names_the_key_and_no_secret(akv_server, akv_rsa_key, akv_make_signer, azure_credential):
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name))
    akv_signer.sign(b"x")

    text = repr(akv_signer)

    assert text == (f"AzureKeyVaultSigner({akv_server.key_url(akv_rsa_key)!r}, kid='akv-kid', algorithm='RS256')")
    assert azure_credential.token not in text
    assert not hasattr(akv_signer, "private_key")
    assert not isinstance(akv_signer.public_key(), rsa.RSAPrivateKey)
