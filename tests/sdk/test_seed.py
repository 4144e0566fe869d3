"""A seed file applied to the running stack (`azsim seed`, as `azsim up --seed` does) is what
the official SDK clients then find: a resource group, a vault with its settings, an app that
signs in with its seeded secret and holds its seeded role, a Key Vault secret. Applying it
twice changes nothing; a bad entry is named."""
import json
import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.recoveryservices import RecoveryServicesClient

from conftest import TENANT_ID

SUBSCRIPTION_ID = "a2e0c0de-5e11-4a55-9a2e-000000000002"
ADMIN_OBJECT_ID = "a2e0c0de-5e11-4a55-9a2e-00000000001a"


def test_a_seed_file_is_what_the_sdk_finds(azsim, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    group, vault, key_vault = f"seed-rg-{suffix}", f"seed-vault-{suffix}", f"seedkv{suffix}"
    app_id, secret = str(uuid.uuid4()), f"seeded-secret-{suffix}-0123456789"
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({
        "resourceGroups": [{"name": group, "location": "northeurope"}],
        "recoveryServicesVaults": [{
            "resourceGroup": group, "name": vault, "location": "northeurope",
            "properties": {"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"},
                           "securitySettings": {"immutabilitySettings": {"state": "Unlocked"}}},
        }],
        "applications": [{"appId": app_id, "displayName": f"seeded-{suffix}",
                          "secrets": [{"displayName": "ci", "secretText": secret}]}],
        "roleAssignments": [{"appId": app_id, "role": "Reader"}],
        "keyVaults": [{"resourceGroup": group, "name": key_vault, "location": "northeurope",
                       "accessPolicies": [{"objectId": ADMIN_OBJECT_ID, "permissions": {"secrets": ["get", "list", "set"]}}],
                       "secrets": {"db-password": "hunter2"}}],
    }))
    first = azsim.run("seed", str(seed)).stdout
    assert first.count("created") == 4, first

    app = ClientSecretCredential(TENANT_ID, app_id, secret, authority=azsim.entra_url,
                                 disable_instance_discovery=True)
    found = RecoveryServicesClient(app, SUBSCRIPTION_ID, base_url=azsim.arm_url).vaults.get(group, vault)
    assert found.location == "northeurope"
    assert found.properties.redundancy_settings.standard_tier_storage_redundancy == "LocallyRedundant"
    assert found.properties.security_settings.immutability_settings.state == "Unlocked"
    with pytest.raises(HttpResponseError) as refused:
        RecoveryServicesClient(app, SUBSCRIPTION_ID, base_url=azsim.arm_url).vaults.begin_delete(group, vault).result()
    assert refused.value.status_code == 403, "the seeded role is Reader"

    assert azsim.secret_client(key_vault).get_secret("db-password").value == "hunter2"

    again = azsim.run("seed", str(seed)).stdout
    assert "created" not in again and again.count("unchanged") == 4, again

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"keyVaults": [{"resourceGroup": group, "name": "x", "location": "westeurope"}]}))
    refused = azsim.run("seed", str(bad), check=False)
    assert refused.returncode != 0 and f"keyVaults[0] '{group}/x'" in refused.stderr, refused.stderr
