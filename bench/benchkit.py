"""What every benchmark shares: results, robust statistics, and an emulator with a registered client."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import LocalKeySigner, MaskinportenAuth
from maskinporten_auth.signer import Signer
from maskinporten_auth.testing import MaskinportenEmulator

SCOPE = "nav:oppfolgingsplan/lps.write"
TIMES = "\u00d7"  # the multiplication sign, as in "1.02x" typeset
ORGNO = "313042995"


@dataclass
class Row:
    """One line of a results table.

    ``value`` is in ``unit``; ``ratio`` (if any) is against ``baseline``, measured in the same run. ``target`` is a
    human-readable bound and ``passed`` whether it held (None: no target on this row).
    """

    section: str
    name: str
    value: float | None
    unit: str
    ratio: float | None = None
    baseline: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Results:
    """Every row of the run, in order, plus free-form notes per section and data for the plot."""

    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    #: chart title -> group -> bar -> ratio, for the plot
    charts: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: chart title -> the target ratio drawn on it
    chart_targets: dict[str, float] = field(default_factory=dict)
    #: chart title -> which side of its target ratio is met ("≤" unless given)
    chart_target_bounds: dict[str, str] = field(default_factory=dict)

    def chart(self, title: str, group: str, bar: str, ratio: float) -> None:
        self.charts.setdefault(title, {}).setdefault(group, {})[bar] = ratio

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        shown = "skipped" if row.value is None else f"{row.value:.4g} {row.unit}"
        ratio = "" if row.ratio is None else f"  ratio {row.ratio:.3f} vs {row.baseline}"
        verdict = "" if row.passed is None else ("  [target met]" if row.passed else "  [TARGET MISSED]")
        note = f"  ({row.note})" if row.note else ""
        print(f"  {row.section:<10} {row.name:<55} {shown:>14}{ratio}{verdict}{note}", flush=True)
        return row

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)
        print(f"  note ({section}): {text}", flush=True)

    @property
    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.passed is False]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def register(emulator: MaskinportenEmulator, signer: Signer) -> str:
    """Register a new integration for ``signer`` on the emulator and return its client id."""
    client_id = str(uuid.uuid4())
    emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={signer.kid or "": signer.public_jwk()})
    return client_id


@dataclass
class Setup:
    """A running emulator, a local key registered on it, and a factory of auth objects for that key."""

    emulator: MaskinportenEmulator
    signer: LocalKeySigner
    client_id: str

    def auth(self, signer: Signer | None = None, **kwargs: object) -> MaskinportenAuth:
        """A new MaskinportenAuth (own, empty cache) for this setup's client."""
        return MaskinportenAuth(
            client_id=self.client_id,
            scopes=SCOPE,
            signer=signer or self.signer,
            environment=self.emulator.environment,
            **kwargs,  # type: ignore[arg-type]
        )


@contextmanager
def emulator_setup(key: rsa.RSAPrivateKey, *, token_lifetime: int = 3600) -> Iterator[Setup]:
    with MaskinportenEmulator(token_lifetime=token_lifetime) as emulator:
        signer = LocalKeySigner(key, kid="bench-key-1")
        yield Setup(emulator, signer, register(emulator, signer))
