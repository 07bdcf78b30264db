"""The gcpkms: key URI through the maskinporten_auth.signers entry point, settings checked at construction, and the
command line (``maskinporten jwk`` and ``doctor``) with Application Default Credentials from a metadata server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from google.auth.credentials import AnonymousCredentials
from maskinporten_auth_gcpkms import GcpKmsSigner
from maskinporten_auth_gcpkms import testing as fake_kms
from maskinporten_auth_gcpkms.uri import key_version_name_from_uri

from maskinporten_auth import ConfigurationError, signer_from_uri
from maskinporten_auth.jwk import jwk_thumbprint, public_key_from_jwk
from maskinporten_auth.testing import MaskinportenEmulator

NAME = "projects/nav-maskinporten/locations/europe-north1/keyRings/maskinporten/cryptoKeys/grant/cryptoKeyVersions/3"


def test_a_key_uri_gives_a_working_signer(gcp_kms, gcp_shared_key, gcp_client_options):
    version = gcp_shared_key("RSA_SIGN_PKCS1_4096_SHA512")

    signer = signer_from_uri(f"gcpkms://{version.name}", kid="uri-kid", algorithm=None, **gcp_client_options)

    assert isinstance(signer, GcpKmsSigner)
    assert (signer.key_version_name, signer.kid, signer.algorithm) == (version.name, "uri-kid", "RS512")
    signer.sign(b"via uri")


def test_uri_form():
    assert key_version_name_from_uri(f"gcpkms://{NAME}") == NAME


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (f"gcpkms:{NAME}", "expected gcpkms://projects/"),
        (f"gcpkms:///{NAME}", "must look like"),
        (f"gcpkms://{NAME}?version=2", "no credentials, query or fragment"),
        (f"gcpkms://user@{NAME}", "no credentials, query or fragment"),
        (f"gcpkms://{NAME.rsplit('/', 2)[0]}", "names a key, not a key version"),
        (f"gcpkms://{NAME[:-1]}0", "'0' is not a version number"),
        (f"gcpkms://{NAME.replace('europe-north1', 'Europe North')}", "'Europe North' is not a location"),
    ],
)
def test_malformed_uris_are_refused_naming_the_key_setting(uri, problem):
    with pytest.raises(ConfigurationError, match=problem) as caught:
        signer_from_uri(uri, kid="k", algorithm="RS256")

    assert caught.value.field == "key"


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"algorithm": "PS256"}, "algorithm", "must be one of RS256, RS384, RS512"),
        ({"kid": " padded "}, "kid", "whitespace"),
        ({"timeout": 0}, "timeout", "positive number of seconds"),
        ({"client": object()}, "client", "KeyManagementServiceClient"),
        ({"api_endpoint": "http://x"}, "api_endpoint", "is not a client option"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_field(kwargs, field, problem):
    options = {"kid": "k", "algorithm": "RS256", **kwargs}

    with pytest.raises(ConfigurationError, match=problem) as caught:
        GcpKmsSigner(NAME, **options)

    assert caught.value.field == field


def test_client_options_and_a_client_together_are_refused(gcp_kms):
    with pytest.raises(ConfigurationError, match="not with client=") as caught:
        GcpKmsSigner(
            NAME, kid="k", algorithm="RS256", client=fake_kms.make_kms_client(gcp_kms.endpoint), transport="rest"
        )

    assert caught.value.field == "transport"


def test_a_key_name_without_a_version_is_refused():
    with pytest.raises(ConfigurationError, match="append /cryptoKeyVersions/<version>") as caught:
        GcpKmsSigner(NAME.rsplit("/", 2)[0], kid="k", algorithm="RS256")

    assert caught.value.field == "key_version_name"


def test_the_endpoint_override_of_gcloud_reaches_the_signers_own_client(gcp_kms, gcp_key, monkeypatch):
    version = gcp_key()
    monkeypatch.setenv(fake_kms.ENDPOINT_VARIABLE, gcp_kms.endpoint + "/")

    signer = GcpKmsSigner(version.name, credentials=AnonymousCredentials())

    assert signer.sign(b"x")
    assert gcp_kms.operations(version.name) == ["getPublicKey", "asymmetricSign"]


@pytest.fixture
def gcp_cli_environment(gcp_kms, tmp_path):
    """A child's environment in which Application Default Credentials come from the fake's metadata server."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GOOGLE_", "GCE_", "CLOUDSDK_", "MASKINPORTEN_"))
    }
    # an empty gcloud configuration: no application_default_credentials.json from the machine's user
    return {**environment, **gcp_kms.environ(), "CLOUDSDK_CONFIG": str(tmp_path)}


def run_cli(arguments: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    program = "import sys; from maskinporten_auth.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", program, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_maskinporten_jwk_prints_the_key_versions_jwk_with_its_thumbprint_as_kid(gcp_kms, gcp_key, gcp_cli_environment):
    version = gcp_key()

    result = run_cli(["jwk", f"gcpkms://{version.name}"], gcp_cli_environment)

    assert result.returncode == 0, result.stderr
    jwk = json.loads(result.stdout)
    public_key = version.public_key()
    assert public_key_from_jwk(jwk).public_numbers() == public_key.public_numbers()  # type: ignore[union-attr]
    assert (jwk["kid"], jwk["alg"]) == (jwk_thumbprint(public_key), "RS256")  # type: ignore[arg-type]
    assert [r.caller for r in gcp_kms.requests if r.name == version.name] == [fake_kms.WORKLOAD]


def test_maskinporten_doctor_gets_a_token_with_a_cloud_kms_key(gcp_kms, gcp_key, gcp_cli_environment):
    version = gcp_key()
    client_id = str(uuid.uuid4())
    signer = GcpKmsSigner(version.name, client=fake_kms.make_kms_client(gcp_kms.endpoint))
    with MaskinportenEmulator() as emulator:
        emulator.register_client(
            client_id, orgno="313042995", scopes=["nav:example/gcp"], keys={signer.kid: signer.public_jwk()}
        )
        environment = {
            **gcp_cli_environment,
            "MASKINPORTEN_ENV": emulator.environment.issuer,
            "MASKINPORTEN_CLIENT_ID": client_id,
            "MASKINPORTEN_SCOPES": "nav:example/gcp",
            "MASKINPORTEN_KEY": f"gcpkms://{version.name}",
        }

        result = run_cli(["doctor"], environment)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed." in result.stdout
    assert "GcpKmsSigner, RSA 2048 bits, RS256" in result.stdout
