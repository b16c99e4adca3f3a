"""The request body: OCP's fields and defaults, every violation named at once."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.request import ConnectionMode, HostKind, InvalidRequest, parse_request

pytestmark = pytest.mark.unit

VALID = {"rootSysPassword": "pw", "address": "10.0.0.1", "port": 2881}


def errors_of(body: Any) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as info:
        parse_request(body)
    return {error.field: error.message for error in info.value.errors}


def test_defaults_follow_ocp() -> None:
    request = parse_request(VALID)
    assert request.save_to_credential is True
    assert request.connection_mode is ConnectionMode.DIRECT
    assert request.switch_config_url is True
    assert request.host_info is None and request.proxyro_password is None
    assert request.endpoint == "10.0.0.1:2881"


@pytest.mark.parametrize("address", ["10.0.0.1", "::1", "fe80::1", "ob-1.example.com", "localhost"])
def test_addresses_accepted(address: str) -> None:
    assert parse_request({**VALID, "address": address}).address == address


def test_ipv6_endpoint_is_bracketed() -> None:
    assert parse_request({**VALID, "address": "::1"}).endpoint == "[::1]:2881"


@pytest.mark.parametrize("address", ["", "bad host", "-x.com", "1.2.3.999", "a..b"])
def test_bad_addresses_named(address: str) -> None:
    assert "address" in errors_of({**VALID, "address": address})


def test_every_violation_reported_at_once() -> None:
    errors = errors_of(
        {
            "rootSysPassword": "",
            "address": "bad host",
            "port": 0,
            "connectionMode": "proxy",
            "obClusterId": 0,
            "switchConfigUrl": "maybe",
            "hostInfo": {"kind": "DEDICATED_CONTAINER", "sshPort": 70000},
            "extra": 1,
        }
    )
    assert set(errors) == {
        "rootSysPassword",
        "address",
        "port",
        "clusterName",
        "obClusterId",
        "switchConfigUrl",
        "hostInfo.hostTypeId",
        "hostInfo.credentialId",
        "hostInfo.sshPort",
        "hostInfo.publishPorts",
        "extra",
    }
    assert errors["clusterName"] == "is required when connectionMode is proxy"
    assert errors["extra"] == "is not a field of the takeover request"


def test_missing_required_fields() -> None:
    assert errors_of({}) == {
        "rootSysPassword": "is required unless rootSysCredentialId is given",
        "address": "Field required",
        "port": "Field required",
    }


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_body_must_be_an_object(body: Any) -> None:
    assert list(errors_of(body)) == ["body"]


def test_credential_reference_instead_of_password() -> None:
    request = parse_request({"rootSysCredentialId": 3, "address": "10.0.0.1", "port": 2881})
    assert request.root_sys_password is None and request.root_sys_credential_id == 3
    assert errors_of({**VALID, "rootSysCredentialId": 3}) == {
        "rootSysCredentialId": "give rootSysPassword or rootSysCredentialId, not both"
    }
    assert "rootSysCredentialId" in errors_of({"rootSysCredentialId": 0, "address": "10.0.0.1", "port": 1})


def test_host_info() -> None:
    request = parse_request(
        {
            **VALID,
            "hostInfo": {
                "kind": "DEDICATED_CONTAINER",
                "publishPorts": "2881:2881,2882:2882",
                "hostTypeId": 281,
                "credentialId": 32765,
            },
        }
    )
    assert request.host_info is not None
    assert request.host_info.kind is HostKind.DEDICATED_CONTAINER
    assert request.host_info.ssh_port == 22
    errors = errors_of(
        {
            **VALID,
            "hostInfo": {
                "kind": "DEDICATED_CONTAINER",
                "publishPorts": "80",
                "hostTypeId": 1,
                "credentialId": 1,
            },
        }
    )
    assert errors == {"hostInfo.publishPorts": "expected host:container[,…] with ports 1-65535"}
    assert "hostInfo.kind" in errors_of({**VALID, "hostInfo": {"kind": "VM", "hostTypeId": 1, "credentialId": 1}})


def test_errors_never_echo_values() -> None:
    secret = "hunter2-'; DROP USER root; --"
    with pytest.raises(InvalidRequest) as info:
        parse_request(
            {
                "rootSysPassword": 5,
                "address": secret,
                "port": secret,
                "clusterName": secret,
                "connectionMode": secret,
            }
        )
    assert secret not in str(info.value)
    assert "hunter2" not in str(info.value)


def test_password_not_in_repr() -> None:
    request = parse_request({**VALID, "rootSysPassword": "pw-secret", "proxyroPassword": "px-secret"})
    assert "pw-secret" not in repr(request) and "px-secret" not in repr(request)
