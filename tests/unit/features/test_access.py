"""fabric_ray.features.access: bearer tokens with feature-view scopes (401 / 403)."""

from __future__ import annotations

import pytest

from fabric_ray.config import FabricConfig, TokenConfig
from fabric_ray.features.access import ANONYMOUS, Access, AccessError
from fabric_ray.features.wire import RequestError, error_content

TOKENS = (
    TokenConfig(name="fraud-svc", secret="fraud-secret-1", scopes=("user_payments", "merchant_daily")),
    TokenConfig(name="admin", secret="admin-secret-2"),  # scopes default to "*"
)


def refused(access: Access, header, views, status: int) -> AccessError:
    with pytest.raises(AccessError) as err:
        access.authorize(header, views)
    assert err.value.status == status
    assert isinstance(err.value, RequestError)  # the server answers it like any refusal
    return err.value


def test_no_tokens_means_open_access():
    access = Access()
    assert not access.enabled
    assert access.authorize(None, ["anything"]) == ANONYMOUS
    assert access.authorize("Bearer whatever", ["x"]) == ANONYMOUS


def test_a_valid_token_with_scopes_gets_its_name():
    access = Access(TOKENS)
    assert access.enabled
    assert access.authorize("Bearer fraud-secret-1", ["user_payments"]) == "fraud-svc"
    assert access.authorize("Bearer fraud-secret-1", {"user_payments", "merchant_daily"}) == "fraud-svc"
    assert access.authorize("bearer   admin-secret-2 ", ["user_daily", "anything"]) == "admin"  # scheme is case-insensitive
    assert access.authorize("Bearer fraud-secret-1", []) == "fraud-svc"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_token_is_401(header):
    err = refused(Access(TOKENS), header, ["user_payments"], 401)
    assert "missing bearer token" in str(err) and "Authorization: Bearer" in str(err)


@pytest.mark.parametrize("header", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer   ", "fraud-secret-1", "Token fraud-secret-1"])
def test_other_schemes_are_401(header):
    assert "'Bearer <token>'" in str(refused(Access(TOKENS), header, ["user_payments"], 401))


@pytest.mark.parametrize("secret", ["fraud-secret-2", "fraud-secret-1x", "FRAUD-SECRET-1", "fraud-secret"])
def test_an_unknown_token_is_401_and_the_message_does_not_echo_it(secret):
    err = refused(Access(TOKENS), f"Bearer {secret}", ["user_payments"], 401)
    assert "invalid bearer token" in str(err) and secret not in str(err)


def test_scopes_that_do_not_cover_the_views_are_403_naming_them():
    err = refused(Access(TOKENS), "Bearer fraud-secret-1", ["user_payments", "user_daily", "zeta"], 403)
    assert str(err) == "token 'fraud-svc' may not use feature view(s) ['user_daily', 'zeta']; its scopes: ['merchant_daily', 'user_payments']"
    assert "fraud-secret-1" not in str(err)
    assert err.feast_class == "FeastPermissionError"  # Feast's own 403 body, so its clients raise the same error
    assert '"class": "FeastPermissionError"' in error_content(err)


def test_authenticate_then_permit_is_authorize():
    access = Access(TOKENS)
    token = access.authenticate("Bearer fraud-secret-1")
    assert access.permit(token, ["merchant_daily"]) == "fraud-svc"
    with pytest.raises(AccessError):
        access.permit(token, ["user_daily"])


def test_tokens_from_the_config_and_from_plain_dicts():
    cfg = FabricConfig.model_validate({"serving": {"tokens": [{"name": "a", "secret": "secret-aaaa", "scopes": ["v"]}]}})
    assert Access(cfg.serving.tokens).authorize("Bearer secret-aaaa", ["v"]) == "a"
    # what a Serve replica gets: ServingConfig.model_dump() (the secret stays a SecretStr)
    dumped = cfg.serving.model_dump()["tokens"]
    assert Access(dumped).authorize("Bearer secret-aaaa", ["v"]) == "a"
    assert Access([{"name": "b", "secret": "plain-text-secret"}]).authorize("Bearer plain-text-secret", ["any"]) == "b"


def test_the_secret_is_not_kept_in_clear():
    access = Access(TOKENS)
    assert "fraud-secret-1" not in repr(vars(access)) and "admin-secret-2" not in repr(vars(access))


def test_duplicate_token_names_are_refused():
    with pytest.raises(ValueError, match=r"\['a'\]"):
        Access([{"name": "a", "secret": "secret-1111"}, {"name": "a", "secret": "secret-2222"}])


def test_two_tokens_with_the_same_secret_are_refused():
    with pytest.raises(ValueError, match="'first' and 'second' have the same secret"):
        Access([{"name": "first", "secret": "same-secret"}, {"name": "second", "secret": "same-secret", "scopes": ["v"]}])
