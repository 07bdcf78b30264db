"""Google's errors, as the official client raises them over REST, become SigningError with a hint."""

from __future__ import annotations

import logging
import socket
import time
import uuid

import pytest
from google.api_core.exceptions import Forbidden
from google.oauth2.credentials import Credentials
from maskinporten_auth_gcpkms import testing as fake_kms

from maskinporten_auth import SigningError

ROLE = "roles/cloudkms.signerVerifier"


def caller_with(gcp_kms, *roles: str) -> tuple[str, Credentials]:
    """A service account of its own holding ``roles``, and credentials that carry its bearer token."""
    caller = f"serviceAccount:test-{uuid.uuid4().hex[:8]}@nav-maskinporten.iam.gserviceaccount.com"
    gcp_kms.grant(caller, *roles)
    token = gcp_kms.token_for(caller)
    return token, Credentials(token)


def test_signing_without_the_sign_permission_names_the_role(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    token, credentials = caller_with(gcp_kms, "roles/cloudkms.publicKeyViewer")
    signer = gcp_make_signer(version, credentials=credentials)  # getPublicKey is allowed

    with pytest.raises(SigningError) as caught:
        signer.sign(b"x")

    error = caught.value
    assert "asymmetricSign failed: PERMISSION_DENIED" in error.message
    assert "cloudkms.cryptoKeyVersions.useToSign" in error.message
    assert ROLE in (error.hint or "")
    assert f"--keyring {version.name.split('/')[5]}" in (error.hint or "")
    assert token not in str(error)


def test_no_role_at_all_fails_at_construction(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    _, credentials = caller_with(gcp_kms)

    with pytest.raises(SigningError, match="getPublicKey failed: PERMISSION_DENIED") as caught:
        gcp_make_signer(version, credentials=credentials)

    assert ROLE in (caught.value.hint or "")


def test_the_signer_verifier_role_is_enough_without_versions_get(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    _, credentials = caller_with(gcp_kms, ROLE)

    gcp_make_signer(version, credentials=credentials).sign(b"x")

    assert "get" not in gcp_kms.operations(version.name)


def test_an_unknown_key_version_is_not_found(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    missing = version.name.removesuffix("/1") + "/7"

    with pytest.raises(SigningError, match=r"NOT_FOUND: CryptoKeyVersion .* not found") as caught:
        gcp_make_signer(missing)

    assert "check the project, location, key ring, key and version" in (caught.value.hint or "")
    assert caught.value.key == missing


def test_a_version_disabled_after_first_use_fails_with_the_command_to_enable_it(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version)
    signer.sign(b"enabled")
    gcp_kms.set_state(version, "DISABLED")

    with pytest.raises(SigningError, match=r"FAILED_PRECONDITION: .* current state is: DISABLED") as caught:
        signer.sign(b"disabled")

    assert (caught.value.hint or "").startswith("the key version is disabled: gcloud kms keys versions enable 1 --key ")
    gcp_kms.set_state(version, "ENABLED")
    signer.sign(b"enabled again")


@pytest.mark.parametrize(
    ("state", "hint"),
    [("DISABLED", "gcloud kms keys versions enable"), ("DESTROY_SCHEDULED", "restore"), ("DESTROYED", "gone")],
)
def test_a_version_that_is_not_enabled_fails_at_construction(gcp_kms, gcp_key, gcp_make_signer, state, hint):
    version = gcp_key()
    gcp_kms.set_state(version, state)

    with pytest.raises(SigningError, match=rf"getPublicKey failed: FAILED_PRECONDITION: .*{state}") as caught:
        gcp_make_signer(version)

    assert hint in (caught.value.hint or "")


def test_an_exhausted_quota(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version)
    gcp_kms.inject(version, "quota")

    with pytest.raises(SigningError, match="RESOURCE_EXHAUSTED: Quota exceeded") as caught:
        signer.sign(b"x")

    assert "quota" in (caught.value.hint or "")


def test_a_token_google_refuses_and_that_cannot_be_refreshed(gcp_key, gcp_make_signer):
    # google-auth answers a 401 by refreshing the credentials; a bare token cannot be refreshed
    with pytest.raises(SigningError, match="Google credentials failed: RefreshError") as caught:
        gcp_make_signer(gcp_key(), credentials=Credentials("ya29.not-a-token-kms-knows"))

    assert "Application Default Credentials" in (caught.value.hint or "")
    assert "ya29.not-a-token-kms-knows" not in str(caught.value)


def test_no_application_default_credentials(gcp_key, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    from maskinporten_auth_gcpkms import GcpKmsSigner

    with pytest.raises(SigningError, match="no Google credentials") as caught:
        GcpKmsSigner(gcp_key().name)

    assert "GOOGLE_APPLICATION_CREDENTIALS" in (caught.value.hint or "")


def test_an_unreachable_endpoint_fails_fast_with_a_network_hint(gcp_key, gcp_make_signer):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    started = time.monotonic()

    with pytest.raises(SigningError, match="getPublicKey failed: ConnectionError") as caught:
        gcp_make_signer(gcp_key(), client_options={"api_endpoint": f"http://127.0.0.1:{port}"})

    assert time.monotonic() - started < 5
    assert "could not be reached" in (caught.value.hint or "")


def test_the_fake_serves_versions_get_to_the_viewer_role_only(gcp_kms, gcp_key):
    version = gcp_key()
    gcp_kms.set_state(version, "DISABLED")
    _, viewer = caller_with(gcp_kms, "roles/cloudkms.viewer")
    _, signer_verifier = caller_with(gcp_kms, ROLE)

    state = fake_kms.make_kms_client(gcp_kms.endpoint, viewer).get_crypto_key_version(name=version.name).state
    with pytest.raises(Forbidden, match=r"cloudkms\.cryptoKeyVersions\.get"):  # REST raises by HTTP status
        fake_kms.make_kms_client(gcp_kms.endpoint, signer_verifier).get_crypto_key_version(name=version.name)

    assert state.name == "DISABLED"


def test_no_token_in_any_log_line(gcp_kms, gcp_key, gcp_make_signer, caplog):
    caplog.set_level(logging.DEBUG)
    token, credentials = caller_with(gcp_kms, ROLE)
    signer = gcp_make_signer(gcp_key(), credentials=credentials)

    signer.sign(b"x")
    gcp_kms.grant(gcp_kms.requests[-1].caller)  # every role taken away: the failure is logged and raised
    with pytest.raises(SigningError):
        signer.sign(b"y")

    assert caplog.records
    assert token not in caplog.text
