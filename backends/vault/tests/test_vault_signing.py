"""Signing with Transit RSA keys on a real OpenBao server; every signature verified outside Vault."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import hvac.exceptions
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from jose import jwk as jose_jwk
from maskinporten_auth_vault import VaultTransitSigner

from maskinporten_auth.jwk import public_key_from_jwk


@pytest.mark.parametrize("key_type", ["rsa-2048", "rsa-3072", "rsa-4096"])
@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_signs_every_algorithm_with_every_rsa_size(
    key_type, algorithm, vault_root, vault_rsa_keys, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    name = vault_rsa_keys[key_type]
    signer = VaultTransitSigner(name, kid="k1", algorithm=algorithm, client=vault_root)

    token = vault_sign_jwt(signer)

    vault_assert_valid(token, vault_public_key(name), algorithm)
    assert signer.key_version == 1
    assert signer.public_key().key_size == int(key_type.removeprefix("rsa-"))


def test_signatures_are_pkcs1_v1_5_not_pss(vault_root, vault_rsa_keys):
    # PKCS#1 v1.5 is deterministic; Vault's default, PSS, would give a new signature each time.
    signer = VaultTransitSigner(vault_rsa_keys["rsa-2048"], client=vault_root)

    assert signer.sign(b"header.claims") == signer.sign(b"header.claims")


def test_public_jwk_is_the_pinned_versions_key(vault_root, vault_rsa_keys, vault_public_key):
    name = vault_rsa_keys["rsa-3072"]
    signer = VaultTransitSigner(name, key_version=1, kid="vault-1", algorithm="RS384", client=vault_root)

    jwk = signer.public_jwk()

    assert {"kty": "RSA", "use": "sig", "kid": "vault-1", "alg": "RS384"}.items() <= jwk.items()
    assert "d" not in jwk
    assert public_key_from_jwk(jwk).public_numbers() == vault_public_key(name).public_numbers()
    assert jose_jwk.construct(jwk, "RS384").to_dict()["n"] == jwk["n"]


def test_public_jwk_before_signing_pins_the_latest_version(vault_root, vault_new_key):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    signer = VaultTransitSigner(name, client=vault_root)

    assert signer.key_version is None
    signer.public_jwk()
    assert signer.key_version == 2


def test_default_client_comes_from_the_environment(vault_env, vault_rsa_keys, vault_public_key, vault_sign_jwt,
                                                   vault_assert_valid):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]
    signer = VaultTransitSigner(name, kid="env")

    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name), "RS256")


def test_default_client_uses_vault_namespace(
    bao_server, vault_env, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid, monkeypatch
):
    bao_server.client().sys.create_namespace("team-env")
    team = bao_server.client(namespace="team-env")
    team.sys.enable_secrets_engine("transit", path="transit")
    name = vault_new_key(client=team)
    monkeypatch.setenv("VAULT_NAMESPACE", "team-env")

    signer = VaultTransitSigner(name, kid="ns")

    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name, client=team), "RS256")


def test_namespace_and_nested_mount_through_a_passed_client(
    bao_server, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    bao_server.client().sys.create_namespace("team-a")
    team = bao_server.client(namespace="team-a")
    team.sys.enable_secrets_engine("transit", path="crypto/transit")
    name = vault_new_key("rsa-3072", client=team, mount="crypto/transit")

    signer = VaultTransitSigner(name, mount_point="crypto/transit", kid="ns", client=team)

    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name, client=team, mount="crypto/transit"), "RS256")
    with pytest.raises(hvac.exceptions.InvalidPath):
        bao_server.client().secrets.transit.read_key(name, mount_point="crypto/transit")


def test_concurrent_signing_from_threads_reads_the_key_once(
    bao_server, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    name = vault_new_key()
    client = bao_server.client()
    key_reads = []
    lock = threading.Lock()

    def count_key_reads(response, *args, **kwargs):
        if response.request.method == "GET" and "/keys/" in response.request.url:
            with lock:
                key_reads.append(response.request.url)

    client.session.hooks["response"].append(count_key_reads)
    signer = VaultTransitSigner(name, kid="threads", client=client)

    with ThreadPoolExecutor(max_workers=16) as pool:
        tokens = list(pool.map(lambda i: vault_sign_jwt(signer, {"i": i}), range(64)))

    public_key = vault_public_key(name)
    for token in tokens:
        vault_assert_valid(token, public_key, "RS256")
    assert len(set(tokens)) == 64
    assert len(key_reads) == 1


@pytest.mark.asyncio
async def test_concurrent_signing_from_asyncio_tasks(vault_root, vault_rsa_keys, vault_public_key,
                                                     vault_assert_valid):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]
    signer = VaultTransitSigner(name, algorithm="RS512", client=vault_root)
    inputs = [f"header.claims-{i}".encode() for i in range(32)]

    signatures = await asyncio.gather(*(signer.asign(data) for data in inputs))

    public_key = vault_public_key(name)
    for data, signature in zip(inputs, signatures, strict=True):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA512())


def test_repr_shows_the_key_and_never_the_token(bao_server, vault_rsa_keys):
    signer = VaultTransitSigner(vault_rsa_keys["rsa-2048"], kid="k", client=bao_server.client())
    signer.sign(b"x")

    text = repr(signer) + str(signer)

    assert bao_server.root_token not in text
    assert repr(signer) == (
        f"VaultTransitSigner({vault_rsa_keys['rsa-2048']!r}, mount_point='transit', key_version=1, kid='k', "
        "algorithm='RS256')"
    )


@pytest.mark.asyncio
async def test_asign_does_not_block_the_event_loop(vault_root, vault_rsa_keys):
    signer = VaultTransitSigner(vault_rsa_keys["rsa-4096"], client=vault_root)
    signer.verify_key()
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await signer.asign(b"header.claims")
    ticker.cancel()

    assert ticks > 0
