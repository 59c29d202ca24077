"""Request ids of control calls: a malformed one is refused as invalid, not as reused."""

import pytest

from services.handlers.requests import MAX_REQUEST_ID_LENGTH, Request, RequestInvalid
from services.protocol import rules


@pytest.mark.parametrize("request_id", ["", "   ", "x" * (MAX_REQUEST_ID_LENGTH + 1), None, 7])
def test_a_malformed_request_id_is_refused_as_invalid(request_id):
    with pytest.raises(RequestInvalid) as refused:
        Request(request_id, "refer_clue")
    assert refused.value.rule == rules.REQUEST_INVALID


def test_a_request_id_of_the_longest_length_is_taken():
    assert Request("x" * MAX_REQUEST_ID_LENGTH, "refer_clue").request_id == "x" * MAX_REQUEST_ID_LENGTH
