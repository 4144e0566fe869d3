"""azure-identity and MSAL against entra-sim: every credential type gets a token with
only the authority URL and CA trust changed, and every token verifies against the JWKS."""
import datetime

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conftest import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, HOST_IDENTITY_CLIENT_ID, IDENTITY_HEADER, TENANT_ID

ARM = "https://management.azure.com/.default"


def verified_claims(azsim, token, audience):
    """Verifies a token's signature, issuer, audience and lifetime with PyJWT."""
    jwks = requests.get(f"{azsim.entra_url}/{TENANT_ID}/discovery/v2.0/keys", timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
    return jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=f"https://sts.windows.net/{TENANT_ID}/",
        options={"require": ["exp", "iat", "nbf", "aud", "iss"]},
    )


def test_client_secret_credential_with_authority(azsim, clean_env):
    credential = ClientSecretCredential(
        TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, authority=azsim.entra_url, disable_instance_discovery=True
    )
    token = credential.get_token(ARM)
    claims = verified_claims(azsim, token.token, "https://management.azure.com")
    assert claims["appid"] == ADMIN_CLIENT_ID
    assert claims["tid"] == TENANT_ID
    assert token.expires_on > datetime.datetime.now().timestamp() + 3000
    # A second request is served from MSAL's cache: same token.
    assert credential.get_token(ARM).token == token.token


def test_client_secret_credential_with_authority_host_environment(azsim, clean_env):
    clean_env.setenv("AZURE_AUTHORITY_HOST", azsim.entra_url)
    credential = ClientSecretCredential(TENANT_ID, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, disable_instance_discovery=True)
    token = credential.get_token("https://vault.azure.net/.default")
    assert verified_claims(azsim, token.token, "https://vault.azure.net")["oid"]


def test_wrong_secret_raises_client_authentication_error(azsim, clean_env):
    credential = ClientSecretCredential(
        TENANT_ID, ADMIN_CLIENT_ID, "not-the-secret", authority=azsim.entra_url, disable_instance_discovery=True
    )
    with pytest.raises(ClientAuthenticationError) as error:
        credential.get_token(ARM)
    assert "AADSTS7000215" in str(error.value)


def test_unknown_tenant_is_refused(azsim, clean_env):
    credential = ClientSecretCredential(
        "00000000-1111-2222-3333-444444444444",
        ADMIN_CLIENT_ID,
        ADMIN_CLIENT_SECRET,
        authority=azsim.entra_url,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError):
        credential.get_token(ARM)


def _self_signed_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdk-test-client")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def test_certificate_credential(azsim, clean_env):
    app = azsim.admin("POST", f"/admin/tenants/{TENANT_ID}/applications", {"displayName": "sdk-cert-client"})
    key_pem, cert_pem = _self_signed_certificate()
    azsim.admin(
        "POST",
        f"/admin/tenants/{TENANT_ID}/applications/{app['appId']}/certificates",
        {"certificate": cert_pem.decode()},
    )
    credential = CertificateCredential(
        TENANT_ID,
        app["appId"],
        certificate_data=key_pem + cert_pem,
        authority=azsim.entra_url,
        disable_instance_discovery=True,
    )
    claims = verified_claims(azsim, credential.get_token(ARM).token, "https://management.azure.com")
    assert claims["appid"] == app["appId"]
    assert claims["appidacr"] == "2"


def test_msal_confidential_client(azsim, clean_env):
    app = msal.ConfidentialClientApplication(
        ADMIN_CLIENT_ID,
        client_credential=ADMIN_CLIENT_SECRET,
        authority=f"{azsim.entra_url}/{TENANT_ID}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=["api://azsim/.default"])
    assert "access_token" in result, result
    claims = verified_claims(azsim, result["access_token"], "api://azsim")
    assert claims["roles"] == ["Azsim.Admin"]


def test_managed_identity_credential_app_service(azsim, clean_env):
    clean_env.setenv("IDENTITY_ENDPOINT", f"{azsim.mi_url}/msi/token")
    clean_env.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    token = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    claims = verified_claims(azsim, token.token, "https://vault.azure.net")
    assert claims["appid"] == HOST_IDENTITY_CLIENT_ID


def test_default_azure_credential_uses_the_managed_identity(azsim, clean_env):
    clean_env.setenv("IDENTITY_ENDPOINT", f"{azsim.mi_url}/msi/token")
    clean_env.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    token = DefaultAzureCredential().get_token(ARM)
    assert verified_claims(azsim, token.token, "https://management.azure.com")["appid"] == HOST_IDENTITY_CLIENT_ID


def test_managed_identity_credential_imds(azsim, clean_env):
    clean_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", azsim.mi_url)
    token = ManagedIdentityCredential().get_token(ARM)
    assert verified_claims(azsim, token.token, "https://management.azure.com")["appid"] == HOST_IDENTITY_CLIENT_ID
