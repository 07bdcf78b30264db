"""One table of MP codes: the typed errors' hints and the doctor's checklists come from the same explanation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maskinporten_auth.cli.checklists import UNREACHABLE, checklist_for
from maskinporten_auth.errors import (
    AccessDeniedError,
    AuthorizationDetailsError,
    ClockSkewError,
    DelegationError,
    InvalidGrantError,
    InvalidScopeError,
    NetworkError,
    SystemUserError,
    TokenRequestError,
)
from maskinporten_auth.mp_codes import (
    OWN_ORGNO,
    SYSTEMUSER_NOT_SET_UP,
    TABLE,
    UNKNOWN_KID,
    explain,
    hint_for,
    refusal_error,
)

ANSWERS = [
    # (code, description, error, key of the explanation)
    ("MP-251", "Consumer 310539759 has not delegated access", "forbidden", "MP-251"),
    ("MP-124", "Invalid assertion. Client authentication failed.", "invalid_grant", "MP-124"),
    (None, "Invalid assertion. Unknown key identifier (kid) for client", "invalid_grant", UNKNOWN_KID),
    (None, "Invalid assertion. Client not found: 1ab2", "invalid_grant", "MP-100"),
    (None, "Consumer og supplier har samme organisasjonsnummer", "invalid_request", OWN_ORGNO),
    (None, "Scope nav:x is not valid", "invalid_scope", "MP-200"),
    ("MP-303", "The system has no ClientId registered", SYSTEMUSER_NOT_SET_UP, "MP-303"),
    (None, "System user not found", SYSTEMUSER_NOT_SET_UP, "MP-303"),
]


@pytest.mark.parametrize(("code", "description", "error", "key"), ANSWERS)
def test_the_hint_and_the_checklist_of_an_answer_come_from_one_explanation(code, description, error, key):
    explanation = explain(code, description, error)
    assert explanation is not None and explanation.key == key
    refused = TokenRequestError("refused", status=400, error=error, code=code, description=description)
    assert hint_for(code, description, error) == explanation.hint
    assert checklist_for(refused) == explanation.checklist


def test_an_mp303_hint_names_the_cause_the_description_tells():
    client_id = explain("MP-303", "The system has no ClientId registered", SYSTEMUSER_NOT_SET_UP)
    external_ref = explain("MP-303", "Missing externalRef", SYSTEMUSER_NOT_SET_UP)
    unknown = explain("MP-303", "System user not found", SYSTEMUSER_NOT_SET_UP)
    assert client_id is not None and "ClientId" in client_id.hint
    assert external_ref is not None and "external_ref=" in external_ref.hint
    assert unknown is not None and len(unknown.checklist) == 4  # every documented cause, and the approval
    assert client_id.checklist[0] in unknown.checklist


def test_mp303_for_values_of_authorization_details_is_not_a_system_user_problem():
    values = explain("MP-303", "Invalid systemuser_org", "invalid_authorization_details")
    assert values is not None and "iso6523-actorid-upis" in values.hint


def test_the_refusals_remembered_are_the_codes_the_table_marks():
    marked = {entry.key for entry in TABLE if entry.refusal}
    assert marked == {"MP-200", "MP-201", "MP-250", "MP-251", "MP-301", "MP-302", "MP-303"}
    for entry in TABLE:
        error = "invalid_authorization_details" if entry.key.startswith("MP-3") else "invalid_request"
        assert refusal_error(400, error, entry.key, None).refusal is entry.refusal, entry.key


CLASSIFIED = [
    # (status, error, code, description, exception, refusal)
    (400, "invalid_grant", "MP-124", "Invalid assertion. Client authentication failed.", InvalidGrantError, False),
    (400, "invalid_grant", "MP-130", "Invalid assertion. iat is too far from now", ClockSkewError, False),
    (400, "invalid_grant", None, "Invalid assertion. The issue time is in the future", ClockSkewError, False),
    (400, "invalid_scope", None, "Scope nav:x is not valid", InvalidScopeError, True),
    (403, "forbidden", "MP-250", "Consumer has not been granted access", AccessDeniedError, True),
    (403, "forbidden", "MP-251", "Consumer 310539759 has not delegated access", DelegationError, True),
    (403, "forbidden", None, "Consumer 310539759 has not delegated access to the scope", DelegationError, True),
    (403, "access_denied", None, "Access denied", AccessDeniedError, True),
    (400, SYSTEMUSER_NOT_SET_UP, "MP-303", "The system has no ClientId registered", SystemUserError, True),
    (400, SYSTEMUSER_NOT_SET_UP, None, "System user not found", SystemUserError, True),
    (400, "invalid_authorization_details", "MP-301", "Unknown type", AuthorizationDetailsError, True),
    (400, "invalid_authorization_details", None, "Invalid systemuser_org", AuthorizationDetailsError, True),
    (400, "invalid_request", None, "Consumer og supplier har samme organisasjonsnummer", TokenRequestError, False),
    (400, "invalid_client", "MP-100", "Client not found", TokenRequestError, False),
]


@pytest.mark.parametrize(("status", "error", "code", "description", "kind", "refusal"), CLASSIFIED)
def test_one_table_names_each_answers_exception_and_whether_it_is_a_refusal(
    status, error, code, description, kind, refusal
):
    raised = refusal_error(status, error, code, description)
    assert type(raised) is kind
    assert raised.refusal is refusal
    assert (raised.status, raised.error, raised.code, raised.description) == (status, error, code, description)
    assert raised.hint == hint_for(code, description, error)


def test_an_unknown_answer_has_no_explanation_and_an_unreachable_endpoint_its_own_checklist():
    assert explain("MP-999", "something new", "invalid_request") is None
    assert checklist_for(TokenRequestError("refused", code="MP-999", error="invalid_request")) == ()
    assert checklist_for(NetworkError("connection refused")) == UNREACHABLE


def test_every_mp_code_in_the_table_has_a_section_in_the_troubleshooting_page_and_no_other():
    page = Path(__file__).parents[1] / "docs" / "troubleshooting.md"
    headings = [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("## ")]
    documented = {code for heading in headings for code in re.findall(r"MP-\d{3}", heading)}
    assert documented == {explanation.key for explanation in TABLE if explanation.key.startswith("MP-")}
