"""The one API-key check HTTP's middleware and gRPC's servicer both call (server/auth.py)."""

from __future__ import annotations

import pytest

from server import auth, grpc_service, middleware
from server.errors import ErrorKind, ServerError

KEY = "s3cret"


def refused(header) -> str:
    with pytest.raises(ServerError) as info:
        auth.check_bearer(header, KEY, where="'Authorization: Bearer <key>'")
    assert info.value.kind is ErrorKind.UNAUTHORIZED
    return info.value.message


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"bearer {KEY}", f"BEARER  {KEY} ", f"Bearer {KEY}".encode()])
def test_the_key_as_a_bearer_token_passes(header):
    auth.check_bearer(header, KEY, where="x")


@pytest.mark.parametrize("header", [None, "", KEY, f"Basic {KEY}", "Bearer wrong", f"Bearer {KEY}x",
                                    "Bearer s3cr\udcffet", b"Bearer \xff\xfe", "Bearer ключ"])
def test_anything_else_is_unauthorized_and_never_an_error_of_its_own(header):
    assert "Authorization: Bearer <key>" in refused(header)


def test_no_key_means_no_check():
    auth.check_bearer(None, None, where="x")
    auth.check_bearer("Bearer anything", "", where="x")


def test_both_protocols_call_the_one_check():
    assert middleware.check_bearer is auth.check_bearer and grpc_service.check_bearer is auth.check_bearer
