"""Cloud KMS key version names: ``projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from maskinporten_auth.errors import ConfigurationError

__all__ = ["FORM", "KeyVersionName"]

FORM = "projects/<project>/locations/<location>/keyRings/<key ring>/cryptoKeys/<key>/cryptoKeyVersions/<version>"

# Google's rules: project ids are 6-30 lowercase letters, digits and hyphens (or a project number); key ring and key
# ids 1-63 letters, digits, underscores and hyphens; versions are numbered from 1.
_SEGMENTS = (
    ("projects", "project", re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20}"), "a project id or number"),
    ("locations", "location", re.compile(r"[a-z0-9-]{1,63}"), "a location such as europe-north1 or global"),
    ("keyRings", "key_ring", re.compile(r"[A-Za-z0-9_-]{1,63}"), "a key ring id (letters, digits, _ and -)"),
    ("cryptoKeys", "key", re.compile(r"[A-Za-z0-9_-]{1,63}"), "a key id (letters, digits, _ and -)"),
    ("cryptoKeyVersions", "version", re.compile(r"[1-9][0-9]{0,18}"), "a version number (1, 2, ...)"),
)


@dataclass(frozen=True)
class KeyVersionName:
    """The resource name of one CryptoKeyVersion: Cloud KMS signs with a key *version*, never a key."""

    project: str
    location: str
    key_ring: str
    key: str
    version: str

    @classmethod
    def parse(cls, value: object, *, field: str) -> KeyVersionName:
        """Parse a full key version name; raise ConfigurationError naming ``field`` and the part that is wrong."""
        if not isinstance(value, str) or not value:
            raise ConfigurationError(field, f"must be a Cloud KMS key version name, {FORM}, got {value!r}")
        parts = value.split("/")
        if len(parts) == 8 and parts[6] == "cryptoKeys":
            raise ConfigurationError(
                field,
                f"names a key, not a key version: Cloud KMS signs with a key version, append "
                f"/cryptoKeyVersions/<version> ({value!r})",
            )
        if len(parts) != 10 or parts[0::2] != [collection for collection, *_ in _SEGMENTS]:
            raise ConfigurationError(field, f"must look like {FORM}, got {value!r}")
        values = {}
        for (_, attribute, pattern, expected), segment in zip(_SEGMENTS, parts[1::2], strict=True):
            if not pattern.fullmatch(segment):
                raise ConfigurationError(field, f"{segment!r} is not {expected} (in {value!r})")
            values[attribute] = segment
        return cls(**values)

    @property
    def key_name(self) -> str:
        """The CryptoKey the version belongs to."""
        return f"projects/{self.project}/locations/{self.location}/keyRings/{self.key_ring}/cryptoKeys/{self.key}"

    def gcloud_arguments(self) -> str:
        """The version as ``gcloud kms keys versions ...`` takes it, for hints."""
        return (
            f"{self.version} --key {self.key} --keyring {self.key_ring} --location {self.location} "
            f"--project {self.project}"
        )

    def __str__(self) -> str:
        return f"{self.key_name}/cryptoKeyVersions/{self.version}"
