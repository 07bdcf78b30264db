"""What importing the package loads: nothing heavy until it is used, and no cloud SDK ever from the core."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import maskinporten_auth

CLOUD_SDKS = ("boto3", "botocore", "hvac", "azure", "pkcs11", "redis", "valkey")


def modules_loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(done.stdout.splitlines()[-1]))


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_import_loads_no_certificate_machinery_and_no_cloud_sdk() -> None:
    loaded = modules_loaded_by("import maskinporten_auth")
    assert "cryptography.x509" not in loaded
    assert not roots(loaded) & set(CLOUD_SDKS)


def test_the_auth_class_loads_no_certificate_or_key_machinery_and_no_asyncio() -> None:
    loaded = modules_loaded_by("from maskinporten_auth import MaskinportenAuth")
    assert not {"cryptography.x509", "cryptography.hazmat.primitives.serialization"} & loaded
    assert not roots(loaded) & set(CLOUD_SDKS)
    assert not {"asyncio", "httpcore"} & roots(loaded)  # loaded by the first awaited token or the first request


def test_a_local_key_and_its_auth_load_no_certificate_machinery(pem_file: Path) -> None:
    loaded = modules_loaded_by(
        "from maskinporten_auth import MaskinportenAuth, signer_from_uri\n"
        f"signer = signer_from_uri({pem_file.as_uri()!r}, kid='k')\n"
        "MaskinportenAuth(client_id='c', scopes='nav:x', signer=signer, environment='test')"
    )
    assert "cryptography.x509" not in loaded
    assert not roots(loaded) & set(CLOUD_SDKS)


def test_the_command_line_loads_neither_httpx_nor_cryptography_before_a_command_runs() -> None:
    loaded = roots(modules_loaded_by("from maskinporten_auth.cli import main"))
    assert not {"httpx", "httpcore", "cryptography", "asyncio"} & loaded


@pytest.mark.parametrize("name", maskinporten_auth.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(maskinporten_auth, name) is not None
    assert name in dir(maskinporten_auth)


def test_version_is_the_installed_distributions() -> None:
    assert maskinporten_auth.__version__ == importlib.metadata.version("maskinporten-auth")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'MaskinportnAuth'"):
        maskinporten_auth.MaskinportnAuth  # type: ignore[attr-defined] # noqa: B018
